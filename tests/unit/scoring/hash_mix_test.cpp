#include "scoring/hash_mix.hpp"

#include <gtest/gtest.h>

namespace arbiter::scoring {
namespace {

// Reference values from an independent implementation (Python). Stored and
// sampled state depends on these staying the same.
TEST(HashMix, MatchesTheReferenceValues) {
  static_assert(fnv1a(kFnv1aBasis, "") == 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a(kFnv1aBasis, "a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(mix64(0), 0u);
  EXPECT_EQ(mix64(1), 0x5692161d100b05e5ULL);
  EXPECT_EQ(mix64(fnv1a(kFnv1aBasis, "msg_0001")), 0x9e62717f0eb1b7e7ULL);
  // Folding in two steps is folding the concatenation.
  EXPECT_EQ(fnv1a(fnv1a(kFnv1aBasis, "ab"), "cd"), fnv1a(kFnv1aBasis, "abcd"));
}

}  // namespace
}  // namespace arbiter::scoring
