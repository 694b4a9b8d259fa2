#include "plugins/event_path.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace arbiter::plugins {
namespace {

using nlohmann::json;

const json kEvent = json::parse(R"({
  "inputs": {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
  "outputs": {"content": "hello"},
  "feedback": {"ground_truth": null, "10": "ten"},
  "metadata": {"latency_ms": 12.5}
})");

TEST(EventPath, FindsMembersAndArrayIndexes) {
  ASSERT_NE(find_event_path(kEvent, "outputs.content"), nullptr);
  EXPECT_EQ(*find_event_path(kEvent, "outputs.content"), "hello");
  EXPECT_EQ(*find_event_path(kEvent, "inputs.messages.1.content"), "hi");
  EXPECT_EQ(*find_event_path(kEvent, "inputs.messages.-1.role"), "user");
  EXPECT_EQ(*find_event_path(kEvent, "inputs.messages.-2.role"), "system");
  EXPECT_EQ(*find_event_path(kEvent, "feedback.10"), "ten");  // digits name an object member
}

TEST(EventPath, PresentNullIsFoundMissingIsNot) {
  const json* v = find_event_path(kEvent, "feedback.ground_truth");
  ASSERT_NE(v, nullptr);
  EXPECT_TRUE(v->is_null());
  EXPECT_EQ(find_event_path(kEvent, "feedback.expected"), nullptr);
  EXPECT_EQ(find_event_path(kEvent, "inputs.messages.2"), nullptr);
  EXPECT_EQ(find_event_path(kEvent, "inputs.messages.-3"), nullptr);
  EXPECT_EQ(find_event_path(kEvent, "inputs.messages.x"), nullptr);
  EXPECT_EQ(find_event_path(kEvent, "outputs.content.more"), nullptr);  // into a string
}

TEST(EventPath, MalformedPathsAreRejected) {
  for (const char* bad : {"", ".a", "a.", "a..b"}) {
    EXPECT_FALSE(valid_event_path(bad)) << bad;
    EXPECT_EQ(find_event_path(kEvent, bad), nullptr) << bad;
  }
  EXPECT_FALSE(valid_event_path(std::string(300, 'a')));
  EXPECT_TRUE(valid_event_path("outputs.content"));
}

TEST(EventPath, ValueTextRendersScalarsAndJson) {
  EXPECT_EQ(event_value_text(json("x")), "x");
  EXPECT_EQ(event_value_text(json(nullptr)), "");
  EXPECT_EQ(event_value_text(json(12.5)), "12.5");
  EXPECT_EQ(event_value_text(json::parse(R"({"a":[1,true]})")), R"({"a":[1,true]})");
}

}  // namespace
}  // namespace arbiter::plugins
