#!/usr/bin/env bash
# bench/run.sh — arbiter vs nginx proxy_pass vs the direct path, in one run on this machine
# (DESIGN.md §9). See bench/README.md for what is measured and how to read it.
#
#   bench/run.sh [--duration S] [--rounds N] [--quick] [--out FILE] [--threads N] [--upstream-threads N]
#                [--no-request-log] [--no-evaluator] [--webhook] [--evaluators N]
#                [--evaluator-sampling P] [--portkey | --no-portkey] [--no-stream]
#                [--streams N] [--ttft-requests N] [--soak SECONDS] [--soak-interval S]
#                [--soak-conns N] [--soak-delay-ms MS] [--overload SECONDS]
#
#   --duration S          seconds per measured wrk run (default 10)
#   --rounds N            throughput rounds: each runs every target once at 64 connections, in
#                         turn; figures are medians over the rounds and the throughput ratio the
#                         median of the rounds' own arbiter/nginx ratios (default 3; --quick: 1)
#   --quick               1 s runs, no warm-up, few streams: a smoke test, not a measurement
#   --out FILE            also write the results as JSON to FILE
#   --threads N           arbiter I/O threads = nginx worker_processes (default 2)
#   --upstream-threads N  fake upstream threads (default 1, see README)
#   --no-request-log      run arbiter with storage.log_requests: false and no evaluator (proxy
#                         only), to measure what logging costs. By default arbiter logs (the budget's case)
#   --no-evaluator        run arbiter without its evaluator. By default it has one, as the
#                         budget asks: response_length scoring every request (sampling 100)
#   --webhook             also configure one webhook (request.logged, with bodies) delivering
#                         every call to the fake upstream's echo route, to measure its cost
#   --evaluators N        also run a second arbiter ("arbiter_ev") with N built-in evaluators
#                         configured (1-10, the local kinds, all scoring every request), measured
#                         side by side with the plain one, and report its evaluator counters
#   --evaluator-sampling P  their `sampling` percentage (default 100: every request, each)
#   --background-nice N   server.background_nice for every arbiter (default 5)
#   --evaluator-sched-idle B  server.evaluator_sched_idle for every arbiter (true/false; default:
#                         arbiter's, true)
#   --portkey             also measure Portkey's gateway (bench/portkey, npm ci when needed).
#                         Default: on when bench/portkey/node_modules exists. --no-portkey: off
#   --no-stream           skip the streaming stage (added TTFT, memory per open stream)
#   --streams N           open streams in the hold test (default 1000; --quick: 50)
#   --ttft-requests N     streams per target in the TTFT test (default 2000; --quick: 100)
#   --soak SECONDS        also run the soak: a separate arbiter (log + evaluator + webhook) under
#                         steady paced load for SECONDS (600 for the real run), sampling RSS, open
#                         fds and threads; reports growth after the first minute (see README)
#   --soak-interval S     seconds between soak samples (default 10; --quick: 1)
#   --soak-conns N        soak load: wrk connections (default 8)
#   --soak-delay-ms MS    soak load: pause before each request per connection (default 4)
#   --overload SECONDS    also run the overload stage: a fresh arbiter (log + evaluator, and the
#                         webhook with --webhook) under
#                         wrk -t2 -c64 for SECONDS (30 for the real run), longer than the log's
#                         queue can absorb; reports records dropped and how long the
#                         evaluations took to catch up afterwards
#
# Environment: ARBITER_BIN, FAKE_UPSTREAM_BIN and STREAM_BENCH_BIN select the binaries; when all
# are set the script does not build (ctest passes the build's own binaries that way). Otherwise
# it builds the release preset (build/release) if needed.
#
# Exit status: 0 when every run completed with only 2xx responses and no socket errors;
# 1 otherwise (including non-2xx responses and failed streams). A missed performance budget is
# reported, not an error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

duration=10
rounds=""
quick=0
out=""
threads=2
upstream_threads=1
key="bench-key"
request_log=1
webhook=0
evaluators=0
evaluator_sampling=100
background_nice=
evaluator_sched_idle=
evaluator=1
portkey=auto
stream=1
streams=""
ttft_requests=""
soak=0
soak_interval=""
soak_conns=8
soak_delay_ms=4
overload=0

usage() { sed -n '3,44p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --upstream-threads) upstream_threads=${2:?--upstream-threads needs a value}; shift 2 ;;
    --no-request-log) request_log=0; shift ;;
    --webhook) webhook=1; shift ;;
    --evaluators) evaluators=${2:?--evaluators needs a value}; shift 2 ;;
    --evaluator-sampling) evaluator_sampling=${2:?--evaluator-sampling needs a value}; shift 2 ;;
    --background-nice) background_nice=${2:?--background-nice needs a value}; shift 2 ;;
    --evaluator-sched-idle) evaluator_sched_idle=${2:?--evaluator-sched-idle needs true or false}; shift 2 ;;
    --no-evaluator) evaluator=0; shift ;;
    --portkey) portkey=1; shift ;;
    --no-portkey) portkey=0; shift ;;
    --no-stream) stream=0; shift ;;
    --streams) streams=${2:?--streams needs a value}; shift 2 ;;
    --ttft-requests) ttft_requests=${2:?--ttft-requests needs a value}; shift 2 ;;
    --soak) soak=${2:?--soak needs a value}; shift 2 ;;
    --soak-interval) soak_interval=${2:?--soak-interval needs a value}; shift 2 ;;
    --soak-conns) soak_conns=${2:?--soak-conns needs a value}; shift 2 ;;
    --soak-delay-ms) soak_delay_ms=${2:?--soak-delay-ms needs a value}; shift 2 ;;
    --overload) overload=${2:?--overload needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
warmup=2
if [ "$quick" = 1 ]; then duration=1; warmup=0; fi
: "${rounds:=$([ "$quick" = 1 ] && echo 1 || echo 3)}"
: "${streams:=$([ "$quick" = 1 ] && echo 50 || echo 1000)}"
: "${ttft_requests:=$([ "$quick" = 1 ] && echo 100 || echo 2000)}"
: "${soak_interval:=$([ "$quick" = 1 ] && echo 1 || echo 10)}"
for v in "$duration" "$rounds" "$threads" "$upstream_threads" "$streams" "$ttft_requests" "$soak_interval" \
         "$soak_conns"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: '$v' is not a positive integer" >&2; exit 2; }
done
[[ "$soak" =~ ^[0-9]+$ ]] || { echo "run.sh: --soak takes a number of seconds" >&2; exit 2; }
[[ "$soak_delay_ms" =~ ^[0-9]+$ ]] || { echo "run.sh: --soak-delay-ms takes a number" >&2; exit 2; }
[[ "$overload" =~ ^[0-9]+$ ]] || { echo "run.sh: --overload takes a number of seconds" >&2; exit 2; }
if [ "$soak" -gt 0 ] && [ "$soak" -lt $((3 * soak_interval)) ]; then
  echo "run.sh: --soak must be at least 3 sample intervals (--soak-interval $soak_interval)" >&2; exit 2
fi
[[ "$evaluators" =~ ^([0-9]|10)$ ]] || { echo "run.sh: --evaluators takes 0-10" >&2; exit 2; }
[[ "$evaluator_sampling" =~ ^([0-9]|[1-9][0-9]|100)$ ]] ||
  { echo "run.sh: --evaluator-sampling takes 0-100" >&2; exit 2; }
# The evaluator scores logged calls only: without the log it would sit idle, so leave it out.
[ "$request_log" = 1 ] || evaluator=0
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

if [ -z "${ARBITER_BIN:-}" ] || [ -z "${FAKE_UPSTREAM_BIN:-}" ] ||
   { [ "$stream" = 1 ] && [ -z "${STREAM_BENCH_BIN:-}" ]; }; then
  log "building the release preset (build/release) if needed"
  build_log="$tmp/build.log"
  if ! (
    cd "$root"
    [ -f build/release/CMakeCache.txt ] || cmake --preset release
    nice cmake --build --preset release -j2 --target arbiter fake_upstream stream_bench
  ) >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die "build failed"
  fi
  ARBITER_BIN=${ARBITER_BIN:-$root/build/release/arbiter}
  FAKE_UPSTREAM_BIN=${FAKE_UPSTREAM_BIN:-$root/build/release/fake_upstream}
  STREAM_BENCH_BIN=${STREAM_BENCH_BIN:-$root/build/release/bench/stream_bench}
fi
[ -x "$ARBITER_BIN" ] || die "not executable: $ARBITER_BIN"
[ -x "$FAKE_UPSTREAM_BIN" ] || die "not executable: $FAKE_UPSTREAM_BIN"
[ "$stream" = 0 ] || [ -x "$STREAM_BENCH_BIN" ] || die "not executable: $STREAM_BENCH_BIN"

# Portkey's gateway (npm @portkey-ai/gateway, pinned in bench/portkey/package-lock.json)
portkey_dir="$here/portkey"
portkey_main="$portkey_dir/node_modules/@portkey-ai/gateway/build/start-server.js"
if [ "$portkey" = auto ]; then
  if [ -d "$portkey_dir/node_modules" ]; then portkey=1; else portkey=0; fi
fi
if [ "$portkey" = 1 ]; then
  command -v node >/dev/null || die "--portkey needs node and npm (scripts/deps.sh bench)"
  if [ ! -f "$portkey_main" ]; then
    log "installing Portkey's gateway (npm ci in bench/portkey)"
    (cd "$portkey_dir" && npm ci --no-audit --no-fund) >"$tmp/npm.log" 2>&1 ||
      { tail -n 20 "$tmp/npm.log" >&2; die "npm ci in bench/portkey failed"; }
  fi
  [ -f "$portkey_main" ] || die "Portkey's gateway is not at $portkey_main"
  portkey_version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
                    "$portkey_dir/node_modules/@portkey-ai/gateway/package.json" | head -n1)
