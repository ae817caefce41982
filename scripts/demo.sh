#!/usr/bin/env bash
# Sets up, builds, and runs the Market Spread demo: the real initial NBBO of 350 symbols plus
# generated NBBO updates and orders, through plugins/market_spread/topology-files.toml.
#   scripts/demo.sh [ORDERS]   (default 1000000 orders)
set -euo pipefail
cd "$(dirname "$0")/.."
orders=${1:-1000000}
scripts/setup.sh default

demo=build/demo
mkdir -p "$demo"
initial=plugins/market_spread/data/350-symbols_initial-nbbo-fixish.msg
symbols=plugins/market_spread/data/350-symbols.txt
build/shardline-gen nbbo --symbols-file "$symbols" --count 100000 --no-initial --seed 1 --out "$demo/updates.msg"
cat "$initial" "$demo/updates.msg" > "$demo/nbbo.msg"
build/shardline-gen orders --symbols-file "$symbols" --count "$orders" --seed 2 --out "$demo/orders.msg"

echo "demo: shardline check"
build/shardline check plugins/market_spread/topology-files.toml
echo "demo: shardline run ($orders orders)"
build/shardline run plugins/market_spread/topology-files.toml
echo "demo: $(( $(stat -c %s "$demo/results.msg") / 59 )) rejected orders written to $demo/results.msg"
