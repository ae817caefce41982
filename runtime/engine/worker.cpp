#include "engine/worker.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <shardline/type_desc.hpp>

#include "engine/shard.hpp"

namespace shardline::engine {

namespace {
/// Encoded bytes are sent to the sink in chunks of about this size.
constexpr std::size_t kChunkBytes = 256 * 1024;
/// shard_of_ of a message whose partition function failed.
constexpr std::uint32_t kSkip = ~std::uint32_t{0};
}  // namespace

void BatchErrors::add(std::size_t index, std::string_view what) {
  if (frames_) {
    p_.errors->message_failed(step_, what, {frames_[index].data, frames_[index].size},
                              origin_->where(&frames_[index]));
  } else if (input_ && input_->type()->trivial) {
    p_.errors->message_failed(step_, what, {input_->at(index), input_->type()->size});
  } else if (input_ && is_std_string(*input_->type())) {
    const auto& text = *reinterpret_cast<const std::string*>(input_->at(index));
    p_.errors->message_failed(step_, what,
                              {reinterpret_cast<const std::byte*>(text.data()), text.size()});
  } else if (input_ && input_->type()->save && p_.errors->keeps_payloads()) {
    // The type's own save(): plugin code, which may fail in turn (then no bytes).
    std::vector<std::byte> saved;
    const std::string label = std::string(input_->type()->name) + "::save";
    try {
      const loader::PluginCall in(p_.name, label);
      input_->type()->save(input_->at(index), saved);
    } catch (...) {
      saved.clear();
    }
    p_.errors->message_failed(step_, what, saved);
  } else {
    p_.errors->message_failed(step_, what, {});
  }
  failed_.push_back(index);
}

Worker::Worker(Dataflow& flow, bool on_source_thread)
    : flow_(flow),
      may_block_(on_source_thread),
      open_(std::size_t{flow.routes} * flow.router.shards(), nullptr),
      chunks_(flow.sinks.size(), nullptr),
      unwoken_(flow.router.shards(), 0) {}

Worker::~Worker() {
  for (Batch* b : open_)
    if (b) {
      b->messages.clear();
      flow_.batches.release(b);
    }
  for (EncodedChunk* c : chunks_)
    if (c) flow_.chunks.release(c);
}

void Worker::decode(PipelinePlan& p, const Frame* frames, std::size_t n, std::uint64_t arrived_ns,
                    const connectors::FrameOrigin& origin) {
  // With one shard, a call's messages cross to it in their own buffer (route()): the decoder
  // is given at most batch_size frames a call, so that such a batch holds no more.
  const std::size_t per_call = flow_.router.shards() == 1 ? flow_.batch_size : n;
  for (std::size_t at = 0; at < n; at += per_call)
    decode_call(p, frames + at, std::min(per_call, n - at), arrived_ns, origin);
}

void Worker::decode_call(PipelinePlan& p, const Frame* frames, std::size_t n,
                         std::uint64_t arrived_ns, const connectors::FrameOrigin& origin) {
  MessageBuffer& out = scratch_[0];
  out.set_type(p.decoded);
  BatchErrors errors(p, p.decoder_name, frames, origin);
  errors.run([&](ErrorSink& sink) { p.decoder->decode(frames, n, out, sink); });
  p.metrics.add(p.metrics.in, out.count());
  // At most one message per frame: the rest failed (counted as errors) or were dropped.
  p.metrics.add(p.metrics.dropped, n - out.count() - errors.failed().size());
  advance(p, 0, arrived_ns);
}

void Worker::advance(PipelinePlan& p, std::size_t step, std::uint64_t arrived_ns) {
  int which = 0;  // scratch_[which] holds the messages
  while (step < p.steps.size() && !p.steps[step].stateful) {
    const StepPlan& s = p.steps[step];
    MessageBuffer& in = scratch_[which];
    MessageBuffer& out = scratch_[1 - which];
    out.set_type(s.output);
    BatchErrors errors(p, s.name, &in);
    errors.run([&](ErrorSink& sink) { s.computation->run(in.span(), out, sink); });
    in.clear();
    which = 1 - which;
    ++step;
  }
  MessageBuffer& msgs = scratch_[which];
  if (msgs.empty()) return;
  if (step == p.steps.size()) {
    encode_for_sink(p, msgs, arrived_ns);
  } else {
    route(p, p.steps[step], msgs, arrived_ns);
  }
}

void Worker::route(PipelinePlan& p, const StepPlan& step, MessageBuffer& msgs,
                   std::uint64_t arrived_ns) {
  const std::size_t n = msgs.count();
  keys_.resize(n);
  BatchErrors errors(p, step.partition_name, &msgs);
  errors.run([&](ErrorSink& sink) { step.partition->keys(msgs.span(), keys_.data(), sink); });

  // With one shard every message goes to it: a call's messages go in their own buffer,
  // swapped into a batch, not copied nor routed, unless they are more than a batch (a line
  // split into words), a partition failed, or an earlier call left a batch open, whose
  // messages must go first. Copying each into a batch was a quarter of the source thread's
  // time (1 shard, 10k symbols: 36 -> 29 ns/order on all threads). A source thread that runs
  // the shard itself processes the batch at once (send_batch).
  if (flow_.router.shards() == 1 && n <= flow_.batch_size && errors.failed().empty() &&
      !open_[std::size_t{step.route}]) {
    Batch* b = new_batch(p, step, arrived_ns);
    b->messages.swap(msgs);
    b->keys.swap(keys_);
    send_batch(0, b);
    return;
  }

  // First every message's shard: no message depends on another, so the CPU overlaps the
  // hashing of many; then the appends, whose only dependency is each batch's fill level.
  shard_of_.resize(n);
  const ShardRouter& router = flow_.router;
  for (std::size_t i = 0; i < n; ++i) shard_of_[i] = router.shard(keys_[i]);
  for (std::size_t i : errors.failed()) {
    msgs.destroy_one(i);
    shard_of_[i] = kSkip;
  }
  if (step.input->trivial) scatter_trivial(p, step, msgs, arrived_ns);
  else scatter_moving(p, step, msgs, arrived_ns);
  msgs.forget_all();
}

Batch** Worker::open_batches(const StepPlan& step, std::uint64_t arrived_ns) {
  const std::uint32_t shards = flow_.router.shards();
  Batch** open = &open_[std::size_t{step.route} * shards];
  for (std::uint32_t s = 0; s < shards; ++s)
    if (open[s]) open[s]->arrived_ns = std::min(open[s]->arrived_ns, arrived_ns);
  return open;
}

Batch* Worker::new_batch(PipelinePlan& p, const StepPlan& step, std::uint64_t arrived_ns) {
  Batch* b = flow_.batches.acquire();
  b->pipeline = p.index;
  b->step = static_cast<std::uint32_t>(&step - p.steps.data());
  b->arrived_ns = arrived_ns;
  return b;
}

Batch* Worker::open_batch(PipelinePlan& p, const StepPlan& step, std::uint64_t arrived_ns) {
  Batch* b = new_batch(p, step, arrived_ns);
  b->messages.set_type(step.input);
  b->messages.reserve(flow_.batch_size);
  b->keys.resize(flow_.batch_size);  // keys[i] for i < messages.count() are used
  return b;
}

void Worker::scatter_trivial(PipelinePlan& p, const StepPlan& step, const MessageBuffer& msgs,
                             std::uint64_t arrived_ns) {
  // The copy is most of the loop's work. With the slot size known at compile time it is a few
  // inlined vector moves rather than a call into libc's memcpy and its dispatch on the size
  // (about 2 ns per message on the Market Spread benchmark). A slot is `stride` bytes in every
  // buffer of the type, so copying a whole slot, padding included, stays in bounds.
  switch (msgs.span().stride) {
    case 8: return scatter_copies<8>(p, step, msgs, arrived_ns);
    case 16: return scatter_copies<16>(p, step, msgs, arrived_ns);
    case 24: return scatter_copies<24>(p, step, msgs, arrived_ns);
    case 32: return scatter_copies<32>(p, step, msgs, arrived_ns);
    case 48: return scatter_copies<48>(p, step, msgs, arrived_ns);
    case 64: return scatter_copies<64>(p, step, msgs, arrived_ns);
    case 96: return scatter_copies<96>(p, step, msgs, arrived_ns);
    case 128: return scatter_copies<128>(p, step, msgs, arrived_ns);
    default: return scatter_copies<0>(p, step, msgs, arrived_ns);
  }
}

template <std::size_t kSlot>
void Worker::scatter_copies(PipelinePlan& p, const StepPlan& step, const MessageBuffer& msgs,
                            std::uint64_t arrived_ns) {
  // Messages are plain bytes: each is copied straight into its batch through a cursor kept in
  // this loop, not through the batch's bookkeeping per message. A batch is sent the moment it
  // is full, so an open batch always has room; the counts of the ones left open are written
  // back at the end.
  const std::uint32_t shards = flow_.router.shards();
  const std::size_t batch_size = flow_.batch_size;
  Batch** open = open_batches(step, arrived_ns);
  cursors_.resize(shards);
  Cursor* cursor = cursors_.data();
  for (std::uint32_t s = 0; s < shards; ++s) {
    Batch* b = open[s];
    const std::size_t n = b ? b->messages.count() : 0;
    cursor[s] = b ? Cursor{b->messages.at(n), b->keys.data() + n, batch_size - n} : Cursor{};
  }
  const std::byte* from = msgs.count() ? msgs.at(0) : nullptr;
  const std::size_t stride = kSlot ? kSlot : msgs.span().stride;
  const std::size_t size = kSlot ? kSlot : msgs.type()->size;
  const std::size_t n = msgs.count();
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t s = shard_of_[i];
    if (s == kSkip) continue;
    Cursor& c = cursor[s];
    if (c.room == 0) {  // no batch open for this shard
      open[s] = open_batch(p, step, arrived_ns);
      c = {open[s]->messages.at(0), open[s]->keys.data(), batch_size};
    }
    std::memcpy(c.message, from + i * stride, size);
    c.message += stride;
    *c.key++ = keys_[i];
    if (--c.room == 0) {
      open[s]->messages.set_count(batch_size);
      send_batch(s, open[s]);
      open[s] = nullptr;
    }
  }
  for (std::uint32_t s = 0; s < shards; ++s)
    if (open[s]) open[s]->messages.set_count(batch_size - cursor[s].room);
}