fi

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
  echo $(( ${14} + ${15} + $(cpu_ticks "$fake_pid" "$nginx_pid" $nginx_workers "$arbiter_pid" ${arbiter_ev_pid:-} \
                              ${portkey_pid:-} ${arbiter_hold_pid:-} ${arbiter_overload_pid:-} ${arbiter_soak_pid:-}) ))
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

# arbiter. Every arbiter this script starts has the common config (arbiter_yaml) with its own
# data directory, plus its own evaluators.
webhook_yaml() {
  # The fake upstream answers any other path with a 200 echo: it doubles as the receiver.
  cat <<EOF
webhooks:
  - { name: bench, url: "http://$fake_addr/webhook", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,
      allow_insecure: true, include_bodies: true }
EOF
}
# arbiter_yaml NAME LOG(0/1) WEBHOOK(0/1): the common part of an arbiter config
arbiter_yaml() {
  cat <<EOF
server: { proxy_listen: 127.0.0.1:0, api_listen: 127.0.0.1:0, threads: $threads, log_level: warn$([ -n "$background_nice" ] && echo ", background_nice: $background_nice")$([ -n "$evaluator_sched_idle" ] && echo ", evaluator_sched_idle: $evaluator_sched_idle") }
storage: { path: $tmp/$1/data$([ "$2" = 1 ] || echo ", log_requests: false") }
upstreams: [ { name: openai, base_url: "http://$fake_addr" } ]
projects: [ { name: bench, api_keys: [ "$key" ] } ]
EOF
  [ "$3" = 1 ] && webhook_yaml
  return 0
}
# The budget's evaluator (DESIGN.md §9: "with logging and an evaluator on").
evaluator_yaml() {
  echo "evaluators:"
  echo "  - { name: e_length, kind: response_length, sampling: 100 }"
}
# start_arbiter NAME: starts $tmp/NAME/arbiter.yaml; sets ${NAME}_pid, ${NAME}_addr, ${NAME}_api
start_arbiter() {
  local name=$1 pid a api
  "$ARBITER_BIN" --config "$tmp/$name/arbiter.yaml" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!; pids+=("$pid")
  a=$(wait_listening "$tmp/$name.out" '"listener":"proxy"' "$pid") || fail_start "$name did not start"
  api=$(wait_listening "$tmp/$name.out" '"listener":"api"' "$pid") ||
    fail_start "$name did not start its api listener"
  printf -v "${name}_pid" '%s' "$pid"
  printf -v "${name}_addr" '%s' "$a"
  printf -v "${name}_api" '%s' "$api"
}

mkdir -p "$tmp/arbiter"
{
  arbiter_yaml arbiter "$request_log" "$webhook"
  [ "$evaluator" = 1 ] && evaluator_yaml
} >"$tmp/arbiter/arbiter.yaml"
start_arbiter arbiter

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
    arbiter_yaml arbiter_ev "$request_log" "$webhook"
    echo "evaluators:"
    for ((i = 0; i < evaluators; i++)); do
      echo "  - ${kinds[$i]%\}}, sampling: $evaluator_sampling }"
    done
  } >"$tmp/arbiter_ev/arbiter.yaml"
  start_arbiter arbiter_ev
fi

# Portkey's gateway: node, one process. It listens on all interfaces (it has no host option);
# it is up only for the length of the run.
portkey_pid=""
if [ "$portkey" = 1 ]; then
  portkey_port=$(free_port)
  (cd "$tmp" && exec node "$portkey_main" --port="$portkey_port" --headless) \
    >"$tmp/portkey.out" 2>"$tmp/portkey.err" &
  portkey_pid=$!; pids+=("$portkey_pid")
  portkey_addr="127.0.0.1:$portkey_port"
  deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/127.0.0.1/$portkey_port") 2>/dev/null; do
    kill -0 "$portkey_pid" 2>/dev/null || fail_start "Portkey's gateway exited"
    [ "$SECONDS" -lt "$deadline" ] || fail_start "Portkey's gateway did not start listening on $portkey_addr"
    sleep 0.1
  done
fi
# Portkey routes by headers: provider openai, base URL the fake upstream. Only its runs send them.
portkey_headers="x-portkey-provider: openai
x-portkey-custom-host: http://$fake_addr/v1"

