#pragma once
// A policy wrapper for tests: forwards everything to the wrapped policy (state and observe
// included) and records every eviction it makes.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "policies/policy.h"

namespace kvsim::testing_support {

class RecordingPolicy final : public Policy {
 public:
  explicit RecordingPolicy(std::unique_ptr<Policy> inner) : owned_(std::move(inner)), inner_(*owned_) {}
  explicit RecordingPolicy(const Policy& inner) : inner_(inner) {}

  struct Event {
    Pass pass;
    std::vector<std::int64_t> before, after;  // kept count per head
    LayerResidency kept;
    bool traced = false;
  };

  std::string spec() const override { return inner_.spec(); }
  EvictionPoints eviction_points() const override { return inner_.eviction_points(); }
  void add_required_queries(const RequestInfo& r, std::span<const Pass> p,
                            std::vector<std::int64_t>* q) const override {
    inner_.add_required_queries(r, p, q);
  }
  std::unique_ptr<PolicyState> make_state() const override { return inner_.make_state(); }
  int kv_copies(const ModelShape& model) const override { return inner_.kv_copies(model); }
  bool uses_layer_statistics(bool every_layer_traced) const override {
    return inner_.uses_layer_statistics(every_layer_traced);
  }
  LayerStatistic layer_statistic(const EvictionContext& ctx, const LayerResidency& prompt) const override {
    return inner_.layer_statistic(ctx, prompt);
  }
  void observe(const EvictionContext& ctx, const LayerResidency& residency) const override {
    inner_.observe(ctx, residency);
  }
  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    Event event{ctx.pass, counts(residency), {}, {}, ctx.trace != nullptr};
    inner_.evict(ctx, residency);
    for (const auto& h : residency) {
      EXPECT_TRUE(std::is_sorted(h.begin(), h.end())) << spec();
      EXPECT_EQ(std::adjacent_find(h.begin(), h.end()), h.end()) << spec() << ": duplicate position";
    }
    event.after = counts(residency);
    event.kept = residency;
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }

  std::vector<Event> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  // Kept count per head after each eviction.
  std::vector<std::vector<std::int64_t>> sizes() const {
    std::vector<std::vector<std::int64_t>> out;
    for (const Event& e : events()) out.push_back(e.after);
    return out;
  }
  // True if every eviction left all heads of the layer with the same positions.
  bool same_sets() const {
    for (const Event& e : events()) {
      for (const auto& h : e.kept) {
        if (h != e.kept.front()) return false;
      }
    }
    return true;
  }

 private:
  static std::vector<std::int64_t> counts(const LayerResidency& residency) {
    std::vector<std::int64_t> out;
    for (const auto& h : residency) out.push_back(static_cast<std::int64_t>(h.size()));
    return out;
  }

  std::unique_ptr<Policy> owned_;
  const Policy& inner_;
  mutable std::mutex mutex_;
  mutable std::vector<Event> events_;
};

}  // namespace kvsim::testing_support
