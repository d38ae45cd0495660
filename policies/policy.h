#pragma once
// The policy contract (DESIGN.md §4).
//
// A policy decides which KV entries stay resident. The engine replays a request pass by pass
// (prefill chunks, then decode steps); after each pass that is one of the policy's eviction points
// it calls evict() with the layer's resident positions, and the policy shrinks them. Eviction takes
// effect for the next pass. Policies are immutable after construction: evict() is const and is
// called concurrently for different layers.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "policies/pass_plan.h"
#include "traces/trace.h"

namespace kvsim {

class SharedResults;

enum class PrefillEviction { kNone, kPostFill, kChunk };

struct EvictionPoints {
  PrefillEviction prefill = PrefillEviction::kNone;
  int decode_every = 0;  // 0: never during decode; 1: every step; K: every K steps
  // decode=length:K instead of every:K: evict after the decode step whose token lands at a position
  // that is a multiple of K (R-KV's `step_length` rule: the sequence length before the step is a
  // multiple of K), so the first decode eviction depends on the prompt length, not on step count.
  bool decode_by_position = false;

  // True if eviction runs after `pass` (the pass just processed).
  bool after(const Pass& pass, int num_prefill) const;
};

// Resident positions of one layer: one vector per KV head, each sorted ascending.
// For an untraced layer there is one vector per head group of Policy::untraced_head_groups(): the
// heads of a group keep equal counts, so one vector stands for all of them (by default one group).
// A policy with Policy::kv_copies() = c > 1 keeps c copies of each KV head, and a traced layer then
// has num_kv_heads x c vectors, copy c' of KV head h at index h x c + c'.
using LayerResidency = std::vector<std::vector<std::int32_t>>;

// What a policy computes of one traced layer at the end of the prompt so that other layers can weigh
// it (Policy::layer_statistic): one value (LAVa's entropy, DBudgetKV's kept fraction) or many
// (KV-Compress's block metrics, ranked across the sequence).
using LayerStatistic = std::vector<double>;

// Mutable state a policy keeps for one layer over one request (e.g. H2O's accumulated attention).
// The engine makes one per layer replay with Policy::make_state(), hands it to observe() and
// evict() through EvictionContext::state, and drops it at the end of the request. A layer is
// replayed on one thread, so the state needs no locking.
class PolicyState {
 public:
  virtual ~PolicyState() = default;
};

struct EvictionContext {
  const ModelShape& model;
  const RequestInfo& request;
  int layer = 0;
  // The layer's trace, or nullptr for an untraced layer: then the policy must keep the same
  // *number* of entries it would keep with scores (which ones does not matter for accounting),
  // and the residency holds one vector per group of untraced_head_groups(), in its order.
  const LayerTrace* trace = nullptr;
  const Pass& pass;               // the pass just processed
  std::span<const Pass> prefill;  // all prefill chunks of the request
  PolicyState* state = nullptr;   // this layer's state from make_state(); null if it made none
  // Only for a policy that uses_layer_statistics(): its layer_statistic() of every layer of the
  // model (index = layer), empty for untraced layers. Empty when the layer is replayed alone (unit
  // tests): there is no other layer to weigh it against.
  std::span<const LayerStatistic> layer_statistics = {};
  // Results other policies may compute identically on this traced layer (policies/shared_results.h);
  // null when the layer is replayed alone.
  SharedResults* shared = nullptr;
};

// Bytes of one KV head's stored entries, keys and values apart (methods compress them differently).
struct KvBytes {
  double key_bytes = 0.0;
  double value_bytes = 0.0;
  double total() const { return key_bytes + value_bytes; }
};

// How a policy stores the `count` entries one KV head keeps from earlier passes (Policy::stored).
// Entry classes by age: the first `key_compressed` of the head's sorted resident positions hold
// compressed keys and the first `value_compressed` compressed values (e.g. KIVI's quantized
// groups); the rest are at model.kv_bits (e.g. KIVI's full-precision residual window).
struct StoredEntries {
  std::int64_t key_compressed = 0;
  std::int64_t value_compressed = 0;
  KvBytes bytes;  // what the `count` entries occupy, scales and zero-points included
};

// One KV head's K/V as the policy's storage gives them back (dequantized, pruned channels zeroed),
// every position of the trace, same shape as LayerTrace::keys/values.
struct CompressedHead {
  HeadMatrix keys;
  HeadMatrix values;
};

class Policy {
 public:
  virtual ~Policy() = default;

  // Canonical spec with every parameter explicit, e.g. "snapkv(budget=0.2, window=32, ...)".
  virtual std::string spec() const = 0;
  virtual EvictionPoints eviction_points() const = 0;

  // Appends the query positions this policy scores with (e.g. SnapKV's observation window at the
  // end of each chunk). The engine checks the trace stores them, and the synthesiser generates them.
  virtual void add_required_queries(const RequestInfo& /*request*/, std::span<const Pass> /*prefill*/,
                                    std::vector<std::int64_t>* /*positions*/) const {}

