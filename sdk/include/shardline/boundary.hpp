// shardline/boundary.hpp — the type-erased boundary between the host and a plugin.
//
// Plugin authors never use this header directly: <shardline/plugin.hpp> turns their typed
// functions into the components below. The host sees only these types. Every call crosses the
// boundary once per *batch* of messages, never once per message.
//
// Memory: messages live in host-owned buffers (MessageOutput), constructed in place by plugin
// code and moved between threads by the host through the TypeDesc of their type. Nothing a
// plugin creates may outlive its library: the host keeps the library loaded while it holds any
// component, message or state made by it.
//
// Errors: a plugin never lets an exception escape a batch call. The SDK wrappers catch per
// message and report through ErrorSink (index + text, copied by the host at once), so one bad
// message never takes its neighbours or its shard down.
#pragma once

#include <cxxabi.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include <shardline/type_name.hpp>

#define SHARDLINE_API __attribute__((visibility("default")))

namespace shardline {

/// How to move, destroy and carry over values of one message or state type, without knowing
/// the type. Built by type_desc_v<T> (<shardline/type_desc.hpp>).
struct TypeDesc {
  std::string_view name;   ///< type_name<T>()
  std::uint32_t size;      ///< sizeof(T)
  std::uint32_t align;     ///< alignof(T)
  bool trivial;            ///< trivially copyable and destructible: moved with memcpy
  bool polymorphic;        ///< has a vtable in the plugin's code: never kept across a reload
  /// T::schema_version if T declares one, else 0. Bump it when a state's layout changes.
  std::uint32_t schema_version;
  /// Hash of name, size, alignment, triviality and schema version: two versions of a plugin
  /// whose state types have the same fingerprint keep their state objects as they are.
  std::uint64_t fingerprint;
  /// Move-constructs *dst from *src, then destroys *src. [any thread]
  void (*relocate)(void* dst, void* src) noexcept;
  /// Destroys *p. [any thread]
  void (*destroy)(void* p) noexcept;
  /// Appends the saved form of *value (T::save); null if T cannot be saved.
  void (*save)(const void* value, std::vector<std::byte>& out);
  /// Constructs *dst from a saved form written by schema `version` of T (T::restore); null if
  /// T cannot be restored. May throw (a failed migration).
  void (*restore)(void* dst, const std::byte* data, std::size_t size, std::uint32_t version);

  /// Bytes from one value to the next in an array: the size rounded up to the alignment, and
  /// never 0 (equal to sizeof(T) for every C++ type; the host also takes hand-made TypeDescs).
  std::size_t stride() const {
    const std::size_t s = (std::size_t{size} + align - 1) / align * align;
    return s ? s : align;
  }
};

/// One frame of input bytes (a length-prefixed payload, or a line without its newline).
struct Frame {
  const std::byte* data;
  std::uint32_t size;
  std::string_view text() const { return {reinterpret_cast<const char*>(data), size}; }
};

/// A read-only view of `count` messages laid out `stride` bytes apart.
struct MessageSpan {
  std::byte* data = nullptr;
  std::size_t count = 0;
  std::size_t stride = 0;
  template <class T>
  T& at(std::size_t i) const {
    return *std::launder(reinterpret_cast<T*>(data + i * stride));
  }
};

/// Where a component writes the messages it produces. The buffer belongs to the host; the
/// plugin constructs each message in next_slot() and then commits it, or, in a batch loop,
/// makes room for many at once with room(n), builds them stride() bytes apart and commits
/// them with commit(n). [shard or source thread]
class MessageOutput {
 public:
  void* next_slot() {
    if (count_ == capacity_) grow_(*this);
    return data_ + count_ * stride_;
  }
  void commit() { ++count_; }
  std::size_t size() const { return count_; }
  /// Room for `n` more messages; returns where the next one goes.
  std::byte* room(std::size_t n) {
    while (capacity_ - count_ < n) grow_(*this);
    return data_ + count_ * stride_;
  }
  std::size_t stride() const { return stride_; }
  /// Commits the `n` messages built after the last committed one.
  void commit(std::size_t n) { count_ += n; }
  /// Destroys the messages committed after the first `keep` (a message that threw half-way
  /// through emitting leaves nothing behind).
  void rollback(std::size_t keep) {
    if (count_ > keep) rollback_(*this, keep);
  }

