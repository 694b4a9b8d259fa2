#!/usr/bin/env bash
# bench/smoke_test.sh — keeps bench/run.sh from rotting: one --quick run (1 s per wrk run, no
# warm-up), then checks that the JSON holds numbers for every target. Registered with ctest as
# bench_smoke (label bench), which passes ARBITER_BIN and FAKE_UPSTREAM_BIN so run.sh uses the
# build's own binaries and does not build. The figures of a quick run mean nothing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(mktemp "${TMPDIR:-/tmp}/arbiter-bench-smoke.XXXXXX")
trap 'rm -f "$out"' EXIT

timeout -k 5 150 "$here/run.sh" --quick --evaluators 3 --out "$out"

python3 - "$out" <<'PY'
import json, math, sys
with open(sys.argv[1]) as f:
    r = json.load(f)
bad = []
def number(where, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        bad.append(f"{where} = {v!r}")
for t in ("direct", "nginx", "arbiter", "arbiter_ev"):
    d = r["targets"].get(t)
    if d is None:
        bad.append(f"no target {t}")
        continue
    for k in ("rps_c64", "p50_us_c1", "p99_us_c1", "rps_c1"):
        number(f"{t}.{k}", d.get(k))
    if isinstance(d.get("rps_c64"), (int, float)) and d["rps_c64"] <= 0:
        bad.append(f"{t}.rps_c64 is not positive")
    if d.get("errors") != 0:
        bad.append(f"{t}.errors = {d.get('errors')!r}")
for k in ("rss_idle_kib", "rss_after_kib"):
    number(f"arbiter.{k}", r["targets"].get("arbiter", {}).get(k))
for k in ("arbiter_rps_over_nginx", "arbiter_added_p50_us", "arbiter_added_p99_us",
          "nginx_added_p50_us", "nginx_added_p99_us"):
    number(f"ratios.{k}", r["ratios"].get(k))
ev = r.get("evaluators", {})
for k in ("matched", "completed", "errors", "queue_full"):
    number(f"evaluators.{k}", ev.get(k))
if isinstance(ev.get("completed"), int) and ev["completed"] <= 0:
    bad.append("evaluators.completed is not positive: the evaluators never ran")
if r.get("failures") != 0:
    bad.append(f"failures = {r.get('failures')!r}")
if bad:
    print("bench smoke test FAILED:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
print("bench smoke test: OK")
PY
