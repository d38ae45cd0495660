// snapkv: SnapKV (Li et al. 2024, arXiv 2404.14469; reference FasterDecoding/SnapKV
// snapkv/monkeypatch/snapkv_utils.py). The last `window` queries vote for earlier entries with
// their causal attention; votes are pooled along positions and each KV head keeps the window plus
// its top-voted entries, up to the capacity of DESIGN.md §4.
#include <algorithm>
#include <tbb/parallel_for.h>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/window_attention.h"
#include "util/error.h"

namespace kvsim {

namespace {

class SnapKvPolicy final : public Policy {
 public:
  SnapKvPolicy(Budget budget, std::int64_t window, int kernel, bool max_pooling, EvictionPoints points)
      : budget_(budget), window_(window), kernel_(kernel), max_pooling_(max_pooling), points_(points) {}

  std::string spec() const override {
    return "snapkv(budget=" + budget_.format() + ", window=" + std::to_string(window_) +
           ", kernel=" + std::to_string(kernel_) + ", pooling=" + (max_pooling_ ? "max" : "avg") + ", " +
           format_eviction_points(points_) + ")";
  }
  EvictionPoints eviction_points() const override { return points_; }

  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    auto add_window = [&](std::int64_t end, std::int64_t tokens) {
      for (std::int64_t t = end - std::min(window_, tokens); t < end; ++t) positions->push_back(t);
    };
    if (points_.prefill == PrefillEviction::kChunk) {
      for (const Pass& p : prefill) add_window(p.end, p.tokens());
    } else if (points_.prefill == PrefillEviction::kPostFill) {
      add_window(request.prompt_tokens, request.prompt_tokens);
    }
    if (points_.decode_every > 0) {
      for (std::int64_t t = request.prompt_tokens; t < request.total_tokens(); ++t) positions->push_back(t);
      add_window(request.prompt_tokens, request.prompt_tokens);
    }
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, window_);
    // The window is the most recent tokens: after a chunk, that chunk's last `window` (a chunk never
    // scores with queries of an earlier one); otherwise the last `window` of everything processed.
    const bool chunk_window = ctx.pass.prefill && points_.prefill == PrefillEviction::kChunk;
    const std::int64_t window_begin = ctx.pass.end - (chunk_window ? std::min(window_, ctx.pass.tokens()) : window_);
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      auto& resident = residency[h];
      const auto size = static_cast<std::int64_t>(resident.size());
      if (size <= capacity) return;
      const auto window = static_cast<std::int64_t>(
          resident.end() - std::lower_bound(resident.begin(), resident.end(), window_begin));
      const std::int64_t keep_scored = capacity - window;
      std::vector<std::int32_t> kept;
      kept.reserve(static_cast<std::size_t>(capacity));
      if (ctx.trace == nullptr) {
        // Untraced layer: only the count matters.
        kept.assign(resident.end() - capacity, resident.end());
      } else {
        const auto prefix = static_cast<std::size_t>(size - window);
        std::vector<float> scores = score_head(ctx, static_cast<int>(h), resident, window);
        scores = max_pooling_ ? max_pool(scores, kernel_) : avg_pool(scores, kernel_);
        for (std::int32_t index : top_k_indices(scores, keep_scored)) kept.push_back(resident[index]);
        kept.insert(kept.end(), resident.begin() + static_cast<std::ptrdiff_t>(prefix), resident.end());
      }
      resident = std::move(kept);
    });
  }

 private:
  std::vector<float> score_head(const EvictionContext& ctx, int kv_head, std::span<const std::int32_t> resident,
                                std::int64_t window) const {
    const LayerTrace& trace = *ctx.trace;
    const int group = ctx.model.group_size();
    std::vector<const HeadMatrix*> heads;
    for (int g = kv_head * group; g < (kv_head + 1) * group; ++g) heads.push_back(&trace.queries[g]);
    std::vector<std::int64_t> rows;
    for (std::int64_t t : resident.last(static_cast<std::size_t>(window))) {
      const std::int64_t row = trace.query_row(t);
      if (row < 0) throw InputError("trace layer " + std::to_string(trace.layer) + ": no stored query at position " +
                                    std::to_string(t) + ", which " + spec() + " scores with");
      rows.push_back(row);
    }
    return window_attention_scores(trace.keys[kv_head], resident, window, {heads, rows});
  }

  Budget budget_;
  std::int64_t window_;
  int kernel_;
  bool max_pooling_;
  EvictionPoints points_;
};

}  // namespace

void register_snapkv(PolicyRegistry& registry) {
  registry.add(
      {"snapkv",
       "SnapKV: the last `window` queries score earlier entries by pooled causal attention; keep the top ones",
       "Li et al. 2024, SnapKV: LLM Knows What You are Looking for Before Generation (arXiv 2404.14469); "
       "FasterDecoding/SnapKV",
       {{"budget", "0.2", "fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "32", "observation window: the most recent queries, always kept"},
        {"kernel", "7", "pooling kernel along positions (odd)"},
        {"pooling", "max", "max|avg"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K (keeps the capacity reached at the end of prefill)"}},
       [](SpecArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget", 0.2);
         const std::int64_t window = args.get_int("window", 32);
         const std::int64_t kernel = args.get_int("kernel", 7);
         const bool max_pooling = args.get_choice("pooling", "max", {"max", "avg"}) == "max";
         const auto points = read_eviction_points(args, {PrefillEviction::kPostFill, 0});
         if (window < 1) args.fail("window", "must be >= 1");
         if (kernel < 1 || kernel % 2 == 0) args.fail("kernel", "must be an odd integer >= 1");
         if (!budget.is_fraction && budget.tokens <= window) {
           args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
         }
         return std::make_unique<SnapKvPolicy>(budget, window, static_cast<int>(kernel), max_pooling, points);
       }});
}

}  // namespace kvsim
