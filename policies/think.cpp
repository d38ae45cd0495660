// think: prune key channels by query-driven magnitude (Xu et al. 2024, "ThinK: Thinner Key Cache by
// Query-Driven Pruning", arXiv 2407.21018; the authors' code SalesforceAIResearch/ThinK
// ThinK_flash/src/kv_pruning_utils.py key_pruner_query_driven, ported as NVIDIA/kvpress
// kvpress/presses/think_press.py ThinKPress.compress). Evicts nothing; after the prompt
// (prefill=post_fill), each KV head drops the same n_pruned = floor(head_dim * ratio) key channels
// (zeroed, as both do) of every prompt key but the last `recent` ones, those channels with the
// lowest score[c] = qn[c] * kn[c]:
//   qn[c] = mean over the group's query heads of the mean over the last `window` prompt queries of q[c]^2,
//   kn[c] = mean over the prompt's keys (the recent ones included) of k[c]^2.
// Ties go to the lower channel index. Values, the last `recent` prompt keys (the original's
// recent_size = 32, which it keeps whole; recent=0 prunes them too, as kvpress does) and the keys
// generated during decode stay whole. GQA: gqa=mean (the default) is kvpress's group mean of the query
// norms, one channel set per KV head; gqa=expand is the original's (repeat_kv before
// key_pruner_query_driven): each query head prunes its own copy of the KV head's keys by its own
// query norms, Policy::kv_copies() = G copies in footprint and bytes (docs/policy-sources.md "think").
// prefill=chunk (kvsim's extension) prunes, once chunk j = [b_j, e_j) is done, the keys
// [max(0, e_{j-1} - recent), max(0, e_j - recent)) with the channels scored by that chunk alone (its
// last `window` queries, its keys), so channels may differ from chunk to chunk and the pruned keys
// are always a prefix of the prompt.
// Bytes (kept entries, s of them, the first e pruned: e = max(0, n - recent) after a prompt of n with
// post_fill, max(0, end of the last finished chunk - recent) with chunk; the others are whole):
//   key bytes   = e * (head_dim - n_pruned) * kv_bits/8 + (s - e) * head_dim * kv_bits/8
//   value bytes = s * head_dim * kv_bits/8
// The per-head channel mask (head_dim bits) is not counted.
#include <algorithm>
#include <cmath>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"
#include "util/error.h"

namespace kvsim {

namespace {

class ThinkPolicy final : public Policy {
 public:
  ThinkPolicy(std::string spec, double ratio, std::int64_t window, std::int64_t recent, GqaMode gqa,
              PrefillEviction mode)
      : spec_(std::move(spec)), ratio_(ratio), window_(window), recent_(recent), gqa_(gqa), mode_(mode) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return {}; }
  void evict(const EvictionContext&, LayerResidency&) const override {}

  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    for (const Pass& span : compression_spans(request, prefill, mode_)) {
      for (std::int64_t t = window_begin(span); t < span.end; ++t) positions->push_back(t);
    }
  }

  bool compresses() const override { return true; }
  int kv_copies(const ModelShape& model) const override { return gqa_copies(gqa_, model); }

  StoredEntries stored(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                       std::int64_t count) const override {
    const std::vector<Pass> spans = compression_spans(request, prefill, mode_);
    const int last = last_compressed_span(spans, count);
    const std::int64_t pruned_keys = last < 0 ? 0 : pruned_end(spans[static_cast<std::size_t>(last)]);
    const double element_bytes = model.kv_bits / 8.0;
    const auto d = static_cast<double>(model.head_dim);
    const double key_bytes = (static_cast<double>(pruned_keys) * (d - static_cast<double>(pruned_channels(model))) +
                              static_cast<double>(count - pruned_keys) * d) *
                             element_bytes;
    return {pruned_keys, 0, {key_bytes, static_cast<double>(count) * d * element_bytes}};
  }

  // `index`: the KV head, or under gqa=expand the copy (its query head's).
  CompressedHead compressed_head(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                                 const LayerTrace& trace, int index) const override {
    const auto h = static_cast<std::size_t>(gqa_scored_heads(gqa_, model, index).kv_head);
    CompressedHead out{trace.keys[h], trace.values[h]};
    std::int64_t pruned = 0;  // keys [0, pruned) pruned by the earlier spans
    for (const Pass& span : compression_spans(request, prefill, mode_)) {
      const std::int64_t end = pruned_end(span);
      if (end <= pruned) continue;
      for (std::int32_t c : pruned_channel_indices(model, trace, index, span)) {
        out.keys.col(c).segment(pruned, end - pruned).setZero();
      }
      pruned = end;
    }
    return out;
  }

