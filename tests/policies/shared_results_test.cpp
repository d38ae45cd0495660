// SharedResults: one computation per key, shared by concurrent callers, retried after a throw.
#include <gtest/gtest.h>

#include <tbb/parallel_for.h>
#include <atomic>
#include <stdexcept>

#include "policies/shared_results.h"

namespace kvsim {
namespace {

TEST(SharedResults, ComputesEachKeyOnce) {
  SharedResults shared;
  int calls = 0;
  const std::function<int()> seven = [&] { return ++calls, 7; };
  const std::function<int()> eight = [&] { return ++calls, 8; };
  EXPECT_EQ(*shared.get_or_compute<int>("a", seven), 7);
  EXPECT_EQ(*shared.get_or_compute<int>("a", eight), 7);  // the first result stands
  EXPECT_EQ(*shared.get_or_compute<int>("b", eight), 8);
  EXPECT_EQ(calls, 2);
}

TEST(SharedResults, ConcurrentCallersShareOneComputationThatTheyHelpWith) {
  SharedResults shared;
  std::atomic<int> calls{0};
  std::atomic<long> work{0};
  const std::function<long()> compute = [&] {
    ++calls;
    // A computation that itself runs TBB tasks, as H2O's attention sums do.
    tbb::parallel_for(0, 1000, [&](int i) { work += i; });
    return work.load();
  };
  std::vector<const long*> seen(64, nullptr);
  tbb::parallel_for(
      0, 64, [&](int i) { seen[static_cast<std::size_t>(i)] = shared.get_or_compute<long>("k", compute).get(); });
  EXPECT_EQ(calls.load(), 1);
  for (const long* p : seen) EXPECT_EQ(p, seen.front());
  EXPECT_EQ(*seen.front(), 999 * 1000 / 2);
}

TEST(SharedResults, AThrowReachesItsCallerAndTheNextOneComputesAgain) {
  SharedResults shared;
  const std::function<int()> fail = []() -> int { throw std::runtime_error("no"); };
  const std::function<int()> five = [] { return 5; };
  EXPECT_THROW(shared.get_or_compute<int>("k", fail), std::runtime_error);
  EXPECT_EQ(*shared.get_or_compute<int>("k", five), 5);
}

}  // namespace
}  // namespace kvsim
