#!/usr/bin/env bash
# Installs what Shardline needs on Debian 12 (as root, or with sudo available) and builds it.
#   scripts/setup.sh [PRESET]     PRESET: default (build/), release (build-release/), asan
#                                 (build-asan/), tsan (build-tsan/)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-default}

packages=(g++ cmake ninja-build binutils python3
          libboost-dev libtomlplusplus-dev libspdlog-dev libabsl-dev libxxhash-dev
          libcli11-dev catch2 libbenchmark-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
