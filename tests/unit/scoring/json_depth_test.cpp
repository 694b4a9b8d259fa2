#include "scoring/json_depth.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>

#include "scoring/request_record.hpp"

namespace arbiter::scoring {
namespace {

std::string nested(std::size_t depth, std::string_view inner = "1") {
  return std::string(depth, '[') + std::string(inner) + std::string(depth, ']');
}

TEST(JsonDepth, CountsOpenArraysAndObjects) {
  EXPECT_FALSE(json_nesting_exceeds(""));
  EXPECT_FALSE(json_nesting_exceeds("1"));
  EXPECT_FALSE(json_nesting_exceeds(nested(kMaxJsonDepth)));
  EXPECT_TRUE(json_nesting_exceeds(nested(kMaxJsonDepth + 1)));
  EXPECT_FALSE(json_nesting_exceeds(R"({"a":{"b":[1,{"c":2}]}})", 4));
  EXPECT_TRUE(json_nesting_exceeds(R"({"a":{"b":[1,{"c":2}]}})", 3));
  // Siblings do not add up.
  std::string siblings = "[";
  for (int i = 0; i < 200; ++i) siblings += "[1],";
  siblings += "[1]]";
  EXPECT_FALSE(json_nesting_exceeds(siblings, 2));
}

TEST(JsonDepth, BracketsInStringsDoNotCount) {
  const std::string text = R"({"a":")" + std::string(500, '[') + R"(\"[[[", "b": "\\"})";
  EXPECT_FALSE(json_nesting_exceeds(text, 1));
  EXPECT_TRUE(json_nesting_exceeds(R"({"a":"\\"})" + nested(5), 4));
}

TEST(JsonDepth, StrayClosersDoNotBuyDepth) {
  // Leading closers must not let the openers after them go unnoticed.
  EXPECT_TRUE(json_nesting_exceeds(std::string(100, ']') + std::string(kMaxJsonDepth + 1, '[')));
}

// Found while writing the manual_logger fuzz target's check on what
// GET /v1/request/{id} shows: a stored body of deeply nested JSON was shown as
// a JSON value, and dump() recursing through every level overflowed the stack.
TEST(JsonDepth, DeepStoredBodiesAreShownAsTextNotValues) {
  const std::string deep = nested(200'000);
  const nlohmann::json shown = body_json(deep);
  ASSERT_TRUE(shown.is_string());
  EXPECT_EQ(shown.get<std::string>(), deep);

  RequestRecord r;
  r.request_id = "5b1e8f0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
  r.project = "p";
  r.request_body = deep;
  r.response_body = R"({"ok":[1,2]})";
  const nlohmann::json j = to_json(r, true);
  EXPECT_TRUE(j["request_body"].is_string());
  EXPECT_TRUE(j["response_body"].is_object());  // shallow bodies are still values
  EXPECT_GT(j.dump().size(), deep.size());

  EXPECT_TRUE(body_json(nested(kMaxJsonDepth)).is_array());
}

}  // namespace
}  // namespace arbiter::scoring
