#include "scoring/json_limits.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>

namespace arbiter::scoring {
namespace {

std::string nested(std::size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(JsonLimitsTest, CountsNestingOutsideStringsOnly) {
  EXPECT_FALSE(json_too_deep(""));
  EXPECT_FALSE(json_too_deep(nested(kMaxJsonDepth)));
  EXPECT_TRUE(json_too_deep(nested(kMaxJsonDepth + 1)));
  EXPECT_TRUE(json_too_deep(std::string(100000, '[')));  // unterminated
  EXPECT_FALSE(json_too_deep("\"" + std::string(1000, '[') + "\""));
  EXPECT_FALSE(json_too_deep(R"(["\"[[[[[[", {"a": "]]]]"}])", 2));
  EXPECT_TRUE(json_too_deep(R"([[["\\"]]])", 2));  // an escaped backslash ends the escape
  // Closers without openers do not buy depth.
  EXPECT_TRUE(json_too_deep(std::string(10, ']') + nested(3), 2));
  EXPECT_FALSE(json_too_deep(R"({"a": [1, {"b": [2]}]})", 4));
  EXPECT_TRUE(json_too_deep(R"({"a": [1, {"b": [2]}]})", 3));
}

TEST(JsonLimitsTest, ParsesBoundedDocumentsAndDiscardsTheRest) {
  EXPECT_EQ(parse_json_bounded(R"({"model": "m", "n": [1, 2]})"), nlohmann::json::parse(R"({"model":"m","n":[1,2]})"));
  EXPECT_TRUE(parse_json_bounded(nested(kMaxJsonDepth + 1)).is_discarded());
  EXPECT_TRUE(parse_json_bounded(nested(100000)).is_discarded());
  EXPECT_TRUE(parse_json_bounded("{not json").is_discarded());
  EXPECT_TRUE(parse_json_bounded("\"\xc3\x28\"").is_discarded());  // invalid UTF-8
  EXPECT_FALSE(parse_json_bounded(nested(kMaxJsonDepth)).is_discarded());
  // What a walk over the deepest accepted document costs is bounded: dump() recurses.
  EXPECT_EQ(parse_json_bounded(nested(kMaxJsonDepth)).dump().size(), 2 * kMaxJsonDepth);
}

}  // namespace
}  // namespace arbiter::scoring
