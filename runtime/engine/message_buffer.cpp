#include "engine/message_buffer.hpp"

#include <algorithm>
#include <new>
#include <string>

#include <shardline/type_desc.hpp>

namespace shardline::engine {

MessageBuffer::~MessageBuffer() {
  clear();
  release();
}

void MessageBuffer::release() {
  if (data_) ::operator delete(data_, std::align_val_t(alignment_));
  data_ = nullptr;
  bytes_ = 0;
  capacity_ = 0;
}

void MessageBuffer::set_type(const TypeDesc* type) {
  clear();
  type_ = type;
  if (!type) {
    stride_ = 0;
    capacity_ = 0;
    return;
  }
  stride_ = type->stride();
  if (data_ && alignment_ < type->align) release();
  capacity_ = data_ ? bytes_ / stride_ : 0;
}

void MessageBuffer::reserve(std::size_t n) {
  if (n <= capacity_) return;
  const std::size_t alignment = std::max<std::size_t>(type_->align, 64);
  const std::size_t bytes = n * stride_;
  auto* fresh = static_cast<std::byte*>(::operator new(bytes, std::align_val_t(alignment)));
  if (type_->trivial) {
    if (count_) std::memcpy(fresh, data_, count_ * stride_);
  } else {
    for (std::size_t i = 0; i < count_; ++i) type_->relocate(fresh + i * stride_, at(i));
  }
  const std::size_t count = count_;
  count_ = 0;
  release();
  data_ = fresh;
  bytes_ = bytes;
  alignment_ = alignment;
  capacity_ = n;
  count_ = count;
}

void MessageBuffer::grow_one(MessageOutput& self) {
  auto& b = static_cast<MessageBuffer&>(self);
  b.reserve(b.capacity_ ? b.capacity_ * 2 : 256);
}

void MessageBuffer::rollback_to(MessageOutput& self, std::size_t keep) {
  auto& b = static_cast<MessageBuffer&>(self);
  for (std::size_t i = keep; i < b.count_; ++i) b.destroy_one(i);
  b.count_ = keep;
}

void MessageBuffer::erase_sorted(const std::size_t* indices, std::size_t n) {
  if (n == 0) return;
  std::size_t write = indices[0];
  std::size_t next = 0;
  for (std::size_t read = indices[0]; read < count_; ++read) {
    if (next < n && indices[next] == read) {
      destroy_one(read);
      ++next;
      continue;
    }
    if (type_->trivial) std::memcpy(at(write), at(read), type_->size);
    else type_->relocate(at(write), at(read));
    ++write;
  }
  count_ = write;
}

void MessageBuffer::clear() {
  // An empty buffer never touches its TypeDesc: after a reload it may point into an unloaded
  // plugin until the buffer is given a new type.
  if (count_ && !type_->trivial)
    for (std::size_t i = 0; i < count_; ++i) type_->destroy(at(i));
  count_ = 0;
}

bool is_std_string(const TypeDesc& type) {
  return type.fingerprint == type_desc_v<std::string>.fingerprint;
}

}  // namespace shardline::engine
