# awk -v PAT=REGEX -f calls_per_call.awk CALLGRIND_FILE: how often each function whose name
# matches PAT was called, summed over its callers (callgrind's compressed names resolved), e.g.
# PAT='^malloc$|_mid_memalign' on an arb-io thread's file from callgrind_threads.sh.
function nameof(s,   rest) {
  if (match(s, /^\([0-9]+\)/)) {
    id = substr(s, RSTART, RLENGTH); rest = substr(s, RLENGTH + 2)
    if (rest != "") nm[id] = rest
    return id
  }
  return s
}
/^fn=/ { s = $0; sub(/^fn=/, "", s); nameof(s) }
/^cfn=/ { s = $0; sub(/^cfn=/, "", s); cfn = nameof(s) }
/^calls=/ { split($1, a, "="); n[cfn] += a[2] }
END { for (k in n) { name = (k in nm) ? nm[k] : k; if (name ~ PAT) print n[k], substr(name, 1, 160) } }