  // True if the policy scores with the trace's recon_queries (a context-reconstruction pass, DESIGN.md
  // §3). The engine checks every traced layer stores them, and the synthesiser generates them.
  virtual bool requires_recon_queries() const { return false; }
  // True if it also needs the reconstruction passes (recon_passes, recon_keys, recon_query_rows; trace
  // format 1.1): KVzip's chunked scoring. Checked like requires_recon_queries().
  virtual bool requires_recon_passes() const { return false; }

  // How the KV heads of untraced layer `layer` split into groups whose heads keep equal counts: the
  // number of heads in each group, summing to model.num_kv_heads. The layer is replayed with one
  // representative vector per group (each counted that many times), so untraced layers cost two
  // vectors, not num_kv_heads, even for a policy whose heads differ (each counted kv_copies() times). The default, one
  // group of all heads, is right for every policy that gives a layer's heads equal counts (or whose accounting only
  // sees the layer total, e.g. budgets pooled across heads); head masks return {full heads, streaming heads}.
  virtual std::vector<int> untraced_head_groups(const ModelShape& model, int /*layer*/) const {
    return {model.num_kv_heads};
  }

  // Cross-layer budgets: a policy whose layer budgets depend on the attention of other layers (LAVa's
  // layer split; DBudgetKV's untraced layers, which follow the traced ones; KV-Compress's blocks
  // ranked across a sequence's layers) returns true, told whether the trace holds every layer of the
  // model. Before replaying a request the engine then loads each traced layer once more and calls
  // layer_statistic() with the layer as it stands at the end of the prompt (every prompt position
  // resident in every vector of the residency, ctx.pass the last prefill chunk, no state); evict()
  // reads all layers' values from EvictionContext::layer_statistics.
  virtual bool uses_layer_statistics(bool /*every_layer_traced*/) const { return false; }
  virtual LayerStatistic layer_statistic(const EvictionContext& /*ctx*/, const LayerResidency& /*prompt*/) const {
    return {};
  }

  // GQA: how many copies of each KV head's cache the policy keeps. 1 (the default): one cache per KV
  // head, shared by the group's query heads. model.group_size() for a policy whose authors' code
  // repeats K/V per query head before caching and selects per query head (gqa=expand): each query
  // head then has its own resident set (LayerResidency above), the fidelity proxies measure each
  // query head on its own copy, and footprint, peak and bytes count every copy (G-fold memory).
  virtual int kv_copies(const ModelShape& /*model*/) const { return 1; }

  // Per-layer state for policies whose scores accumulate over the request; null for the rest.
  virtual std::unique_ptr<PolicyState> make_state() const { return nullptr; }

  // Called after every pass, once its positions are appended to `residency` and before any
  // eviction: a policy that accumulates what each pass's queries attend to does it here.
  virtual void observe(const EvictionContext& /*ctx*/, const LayerResidency& /*residency*/) const {}

  // Precision (DESIGN.md §2 "bytes per entry"). The accounting rule: the entries of the pass in
  // flight count at model.kv_bits (they are compressed once the pass has them), the entries kept
  // from earlier passes cost stored(count).bytes; footprint, peak and bandwidth use these bytes,
  // and the fidelity proxies read an entry's K (V) from compressed_head() where it is in the
  // compressed class, from the trace otherwise. Policies that keep model.kv_bits keep the default
  // (compresses() false): the engine then counts entries x model.entry_bytes() exactly as before.
  virtual bool compresses() const { return false; }
  // `prefill` is the request's prefill chunks (empty: the whole prompt in one), for a policy that
  // compresses after every chunk.
  virtual StoredEntries stored(const ModelShape& model, const RequestInfo& /*request*/,
                               std::span<const Pass> /*prefill*/, std::int64_t count) const {
    const double half = static_cast<double>(count) * static_cast<double>(model.entry_bytes()) / 2.0;
    return {0, 0, {half, half}};
  }
  // REQUIRES compresses(). Called once per traced layer and residency vector (the KV head, or with
  // kv_copies() = c > 1 copy kv_head % c of KV head kv_head / c); deterministic.
  virtual CompressedHead compressed_head(const ModelShape& /*model*/, const RequestInfo& /*request*/,
                                         std::span<const Pass> /*prefill*/, const LayerTrace& trace,
                                         int kv_head) const {
    return {trace.keys[static_cast<std::size_t>(kv_head)], trace.values[static_cast<std::size_t>(kv_head)]};
  }

  // Shrinks `residency` (sorted positions per head) at an eviction point.
  // REQUIRES: eviction_points().after(ctx.pass, ...) is true. Must be deterministic.
  virtual void evict(const EvictionContext& ctx, LayerResidency& residency) const = 0;

  // The token count its spec's budget gives (budget=N, N >= 1), or 0 for a fractional budget or
  // none. A count at or above a request's prompt would keep every entry, so the single-request
  // runner refuses it. Set by PolicyRegistry::create from the budget the policy read.
  std::int64_t token_budget() const { return token_budget_; }

 private:
  friend class PolicyRegistry;
  std::int64_t token_budget_ = 0;
};

}  // namespace kvsim
