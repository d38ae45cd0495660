// h2o: Heavy-Hitter Oracle (Zhang et al. 2023, arXiv 2306.14048; reference FMInference/H2O
// h2o_hf/utils_real_drop/modify_llama.py, H2OKVCache_LayerWise). Every KV entry accumulates the
// attention it receives from each query that saw it (softmax over what was resident for that
// query, as in the real-drop cache); at an eviction point each KV head keeps its `recent` newest
// entries plus the heavy hitters, the highest accumulated scores among the rest.
//
// The running sums live in a per-layer PolicyState: observe() adds each pass's attention, evict()
// shrinks. Cost: one causal attention per accumulated query over the entries it saw, O(n^2 d) per
// query head over the prompt with prompt_queries=all (exact H2O), O(N n d) per chunk with
// prompt_queries=N. Memory: the trace must store the queries of every accumulated position, i.e.
// with prompt_queries=all all n prompt queries (num_q_heads x n x head_dim) instead of a window.
//
// GQA (gqa=): the authors' real-drop cache (H2OKVCache_LayerWise) is MHA-only: it keeps one score
// row per query head (attn_weights after repeat_kv) and masks the unrepeated KV-head cache with them,
// which fails for a group size > 1. Its ports differ: kvpress (ObservedAttentionPress) averages the
// group (gqa=mean, the default and kvsim's earlier behaviour); Zefan-Cai/KVCache-Factory's
// H2OKVCluster repeats K/V per query head before the cache by default (gqa=expand: each query head
// accumulates and keeps its own copy, Policy::kv_copies() = G) and reduces the group by
// mean|max|sum in its opt-in kv_head layout (gqa=max: each query head's accumulated attention, the
// group's maximum ranks).
#include <tbb/parallel_for.h>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "policies/h2o_attention.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/shared_results.h"
#include "policies/snapkv_select.h"
#include "util/error.h"

namespace kvsim {

namespace {

struct HeadState {
  std::vector<std::int32_t> resident;
  // Accumulated attention, one row per accumulator: gqa=mean one (the group's average), expand one
  // (its query head's), max one per query head of the group (ranked by their maximum).
  std::vector<std::vector<double>> score;
  std::vector<std::int64_t> seen;  // accumulated queries that saw the entry (normalize=count)
};

struct H2oState final : PolicyState {
  std::vector<HeadState> heads;
};

class H2oPolicy final : public Policy {
 public:
  // recent_share in [0, 1): the recent window's share of the capacity; recent_tokens > 0 instead
  // makes it a protected window of that many tokens added to a fractional budget (DESIGN.md §4).
  H2oPolicy(std::string spec, Budget budget, double recent_share, std::int64_t recent_tokens,
            std::int64_t prompt_queries, bool normalize, GqaMode gqa, EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        recent_share_(recent_share),
        recent_tokens_(recent_tokens),
        prompt_queries_(prompt_queries),
        normalize_(normalize),
        gqa_(gqa),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }
  int kv_copies(const ModelShape& model) const override { return gqa_copies(gqa_, model); }

  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    if (points_.prefill == PrefillEviction::kNone && points_.decode_every == 0) return;
    for (const Pass& p : prefill) {
      for (std::int64_t t = first_query(p); t < p.end; ++t) positions->push_back(t);
    }
    if (points_.decode_every > 0) {
      for (std::int64_t t = request.prompt_tokens; t < request.total_tokens(); ++t) positions->push_back(t);
    }
  }

  std::unique_ptr<PolicyState> make_state() const override { return std::make_unique<H2oState>(); }

  // Adds the pass's attention to every entry its queries saw (traced layers, when H2O evicts at all).
  void observe(const EvictionContext& ctx, const LayerResidency& residency) const override {
    if (ctx.trace == nullptr || (points_.prefill == PrefillEviction::kNone && points_.decode_every == 0)) return;
    auto& state = static_cast<H2oState&>(*ctx.state);
    state.heads.resize(residency.size());
    tbb::parallel_for(std::size_t{0}, residency.size(),
                      [&](std::size_t h) { accumulate(ctx, static_cast<int>(h), residency[h], state.heads[h]); });
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t cap = capacity(ctx.pass, ctx.prefill);
    // Heads hold equal counts; at or under capacity nothing goes.
    if (static_cast<std::int64_t>(residency.front().size()) <= cap) return;
    if (ctx.trace == nullptr) {
      for (auto& head : residency) head.erase(head.begin(), head.end() - cap);
      return;
    }
    auto& state = static_cast<H2oState&>(*ctx.state);
    for (std::size_t h = 0; h < residency.size(); ++h) {
      shrink(state.heads[h], cap);
      residency[h] = state.heads[h].resident;
    }
  }

