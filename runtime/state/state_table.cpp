#include "state/state_table.hpp"

#include <algorithm>
#include <new>

namespace shardline::state {

StateTable::StateTable(const TypeDesc* type, StateFactory* factory, bool create_unknown)
    : type_(type), factory_(factory), create_unknown_(create_unknown) {
  stride_ = type->stride();
  used_in_last_ = per_chunk_ = 0;  // the first slot() allocates
}

StateTable::~StateTable() {
  // States are destroyed by plugin code: this must run while the plugin is still loaded.
  index_.for_each([this](std::uint64_t, void* state) { type_->destroy(state); });
}

void* StateTable::create(std::uint64_t key) {
  return create_with(key, [&](void* at) { factory_->construct(at, key); });
}

void* StateTable::slot() {
  if (used_in_last_ == per_chunk_) {
    // Chunks start at about 1 KiB and double up to about 64 KiB: a table of a few hundred
    // keys wastes little, a large one makes one allocation per 64 KiB of states.
    constexpr std::size_t kFirstChunk = 1024, kLargestChunk = 64 * 1024;
    const std::size_t bytes = chunks_.empty() ? kFirstChunk
                                              : std::min(per_chunk_ * stride_ * 2, kLargestChunk);
    per_chunk_ = std::max<std::size_t>(1, bytes / stride_);
    const std::size_t align = std::max<std::size_t>(type_->align, 64);
    chunks_.emplace_back(
        static_cast<std::byte*>(::operator new(per_chunk_ * stride_, std::align_val_t(align))),
        ChunkFree{align});
    used_in_last_ = 0;
  }
  // If the construction that follows throws, the slot simply stays free.
  return chunks_.back().get() + used_in_last_ * stride_;
}

std::size_t StateTable::overhead_bytes() const {
  const std::size_t index = index_.capacity() * KeyIndex::slot_bytes();
  const std::size_t unused = (per_chunk_ - used_in_last_) * stride_;
  return index + (chunks_.empty() ? 0 : unused) + (stride_ - type_->size) * index_.size();
}

}  // namespace shardline::state
