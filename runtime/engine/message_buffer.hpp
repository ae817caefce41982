// MessageBuffer: a growable array of messages of one plugin-defined type. [one thread at a time]
//
// The host does not know message types at compile time, only their TypeDesc (size, alignment,
// how to relocate and destroy). Messages are laid out `stride` bytes apart in one aligned
// allocation; plugin code constructs them in place through the MessageOutput base, and the host
// moves them between buffers with memcpy for trivially-copyable types (the common case:
// no per-message work beyond the copy) or with the type's relocate function otherwise.
// A buffer keeps its capacity when cleared or retyped, so steady-state processing allocates
// nothing.
#pragma once

#include <cstddef>
#include <cstring>
#include <utility>

#include <shardline/boundary.hpp>

namespace shardline::engine {

class MessageBuffer : public MessageOutput {
 public:
  MessageBuffer() {
    grow_ = &MessageBuffer::grow_one;
    rollback_ = &MessageBuffer::rollback_to;
  }
  explicit MessageBuffer(const TypeDesc* type) : MessageBuffer() { set_type(type); }
  ~MessageBuffer();
  MessageBuffer(const MessageBuffer&) = delete;
  MessageBuffer& operator=(const MessageBuffer&) = delete;

  /// Empties the buffer (destroying its messages) and switches it to `type`.
  void set_type(const TypeDesc* type);
  const TypeDesc* type() const { return type_; }

  std::size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  std::byte* at(std::size_t i) const { return data_ + i * stride_; }
  MessageSpan span() const { return {data_, count_, stride_}; }

  void reserve(std::size_t n);
  /// Moves message i of `from` (same type) to the end of this buffer. The slot in `from` is
  /// left destroyed: the caller finishes with from.forget_all().
  void take(MessageBuffer& from, std::size_t i) {
    if (count_ == capacity_) reserve(capacity_ ? capacity_ * 2 : 64);
    if (type_->trivial) std::memcpy(at(count_), from.at(i), type_->size);
    else type_->relocate(at(count_), from.at(i));
    ++count_;
  }
  /// Destroys message i in place (its slot must then be forgotten, not destroyed again).
  void destroy_one(std::size_t i) {
    if (!type_->trivial) type_->destroy(at(i));
  }
  /// Removes the messages at the listed indices (ascending), keeping the order of the rest.
  void erase_sorted(const std::size_t* indices, std::size_t n);
  /// Destroys every message; keeps the capacity.
  void clear();
  /// Forgets every message without destroying it (all were moved out or destroyed one by one).
  void forget_all() { count_ = 0; }
  /// Trivially-copyable types only: the first `n` slots (within the capacity) hold messages
  /// that were copied into at() directly.
  void set_count(std::size_t n) { count_ = n; }
  /// Exchanges the contents (messages, type, allocation) of two buffers: handing a whole
  /// buffer on without copying its messages.
  void swap(MessageBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(count_, o.count_);
    std::swap(capacity_, o.capacity_);
    std::swap(stride_, o.stride_);
    std::swap(type_, o.type_);
    std::swap(bytes_, o.bytes_);
    std::swap(alignment_, o.alignment_);
  }

 private:
  static void grow_one(MessageOutput& self);
  static void rollback_to(MessageOutput& self, std::size_t keep);
  void release();

  const TypeDesc* type_ = nullptr;
  std::size_t bytes_ = 0;      ///< size of the allocation
  std::size_t alignment_ = 0;  ///< alignment of the allocation
};

/// Whether messages of `type` are std::string: plugins are built with the host's compiler and
/// string ABI (their ABI record says so), so the host can read the text of such a message.
bool is_std_string(const TypeDesc& type);

}  // namespace shardline::engine