 private:
  // The channels residency vector `index` (a KV head, or a copy under gqa=expand) prunes from the keys
  // of `span`, ascending, scored by that span: the query norms of its group (mean) or its query head.
  std::vector<std::int32_t> pruned_channel_indices(const ModelShape& model, const LayerTrace& trace, int index,
                                                   const Pass& span) const {
    const int d = model.head_dim;
    const GqaScoredHeads scored = gqa_scored_heads(gqa_, model, index);
    const int group = scored.query_heads;
    const HeadMatrix& keys = trace.keys[static_cast<std::size_t>(scored.kv_head)];
    Eigen::ArrayXd qn = Eigen::ArrayXd::Zero(d);
    const std::int64_t begin = window_begin(span);
    for (int g = 0; g < group; ++g) {
      const HeadMatrix& queries =
          trace.queries[static_cast<std::size_t>(scored.first_query_head) + static_cast<std::size_t>(g)];
      Eigen::ArrayXd head = Eigen::ArrayXd::Zero(d);
      for (std::int64_t t = begin; t < span.end; ++t) {
        head += queries.row(trace.query_row(t)).cast<double>().array().square().transpose();
      }
      qn += head / static_cast<double>(span.end - begin);
    }
    qn /= group;
    const Eigen::ArrayXd kn =
        keys.middleRows(span.begin, span.tokens()).cast<double>().array().square().colwise().mean().transpose();
    std::vector<float> negated(static_cast<std::size_t>(d));
    for (int c = 0; c < d; ++c) negated[static_cast<std::size_t>(c)] = static_cast<float>(-(qn(c) * kn(c)));
    return top_k_indices(negated, pruned_channels(model));
  }

  std::int64_t window_begin(const Pass& span) const { return std::max<std::int64_t>(span.begin, span.end - window_); }
  // The keys before this are pruned once `span` is done: all but the last `recent` of the prompt so far.
  std::int64_t pruned_end(const Pass& span) const { return std::max<std::int64_t>(0, span.end - recent_); }
  std::int64_t pruned_channels(const ModelShape& model) const {
    return static_cast<std::int64_t>(std::floor(model.head_dim * ratio_));
  }

  std::string spec_;
  double ratio_;
  std::int64_t window_;
  std::int64_t recent_;
  GqaMode gqa_;
  PrefillEviction mode_;
};

}  // namespace

void register_think(PolicyRegistry& registry) {
  registry.add(
      {"think",
       "ThinK: prune the key channels with the lowest query-weighted magnitude after the prompt",
       "Xu et al. 2024, ThinK: Thinner Key Cache by Query-Driven Pruning (arXiv 2407.21018); "
       "SalesforceAIResearch/ThinK ThinK_flash/src/kv_pruning_utils.py; NVIDIA/kvpress kvpress/presses/think_press.py",
       {{"ratio", "0.5",
         "fraction of key channels pruned per KV head, in [0, 1) (kvpress key_channel_compression_ratio)"},
        {"window", "32", "last prompt queries that score the channels (kvpress window_size; ThinK: 32)"},
        {"recent", "32", "last prompt keys left whole (ThinK recent_size); 0 prunes every prompt key (kvpress)"},
        {"gqa", "mean",
         "mean (kvpress ThinKPress: one channel set per KV head from the group's mean query norms) | expand "
         "(SalesforceAIResearch/ThinK's code: per query head, G copies of the cache in footprint and bytes)"},
        {"prefill", "post_fill",
         "post_fill (prune the prompt's keys once after it) | chunk (each chunk's keys once it is done, scored by that "
         "chunk)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const double ratio = args.get_double("ratio");
         const std::int64_t window = args.get_int("window");
         const std::int64_t recent = args.get_int("recent");
         if (!(ratio >= 0.0 && ratio < 1.0)) args.fail("ratio", "must be in [0, 1)");
         if (window < 1) args.fail("window", "must be >= 1");
         if (recent < 0) args.fail("recent", "must be >= 0");
         // No max: neither the original nor kvpress reduces the group by its maximum.
         const GqaMode gqa = read_gqa(args, {"mean", "expand"});  // no code reduces the group by its maximum
         const PrefillEviction mode = read_compression_point(args);
         return std::make_unique<ThinkPolicy>(args.canonical(), ratio, window, recent, gqa, mode);
       }});
}

}  // namespace kvsim
