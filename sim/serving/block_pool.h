#pragma once
// The paged KV blocks of the compute tier (DESIGN.md §6): requests hold private blocks; a prefix
// cache holds blocks shared by requests whose prompts start alike (Mooncake hash ids), stored once,
// kept after their last user finishes and reclaimed least-recently-used first when space runs out.
// With lower tiers (`prefix_cache = hbm+dram`), a reclaimed prefix block moves down to the first
// lower tier (each an LRU of its own, pushing its oldest entries further down or out) and a prompt
// that starts with it loads it back into the compute tier.
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

namespace kvsim {

class BlockPool {
 public:
  explicit BlockPool(std::int64_t capacity_blocks) : capacity_(capacity_blocks), free_(capacity_blocks) {}

  // What happened in one lower tier of the prefix cache (counts since the start).
  struct LowerTier {
    std::int64_t capacity_blocks = 0;
    std::int64_t used_blocks = 0;
    std::int64_t peak_used_blocks = 0;
    std::int64_t hits = 0;            // prefix hashes loaded back into the compute tier
    std::int64_t loaded_blocks = 0;   // their blocks (read from this tier)
    std::int64_t written_blocks = 0;  // blocks moved in (from the tier above)
  };
  // The prefix cache's tiers below the compute tier, in order, with their capacities in blocks.
  void set_lower_tiers(const std::vector<std::int64_t>& capacity_blocks);
  const std::vector<LowerTier>& lower_tiers() const { return lower_stats_; }
  std::int64_t compute_tier_hits() const { return compute_tier_hits_; }  // hashes found in the compute tier

  std::int64_t capacity() const { return capacity_; }
  std::int64_t free_blocks() const { return free_; }
  std::int64_t private_blocks() const { return private_; }
  std::int64_t cached_blocks() const { return cached_; }
  // Free blocks plus cached blocks no request uses: what an allocation can get.
  std::int64_t available() const { return free_ + reclaimable_; }

  // Takes `blocks` private blocks, reclaiming unused prefix-cache entries if needed.
  // Returns false (and changes nothing) if they cannot be had.
  bool allocate(std::int64_t blocks);
  void release(std::int64_t blocks);

  // Prefix cache: the number of leading `hashes` resident; pins them (one more user each). A hash
  // in a lower tier is loaded back into the compute tier if its blocks can be had.
  std::int64_t pin_prefix(std::span<const std::uint64_t> hashes, std::uint64_t tick);
  void unpin_prefix(std::span<const std::uint64_t> hashes, std::int64_t count, std::uint64_t tick);
  // The caller's private copies of these prefix blocks become shared, pinned by the caller: each
  // moves into the cache, or is freed where the same hash is cached already. The caller gives up
  // blocks_each private blocks per hash. Returns hashes.size().
  std::int64_t insert_prefix(std::span<const std::uint64_t> hashes, std::int64_t blocks_each, std::uint64_t tick);
  bool cached(std::uint64_t hash) const { return entries_.count(hash) > 0; }

  // Invariant: free + private + cached = capacity, and the reclaimable count matches the entries
  // with no user. Returns false if broken (tests call it after every event).
  bool consistent() const;

 private:
  void reclaim(std::int64_t blocks);
  struct Entry {
    std::int64_t blocks = 0;
    std::int64_t users = 0;
    std::uint64_t last_use = 0;
  };
  // One lower tier's entries (none pinned: a used entry is in the compute tier).
  struct Level {
    std::unordered_map<std::uint64_t, Entry> entries;
    std::set<std::pair<std::uint64_t, std::uint64_t>> lru;  // (last_use, hash)
  };
  void demote(std::size_t level, std::uint64_t hash, const Entry& entry);
  // The lower tier holding `hash`, or levels_.size().
  std::size_t lower_level_of(std::uint64_t hash) const;
  void remove_from_level(std::size_t level, std::uint64_t hash);
  std::vector<Level> levels_;
  std::vector<LowerTier> lower_stats_;
  std::int64_t compute_tier_hits_ = 0;
  std::int64_t capacity_ = 0;
  std::int64_t free_ = 0;
  std::int64_t private_ = 0;
  std::int64_t cached_ = 0;
  std::int64_t reclaimable_ = 0;  // blocks of cached entries with no user
  std::unordered_map<std::uint64_t, Entry> entries_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> lru_;  // (last_use, hash) of entries with no user
};

}  // namespace kvsim
