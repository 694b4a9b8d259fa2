// Starts the real `arbiter` binary and the fake OpenAI upstream for the e2e
// suite, and tears them down again (SIGTERM, await exit, remove the temp dir),
// also when a test fails or the test process dies.
//
// Binaries come from the environment (set by tests/e2e/CMakeLists.txt):
//   ARBITER_BIN        path to build/<dir>/arbiter
//   FAKE_UPSTREAM_BIN  path to build/<dir>/fake_upstream
// E2E_KEEP_TMP=1 keeps the temp dirs (config, RocksDB, stderr logs) for debugging.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import OpenAI from 'openai';

export const PROVIDER_KEY = `sk-test-${randomUUID()}`;
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 20_000;
const keepTmp = process.env.E2E_KEEP_TMP === '1';

function requiredBinary(envName) {
  const value = process.env[envName];
  if (!value) {
    throw new Error(`${envName} is not set: run the suite through ctest (ctest -L e2e), or set ` +
                    `${envName}=build/<dir>/${envName === 'ARBITER_BIN' ? 'arbiter' : 'fake_upstream'}`);
  }
  if (!fs.existsSync(value)) throw new Error(`${envName}=${value} does not exist (build it first)`);
  return value;
}

// Everything still alive, so that an exit of the test process (crash, uncaught
// exception, signal) never leaves a child or a temp dir behind.
const liveProcesses = new Set();
const liveDirs = new Set();

function emergencyCleanup() {
  for (const proc of liveProcesses) {
    try { proc.child.kill('SIGKILL'); } catch { /* already gone */ }
  }
  liveProcesses.clear();
  if (!keepTmp) {
    for (const dir of liveDirs) fs.rmSync(dir, { recursive: true, force: true });
  }
  liveDirs.clear();
}
process.once('exit', emergencyCleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    emergencyCleanup();
    process.kill(process.pid, sig);  // default disposition now: die as requested
  });
}

export function makeTempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arbiter-e2e-'));
  liveDirs.add(dir);
  return dir;
}

export function removeTempDir(dir) {
  liveDirs.delete(dir);
  if (keepTmp) {
    console.error(`# E2E_KEEP_TMP: kept ${dir}`);
    return;
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

// The first sanitizer report in a child's stderr log (a sanitized build: the
// asan/tsan presets), from the line it starts on, or null. The same markers as
// tests/support/sanitizer.cpp.
const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'WARNING: ThreadSanitizer',
                           'FATAL: ThreadSanitizer', 'runtime error:', 'ERROR: UndefinedBehaviorSanitizer'];
export function sanitizerReport(file, maxBytes = 16384) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const found = SANITIZER_MARKERS.map((m) => text.indexOf(m)).filter((i) => i >= 0);
  if (found.length === 0) return null;
  const start = text.lastIndexOf('\n', Math.min(...found)) + 1;
  return text.slice(start, start + maxBytes);
}

function tail(file, maxBytes = 4096) {
  try {
    const data = fs.readFileSync(file);
    return data.subarray(Math.max(0, data.length - maxBytes)).toString('utf8');
  } catch {
    return '';
  }
}

