// BoundedQueue: order, batching, backpressure and closing. No sleeps: threads are coordinated
// with latches and atomics, and every wait for a thread has a generous timeout. Pool: the order
// in which it hands objects back out.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <future>
#include <latch>
#include <set>
#include <thread>
#include <vector>

#include "engine/batch.hpp"
#include "engine/bounded_queue.hpp"

using shardline::engine::BoundedQueue;
using shardline::engine::Pool;
using shardline::engine::Reuse;
using namespace std::chrono_literals;

namespace {
constexpr auto kGenerous = 30s;  // only to fail instead of hanging if the queue is broken

/// Closes the queue when the test leaves, even by a failed REQUIRE: declared after the threads'
/// futures, it runs first and wakes any thread still blocked, so the futures can be joined.
template <class T>
struct CloseOnExit {
  BoundedQueue<T>& q;
  ~CloseOnExit() { q.close(); }
};

struct Item {
  int producer;
  int seq;
};
}  // namespace

TEST_CASE("items of each producer arrive in order, none lost", "[queue]") {
  constexpr int producers = 3, per_producer = 20000;
  BoundedQueue<Item> q(4);  // small, so producers block often
  std::vector<std::future<void>> threads;
  for (int p = 0; p < producers; ++p)
    threads.push_back(std::async(std::launch::async, [&q, p] {
      for (int i = 0; i < per_producer; ++i) q.push(Item{p, i});
    }));
  CloseOnExit<Item> closer{q};

  std::vector<int> next(producers, 0);
  int received = 0, batches = 0;
  bool in_order = true;
  std::vector<Item> out;
  while (received < producers * per_producer) {
    out.clear();
    REQUIRE(q.pop_all(out));
    REQUIRE_FALSE(out.empty());
    ++batches;
    for (const Item& it : out) {
      if (it.seq != next[it.producer]) in_order = false;
      next[it.producer] = it.seq + 1;
    }
    received += static_cast<int>(out.size());
  }
  for (auto& t : threads) REQUIRE(t.wait_for(kGenerous) == std::future_status::ready);
  CHECK(in_order);
  CHECK(received == producers * per_producer);
  CHECK(next == std::vector<int>(producers, per_producer));
  CHECK(q.size() == 0);
  INFO(batches << " batches");
  CHECK(batches <= received);
}

TEST_CASE("a producer that does not wake the consumer still never waits on a full queue for "
          "nothing, at any capacity", "[queue]") {
  // The source pushes with wake = false and wakes the shard only when it runs out of input; a
  // queue smaller than the wake-up threshold must wake a sleeping consumer once it is full, or
  // the producer blocks on it forever.
  for (std::size_t capacity : {1u, 2u, 3u, 4u, 5u}) {
    INFO("capacity " << capacity);
    constexpr int items = 2000;
    BoundedQueue<int> q(capacity);
    auto producer = std::async(std::launch::async, [&q] {
      for (int i = 0; i < items; ++i) q.push(i, true, false);
      q.wake();  // out of input: as the source does
    });
    CloseOnExit<int> closer{q};
    int received = 0;
    std::vector<int> out;
    while (received < items) {
      out.clear();
      REQUIRE(q.pop_all(out));
      received += static_cast<int>(out.size());
    }
    REQUIRE(producer.wait_for(kGenerous) == std::future_status::ready);
    CHECK(received == items);
  }
}

