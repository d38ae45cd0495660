#include "sim/serving/scheduler.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

#include "util/error.h"

namespace kvsim {

namespace {

constexpr std::size_t kMaxTimelineRows = 20000;

// The blocks of `block_bytes` that lower tier `tier` holds, for `use` (swap, offload, prefix cache:
// each takes its tier whole). Throws InputError if the tier is missing, is the compute tier or a
// switch, or has no path of links from the compute tier. The scenario loader refuses all of these
// first, naming the file (check_scenario_tiers); this guards direct callers.
std::int64_t lower_tier_blocks(const Hierarchy& hierarchy, const std::string& tier, double block_bytes,
                               const std::string& use) {
  const Hardware& hw = hierarchy.hardware();
  if (!hw.has_tier(tier) || tier == hw.device.compute_tier || hw.tier(tier).kind == "switch") {
    throw InputError(use + ": hardware " + (hw.source.empty() ? hw.device.name : hw.source) +
                     " has no lower storage tier '" + tier + "' (attach one, e.g. [hardware] attach = host-ddr5)");
  }
  hierarchy.path(hw.device.compute_tier, tier);  // throws if no path
  return static_cast<std::int64_t>(std::floor(hw.tier(tier).capacity_bytes / block_bytes));
}

// One request while the scheduler knows it. Positions count the request's private tokens: the
// prompt after its prefix-cache hits, then what it generates.
struct Live {
  std::size_t index = 0;
  RetentionCurve curve;
  std::int64_t prompt = 0;     // private prompt tokens at the last admission
  std::int64_t target = 0;     // tokens to process before the next output token
  std::int64_t processed = 0;  // private tokens processed since the last admission
  std::int64_t generated = 0;  // output tokens emitted
  bool prefilling = true;
  bool admitted_once = false;
  double resident = 0;              // private entries per (layer, KV head) after the last pass
  double shared_offset = 0;         // of those, tokens whose blocks moved to the prefix cache
  std::int64_t blocks = 0;          // private blocks in the compute tier
  std::int64_t swapped_blocks = 0;  // blocks in the swap tier (preempted by swap)
  std::int64_t cached_tokens = 0;   // prompt tokens attended from the prefix cache
  std::int64_t pinned = 0;          // leading prefix hashes pinned in the cache
  std::int64_t reserved = 0;        // admission=reserve: blocks set aside for its peak
  std::int64_t scheduled_in = -1;   // the iteration it last took part in
  std::int64_t blocked_before = 0;  // memory-blocked iterations before it arrived (or was preempted)
};

struct Step {
  std::size_t live = 0;
  std::int64_t tokens = 0;
  double context_before = 0;  // entries per (layer, KV head) attended before the step
};

class Scheduler {
 public:
  explicit Scheduler(const ServingInput& in)
      : in_(in),
        cfg_(in.config),
        hbm_blocks_(kv_capacity_blocks(in)),
        pool_(hbm_blocks_ + offload_capacity_blocks(in)) {
    const ModelShape& m = in.model;
    layer_heads_ = static_cast<double>(m.num_layers) * m.num_kv_heads;
    block_bytes_ = static_cast<double>(cfg_.block_tokens) * static_cast<double>(m.bytes_per_token());
    const Hardware& hw = in.hierarchy.hardware();
    compute_tier_ = hw.device.compute_tier;
    if (cfg_.preemption == ServingConfig::Preemption::kSwap) {
      swap_capacity_blocks_ =
          lower_tier_blocks(in.hierarchy, cfg_.swap_tier, block_bytes_, "preemption " + cfg_.preemption_spec());
    }
    offload_ = in.placement.kind == Placement::Kind::kOffload;
    prefix_block_tokens_ = in.workload.prefix_block_tokens;
    prefix_caching_ = in.prefix_caching && prefix_block_tokens_ > 0 && prefix_block_tokens_ % cfg_.block_tokens == 0 &&
                      cfg_.admission == ServingConfig::Admission::kOnDemand;
    if (prefix_caching_ && !cfg_.prefix_cache_lower_tiers.empty()) {
      std::vector<std::int64_t> capacities;
      for (const std::string& tier : cfg_.prefix_cache_lower_tiers) {
        capacities.push_back(lower_tier_blocks(in.hierarchy, tier, block_bytes_,
                                               "prefix_cache " + cfg_.prefix_cache_spec(compute_tier_)));
        result_.prefix_tiers.push_back({tier, 0, 0, 0, 0});
      }
      pool_.set_lower_tiers(capacities);
      prefix_moved_.assign(capacities.size(), {0, 0});
    }
    const std::size_t n = in.workload.requests.size();
    result_.requests.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const WorkloadRequest& w = in.workload.requests[i];
      ServingRequestResult& r = result_.requests[i];
      r.id = w.id;
      r.arrival_s = w.arrival_s;
      r.prompt_tokens = w.prompt_tokens;
      r.output_tokens = w.output_tokens;
    }
    result_.capacity_blocks = pool_.capacity();
    result_.offload_capacity_blocks = pool_.capacity() - hbm_blocks_;
    result_.block_bytes = block_bytes_;
  }

