#include "sim/serving/metrics.h"

#include <vector>

namespace kvsim {

namespace {

// More than this fraction of iterations with a request refused for lack of blocks: memory-bound.
constexpr double kMemoryBlockedFraction = 0.05;

std::string dominant(const ServingRequestResult::BoundTime& t) {
  if (t.link_s > t.compute_s && t.link_s > t.hbm_bandwidth_s) return "link_bandwidth";
  return t.compute_s >= t.hbm_bandwidth_s ? "compute" : "hbm_bandwidth";
}

double total_s(const ServingRequestResult::BoundTime& t) { return t.compute_s + t.hbm_bandwidth_s + t.link_s; }

}  // namespace

std::string slo_breach_cause(const ServingRequestResult& q, bool first_token) {
  if (first_token) {
    const double working_s = total_s(q.prefill_time);
    if (q.ttft_s() - working_s > working_s) return q.waited_for_memory ? "hbm_capacity" : "queueing";
    return dominant(q.prefill_time);
  }
  const double working_s = total_s(q.decode_time);
  if (q.preemptions > 0 && (q.finish_s - q.first_token_s) - working_s > working_s) return "hbm_capacity";
  return dominant(q.decode_time);
}

RequestBreaches request_breaches(const ServingRequestResult& q, const Slo& slo) {
  const auto tpot = q.tpot_s();
  return {slo.ttft_s > 0 && q.ttft_s() > slo.ttft_s, slo.tpot_s > 0 && tpot && *tpot > slo.tpot_s};
}

std::string top_breach_cause(const std::map<std::string, std::int64_t>& causes) {
  std::string top = "none";
  std::int64_t most = 0;
  for (const auto& [cause, count] : causes) {
    if (count > most) {
      top = cause;
      most = count;
    }
  }
  return top;
}

ServingMetrics summarize_serving(const ServingResult& r, const Slo& slo) {
  ServingMetrics m;
  std::vector<double> ttft, tpot, e2e, queue;
  std::int64_t tokens = 0, good = 0;
  for (const ServingRequestResult& q : r.requests) {
    ++m.requests;
    if (q.rejected) continue;
    ++m.served;
    ttft.push_back(q.ttft_s());
    e2e.push_back(q.e2e_s());
    queue.push_back(q.queue_s());
    const auto t = q.tpot_s();
    if (t) tpot.push_back(*t);
    tokens += q.prompt_tokens + q.output_tokens;
    m.prefix_hit_tokens += q.cached_prompt_tokens;
    const RequestBreaches late = request_breaches(q, slo);
    if (late.late_first_token) ++m.ttft_breach_causes[slo_breach_cause(q, true)];
    if (late.slow_decode) ++m.tpot_breach_causes[slo_breach_cause(q, false)];
    if (!late.late_first_token && !late.slow_decode) ++good;
  }
  m.ttft_s = percentiles_of(ttft);
  m.e2e_s = percentiles_of(e2e);
  m.queue_s = percentiles_of(queue);
  m.has_tpot = !tpot.empty();
  m.tpot_s = percentiles_of(tpot);
  if (r.makespan_s > 0) {
    m.output_tokens_per_s = static_cast<double>(r.output_tokens) / r.makespan_s;
    m.tokens_per_s = static_cast<double>(tokens) / r.makespan_s;
    m.requests_per_s = static_cast<double>(m.served) / r.makespan_s;
    m.goodput_requests_per_s = static_cast<double>(good) / r.makespan_s;
  }
  m.slo_attainment = m.requests > 0 ? static_cast<double>(good) / static_cast<double>(m.requests) : 0;
  const bool memory = r.preemptions > 0 || r.rejected > 0 ||
                      (r.iterations > 0 && static_cast<double>(r.memory_blocked_iterations) >
                                               kMemoryBlockedFraction * static_cast<double>(r.iterations));
  auto bound = [&](double compute_s, double memory_s, double link_s) -> std::string {
    if (memory) return "hbm_capacity";
    if (link_s > compute_s && link_s > memory_s) return "link_bandwidth";
    return compute_s >= memory_s ? "compute" : "hbm_bandwidth";
  };
  m.limiting_resource = bound(r.compute_bound_s, r.memory_bound_s, r.link_s);
  m.tpot_limiting_resource = bound(r.decode_compute_bound_s, r.decode_memory_bound_s, r.decode_link_s);
  return m;
}

}  // namespace kvsim