# nginx prints nothing when ready: wait for its port to accept connections
deadline=$((SECONDS + 10))
until (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null; do
  kill -0 "$nginx_pid" 2>/dev/null || fail_start "nginx exited"
  [ "$SECONDS" -lt "$deadline" ] || fail_start "nginx did not start listening on $nginx_addr"
  sleep 0.05
done
nginx_workers=$(children "$nginx_pid")
[ -n "$nginx_workers" ] || fail_start "nginx has no worker processes"
log "direct=$fake_addr nginx=$nginx_addr arbiter=$arbiter_addr${portkey_pid:+ portkey=$portkey_addr} threads=$threads upstream_threads=$upstream_threads"

# Idle memory, before any request.
sleep 0.5
nginx_rss_sum() { local t=0 p; for p in "$nginx_pid" $nginx_workers; do t=$((t + $(rss_kib "$p"))); done; echo "$t"; }
arbiter_rss_idle=$(rss_kib "$arbiter_pid")
nginx_rss_idle=$(nginx_rss_sum)
[ -z "$portkey_pid" ] || portkey_rss_idle=$(rss_kib "$portkey_pid")

# ---------------------------------------------------------------- measurement
targets=(direct nginx arbiter)
declare -A addr=([direct]=$fake_addr [nginx]=$nginx_addr [arbiter]=$arbiter_addr)
if [ -n "$arbiter_ev_pid" ]; then
  targets+=(arbiter_ev)
  addr[arbiter_ev]=$arbiter_ev_addr
fi
declare -A extra_headers=()
if [ -n "$portkey_pid" ]; then
  targets+=(portkey)
  addr[portkey]=$portkey_addr
  extra_headers[portkey]=$portkey_headers
fi
declare -A R=()
failures=0

body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
# curl -H arguments for a target's extra headers
header_args() {
  local line
  while IFS= read -r line; do [ -n "$line" ] && printf '%s\0' -H "$line"; done <<<"${extra_headers[$1]:-}"
  return 0
}
# Every target must really reach the fake upstream: its answers carry "fp_fake" as the
# system_fingerprint, which a proxy answering by itself (or going elsewhere) would not have.
for t in "${targets[@]}"; do
  mapfile -d '' hargs < <(header_args "$t")
  code=$("$CURL" -sS --max-time 10 -o "$tmp/sanity-$t.json" -w '%{http_code}' \
           -H 'Content-Type: application/json' -H "Helicone-Auth: Bearer $key" "${hargs[@]}" \
           --data "$body" "http://${addr[$t]}/v1/chat/completions") || code=000
  if [ "$code" != 200 ] || ! grep -q '"chat.completion"' "$tmp/sanity-$t.json" ||
     ! grep -q '"fp_fake"' "$tmp/sanity-$t.json"; then
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

# Waits (up to 120 s) until the evaluators of arbiter (when it has one) and arbiter_ev have no
# queued or running run, so that their workers never compete for the CPUs with another
# target's measured run.
evaluator_apis=()
[ "$evaluator" = 1 ] && evaluator_apis+=("$arbiter_api")
[ -n "$arbiter_ev_pid" ] && evaluator_apis+=("$arbiter_ev_api")
drain_evaluators() {
  # Every run a record scheduled is finished: queued, running and deferred runs (the ones that found
  # the queue full wait in storage for the backlog scan) all count as busy.
  local deadline=$((SECONDS + 300)) start=$SECONDS busy api
  for api in "$@"; do
    while :; do
      busy=$("$CURL" -sS --max-time 5 "http://$api/metrics" 2>/dev/null |
             awk '$1 == "arbiter_evaluator_queue_depth" || index($1, "arbiter_evaluator_running{") == 1 { s += $2 }
                  index($1, "arbiter_evaluator_matched_total{") == 1 { s += $2 }
                  index($1, "arbiter_evaluator_sampled_out_total{") == 1 ||
                  index($1, "arbiter_evaluator_completed_total{") == 1 ||
                  index($1, "arbiter_evaluator_errors_total{") == 1 { s -= $2 }
                  END { printf "%d", s }')
      [ "${busy:-1}" -le 0 ] && break
      if [ "$SECONDS" -ge "$deadline" ]; then
        log "warning: the evaluators behind $api are still busy after 300 s ($busy runs)"
        break
      fi
      sleep 0.2
    done
  done
  drained_after=$((SECONDS - start))
}

# run_wrk TARGET LABEL THREADS CONNS SECONDS: runs wrk, checks for errors, sets R[TARGET.LABEL.*]
run_wrk() {
  local t=$1 label=$2 wt=$3 conns=$4 secs=$5
  drain_evaluators ${evaluator_apis[@]+"${evaluator_apis[@]}"}
  local f="$tmp/wrk-$t-$label.txt" url="http://${addr[$t]}"
  local p p_ngx c0 u0 c1 u1 m0 m1 o0 o1
  p_ngx="$nginx_pid $nginx_workers"
  case "$t" in
    arbiter) p="$arbiter_pid" ;; arbiter_ev) p="$arbiter_ev_pid" ;; nginx) p="$p_ngx" ;;
    portkey) p="$portkey_pid" ;; *) p="" ;;
  esac
  c0=$(cpu_ticks $p); u0=$(cpu_ticks "$fake_pid"); m0=$(machine_ticks); o0=$(ours_ticks)
  if ! BENCH_KEY=$key BENCH_HEADERS=${extra_headers[$t]:-} timeout -k 5 $((secs + 30)) \
         "$WRK" -t"$wt" -c"$conns" -d"${secs}s" \
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
  # Evaluations are asynchronous: under full load they fall behind (deferred runs wait in storage)
  # and finish after the run. Their CPU is part of a request's cost, so also measure arbiter's CPU
  # until every run is finished, and how long that took.
  if [ "$t" = arbiter ] && [ "$label" = c64 ] && [ "$evaluator" = 1 ] && [ -n "$p" ] && [ "$reqs" -gt 0 ]; then
    drain_evaluators "$arbiter_api"
    a_ev_drain_s=$drained_after
    R[$t.$label.cpu_with_evaluations_us]=$(awk -v d=$(( $(cpu_ticks $p) - c0 )) -v hz="$clk_tck" -v n="$reqs" \
                                              'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
    log "arbiter's evaluations finished ${a_ev_drain_s}s after the c64 run; CPU per request with them: ${R[$t.$label.cpu_with_evaluations_us]}us"
  fi
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
# The throughput runs take turns: each round runs every target once, so whatever else the machine
# does drifts over all of them alike instead of landing on one target's only run. A target's c64
# figures are its medians over the rounds (its "other work" share the largest); the budget ratio is
# the median of the rounds' own arbiter/nginx ratios, each taken from runs seconds apart.
median() {  # the median of the numbers on stdin (one per word)
  tr ' ' '\n' | awk 'NF' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A RR=()  # per round: RR[TARGET.FIELD] = "value value ...", RR[ratio] = arbiter/nginx per round
c64_fields=(rps p50 p99 p999 mean requests proxy_cpu_us upstream_cpu_us cpu_with_evaluations_us)
log "throughput: wrk -t2 -c64 -d${duration}s, $rounds round(s) of every target in turn"
for ((round = 1; round <= rounds; round++)); do
  for t in "${targets[@]}"; do
    run_wrk "$t" c64 2 64 "$duration"
    for k in "${c64_fields[@]}"; do
      [ -n "${R[$t.c64.$k]:-}" ] && RR[$t.$k]+="${R[$t.c64.$k]} "
    done
    RR[$t.errors]=$(( ${RR[$t.errors]:-0} + R[$t.c64.errors] ))
    RR[$t.foreign]=$(( R[$t.c64.foreign_cpu_pct] > ${RR[$t.foreign]:-0} ? R[$t.c64.foreign_cpu_pct] : ${RR[$t.foreign]:-0} ))
  done
  RR[ratio]+="$(awk -v a="${R[arbiter.c64.rps]}" -v n="${R[nginx.c64.rps]}" 'BEGIN { printf "%.3f", a / n }') "
  last_ratio=${RR[ratio]% }
  [ "$rounds" -gt 1 ] && log "round $round: arbiter/nginx ${last_ratio##* }"
done
for t in "${targets[@]}"; do
  for k in "${c64_fields[@]}"; do
    [ -n "${RR[$t.$k]:-}" ] && R[$t.c64.$k]=$(echo "${RR[$t.$k]}" | median)
  done
  R[$t.c64.errors]=${RR[$t.errors]}
  R[$t.c64.foreign_cpu_pct]=${RR[$t.foreign]}
done
log "latency: wrk -t1 -c1 -d${duration}s"
for t in "${targets[@]}"; do run_wrk "$t" c1 1 1 "$duration"; done

# api_metric API NAME: the value of one metric line (NAME with its labels, if any) of an arbiter.
api_metric() {
  "$CURL" -sS --max-time 5 "http://$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m && !seen { print $2; seen = 1 }'
}
# The evaluators' own figures: how many runs completed, failed or found the queue full.
ev_metric() {  # ev_metric API NAME: sum of an arbiter_evaluator_* counter over all evaluators
  "$CURL" -sS --max-time 5 "http://$1/metrics" 2>/dev/null |
    awk -v m="$2" 'index($1, m "{") == 1 { s += $2 } END { printf "%d", s }'
}
# ev_counters API: "matched completed errors deferred"
ev_counters() {
  echo "$(ev_metric "$1" arbiter_evaluator_matched_total) $(ev_metric "$1" arbiter_evaluator_completed_total)" \
       "$(ev_metric "$1" arbiter_evaluator_errors_total) $(ev_metric "$1" arbiter_evaluator_deferred_total)"
}
if [ -n "$arbiter_ev_pid" ]; then
  kill -0 "$arbiter_ev_pid" 2>/dev/null || { show_logs; die "arbiter with evaluators died during the run"; }
  read -r ev_matched ev_completed ev_errors ev_deferred <<<"$(ev_counters "$arbiter_ev_api")"
  ev_rss_after=$(rss_kib "$arbiter_ev_pid")
fi
if [ "$evaluator" = 1 ]; then
  drain_evaluators "$arbiter_api"
  read -r a_ev_matched a_ev_completed a_ev_errors a_ev_deferred <<<"$(ev_counters "$arbiter_api")"
  # What the last failed run said (the API keeps the latest error per evaluator).
  if [ "${a_ev_errors:-0}" != 0 ]; then
    a_ev_last_error=$("$CURL" -sS --max-time 5 -H "Authorization: Bearer $key" "http://$arbiter_api/v1/evaluators" 2>/dev/null |
                      grep -o '"last_error":"[^"]*"' | sed 's/^"last_error"://' | paste -sd ' ' -)
  fi
fi

arbiter_rss_after=$(rss_kib "$arbiter_pid")
# Webhook counters once the runs are over (deliveries may still be draining).
metric() { api_metric "$arbiter_api" "$1"; }
if [ "$webhook" = 1 ]; then
  wh_enqueued=$(metric 'arbiter_webhook_enqueued_total{webhook="bench"}')
  wh_delivered=$(metric 'arbiter_webhook_delivered_total{webhook="bench"}')
  wh_failed=$(metric 'arbiter_webhook_failed_attempts_total{webhook="bench"}')
fi
# The log's own figures: every proxied call written, none dropped (a full queue drops and counts).
if [ "$request_log" = 1 ]; then
  log_written=$(metric arbiter_log_records_written_total)
  log_dropped=$(metric arbiter_log_records_dropped_total)
fi
arbiter_rss_peak=$(rss_kib "$arbiter_pid" VmHWM)
nginx_rss_after=$(nginx_rss_sum)
if [ -n "$portkey_pid" ]; then
  kill -0 "$portkey_pid" 2>/dev/null || { show_logs; die "Portkey's gateway died during the run"; }
  portkey_rss_after=$(rss_kib "$portkey_pid")
fi
kill -0 "$arbiter_pid" 2>/dev/null || { show_logs; die "arbiter died during the run"; }

# ---------------------------------------------------------------- streaming
# Added time to first token against the direct path (stream_bench ttft: every target in turn,
# one stream at a time, on a new connection and on a kept-alive one), then 1,000 concurrent
# paced streams held open through arbiter, with its VmRSS sampled while all are open.
declare -A S=() H=()
if [ "$stream" = 1 ]; then
  stream_targets=(direct nginx arbiter)
  portkey_stream_error=""
  if [ -n "$portkey_pid" ]; then
    # Portkey 1.15.2 on Node answers every stream with 500 "Something went wrong" (its log:
    # "TypeError: immutable" in updateHeaders, Portkey-AI/gateway#1389 / #1550). Check first, so
    # that a Portkey that cannot stream is reported as such instead of failing the run.
    mapfile -d '' hargs < <(header_args portkey)
    "$CURL" -sS -N --max-time 10 -o "$tmp/sanity-portkey-stream.txt" -H 'Content-Type: application/json' \
      -H "Helicone-Auth: Bearer $key" "${hargs[@]}" \
      --data '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello."}]}' \
      "http://$portkey_addr/v1/chat/completions" 2>/dev/null || true
    if grep -q 'data: \[DONE\]' "$tmp/sanity-portkey-stream.txt" 2>/dev/null &&
       grep -q '"fp_fake"' "$tmp/sanity-portkey-stream.txt"; then
      stream_targets+=(portkey)
    else
      portkey_stream_error="Portkey's gateway failed a streaming request: $(head -c 200 "$tmp/sanity-portkey-stream.txt" 2>/dev/null | tr -d '"\\' | tr -c '[:print:]' ' ')"
      log "warning: $portkey_stream_error; its TTFT is not measured"
    fi
  fi
  sargs=()
  for t in "${stream_targets[@]}"; do sargs+=(--target "$t=${addr[$t]}"); done
  if [[ " ${stream_targets[*]} " == *" portkey "* ]]; then
    while IFS= read -r line; do sargs+=(--header "portkey=$line"); done <<<"$portkey_headers"
    # Portkey passes unknown headers on only when told to: the fake upstream's chunk controls.
    sargs+=(--header "portkey=x-portkey-forward-headers: x-fake-chunks,x-fake-chunk-interval-ms")
  fi
  drain_evaluators ${evaluator_apis[@]+"${evaluator_apis[@]}"}
  log "streaming: time to first token, $ttft_requests streams per target on new and kept-alive connections"
  f="$tmp/stream-ttft.txt"
  if ! timeout -k 5 600 "$STREAM_BENCH_BIN" ttft --requests "$ttft_requests" --connections both \
         --key "$key" "${sargs[@]}" >"$f" 2>&1; then
    cat "$f" >&2
    failures=$((failures + 1))
    log "FAILURE: some streams failed in the TTFT test"
  fi
  # "STREAM ttft conn=C target=T k=v ..." → S[C.T.k]=v
  while read -r k v; do S[$k]=$v; done < <(awk '$1 == "STREAM" && $2 == "ttft" {
      conn = ""; tgt = ""
      for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "conn") conn = kv[2]; if (kv[1] == "target") tgt = kv[2] }
      for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] != "conn" && kv[1] != "target") print conn "." tgt "." kv[1], kv[2] }
    }' "$f")
  for c in new keepalive; do
    for t in "${stream_targets[@]}"; do
      [ -n "${S[$c.$t.p99_us]:-}" ] || { cat "$f" >&2; die "no TTFT figures for $t ($c connections)"; }
      log "$(printf 'ttft %-9s %-8s p50=%sus p99=%sus added p50=%sus p99=%sus' "$c" "$t" "${S[$c.$t.p50_us]}" \
               "${S[$c.$t.p99_us]}" "${S[$c.$t.added_p50_us]}" "${S[$c.$t.added_p99_us]}")"
    done
  done

  # Each held stream lasts chunks x interval (8 s; 2 s in quick mode), long enough for the
  # second half to open while the first is open, and to sample both (stream_bench hold).
  # A fresh arbiter with the same config: after the throughput stages, malloc's free pool is
  # large enough to take a thousand streams without the RSS moving (session 21 read 0.0 KiB).
  # The budget's figure is the second half's growth per stream: the first half takes what a
  # process grows once, and with no calls served before, no free pool hides the rest.
  if [ "$quick" = 1 ]; then hold_chunks=20; hold_interval=100; else hold_chunks=40; hold_interval=200; fi
  drain_evaluators ${evaluator_apis[@]+"${evaluator_apis[@]}"}
  mkdir -p "$tmp/arbiter_hold"
  {
    arbiter_yaml arbiter_hold "$request_log" "$webhook"
    [ "$evaluator" = 1 ] && evaluator_yaml
  } >"$tmp/arbiter_hold/arbiter.yaml"
  start_arbiter arbiter_hold
  log "streaming: $streams concurrent streams held open through a fresh arbiter ($hold_chunks chunks, ${hold_interval} ms apart)"
  f="$tmp/stream-hold.txt"
  if ! timeout -k 5 600 "$STREAM_BENCH_BIN" hold --target "$arbiter_hold_addr" --pid "$arbiter_hold_pid" \
         --streams "$streams" --chunks "$hold_chunks" --interval-ms "$hold_interval" --key "$key" >"$f" 2>&1; then
    cat "$f" >&2
    failures=$((failures + 1))
    log "FAILURE: some held streams failed"
  fi
  while read -r k v; do H[$k]=$v; done < <(awk '$1 == "STREAM" && $2 == "hold" {
      for (i = 3; i <= NF; i++) { split($i, kv, "="); print kv[1], kv[2] } }' "$f")
  [ -n "${H[per_stream_kib]:-}" ] || { cat "$f" >&2; die "no figures from the hold test"; }
  log "hold: ${H[completed]}/${H[streams]} streams completed, RSS ${H[rss_before_kib]} -> ${H[rss_half_open_kib]} KiB with half open (${H[first_streams_kib]} KiB per stream) -> ${H[rss_open_kib]} KiB with all open: ${H[per_stream_kib]} KiB per further stream"
  kill -0 "$arbiter_pid" 2>/dev/null || { show_logs; die "arbiter died during the streaming stage"; }
  kill -0 "$arbiter_hold_pid" 2>/dev/null || { show_logs; die "the hold stage's arbiter died"; }
  kill -TERM "$arbiter_hold_pid" 2>/dev/null || true
  wait "$arbiter_hold_pid" 2>/dev/null || true