  ServingResult run() {
    const std::size_t n = in_.workload.requests.size();
    if (in_.concurrency > 0) {
      for (int client = 0; client < in_.concurrency && next_ < n; ++client) arrive(next_++, 0.0);
    }
    while (done_ < n) {
      if (in_.concurrency <= 0) {
        while (next_ < n && in_.workload.requests[next_].arrival_s <= now_)
          arrive(next_, in_.workload.requests[next_].arrival_s), ++next_;
      }
      if (running_.empty() && waiting_.empty()) {
        if (next_ >= n) break;  // closed loop: nothing left to issue
        advance_to(in_.workload.requests[next_].arrival_s);
        continue;
      }
      iterate();
    }
    finish_result();
    return std::move(result_);
  }

 private:
  std::int64_t blocks_for(double entries) const {
    return entries <= 0 ? 0
                        : static_cast<std::int64_t>(std::ceil(entries / static_cast<double>(cfg_.block_tokens) - 1e-9));
  }
  double stored(const Live& l, double resident) const { return resident - l.shared_offset; }

  void event() {
    ++result_.events;
    if (in_.after_event) in_.after_event(pool_);
  }

  // Request `index` arrives (a closed loop's client sends it). One longer than the model's context
  // is refused at the door (vLLM: longer than max_model_len); its client then sends its next one.
  void arrive(std::size_t index, double time_s) {
    while (over_context(index)) {
      ServingRequestResult& r = result_.requests[index];
      r.arrival_s = time_s;
      r.rejected = true;
      r.over_context = true;
      ++result_.rejected;
      ++result_.rejected_over_context;
      ++done_;
      event();
      if (in_.concurrency <= 0 || next_ >= in_.workload.requests.size()) return;
      index = next_++;
    }
    Live l;
    l.index = index;
    l.curve = in_.curve(index);
    l.blocked_before = result_.memory_blocked_iterations;
    result_.requests[index].arrival_s = time_s;
    lives_.push_back(std::move(l));
    waiting_.push_back(lives_.size() - 1);
    event();
  }

  bool over_context(std::size_t index) const {
    const WorkloadRequest& w = in_.workload.requests[index];
    const std::int64_t context = in_.model.max_position_embeddings;
    return context > 0 && w.prompt_tokens + w.output_tokens > context;
  }

  // Time passes with nothing running: memory integrals advance.
  void advance_to(double time_s) {
    if (time_s > now_) {
      integrate(time_s - now_);
      now_ = time_s;
    }
  }

  void integrate(double dt_s) {
    const double swap = static_cast<double>(swap_used_blocks_) * block_bytes_;
    result_.hbm_kv_byte_seconds += static_cast<double>(hbm_used_blocks()) * block_bytes_ * dt_s;
    result_.offload_byte_seconds += static_cast<double>(offload_used_blocks()) * block_bytes_ * dt_s;
    result_.swap_byte_seconds += swap * dt_s;
  }

  // Blocks in use (private + prefix cache) split between the compute tier and, under offload,
  // the lower tier, which takes what the compute tier cannot hold.
  std::int64_t used_blocks() const { return pool_.private_blocks() + pool_.cached_blocks(); }
  std::int64_t hbm_used_blocks() const { return std::min(used_blocks(), hbm_blocks_); }
  std::int64_t offload_used_blocks() const { return used_blocks() - hbm_used_blocks(); }

  // Preempts `victim` (in running_): its blocks go to the swap tier, or are dropped to be recomputed.
  void preempt(std::size_t victim) {
    Live& l = lives_[victim];
    running_.erase(std::find(running_.begin(), running_.end(), victim));
    ServingRequestResult& r = result_.requests[l.index];
    ++r.preemptions;
    r.waited_for_memory = true;  // pushed out for another request's blocks
    ++result_.preemptions;
    const bool swap = cfg_.preemption == ServingConfig::Preemption::kSwap &&
                      swap_used_blocks_ + l.blocks <= swap_capacity_blocks_ && !l.prefilling;
    pool_.release(l.blocks);
    if (swap) {
      l.swapped_blocks = l.blocks;
      swap_used_blocks_ += l.blocks;
      swap_out_blocks_ += l.blocks;
      r.peak_swap_bytes = std::max(r.peak_swap_bytes, static_cast<double>(l.blocks) * block_bytes_);
    } else {
      unpin(l);
      l.processed = 0;
      l.resident = 0;
      l.shared_offset = 0;
      l.prefilling = true;
    }
    l.blocks = 0;
    release_reservation(l);
    waiting_.push_front(victim);
    event();
  }

