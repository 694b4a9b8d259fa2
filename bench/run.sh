#!/usr/bin/env bash
# bench/run.sh — arbiter vs nginx proxy_pass vs the direct path, in one run on this machine
# (DESIGN.md §9). See bench/README.md for what is measured and how to read it.
#
#   bench/run.sh [--duration S] [--quick] [--out FILE] [--threads N] [--upstream-threads N]
#                [--no-request-log] [--webhook] [--evaluators N] [--evaluator-sampling P]
#
#   --duration S          seconds per measured wrk run (default 10)
#   --quick               1 s runs and no warm-up: a smoke test, not a measurement
#   --out FILE            also write the results as JSON to FILE
#   --threads N           arbiter I/O threads = nginx worker_processes (default 2)
#   --upstream-threads N  fake upstream threads (default 1, see README)
#   --no-request-log      run arbiter with storage.log_requests: false (proxy only), to measure
#                         what the request log costs; by default arbiter logs as configured
#   --webhook             also configure one webhook (request.logged, with bodies) delivering
#                         every call to the fake upstream's echo route, to measure its cost
#   --evaluators N        also run a second arbiter ("arbiter_ev") with N built-in evaluators
#                         configured (1-10, the local kinds, all scoring every request), measured
#                         side by side with the plain one, and report its evaluator counters
#   --evaluator-sampling P  their `sampling` percentage (default 100: every request, each)
#
# Environment: ARBITER_BIN and FAKE_UPSTREAM_BIN select the binaries; when both are set the
# script does not build (ctest passes the build's own binaries that way). Otherwise it builds
# the release preset (build/release) if needed.
#
# Exit status: 0 when every run completed with only 2xx responses and no socket errors;
# 1 otherwise (including non-2xx responses). A missed performance budget is reported, not an error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

duration=10
quick=0
out=""
threads=2
upstream_threads=1
key="bench-key"
request_log=1
webhook=0
evaluators=0
evaluator_sampling=100

usage() { sed -n '3,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --upstream-threads) upstream_threads=${2:?--upstream-threads needs a value}; shift 2 ;;
    --no-request-log) request_log=0; shift ;;
    --webhook) webhook=1; shift ;;
    --evaluators) evaluators=${2:?--evaluators needs a value}; shift 2 ;;
    --evaluator-sampling) evaluator_sampling=${2:?--evaluator-sampling needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$duration" "$threads" "$upstream_threads"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: '$v' is not a positive integer" >&2; exit 2; }
done
[[ "$evaluators" =~ ^([0-9]|10)$ ]] || { echo "run.sh: --evaluators takes 0-10" >&2; exit 2; }
[[ "$evaluator_sampling" =~ ^([0-9]|[1-9][0-9]|100)$ ]] ||
  { echo "run.sh: --evaluator-sampling takes 0-100" >&2; exit 2; }
warmup=2
if [ "$quick" = 1 ]; then duration=1; warmup=0; fi
if [ -n "$out" ]; then
  case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
fi