fi

# ---------------------------------------------------------------- overload
# A fresh arbiter with the budget's configuration (log + evaluator) under wrk -t2 -c64 for
# $overload seconds: long enough that the log's bounded queue (storage.queue_capacity, 65,536
# records) cannot hide a storage thread that falls behind, which the 10 s runs never show. Figures:
# requests served, records written and dropped (a full queue drops them, and counts), evaluations
# finished during the load, how long the rest took afterwards, and the CPU per request with them.
if [ "$overload" -gt 0 ]; then
  mkdir -p "$tmp/arbiter_overload"
  { arbiter_yaml arbiter_overload 1 "$webhook"; evaluator_yaml; } >"$tmp/arbiter_overload/arbiter.yaml"
  start_arbiter arbiter_overload
  drain_evaluators ${evaluator_apis[@]+"${evaluator_apis[@]}"}
  log "overload: ${overload}s at wrk -t2 -c64 against a fresh arbiter (log + evaluator$([ "$webhook" = 1 ] && echo " + webhook"))"
  f="$tmp/wrk-overload.txt"
  ol_c0=$(cpu_ticks "$arbiter_overload_pid")
  if ! BENCH_KEY=$key timeout -k 5 $((overload + 30)) "$WRK" -t2 -c64 -d"${overload}s" --timeout 5s \
         -s "$here/chat.lua" "http://$arbiter_overload_addr" >"$f" 2>&1; then
    cat "$f" >&2
    die "wrk failed in the overload stage"
  fi
  check_errors arbiter_overload overload "$f"
  ol_requests=$(bench_field "$f" requests)
  ol_rps=$(bench_field "$f" rps)
  [ -n "$ol_requests" ] && [ -n "$ol_rps" ] || { cat "$f" >&2; die "could not parse wrk output (overload)"; }
  ol_ev_in_load=$(ev_metric "$arbiter_overload_api" arbiter_evaluator_completed_total)
  ol_rss_end=$(rss_kib "$arbiter_overload_pid")
  drain_evaluators "$arbiter_overload_api"
  ol_drain_s=$drained_after
  ol_cpu_us=$(awk -v d=$(( $(cpu_ticks "$arbiter_overload_pid") - ol_c0 )) -v hz="$clk_tck" -v n="$ol_requests" \
                'BEGIN { printf "%.2f", (n > 0 ? d * 1e6 / hz / n : 0) }')
  read -r ol_ev_matched ol_ev_completed ol_ev_errors ol_ev_deferred <<<"$(ev_counters "$arbiter_overload_api")"
  ol_pauses=$(api_metric "$arbiter_overload_api" arbiter_evaluator_log_backlog_pauses_total)
  # The last records may still be in the log's queue (it lingers before a batch): wait until each
  # request served is written or counted as dropped.
  ol_deadline=$((SECONDS + 60))
  while :; do
    ol_written=$(api_metric "$arbiter_overload_api" arbiter_log_records_written_total)
    ol_dropped=$(api_metric "$arbiter_overload_api" arbiter_log_records_dropped_total)
    [ $(( ${ol_written:-0} + ${ol_dropped:-0} )) -ge "$ol_requests" ] && break
    if [ "$SECONDS" -ge "$ol_deadline" ]; then
      log "warning: after 60 s the log has written ${ol_written:-?} and dropped ${ol_dropped:-?} of $ol_requests requests"
      break
    fi
    sleep 0.2
  done
  ol_rss_peak=$(rss_kib "$arbiter_overload_pid" VmHWM)
  ol_dropped_pct=$(awk -v d="${ol_dropped:-0}" -v n="$ol_requests" 'BEGIN { printf "%.2f", (n > 0 ? 100 * d / n : 0) }')
  log "overload: $ol_requests requests ($ol_rps/s); log ${ol_written:-?} written, ${ol_dropped:-?} dropped (${ol_dropped_pct}%); evaluations ${ol_ev_in_load} during the load, ${ol_ev_completed} in all, ${ol_drain_s}s to finish; CPU per request with them ${ol_cpu_us}us"
  kill -0 "$arbiter_overload_pid" 2>/dev/null || { show_logs; die "arbiter died during the overload stage"; }
  # Stop it now: the soak that follows gets the machine to itself.
  kill -TERM "$arbiter_overload_pid" 2>/dev/null || true
  wait "$arbiter_overload_pid" 2>/dev/null || true
