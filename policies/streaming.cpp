// streaming: StreamingLLM (Xiao et al. 2023, arXiv 2309.17453) -- attention sinks plus a recent window.
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"

#include <algorithm>

namespace kvsim {

namespace {

class StreamingPolicy final : public Policy {
 public:
  StreamingPolicy(std::string spec, std::int64_t sinks, std::int64_t window, EvictionPoints points)
      : spec_(std::move(spec)), sinks_(sinks), window_(window), points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }

  // Keeps positions < sinks and the `window` most recent resident entries: the cache the footprint
  // paper's streaming_mask_stats accounts for (sink + local window, applied at chunk granularity).
  void evict(const EvictionContext&, LayerResidency& residency) const override {
    for (auto& head : residency) keep_sinks_and_window(head, sinks_, window_);
  }

 private:
  std::string spec_;
  std::int64_t sinks_;
  std::int64_t window_;
  EvictionPoints points_;
};

}  // namespace

void register_streaming(PolicyRegistry& registry) {
  registry.add({"streaming",
                "StreamingLLM: keep the first `sinks` tokens and the `window` most recent ones",
                "Xiao et al. 2023, Efficient Streaming Language Models with Attention Sinks (arXiv 2309.17453)",
                {{"sinks", "4", "attention-sink tokens kept at the start"},
                 {"window", "1024", "most recent tokens kept"},
                 {"prefill", "chunk", "none|post_fill|chunk: evict after the prompt or after every chunk"},
                 {"decode", "step", "none|step|every:K|length:K"}},
                [](PolicyArgs& args) -> std::unique_ptr<Policy> {
                  const std::int64_t sinks = args.get_int("sinks");
                  const std::int64_t window = args.get_int("window");
                  if (sinks < 0) args.fail("sinks", "must be >= 0");
                  if (window < 1) args.fail("window", "must be >= 1");
                  const auto points = read_eviction_points(args);
                  return std::make_unique<StreamingPolicy>(args.canonical(), sinks, window, points);
                }});
}

}  // namespace kvsim
