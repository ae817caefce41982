// Worker: runs pipeline steps on one thread — a source thread or a shard thread.
//
// A source thread's worker decodes each chunk of frames in one plugin call, runs the stateless
// steps that follow (no extra hop), keys the messages with the partition function, and
// scatters them into one open batch per (stateful step, shard). A shard thread's worker takes
// the output of a state computation through the same path: the following stateless steps, then
// either the next stateful step (re-keyed, possibly on another shard) or the encoder and the
// sink. Full batches and chunks are sent at once; partly filled ones on flush(), which each
// thread calls whenever it runs out of input (a busy shard also every 500 us), so latency stays
// low when traffic is light. With one shard, the decoder is called a batch at a time, and each
// call's messages cross in their own buffer, uncopied; a source thread that runs that shard
// itself (Dataflow::run_on_source) processes them there.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "connectors/source.hpp"
#include "engine/dataflow.hpp"
#include "loader/plugin_call.hpp"

namespace shardline::engine {

/// Collects the messages a plugin call failed on. [the worker's thread]
class BatchErrors {
 public:
  BatchErrors(PipelinePlan& p, std::string_view step, const MessageBuffer* input)
      : p_(p), step_(step), input_(input) {}
  /// A decoder's: the messages are `frames`, read from `origin`.
  BatchErrors(PipelinePlan& p, std::string_view step, const Frame* frames,
              const connectors::FrameOrigin& origin)
      : p_(p), step_(step), input_(nullptr), frames_(frames), origin_(&origin) {}
  /// Runs call(ErrorSink&), the step's call into plugin code, with the sink that reports its
  /// failures here, and labelled with the pipeline and the step for a crash report.
  template <class Call>
  void run(Call&& call) {
    ErrorSink sink(&BatchErrors::report, this);
    const loader::PluginCall in(p_.name, step_);
    call(sink);
  }
  /// Indices of the failed messages, ascending.
  const std::vector<std::size_t>& failed() const { return failed_; }
  /// Records a failure the host itself found (e.g. an undeclared key).
  void add(std::size_t index, std::string_view what);

 private:
  static void report(void* self, std::size_t index, std::string_view what) {
    static_cast<BatchErrors*>(self)->add(index, what);
  }
  PipelinePlan& p_;
  std::string_view step_;
  const MessageBuffer* input_;
  const Frame* frames_ = nullptr;
  const connectors::FrameOrigin* origin_ = nullptr;
  std::vector<std::size_t> failed_;
};

class Worker {
 public:
  /// A source thread's worker blocks when a shard's inbox is full; a shard's never does.
  Worker(Dataflow& flow, bool on_source_thread);
  ~Worker();

  /// Decodes frames of pipeline `p`, which the source read from `origin` at `arrived_ns`
  /// (metrics::now_ns), and carries the messages as far as this thread goes.
  void decode(PipelinePlan& p, const Frame* frames, std::size_t n, std::uint64_t arrived_ns,
              const connectors::FrameOrigin& origin);
  /// Where a step run by the caller (a shard's state computation) puts its outputs, for
  /// advance() to carry on.
  MessageBuffer& step_output() { return scratch_[0]; }
  /// Carries the messages in step_output() through steps [step, end) of pipeline p: the
  /// stateless steps here, then to the next stateful step's shards or to the sink. The
  /// batches and chunks they go into keep the oldest `arrived_ns` of what they hold.
  void advance(PipelinePlan& p, std::size_t step, std::uint64_t arrived_ns);
  /// Sends every partly filled batch and chunk.
  void flush();

 private:
  /// One call of the decoder, then advance().
  void decode_call(PipelinePlan& p, const Frame* frames, std::size_t n, std::uint64_t arrived_ns,
                   const connectors::FrameOrigin& origin);
  void route(PipelinePlan& p, const StepPlan& step, MessageBuffer& msgs, std::uint64_t arrived_ns);
  /// The open batches of `step`'s route, one per shard, each stamped with the older of its
  /// own arrival and `arrived_ns` (the messages about to be scattered into them).
  Batch** open_batches(const StepPlan& step, std::uint64_t arrived_ns);
  void scatter_trivial(PipelinePlan& p, const StepPlan& step, const MessageBuffer& msgs,
                       std::uint64_t arrived_ns);
  /// scatter_trivial() for slots of kSlot bytes (0: any size).
  template <std::size_t kSlot>
  void scatter_copies(PipelinePlan& p, const StepPlan& step, const MessageBuffer& msgs,
                      std::uint64_t arrived_ns);
  void scatter_moving(PipelinePlan& p, const StepPlan& step, MessageBuffer& msgs,
                      std::uint64_t arrived_ns);
  /// A batch from the pool for `step` of `p`, its messages and keys as the pool left them.
  Batch* new_batch(PipelinePlan& p, const StepPlan& step, std::uint64_t arrived_ns);
  /// new_batch(), emptied and sized for batch_size messages of the step's input.
  Batch* open_batch(PipelinePlan& p, const StepPlan& step, std::uint64_t arrived_ns);
  void send_batch(std::uint32_t shard, Batch* b);
  /// Processes `b` on this thread, which runs the only shard (Dataflow::run_on_source).
  void run_here(Batch* b);
  /// Encodes the messages of pipeline p's last step into the chunk for its sink.
  void encode_for_sink(PipelinePlan& p, MessageBuffer& msgs, std::uint64_t arrived_ns);
  void send_chunk(std::size_t sink);

  Dataflow& flow_;
  bool may_block_;
  MessageBuffer scratch_[2];  ///< a stateless step's input and output, in turn
  std::vector<std::uint64_t> keys_;
  std::vector<std::uint32_t> shard_of_;
  std::vector<Batch*> open_;          ///< [route * shards + shard]
  std::vector<EncodedChunk*> chunks_; ///< [sink]
  std::vector<char> unwoken_;         ///< [shard]: sent to without waking it since the last flush

  /// Where scatter_trivial writes the next message of a shard's open batch, and its key.
  struct Cursor {
    std::byte* message = nullptr;
    std::uint64_t* key = nullptr;
    std::size_t room = 0;  ///< slots left in the open batch; 0 when none is open
  };
  std::vector<Cursor> cursors_;       ///< [shard], during one scatter_trivial
};

}  // namespace shardline::engine
