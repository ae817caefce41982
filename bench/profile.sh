#!/usr/bin/env bash
# Where the time goes: perf-records the in-process Market Spread driver and prints the hot
# functions of each thread (plugin symbols included: the runtime loads plugins from unlinked
# shadow copies, which perf cannot read, so bench/perf_threads.py resolves them itself).
#
#   bench/profile.sh [--build-dir DIR] [--shards N] [--symbols S] [--sink count|encode]
#
# Uses the data of a previous `bench/run.sh` (DIR/bench-data/ms-S/). Default: build-release,
# 2 shards, 10000 symbols, encode. Needs linux-perf (perf_event_paranoid <= 2 is enough).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="$repo/build-release" shards=2 symbols=10000 sink=encode
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$(cd "$2" && pwd)"; shift 2 ;;
    --shards) shards="$2"; shift 2 ;;
    --symbols) symbols="$2"; shift 2 ;;
    --sink) sink="$2"; shift 2 ;;
    *) echo "bench/profile.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
data="$build/bench-data/ms-$symbols"
[[ -f "$data/orders.msg" ]] || { echo "no $data/orders.msg: run bench/run.sh first" >&2; exit 1; }
out="$build/bench-data/profile"
mkdir -p "$out"
if [[ "$sink" == encode ]]; then sink_toml='{ kind = "discard", encoder = "market.order_result" }'
else sink_toml='{ kind = "discard" }'; fi
cat > "$out/topology.toml" <<EOF
shards = $shards
[plugins]
market = "$build/plugins/market_spread.so"
[states.symbols]
factory = "market.symbol_data"
[[pipelines]]
name = "nbbo"
source = { kind = "file", path = "$data/nbbo.msg", decoder = "market.nbbo" }
steps = [ { state_computation = "market.update_nbbo", state = "symbols", partition = "market.nbbo_symbol" } ]
[[pipelines]]
name = "orders"
source = { kind = "file", path = "$data/orders.msg", decoder = "market.order", start_after = "nbbo" }
steps = [ { state_computation = "market.check_order", state = "symbols", partition = "market.order_symbol" } ]
sink = $sink_toml
EOF
perf record -q -F 2999 -o "$out/perf.data" "$build/bench/market_spread_inproc" \
  --topology "$out/topology.toml" --phase-file "$data/orders.msg" --count-pipeline orders \
  --warm "$data/nbbo.msg" --warm "$data/orders.msg" > "$out/run.json"
python3 "$repo/bench/perf_threads.py" --perf-data "$out/perf.data" --run-json "$out/run.json" \
  --plugin "$build/plugins/market_spread.so"