  void unpin(Live& l) {
    if (l.pinned > 0) {
      pool_.unpin_prefix(in_.workload.requests[l.index].prefix_blocks, l.pinned, ++tick_);
      l.pinned = 0;
    }
    l.cached_tokens = 0;
  }

  void release_reservation(Live& l) {
    reserved_blocks_ -= l.reserved;
    l.reserved = 0;
  }

  void reject(std::size_t live) {
    Live& l = lives_[live];
    pool_.release(l.blocks);
    l.blocks = 0;
    unpin(l);
    release_reservation(l);
    result_.requests[l.index].rejected = true;
    ++result_.rejected;
    complete();
  }

  void complete() {
    ++done_;
    if (in_.concurrency > 0 && next_ < in_.workload.requests.size()) arrive(next_++, now_);
    event();
  }

  // Grows `l` by `tokens` this iteration if its blocks can be had. Returns false if not.
  bool reserve_blocks(Live& l, std::int64_t tokens) {
    const std::int64_t need = blocks_for(stored(l, l.resident) + static_cast<double>(tokens)) - l.blocks;
    if (need <= 0) return true;
    if (!pool_.allocate(need)) return false;
    l.blocks += need;
    return true;
  }

  // Most tokens `l` may add now within the free blocks, and at most `limit`.
  std::int64_t tokens_that_fit(const Live& l, std::int64_t limit) const {
    const double room = static_cast<double>((l.blocks + pool_.available()) * cfg_.block_tokens) - stored(l, l.resident);
    return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(room + 1e-9)), 0, limit);
  }

  // The chunk a prefilling request may process: within the token budget, and never across the
  // policy's next eviction point inside the prompt (the policy evicts where its chunks end).
  std::int64_t prefill_chunk(const Live& l, std::int64_t budget) const {
    std::int64_t chunk = std::min(l.target - l.processed, budget);
    if (l.processed < l.prompt) {
      const std::int64_t knot = l.curve.next_knot_after(l.processed);
      if (knot > 0) chunk = std::min(chunk, knot - l.processed);
    }
    return chunk;
  }

  std::int64_t peak_blocks(const Live& l) const {
    const WorkloadRequest& w = in_.workload.requests[l.index];
    return blocks_for(l.curve.peak_resident(w.prompt_tokens + w.output_tokens - 1));
  }

  // Sets up a new or recomputed request's prefill; pins its cached prefix.
  void begin_prefill(Live& l) {
    const WorkloadRequest& w = in_.workload.requests[l.index];
    l.cached_tokens = 0;
    if (prefix_caching_ && !w.prefix_blocks.empty()) {
      std::vector<std::int64_t> loaded_before;
      for (const BlockPool::LowerTier& t : pool_.lower_tiers()) loaded_before.push_back(t.loaded_blocks);
      l.pinned = pool_.pin_prefix(w.prefix_blocks, ++tick_);
      ServingRequestResult& r = result_.requests[l.index];
      r.prefix_loaded_bytes.resize(loaded_before.size());
      for (std::size_t i = 0; i < loaded_before.size(); ++i) {
        r.prefix_loaded_bytes[i] +=
            static_cast<double>(pool_.lower_tiers()[i].loaded_blocks - loaded_before[i]) * block_bytes_;
      }
      l.cached_tokens = std::min(l.pinned * prefix_block_tokens_, w.prompt_tokens - 1);
    }
    l.prompt = w.prompt_tokens - l.cached_tokens;
    l.target = l.prompt + std::max<std::int64_t>(0, l.generated - 1);
    l.processed = 0;
    l.resident = 0;
    l.shared_offset = 0;
    l.prefilling = true;
  }

  // One scheduling round (vLLM/Sarathi): decodes, then prefill chunks of running requests, then
  // admissions, within the token budget; then the iteration runs. A round that can run nothing
  // rejects or preempts a request instead.
  void iterate() {
    Round round;
    round.iteration = ++attempts_;
    round.budget = cfg_.max_batch_tokens;
    const std::int64_t swap_out_before = swap_out_blocks_;
    schedule_decodes(round);
    schedule_prefill_chunks(round);
    admit_waiting(round);
    if (round.memory_blocked && !waiting_.empty()) ++result_.memory_blocked_iterations;

    const std::int64_t swap_out = swap_out_blocks_ - swap_out_before;
    if (round.steps.empty() && round.swap_in_blocks == 0 && swap_out == 0) {
      unblock();
      return;
    }
    run_iteration(round.steps, round.swap_in_blocks, swap_out);
  }

  // What one scheduling round has gathered so far.
  struct Round {
    std::int64_t iteration = 0;
    std::int64_t budget = 0;  // tokens left
    std::vector<Step> steps;
    std::int64_t swap_in_blocks = 0;
    bool memory_blocked = false;  // a request could not get the blocks it needed
  };

  // 1. Decodes, in admission order; out of blocks, the latest admitted request is preempted.
  void schedule_decodes(Round& round) {
    for (std::size_t pos = 0; pos < running_.size() && round.budget > 0;) {
      const std::size_t id = running_[pos];
      Live& l = lives_[id];
      if (l.prefilling) {
        ++pos;
        continue;
      }
      bool self_preempted = false;
      while (!reserve_blocks(l, 1)) {
        const std::size_t victim = running_.back();
        if (victim == id) {
          if (running_.size() == 1 && pool_.available() + l.blocks < blocks_for(stored(l, l.resident) + 1)) {
            running_.pop_back();
            reject(id);
          } else {
            preempt(id);
          }
          self_preempted = true;
          break;
        }
        preempt(victim);
      }
      if (self_preempted) continue;  // running_[pos] is now the next request
      round.steps.push_back({id, 1, static_cast<double>(l.cached_tokens) + l.resident});
      l.scheduled_in = round.iteration;
      --round.budget;
      ++pos;
    }
  }

  // 2. Prefill chunks of running requests.
  void schedule_prefill_chunks(Round& round) {
    for (const std::size_t id : running_) {
      if (round.budget <= 0) break;
      Live& l = lives_[id];
      if (!l.prefilling || l.scheduled_in == round.iteration) continue;
      const std::int64_t chunk = tokens_that_fit(l, prefill_chunk(l, round.budget));
      if (chunk <= 0) {
        round.memory_blocked = true;
        continue;
      }
      reserve_blocks(l, chunk);
      round.steps.push_back({id, chunk, static_cast<double>(l.cached_tokens) + l.resident});
      l.scheduled_in = round.iteration;
      round.budget -= chunk;
    }
  }

  // 3. Admissions, first come first served (preempted requests are at the front).
  void admit_waiting(Round& round) {
    while (round.budget > 0 && !waiting_.empty() && static_cast<int>(running_.size()) < cfg_.max_running) {
      const std::size_t id = waiting_.front();
      Live& l = lives_[id];
      if (l.swapped_blocks > 0) {
        if (!pool_.allocate(l.swapped_blocks)) {
          round.memory_blocked = true;
          break;
        }
        l.blocks = l.swapped_blocks;
        result_.requests[l.index].swap_in_bytes += static_cast<double>(l.swapped_blocks) * block_bytes_;
        swap_used_blocks_ -= l.swapped_blocks;
        round.swap_in_blocks += l.swapped_blocks;
        l.swapped_blocks = 0;
        waiting_.pop_front();
        running_.push_back(id);
        l.scheduled_in = round.iteration;  // joins the batch from the next iteration
        continue;
      }
      if (cfg_.admission == ServingConfig::Admission::kReserve) {
        const std::int64_t peak = peak_blocks(l);
        if (peak > pool_.capacity()) {
          waiting_.pop_front();
          reject(id);
          continue;
        }
        if (reserved_blocks_ + peak > pool_.capacity()) {
          round.memory_blocked = true;
          break;
        }
        l.reserved = peak;
        reserved_blocks_ += peak;
      }
      begin_prefill(l);
      const std::int64_t chunk = tokens_that_fit(l, prefill_chunk(l, round.budget));
      if (chunk <= 0) {
        unpin(l);
        release_reservation(l);
        round.memory_blocked = true;
        break;
      }
      reserve_blocks(l, chunk);
      waiting_.pop_front();
      running_.push_back(id);
      ServingRequestResult& r = result_.requests[l.index];
      if (!l.admitted_once) {
        l.admitted_once = true;
        r.first_scheduled_s = now_;
        r.cached_prompt_tokens = l.cached_tokens;
        // Requests were refused blocks while it waited: the queue it stood in was one for memory.
        if (result_.memory_blocked_iterations > l.blocked_before) r.waited_for_memory = true;
      }
      round.steps.push_back({id, chunk, static_cast<double>(l.cached_tokens) + l.resident});
      l.scheduled_in = round.iteration;
      round.budget -= chunk;
    }
  }

  // Nothing could run. Either a waiting request does not fit an empty cache, or running requests
  // hold the memory each other's prefill needs: free it from the back.
  void unblock() {
    if (running_.empty()) {
      const std::size_t id = waiting_.front();
      waiting_.pop_front();
      reject(id);
    } else if (running_.size() == 1) {
      const std::size_t id = running_.back();  // alone and still stuck: it can never fit
      running_.pop_back();
      reject(id);
    } else {
      preempt(running_.back());
    }
  }

  // Placement offload: the compute tier keeps the blocks in use by running requests first (idle
  // prefix-cache blocks are the first to sit in the lower tier); the active blocks beyond its
  // capacity are the oldest context, in the lower tier, and are streamed in for the pass, at most
  // as many as the batch attends to (a step attends to all of its context). Blocks the pass
  // pushes out of the compute tier are written back; blocks return to it as it frees up without
  // a transfer of their own (their next fetch moves them). Returns (blocks fetched, written back).
  // Traffic of one transfer (per TP rank, each over its own link) on every link it crossed.
  void count_link_loads(const std::vector<LinkLoad>& loads) {
    const double tp = in_.tensor_parallel;
    for (const LinkLoad& load : loads) {
      result_.link_bytes[load.link] += load.bytes * tp;
      double& bytes = direction_bytes_[load.link + '\n' + load.from];
      bytes += load.bytes * tp;
      double& busier = result_.link_busier_direction_bytes[load.link];
      busier = std::max(busier, bytes);
    }
  }

  double attended_blocks(const Step& s) const {
    return std::ceil(s.context_before / static_cast<double>(cfg_.block_tokens) - 1e-9);
  }

  std::pair<double, double> offload_blocks_moved(const std::vector<Step>& steps) {
    const std::int64_t offloaded = offload_used_blocks();
    const double written = static_cast<double>(std::max<std::int64_t>(0, offloaded - offloaded_before_));
    offloaded_before_ = offloaded;
    const std::int64_t active = pool_.capacity() - pool_.available();  // private + pinned prefix blocks
    const std::int64_t cold_active = std::max<std::int64_t>(0, active - hbm_blocks_);
    if (cold_active == 0) return {0.0, written};
    double attended = 0;
    for (const Step& s : steps) attended += attended_blocks(s);
    const double fetched = std::min(static_cast<double>(cold_active), attended);
    // Each request's share of the fetch: the blocks it attends.
    for (const Step& s : steps) {
      if (fetched <= 0) break;
      result_.requests[lives_[s.live].index].offload_fetched_bytes +=
          fetched * block_bytes_ * attended_blocks(s) / attended;
    }
    return {fetched, written};
  }

  // Prefix blocks moved between the compute tier and the prefix cache's lower tiers since the last
  // iteration: loads (a prompt found its prefix below) come before the pass that needs them;
  // write-backs of reclaimed blocks (down from the tier above) overlap the pass, as LMCache and
  // vLLM's offloading connector store asynchronously. Returns (load seconds, write-back seconds).
  std::pair<double, double> prefix_tier_transfers() {
    double load_s = 0, write_s = 0;
    const double tp = in_.tensor_parallel;
    for (std::size_t i = 0; i < prefix_moved_.size(); ++i) {
      const BlockPool::LowerTier& t = pool_.lower_tiers()[i];
      const double loaded = static_cast<double>(t.loaded_blocks - prefix_moved_[i].first) * block_bytes_;
      const double written = static_cast<double>(t.written_blocks - prefix_moved_[i].second) * block_bytes_;
      prefix_moved_[i] = {t.loaded_blocks, t.written_blocks};
      const std::string& tier = result_.prefix_tiers[i].tier;
      const std::string& above = i == 0 ? compute_tier_ : result_.prefix_tiers[i - 1].tier;
      std::vector<LinkLoad> loads;
      if (loaded > 0) load_s += in_.hierarchy.tier_transfer_time_s(compute_tier_, tier, loaded / tp, 0.0, &loads);
      if (written > 0) write_s += in_.hierarchy.tier_transfer_time_s(above, tier, 0.0, written / tp, &loads);
      count_link_loads(loads);
    }
    return {load_s, write_s};
  }

  void run_iteration(const std::vector<Step>& steps, std::int64_t swap_in_blocks, std::int64_t swap_out_blocks) {
    PassWork work;
    work.requests = static_cast<double>(steps.size());
    double decodes = 0;
    for (const Step& s : steps) {
      if (!lives_[s.live].prefilling) decodes += 1;
      const double t = static_cast<double>(s.tokens);
      const Live& l = lives_[s.live];
      work.tokens += t;
      work.attention_entry_steps += layer_heads_ * (t * s.context_before + t * (t + 1) / 2);
      work.kv_read_entries += layer_heads_ * s.context_before;
      work.kv_written_entries += layer_heads_ * t;
      if (!l.prefilling || l.processed + s.tokens == l.target) work.logits_tokens += 1;
    }
    const auto [fetch_blocks, spill_blocks] =
        offload_ ? offload_blocks_moved(steps) : std::pair<double, double>{0.0, 0.0};
    // Fetched entries are attended as they stream in, not read again from the compute tier.
    work.kv_read_entries =
        std::max(0.0, work.kv_read_entries - fetch_blocks * static_cast<double>(cfg_.block_tokens) * layer_heads_);
    const auto [prefix_load_s, prefix_write_s] = prefix_tier_transfers();
    double time_s = prefix_load_s;
    double unhidden_write_s = prefix_write_s;
    ServingRequestResult::BoundTime bound;  // this iteration's time, by what bound it
    if (work.tokens > 0) {
      const PassCost cost = in_.cost.pass_cost(work);
      time_s += cost.time_s;
      unhidden_write_s = cost.exposed_transfer_s(prefix_write_s, true);
      if (fetch_blocks > 0 || spill_blocks > 0) {
        const double exposed_s = offload_transfer(cost, fetch_blocks, spill_blocks);
        time_s += exposed_s;
        bound.link_s += exposed_s;
        result_.link_s += exposed_s;
        result_.decode_link_s += exposed_s * decodes;
      }
      const bool compute = cost.bound == Bound::kCompute;
      (compute ? bound.compute_s : bound.hbm_bandwidth_s) += cost.time_s;
      (compute ? result_.compute_bound_s : result_.memory_bound_s) += cost.time_s;
      (compute ? result_.decode_compute_bound_s : result_.decode_memory_bound_s) += cost.time_s * decodes;
      result_.hbm_read_bytes += cost.hbm_read_bytes;
      result_.hbm_write_bytes += cost.hbm_write_bytes;
    }
    if (prefix_load_s > 0 || unhidden_write_s > 0) {
      time_s += unhidden_write_s;
      bound.link_s += prefix_load_s + unhidden_write_s;
      result_.prefix_load_s += prefix_load_s;
      result_.link_s += prefix_load_s + unhidden_write_s;
      result_.decode_link_s += (prefix_load_s + unhidden_write_s) * decodes;
    }
    if (swap_in_blocks > 0 || swap_out_blocks > 0) {
      const double tp = in_.tensor_parallel;
      const double in_bytes = static_cast<double>(swap_in_blocks) * block_bytes_;
      const double out_bytes = static_cast<double>(swap_out_blocks) * block_bytes_;
      std::vector<LinkLoad> loads;
      const double link_s =
          in_.hierarchy.tier_transfer_time_s(compute_tier_, cfg_.swap_tier, in_bytes / tp, out_bytes / tp, &loads);
      count_link_loads(loads);
      result_.swap_in_bytes += in_bytes;
      result_.swap_out_bytes += out_bytes;
      result_.link_s += link_s;
      result_.decode_link_s += link_s * decodes;
      time_s += link_s;  // vLLM swaps synchronously before the step
      bound.link_s += link_s;
    }
    if (static_cast<std::int64_t>(result_.iterations_recorded.size()) < in_.record_iterations) {
      ServingIteration it;
      it.start_s = now_;
      it.time_s = time_s;
      it.link_s = bound.link_s;
      it.decodes = static_cast<int>(decodes);
      it.prefills = static_cast<int>(steps.size()) - it.decodes;
      it.tokens = static_cast<std::int64_t>(work.tokens);
      it.compute_bound = bound.compute_s > 0;
      result_.iterations_recorded.push_back(it);
    } else if (in_.record_iterations > 0) {
      ++result_.iterations_not_recorded;
    }
    integrate(time_s);
    now_ += time_s;
    result_.busy_s += time_s;
    ++result_.iterations;

    for (const Step& s : steps) {
      Live& l = lives_[s.live];
      ServingRequestResult& r = result_.requests[l.index];
      ServingRequestResult::BoundTime& spent = l.prefilling ? r.prefill_time : r.decode_time;
      spent.compute_s += bound.compute_s;
      spent.hbm_bandwidth_s += bound.hbm_bandwidth_s;
      spent.link_s += bound.link_s;
      if (l.prefilling) result_.prompt_tokens_computed += s.tokens;
      l.processed += s.tokens;
      l.resident = l.curve.resident_after(l.processed);
      const std::int64_t keep = blocks_for(stored(l, l.resident));
      if (keep < l.blocks) {
        pool_.release(l.blocks - keep);
        l.blocks = keep;
      }
      r.peak_hbm_kv_bytes = std::max(r.peak_hbm_kv_bytes, static_cast<double>(l.blocks) * block_bytes_);
      bool emits = !l.prefilling;
      if (l.prefilling && l.processed == l.target) {
        l.prefilling = false;
        emits = true;
        share_prefix(l);
      }
      if (emits) {
        ++l.generated;
        ++result_.output_tokens;
        if (r.first_token_s < 0) r.first_token_s = now_;
      }
      event();
      if (l.generated >= in_.workload.requests[l.index].output_tokens) {
        pool_.release(l.blocks);
        l.blocks = 0;
        unpin(l);
        release_reservation(l);
        r.finish_s = now_;
        running_.erase(std::find(running_.begin(), running_.end(), s.live));
        complete();
      }
    }
    result_.peak_running = std::max<std::int64_t>(result_.peak_running, static_cast<std::int64_t>(running_.size()));
    ServingSample sample;
    sample.time_s = now_;
    sample.running = static_cast<int>(running_.size());
    sample.waiting = static_cast<int>(waiting_.size());
    sample.prefix_cache_bytes = static_cast<double>(pool_.cached_blocks()) * block_bytes_;
    sample.hbm_kv_bytes = static_cast<double>(hbm_used_blocks()) * block_bytes_;
    sample.offload_bytes = static_cast<double>(offload_used_blocks()) * block_bytes_;
    sample.swap_bytes = static_cast<double>(swap_used_blocks_) * block_bytes_;
    result_.peak_hbm_kv_bytes = std::max(result_.peak_hbm_kv_bytes, sample.hbm_kv_bytes);
    result_.peak_offload_bytes = std::max(result_.peak_offload_bytes, sample.offload_bytes);
    result_.peak_swap_bytes = std::max(result_.peak_swap_bytes, sample.swap_bytes);
    timeline_.push_back(sample);
  }

  // What streaming `fetch_blocks` in from the offload tier and writing `spill_blocks` back adds to
  // the pass, each TP rank moving its share of the KV heads over its own link; counts the traffic.
  double offload_transfer(const PassCost& cost, double fetch_blocks, double spill_blocks) {
    const double tp = in_.tensor_parallel;
    const double fetch_bytes = fetch_blocks * block_bytes_, spill_bytes = spill_blocks * block_bytes_;
    std::vector<LinkLoad> loads;
    const double transfer_s = in_.hierarchy.tier_transfer_time_s(compute_tier_, in_.placement.tier, fetch_bytes / tp,
                                                                 spill_bytes / tp, &loads);
    count_link_loads(loads);
    result_.offload_read_bytes += fetch_bytes;
    result_.offload_write_bytes += spill_bytes;
    return cost.exposed_transfer_s(transfer_s, in_.placement.prefetch);
  }

  // After its prefill, a request's full prompt blocks become shareable prefix-cache blocks.
  void share_prefix(Live& l) {
    if (!prefix_caching_) return;
    const WorkloadRequest& w = in_.workload.requests[l.index];
    const std::int64_t full_blocks = std::min<std::int64_t>(static_cast<std::int64_t>(w.prefix_blocks.size()),
                                                            w.prompt_tokens / prefix_block_tokens_);
    if (full_blocks <= l.pinned) return;
    const std::span<const std::uint64_t> fresh(w.prefix_blocks.data() + l.pinned,
                                               static_cast<std::size_t>(full_blocks - l.pinned));
    const std::int64_t blocks_each = prefix_block_tokens_ / cfg_.block_tokens;
    // The private tokens of these blocks start after the cached tokens.
    const std::int64_t moved = pool_.insert_prefix(fresh, blocks_each, ++tick_);
    l.blocks -= moved * blocks_each;
    l.pinned += moved;
    l.shared_offset += static_cast<double>(moved * prefix_block_tokens_);
  }

  void finish_result() {
    for (std::size_t i = 0; i < result_.prefix_tiers.size(); ++i) {
      const BlockPool::LowerTier& t = pool_.lower_tiers()[i];
      ServingResult::PrefixTier& r = result_.prefix_tiers[i];
      r.hits = t.hits;
      r.loaded_bytes = static_cast<double>(t.loaded_blocks) * block_bytes_;
      r.written_bytes = static_cast<double>(t.written_blocks) * block_bytes_;
      r.peak_bytes = static_cast<double>(t.peak_used_blocks) * block_bytes_;
    }
    result_.prefix_compute_tier_hits = pool_.compute_tier_hits();
    if (!result_.requests.empty()) {
      double first = std::numeric_limits<double>::infinity(), last = 0;
      for (const ServingRequestResult& r : result_.requests) {
        first = std::min(first, r.arrival_s);
        if (!r.rejected) last = std::max(last, r.finish_s);
      }
      result_.makespan_s = std::max(0.0, last - first);
      if (result_.makespan_s > 0) {
        result_.mean_hbm_kv_bytes = result_.hbm_kv_byte_seconds / result_.makespan_s;
        result_.mean_swap_bytes = result_.swap_byte_seconds / result_.makespan_s;
        result_.mean_offload_bytes = result_.offload_byte_seconds / result_.makespan_s;
      }
    }
    // Downsample, keeping the sample with the most KV of each run of consecutive ones (peaks survive).
    const std::size_t stride = (timeline_.size() + kMaxTimelineRows - 1) / kMaxTimelineRows;
    if (stride <= 1) {
      result_.timeline = std::move(timeline_);
    } else {
      for (std::size_t i = 0; i < timeline_.size(); i += stride) {
        const auto end = timeline_.begin() + static_cast<std::ptrdiff_t>(std::min(i + stride, timeline_.size()));
        result_.timeline.push_back(*std::max_element(
            timeline_.begin() + static_cast<std::ptrdiff_t>(i), end,
            [](const ServingSample& a, const ServingSample& b) { return a.hbm_kv_bytes < b.hbm_kv_bytes; }));
      }
    }
  }

  const ServingInput& in_;
  const ServingConfig& cfg_;
  std::int64_t hbm_blocks_ = 0;  // the compute tiers' share of the pool
  BlockPool pool_;
  ServingResult result_;
  std::vector<ServingSample> timeline_;
  std::vector<Live> lives_;
  std::vector<std::size_t> running_;  // indices into lives_, in admission order
  std::deque<std::size_t> waiting_;
  std::string compute_tier_;
  double layer_heads_ = 0;
  double block_bytes_ = 0;
  bool offload_ = false;
  std::int64_t offloaded_before_ = 0;  // offload tier blocks after the previous iteration
  std::int64_t swap_capacity_blocks_ = 0;
  std::int64_t swap_used_blocks_ = 0;
  std::int64_t swap_out_blocks_ = 0;
  std::int64_t reserved_blocks_ = 0;
  std::int64_t prefix_block_tokens_ = 0;
  bool prefix_caching_ = false;
  std::vector<std::pair<std::int64_t, std::int64_t>> prefix_moved_;  // per lower tier: (loaded, written) blocks counted
  std::map<std::string, double> direction_bytes_;                    // per "link\nfrom": bytes in that direction
  std::uint64_t tick_ = 0;
  std::int64_t attempts_ = 0;  // scheduling rounds, including those that ran nothing
  std::size_t next_ = 0;
  std::size_t done_ = 0;
  double now_ = 0;
};

}  // namespace

