#!/usr/bin/env bash
# bench/smoke_test.sh — keeps bench/run.sh from rotting: one --quick run of every stage (1 s wrk
# runs, no warm-up; 100 TTFT streams per target; 50 held streams; a 2 s overload; a 6 s soak;
# Portkey when bench/portkey/node_modules exists), then checks that the JSON holds figures for every stage.
# Registered with ctest as bench_smoke (label bench), which passes ARBITER_BIN,
# FAKE_UPSTREAM_BIN and STREAM_BENCH_BIN so run.sh uses the build's own binaries and does not
# build. The figures of a quick run mean nothing; only that each stage ran and measured.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(mktemp "${TMPDIR:-/tmp}/arbiter-bench-smoke.XXXXXX")
trap 'rm -f "$out"' EXIT

portkey=0
[ -d "$here/portkey/node_modules" ] && command -v node >/dev/null && portkey=1
args=(--quick --evaluators 3 --overload 2 --soak 6 --out "$out")
[ "$portkey" = 1 ] && args+=(--portkey) || args+=(--no-portkey)
timeout -k 5 170 "$here/run.sh" "${args[@]}"

python3 - "$out" "$portkey" <<'PY'
import json, math, sys
with open(sys.argv[1]) as f:
    r = json.load(f)
portkey = sys.argv[2] == "1"
bad = []
def number(where, v, positive=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        bad.append(f"{where} = {v!r}")
    elif positive and v <= 0:
        bad.append(f"{where} = {v!r} is not positive")
def verdict(where, v):
    if v not in ("PASS", "MISS"):
        bad.append(f"{where} = {v!r} is not a verdict")

# the proxy stage: every target measured, without errors
targets = ["direct", "nginx", "arbiter", "arbiter_ev"] + (["portkey"] if portkey else [])
for t in targets:
    d = r["targets"].get(t)
    if d is None:
        bad.append(f"no target {t}")
        continue
    for k in ("rps_c64", "p50_us_c1", "p99_us_c1", "rps_c1"):
        number(f"{t}.{k}", d.get(k), positive=True)
    if d.get("errors") != 0:
        bad.append(f"{t}.errors = {d.get('errors')!r}")
for t in ("arbiter", "nginx") + (("portkey",) if portkey else ()):
    for k in ("rss_idle_kib", "rss_after_kib"):
        number(f"{t}.{k}", r["targets"].get(t, {}).get(k), positive=True)
ratios = ["arbiter_rps_over_nginx", "arbiter_added_p50_us", "arbiter_added_p99_us",
          "nginx_added_p50_us", "nginx_added_p99_us"]
if portkey:
    ratios += ["portkey_rps_over_direct", "portkey_rps_over_nginx", "arbiter_rps_over_portkey",
               "portkey_added_p50_us", "portkey_added_p99_us"]
for k in ratios:
    number(f"ratios.{k}", r["ratios"].get(k))

# the budget configuration: request log on and one evaluator that really ran
cfg = r.get("config") or {}
if cfg.get("request_log") is not True:
    bad.append("config.request_log is not true")
if (cfg.get("evaluator") or {}).get("kind") != "response_length":
    bad.append(f"config.evaluator = {cfg.get('evaluator')!r}")
number("arbiter_evaluator.completed", (r.get("arbiter_evaluator") or {}).get("completed"), positive=True)
ev = r.get("evaluators", {})
for k in ("matched", "completed", "errors", "deferred"):
    number(f"evaluators.{k}", ev.get(k))
if isinstance(ev.get("completed"), int) and ev["completed"] <= 0:
    bad.append("evaluators.completed is not positive: the evaluators never ran")

# the streaming stage: TTFT on both kinds of connection, and the hold test
st = r.get("streaming") or {}
# Portkey 1.15.2 cannot stream on Node (run.sh checks and records why): then its TTFT is absent.
portkey_streams = portkey and not st.get("portkey_stream_error")
if portkey and not portkey_streams:
    print("bench smoke test: note: " + st["portkey_stream_error"], file=sys.stderr)
stream_targets = ["direct", "nginx", "arbiter"] + (["portkey"] if portkey_streams else [])
for conn in ("new", "keepalive"):
    for t in stream_targets:
        d = (st.get("ttft") or {}).get(conn, {}).get(t)
        if d is None:
            bad.append(f"streaming.ttft.{conn}.{t} missing")
            continue
        number(f"streaming.ttft.{conn}.{t}.samples", d.get("samples"), positive=True)
        for k in ("p50_us", "p99_us"):
            number(f"streaming.ttft.{conn}.{t}.{k}", d.get(k), positive=True)
        for k in ("added_p50_us", "added_p99_us"):
            number(f"streaming.ttft.{conn}.{t}.{k}", d.get(k))
        if d.get("failures") != 0:
            bad.append(f"streaming.ttft.{conn}.{t}.failures = {d.get('failures')!r}")
hold = st.get("hold") or {}
number("streaming.hold.streams", hold.get("streams"), positive=True)
if hold.get("completed") != hold.get("streams"):
    bad.append(f"streaming.hold: {hold.get('completed')!r} of {hold.get('streams')!r} streams completed")
for k in ("rss_before_kib", "rss_open_kib", "per_stream_kib"):
    number(f"streaming.hold.{k}", hold.get(k))

# the soak: samples taken, load served without errors, growth figures and verdicts
soak = r.get("soak") or {}
series = soak.get("series") or []
if len(series) < 3:
    bad.append(f"soak.series has {len(series)} samples")
for i, row in enumerate(series):
    for k in ("t_s", "rss_kib", "rocksdb_kib", "fds", "table_fds", "threads", "requests"):
        number(f"soak.series[{i}].{k}", row.get(k))
    for k in ("rss_kib", "fds", "threads"):
        if isinstance(row.get(k), int) and row[k] <= 0:
            bad.append(f"soak.series[{i}].{k} = {row[k]} (no process?)")
number("soak.requests", soak.get("requests"), positive=True)
if series:  # the metrics were read: RocksDB holds the soak's records in its memtables at least
    number("soak.series[-1].rocksdb_kib", series[-1].get("rocksdb_kib"), positive=True)
if soak.get("errors") != 0:
    bad.append(f"soak.errors = {soak.get('errors')!r}")
for k in ("rss_kib", "fds_other_than_tables", "threads"):
    number(f"soak.growth.{k}", (soak.get("growth") or {}).get(k))
for k in ("rss", "fds", "table_fds", "threads", "all"):
    verdict(f"soak.verdict.{k}", (soak.get("verdict") or {}).get(k))

# the overload stage: load served without errors, every record accounted for, evaluations drained
ol = r.get("overload") or {}
number("overload.requests", ol.get("requests"), positive=True)
number("overload.rps", ol.get("rps"), positive=True)
if ol.get("errors") != 0:
    bad.append(f"overload.errors = {ol.get('errors')!r}")
ol_log, ol_ev = ol.get("log") or {}, ol.get("evaluator") or {}
for k in ("written", "dropped", "dropped_pct"):
    number(f"overload.log.{k}", ol_log.get(k))
if all(isinstance(ol_log.get(k), int) for k in ("written", "dropped")) and isinstance(ol.get("requests"), int) \
        and ol_log["written"] + ol_log["dropped"] < ol["requests"]:
    bad.append(f"overload.log: {ol_log['written']} written + {ol_log['dropped']} dropped < {ol['requests']} requests")
for k in ("completed_during_load", "completed", "log_backlog_pauses", "drain_s"):
    number(f"overload.evaluator.{k}", ol_ev.get(k))
number("overload.evaluator.completed", ol_ev.get("completed"), positive=True)
number("overload.cpu_us_per_req_with_evaluations", ol.get("cpu_us_per_req_with_evaluations"), positive=True)

budget = r.get("budget") or {}
for k in ("throughput", "added_p50", "added_p99", "idle_rss", "added_ttft_p99_new_conn",
          "added_ttft_p99_keepalive", "per_stream_rss", "soak_no_growth"):
    verdict(f"budget.{k}", budget.get(k))
if r.get("failures") != 0:
    bad.append(f"failures = {r.get('failures')!r}")
if bad:
    print("bench smoke test FAILED:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
print("bench smoke test: OK (stages: proxy, streaming, overload, soak%s)" % (", portkey" if portkey else ""))
PY
