#!/usr/bin/env bash
# Sets up, builds, and runs the whole test suite (unit + integration), then checks that the
# benchmarks still run at a tiny size.
#   scripts/test.sh [PRESET]    PRESET: default, asan (AddressSanitizer + UBSan), or tsan
#                               (ThreadSanitizer)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-default}
scripts/setup.sh "$preset"
ctest --preset "$preset" -j 2