// A child process whose stdout is read as lines and whose stderr is appended
// to a file.
export class ManagedProcess {
  constructor(name, bin, args, stderrPath) {
    this.name = name;
    this.stderrPath = stderrPath;
    this.lines = [];
    this.waiters = new Set();
    this.result = null;  // { code, signal } once exited
    this.stdoutClosed = false;

    const stderrFd = fs.openSync(stderrPath, 'a');
    try {
      this.child = spawn(bin, args, { stdio: ['ignore', 'pipe', stderrFd] });
    } finally {
      fs.closeSync(stderrFd);  // the child holds its own copy
    }
    liveProcesses.add(this);

    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.result = { code, signal };
        liveProcesses.delete(this);
        resolve(this.result);
      });
      this.child.once('error', (error) => {
        // Spawn failure (ENOENT, EACCES): there is no process to wait for.
        this.result = { code: null, signal: null, error };
        liveProcesses.delete(this);
        this.stdoutClosed = true;
        this.#notify();
        resolve(this.result);
      });
    });
    readline.createInterface({ input: this.child.stdout, crlfDelay: Infinity })
      .on('line', (line) => {
        this.lines.push(line);
        this.#notify();
      })
      .on('close', () => {
        this.stdoutClosed = true;
        this.#notify();
      });
  }

  #notify() {
    for (const waiter of [...this.waiters]) waiter();
  }

  describe(reason) {
    return `${this.name} (pid ${this.child.pid}) ${reason}\n` +
           `stdout:\n${this.lines.map((l) => `  ${l}`).join('\n')}\n` +
           `stderr (${this.stderrPath}, tail):\n${tail(this.stderrPath)}`;
  }

  // Resolves with the first stdout line (already seen or future) satisfying
  // pred; rejects on timeout or when stdout closes (the process exited).
  waitForLine(pred, timeoutMs = START_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      let checked = 0;
      let timer;
      const check = () => {
        for (; checked < this.lines.length; ++checked) {
          if (pred(this.lines[checked])) {
            finish();
            resolve(this.lines[checked]);
            return;
          }
        }
        if (this.stdoutClosed) {
          finish();
          this.exited.then((r) => reject(new Error(this.describe(
              `closed stdout (exit ${r.error ? r.error.message : `code ${r.code}, signal ${r.signal}`})` +
              ' before printing the expected line'))));
        }
      };
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      timer = setTimeout(() => {
        finish();
        reject(new Error(this.describe(`did not print the expected line within ${timeoutMs} ms`)));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  // SIGTERM, then SIGKILL if it has not exited within timeoutMs. Resolves with
  // { code, signal, forced }. Idempotent.
  async stop(timeoutMs = STOP_TIMEOUT_MS) {
    if (this.result) return { ...this.result, forced: false };
    if (!this.stopping) {
      this.stopping = (async () => {
        this.child.kill('SIGTERM');
        let timer;
        const timedOut = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); });
        const first = await Promise.race([this.exited, timedOut]);
        clearTimeout(timer);
        if (first !== 'timeout') return { ...first, forced: false };
        this.child.kill('SIGKILL');
        return { ...(await this.exited), forced: true };
      })();
    }
    return this.stopping;
  }
}

function listeningAddress(line, listener) {
  let event;
  try {
    event = JSON.parse(line);
  } catch {
    return null;
  }
  if (event === null || typeof event !== 'object' || event.event !== 'listening') return null;
  if (listener !== undefined && event.listener !== listener) return null;
  return typeof event.address === 'string' ? event.address : null;
}

