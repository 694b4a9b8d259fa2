# Sourced by the probes: starts the fake upstream and an arbiter, waits for their addresses.
# Needs $root (the repository). Sets $tmp, $fpid, $upstream, $apid, $proxy.
fake_bin=${FAKE_UPSTREAM_BIN:-$root/build/release/fake_upstream}
lua=$root/bench/chat.lua
tmp=$(mktemp -d)

start_fake() {
  "$fake_bin" --host 127.0.0.1 --port 0 --threads 1 >"$tmp/fake.out" 2>&1 &
  fpid=$!
  for _ in $(seq 100); do
    upstream=$(sed -n 's/.*"address":"\([^"]*\)".*/\1/p' "$tmp/fake.out" | head -1)
    [ -n "$upstream" ] && return
    sleep 0.05
  done
  echo "fake upstream did not start" >&2; exit 1
}

# write_config THREADS LOG(true|false) EVAL(0|1)
write_config() {
  rm -rf "$tmp/data"
  cat >"$tmp/a.yaml" <<Y
server: { proxy_listen: 127.0.0.1:0, api_listen: 127.0.0.1:0, threads: $1, log_level: warn }
storage: { path: $tmp/data, log_requests: $2 }
upstreams: [ { name: openai, base_url: "http://$upstream" } ]
projects: [ { name: bench, api_keys: [ "bench-key" ] } ]
Y
  if [ "$3" = 1 ]; then
    printf 'evaluators:\n  - { name: e_length, kind: response_length, sampling: 100 }\n' >>"$tmp/a.yaml"
  fi
}

# start_arbiter [WRAPPER...]: runs the arbiter (under WRAPPER, e.g. valgrind) with $tmp/a.yaml.
start_arbiter() {
  "$@" "$ARBITER_BIN" --config "$tmp/a.yaml" >"$tmp/arb.out" 2>"$tmp/arb.err" &
  apid=$!
  for _ in $(seq 600); do
    proxy=$(grep -F '"listener":"proxy"' "$tmp/arb.out" 2>/dev/null | sed -n 's/.*"address":"\([^"]*\)".*/\1/p' | head -1)
    [ -n "$proxy" ] && return
    sleep 0.1
  done
  echo "arbiter did not start" >&2; cat "$tmp/arb.err" >&2; exit 1
}

stop_arbiter() { kill -INT "$apid" 2>/dev/null; wait "$apid" 2>/dev/null; }

cleanup() {
  [ -n "${apid:-}" ] && stop_arbiter
  [ -n "${fpid:-}" ] && { kill "$fpid" 2>/dev/null; wait "$fpid" 2>/dev/null; }
  rm -rf "$tmp"
}
trap cleanup EXIT

wrk_run() {  # wrk_run THREADS CONNS SECONDS: prints wrk's output (chat.lua's BENCH line included)
  wrk -t"$1" -c"$2" -d"$3"s -s "$lua" "http://$proxy/v1/chat/completions"
}
calls_of() { sed -n 's/.*BENCH requests=\([0-9]*\).*/\1/p' "$1"; }