fi

# ---------------------------------------------------------------- soak
# A fresh arbiter with the request log, the evaluator and a webhook, under steady paced load
# (wrk -c$soak_conns with chat.lua's delay() hook) for $soak seconds. Every $soak_interval s:
# VmRSS, open fds, threads, requests served. Growth = the end minus the baseline, each the
# median of a window of samples: the baseline's starts at the warm-up (the first minute; a third
# of the soak when it is shorter than 3 minutes), the end's closes at the last sample, and both
# last a minute (less when the soak is too short for two: half of what follows the warm-up).
# RSS swings by several MiB between samples; one sample each side read that noise as growth.
# Verdict: no growth = RSS within max(5 %, 4 MiB) of the baseline, fds other
# than RocksDB's table files within max(5 %, 4), threads not more than at the baseline. Table
# files are counted apart: RocksDB keeps up to max_open_files of them open (a cache that fills as
# the log grows, by design), so they pass when at most that many are open.
soak_table_fd_cap=128  # scoring/store.hpp StoreOptions::max_open_files
soak_series=()
if [ "$soak" -gt 0 ]; then
  mkdir -p "$tmp/arbiter_soak"
  { arbiter_yaml arbiter_soak 1 1; evaluator_yaml; } >"$tmp/arbiter_soak/arbiter.yaml"
  start_arbiter arbiter_soak
  soak_warmup=60
  [ "$soak" -lt 180 ] && soak_warmup=$((soak / 3))
  drain_evaluators ${evaluator_apis[@]+"${evaluator_apis[@]}"}
  log "soak: ${soak}s at wrk -c$soak_conns, ${soak_delay_ms} ms between requests per connection; a sample every ${soak_interval}s"
  f="$tmp/wrk-soak.txt"
  # wrk runs one interval longer than the soak, so that the last sample (t = $soak) is under load
  BENCH_KEY=$key BENCH_DELAY_MS=$soak_delay_ms timeout -k 5 $((soak + soak_interval + 60)) \
    "$WRK" -t1 -c"$soak_conns" -d"$((soak + soak_interval))s" --timeout 5s -s "$here/chat.lua" \
    "http://$arbiter_soak_addr" >"$f" 2>&1 &
  soak_wrk=$!; pids+=("$soak_wrk")
  soak_sample() {  # "t rss_kib fds threads requests table_fds rocksdb_kib"
    local fds tables threads metrics reqs rocksdb
    fds=$(find "/proc/$arbiter_soak_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    tables=$(find "/proc/$arbiter_soak_pid/fd" -mindepth 1 -maxdepth 1 -lname '*.sst' 2>/dev/null | wc -l)
    threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/$arbiter_soak_pid/status" 2>/dev/null)
    metrics=$("$CURL" -sS --max-time 5 "http://$arbiter_soak_api/metrics" 2>/dev/null || true)
    reqs=$(awk '$1 == "arbiter_proxy_requests_total" && !seen { print $2; seen = 1 }' <<<"$metrics")
    # RocksDB's own memory (memtables, table readers, block cache), each bounded by a setting
    rocksdb=$(awk '$1 == "arbiter_storage_memtable_bytes" || $1 == "arbiter_storage_table_readers_bytes" ||
                   $1 == "arbiter_storage_block_cache_bytes" { s += $2 } END { printf "%d", s / 1024 }' <<<"$metrics")
    echo "$1 $(rss_kib "$arbiter_soak_pid") $fds ${threads:-0} ${reqs:-0} $tables ${rocksdb:-0}"
  }
  soak_start=${EPOCHREALTIME/[.,]/}
  for ((k = 0; k * soak_interval <= soak; k++)); do
    # sleep until k intervals after the start (no drift)
    now=${EPOCHREALTIME/[.,]/}
    wait_us=$((soak_start + k * soak_interval * 1000000 - now))
    [ "$wait_us" -gt 0 ] && sleep "$(awk -v u="$wait_us" 'BEGIN { printf "%.3f", u / 1e6 }')"
    kill -0 "$arbiter_soak_pid" 2>/dev/null || { show_logs; die "arbiter died during the soak"; }
    soak_series+=("$(soak_sample $((k * soak_interval)))")
    log "soak: t=${soak_series[-1]%% *}s $(echo "${soak_series[-1]}" | awk '{ printf "RSS %.1f MiB (RocksDB %.1f), %d fds (%d table files), %d threads, %d requests", $2 / 1024, $7 / 1024, $3, $6, $4, $5 }')"
  done
  wait "$soak_wrk" || { cat "$f" >&2; die "wrk failed during the soak"; }
  check_errors arbiter_soak soak "$f"
  soak_requests=$(bench_field "$f" requests)
  soak_rps=$(bench_field "$f" rps)
  drain_evaluators "$arbiter_soak_api"
  read -r soak_ev_matched soak_ev_completed soak_ev_errors soak_ev_deferred <<<"$(ev_counters "$arbiter_soak_api")"
  soak_metric() { api_metric "$arbiter_soak_api" "$1"; }
  soak_wh_enqueued=$(soak_metric 'arbiter_webhook_enqueued_total{webhook="bench"}')
  soak_wh_delivered=$(soak_metric 'arbiter_webhook_delivered_total{webhook="bench"}')
  soak_log_written=$(soak_metric arbiter_log_records_written_total)
  soak_log_dropped=$(soak_metric arbiter_log_records_dropped_total)
  # baseline: the samples of the window starting at the warm-up; end: those of the window
  # closing at the last sample; each figure is the window's median, column by column.
  soak_window=$(( (soak - soak_warmup) / 2 )); [ "$soak_window" -gt 60 ] && soak_window=60
  soak_median() {  # FROM TO: "FROM rss fds threads requests tables rocksdb N", medians of the N samples with FROM <= t <= TO
    printf '%s\n' "${soak_series[@]}" | awk -v lo="$1" -v hi="$2" '
      $1 >= lo && $1 <= hi { n++; for (c = 1; c <= 7; c++) v[c, n] = $c }
      END {
        if (n == 0) exit 1
        for (c = 1; c <= 7; c++) {
          for (i = 2; i <= n; i++) {  # insertion sort of column c
            x = v[c, i]; for (j = i - 1; j >= 1 && v[c, j] > x; j--) v[c, j + 1] = v[c, j]; v[c, j + 1] = x
          }
          m = (n % 2) ? v[c, (n + 1) / 2] : int((v[c, n / 2] + v[c, n / 2 + 1]) / 2)
          printf "%s%d", (c > 1 ? " " : ""), (c == 1 ? lo : m)
        }
        print " " n
      }'
  }
  sb_from=$soak_warmup; sb_to=$((soak_warmup + soak_window - 1))
  se_from=$((soak - soak_window + 1)); se_to=$soak
  soak_base=$(soak_median "$sb_from" "$sb_to") || soak_base="${soak_series[0]} 1"
  soak_end=$(soak_median "$se_from" "$se_to") || soak_end="${soak_series[-1]} 1"
  read -r sb_t sb_rss sb_fds sb_thr sb_req sb_tab sb_rdb soak_base_n <<<"$soak_base"
  read -r se_t se_rss se_fds se_thr se_req se_tab se_rdb soak_end_n <<<"$soak_end"
  soak_rss_growth=$((se_rss - sb_rss)); soak_thr_growth=$((se_thr - sb_thr))
  sb_other=$((sb_fds - sb_tab)); se_other=$((se_fds - se_tab)); soak_fd_growth=$((se_other - sb_other))
  soak_rss_limit=$(awk -v b="$sb_rss" 'BEGIN { l = b * 0.05; if (l < 4096) l = 4096; printf "%d", l }')
  soak_fd_limit=$(awk -v b="$sb_other" 'BEGIN { l = b * 0.05; if (l < 4) l = 4; printf "%d", l }')
  ok_soak_rss=$([ "$soak_rss_growth" -le "$soak_rss_limit" ] && echo PASS || echo MISS)
  ok_soak_fds=$([ "$soak_fd_growth" -le "$soak_fd_limit" ] && echo PASS || echo MISS)
  soak_tab_max=$(printf '%s\n' "${soak_series[@]}" | awk '$6 > m { m = $6 } END { print m + 0 }')
  ok_soak_tab=$([ "$soak_tab_max" -le "$soak_table_fd_cap" ] && echo PASS || echo MISS)
  ok_soak_thr=$([ "$soak_thr_growth" -le 0 ] && echo PASS || echo MISS)
  if [ "$ok_soak_rss$ok_soak_fds$ok_soak_tab$ok_soak_thr" = PASSPASSPASSPASS ]; then ok_soak=PASS; else ok_soak=MISS; fi
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
ratio_rps=$(calc %.3f "$(echo "${RR[ratio]}" | median)")
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
if [ -n "$portkey_pid" ]; then
  portkey_vs_direct_rps=$(calc %.3f "${R[portkey.c64.rps]} / ${R[direct.c64.rps]}")
  portkey_vs_nginx_rps=$(calc %.3f "${R[portkey.c64.rps]} / ${R[nginx.c64.rps]}")
  arbiter_vs_portkey_rps=$(calc %.3f "${R[arbiter.c64.rps]} / ${R[portkey.c64.rps]}")
  add_p50=$(calc %d "${R[portkey.c1.p50]} - ${R[direct.c1.p50]}")
  add_p99=$(calc %d "${R[portkey.c1.p99]} - ${R[direct.c1.p99]}")
fi
if [ "$stream" = 1 ]; then
  ok_ttft_new=$(verdict "${S[new.arbiter.added_p99_us]} <= 200")
  ok_ttft_keepalive=$(verdict "${S[keepalive.arbiter.added_p99_us]} <= 200")
  ok_stream_rss=$(verdict "${H[per_stream_kib]} <= 32")
fi
config_line="request log $([ "$request_log" = 1 ] && echo on || echo off), evaluator $([ "$evaluator" = 1 ] &&
  echo "on (response_length, sampling 100)" || echo off), webhook $([ "$webhook" = 1 ] && echo on || echo off)"
[ "$evaluators" -gt 0 ] && config_line+=", arbiter_ev with $evaluators evaluators (sampling $evaluator_sampling)"
[ -n "$portkey_pid" ] && config_line+=", Portkey gateway ${portkey_version:-?} (node $(node --version))"

{
  echo
  echo "arbiter bench: ${duration}s runs, $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), threads=$threads, upstream threads=$upstream_threads"
  echo "arbiter configuration: $config_line"
  echo "load average before: $load_before   after: $load_after   CPU idle before: ${idle_before}%"
  echo
  printf '%-10s %11s %10s %10s %11s %10s %11s %20s %9s\n' target 'rps@64' 'p50@1 us' 'p99@1 us' \
    'p99.9@1 us' 'rps@1' 'cpu/req us' 'RSS idle/after KiB' 'other %'
  for t in "${targets[@]}"; do
    case "$t" in
      arbiter) rss="$arbiter_rss_idle / $arbiter_rss_after" ;;
      nginx) rss="$nginx_rss_idle / $nginx_rss_after" ;;
      portkey) rss="$portkey_rss_idle / $portkey_rss_after" ;;
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
  [ "$rounds" -gt 1 ] && echo "  (median of $rounds rounds: ${RR[ratio]% }; c64 figures are medians over the rounds)"
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
    echo "evaluator runs: matched $ev_matched, completed $ev_completed, errors $ev_errors (deferred while the queue was full: $ev_deferred); RSS after $ev_rss_after KiB"
  fi
  if [ "$request_log" = 1 ]; then
    echo "arbiter's request log: ${log_written:-?} records written, ${log_dropped:-?} dropped (queue full)"
  fi
  if [ "$evaluator" = 1 ]; then
    echo "arbiter's evaluator runs: matched $a_ev_matched, completed $a_ev_completed, errors $a_ev_errors (deferred while the queue was full: $a_ev_deferred); after the c64 run the evaluations took ${a_ev_drain_s:-?}s more to finish, CPU per request including them ${R[arbiter.c64.cpu_with_evaluations_us]:-?}us"
    [ -n "${a_ev_last_error:-}" ] && echo "arbiter's evaluator, last error: $a_ev_last_error"
  fi
  if [ -n "$portkey_pid" ]; then
    echo
    echo "portkey rps / direct rps     : $portkey_vs_direct_rps"
    echo "portkey rps / nginx rps      : $portkey_vs_nginx_rps"
    echo "arbiter rps / portkey rps    : $arbiter_vs_portkey_rps"
    echo "portkey added p50 / p99 vs direct: $add_p50 / $add_p99 us"
  fi
  if [ "$stream" = 1 ]; then
    echo
    echo "streaming: time to first token, $ttft_requests streams per target, one at a time (first 10% not counted)"
    printf '%-10s %-10s %9s %9s %13s %13s %9s\n' connection target 'p50 us' 'p99 us' 'added p50 us' 'added p99 us' failures
    for c in new keepalive; do
      for t in "${stream_targets[@]}"; do
        printf '%-10s %-10s %9s %9s %13s %13s %9s\n' "$c" "$t" "${S[$c.$t.p50_us]}" "${S[$c.$t.p99_us]}" \
          "${S[$c.$t.added_p50_us]}" "${S[$c.$t.added_p99_us]}" "${S[$c.$t.failures]}"
      done
    done
    echo "(new: a new connection per stream; keepalive: one connection per target, reused, as the SDKs do)"
    echo "arbiter added TTFT p99, new connections      : ${S[new.arbiter.added_p99_us]} us   (budget <= 200 us)  $ok_ttft_new"
    echo "arbiter added TTFT p99, kept-alive connection: ${S[keepalive.arbiter.added_p99_us]} us   (budget <= 200 us)  $ok_ttft_keepalive"
    echo "nginx added TTFT p99, new / kept-alive       : ${S[new.nginx.added_p99_us]} / ${S[keepalive.nginx.added_p99_us]} us"
    if [ -n "$portkey_stream_error" ]; then
      echo "portkey added TTFT: not measured. $portkey_stream_error"
    elif [ -n "$portkey_pid" ]; then
      echo "portkey added TTFT p99, new / kept-alive     : ${S[new.portkey.added_p99_us]} / ${S[keepalive.portkey.added_p99_us]} us"
    fi
    echo "hold: ${H[streams]} concurrent streams through arbiter ($hold_chunks chunks, ${hold_interval} ms apart), ${H[completed]} completed"
    echo "arbiter RSS before / all open / after: ${H[rss_before_kib]} / ${H[rss_open_kib]} / ${H[rss_after_kib]} KiB"
    echo "arbiter memory per open stream: ${H[per_stream_kib]} KiB   (budget <= 32 KiB)  $ok_stream_rss"
  fi
  if [ "$overload" -gt 0 ]; then
    echo
    echo "overload: ${overload}s at wrk -t2 -c64, a fresh arbiter with request log and evaluator$([ "$webhook" = 1 ] && echo " and webhook")"
    echo "  $ol_requests requests ($ol_rps/s); request log ${ol_written:-?} written, ${ol_dropped:-?} dropped (${ol_dropped_pct}% of the requests)"
    echo "  evaluations: $ol_ev_in_load finished during the load, $ol_ev_completed in all (errors $ol_ev_errors, deferred $ol_ev_deferred), the last ${ol_drain_s}s after it; workers paused for the log ${ol_pauses:-?} times"
    echo "  CPU per request including its evaluation: ${ol_cpu_us}us; RSS at the end of the load / peak: $ol_rss_end / $ol_rss_peak KiB"
  fi
  if [ "$soak" -gt 0 ]; then
    echo
    echo "soak: ${soak}s, a fresh arbiter with request log, evaluator and webhook; wrk -t1 -c$soak_conns, ${soak_delay_ms} ms pause per request per connection"
    echo "      $soak_requests requests ($soak_rps/s); evaluator runs matched $soak_ev_matched, completed $soak_ev_completed, errors $soak_ev_errors (deferred $soak_ev_deferred); webhook ${soak_wh_enqueued:-?} enqueued, ${soak_wh_delivered:-?} delivered; log ${soak_log_written:-?} written, ${soak_log_dropped:-?} dropped"
    printf '  %6s %10s %12s %6s %7s %8s %10s\n' 't s' 'RSS MiB' 'RocksDB MiB' fds tables threads requests
    for row in "${soak_series[@]}"; do
      echo "$row" | awk '{ printf "  %6d %10.1f %12.1f %6d %7d %8d %10d\n", $1, $2 / 1024, $7 / 1024, $3, $6, $4, $5 }'
    done
    echo "baseline (median of $soak_base_n samples, t=${sb_from}-${sb_to}s, after the ${soak_warmup}s warm-up) -> end (median of $soak_end_n samples, t=${se_from}-${se_to}s):"
    echo "  RSS     $(calc %.1f "$sb_rss / 1024") -> $(calc %.1f "$se_rss / 1024") MiB, growth $(calc %.1f "$soak_rss_growth / 1024") MiB   (allowed <= max(5 %, 4 MiB) = $(calc %.1f "$soak_rss_limit / 1024") MiB)  $ok_soak_rss"
    echo "          of which RocksDB's memtables, table readers and block cache $(calc %.1f "$sb_rdb / 1024") -> $(calc %.1f "$se_rdb / 1024") MiB, RSS besides them $(calc %.1f "($sb_rss - $sb_rdb) / 1024") -> $(calc %.1f "($se_rss - $se_rdb) / 1024") MiB (not part of the verdict)"
    echo "  fds other than table files $sb_other -> $se_other, growth $soak_fd_growth   (allowed <= max(5 %, 4) = $soak_fd_limit)  $ok_soak_fds"
    echo "  table files open $sb_tab -> $se_tab, at most $soak_tab_max   (allowed <= max_open_files $soak_table_fd_cap)  $ok_soak_tab"
    echo "  threads $sb_thr -> $se_thr, growth $soak_thr_growth   (allowed 0)  $ok_soak_thr"
    echo "soak verdict (no growth after the first minute): $ok_soak"
  fi
  disturbed=$(for t in "${targets[@]}"; do echo "${R[$t.c64.foreign_cpu_pct]}"; echo "${R[$t.c1.foreign_cpu_pct]}"; done |
              sort -n | tail -n1)
  if [ "$disturbed" -gt 5 ]; then
    echo "WARNING: other work used up to ${disturbed}% of the CPUs during a measured run: these"
    echo "         figures are disturbed; re-run when the machine is quiet."
  fi
  [ "$failures" -eq 0 ] || echo "FAILURES: $failures run(s) had non-2xx responses, socket errors or failed streams"
}