 protected:
  std::byte* data_ = nullptr;
  std::size_t count_ = 0;
  std::size_t capacity_ = 0;
  std::size_t stride_ = 0;
  void (*grow_)(MessageOutput&) = nullptr;  ///< host code: makes room for one more message
  void (*rollback_)(MessageOutput&, std::size_t keep) = nullptr;  ///< host code
};

/// How a sink separates messages on the wire.
enum class Framing : std::uint8_t {
  length_prefixed,  ///< 4-byte big-endian length, then the payload (Wallaroo's framing)
  lines,            ///< the payload, then '\n'
};

/// The bytes an encoder produces, already framed for the sink. [shard thread]
///
/// Appends to `buffer`. The vector is grown ahead of the writes and a Writer copies fields
/// into that room through its own write position, not one vector insert per field; the buffer
/// is trimmed back to exactly the bytes written when the EncodedOutput is destroyed. Read the
/// buffer after that. Growing zero-fills the new room (std::vector), so the room grows by at
/// least `min_room` bytes, then by as much as was written so far: a host appending many
/// messages passes a few KiB, one small record (a state's save()) the default.
class EncodedOutput {
 public:
  EncodedOutput(std::vector<std::byte>& buffer, Framing framing, std::size_t min_room = 64)
      : buf_(buffer), framing_(framing), end_(buffer.size()), first_(end_), min_room_(min_room) {}
  ~EncodedOutput() { buf_.resize(end_); }
  EncodedOutput(const EncodedOutput&) = delete;
  EncodedOutput& operator=(const EncodedOutput&) = delete;

  void begin_message() {
    start_ = end_;
    if (framing_ == Framing::length_prefixed) {
      reserve(4);
      end_ += 4;
    }
  }
  /// Frames the message written since begin_message(); for lines framing, throws (the message
  /// dropped) if it holds a newline.
  void end_message() {
    check_line(buf_.data() + start_, end_ - start_);
    end_checked_message();
  }
  /// end_message() for a message whose bytes check_line() has already seen.
  void end_checked_message() {
    if (framing_ == Framing::length_prefixed) {
      const auto n = static_cast<std::uint32_t>(end_ - start_ - 4);
      const std::byte be[4] = {std::byte(n >> 24), std::byte(n >> 16), std::byte(n >> 8),
                               std::byte(n)};
      std::memcpy(buf_.data() + start_, be, 4);
    } else {
      reserve(1);
      buf_[end_++] = std::byte('\n');
    }
  }
  /// For lines framing, throws if the n bytes at p (the whole message) hold a newline: a reader
  /// would see two messages, the second one made of the first one's tail. A text encoder's
  /// bytes are checked before they are copied, where the check costs about 2 ns per 20-byte
  /// line (micro_bench Encode_Text/1 against /0); scanned just after being written, about 3x
  /// that.
  void check_line(const void* p, std::size_t n) const {
    if (framing_ != Framing::lines) return;
    if (const void* nl = std::memchr(p, '\n', n))
      throw_newline_inside(static_cast<const char*>(nl) - static_cast<const char*>(p));
  }
  /// Drops a message whose encoder threw half-way.
  void abandon_message() { end_ = start_; }
  void append(const void* p, std::size_t n) {
    reserve(n);
    std::memcpy(buf_.data() + end_, p, n);
    end_ += n;
  }

  /// Makes room for at least `n` more bytes after the ones written.
  void reserve(std::size_t n) {
    if (buf_.size() - end_ >= n) return;
    std::size_t more = end_ - first_ > min_room_ ? end_ - first_ : min_room_;
    if (more < n) more = n;
    buf_.resize(end_ + more);
  }
  /// The room: bytes may be written from position() up to limit(), then advance_to() the end
  /// of what was written. (What a Writer does.)
  std::byte* position() { return buf_.data() + end_; }
  std::byte* limit() { return buf_.data() + buf_.size(); }
  void advance_to(std::byte* end) { end_ = static_cast<std::size_t>(end - buf_.data()); }

 private:
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_newline_inside(std::ptrdiff_t at) {
    throw std::runtime_error(
        "the encoded message has a newline at byte " + std::to_string(at) +
        ", and the sink's framing is \"lines\": a reader would take it for two messages (encode "
        "it without newlines, or give the sink framing = \"length\")");
  }

