#!/usr/bin/env bash
# c1_modes.sh MODE...: one fake upstream; for each MODE (direct | off | log | eval) a fresh
# arbiter (2 threads; request log off, on, or on with response_length), 3 s at 64 connections,
# DRAIN seconds of rest (default 3), then DUR seconds (default 6) of wrk at one connection:
# wrk's corrected p50 / p90 / p99 and mean. ARBITER_BIN picks the binary.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
ARBITER_BIN=${ARBITER_BIN:-$root/build/release/arbiter}
. "$root/bench/probes/common.sh"
start_fake
for mode in "$@"; do
  if [ "$mode" = direct ]; then
    proxy=$upstream
    r=$(wrk_run 1 1 "${DUR:-6}" | grep BENCH)
  else
    case "$mode" in
      off) write_config 2 false 0 ;;
      log) write_config 2 true 0 ;;
      eval) write_config 2 true 1 ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    start_arbiter
    wrk_run 2 64 3 >/dev/null
    sleep "${DRAIN:-3}"
    r=$(wrk_run 1 1 "${DUR:-6}" | grep BENCH)
    stop_arbiter; apid=
  fi
  echo "$mode $(echo "$r" | grep -o 'rps=[0-9.]*\|mean_us=[0-9.]*\|p50_us=[0-9]*\|p90_us=[0-9]*\|p99_us=[0-9]*' | tr '\n' ' ')"
done
