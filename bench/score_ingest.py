#!/usr/bin/env python3
"""Score ingest over HTTP (DESIGN.md §9: >= 50,000 scores/s).

Starts the fake upstream and arbiter (release build, relaxed durability, data in a temp dir),
logs --requests proxied calls with known ids (Helicone-Request-Id: UUIDs ending in N), then runs wrk with
--connections connections for --duration seconds, each call POSTing --scores-per-call Helicone
scores to /v1/request/<one of them>/score. Every 201 means the scores were fsynced.

  bench/score_ingest.py [--duration 10] [--connections 64] [--scores-per-call 4]
                        [--requests 20000] [--quick]

ARBITER_BIN / FAKE_UPSTREAM_BIN select the binaries (default build/release/...). Prints one line:
  SCORES calls_per_s=F scores_per_s=F p50_us=N p99_us=N non_2xx=N errors=N groups=N
and exits 1 when any call failed.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "bench-key"

LUA = r"""
local names = {}
for i = 1, tonumber(os.getenv("SCORES_PER_CALL")) do names[i] = "metric_" .. i end
local n_ids = tonumber(os.getenv("SEED_REQUESTS"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
function request()
  local parts = {}
  for i, n in ipairs(names) do parts[i] = '"' .. n .. '":' .. math.random(0, 100) end
  local body = '{"scores":{' .. table.concat(parts, ",") .. '}}'
  return wrk.format(nil, string.format("/v1/request/00000000-0000-4000-8000-%012d/score", math.random(0, n_ids - 1)), nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d duration_us=%d p50_us=%d p99_us=%d status=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def wait_listening(proc, listener=None, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError("process exited before listening")
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "listening" and (listener is None or ev.get("listener") == listener):
            return ev["address"]
    raise RuntimeError("not listening in time")


def metric(api, name):
    with urllib.request.urlopen(f"http://{api}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--scores-per-call", type=int, default=4)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--quick", action="store_true", help="1 s, 500 requests: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.requests = 1, 500

    arbiter = os.environ.get("ARBITER_BIN", os.path.join(ROOT, "build/release/arbiter"))
    fake = os.environ.get("FAKE_UPSTREAM_BIN", os.path.join(ROOT, "build/release/fake_upstream"))
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("score_ingest: wrk is required (scripts/deps.sh bench)")
    tmp = tempfile.mkdtemp(prefix="arbiter-score-bench.")
    procs = []
    try:
        up = subprocess.Popen([fake, "--port", "0"], stdout=subprocess.PIPE, text=True)
        procs.append(up)
        up_addr = wait_listening(up)
        conf = os.path.join(tmp, "arbiter.yaml")
        with open(conf, "w") as f:
            f.write(f"""server:
  proxy_listen: 127.0.0.1:0
  api_listen: 127.0.0.1:0
  threads: 2
  log_level: warn
storage:
  path: {tmp}/data
upstreams:
  - name: fake
    base_url: http://{up_addr}
projects:
  - name: bench
    api_keys: [ {KEY} ]
""")
        gw = subprocess.Popen([arbiter, "--config", conf], stdout=subprocess.PIPE, text=True)
        procs.append(gw)
        proxy = wait_listening(gw, "proxy")
        api = wait_listening(gw, "api")

        host, port = proxy.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        for i in range(args.requests):
            conn.request("POST", "/v1/chat/completions", body,
                         {"Content-Type": "application/json", "Helicone-Auth": f"Bearer {KEY}",
                          "Helicone-Request-Id": f"00000000-0000-4000-8000-{i:012d}"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                sys.exit(f"score_ingest: seeding call {i} got {r.status}")
        deadline = time.time() + 30
        while metric(api, "arbiter_log_records_written_total") < args.requests:
            if time.time() > deadline:
                sys.exit("score_ingest: seeded records were not written in time")
            time.sleep(0.05)

        lua = os.path.join(tmp, "scores.lua")
        with open(lua, "w") as f:
            f.write(LUA)
        env = dict(os.environ, BENCH_KEY=KEY, SCORES_PER_CALL=str(args.scores_per_call),
                   SEED_REQUESTS=str(args.requests))
        out = subprocess.run([wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "-s", lua,
                              f"http://{api}"], env=env, capture_output=True, text=True, check=True).stdout
        m = re.search(r"WRK requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) status=(\d+) errors=(\d+)",
                      out)
        if not m:
            sys.exit("score_ingest: no figures from wrk:\n" + out)
        calls, dur_us, p50, p99, non2xx, errors = map(int, m.groups())
        groups = metric(api, "arbiter_score_groups_total")
        cps = calls / (dur_us / 1e6)
        print(f"SCORES calls_per_s={cps:.0f} scores_per_s={cps * args.scores_per_call:.0f} "
              f"p50_us={p50} p99_us={p99} non_2xx={non2xx} errors={errors} groups={groups:.0f} "
              f"scores_per_call={args.scores_per_call} connections={args.connections}")
        return 1 if non2xx or errors or calls == 0 else 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