  std::vector<std::byte>& buf_;
  Framing framing_;
  std::size_t start_ = 0;
  std::size_t end_;  ///< bytes written; buf_.size() is the room, beyond them
  std::size_t first_;     ///< buffer size when this output began
  std::size_t min_room_;  ///< bytes the room grows by at least
};

/// Where a component reports a message it could not handle. The host copies `what` at once.
class ErrorSink {
 public:
  using Fn = void (*)(void* ctx, std::size_t index, std::string_view what);
  ErrorSink(Fn fn, void* ctx) : fn_(fn), ctx_(ctx) {}
  void report(std::size_t index, std::string_view what) { fn_(ctx_, index, what); }

 private:
  Fn fn_;
  void* ctx_;
};

/// What an error report says of the exception being handled (call it inside a catch): the
/// what() of a std::exception, the text of a thrown string, otherwise the exception's type
/// ("an exception of type Weird"), so that `throw 42` is not reported as nothing at all.
inline std::string current_exception_text() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (const std::string& s) {
    return s;
  } catch (const char* s) {
    return s ? s : "a null const char*";
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    if (!type) return "an unknown exception";
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(
        abi::__cxa_demangle(type->name(), nullptr, nullptr, &status), std::free);
    return std::string("an exception of type ") + (status == 0 && name ? name.get() : type->name());
  }
}

/// Partition keys reach the engine as 64-bit integers: integer keys as they are, string keys
/// as their XXH3 hash (see <shardline/key.hpp>).
enum class KeyKind : std::uint8_t { integer, string };

inline constexpr std::string_view to_string(KeyKind k) {
  return k == KeyKind::string ? "string" : "integer";
}

enum class ComponentKind : std::uint8_t {
  decoder,
  encoder,
  computation,
  partition,
  state,
  state_computation,
};

inline constexpr std::string_view to_string(ComponentKind k) {
  switch (k) {
    case ComponentKind::decoder: return "decoder";
    case ComponentKind::encoder: return "encoder";
    case ComponentKind::computation: return "computation";
    case ComponentKind::partition: return "partition";
    case ComponentKind::state: return "state";
    case ComponentKind::state_computation: return "state_computation";
  }
  return "?";
}

// ---- The components. Each call handles a whole batch; see the class comments for threads.

struct SHARDLINE_API Component {
  virtual ~Component() = default;
};

/// Frames -> messages. [source thread]
struct SHARDLINE_API Decoder : Component {
  virtual void decode(const Frame* frames, std::size_t n, MessageOutput& out,
                      ErrorSink& errors) = 0;
};

/// Messages -> framed bytes. [shard thread]
struct SHARDLINE_API Encoder : Component {
  virtual void encode(MessageSpan in, EncodedOutput& out, ErrorSink& errors) = 0;
};

/// Stateless step: each input yields zero, one or more outputs. [source or shard thread]
struct SHARDLINE_API Computation : Component {
  virtual void run(MessageSpan in, MessageOutput& out, ErrorSink& errors) = 0;
};

/// Message -> 64-bit key. [source or shard thread]
struct SHARDLINE_API Partition : Component {
  virtual void keys(MessageSpan in, std::uint64_t* keys_out, ErrorSink& errors) = 0;
};

/// Builds the state of a key seen for the first time, in memory the host provides. [shard thread]
struct SHARDLINE_API StateFactory : Component {
  virtual void construct(void* at, std::uint64_t key) = 0;
};

/// (message, state of its key) -> zero or more outputs. states[i] belongs to in.at(i).
/// [shard thread owning every state in the batch]
struct SHARDLINE_API StateComputation : Component {
  virtual void run(MessageSpan in, void* const* states, MessageOutput& out,
                   ErrorSink& errors) = 0;
};

/// One entry of the manifest.
struct ComponentInfo {
  ComponentKind kind;
  std::string name;
  const TypeDesc* input = nullptr;   ///< decoder: null; others: the message type consumed
  const TypeDesc* output = nullptr;  ///< null when the component emits nothing
  const TypeDesc* state = nullptr;   ///< state and state_computation: the state type
  KeyKind key_kind = KeyKind::integer;  ///< partition only
  std::unique_ptr<Component> impl;
};

/// What a plugin exports: returned by its entry point once the ABI record has been accepted.
struct Manifest {
  std::string plugin_name;
  std::string plugin_version;
  std::vector<ComponentInfo> components;
  std::string error;  ///< non-empty when registration itself failed (e.g. a duplicate name)
};

}  // namespace shardline