 private:
  std::int64_t first_query(const Pass& p) const {
    return p.prefill && prompt_queries_ > 0 ? std::max(p.begin, p.end - prompt_queries_) : p.begin;
  }
  std::int64_t capacity(const Pass& pass, std::span<const Pass> prefill) const {
    return budget_.capacity(pass, prefill, points_.prefill, recent_tokens_);
  }
  std::int64_t recent_count(std::int64_t cap) const {
    return recent_tokens_ > 0 ? std::min(recent_tokens_, cap)
                              : round_half_even(recent_share_ * static_cast<double>(cap));
  }

  // Appends the pass's positions to residency vector h's state and adds what the pass's queries gave
  // each entry.
  void accumulate(const EvictionContext& ctx, int h, const std::vector<std::int32_t>& resident, HeadState& s) const {
    const LayerTrace& trace = *ctx.trace;
    const Pass& pass = ctx.pass;
    const GqaScoredHeads scored = gqa_scored_heads(gqa_, ctx.model, h);
    const int accumulators = gqa_ == GqaMode::kMax ? scored.query_heads : 1;
    const auto cached = static_cast<std::int64_t>(s.resident.size());
    for (std::int64_t t = pass.begin; t < pass.end; ++t) s.resident.push_back(static_cast<std::int32_t>(t));
    if (s.resident != resident) {
      throw std::logic_error("h2o: layer " + std::to_string(ctx.layer) + " head " + std::to_string(h) +
                             ": residency differs from what this policy's evictions left");
    }
    s.score.resize(static_cast<std::size_t>(accumulators));
    for (auto& row : s.score) row.resize(s.resident.size(), 0.0);
    s.seen.resize(s.resident.size(), 0);
    std::vector<std::int64_t> positions, rows;
    for (std::int64_t t = first_query(pass); t < pass.end; ++t) {
      const std::int64_t row = trace.query_row(t);
      if (row < 0)
        throw InputError("trace layer " + std::to_string(trace.layer) + ": no stored query at position " +
                         std::to_string(t) + ", which " + spec() + " accumulates");
      positions.push_back(t);
      rows.push_back(row);
    }
    for (int a = 0; a < accumulators; ++a) {
      // Accumulator a's query heads: the group (mean), the copy's own (expand) or the group's a-th (max).
      const int first = scored.first_query_head + a;
      const int count = accumulators > 1 ? 1 : scored.query_heads;
      const auto sums = pass_sums(ctx, scored.kv_head, first, count, s, cached, rows, positions);
      for (std::size_t j = 0; j < sums->size(); ++j) s.score[static_cast<std::size_t>(a)][j] += (*sums)[j];
    }
    const auto nq = static_cast<std::int64_t>(positions.size());
    for (std::size_t j = 0; j < s.resident.size(); ++j) {
      // Queries of this pass at positions >= the entry's saw it (all of them for cached entries).
      s.seen[j] += s.resident[j] < pass.begin
                       ? nq
                       : positions.end() - std::lower_bound(positions.begin(), positions.end(), s.resident[j]);
    }
  }

  // The attention sums of one pass's queries of query heads [first, first + count) (averaged over them)
  // on KV head `kv_head`'s entries s.resident, the first `cached` resident before the pass. While
  // nothing has been evicted (the resident entries are exactly 0 .. pass.end - 1) they depend only on
  // the pass and the queries accumulated, not on the budget or the GQA mode: other H2O policies on this
  // layer share them.
  std::shared_ptr<const std::vector<double>> pass_sums(const EvictionContext& ctx, int kv_head, int first, int count,
                                                       const HeadState& s, std::int64_t cached,
                                                       std::span<const std::int64_t> rows,
                                                       std::span<const std::int64_t> positions) const {
    const Pass& pass = ctx.pass;
    const auto compute = [&] {
      std::vector<const HeadMatrix*> heads;
      for (int g = first; g < first + count; ++g) heads.push_back(&ctx.trace->queries[static_cast<std::size_t>(g)]);
      std::vector<double> sums(s.resident.size(), 0.0);
      add_pass_attention(ctx.trace->keys[static_cast<std::size_t>(kv_head)], s.resident, cached, pass.begin,
                         {heads, rows, positions}, sums);
      return sums;
    };
    const bool untouched = static_cast<std::int64_t>(s.resident.size()) == pass.end;  // sorted, distinct
    if (!untouched || ctx.shared == nullptr) return std::make_shared<const std::vector<double>>(compute());
    return ctx.shared->get_or_compute<std::vector<double>>(
        "h2o pass attention: KV head " + std::to_string(kv_head) + ", query heads [" + std::to_string(first) + ", " +
            std::to_string(first + count) + "), pass [" + std::to_string(pass.begin) + ", " + std::to_string(pass.end) +
            "), queries from " + std::to_string(first_query(pass)),
        compute);
  }

