#include "scoring/json_limits.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>
#include <string>
#include <vector>

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

// ---- top_level_members: the scan must find what a parse finds ----

nlohmann::json random_value(std::mt19937& rng, int depth) {
  const int kind = static_cast<int>(rng() % (depth > 4 ? 6 : 8));
  switch (kind) {
    case 0: return nullptr;
    case 1: return rng() % 2 == 0;
    case 2: return static_cast<std::int64_t>(rng() % 2000000) - 1000000;
    case 3: return static_cast<double>(rng() % 100000) / 7.0;
    case 4: {
      static const char* kStrings[] = {"", "gpt-4o", "a \"quoted\" ] } word", "back\\slash", "tab\there",
                                       "ünïcødé ✓", "{[not structure]}", "line\nbreak", "\x01ctl"};
      return kStrings[rng() % std::size(kStrings)];
    }
    case 5: return "s" + std::to_string(rng() % 1000);
    case 6: {
      nlohmann::json a = nlohmann::json::array();
      for (auto n = rng() % 4; n > 0; --n) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      nlohmann::json o = nlohmann::json::object();
      for (auto n = rng() % 4; n > 0; --n) o["k" + std::to_string(rng() % 6)] = random_value(rng, depth + 1);
      return o;
    }
  }
}

TEST(TopLevelMembersTest, FindsWhatAParseFindsInRandomDocuments) {
  std::mt19937 rng(20261122);
  const std::string_view names[] = {"model", "usage", "k1", "absent"};
  for (int round = 0; round < 2000; ++round) {
    nlohmann::json doc = nlohmann::json::object();
    for (auto n = rng() % 6; n > 0; --n) {
      static const char* kKeys[] = {"model", "usage", "k1", "messages", "user"};
      doc[kKeys[rng() % std::size(kKeys)]] = random_value(rng, 1);
    }
    const int indent = round % 3 == 0 ? -1 : static_cast<int>(round % 4);
    const std::string text = doc.dump(indent);
    SCOPED_TRACE(text);
    const auto found = top_level_members(text, names);
    ASSERT_TRUE(found.has_value());
    for (std::size_t i = 0; i < std::size(names); ++i) {
      const auto it = doc.find(names[i]);
      if (it == doc.end()) {
        EXPECT_TRUE((*found)[i].empty()) << names[i];
      } else {
        EXPECT_EQ(nlohmann::json::parse((*found)[i]), *it) << names[i];
      }
    }
    // Every strict prefix (a truncated body) is refused, as a parse refuses it.
    for (std::size_t cut = 0; cut < text.size(); cut += 1 + text.size() / 40) {
      EXPECT_FALSE(top_level_members(std::string_view(text).substr(0, cut), names).has_value()) << cut;
    }
  }
}

TEST(TopLevelMembersTest, KeysAreComparedUnescapedAndTheLastRepeatWins) {
  const std::string_view names[] = {"model"};
  auto m = top_level_members(R"({"mod\u0065l": "a", "x": {"model": "nested"}})", names);
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)[0], R"("a")");
  m = top_level_members(R"( {"model": 1 ,"model" : [2] } )", names);
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)[0], "[2]");
}

// Strings are skipped 16 bytes at a time (SSE2) and then byte by byte: a
// quote, backslash or control byte must be seen at every position relative
// to those blocks, in keys and in values at the top level and nested.
TEST(TopLevelMembersTest, SeesEveryStringByteWhereverItFallsInABlock) {
  const std::string_view names[] = {"a", "b"};
  struct Special {
    std::string text;  // as it appears inside the JSON string
    bool valid;        // to the scan (a parse also refuses invalid UTF-8)
    bool utf8 = true;
  };
  // 0xff is not UTF-8, which the scan does not check; it must not take a
  // byte above 0x7f for a control byte either.
  const Special specials[] = {
      {R"(\")", true}, {R"(\\)", true}, {R"(\n)", true}, {R"(\u00e9)", true}, {"\xc3\xa9", true},
      {"\x01", false}, {"\x1f", false}, {"\n", false},   {"\x7f", true},      {"\xff", true, false},
  };
  for (std::size_t pad = 0; pad < 16; ++pad) {        // where the string starts in the text
    for (std::size_t len = 0; len <= 40; ++len) {     // plain bytes around the special one
      for (std::size_t at = 0; at <= len; ++at) {     // where the special one sits
        for (const auto& special : specials) {
          const std::string inner = std::string(at, 'x') + special.text + std::string(len - at, 'y');
          for (const bool nested : {false, true}) {
            const std::string value = nested ? "[{\"k" + inner + "\": \"" + inner + "\"}]" : "\"" + inner + "\"";
            const std::string text = "{\"" + std::string(pad, 'p') + "\": 0, \"a\": " + value + ", \"b\": 7}";
            SCOPED_TRACE(::testing::PrintToString(text));
            const auto found = top_level_members(text, names);
            if (special.utf8) {
              EXPECT_EQ(found.has_value(), nlohmann::json::accept(text));
            }
            ASSERT_EQ(found.has_value(), special.valid);
            if (!found) continue;
            EXPECT_EQ((*found)[0], value);
            EXPECT_EQ((*found)[1], "7");
          }
        }
      }
    }
  }
  // Unterminated, with the end of the text at every position of a block, and
  // a backslash as the very last byte.
  for (std::size_t len = 0; len <= 40; ++len) {
    EXPECT_FALSE(top_level_members("{\"a\": \"" + std::string(len, 'x'), names).has_value()) << len;
    EXPECT_FALSE(top_level_members("{\"a\": \"" + std::string(len, 'x') + "\\", names).has_value()) << len;
  }
}

TEST(TopLevelMembersTest, RefusesWhatIsNotAnObjectOrIsBrokenOrTooDeep) {
  const std::string_view names[] = {"model"};
  for (const char* bad : {"", "[]", "\"s\"", "12", "{", "{\"model\"}", "{\"model\": }", "{\"model\" \"a\"}",
                          "{\"a\": 1 \"model\": 2}", "{\"model\": \"a\"} x", "{\"model\": \"a\",}",
                          "{\"a\": [1, 2}", "{\"a\": \"unterminated}", "{model: 1}", "{\"a\": @}",
                          "{\"a\": \"raw\x01ctl\"}"}) {
    EXPECT_FALSE(top_level_members(bad, names).has_value()) << bad;
  }
  EXPECT_TRUE(top_level_members("{}", names).has_value());
  // The same bound as parse_json_bounded: the top level is one of the levels.
  const std::string at_limit = "{\"a\": " + nested(kMaxJsonDepth - 1) + "}";
  const std::string over = "{\"a\": " + nested(kMaxJsonDepth) + "}";
  EXPECT_FALSE(parse_json_bounded(at_limit).is_discarded());
  EXPECT_TRUE(top_level_members(at_limit, names).has_value());
  EXPECT_TRUE(parse_json_bounded(over).is_discarded());
  EXPECT_FALSE(top_level_members(over, names).has_value());
  EXPECT_FALSE(top_level_members("{\"a\": " + std::string(100000, '[') + "}", names).has_value());
}

}  // namespace
}  // namespace arbiter::scoring
