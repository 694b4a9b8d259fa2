// Async log ingestion (DESIGN.md §4, POST /custom/v1/log and /oai/v1/log)
// driven by the real `@helicone/helpers` HeliconeManualLogger: the client
// calls its provider itself (here the fake upstream, directly) and reports
// the call to arbiter's API listener; the record is then read back with
// GET /v1/request/{id}. Run through ctest (`ctest -L e2e`), or:
//   cd tests/e2e && npm ci && ARBITER_BIN=... FAKE_UPSTREAM_BIN=... node --test

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import OpenAI from 'openai';

import { PROVIDER_KEY, startStack } from './harness.mjs';

let HeliconeManualLogger;
try {
  ({ HeliconeManualLogger } = await import('@helicone/helpers'));
} catch (error) {
  throw new Error('@helicone/helpers is not installed: run `npm ci` in tests/e2e', { cause: error });
}

const MODEL = 'gpt-4o-mini';
const CONTENT = 'Manual logging keeps working without the proxy';
const MESSAGES = [{ role: 'user', content: 'Say something about logging.' }];
const TEST_TIMEOUT = { timeout: 60_000 };

// The logger swallows HTTP errors (it only console.errors them), so the
// endpoint's answers are observed by wrapping the global fetch it uses.
const realFetch = globalThis.fetch;
const logCalls = [];
function installFetchSpy() {
  globalThis.fetch = async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    const response = await realFetch(input, init);
    if (/\/v1\/log$/.test(new URL(url).pathname)) {
      const text = await response.clone().text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* not JSON: keep the text */ }
      logCalls.push({ url, init, status: response.status, text, json });
    }
    return response;
  };
}

// Runs `fn` and returns the single logging call it made.
async function oneLogCall(fn) {
  const before = logCalls.length;
  const result = await fn();
  assert.equal(logCalls.length, before + 1, 'expected exactly one call to the logging endpoint');
  return { result, call: logCalls[logCalls.length - 1] };
}