TEST_CASE("pop_all takes everything queued, in order", "[queue]") {
  BoundedQueue<int> q(8);
  for (int i = 0; i < 5; ++i) q.push(i);
  CHECK(q.size() == 5);
  std::vector<int> out;
  REQUIRE(q.pop_all(out));
  CHECK(out == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(q.size() == 0);
  q.push(5);
  out.clear();
  REQUIRE(q.pop_all(out));
  CHECK(out == std::vector<int>{5});
}

TEST_CASE("pop_one takes the oldest item, and frees its room at once", "[queue]") {
  BoundedQueue<int> q(2);
  q.push(1);
  q.push(2);
  int item = 0;
  REQUIRE(q.pop_one(item));
  CHECK(item == 1);
  q.push(3);  // room for one more, so it does not block: 2 and 3 queued, 1 held
  CHECK(q.size() == 2);
  REQUIRE(q.pop_one(item));
  CHECK(item == 2);
  REQUIRE(q.pop_one(item));
  CHECK(item == 3);
  q.close();
  CHECK_FALSE(q.pop_one(item));  // closed and empty
}

TEST_CASE("push blocks while the queue is full, until the consumer pops", "[queue]") {
  BoundedQueue<int> q(2);
  q.push(1);
  q.push(2);
  std::atomic<bool> popped{false};
  std::latch entered(1);
  auto producer = std::async(std::launch::async, [&] {
    entered.count_down();
    q.push(3);  // blocks: the queue is full
    return popped.load();  // what the producer saw once its push returned
  });
  CloseOnExit<int> closer{q};
  entered.wait();
  // The full queue cannot take the third item until the consumer pops.
  CHECK(q.size() == 2);
  std::vector<int> out;
  popped = true;
  REQUIRE(q.pop_all(out));
  CHECK(out == std::vector<int>{1, 2});
  REQUIRE(producer.wait_for(kGenerous) == std::future_status::ready);
  CHECK(producer.get());  // the push returned only after the pop
  out.clear();
  REQUIRE(q.pop_all(out));
  CHECK(out == std::vector<int>{3});
}

TEST_CASE("a non-blocking push goes beyond the capacity", "[queue]") {
  BoundedQueue<int> q(2);
  for (int i = 0; i < 5; ++i) q.push(i, /*may_block=*/false);
  CHECK(q.size() == 5);
  std::vector<int> out;
  REQUIRE(q.pop_all(out));
  CHECK(out == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("close() wakes a waiting consumer, and pop_all returns false once empty", "[queue]") {
  SECTION("an empty queue") {
    BoundedQueue<int> q(4);
    std::latch entered(1);
    auto consumer = std::async(std::launch::async, [&] {
      std::vector<int> out;
      entered.count_down();
      const bool got = q.pop_all(out);  // waits: nothing queued
      return std::make_pair(got, out.size());
    });
    CloseOnExit<int> closer{q};
    entered.wait();
    q.close();
    REQUIRE(consumer.wait_for(kGenerous) == std::future_status::ready);
    const auto [got, n] = consumer.get();
    CHECK_FALSE(got);
    CHECK(n == 0);
  }
  SECTION("items queued before close() are still delivered") {
    BoundedQueue<int> q(4);
    q.push(7);
    q.push(8);
    q.close();
    std::vector<int> out;
    REQUIRE(q.pop_all(out));
    CHECK(out == std::vector<int>{7, 8});
    out.clear();
    CHECK_FALSE(q.pop_all(out));
    CHECK(out.empty());
    CHECK_FALSE(q.pop_all(out));  // and stays closed
  }
}

TEST_CASE("close() releases a producer blocked on a full queue", "[queue]") {
  BoundedQueue<int> q(1);
  q.push(1);
  std::latch entered(1);
  auto producer = std::async(std::launch::async, [&] {
    entered.count_down();
    q.push(2);  // blocks until close()
  });
  CloseOnExit<int> closer{q};
  entered.wait();
  q.close();
  REQUIRE(producer.wait_for(kGenerous) == std::future_status::ready);
  std::vector<int> out;
  REQUIRE(q.pop_all(out));
  CHECK(out == std::vector<int>{1, 2});
  out.clear();
  CHECK_FALSE(q.pop_all(out));
}

TEST_CASE("an oldest-first pool hands out the least recently released object", "[pool]") {
  Pool<int> pool(Reuse::oldest_first);
  // More objects than the ring's first size (16), so it grows twice.
  std::vector<int*> made;
  for (int i = 0; i < 40; ++i) made.push_back(pool.acquire());
  REQUIRE(std::set<int*>(made.begin(), made.end()).size() == made.size());
  for (int i = 0; i < 20; ++i) pool.release(made[i]);
  CHECK(pool.acquire() == made[0]);  // the oldest release, not the newest
  CHECK(pool.acquire() == made[1]);
  for (int i = 20; i < 40; ++i) pool.release(made[i]);
  // The ring wraps: the rest of the first releases, then the later ones, in order.
  for (int i = 2; i < 40; ++i) REQUIRE(pool.acquire() == made[i]);
  // Nothing free: a new object; then the order holds across it.
  pool.release(made[5]);
  CHECK(pool.acquire() == made[5]);
  int* added = pool.acquire();
  CHECK(std::find(made.begin(), made.end(), added) == made.end());
  pool.release(added);
  pool.release(made[7]);
  CHECK(pool.acquire() == added);
  CHECK(pool.acquire() == made[7]);
}

TEST_CASE("a newest-first pool hands out the most recently released object", "[pool]") {
  Pool<int> pool(Reuse::newest_first);
  std::vector<int*> made;
  for (int i = 0; i < 40; ++i) made.push_back(pool.acquire());  // the ring grows twice
  for (int i = 0; i < 20; ++i) pool.release(made[i]);
  CHECK(pool.acquire() == made[19]);
  CHECK(pool.acquire() == made[18]);
  pool.release(made[30]);
  CHECK(pool.acquire() == made[30]);
  for (int i = 17; i >= 0; --i) REQUIRE(pool.acquire() == made[i]);
  int* added = pool.acquire();  // nothing free: a new object
  CHECK(std::find(made.begin(), made.end(), added) == made.end());
}

namespace {
/// An object whose construction gives back the objects queued in `give_back` to `pool`: as
/// another thread's releases would while acquire() makes a new object outside its lock.
struct GivesBack {
  static inline Pool<GivesBack>* pool = nullptr;
  static inline std::vector<GivesBack*> give_back;
  GivesBack() {
    for (GivesBack* g : give_back) pool->release(g);
    give_back.clear();
  }
};
}  // namespace

TEST_CASE("a pool's ring keeps the order of free objects when it grows around its end",
          "[pool]") {
  Pool<GivesBack> pool(Reuse::oldest_first);
  GivesBack::pool = &pool;
  std::vector<GivesBack*> made;
  for (int i = 0; i < 16; ++i) made.push_back(pool.acquire());  // a ring of 16, all taken
  for (int i = 0; i < 10; ++i) pool.release(made[i]);
  for (int i = 0; i < 10; ++i) REQUIRE(pool.acquire() == made[i]);  // the ring's head at 10
  // Nothing free, so a 17th object is made; meanwhile 8 come back, into slots 10-15, 0 and 1,
  // and the ring grows with them in it.
  GivesBack::give_back = {made[3], made[12], made[0], made[15], made[9], made[4], made[11],
                          made[6]};
  const std::vector<GivesBack*> order = GivesBack::give_back;
  GivesBack* seventeenth = pool.acquire();
  CHECK(std::find(made.begin(), made.end(), seventeenth) == made.end());
  for (GivesBack* g : order) REQUIRE(pool.acquire() == g);
  pool.release(seventeenth);
  CHECK(pool.acquire() == seventeenth);
  GivesBack::pool = nullptr;
}