GpuMemory gpu_memory(const Hardware& hw, const ModelShape& model, double model_weight_bytes, std::int64_t block_tokens,
                     double hbm_reserve, int tensor_parallel) {
  GpuMemory m;
  m.tensor_parallel = tensor_parallel;
  m.usable_bytes = hw.tier(hw.device.compute_tier).capacity_bytes;
  m.reserve_bytes = m.usable_bytes * hbm_reserve;
  m.weight_bytes = model_weight_bytes / tensor_parallel;
  const double hbm_bytes = m.usable_bytes * (1.0 - hbm_reserve) * tensor_parallel;
  const double block_bytes = static_cast<double>(block_tokens) * static_cast<double>(model.bytes_per_token());
  m.kv_blocks = static_cast<std::int64_t>(std::floor((hbm_bytes - model_weight_bytes) / block_bytes));
  if (m.kv_blocks > 0) {
    m.kv_tokens = m.kv_blocks * block_tokens;
    m.kv_bytes = static_cast<double>(m.kv_blocks) * block_bytes / tensor_parallel;
  }
  return m;
}

std::int64_t kv_capacity_blocks(const ServingInput& in) {
  const Hardware& hw = in.hierarchy.hardware();
  const GpuMemory m = gpu_memory(hw, in.model, in.cost.weight_bytes(), in.config.block_tokens, in.placement.hbm_reserve,
                                 in.tensor_parallel);
  if (m.kv_blocks < 1) {
    const double hbm_bytes = (m.usable_bytes - m.reserve_bytes) * in.tensor_parallel;
    throw InputError("hardware " + (hw.source.empty() ? hw.device.name : hw.source) + ": the weights of " +
                     in.model.name + " (" + std::to_string(in.cost.weight_bytes() / 1e9) +
                     " GB) leave no room for one KV block in " + std::to_string(hbm_bytes / 1e9) + " GB of " +
                     hw.device.compute_tier + " (raise [hardware] tp or use a larger device)");
  }
  return m.kv_blocks;
}

std::int64_t offload_capacity_blocks(const ServingInput& in) {
  if (in.placement.kind != Placement::Kind::kOffload) return 0;
  const double block_bytes =
      static_cast<double>(in.config.block_tokens) * static_cast<double>(in.model.bytes_per_token());
  return lower_tier_blocks(in.hierarchy, in.placement.tier, block_bytes, "placement " + in.placement.spec());
}

ServingResult simulate_serving(const ServingInput& input) { return Scheduler(input).run(); }

}  // namespace kvsim