describe('HeliconeManualLogger (@helicone/helpers) into arbiter', TEST_TIMEOUT, () => {
  let stack;
  let apiBase;
  let provider;  // the provider, called directly: these clients do not proxy

  const makeLogger = (options = {}) => new HeliconeManualLogger({
    apiKey: stack.apiKey,
    loggingEndpoint: `${apiBase}/custom/v1/log`,
    ...options,
  });

  async function getRecord(id, key = stack.apiKey) {
    const res = await realFetch(`${apiBase}/v1/request/${id}?includeBody=true`, {
      headers: { Authorization: `Bearer ${key}` },
    });
    return { status: res.status, body: await res.json() };
  }

  async function storedRecord(id) {
    // The endpoint answers only once the record is durable, so it is there now.
    const { status, body } = await getRecord(id);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.error, null);
    return body.data;
  }

  function assertRecentIso(iso, startedAt) {
    const t = Date.parse(iso);
    assert.ok(Number.isFinite(t), `not a timestamp: ${iso}`);
    assert.ok(t >= startedAt - 1000 && t <= Date.now() + 1000, `${iso} is not within the test's run`);
  }

  before(async () => {
    stack = await startStack();
    apiBase = `http://127.0.0.1:${stack.arbiter.apiPort}`;
    provider = new OpenAI({
      apiKey: PROVIDER_KEY,
      baseURL: `${stack.upstream.baseURL}/v1`,
      defaultHeaders: { 'x-fake-content': CONTENT },
      maxRetries: 0,
      timeout: 30_000,
    });
    installFetchSpy();
  });

  after(async () => {
    globalThis.fetch = realFetch;
    await stack?.close();
  });

  it('logs a non-stream chat call (logRequest → /custom/v1/log)', async () => {
    const logger = makeLogger();
    const id = randomUUID();
    const request = { model: MODEL, messages: MESSAGES, user: 'body-user' };
    const startedAt = Date.now();
    const { result: completion, call } = await oneLogCall(() => logger.logRequest(
      request,
      async (recorder) => {
        const c = await provider.chat.completions.create(request);
        recorder.appendResults(c);
        return c;
      },
      {
        'Helicone-Request-Id': id,
        'Helicone-Property-Feature': 'manual-e2e',
        'Helicone-Property-Tier': 'gold',
        'Helicone-User-Id': 'e2e-user',
        'Helicone-Session-Id': 'session-1',
      },
    ));
    assert.equal(completion.choices[0].message.content, CONTENT);

    // What the package sent, and what arbiter answered.
    assert.equal(new URL(call.url).pathname, '/custom/v1/log');
    assert.equal(call.init.headers.Authorization, `Bearer ${stack.apiKey}`);
    assert.equal(call.status, 200, call.text);
    assert.deepEqual(call.json, { data: { request_id: id }, error: null });

    const record = await storedRecord(id);
    assert.equal(record.request_id, id);
    assert.equal(record.status, 200);
    assert.equal(record.model, completion.model);
    assert.equal(record.request_model, MODEL);
    assert.equal(record.provider, 'manual');
    assert.equal(record.request_method, 'POST');
    assert.equal(record.request_path, '/v1/chat/completions');
    assert.deepEqual(record.properties, { feature: 'manual-e2e', tier: 'gold' });
    assert.equal(record.user_id, 'e2e-user');  // the header wins over the body's `user`
    assert.equal(record.session_id, 'session-1');
    assert.equal(record.is_stream, false);
    assert.equal(record.prompt_tokens, completion.usage.prompt_tokens);
    assert.equal(record.completion_tokens, completion.usage.completion_tokens);
    assert.equal(record.total_tokens, completion.usage.total_tokens);
    assert.deepEqual(record.request_body, request);
    assert.equal(record.response_body.choices[0].message.content, CONTENT);
    assert.equal(record.response_body.id, completion.id);
    assert.equal(typeof record.latency, 'number');
    assert.ok(record.latency >= 0 && record.latency < 30_000, `latency ${record.latency}`);
    assert.equal(record.time_to_first_token, null);
    assertRecentIso(record.request_created_at, startedAt);
    assertRecentIso(record.response_created_at, startedAt);
    // Neither the project key nor the provider key is stored.
    const all = JSON.stringify(record);
    assert.ok(!all.includes(stack.apiKey), 'project key stored in the record');
    assert.ok(!all.includes(PROVIDER_KEY), 'provider key stored in the record');
  });

  it('logs a stream with its text and time to first token (logBuilder)', async () => {
    const logger = makeLogger();
    const id = randomUUID();
    const request = { model: MODEL, messages: MESSAGES, stream: true, stream_options: { include_usage: true } };
    const builder = logger.logBuilder(request, {
      'Helicone-Request-Id': id,
      'Helicone-Property-Kind': 'stream',
    });
    const stream = await provider.chat.completions.create(request);
    const reader = builder.toReadableStream(stream).getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value);
    const chunks = text.trim().split('\n').map((line) => JSON.parse(line));
    const streamed = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(streamed, CONTENT);
    const usage = chunks.at(-1).usage;
    assert.ok(usage, 'the fake upstream sends a final usage chunk with include_usage');

    const { call } = await oneLogCall(() => builder.sendLog());
    assert.equal(call.status, 200, call.text);
    const sent = JSON.parse(call.init.body);
    assert.equal(sent.providerResponse.textBody, text);
    assert.equal(typeof sent.timing.timeToFirstToken, 'number');

    const record = await storedRecord(id);
    assert.equal(record.is_stream, true);
    assert.equal(record.status, 200);
    assert.equal(record.model, chunks[0].model);
    assert.deepEqual(record.properties, { kind: 'stream' });
    assert.equal(record.prompt_tokens, usage.prompt_tokens);
    assert.equal(record.completion_tokens, usage.completion_tokens);
    assert.equal(record.total_tokens, usage.total_tokens);
    assert.equal(record.response_body, text);  // JSON lines are not one JSON document: kept as text
    assert.deepEqual(record.request_body, request);
    assert.equal(record.time_to_first_token, sent.timing.timeToFirstToken);
    assert.ok(record.latency >= record.time_to_first_token, `latency ${record.latency}`);
  });

  it('logs a teed stream without usage, leaving tokens unknown (logStream)', async () => {
    const logger = makeLogger();
    const id = randomUUID();
    const request = { model: MODEL, messages: MESSAGES, stream: true };
    let text = '';
    await oneLogCall(() => logger.logStream(request, async (recorder) => {
      const stream = await provider.chat.completions.create(request);
      const [forClient, forLog] = stream.tee();
      recorder.attachStream(forLog.toReadableStream());
      for await (const chunk of forClient) text += chunk.choices[0]?.delta?.content ?? '';
      return forClient;
    }, { 'Helicone-Request-Id': id }));
    assert.equal(text, CONTENT);

    const record = await storedRecord(id);
    assert.equal(record.is_stream, true);
    assert.equal(record.model, MODEL);
    assert.equal(record.prompt_tokens, null);
    assert.equal(record.completion_tokens, null);
    assert.equal(record.total_tokens, null);
    assert.equal(typeof record.response_body, 'string');
    assert.ok(record.response_body.includes('chat.completion.chunk'));
  });

  it('builds /oai/v1/log from a bare endpoint when the provider is openai', async () => {
    const logger = makeLogger({ loggingEndpoint: apiBase });
    const id = randomUUID();
    const request = { model: MODEL, messages: MESSAGES };
    const { call } = await oneLogCall(() => logger.logRequest(
      request,
      async (recorder) => recorder.appendResults(await provider.chat.completions.create(request)),
      { 'Helicone-Request-Id': id },
      'openai',
    ));
    assert.equal(new URL(call.url).pathname, '/oai/v1/log');
    assert.equal(call.status, 200, call.text);
    assert.equal(JSON.parse(call.init.body).provider, 'openai');
    const record = await storedRecord(id);
    assert.equal(record.request_model, MODEL);
    assert.equal(record.request_path, '/v1/chat/completions');
  });

  it('honours Helicone-Omit-Request/-Response', async () => {
    const logger = makeLogger();
    const id = randomUUID();
    const request = { model: MODEL, messages: MESSAGES };
    const { result: completion } = await oneLogCall(() => logger.logRequest(
      request,
      async (recorder) => {
        const c = await provider.chat.completions.create(request);
        recorder.appendResults(c);
        return c;
      },
      { 'Helicone-Request-Id': id, 'Helicone-Omit-Request': 'true', 'Helicone-Omit-Response': 'true' },
    ));
    const record = await storedRecord(id);
    assert.equal(record.request_omitted, true);
    assert.equal(record.response_omitted, true);
    assert.equal(record.request_body, null);
    assert.equal(record.response_body, null);
    assert.ok(record.request_size > 0 && record.response_size > 0);
    assert.equal(record.total_tokens, completion.usage.total_tokens);  // metadata is still kept
  });

  it('refuses a wrong or missing key with 401 and stores nothing', async () => {
    const id = randomUUID();
    const logger = makeLogger({ apiKey: `arb-wrong-${randomUUID()}` });
    const { call } = await oneLogCall(() => logger.logRequest(
      { model: MODEL, messages: MESSAGES },
      async (recorder) => recorder.appendResults({ model: MODEL }),
      { 'Helicone-Request-Id': id },
    ));
    assert.equal(call.status, 401, call.text);
    assert.equal((await getRecord(id)).status, 404);

    const res = await realFetch(`${apiBase}/custom/v1/log`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: call.init.body,
    });
    assert.equal(res.status, 401);
    assert.equal((await getRecord(id)).status, 404);
  });

  it('answers malformed JSON and wrong types with 400 naming the problem', async () => {
    const post = async (body, path = '/custom/v1/log') => {
      const res = await realFetch(`${apiBase}${path}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${stack.apiKey}`, 'Content-Type': 'application/json' },
        body,
      });
      const text = await res.text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* reported below */ }
      return { status: res.status, json, text };
    };
    const valid = {
      providerRequest: { url: 'custom-model-nopath', json: { model: MODEL, messages: MESSAGES }, meta: {} },
      providerResponse: { headers: {}, status: 200, json: { model: MODEL } },
      timing: { startTime: { seconds: 1_700_000_000, milliseconds: 0 }, endTime: { seconds: 1_700_000_001, milliseconds: 0 } },
    };

    const malformed = await post('{"providerRequest": {');
    assert.equal(malformed.status, 400, malformed.text);
    assert.equal(malformed.json?.data, null);
    assert.equal(typeof malformed.json?.error, 'string');

    const cases = [
      [{ ...valid, providerRequest: { ...valid.providerRequest, json: [] } }, 'providerRequest.json: expected an object'],
      [{ ...valid, providerResponse: { ...valid.providerResponse, status: '200' } }, 'providerResponse.status: expected an integer'],
      [{ ...valid, providerRequest: 'x' }, 'providerRequest: expected an object'],
      [{ providerRequest: valid.providerRequest, timing: valid.timing }, 'providerResponse: missing'],
      [{ ...valid, timing: { ...valid.timing, endTime: { seconds: 1_699_999_999, milliseconds: 0 } } },
        'timing.endTime: before timing.startTime'],
    ];
    for (const [body, message] of cases) {
      for (const path of ['/custom/v1/log', '/oai/v1/log']) {
        const r = await post(JSON.stringify(body), path);
        assert.equal(r.status, 400, `${path} ${message}: ${r.text}`);
        assert.deepEqual(r.json, { data: null, error: message });
      }
    }

    // The same body with the types right is accepted.
    const ok = await post(JSON.stringify(valid));
    assert.equal(ok.status, 200, ok.text);
    assert.match(ok.json.data.request_id, /^[0-9a-f-]{36}$/);
  });
});