function portOf(address) {
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad address ${address}`);
  return port;
}

export async function startFakeUpstream({ dir, threads = 2 } = {}) {
  const proc = new ManagedProcess('fake_upstream', requiredBinary('FAKE_UPSTREAM_BIN'),
                                  ['--host', '127.0.0.1', '--port', '0', '--threads', String(threads)],
                                  path.join(dir, 'fake_upstream.stderr.log'));
  try {
    const line = await proc.waitForLine((l) => listeningAddress(l) !== null);
    const address = listeningAddress(line);
    return { proc, address, port: portOf(address), baseURL: `http://${address}` };
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

export function arbiterConfig({ dir, upstreamBaseURL, apiKey, threads = 2 }) {
  // JSON strings are valid YAML scalars, so paths and keys need no escaping.
  const q = JSON.stringify;
  return [
    'server:',
    '  proxy_listen: 127.0.0.1:0',
    '  api_listen: 127.0.0.1:0',
    `  threads: ${threads}`,
    `storage: { path: ${q(path.join(dir, 'data'))} }`,
    'upstreams:',
    '  - name: openai',
    `    base_url: ${q(upstreamBaseURL)}`,
    'projects:',
    '  - name: default',
    `    api_keys: [ ${q(apiKey)} ]`,
    'evaluators: []',
    'webhooks: []',
    '',
  ].join('\n');
}

export async function startArbiter({ dir, upstreamBaseURL, apiKey }) {
  const configPath = path.join(dir, 'arbiter.yaml');
  fs.writeFileSync(configPath, arbiterConfig({ dir, upstreamBaseURL, apiKey }));
  const proc = new ManagedProcess('arbiter', requiredBinary('ARBITER_BIN'), ['--config', configPath],
                                  path.join(dir, 'arbiter.stderr.log'));
  try {
    const [proxyLine, apiLine] = await Promise.all([
      proc.waitForLine((l) => listeningAddress(l, 'proxy') !== null),
      proc.waitForLine((l) => listeningAddress(l, 'api') !== null),
    ]);
    const proxyAddress = listeningAddress(proxyLine, 'proxy');
    const apiAddress = listeningAddress(apiLine, 'api');
    return {
      proc,
      configPath,
      proxyAddress,
      apiAddress,
      proxyPort: portOf(proxyAddress),
      apiPort: portOf(apiAddress),
      baseURL: `http://${proxyAddress}/v1`,
    };
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

// A port on 127.0.0.1 that nothing listens on (bound, then released).
export async function closedPort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// A temp dir, a fake upstream (unless upstreamBaseURL is given) and an arbiter
// in front of it. close() stops both and removes the dir; it is idempotent and
// resolves with the exit results, so a test can check the graceful exit. It
// rejects when either process printed a sanitizer report (after cleaning up).
export async function startStack({ upstreamBaseURL } = {}) {
  const dir = makeTempDir();
  const apiKey = `arb-e2e-${randomUUID()}`;
  let upstream = null;
  let arbiter = null;
  let closing = null;
  const close = () => {
    closing ??= (async () => {
      const arbiterExit = arbiter ? await arbiter.proc.stop() : null;
      const upstreamExit = upstream ? await upstream.proc.stop() : null;
      if (arbiterExit && (arbiterExit.code !== 0 || arbiterExit.forced)) {
        console.error(arbiter.proc.describe(`exit ${JSON.stringify(arbiterExit)} after SIGTERM`));
      }
      const reports = [arbiter, upstream].filter(Boolean)
        .map((s) => [s.proc.stderrPath, sanitizerReport(s.proc.stderrPath)])
        .filter(([, report]) => report !== null);
      removeTempDir(dir);
      if (reports.length > 0) {
        throw new Error(reports.map(([file, report]) => `sanitizer report in ${file}:\n${report}`).join('\n'));
      }
      return { arbiter: arbiterExit, upstream: upstreamExit };
    })();
    return closing;
  };
  try {
    if (!upstreamBaseURL) {
      upstream = await startFakeUpstream({ dir });
      upstreamBaseURL = upstream.baseURL;
    }
    arbiter = await startArbiter({ dir, upstreamBaseURL, apiKey });
  } catch (error) {
    await close();
    throw error;
  }
  return { dir, apiKey, upstream, arbiter, baseURL: arbiter.baseURL, close };
}

// The official SDK pointed at arbiter's proxy listener. Retries are off so that
// every status the gateway returns is seen as it is.
export function makeClient(stack, { gatewayKey = stack.apiKey, providerKey = PROVIDER_KEY,
                                    headers = {}, ...options } = {}) {
  const defaultHeaders = { ...headers };
  if (gatewayKey !== null) defaultHeaders['Helicone-Auth'] = `Bearer ${gatewayKey}`;
  return new OpenAI({
    apiKey: providerKey,
    baseURL: stack.baseURL,
    defaultHeaders,
    maxRetries: 0,
    timeout: 30_000,
    ...options,
  });
}
