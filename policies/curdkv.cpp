// curdkv: CurDKV (Sengupta et al. 2025, "Value-Guided KV Compression for LLMs via Approximated
// CUR Decomposition", arXiv 2509.15038; reference NVIDIA/kvpress kvpress/presses/cur_press.py,
// CURPress). A token's importance is the product of the leverage proxies of its key and value rows,
// ||k||^2 and ||v||^2, each normalised within local blocks so that one loud region cannot claim the
// whole budget. The first `sinks` entries are kept (kvpress sets their score to 1.0).
#include <tbb/parallel_for.h>

#include "policies/leverage.h"
#include "policies/registry.h"
#include "policies/schedule.h"

namespace kvsim {

namespace {

enum class LeverageType { kKey, kValue, kKvAvg, kKvProduct };

// Squared row norms of the resident entries, normalised to sum 1 within consecutive blocks of
// `block` entries counted from the oldest resident (block 0: no local normalisation). kvpress
// zero-pads the last block, which leaves its sum unchanged; an all-zero block (0/0 there) scores 0.
Eigen::VectorXd local_squared_norms(const HeadMatrix& m, std::span<const std::int32_t> resident, std::int64_t block) {
  const auto n = static_cast<Eigen::Index>(resident.size());
  Eigen::VectorXd x(n);
  for (Eigen::Index i = 0; i < n; ++i) x[i] = m.row(resident[static_cast<std::size_t>(i)]).cast<double>().squaredNorm();
  if (block <= 0) return x;
  for (Eigen::Index begin = 0; begin < n; begin += block) {
    auto part = x.segment(begin, std::min<Eigen::Index>(block, n - begin));
    const double sum = part.sum();
    part = sum > 0.0 ? Eigen::VectorXd(part / sum) : Eigen::VectorXd::Zero(part.size());
  }
  return x;
}

class CurDkvPolicy final : public Policy {
 public:
  CurDkvPolicy(std::string spec, Budget budget, std::int64_t sinks, LeverageType type, std::int64_t local_window,
               EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        sinks_(sinks),
        type_(type),
        local_window_(local_window),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, sinks_);
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      auto& resident = residency[h];
      const auto size = static_cast<std::int64_t>(resident.size());
      if (size <= capacity) return;
      const ProtectedEnds ends = ProtectedEnds{sinks_, 0}.clipped(size);
      std::vector<float> middle(static_cast<std::size_t>(size - ends.sinks), 0.0f);
      if (ctx.trace != nullptr) {
        const Eigen::VectorXd s = scores(ctx.trace->keys[h], ctx.trace->values[h], resident);
        for (std::size_t i = 0; i < middle.size(); ++i)
          middle[i] = static_cast<float>(s[ends.sinks + static_cast<Eigen::Index>(i)]);
      }
      resident = keep_ends_and_top(resident, middle, ends, capacity);
    });
  }

 private:
  Eigen::VectorXd scores(const HeadMatrix& keys, const HeadMatrix& values,
                         std::span<const std::int32_t> resident) const {
    const Eigen::VectorXd k2 = local_squared_norms(keys, resident, local_window_);
    const Eigen::VectorXd v2 = local_squared_norms(values, resident, local_window_);
    Eigen::VectorXd s;
    switch (type_) {
      case LeverageType::kKey: s = k2; break;
      case LeverageType::kValue: s = v2; break;
      case LeverageType::kKvAvg: s = (k2 + v2) / 2.0; break;
      case LeverageType::kKvProduct: s = k2.cwiseProduct(v2); break;
    }
    // Normalised as the reference does (a constant factor per head: it keeps scores comparable).
    const double total = s.sum();
    if (total > 0.0) s /= total;
    return s;
  }

  std::string spec_;
  Budget budget_;
  std::int64_t sinks_;
  LeverageType type_;
  std::int64_t local_window_;
  EvictionPoints points_;
};

}  // namespace

void register_curdkv(PolicyRegistry& registry) {
  registry.add(
      {"curdkv",
       "CurDKV: keep tokens whose key and value rows carry the most (block-normalised) leverage, ||k||^2 * ||v||^2",
       "Sengupta et al. 2025, Value-Guided KV Compression for LLMs via Approximated CUR Decomposition "
       "(arXiv 2509.15038); NVIDIA/kvpress kvpress/presses/cur_press.py (CURPress)",
       {{"budget", "0.2", "fraction (<1) of the prompt kept besides the sinks, or a token count (>=1) incl. them"},
        {"sinks", "4", "first resident entries always kept (CURPress num_sinks)"},
        {"leverage", "kv_product", "key|value|kv_avg|kv_product: how key and value leverage combine"},
        {"local_window", "16", "block size of the local normalisation (CURPress local_window_size); 0: none"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const std::int64_t sinks = args.get_int("sinks");
         const std::string type = args.get_choice("leverage", {"key", "value", "kv_avg", "kv_product"});
         const std::int64_t local_window = args.get_int("local_window");
         const auto points = read_eviction_points(args);
         if (sinks < 0) args.fail("sinks", "must be >= 0");
         if (local_window < 0) args.fail("local_window", "must be >= 0 (0: no local normalisation)");
         if (!budget.is_fraction && budget.tokens < sinks) {
           args.fail("budget", "a token budget must hold the sinks (" + std::to_string(sinks) + ")");
         }
         const LeverageType t = type == "key"      ? LeverageType::kKey
                                : type == "value"  ? LeverageType::kValue
                                : type == "kv_avg" ? LeverageType::kKvAvg
                                                   : LeverageType::kKvProduct;
         return std::make_unique<CurDkvPolicy>(args.canonical(), budget, sinks, t, local_window, points);
       }});
}

}  // namespace kvsim
