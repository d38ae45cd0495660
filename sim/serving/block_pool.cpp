#include "sim/serving/block_pool.h"

#include <stdexcept>

namespace kvsim {

bool BlockPool::allocate(std::int64_t blocks) {
  if (blocks <= 0) return true;
  if (blocks > available()) return false;
  if (blocks > free_) reclaim(blocks - free_);
  free_ -= blocks;
  private_ += blocks;
  return true;
}

void BlockPool::release(std::int64_t blocks) {
  if (blocks < 0 || blocks > private_) throw std::logic_error("BlockPool::release: more blocks than held");
  private_ -= blocks;
  free_ += blocks;
}

void BlockPool::reclaim(std::int64_t blocks) {
  while (blocks > 0 && !lru_.empty()) {
    const auto oldest = lru_.begin();
    const auto it = entries_.find(oldest->second);
    lru_.erase(oldest);
    const std::int64_t b = it->second.blocks;
    entries_.erase(it);
    cached_ -= b;
    reclaimable_ -= b;
    free_ += b;
    blocks -= b;
  }
}

std::int64_t BlockPool::pin_prefix(std::span<const std::uint64_t> hashes, std::uint64_t tick) {
  std::int64_t hits = 0;
  for (const std::uint64_t h : hashes) {
    const auto it = entries_.find(h);
    if (it == entries_.end()) break;
    Entry& e = it->second;
    if (e.users == 0) {
      lru_.erase({e.last_use, h});
      reclaimable_ -= e.blocks;
    }
    ++e.users;
    e.last_use = tick;
    ++hits;
  }
  return hits;
}

void BlockPool::unpin_prefix(std::span<const std::uint64_t> hashes, std::int64_t count, std::uint64_t tick) {
  for (std::int64_t i = 0; i < count; ++i) {
    const auto it = entries_.find(hashes[static_cast<std::size_t>(i)]);
    if (it == entries_.end() || it->second.users == 0) throw std::logic_error("BlockPool::unpin_prefix: not pinned");
    Entry& e = it->second;
    e.last_use = tick;
    if (--e.users == 0) {
      lru_.insert({tick, it->first});
      reclaimable_ += e.blocks;
    }
  }
}

std::int64_t BlockPool::insert_prefix(std::span<const std::uint64_t> hashes, std::int64_t blocks_each,
                                      std::uint64_t tick) {
  if (private_ < blocks_each * static_cast<std::int64_t>(hashes.size())) {
    throw std::logic_error("BlockPool::insert_prefix: caller holds fewer private blocks than it shares");
  }
  for (const std::uint64_t h : hashes) {
    private_ -= blocks_each;
    const auto it = entries_.find(h);
    if (it == entries_.end()) {
      entries_[h] = Entry{blocks_each, 1, tick};
      cached_ += blocks_each;
      continue;
    }
    // The same block was cached meanwhile by another request: use it, free the private copy.
    free_ += blocks_each;
    Entry& e = it->second;
    if (e.users == 0) {
      lru_.erase({e.last_use, h});
      reclaimable_ -= e.blocks;
    }
    ++e.users;
    e.last_use = tick;
  }
  return static_cast<std::int64_t>(hashes.size());
}

bool BlockPool::consistent() const {
  if (free_ < 0 || private_ < 0 || cached_ < 0 || free_ + private_ + cached_ != capacity_) return false;
  std::int64_t cached = 0, reclaimable = 0;
  for (const auto& [hash, e] : entries_) {
    cached += e.blocks;
    if (e.users == 0) reclaimable += e.blocks;
  }
  return cached == cached_ && reclaimable == reclaimable_ && lru_.size() <= entries_.size();
}

}  // namespace kvsim
