"""Market Spread end to end over TCP: the real initial NBBO data of 350 symbols plus generated
NBBO updates and orders go in over two TCP connections; every OrderResult that comes out of the
TCP sink is checked against an independent computation of the same logic here."""
import os
import struct
import unittest

from harness import (read, DATA, PLUGINS, Receiver, Run, TempDirTest, free_port, gen, latency,
                     send_all, split_frames, summary)

INITIAL_NBBO = os.path.join(DATA, "market-spread", "350-symbols_initial-nbbo-fixish.msg")


def decode_nbbo(p):
    assert len(p) == 42 and p[0] == 2
    bid, offer = struct.unpack_from(">dd", p, 26)
    return p[1:5], bid, offer


def decode_order(p):
    assert len(p) == 53 and p[0] == 1
    side = p[1]
    (account,) = struct.unpack_from(">I", p, 2)
    order_id, symbol = p[6:12], p[12:16]
    qty, price = struct.unpack_from(">dd", p, 16)
    return side, account, order_id, symbol, qty, price


def expected_results(nbbo_frames, order_frames):
    """The rejections Market Spread must emit when every NBBO is applied before any order."""
    state = {}
    for p in nbbo_frames:
        symbol, bid, offer = decode_nbbo(p)
        diff = offer - bid
        mid = (bid + offer) / 2
        state[symbol] = (diff >= 0.05 or diff / mid >= 0.05, bid, offer)
    results = []
    for p in order_frames:
        side, account, order_id, symbol, qty, price = decode_order(p)
        reject, bid, offer = state.get(symbol, (True, 0.0, 0.0))
        if reject:
            results.append((side, account, order_id, symbol, qty, price, bid, offer))
    return results


def decode_result(p):
    assert len(p) == 55, f"OrderResult payload is {len(p)} bytes, expected 55"
    side = p[0]
    (account,) = struct.unpack_from(">I", p, 1)
    order_id, symbol = p[5:11], p[11:15]
    qty, price, bid, offer = struct.unpack_from(">dddd", p, 15)
    (timestamp,) = struct.unpack_from(">Q", p, 47)
    return (side, account, order_id, symbol, qty, price, bid, offer), timestamp


class MarketSpreadTcp(TempDirTest):
    def run_market_spread(self, shards, orders=20000, updates=5000, scheduling="throughput"):
        symbols = sorted({decode_nbbo(p)[0] for p in split_frames(read(INITIAL_NBBO, "rb"))})
        self.write("symbols.txt", "\n".join(s.decode().strip() for s in symbols) + "\n")
        gen("nbbo", "--symbols-file", self.path("symbols.txt"), "--count", str(updates),
            "--seed", "7", "--out", self.path("updates.msg"))
        gen("orders", "--symbols-file", self.path("symbols.txt"), "--count", str(orders),
            "--seed", "11", "--out", self.path("orders.msg"))
        nbbo = read(INITIAL_NBBO, "rb") + read(self.path("updates.msg"), "rb")
        order_bytes = read(self.path("orders.msg"), "rb")

        nbbo_port, orders_port = free_port(), free_port()
        receiver = Receiver()
        topology = self.write("topology.toml", f"""
shards = {shards}
scheduling = "{scheduling}"
[plugins]
market = "{PLUGINS}/market_spread.so"
[states.symbols]
factory = "market.symbol_data"
[[pipelines]]
name = "nbbo"
source = {{ kind = "tcp", listen = "127.0.0.1:{nbbo_port}", connections = 1, decoder = "market.nbbo" }}
steps = [ {{ state_computation = "market.update_nbbo", state = "symbols", partition = "market.nbbo_symbol" }} ]
[[pipelines]]
name = "orders"
source = {{ kind = "tcp", listen = "127.0.0.1:{orders_port}", connections = 1, decoder = "market.order", start_after = "nbbo" }}
steps = [ {{ state_computation = "market.check_order", state = "symbols", partition = "market.order_symbol" }} ]
sink = {{ kind = "tcp", connect = "127.0.0.1:{receiver.port}", encoder = "market.order_result" }}
""")
        run = Run(topology)
        send_all(nbbo_port, nbbo)
        send_all(orders_port, order_bytes)
        status = run.wait()
        self.assertEqual(status, 0, run.stderr)
        for name in ("nbbo", "orders"):
            (self.assertIn if shards == 1 and scheduling == "latency" else self.assertNotIn)(
                f"pipeline '{name}': its source thread runs the shard's steps", run.stderr)
        got = [decode_result(p) for p in split_frames(receiver.wait())]

        expected = expected_results(split_frames(nbbo), split_frames(order_bytes))
        self.assertGreater(len(expected), 0, "the generated data should reject some orders")
        self.assertLess(len(expected), orders, "the generated data should accept some orders")
        self.assertEqual(sorted(r for r, _ in got), sorted(expected))
        self.assertTrue(all(ts > 1_600_000_000 * 10**9 for _, ts in got), "timestamps are ns")

        counts = summary(run.stderr)
        self.assertEqual(counts["nbbo"]["in"], len(split_frames(nbbo)))
        self.assertEqual(counts["orders"]["in"], orders)
        self.assertEqual(counts["orders"]["out"], len(expected))
        self.assertEqual(counts["state:symbols"], len(symbols))
        # Each pipeline that writes a sink reports how long its messages took inside the run.
        done = [l for l in run.stderr.splitlines() if "done in" in l][-1]
        self.assertIsNone(latency(done, "nbbo"), "the nbbo pipeline writes no sink")
        took = latency(done, "orders")
        self.assertEqual(list(took), ["p50", "p99", "p99.9", "p99.99", "max"])
        self.assertGreater(took["p50"], 0)
        self.assertEqual(sorted(took.values()), list(took.values()))
        return sorted(r for r, _ in got)

    def test_two_shards(self):
        self.run_market_spread(2)

    def test_one_and_four_shards_agree(self):
        self.assertEqual(self.run_market_spread(1), self.run_market_spread(4))

    def test_latency_scheduling_shards_write_the_sink(self):
        # Four shards take turns writing the TCP sink themselves: the same results, each whole.
        self.run_market_spread(4, scheduling="latency")

    def test_latency_scheduling_one_shard_run_by_both_sources(self):
        # One shard: the NBBO and the orders sources' threads run it themselves, in turn, and
        # the orders' thread writes the results: the same results as the shard's own thread.
        self.assertEqual(self.run_market_spread(1, scheduling="latency"), self.run_market_spread(1))


if __name__ == "__main__":
    unittest.main()