  // Keeps the `recent` newest entries and the heavy hitters among the others (ties: lower position).
  void shrink(HeadState& s, std::int64_t cap) const {
    const auto size = static_cast<std::int64_t>(s.resident.size());
    if (size <= cap) return;
    const std::int64_t recent = recent_count(cap);
    const std::int64_t heavy = cap - recent;
    const std::int64_t candidates = size - recent;
    std::vector<double> key;  // the accumulators' maximum under gqa=max, else the one accumulator
    for (std::size_t a = 0; a < s.score.size(); ++a) {
      gqa_combine(GqaMode::kMax, std::span<const double>(s.score[a]).first(static_cast<std::size_t>(candidates)),
                  a == 0, a + 1 == s.score.size(), 1, key);
    }
    if (normalize_) {
      for (std::int64_t j = 0; j < candidates; ++j)
        key[j] = s.seen[j] > 0 ? key[j] / static_cast<double>(s.seen[j]) : 0.0;
    }
    std::vector<std::int64_t> order(static_cast<std::size_t>(candidates));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::partial_sort(order.begin(), order.begin() + heavy, order.end(),
                      [&](std::int64_t a, std::int64_t b) { return key[a] != key[b] ? key[a] > key[b] : a < b; });
    order.resize(static_cast<std::size_t>(heavy));
    std::sort(order.begin(), order.end());
    for (std::int64_t j = candidates; j < size; ++j) order.push_back(j);
    HeadState kept;
    kept.score.resize(s.score.size());
    for (std::int64_t j : order) {
      kept.resident.push_back(s.resident[j]);
      for (std::size_t a = 0; a < s.score.size(); ++a) kept.score[a].push_back(s.score[a][j]);
      kept.seen.push_back(s.seen[j]);
    }
    s = std::move(kept);
  }

  std::string spec_;
  Budget budget_;
  double recent_share_;
  std::int64_t recent_tokens_;
  std::int64_t prompt_queries_;  // 0: all
  bool normalize_;
  GqaMode gqa_;
  EvictionPoints points_;
};

}  // namespace

void register_h2o(PolicyRegistry& registry) {
  registry.add(
      {"h2o",
       "H2O: keep a recent window plus the heavy hitters, the entries with the most attention accumulated "
       "over all queries so far",
       "Zhang et al. 2023, H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models "
       "(arXiv 2306.14048); FMInference/H2O h2o_hf/utils_real_drop/modify_llama.py; count normalisation as "
       "NVIDIA/kvpress kvpress/presses/observed_attention_press.py",
       {{"budget", "0.2",
         "fraction (<1) of the prompt kept (plus `recent` if that is a token count), or a token count (>=1)"},
        {"recent", "0.5",
         "recent window: share (<1) of the capacity (H2O's equal heavy/recent split), or a token count (>=1)"},
        {"prompt_queries", "all",
         "prompt queries accumulated: all (exact H2O; the trace must store every prompt query) or N, the last N of "
         "each prefill chunk "
         "(cheaper approximation; decode queries always count)"},
        {"normalize", "none", "none (H2O: sum) | count (kvpress ObservedAttention: divide by the queries that saw it)"},
        {"gqa", "mean",
         "mean (kvpress: one cache per KV head, the group's mean attention) | max (each query head accumulates, the "
         "group's maximum ranks) | expand (Zefan-Cai/KVCache-Factory's H2OKVCluster: per query head, G copies of the "
         "cache in footprint and bytes; FMInference/H2O's code is MHA-only)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "step", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const double recent = args.get_double("recent");
         const std::string queries = args.get_string("prompt_queries");
         const bool normalize = args.get_choice("normalize", {"none", "count"}) == "count";
         const GqaMode gqa = read_gqa(args);
         const auto points = read_eviction_points(args);
         if (!(recent >= 0.0)) args.fail("recent", "must be a share in [0, 1) or a token count >= 1");
         if (recent >= 1.0 && recent != std::floor(recent))
           args.fail("recent", "a value >= 1 is a token count and must be an integer");
         if (recent > static_cast<double>(kMaxSpecInteger)) args.fail("recent", "a token count must be at most 10^12");
         const std::int64_t recent_tokens = recent >= 1.0 ? static_cast<std::int64_t>(recent) : 0;
         if (!budget.is_fraction && recent_tokens > 0 && budget.tokens <= recent_tokens) {
           args.fail("budget", "a token budget must exceed the recent window (" + std::to_string(recent_tokens) + ")");
         }
         std::int64_t prompt_queries = 0;
         if (queries != "all") {
           const auto [ptr, ec] = std::from_chars(queries.data(), queries.data() + queries.size(), prompt_queries);
           if (ec != std::errc() || ptr != queries.data() + queries.size() || prompt_queries < 1) {
             args.fail("prompt_queries", "expected all or an integer >= 1, got '" + queries + "'");
           }
         }
         args.set_canonical("recent", recent_tokens > 0 ? std::to_string(recent_tokens) : format_spec_number(recent));
         args.set_canonical("prompt_queries", prompt_queries > 0 ? std::to_string(prompt_queries) : "all");
         return std::make_unique<H2oPolicy>(args.canonical(), budget, recent_tokens > 0 ? 0.0 : recent, recent_tokens,
                                            prompt_queries, normalize, gqa, points);
       }});
}

}  // namespace kvsim
