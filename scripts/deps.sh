#!/usr/bin/env bash
# Installs the Debian packages arbiter needs to build, run and test, skipping
# any that are already installed. Usage: scripts/deps.sh [build|test|bench|security]
set -euo pipefail

want=(cmake ninja-build g++ pkg-config ca-certificates openssl
      libboost1.81-dev libssl-dev nlohmann-json3-dev librocksdb-dev libyaml-cpp-dev
      libvalijson-dev libpg-query-dev)
case "${1:-build}" in
  build) ;;
  # clang + its runtime (libFuzzer) and llvm-symbolizer: the fuzz targets (scripts/fuzz).
  test) want+=(libgtest-dev libgmock-dev curl clang libclang-rt-14-dev llvm python3) ;;
  bench) want+=(libgtest-dev libgmock-dev libbenchmark-dev nginx-light wrk curl) ;;
  security) want+=(testssl.sh) ;;  # scripts/testssl (not the test suite)
  *) echo "usage: $0 [build|test|bench|security]" >&2; exit 2 ;;
esac
command -v ccache >/dev/null 2>&1 || want+=(ccache)
if [ "${1:-build}" != build ] && ! command -v node >/dev/null 2>&1; then
  want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