log() { echo "[bench] $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools and binaries
find_tool() {  # nginx lives in /usr/sbin, which is not on every PATH
  command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}
WRK=$(find_tool wrk); NGINX=$(find_tool nginx); CURL=$(find_tool curl)
if [ -z "$WRK" ] || [ -z "$NGINX" ] || [ -z "$CURL" ]; then
  log "installing missing tools (scripts/deps.sh bench)"
  "$root/scripts/deps.sh" bench
  WRK=$(find_tool wrk); NGINX=$(find_tool nginx); CURL=$(find_tool curl)
fi
[ -n "$WRK" ] && [ -n "$NGINX" ] && [ -n "$CURL" ] || die "wrk, nginx and curl are required"
command -v python3 >/dev/null || die "python3 is required (free-port picking)"

# ---------------------------------------------------------------- processes and cleanup
tmp=$(mktemp -d "${TMPDIR:-/tmp}/arbiter-bench.XXXXXX")
pids=()
cleanup() {
  local rc=$? pid deadline kids=() more=()
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    # nginx workers are children of the master; remember them in case the master must be killed
    read -r -a more <<<"$(cat "/proc/$pid/task/"*/children 2>/dev/null || true)"
    kids+=("${more[@]}")
    kill -TERM "$pid" 2>/dev/null || true
  done
  deadline=$((SECONDS + 5))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
      log "process $pid did not stop on SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  for pid in "${kids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${ARBITER_BIN:-}" ] || [ -z "${FAKE_UPSTREAM_BIN:-}" ]; then
  log "building the release preset (build/release) if needed"
  build_log="$tmp/build.log"
  if ! (
    cd "$root"
    [ -f build/release/CMakeCache.txt ] || cmake --preset release
    cmake --build --preset release --target arbiter fake_upstream
  ) >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die "build failed"
  fi
  ARBITER_BIN=${ARBITER_BIN:-$root/build/release/arbiter}
  FAKE_UPSTREAM_BIN=${FAKE_UPSTREAM_BIN:-$root/build/release/fake_upstream}
fi
[ -x "$ARBITER_BIN" ] || die "not executable: $ARBITER_BIN"
[ -x "$FAKE_UPSTREAM_BIN" ] || die "not executable: $FAKE_UPSTREAM_BIN"

show_logs() {  # the temp dir goes away at exit: put the logs on stderr first
  local f
  for f in "$tmp"/*.out "$tmp"/*.err "$tmp"/nginx/error.log; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  return 0
}
fail_start() { show_logs; die "$*"; }

# Prints the address of the first stdout line of FILE that contains PATTERN, waiting up to 10 s
# while PID lives.
wait_listening() {
  local file=$1 pattern=$2 pid=$3 deadline=$((SECONDS + 10)) addr
  while [ "$SECONDS" -lt "$deadline" ]; do
    addr=$(grep -F "$pattern" "$file" 2>/dev/null | head -n1 |
           sed -n 's/.*"address":"\([^"]*\)".*/\1/p')
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rss_kib() { awk -v k="${2:-VmRSS}:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
children() { cat "/proc/$1/task/"*/children 2>/dev/null || true; }
# CPU time (utime+stime, in clock ticks) of the given pids together.
cpu_ticks() {
  local total=0 p f
  for p in "$@"; do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }  # drop "pid (comm) "; fields now start at state (field 3)
    set -- $f
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
clk_tck=$(getconf CLK_TCK)
# "busy all" clock ticks of the whole machine (all CPUs), from /proc/stat
machine_ticks() {
  awk '$1 == "cpu" { all = 0; for (i = 2; i <= 9; i++) all += $i;
                     print all - $5 - $6, all; exit }' /proc/stat
}
# CPU ticks of everything this script started, wrk included (children this shell has waited
# for show up in its cutime/cstime, fields 16 and 17 of /proc/$$/stat).
ours_ticks() {
  local f
  f=$(cat "/proc/$$/stat"); f=${f##*) }; set -- $f
  echo $(( ${14} + ${15} + $(cpu_ticks "$fake_pid" "$nginx_pid" $nginx_workers "$arbiter_pid" ${arbiter_ev_pid:-}) ))
}

# How busy is the machine? The load average lags, so also sample the CPU idle share for 1 s.
cpu_idle_pct() {
  local a b
  read -r -a a </proc/stat; sleep 1; read -r -a b </proc/stat
  awk -v i="$(( (b[4] + b[5]) - (a[4] + a[5]) ))" \
      -v t="$(( (b[1]+b[2]+b[3]+b[4]+b[5]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[4]+a[5]+a[6]+a[7]+a[8]) ))" \
      'BEGIN { printf "%.0f", (t > 0 ? 100 * i / t : 0) }'
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
idle_before=$(cpu_idle_pct)
log "load average before: $load_before, CPU idle over the last second: ${idle_before}% (nproc $(nproc))"
if [ "$idle_before" -lt 80 ]; then
  log "warning: other work is using the CPUs (${idle_before}% idle); figures will be noisy"
fi

# fake upstream
"$FAKE_UPSTREAM_BIN" --host 127.0.0.1 --port 0 --threads "$upstream_threads" \
  >"$tmp/fake.out" 2>"$tmp/fake.err" &
fake_pid=$!; pids+=("$fake_pid")
fake_addr=$(wait_listening "$tmp/fake.out" '"listening"' "$fake_pid") ||
  fail_start "fake upstream did not start"

# nginx
mkdir -p "$tmp/nginx"
nginx_port=$(free_port)
cat >"$tmp/nginx/nginx.conf" <<EOF
# generated by bench/run.sh
worker_processes $threads;
daemon off;
master_process on;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/client_body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  # wrk keeps its connections for the whole run; don't make nginx close them every 1000 requests
  # (arbiter does not), so nginx is measured at its best.
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  upstream fake {
    server $fake_addr;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # arbiter streams both bodies; make nginx stream them too
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
EOF
"$NGINX" -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" \
  >"$tmp/nginx.out" 2>"$tmp/nginx.err" &
nginx_pid=$!; pids+=("$nginx_pid")
nginx_addr="127.0.0.1:$nginx_port"

# arbiter
mkdir -p "$tmp/arbiter"
cat >"$tmp/arbiter/arbiter.yaml" <<EOF
server: { proxy_listen: 127.0.0.1:0, api_listen: 127.0.0.1:0, threads: $threads, log_level: warn }
storage: { path: $tmp/arbiter/data$([ "$request_log" = 1 ] || echo ", log_requests: false") }
upstreams: [ { name: openai, base_url: "http://$fake_addr" } ]
projects: [ { name: bench, api_keys: [ "$key" ] } ]
EOF
if [ "$webhook" = 1 ]; then
  # The fake upstream answers any other path with a 200 echo: it doubles as the receiver.
  cat >>"$tmp/arbiter/arbiter.yaml" <<EOF
webhooks:
  - { name: bench, url: "http://$fake_addr/webhook", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,
      allow_insecure: true, include_bodies: true }
EOF
fi
"$ARBITER_BIN" --config "$tmp/arbiter/arbiter.yaml" >"$tmp/arbiter.out" 2>"$tmp/arbiter.err" &
arbiter_pid=$!; pids+=("$arbiter_pid")
arbiter_addr=$(wait_listening "$tmp/arbiter.out" '"listener":"proxy"' "$arbiter_pid") ||
  fail_start "arbiter did not start"
arbiter_api=$(wait_listening "$tmp/arbiter.out" '"listener":"api"' "$arbiter_pid") ||
  fail_start "arbiter's API did not start"

# arbiter with evaluators: the same config plus N local built-in evaluators, each scoring every
# request (comparison kinds compare the answer with the user's message).
arbiter_ev_pid=""
if [ "$evaluators" -gt 0 ]; then
  mkdir -p "$tmp/arbiter_ev"
  kinds=(
    "{ name: e_length, kind: response_length }"
    "{ name: e_lev, kind: levenshtein, params: { reference: inputs.messages.0.content } }"
    "{ name: e_rouge, kind: rouge_l, params: { reference: inputs.messages.0.content } }"
    "{ name: e_bleu, kind: bleu, params: { reference: inputs.messages.0.content } }"
    "{ name: e_flesch, kind: flesch_reading_ease }"
    "{ name: e_keys, kind: json_key_coverage, params: { required_keys: [ a ] } }"
    "{ name: e_kw, kind: keywords, params: { keywords: [ hello ] } }"
    "{ name: e_tps, kind: tokens_per_second }"
    "{ name: e_schema, kind: json_schema, params: { schema: { type: object } } }"
    "{ name: e_sql, kind: sql_parse }"
  )
  {
    sed "s#$tmp/arbiter/data#$tmp/arbiter_ev/data#" "$tmp/arbiter/arbiter.yaml"
    echo "evaluators:"
    for ((i = 0; i < evaluators; i++)); do
      echo "  - ${kinds[$i]%\}}, sampling: $evaluator_sampling }"
    done
  } >"$tmp/arbiter_ev/arbiter.yaml"
  "$ARBITER_BIN" --config "$tmp/arbiter_ev/arbiter.yaml" >"$tmp/arbiter_ev.out" 2>"$tmp/arbiter_ev.err" &
  arbiter_ev_pid=$!; pids+=("$arbiter_ev_pid")
  arbiter_ev_addr=$(wait_listening "$tmp/arbiter_ev.out" '"listener":"proxy"' "$arbiter_ev_pid") ||
    fail_start "arbiter with evaluators did not start"
  arbiter_ev_api=$(wait_listening "$tmp/arbiter_ev.out" '"listener":"api"' "$arbiter_ev_pid") ||
    fail_start "arbiter with evaluators did not start its api listener"
fi

# nginx prints nothing when ready: wait for its port to accept connections
deadline=$((SECONDS + 10))
until (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null; do
  kill -0 "$nginx_pid" 2>/dev/null || fail_start "nginx exited"
  [ "$SECONDS" -lt "$deadline" ] || fail_start "nginx did not start listening on $nginx_addr"
  sleep 0.05
done
nginx_workers=$(children "$nginx_pid")
[ -n "$nginx_workers" ] || fail_start "nginx has no worker processes"
log "direct=$fake_addr nginx=$nginx_addr arbiter=$arbiter_addr threads=$threads upstream_threads=$upstream_threads"

# Idle memory, before any request.
sleep 0.5
nginx_rss_sum() { local t=0 p; for p in "$nginx_pid" $nginx_workers; do t=$((t + $(rss_kib "$p"))); done; echo "$t"; }
arbiter_rss_idle=$(rss_kib "$arbiter_pid")
nginx_rss_idle=$(nginx_rss_sum)

# ---------------------------------------------------------------- measurement
targets=(direct nginx arbiter)
declare -A addr=([direct]=$fake_addr [nginx]=$nginx_addr [arbiter]=$arbiter_addr)
if [ -n "$arbiter_ev_pid" ]; then
  targets+=(arbiter_ev)
  addr[arbiter_ev]=$arbiter_ev_addr
fi
declare -A R=()
failures=0

body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
for t in "${targets[@]}"; do
  code=$("$CURL" -sS --max-time 5 -o "$tmp/sanity-$t.json" -w '%{http_code}' \
           -H 'Content-Type: application/json' -H "Helicone-Auth: Bearer $key" \
           --data "$body" "http://${addr[$t]}/v1/chat/completions") || code=000
  if [ "$code" != 200 ] || ! grep -q '"chat.completion"' "$tmp/sanity-$t.json"; then
    head -c 500 "$tmp/sanity-$t.json" >&2 2>/dev/null || true
    fail_start "sanity request to $t (${addr[$t]}) failed: HTTP $code"
  fi
done

# wrk's text output, for the fallbacks: a time like 1.23ms in microseconds
to_us_awk='function to_us(s,  n, u) { n = s + 0; u = s; sub(/^[0-9.]+/, "", u);
  if (u == "us") return n; if (u == "ms") return n * 1000; if (u == "s") return n * 1000000;
  if (u == "m") return n * 60000000; if (u == "h") return n * 3600000000; return -1 }'

# bench_field FILE KEY: a value from chat.lua's "BENCH k=v ..." line
bench_field() { awk -v k="$2" '$1 == "BENCH" { for (i = 2; i <= NF; i++) { split($i, kv, "=");
  if (kv[1] == k) { print kv[2]; exit } } }' "$1"; }

# Waits (up to 120 s) until arbiter_ev's evaluators have no queued or running run, so that
# its workers never compete for the CPUs with another target's measured run.
drain_evaluators() {
  [ -n "$arbiter_ev_pid" ] || return 0
  local deadline=$((SECONDS + 120)) busy
  while [ "$SECONDS" -lt "$deadline" ]; do
    busy=$("$CURL" -sS --max-time 5 "http://$arbiter_ev_api/metrics" 2>/dev/null |
           awk '$1 == "arbiter_evaluator_queue_depth" || index($1, "arbiter_evaluator_running{") == 1 { s += $2 }
                END { printf "%d", s }')
    [ "${busy:-1}" -eq 0 ] && return 0
    sleep 0.2
  done
  log "warning: arbiter_ev's evaluators are still busy after 120 s"
}

# run_wrk TARGET LABEL THREADS CONNS SECONDS: runs wrk, checks for errors, sets R[TARGET.LABEL.*]
run_wrk() {
  local t=$1 label=$2 wt=$3 conns=$4 secs=$5
  drain_evaluators
  local f="$tmp/wrk-$t-$label.txt" url="http://${addr[$t]}"
  local p p_ngx c0 u0 c1 u1 m0 m1 o0 o1
  p_ngx="$nginx_pid $nginx_workers"
  case "$t" in arbiter) p="$arbiter_pid" ;; arbiter_ev) p="$arbiter_ev_pid" ;; nginx) p="$p_ngx" ;; *) p="" ;; esac
  c0=$(cpu_ticks $p); u0=$(cpu_ticks "$fake_pid"); m0=$(machine_ticks); o0=$(ours_ticks)
  if ! BENCH_KEY=$key timeout -k 5 $((secs + 30)) "$WRK" -t"$wt" -c"$conns" -d"${secs}s" \
         --timeout 5s --latency -s "$here/chat.lua" "$url" >"$f" 2>&1; then
    cat "$f" >&2
    die "wrk failed against $t"
  fi
  c1=$(cpu_ticks $p); u1=$(cpu_ticks "$fake_pid"); m1=$(machine_ticks); o1=$(ours_ticks)
  # CPU used by other work on the machine during the run, as a share of all CPUs
  local foreign
  foreign=$(awk -v busy=$(( ${m1% *} - ${m0% *} )) -v all=$(( ${m1#* } - ${m0#* } )) \
                -v ours=$((o1 - o0)) 'BEGIN { f = all > 0 ? 100 * (busy - ours) / all : 0;
                                          printf "%.0f", (f < 0 ? 0 : f) }')
  [ "$label" = warmup ] && { check_errors "$t" "$label" "$f"; return 0; }

  local rps p50 p99 reqs
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$f")
  [ -n "$rps" ] || rps=$(bench_field "$f" rps)
  p50=$(bench_field "$f" p50_us); p99=$(bench_field "$f" p99_us)
  # fallback: the --latency table ("     50%  123.45us")
  [ -n "$p50" ] || p50=$(awk "$to_us_awk"' $1 == "50%" { print to_us($2); exit }' "$f")
  [ -n "$p99" ] || p99=$(awk "$to_us_awk"' $1 == "99%" { print to_us($2); exit }' "$f")
  reqs=$(bench_field "$f" requests)
  [ -n "$rps" ] && [ -n "$p50" ] && [ -n "$p99" ] && [ -n "$reqs" ] || {
    cat "$f" >&2; die "could not parse wrk output ($t $label)"; }
  R[$t.$label.rps]=$rps
  R[$t.$label.p50]=$p50
  R[$t.$label.p99]=$p99
  R[$t.$label.p999]=$(bench_field "$f" p999_us)
  R[$t.$label.mean]=$(bench_field "$f" mean_us)
  R[$t.$label.requests]=$reqs
  if [ -n "$p" ] && [ "$reqs" -gt 0 ]; then
    R[$t.$label.proxy_cpu_us]=$(awk -v d=$((c1 - c0)) -v hz="$clk_tck" -v n="$reqs" \
                                  'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
  fi
  [ "$reqs" -gt 0 ] && R[$t.$label.upstream_cpu_us]=$(awk -v d=$((u1 - u0)) -v hz="$clk_tck" \
                         -v n="$reqs" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
  R[$t.$label.foreign_cpu_pct]=$foreign
  check_errors "$t" "$label" "$f"
  log "$(printf '%-10s %-4s rps=%-10s p50=%sus p99=%sus  (other work: %s%% CPU)' \
           "$t" "$label" "$rps" "$p50" "$p99" "$foreign")"
}

# Non-2xx responses and socket errors are failures: the figures would not be comparable.
check_errors() {
  local t=$1 label=$2 f=$3 e n total=0
  for e in err_connect err_read err_write err_status err_timeout; do
    n=$(bench_field "$f" "$e"); total=$((total + ${n:-0}))
  done
  grep -q '^ *Non-2xx or 3xx responses:' "$f" && total=$((total + 1))
  grep -q '^ *Socket errors:' "$f" && total=$((total + 1))
  R[$t.$label.errors]=$total
  if [ "$total" -gt 0 ]; then
    failures=$((failures + 1))
    log "FAILURE: $t ($label) had errors:"
    grep -E '^ *(Non-2xx|Socket errors)|^BENCH' "$f" >&2 || true
  fi
}

if [ "$warmup" -gt 0 ]; then
  log "warm-up: ${warmup}s at 64 connections per target"
  for t in "${targets[@]}"; do run_wrk "$t" warmup 2 64 "$warmup"; done
fi
log "throughput: wrk -t2 -c64 -d${duration}s"
for t in "${targets[@]}"; do run_wrk "$t" c64 2 64 "$duration"; done
log "latency: wrk -t1 -c1 -d${duration}s"
for t in "${targets[@]}"; do run_wrk "$t" c1 1 1 "$duration"; done

# The evaluators' own figures: how many runs completed, failed or found the queue full.
ev_metric() {  # sum of an arbiter_evaluator_* counter over all evaluators
  "$CURL" -sS --max-time 5 "http://$arbiter_ev_api/metrics" 2>/dev/null |
    awk -v m="$1" 'index($1, m "{") == 1 { s += $2 } END { printf "%d", s }'
}
if [ -n "$arbiter_ev_pid" ]; then
  kill -0 "$arbiter_ev_pid" 2>/dev/null || { show_logs; die "arbiter with evaluators died during the run"; }
  ev_completed=$(ev_metric arbiter_evaluator_completed_total)
  ev_errors=$(ev_metric arbiter_evaluator_errors_total)
  ev_queue_full=$(ev_metric arbiter_evaluator_queue_full_total)
  ev_matched=$(ev_metric arbiter_evaluator_matched_total)
  ev_rss_after=$(rss_kib "$arbiter_ev_pid")
fi

arbiter_rss_after=$(rss_kib "$arbiter_pid")
# Webhook counters once the runs are over (deliveries may still be draining).
metric() { "$CURL" -sS --max-time 5 "http://$arbiter_api/metrics" 2>/dev/null |
           awk -v m="$1" '$1 == m { print $2; exit }'; }
if [ "$webhook" = 1 ]; then
  wh_enqueued=$(metric 'arbiter_webhook_enqueued_total{webhook="bench"}')
  wh_delivered=$(metric 'arbiter_webhook_delivered_total{webhook="bench"}')
  wh_failed=$(metric 'arbiter_webhook_failed_attempts_total{webhook="bench"}')
fi
arbiter_rss_peak=$(rss_kib "$arbiter_pid" VmHWM)
nginx_rss_after=$(nginx_rss_sum)
kill -0 "$arbiter_pid" 2>/dev/null || { show_logs; die "arbiter died during the run"; }
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
ratio_rps=$(calc %.3f "${R[arbiter.c64.rps]} / ${R[nginx.c64.rps]}")
nginx_ratio_rps=$(calc %.3f "${R[nginx.c64.rps]} / ${R[direct.c64.rps]}")
arbiter_vs_direct_rps=$(calc %.3f "${R[arbiter.c64.rps]} / ${R[direct.c64.rps]}")
add_a50=$(calc %d "${R[arbiter.c1.p50]} - ${R[direct.c1.p50]}")
add_a99=$(calc %d "${R[arbiter.c1.p99]} - ${R[direct.c1.p99]}")
add_n50=$(calc %d "${R[nginx.c1.p50]} - ${R[direct.c1.p50]}")
add_n99=$(calc %d "${R[nginx.c1.p99]} - ${R[direct.c1.p99]}")
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }
ok_rps=$(verdict "$ratio_rps >= 0.8")
ok_p50=$(verdict "$add_a50 <= 50")
ok_p99=$(verdict "$add_a99 <= 150")
ok_rss=$(verdict "$arbiter_rss_idle <= 65536")

{
  echo
  echo "arbiter bench: ${duration}s runs, $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), threads=$threads, upstream threads=$upstream_threads, request log $([ "$request_log" = 1 ] && echo "as configured (default on)" || echo off), webhook $([ "$webhook" = 1 ] && echo on || echo off)"
  echo "load average before: $load_before   after: $load_after   CPU idle before: ${idle_before}%"
  echo
  printf '%-10s %11s %10s %10s %11s %10s %11s %20s %9s\n' target 'rps@64' 'p50@1 us' 'p99@1 us' \
    'p99.9@1 us' 'rps@1' 'cpu/req us' 'RSS idle/after KiB' 'other %'
  for t in "${targets[@]}"; do
    case "$t" in
      arbiter) rss="$arbiter_rss_idle / $arbiter_rss_after" ;;
      nginx) rss="$nginx_rss_idle / $nginx_rss_after" ;;
      *) rss="-" ;;
    esac
    printf '%-10s %11s %10s %10s %11s %10s %11s %20s %9s\n' "$t" "${R[$t.c64.rps]}" "${R[$t.c1.p50]}" \
      "${R[$t.c1.p99]}" "${R[$t.c1.p999]:--}" "${R[$t.c1.rps]}" "${R[$t.c64.proxy_cpu_us]:--}" "$rss" \
      "${R[$t.c64.foreign_cpu_pct]}/${R[$t.c1.foreign_cpu_pct]}"
  done
  echo "(cpu/req: the proxy's own user+system CPU per request during the 64-connection run;"
  echo " nginx counts master and workers. RSS for nginx is master + workers. other %: CPU used by"
  echo " other work on the machine during the @64/@1 runs, as a share of all CPUs; above ~5 the"
  echo " figures are disturbed.)"
  echo
  echo "arbiter rps / nginx rps      : $ratio_rps   (budget >= 0.8)  $ok_rps"
  echo "nginx rps / direct rps       : $nginx_ratio_rps"
  echo "arbiter rps / direct rps     : $arbiter_vs_direct_rps"
  echo "arbiter added p50 vs direct  : $add_a50 us   (budget <= 50 us)  $ok_p50"
  echo "arbiter added p99 vs direct  : $add_a99 us   (budget <= 150 us)  $ok_p99"
  echo "nginx added p50 vs direct    : $add_n50 us"
  echo "nginx added p99 vs direct    : $add_n99 us"
  echo "arbiter RSS idle / after / peak: $arbiter_rss_idle / $arbiter_rss_after / $arbiter_rss_peak KiB   (idle budget <= 64 MiB)  $ok_rss"
  if [ "$webhook" = 1 ]; then
    echo "webhook: ${wh_enqueued:-?} deliveries enqueued, ${wh_delivered:-?} delivered by the end of the runs, ${wh_failed:-?} failed attempts"
  fi
  if [ -n "$arbiter_ev_pid" ]; then
    echo
    echo "arbiter_ev: the same arbiter with $evaluators evaluators configured (sampling $evaluator_sampling%)"
    echo "arbiter_ev added p50 vs arbiter: $(calc %d "${R[arbiter_ev.c1.p50]} - ${R[arbiter.c1.p50]}") us, added p99: $(calc %d "${R[arbiter_ev.c1.p99]} - ${R[arbiter.c1.p99]}") us"
    echo "arbiter_ev rps / arbiter rps : $(calc %.3f "${R[arbiter_ev.c64.rps]} / ${R[arbiter.c64.rps]}")"
    echo "evaluator runs: matched $ev_matched, completed $ev_completed, errors $ev_errors (of which queue full $ev_queue_full); RSS after $ev_rss_after KiB"
  fi
  disturbed=$(for t in "${targets[@]}"; do echo "${R[$t.c64.foreign_cpu_pct]}"; echo "${R[$t.c1.foreign_cpu_pct]}"; done |
              sort -n | tail -n1)
  if [ "$disturbed" -gt 5 ]; then
    echo "WARNING: other work used up to ${disturbed}% of the CPUs during a measured run: these"
    echo "         figures are disturbed; re-run when the machine is quiet."
  fi
  [ "$failures" -eq 0 ] || echo "FAILURES: $failures run(s) had non-2xx responses or socket errors"
}

# ---------------------------------------------------------------- JSON
if [ -n "$out" ]; then
  num() { [ -n "${1:-}" ] && echo "$1" || echo null; }
  target_json() {
    local t=$1 extra=""
    case "$t" in
      arbiter) extra=", \"rss_idle_kib\": $arbiter_rss_idle, \"rss_after_kib\": $arbiter_rss_after, \"rss_peak_kib\": $arbiter_rss_peak" ;;
      nginx) extra=", \"rss_idle_kib\": $nginx_rss_idle, \"rss_after_kib\": $nginx_rss_after" ;;
    esac
    printf '    "%s": {"address": "%s", "rps_c64": %s, "p50_us_c1": %s, "p99_us_c1": %s, ' \
      "$t" "${addr[$t]}" "${R[$t.c64.rps]}" "${R[$t.c1.p50]}" "${R[$t.c1.p99]}"
    printf '"p999_us_c1": %s, "mean_us_c1": %s, "rps_c1": %s, "p50_us_c64": %s, "p99_us_c64": %s, ' \
      "$(num "${R[$t.c1.p999]:-}")" "$(num "${R[$t.c1.mean]:-}")" "${R[$t.c1.rps]}" \
      "${R[$t.c64.p50]}" "${R[$t.c64.p99]}"
    printf '"requests_c64": %s, "requests_c1": %s, "proxy_cpu_us_per_req_c64": %s, ' \
      "${R[$t.c64.requests]}" "${R[$t.c1.requests]}" "$(num "${R[$t.c64.proxy_cpu_us]:-}")"
    printf '"other_work_cpu_pct_c64": %s, "other_work_cpu_pct_c1": %s, ' \
      "${R[$t.c64.foreign_cpu_pct]}" "${R[$t.c1.foreign_cpu_pct]}"
    printf '"upstream_cpu_us_per_req_c64": %s, "errors": %s%s}' \
      "$(num "${R[$t.c64.upstream_cpu_us]:-}")" "$(( ${R[$t.c64.errors]} + ${R[$t.c1.errors]} ))" "$extra"
  }
  cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1 | tr -d '"\\')
  {
    echo "{"
    echo "  \"timestamp\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"duration_s\": $duration, \"quick\": $([ "$quick" = 1 ] && echo true || echo false),"
    echo "  \"threads\": $threads, \"upstream_threads\": $upstream_threads, \"request_log\": $([ "$request_log" = 1 ] && echo true || echo false),"
    if [ "$webhook" = 1 ]; then
      echo "  \"webhook\": {\"enqueued\": $(num "${wh_enqueued:-}"), \"delivered\": $(num "${wh_delivered:-}"), \"failed_attempts\": $(num "${wh_failed:-}")},"
    else
      echo "  \"webhook\": null,"
    fi
    echo "  \"machine\": {\"nproc\": $(nproc), \"cpu\": \"$cpu_model\", \"kernel\": \"$(uname -r)\","
    echo "              \"loadavg_before\": \"$load_before\", \"loadavg_after\": \"$load_after\","
    echo "              \"cpu_idle_pct_before\": $idle_before},"
    echo "  \"targets\": {"
    target_json direct; echo ","
    target_json nginx; echo ","
    target_json arbiter
    if [ -n "$arbiter_ev_pid" ]; then
      echo ","; target_json arbiter_ev
    fi
    echo
    echo "  },"
    if [ -n "$arbiter_ev_pid" ]; then
      echo "  \"evaluators\": {\"configured\": $evaluators, \"sampling\": $evaluator_sampling, \"matched\": $ev_matched, \"completed\": $ev_completed, \"errors\": $ev_errors, \"queue_full\": $ev_queue_full, \"rss_after_kib\": $ev_rss_after},"
    fi
    echo "  \"ratios\": {\"arbiter_rps_over_nginx\": $ratio_rps, \"nginx_rps_over_direct\": $nginx_ratio_rps,"
    echo "             \"arbiter_rps_over_direct\": $arbiter_vs_direct_rps,"
    echo "             \"arbiter_added_p50_us\": $add_a50, \"arbiter_added_p99_us\": $add_a99,"
    echo "             \"nginx_added_p50_us\": $add_n50, \"nginx_added_p99_us\": $add_n99},"
    echo "  \"budget\": {\"throughput\": \"$ok_rps\", \"added_p50\": \"$ok_p50\", \"added_p99\": \"$ok_p99\", \"idle_rss\": \"$ok_rss\"},"
    echo "  \"failures\": $failures"
    echo "}"
  } >"$out.tmp.$$"
  mv "$out.tmp.$$" "$out"
  log "wrote $out"
fi

[ "$failures" -eq 0 ] || exit 1
