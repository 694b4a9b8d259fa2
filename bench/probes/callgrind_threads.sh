#!/usr/bin/env bash
# callgrind_threads.sh OUTDIR: a whole arbiter (log + response_length) under callgrind, one file
# per thread; 5 s of warm-up, then DUR seconds (default 20) of wrk at CONNS connections (default
# 1; THREADS I/O threads, default 1). Prints instructions per call for each kind of thread.
# Keeps OUTDIR for callgrind_annotate and for calls_per_call.awk. ARBITER_BIN picks the binary.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
ARBITER_BIN=${ARBITER_BIN:-$root/build/release/arbiter}
out=$1
. "$root/bench/probes/common.sh"
rm -rf "$out"; mkdir -p "$out"
conns=${CONNS:-1}
start_fake
write_config "${THREADS:-1}" true 1
start_arbiter valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg.out"
wrk_run 1 1 5 >/dev/null
sleep 3
callgrind_control -z "$apid" >/dev/null
wrk_run $(( conns > 1 ? 2 : 1 )) "$conns" "${DUR:-20}" >"$tmp/wrk.out"
sleep 4
callgrind_control -d "$apid" >/dev/null
sleep 1
calls=$(calls_of "$tmp/wrk.out")
echo "calls $calls"
for f in "$out"/cg.out.*; do
  case "$f" in *.1-*) ;; *) continue ;; esac
  total=$(grep -m1 '^summary:\|^totals:' "$f" | awk '{print $2}')
  [ "${total:-0}" -gt 100000 ] || continue
  top=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -12)
  name=other
  case "$top" in *ProxySession*|*io_context::run*) name=arb-io ;; esac
  case "$top" in *ScoreStore::writer_loop*) name=arb-scores ;; esac
  case "$top" in *RequestLog::storage_loop*) name=arb-storage ;; esac
  case "$top" in *EvaluatorRuntime::worker_loop*) name=arb-eval ;; esac
  case "$top" in *BGWorkFlush*) name=rocksdb-flush ;; esac
  case "$top" in *BGWorkCompaction*) name=rocksdb-compact ;; esac
  echo "$name $total"
done | awk -v c="$calls" '{s[$1]+=$2; all+=$2} END {for (k in s) printf "%-16s %8.1fk\n", k, s[k]/c/1000; printf "%-16s %8.1fk\n", "all", all/c/1000}'
