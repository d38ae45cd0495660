#include "traces/layer_list.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace kvsim {
namespace {

TEST(SynthLayerList, ParsesAllListsAndRanges) {
  EXPECT_EQ(parse_layer_list("all", 3, "x"), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(parse_layer_list("16,0, 8", 32, "x"), (std::vector<int>{0, 8, 16}));
  EXPECT_EQ(parse_layer_list("0-3,31,2", 32, "x"), (std::vector<int>{0, 1, 2, 3, 31}));
  EXPECT_EQ(parse_layer_list("5", 32, "x"), (std::vector<int>{5}));
}

TEST(SynthLayerList, RejectsBadText) {
  for (const char* bad : {"", "a", "1,,2", "3-1", "-1", "0-32", "32", "1.5", "2-"}) {
    try {
      parse_layer_list(bad, 32, "scenario.ini: [trace] layers");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("scenario.ini: [trace] layers"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kvsim