void Worker::scatter_moving(PipelinePlan& p, const StepPlan& step, MessageBuffer& msgs,
                            std::uint64_t arrived_ns) {
  Batch** open = open_batches(step, arrived_ns);
  const std::size_t n = msgs.count();
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t shard = shard_of_[i];
    if (shard == kSkip) continue;
    Batch*& b = open[shard];
    if (!b) b = open_batch(p, step, arrived_ns);
    b->keys[b->messages.count()] = keys_[i];
    b->messages.take(msgs, i);
    if (b->messages.count() == flow_.batch_size) {
      send_batch(shard, b);
      b = nullptr;
    }
  }
}

void Worker::send_batch(std::uint32_t shard, Batch* b) {
  if (flow_.run_on_source) {  // the only shard: `shard` is 0
    run_here(b);
    return;
  }
  // Not woken now: flush() wakes every shard sent to since the last flush, once.
  flow_.send(shard, b, may_block_, false);
  unwoken_[shard] = 1;
}

void Worker::run_here(Batch* b) {
  // A source's Worker takes its turn at the shard; the shard's own Worker is already inside it.
  if (may_block_) flow_.run_on_source->process_from_source(b);
  else flow_.run_on_source->process_here(b);
}

void Worker::encode_for_sink(PipelinePlan& p, MessageBuffer& msgs, std::uint64_t arrived_ns) {
  if (!p.encoder) {
    // No sink (count nothing), or a discard sink without an encoder (delivered now).
    if (p.sink >= 0) {
      p.metrics.add(p.metrics.out, msgs.count());
      p.metrics.latency.record(metrics::now_ns() - arrived_ns, msgs.count());
    }
    msgs.clear();
    return;
  }
  EncodedChunk*& chunk = chunks_[static_cast<std::size_t>(p.sink)];
  if (!chunk) {
    chunk = flow_.chunks.acquire();
    chunk->bytes.clear();
    chunk->bytes.reserve(kChunkBytes + 64 * 1024);  // once per pooled chunk, not by doubling
    chunk->messages = 0;
    chunk->arrived_ns = arrived_ns;
  }
  chunk->arrived_ns = std::min(chunk->arrived_ns, arrived_ns);
  BatchErrors errors(p, p.encoder_name, &msgs);
  {
    // chunk->bytes is exact once `out` is gone; most batches' outputs fit in a first 4 KiB.
    EncodedOutput out(chunk->bytes, p.sink_framing, 4096);
    errors.run([&](ErrorSink& sink) { p.encoder->encode(msgs.span(), out, sink); });
  }
  const std::size_t encoded = msgs.count() - errors.failed().size();
  chunk->messages += encoded;
  p.metrics.add(p.metrics.out, encoded);
  msgs.clear();
  if (chunk->bytes.size() >= kChunkBytes) send_chunk(static_cast<std::size_t>(p.sink));
}

void Worker::send_chunk(std::size_t sink) {
  // Sinks never feed back into shards, so blocking here cannot deadlock: it is backpressure.
  flow_.sinks[sink]->deliver(chunks_[sink]);
  chunks_[sink] = nullptr;
}

void Worker::flush() {
  const std::uint32_t shards = flow_.router.shards();
  for (std::size_t i = 0; i < open_.size(); ++i) {
    if (open_[i]) {
      send_batch(static_cast<std::uint32_t>(i % shards), open_[i]);
      open_[i] = nullptr;
    }
  }
  for (std::uint32_t s = 0; s < shards; ++s) {
    if (unwoken_[s]) flow_.inboxes[s]->wake();
    unwoken_[s] = 0;
  }
  for (std::size_t s = 0; s < chunks_.size(); ++s)
    if (chunks_[s] && !chunks_[s]->bytes.empty()) send_chunk(s);
  // A source thread that runs the shard sends the shard's outputs too (the shard's own
  // Worker, whose flush() comes here without may_block_).
  if (may_block_ && flow_.run_on_source) flow_.run_on_source->flush_from_source();
}

}  // namespace shardline::engine
