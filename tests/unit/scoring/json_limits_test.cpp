#include "scoring/json_limits.hpp"

#include <gtest/gtest.h>

#include <cstring>
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

// ---- parse_json_bounded: its own reader must build what nlohmann builds ----

// Equal documents of equal types: nlohmann's == calls 1u and 1 and 1.0 equal,
// but a reader that made 1 a double would change what evaluators and the API
// see. Doubles are compared bit for bit (-0.0 is not 0.0).
std::string shown(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

::testing::AssertionResult same_document(const nlohmann::json& a, const nlohmann::json& b,
                                         const std::string& at = "$") {
  if (a.type() != b.type()) {
    return ::testing::AssertionFailure() << at << ": " << a.type_name() << " vs " << b.type_name()
                                         << " (" << shown(a) << " vs " << shown(b) << ")";
  }
  switch (a.type()) {
    case nlohmann::json::value_t::object: {
      if (a.size() != b.size())
        return ::testing::AssertionFailure()
               << at << ": " << a.size() << " vs " << b.size() << " members";
      for (auto it = a.begin(), jt = b.begin(); it != a.end(); ++it, ++jt) {
        if (it.key() != jt.key())
          return ::testing::AssertionFailure() << at << ": key " << it.key() << " vs " << jt.key();
        if (auto r = same_document(*it, *jt, at + "." + it.key()); !r) return r;
      }
      return ::testing::AssertionSuccess();
    }
    case nlohmann::json::value_t::array: {
      if (a.size() != b.size())
        return ::testing::AssertionFailure()
               << at << ": " << a.size() << " vs " << b.size() << " items";
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (auto r = same_document(a[i], b[i], at + "[" + std::to_string(i) + "]"); !r) return r;
      }
      return ::testing::AssertionSuccess();
    }
    case nlohmann::json::value_t::number_float: {
      const double x = a.get<double>(), y = b.get<double>();
      if (std::memcmp(&x, &y, sizeof x) != 0)
        return ::testing::AssertionFailure() << at << ": " << x << " vs " << y;
      return ::testing::AssertionSuccess();
    }
    case nlohmann::json::value_t::discarded:
      return ::testing::AssertionSuccess();
    default:
      if (a != b)
        return ::testing::AssertionFailure() << at << ": " << shown(a) << " vs " << shown(b);
      return ::testing::AssertionSuccess();
  }
}

void expect_parses_as_nlohmann(const std::string& text) {
  SCOPED_TRACE(::testing::PrintToString(text));
  const nlohmann::json ours = parse_json_bounded(text);
  const nlohmann::json theirs =
      json_too_deep(text) ? nlohmann::json(nlohmann::json::value_t::discarded)
                          : nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(same_document(ours, theirs));
}

