#include "policies/spec.h"

#include <gtest/gtest.h>

#include "policies/registry.h"
#include "tests/policies/policy_test_util.h"
#include "util/error.h"

namespace kvsim {
namespace {

TEST(PolicySpec, ParsesNameAndArgumentsInOrder) {
  const ParsedSpec spec = parse_policy_spec("  snapkv( budget=0.2 , window = 32,prefill=chunk) ");
  EXPECT_EQ(spec.name, "snapkv");
  ASSERT_EQ(spec.args.size(), 3u);
  EXPECT_EQ(spec.args[0], (std::pair<std::string, std::string>{"budget", "0.2"}));
  EXPECT_EQ(spec.args[1], (std::pair<std::string, std::string>{"window", "32"}));
  EXPECT_EQ(spec.args[2], (std::pair<std::string, std::string>{"prefill", "chunk"}));
  EXPECT_EQ(parse_policy_spec("full").name, "full");
  EXPECT_TRUE(parse_policy_spec("full()").args.empty());
}

using policy_test::expect_error;

TEST(PolicySpec, RejectsMalformedSpecsWithClearErrors) {
  expect_error("snapkv(budget=0.2", "missing closing ')'");
  expect_error("snapkv(budget)", "expected key=value");
  expect_error("snapkv(budget=0.2, budget=0.3)", "given twice");
  expect_error("snapkv(budget=)", "has no value");
  expect_error("nosuch(x=1)", "unknown policy 'nosuch' (known: full, streaming, snapkv");
  expect_error("snapkv(budgett=0.2)", "parameter 'budgett': unknown parameter for 'snapkv'");
  expect_error("snapkv(budget=abc)", "parameter 'budget': expected a number");
  expect_error("snapkv(budget=-1)", "must be > 0");
  expect_error("snapkv(budget=2.5)", "must be an integer");
  expect_error("snapkv(budget=16, window=32)", "must exceed the window");
  expect_error("snapkv(kernel=4)", "odd");
  expect_error("snapkv(pooling=mean)", "expected one of max|avg");
  expect_error("streaming(decode=every:0)", "every:K|length:K with K >= 1");
  expect_error("streaming(decode=sometimes)", "expected none|step|every:K|length:K");
  expect_error("streaming(decode=length:0)", "every:K|length:K with K >= 1, got 'length:0'");
  expect_error("streaming(decode=length:)", "length:K with K >= 1");
  expect_error("streaming(window=0)", "must be >= 1");
  // Integers beyond 10^12 are refused before any arithmetic (snapkv's window + budget overflowed).
  expect_error("snapkv(window=9223372036854775807)", "magnitude at most 10^12");
  expect_error("streaming(sinks=-1000000000001)", "magnitude at most 10^12");
  EXPECT_NO_THROW(PolicyRegistry::builtin().create("streaming(window=1000000000000)"));
}

TEST(PolicySpec, CanonicalSpecsSpellOutDefaults) {
  const auto& registry = PolicyRegistry::builtin();
  EXPECT_EQ(registry.create("snapkv")->spec(),
            "snapkv(budget=0.2, window=32, kernel=7, pooling=max, gqa=mean, prefill=post_fill, decode=none)");
  EXPECT_EQ(registry.create("streaming(window=64)")->spec(),
            "streaming(sinks=4, window=64, prefill=chunk, decode=step)");
  EXPECT_EQ(registry.create("streaming(window=64, decode=every:16)")->eviction_points().decode_every, 16);
  const auto by_length = registry.create("rkv(decode=length:64)");
  EXPECT_TRUE(by_length->eviction_points().decode_by_position);
  EXPECT_EQ(by_length->eviction_points().decode_every, 64);
  EXPECT_NE(by_length->spec().find("decode=length:64"), std::string::npos);
  EXPECT_EQ(registry.create("snapkv(budget=1024, prefill=chunk)")->spec(),
            "snapkv(budget=1024, window=32, kernel=7, pooling=max, gqa=mean, prefill=chunk, decode=none)");
}

TEST(PolicySpec, TokenBudgetIsTheCountABudgetGives) {
  const PolicyRegistry& registry = PolicyRegistry::builtin();
  EXPECT_EQ(registry.create("snapkv(budget=512)")->token_budget(), 512);
  EXPECT_EQ(registry.create("h2o(budget=100, recent=8)")->token_budget(), 100);
  EXPECT_EQ(registry.create("snapkv(budget=0.5)")->token_budget(), 0);               // a fraction
  EXPECT_EQ(registry.create("snapkv")->token_budget(), 0);                           // default 0.2
  EXPECT_EQ(registry.create("streaming(sinks=4, window=1024)")->token_budget(), 0);  // no budget
}

// The spec parser names the caller's kind of spec, not "policy spec".
TEST(SpecText, ErrorsNameTheCallersContext) {
  try {
    parse_spec("offload(tier=)", "placement 'offload(tier=)'");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), "placement 'offload(tier=)': parameter 'tier' has no value");
  }
}

}  // namespace
}  // namespace kvsim
