#include "sim/serving/block_pool.h"

#include <algorithm>
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

void BlockPool::set_lower_tiers(const std::vector<std::int64_t>& capacity_blocks) {
  levels_.assign(capacity_blocks.size(), Level{});
  lower_stats_.assign(capacity_blocks.size(), LowerTier{});
  for (std::size_t i = 0; i < capacity_blocks.size(); ++i) lower_stats_[i].capacity_blocks = capacity_blocks[i];
}

std::size_t BlockPool::lower_level_of(std::uint64_t hash) const {
  for (std::size_t i = 0; i < levels_.size(); ++i) {
    if (levels_[i].entries.count(hash)) return i;
  }
  return levels_.size();
}

void BlockPool::remove_from_level(std::size_t level, std::uint64_t hash) {
  Level& l = levels_[level];
  const auto it = l.entries.find(hash);
  l.lru.erase({it->second.last_use, hash});
  lower_stats_[level].used_blocks -= it->second.blocks;
  l.entries.erase(it);
}

// Moves an entry into lower tier `level`, first pushing that tier's oldest entries down a tier
// (out of the cache below the last). An entry larger than the tier goes straight on down.
void BlockPool::demote(std::size_t level, std::uint64_t hash, const Entry& entry) {
  if (level >= levels_.size()) return;
  Level& l = levels_[level];
  LowerTier& stats = lower_stats_[level];
  if (entry.blocks > stats.capacity_blocks) {
    demote(level + 1, hash, entry);
    return;
  }
  while (stats.used_blocks + entry.blocks > stats.capacity_blocks) {
    const std::uint64_t oldest = l.lru.begin()->second;
    const Entry moved = l.entries.at(oldest);
    remove_from_level(level, oldest);
    demote(level + 1, oldest, moved);
  }
  l.entries[hash] = Entry{entry.blocks, 0, entry.last_use};
  l.lru.insert({entry.last_use, hash});
  stats.used_blocks += entry.blocks;
  stats.written_blocks += entry.blocks;
  stats.peak_used_blocks = std::max(stats.peak_used_blocks, stats.used_blocks);
}

void BlockPool::reclaim(std::int64_t blocks) {
  while (blocks > 0 && !lru_.empty()) {
    const auto oldest = lru_.begin();
    const auto it = entries_.find(oldest->second);
    lru_.erase(oldest);
    const std::int64_t b = it->second.blocks;
    demote(0, it->first, it->second);
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
    if (it == entries_.end()) {
      // In a lower tier: load it back into the compute tier, pinned, if its blocks can be had.
      const std::size_t level = lower_level_of(h);
      if (level == levels_.size()) break;
      const std::int64_t blocks = levels_[level].entries.at(h).blocks;
      if (blocks > available()) break;
      remove_from_level(level, h);
      ++lower_stats_[level].hits;
      lower_stats_[level].loaded_blocks += blocks;
      if (blocks > free_) reclaim(blocks - free_);
      free_ -= blocks;
      cached_ += blocks;
      entries_[h] = Entry{blocks, 1, tick};
      ++hits;
      continue;
    }
    ++compute_tier_hits_;
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
      // A copy in a lower tier (not loaded back: the compute tier had no room then) is stale now.
      if (const std::size_t level = lower_level_of(h); level < levels_.size()) remove_from_level(level, h);
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
  for (std::size_t i = 0; i < levels_.size(); ++i) {
    std::int64_t used = 0;
    for (const auto& [hash, e] : levels_[i].entries) {
      used += e.blocks;
      if (entries_.count(hash)) return false;  // a hash lives in one tier
    }
    if (used != lower_stats_[i].used_blocks || used > lower_stats_[i].capacity_blocks) return false;
    if (levels_[i].lru.size() != levels_[i].entries.size()) return false;
  }
  return cached == cached_ && reclaimable == reclaimable_ && lru_.size() <= entries_.size();
}

}  // namespace kvsim
