#!/usr/bin/env bash
# Builds the benchmarks in Release and runs every scenario, printing one table.
#
#   bench/run.sh                  configure + build the `release` preset (build-release/), then
#                                 run everything at full size (about 3 minutes on 2 cores)
#   bench/run.sh --tiny           each scenario once at a tiny size (CI; well under a minute)
#   bench/run.sh --build-dir DIR  use the binaries already built in DIR: no configure, no build
#                                 (the CTest entry bench.tiny runs `--tiny --build-dir build`)
#   bench/run.sh --only NAME      only this scenario (repeatable): baseline, inproc, pairs
#                                 (the loop and 2 shards alternating), tcp, latency, wordcount,
#                                 micro
#
# SHARDLINE_BENCH_BUILD_DIR=DIR is the same as --build-dir DIR. Generated data is kept in
# DIR/bench-data (or bench-data-tiny) and reused; the table and the raw numbers are written to
# results.txt and results.json there. Exit status 1 if a scenario failed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

build_dir="${SHARDLINE_BENCH_BUILD_DIR:-}"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --build-dir=*) build_dir="${1#*=}"; shift ;;
    --tiny) args+=(--tiny); shift ;;
    --only) args+=(--only "$2"); shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$build_dir" ]]; then
  cd "$repo"
  # Build output goes to stderr: stdout is the table.
  cmake --preset release >&2
  cmake --build build-release -j2 >&2
  build_dir="$repo/build-release"
fi

exec python3 "$repo/bench/run_bench.py" --build-dir "$build_dir" "${args[@]}"
