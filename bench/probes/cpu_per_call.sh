#!/usr/bin/env bash
# cpu_per_call.sh: a fresh arbiter (log + response_length, 2 threads), a 2 s warm-up at 64
# connections, then DUR seconds (default 10) of wrk at CONNS connections (default 64): calls/s,
# each thread's user and system CPU per call (/proc), the fake upstream's CPU per call, and
# system calls per call (perf stat), or with MODE=trace the calls by name (perf trace -s).
# ARBITER_BIN picks the binary (default build/release/arbiter).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
ARBITER_BIN=${ARBITER_BIN:-$root/build/release/arbiter}
. "$root/bench/probes/common.sh"
conns=${CONNS:-64}
start_fake
write_config 2 true 1
start_arbiter
wrk_run 2 64 2 >/dev/null
sleep 2
snap() {
  for t in /proc/$apid/task/*; do echo "$(cat "$t/comm") $(awk '{print $14, $15}' "$t/stat")"; done |
    awk '{u[$1]+=$2; k[$1]+=$3} END {for (x in u) print x, u[x], k[x]}' | sort
}
snap >"$tmp/s0"
if [ "${MODE:-}" = trace ]; then
  perf trace -s -p "$apid" -o "$tmp/trace.txt" & tpid=$!
else
  perf stat -e raw_syscalls:sys_enter -p "$apid" -o "$tmp/stat.txt" & tpid=$!
fi
f0=$(awk '{print $14+$15}' /proc/$fpid/stat)
wrk_run $(( conns > 1 ? 2 : 1 )) "$conns" "${DUR:-10}" >"$tmp/wrk.out"
kill -INT $tpid; wait $tpid 2>/dev/null
snap >"$tmp/s1"
f1=$(awk '{print $14+$15}' /proc/$fpid/stat)
calls=$(calls_of "$tmp/wrk.out")
grep -E 'Requests/sec' "$tmp/wrk.out"
tick=$(getconf CLK_TCK)
echo "calls $calls  fake upstream CPU per call $(( (f1 - f0) * 1000000000 / tick / calls )) ns"
join "$tmp/s0" "$tmp/s1" | awk -v c="$calls" -v t="$tick" '{du=$4-$2; ds=$5-$3; if (du+ds>0) printf "  %-16s %7.1f us/call (user %5.1f sys %5.1f)\n", $1, (du+ds)*1e6/t/c, du*1e6/t/c, ds*1e6/t/c; s+=du+ds} END {printf "  %-16s %7.1f us/call\n", "all", s*1e6/t/c}'
if [ "${MODE:-}" = trace ]; then
  grep -E '^\s+[a-z_0-9]+\s+[0-9]' "$tmp/trace.txt" |
    awk -v c="$calls" '{a[$1]+=$2} END {for (k in a) printf "  %-20s %6.2f /call\n", k, a[k]/c}' | sort -k2 -nr | head -20
else
  grep sys_enter "$tmp/stat.txt" | awk -v c="$calls" '{gsub(",","",$1); printf "  syscalls/call %.2f\n", $1/c}'
fi
