// The test binary's cache folder: before any test runs, XDG_CACHE_HOME points into the build tree,
// so tests that run serving studies with the default [sim] cache_dir never write retention profiles
// into the real ~/.cache, under ctest or run by hand. (ctest's ENVIRONMENT property cannot carry
// it: gtest_discover_tests splits a list-valued ENVIRONMENT into separate properties.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "sim/scenario.h"
#include "sim/serving/profile_cache.h"

namespace kvsim {
namespace {

const bool kCacheHomeSet = ::setenv("XDG_CACHE_HOME", KVSIM_TEST_CACHE_DIR, 1) == 0;

TEST(TestEnvironment, DefaultProfileCacheIsInTheBuildTree) {
  ASSERT_TRUE(kCacheHomeSet);
  EXPECT_EQ(profile_cache_dir(Scenario{}), std::string(KVSIM_TEST_CACHE_DIR) + "/kvsim");
}

}  // namespace
}  // namespace kvsim