# ---------------------------------------------------------------- JSON
if [ -n "$out" ]; then
  num() { [ -n "${1:-}" ] && echo "$1" || echo null; }
  target_json() {
    local t=$1 extra=""
    case "$t" in
      arbiter) extra=", \"rss_idle_kib\": $arbiter_rss_idle, \"rss_after_kib\": $arbiter_rss_after, \"rss_peak_kib\": $arbiter_rss_peak" ;;
      nginx) extra=", \"rss_idle_kib\": $nginx_rss_idle, \"rss_after_kib\": $nginx_rss_after" ;;
      portkey) extra=", \"rss_idle_kib\": $portkey_rss_idle, \"rss_after_kib\": $portkey_rss_after, \"version\": \"${portkey_version:-}\"" ;;
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
    echo "  \"config\": {\"request_log\": $([ "$request_log" = 1 ] && echo true || echo false), \"evaluator\": $([ "$evaluator" = 1 ] && echo '{"kind": "response_length", "sampling": 100}' || echo null),"
    echo "             \"webhook\": $([ "$webhook" = 1 ] && echo true || echo false), \"arbiter_ev_evaluators\": $evaluators, \"portkey\": $([ -n "$portkey_pid" ] && echo "\"${portkey_version:-}\"" || echo null),"
    echo "             \"summary\": \"$config_line\"},"
    if [ "$request_log" = 1 ]; then
      echo "  \"arbiter_log\": {\"written\": $(num "${log_written:-}"), \"dropped\": $(num "${log_dropped:-}")},"
    fi
    if [ "$evaluator" = 1 ]; then
      echo "  \"arbiter_evaluator\": {\"matched\": $a_ev_matched, \"completed\": $a_ev_completed, \"errors\": $a_ev_errors, \"deferred\": $a_ev_deferred, \"drain_s_after_c64\": $(num "${a_ev_drain_s:-}"), \"cpu_us_per_req_c64_with_evaluations\": $(num "${R[arbiter.c64.cpu_with_evaluations_us]:-}")},"
    fi
    if [ "$webhook" = 1 ]; then
      echo "  \"webhook\": {\"enqueued\": $(num "${wh_enqueued:-}"), \"delivered\": $(num "${wh_delivered:-}"), \"failed_attempts\": $(num "${wh_failed:-}")},"
    else
      echo "  \"webhook\": null,"
    fi
    rounds_json() { echo "[$(echo "$1" | awk '{ $1 = $1; gsub(/ /, ", "); print }')]"; }
    printf '  "rounds": {"count": %s, "arbiter_rps_over_nginx": %s, "rps_c64": {' "$rounds" "$(rounds_json "${RR[ratio]}")"
    sep=""
    for t in "${targets[@]}"; do printf '%s"%s": %s' "$sep" "$t" "$(rounds_json "${RR[$t.rps]}")"; sep=", "; done
    echo "}},"
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
    if [ -n "$portkey_pid" ]; then
      echo ","; target_json portkey
    fi
    echo
    echo "  },"
    if [ "$stream" = 1 ]; then
      echo "  \"streaming\": {\"ttft_requests\": $ttft_requests, \"ttft\": {"
      first_c=1
      for c in new keepalive; do
        [ "$first_c" = 1 ] || echo ","
        first_c=0
        printf '    "%s": {' "$c"
        first_t=1
        for t in "${stream_targets[@]}"; do
          [ "$first_t" = 1 ] || printf ', '
          first_t=0
          printf '"%s": {"samples": %s, "failures": %s, "p50_us": %s, "p99_us": %s, "added_p50_us": %s, "added_p99_us": %s}' \
            "$t" "${S[$c.$t.samples]}" "${S[$c.$t.failures]}" "${S[$c.$t.p50_us]}" "${S[$c.$t.p99_us]}" \
            "${S[$c.$t.added_p50_us]}" "${S[$c.$t.added_p99_us]}"
        done
        printf '}'
      done
      echo
      echo "  }, \"portkey_stream_error\": $([ -n "$portkey_stream_error" ] && echo "\"$portkey_stream_error\"" || echo null),"
      echo "  \"hold\": {\"target\": \"arbiter\", \"streams\": ${H[streams]}, \"completed\": ${H[completed]}, \"chunks\": $hold_chunks, \"interval_ms\": $hold_interval,"
      echo "    \"rss_before_kib\": ${H[rss_before_kib]}, \"rss_half_open_kib\": ${H[rss_half_open_kib]}, \"rss_open_kib\": ${H[rss_open_kib]},"
      echo "    \"rss_after_kib\": ${H[rss_after_kib]}, \"per_stream_kib\": ${H[per_stream_kib]}, \"first_streams_kib\": ${H[first_streams_kib]}}},"
    else
      echo "  \"streaming\": null,"
    fi
    if [ "$overload" -gt 0 ]; then
      echo "  \"overload\": {\"seconds\": $overload, \"requests\": $ol_requests, \"rps\": $ol_rps, \"errors\": ${R[arbiter_overload.overload.errors]},"
      echo "    \"log\": {\"written\": $(num "${ol_written:-}"), \"dropped\": $(num "${ol_dropped:-}"), \"dropped_pct\": $ol_dropped_pct},"
      echo "    \"evaluator\": {\"completed_during_load\": $ol_ev_in_load, \"matched\": $ol_ev_matched, \"completed\": $ol_ev_completed, \"errors\": $ol_ev_errors, \"deferred\": $ol_ev_deferred, \"log_backlog_pauses\": $(num "${ol_pauses:-}"), \"drain_s\": $ol_drain_s},"
      echo "    \"cpu_us_per_req_with_evaluations\": $ol_cpu_us, \"rss_end_kib\": $ol_rss_end, \"rss_peak_kib\": $ol_rss_peak},"
    else
      echo "  \"overload\": null,"
    fi
    if [ "$soak" -gt 0 ]; then
      echo "  \"soak\": {\"seconds\": $soak, \"interval_s\": $soak_interval, \"warmup_s\": $soak_warmup, \"conns\": $soak_conns, \"delay_ms\": $soak_delay_ms,"
      echo "    \"requests\": $(num "$soak_requests"), \"rps\": $(num "$soak_rps"), \"errors\": ${R[arbiter_soak.soak.errors]},"
      echo "    \"evaluator\": {\"matched\": $soak_ev_matched, \"completed\": $soak_ev_completed, \"errors\": $soak_ev_errors, \"deferred\": $soak_ev_deferred},"
      echo "    \"webhook\": {\"enqueued\": $(num "${soak_wh_enqueued:-}"), \"delivered\": $(num "${soak_wh_delivered:-}")},"
      echo "    \"log\": {\"written\": $(num "${soak_log_written:-}"), \"dropped\": $(num "${soak_log_dropped:-}")},"
      printf '    "series": ['
      first_r=1
      for row in "${soak_series[@]}"; do
        [ "$first_r" = 1 ] || printf ', '
        first_r=0
        echo "$row" | awk '{ printf "{\"t_s\": %d, \"rss_kib\": %d, \"rocksdb_kib\": %d, \"fds\": %d, \"table_fds\": %d, \"threads\": %d, \"requests\": %d}", $1, $2, $7, $3, $6, $4, $5 }'
      done
      echo "],"
      echo "    \"baseline\": {\"t_s\": $sb_from, \"window_s\": [$sb_from, $sb_to], \"samples\": $soak_base_n, \"rss_kib\": $sb_rss, \"rocksdb_kib\": $sb_rdb, \"fds\": $sb_fds, \"table_fds\": $sb_tab, \"threads\": $sb_thr},"
      echo "    \"end\": {\"t_s\": $se_from, \"window_s\": [$se_from, $se_to], \"samples\": $soak_end_n, \"rss_kib\": $se_rss, \"rocksdb_kib\": $se_rdb, \"fds\": $se_fds, \"table_fds\": $se_tab, \"threads\": $se_thr},"
      echo "    \"growth\": {\"rss_kib\": $soak_rss_growth, \"fds_other_than_tables\": $soak_fd_growth, \"threads\": $soak_thr_growth},"
      echo "    \"allowed\": {\"rss_kib\": $soak_rss_limit, \"fds_other_than_tables\": $soak_fd_limit, \"table_fds\": $soak_table_fd_cap, \"threads\": 0},"
      echo "    \"verdict\": {\"rss\": \"$ok_soak_rss\", \"fds\": \"$ok_soak_fds\", \"table_fds\": \"$ok_soak_tab\", \"threads\": \"$ok_soak_thr\", \"all\": \"$ok_soak\"}},"
    else
      echo "  \"soak\": null,"
    fi
    if [ -n "$arbiter_ev_pid" ]; then
      echo "  \"evaluators\": {\"configured\": $evaluators, \"sampling\": $evaluator_sampling, \"matched\": $ev_matched, \"completed\": $ev_completed, \"errors\": $ev_errors, \"deferred\": $ev_deferred, \"rss_after_kib\": $ev_rss_after},"
    fi
    echo "  \"ratios\": {\"arbiter_rps_over_nginx\": $ratio_rps, \"nginx_rps_over_direct\": $nginx_ratio_rps,"
    echo "             \"arbiter_rps_over_direct\": $arbiter_vs_direct_rps,"
    echo "             \"arbiter_added_p50_us\": $add_a50, \"arbiter_added_p99_us\": $add_a99,"
    echo "             \"nginx_added_p50_us\": $add_n50, \"nginx_added_p99_us\": $add_n99$(
      [ -z "$portkey_pid" ] || printf ',\n             "portkey_rps_over_direct": %s, "portkey_rps_over_nginx": %s, "arbiter_rps_over_portkey": %s,\n             "portkey_added_p50_us": %s, "portkey_added_p99_us": %s' \
        "$portkey_vs_direct_rps" "$portkey_vs_nginx_rps" "$arbiter_vs_portkey_rps" "$add_p50" "$add_p99")},"
    echo "  \"budget\": {\"throughput\": \"$ok_rps\", \"added_p50\": \"$ok_p50\", \"added_p99\": \"$ok_p99\", \"idle_rss\": \"$ok_rss\"$(
      [ "$stream" = 0 ] || printf ', "added_ttft_p99_new_conn": "%s", "added_ttft_p99_keepalive": "%s", "per_stream_rss": "%s"' \
        "$ok_ttft_new" "$ok_ttft_keepalive" "$ok_stream_rss")$([ "$soak" = 0 ] || printf ', "soak_no_growth": "%s"' "$ok_soak")},"
    echo "  \"failures\": $failures"
    echo "}"
  } >"$out.tmp.$$"
  mv "$out.tmp.$$" "$out"
  log "wrote $out"
fi

[ "$failures" -eq 0 ] || exit 1