TEST(ParseJsonBoundedTest, BuildsWhatNlohmannBuildsAtTheEdges) {
  const char* cases[] = {
      // numbers: the type follows nlohmann (unsigned, signed, double) and so does every refusal
      "0",
      "-0",
      "1",
      "-1",
      "0.0",
      "-0.0",
      "1e5",
      "1E+5",
      "1e-5",
      "2.5E-3",
      "123456789012345678",
      "18446744073709551615",
      "18446744073709551616",
      "-9223372036854775808",
      "-9223372036854775809",
      "1e308",
      "1.7976931348623157e308",
      "1.8e308",
      "-1e400",
      "1e-400",
      "4.9e-324",
      "2.2250738585072011e-308",
      "0.1",
      "3.141592653589793238462643383279",
      "100000000000000000000000000000000",
      "01",
      "-01",
      "1.",
      ".5",
      "-",
      "+1",
      "1e",
      "1e+",
      "0x10",
      "1.5.2",
      "--1",
      "1_000",
      "NaN",
      "Infinity",
      "-Infinity",
      "1 2",
      // literals
      "true",
      "false",
      "null",
      "tru",
      "nul",
      "True",
      "nullx",
      " null ",
      "\t\n\r null\r\n",
      // strings and escapes
      R"("")",
      R"("a")",
      R"("\"\\\/\b\f\n\r\t")",
      R"("\u0041\u00e9\u20ac")",
      R"("\u0000")",
      R"("\uD83D\uDE00")",
      R"("\ud83d\ude00")",
      R"("\uD83D")",
      R"("\uDE00")",
      R"("\uD83Dx")",
      R"("\uD83D\u0041")",
      R"("\uD83D\\")",
      R"("\u12")",
      R"("\u12G4")",
      R"("\x41")",
      R"("\a")",
      R"("\)",
      "\"unterminated",
      "\"tab\there\"",
      "\"nl\nhere\"",
      "\"\x7f\"",
      "\"\xc3\xa9\"",
      "\"\xe2\x82\xac\"",
      "\"\xf0\x9f\x98\x80\"",
      "\"\xc3\x28\"",
      "\"\xc0\xaf\"",
      "\"\xe0\x80\xaf\"",
      "\"\xed\xa0\x80\"",
      "\"\xf4\x90\x80\x80\"",
      "\"\xf5\x80\x80\x80\"",
      "\"\xff\"",
      "\"\x80\"",
      "\"\xe2\x82\"",
      "\"abc\xe2\x82\"",
      "\"\xf0\x9f\x98\"",
      // structure
      "{}",
      "[]",
      "{ }",
      "[ ]",
      R"({"a":1})",
      R"({"a":1,})",
      R"([1,])",
      R"([,1])",
      R"({,})",
      R"({"a" 1})",
      R"({"a":})",
      R"({a:1})",
      R"({"a":1 "b":2})",
      R"({"a":1}x)",
      R"([1]])",
      R"({"a":[1,{"b":null}]})",
      R"({"k":1,"k":2})",
      R"({"k":{"x":1},"k":[2]})",
      R"({"":0})",
      R"({"a\u0000b":1})",
      "[",
      "{",
      "]",
      "}",
      "[1",
      R"({"a")",
      R"({"a":)",
      R"({"a":1)",
      "",
      " ",
      "\xef\xbb\xbf{}",
      "\xef\xbb\xbf",
      "\xef\xbb{}",
      " \xef\xbb\xbf{}",
      "\xef\xbb\xbf\xef\xbb\xbf{}",
  };
  for (const char* c : cases) expect_parses_as_nlohmann(c);
  expect_parses_as_nlohmann(std::string("[1,\0 2]", 7));
  expect_parses_as_nlohmann(std::string("\"a\0b\"", 5));
  // nlohmann ends the input at a NUL where a token may start, and ignores the rest.
  for (const auto& text : {std::string("777\0garbage", 11), std::string("{} \0{", 5),
                           std::string("[1]\0\0", 5), std::string("\0", 1), std::string(" \0 1", 4),
                           std::string("1\0", 2) + nested(kMaxJsonDepth + 1),
                           std::string("1\0", 2) + nested(kMaxJsonDepth)}) {
    expect_parses_as_nlohmann(text);
  }
  EXPECT_EQ(parse_json_bounded(std::string("777\0garbage", 11)), 777u);
  expect_parses_as_nlohmann(nested(kMaxJsonDepth));
  expect_parses_as_nlohmann(nested(kMaxJsonDepth, '{', '}'));  // not JSON: {{ has no key
  expect_parses_as_nlohmann(nested(kMaxJsonDepth + 1));
  // A string long enough to cross many 16-byte blocks, with specials at every offset.
  for (std::size_t at = 0; at < 40; ++at) {
    for (const char* special :
         {"\\n", "\\u00e9", "\xc3\xa9", "\x01", "\xff", "\\\"", "\xe2\x82\xac"}) {
      expect_parses_as_nlohmann("[\"" + std::string(at, 'x') + special +
                                std::string(37 - at % 37, 'y') + "\"]");
    }
  }
}

// Random documents, in every layout dump() writes, then mutated byte by byte:
// whatever the bytes, the two readers agree on refusing or on the document.
TEST(ParseJsonBoundedTest, BuildsWhatNlohmannBuildsForRandomAndMutatedText) {
  std::mt19937 rng(20261124);
  const std::string alphabet =
      std::string("{}[]\":,\\ -+.eE0123456789tfnulrsaxu\n\t") + "\xc3\xa9\xff\x01";
  auto number_text = [&] {
    static const char* kNumbers[] = {"0",
                                     "-0",
                                     "7",
                                     "-12",
                                     "3.25",
                                     "1e3",
                                     "-2.5E-7",
                                     "18446744073709551615",
                                     "18446744073709551616",
                                     "-9223372036854775809",
                                     "1e400",
                                     "1e-400",
                                     "0.30000000000000004",
                                     "9007199254740993"};
    return std::string(kNumbers[rng() % std::size(kNumbers)]);
  };
  for (int round = 0; round < 3000; ++round) {
    const nlohmann::json doc = random_value(rng, 0);
    const int indent = round % 3 == 0 ? -1 : static_cast<int>(round % 4);
    std::string text = doc.dump(indent);
    // Numbers nlohmann never writes itself (overflows, -0, long integers).
    if (const auto p = text.find_first_of("0123456789"); p != std::string::npos && round % 2 == 0) {
      auto e = p;
      while (e < text.size() &&
             std::string_view("0123456789.eE+-").find(text[e]) != std::string_view::npos)
        ++e;
      text.replace(p, e - p, number_text());
    }
    expect_parses_as_nlohmann(text);
    for (int m = 0; m < 4; ++m) {
      std::string mutated = text;
      const std::size_t at = mutated.empty() ? 0 : rng() % mutated.size();
      switch (rng() % 3) {
        case 0:
          if (!mutated.empty()) mutated.erase(at, 1 + rng() % 3);
          break;
        case 1:
          mutated.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          if (!mutated.empty()) mutated[at] = alphabet[rng() % alphabet.size()];
          break;
      }
      expect_parses_as_nlohmann(mutated);
    }
    if (HasFailure()) return;  // one document's trace is enough
  }
}

}  // namespace
}  // namespace arbiter::scoring
