#include "policies/select.h"

#include <algorithm>
#include <deque>
#include <numeric>

namespace kvsim {

std::vector<std::int32_t> top_k_indices(std::span<const float> scores, std::int64_t k) {
  const auto n = static_cast<std::int64_t>(scores.size());
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  if (k >= n) return order;
  if (k <= 0) return {};
  const auto before = [&](std::int32_t a, std::int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::nth_element(order.begin(), order.begin() + k, order.end(), before);
  order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

std::int64_t even_share(std::int64_t total, int parts, int index) {
  return (index + 1) * total / parts - index * total / parts;
}

std::vector<float> avg_pool(std::span<const float> x, int kernel) {
  const auto n = static_cast<std::int64_t>(x.size());
  const int half = kernel / 2;
  std::vector<float> out(x.size());
  // A direct sum per output (kernels are small) keeps every output independent of its neighbours.
  for (std::int64_t i = 0; i < n; ++i) {
    double sum = 0.0;
    for (std::int64_t j = std::max<std::int64_t>(0, i - half); j <= std::min(n - 1, i + half); ++j) sum += x[j];
    out[i] = static_cast<float>(sum / kernel);
  }
  return out;
}

namespace {

template <typename T>
std::vector<T> max_pool_of(std::span<const T> x, int kernel) {
  const auto n = static_cast<std::int64_t>(x.size());
  const int half = kernel / 2;
  std::vector<T> out(x.size());
  std::deque<std::int64_t> window;  // indices with decreasing values: monotonic queue
  std::int64_t next = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    for (; next < n && next <= i + half; ++next) {
      while (!window.empty() && x[window.back()] <= x[next]) window.pop_back();
      window.push_back(next);
    }
    while (window.front() < i - half) window.pop_front();
    out[i] = x[window.front()];
  }
  return out;
}

}  // namespace

std::vector<float> max_pool(std::span<const float> x, int kernel) { return max_pool_of(x, kernel); }
std::vector<double> max_pool(std::span<const double> x, int kernel) { return max_pool_of(x, kernel); }

void keep_newest(std::vector<std::int32_t>& resident, std::int64_t capacity) {
  if (static_cast<std::int64_t>(resident.size()) > capacity)
    resident.erase(resident.begin(), resident.end() - capacity);
}

void keep_newest(std::vector<std::vector<std::int32_t>>& residency, std::int64_t capacity) {
  for (auto& resident : residency) keep_newest(resident, capacity);
}

void keep_sinks_and_window(std::vector<std::int32_t>& resident, std::int64_t sinks, std::int64_t window) {
  const std::int64_t recent_begin = std::max<std::int64_t>(0, static_cast<std::int64_t>(resident.size()) - window);
  std::int64_t sink_end = 0;
  while (sink_end < recent_begin && resident[static_cast<std::size_t>(sink_end)] < sinks) ++sink_end;
  resident.erase(resident.begin() + sink_end, resident.begin() + recent_begin);
}

}  // namespace kvsim
