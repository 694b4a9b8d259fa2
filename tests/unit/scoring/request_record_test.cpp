#include "scoring/request_record.hpp"

#include <gtest/gtest.h>

#include <limits>

#include "scoring/keys.hpp"

namespace arbiter::scoring {
namespace {

RequestRecord full_record() {
  RequestRecord r;
  r.request_id = "5b1e8f0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
  r.project = "default";
  r.created_at_us = 1714564800123456;  // 2024-05-01T12:00:00.123456Z
  r.response_at_us = 1714564801500000;
  r.latency_ms = 1376.5;
  r.time_to_first_token_ms = 210.25;
  r.method = "POST";
  r.path = "/v1/chat/completions?x=1";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = "gpt-4o";
  r.response_model = "gpt-4o-2024-08-06";
  r.user_id = "alice";
  r.session_id = "s-1";
  r.session_path = "/a/b";
  r.session_name = "checkout";
  r.properties = {{"env", "prod"}, {"team", "search"}};
  r.is_stream = true;
  r.prompt_tokens = 12;
  r.completion_tokens = 30;
  r.total_tokens = 42;
  r.cost_usd = 0.00123;
  r.request_body = R"({"model":"gpt-4o","messages":[]})";
  r.response_body = R"({"choices":[{"message":{"content":"hi"}}]})";
  r.stream_raw = "data: {}\n\n";
  r.request_size = 1000;
  r.response_size = 2000;
  r.request_truncated = true;
  r.response_truncated = false;
  r.request_omitted = false;
  r.response_omitted = true;
  r.error_message = "";
  r.feedback = {{"ground_truth", "yes"}};
  return r;
}

TEST(RequestRecord, MetadataRoundTripKeepsEveryFieldButBodies) {
  const RequestRecord r = full_record();
  const auto decoded = decode_metadata(encode_metadata(r));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  const RequestRecord& d = *decoded;
  EXPECT_EQ(d.request_id, r.request_id);
  EXPECT_EQ(d.project, r.project);
  EXPECT_EQ(d.created_at_us, r.created_at_us);
  EXPECT_EQ(d.response_at_us, r.response_at_us);
  EXPECT_DOUBLE_EQ(d.latency_ms, r.latency_ms);
  EXPECT_EQ(d.time_to_first_token_ms, r.time_to_first_token_ms);
  EXPECT_EQ(d.method, r.method);
  EXPECT_EQ(d.path, r.path);
  EXPECT_EQ(d.upstream, r.upstream);
  EXPECT_EQ(d.status, r.status);
  EXPECT_EQ(d.request_model, r.request_model);
  EXPECT_EQ(d.response_model, r.response_model);
  EXPECT_EQ(d.user_id, r.user_id);
  EXPECT_EQ(d.session_id, r.session_id);
  EXPECT_EQ(d.session_path, r.session_path);
  EXPECT_EQ(d.session_name, r.session_name);
  EXPECT_EQ(d.properties, r.properties);
  EXPECT_EQ(d.is_stream, r.is_stream);
  EXPECT_EQ(d.prompt_tokens, r.prompt_tokens);
  EXPECT_EQ(d.completion_tokens, r.completion_tokens);
  EXPECT_EQ(d.total_tokens, r.total_tokens);
  EXPECT_EQ(d.cost_usd, r.cost_usd);
  EXPECT_EQ(d.request_size, r.request_size);
  EXPECT_EQ(d.response_size, r.response_size);
  EXPECT_EQ(d.request_truncated, r.request_truncated);
  EXPECT_EQ(d.response_truncated, r.response_truncated);
  EXPECT_EQ(d.request_omitted, r.request_omitted);
  EXPECT_EQ(d.response_omitted, r.response_omitted);
  EXPECT_EQ(d.error_message, r.error_message);
  EXPECT_EQ(d.feedback, r.feedback);
  // Bodies live under their own keys.
  EXPECT_TRUE(d.request_body.empty());
  EXPECT_TRUE(d.response_body.empty());
  EXPECT_TRUE(d.stream_raw.empty());
}

TEST(RequestRecord, UnknownStaysUnknownAndNegativeStatusSurvives) {
  RequestRecord r;
  r.request_id = "id-1";
  r.project = "p";
  r.created_at_us = -5;  // before the epoch still round-trips
  r.status = kStatusClientCancelled;
  r.error_message = "client went away";
  const auto d = decode_metadata(encode_metadata(r));
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->prompt_tokens.has_value());
  EXPECT_FALSE(d->completion_tokens.has_value());
  EXPECT_FALSE(d->total_tokens.has_value());
  EXPECT_FALSE(d->cost_usd.has_value());
  EXPECT_FALSE(d->time_to_first_token_ms.has_value());
  EXPECT_EQ(d->status, -3);
  EXPECT_EQ(d->created_at_us, -5);
  EXPECT_EQ(d->error_message, "client went away");
  EXPECT_TRUE(d->feedback.is_object());
}

TEST(RequestRecord, MetadataIsCompact) {
  const RequestRecord r = full_record();
  // Short keys: well under the JSON rendering of the same fields.
  EXPECT_LT(encode_metadata(r).size(), 400u);
}

TEST(RequestRecord, DecodeRejectsGarbage) {
  EXPECT_FALSE(decode_metadata("").ok());
  EXPECT_FALSE(decode_metadata(std::string("\x07garbage")).ok());
  EXPECT_FALSE(decode_metadata(std::string("\x01\xff\xff")).ok());
  const auto e = decode_metadata(std::string("\x02{}"));
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, ErrorCode::kStorage);
  EXPECT_NE(e.error().message.find("corrupt record"), std::string::npos);
}

TEST(RequestRecord, ToJsonUsesHeliconeNames) {
  const RequestRecord r = full_record();
  const auto j = to_json(r, false);
  EXPECT_EQ(j["request_id"], r.request_id);
  EXPECT_EQ(j["request_created_at"], "2024-05-01T12:00:00.123Z");
  EXPECT_EQ(j["response_created_at"], "2024-05-01T12:00:01.500Z");
  EXPECT_EQ(j["latency"], 1376.5);
  EXPECT_EQ(j["delay_ms"], 1376.5);
  EXPECT_EQ(j["time_to_first_token"], 210.25);
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["response_status"], 200);
  EXPECT_EQ(j["model"], "gpt-4o-2024-08-06");  // the response's model wins
  EXPECT_EQ(j["request_model"], "gpt-4o");
  EXPECT_EQ(j["response_model"], "gpt-4o-2024-08-06");
  EXPECT_EQ(j["user_id"], "alice");
  EXPECT_EQ(j["request_user_id"], "alice");
  EXPECT_EQ(j["properties"]["env"], "prod");
  EXPECT_EQ(j["request_properties"]["team"], "search");
  EXPECT_EQ(j["prompt_tokens"], 12);
  EXPECT_EQ(j["completion_tokens"], 30);
  EXPECT_EQ(j["total_tokens"], 42);
  EXPECT_EQ(j["cost"], 0.00123);
  EXPECT_EQ(j["request_path"], "/v1/chat/completions?x=1");
  EXPECT_EQ(j["provider"], "openai");
  EXPECT_EQ(j["is_stream"], true);
  EXPECT_EQ(j["session_id"], "s-1");
  EXPECT_EQ(j["request_truncated"], true);
  EXPECT_EQ(j["response_omitted"], true);
  EXPECT_EQ(j["feedback"]["ground_truth"], "yes");
  EXPECT_TRUE(j["scores"].is_object());
  EXPECT_FALSE(j.contains("request_body"));
  EXPECT_FALSE(j.contains("response_body"));
}

TEST(RequestRecord, ToJsonNullsForUnknowns) {
  RequestRecord r;
  r.request_id = "x";
  r.project = "p";
  r.request_model = "gpt-4o";
  const auto j = to_json(r, true);
  EXPECT_TRUE(j["prompt_tokens"].is_null());
  EXPECT_TRUE(j["cost"].is_null());
  EXPECT_TRUE(j["time_to_first_token"].is_null());
  EXPECT_TRUE(j["response_created_at"].is_null());
  EXPECT_TRUE(j["request_user_id"].is_null());
  EXPECT_EQ(j["model"], "gpt-4o");  // no response model: the requested one
  EXPECT_TRUE(j["request_body"].is_null());
}

TEST(RequestRecord, ToJsonBodiesParsedWhenJsonElseText) {
  RequestRecord r = full_record();
  r.response_body = "not json \xff\xfe bytes";
  const auto j = to_json(r, true);
  EXPECT_EQ(j["request_body"]["model"], "gpt-4o");
  ASSERT_TRUE(j["response_body"].is_string());
  EXPECT_EQ(j["response_body"], "not json \xEF\xBF\xBD\xEF\xBF\xBD bytes");
  EXPECT_EQ(j["stream_raw"], "data: {}\n\n");
  EXPECT_NO_THROW((void)j.dump());
}

TEST(RequestRecord, ToJsonNeverProducesInvalidUtf8) {
  RequestRecord r;
  r.request_id = "x";
  r.project = "p";
  r.user_id = "bad\xc3";
  r.properties = {{"k", "\xed\xa0\x80"}};  // a UTF-16 surrogate encoded as UTF-8
  const auto j = to_json(r, false);
  EXPECT_NO_THROW((void)j.dump());
  EXPECT_EQ(j["user_id"], "bad\xEF\xBF\xBD");
}

TEST(RequestRecord, Utf8SanitizerKeepsValidText) {
  const std::string ok = "plain, é, 中文, 😀";
  EXPECT_EQ(sanitize_utf8(ok), ok);
  EXPECT_EQ(sanitize_utf8("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  // Above U+10FFFF: every byte is replaced.
  EXPECT_EQ(sanitize_utf8("\xf4\x90\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(RequestRecord, Iso8601FormatAndParse) {
  EXPECT_EQ(format_iso8601_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_iso8601_ms(-1000), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_iso8601_ms(1709164800000000), "2024-02-29T00:00:00.000Z");

  EXPECT_EQ(parse_iso8601("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:00:00.123Z"), 1714564800123000);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:00:00.123456789Z"), 1714564800123456);
  EXPECT_EQ(parse_iso8601("2024-05-01 12:00:00"), 1714564800000000);
  EXPECT_EQ(parse_iso8601("2024-05-01T14:00:00+02:00"), 1714564800000000);
  EXPECT_EQ(parse_iso8601("2024-05-01T07:30:00-0430"), 1714564800000000);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:00Z"), 1714564800000000);
  EXPECT_EQ(parse_iso8601("2024-05-01"), 1714521600000000);
  EXPECT_EQ(parse_iso8601("2024-02-29T00:00:00Z"), 1709164800000000);

  for (const char* bad : {"", "yesterday", "2024-13-01", "2023-02-29", "2024-05-01T25:00:00Z",
                          "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00Q", "2024-5-1",
                          "2024-05-01T12:00:00Z extra", "1714564800"}) {
    EXPECT_FALSE(parse_iso8601(bad).has_value()) << bad;
  }
  // Round trip at ms precision.
  const std::int64_t t = 1714564800123000;
  EXPECT_EQ(parse_iso8601(format_iso8601_ms(t)), t);
}

TEST(RequestRecord, ValidRequestId) {
  EXPECT_TRUE(valid_request_id("5b1e8f0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
  EXPECT_FALSE(valid_request_id(""));
  EXPECT_FALSE(valid_request_id(std::string("a\0b", 3)));
  EXPECT_FALSE(valid_request_id("has space"));
  EXPECT_FALSE(valid_request_id(std::string(129, 'a')));
}

TEST(Keys, PartsAreEscapedAndPrefixFree) {
  EXPECT_EQ(keys::part("ab"), std::string("ab\0", 3));
  EXPECT_EQ(keys::part(std::string("a\0b", 3)), std::string("a\x01\x01"
                                                            "b\0",
                                                            5));
  EXPECT_EQ(keys::part("a\x01"), std::string("a\x01\x02\0", 4));
  // "a" is not a prefix match for "ab".
  const std::string pa = keys::property_prefix("p", "env", "a");
  const std::string pab = keys::entry(keys::property_prefix("p", "env", "ab"), 5, "id");
  EXPECT_FALSE(pab.starts_with(pa));
}

// Runs of ordinary bytes between escapes, escapes at either end and next to
// each other: every string over {0x00, 0x01, 0x02, 'a'} up to 6 bytes long is
// escaped byte by byte as the layout says, and reads back.
TEST(Keys, PartsEscapeEveryByteOfAnyMix) {
  const char alphabet[] = {'\0', '\x01', '\x02', 'a'};
  for (int length = 0; length <= 6; ++length) {
    int combos = 1;
    for (int i = 0; i < length; ++i) combos *= 4;
    for (int n = 0; n < combos; ++n) {
      std::string s;
      for (int i = 0, v = n; i < length; ++i, v /= 4) s.push_back(alphabet[v % 4]);
      std::string expected;
      for (char c : s) {
        expected += c == '\0' ? std::string("\x01\x01") : c == '\x01' ? std::string("\x01\x02") : std::string(1, c);
      }
      expected.push_back('\0');
      std::string out = "k";
      keys::append_part(out, s);
      ASSERT_EQ(out, "k" + expected);
      std::string_view in(out);
      in.remove_prefix(1);
      std::string back;
      ASSERT_TRUE(keys::read_part(in, back));
      EXPECT_EQ(back, s);
      EXPECT_TRUE(in.empty());
    }
  }
}

TEST(Keys, TimestampsSortAsBytes) {
  const std::int64_t times[] = {
      std::numeric_limits<std::int64_t>::min(), -1000, -1, 0, 1, 1000, 1714564800123456,
      std::numeric_limits<std::int64_t>::max()};
  std::string prev;
  for (auto t : times) {
    std::string k;
    keys::append_ts(k, t);
    ASSERT_EQ(k.size(), 8u);
    EXPECT_EQ(keys::decode_ts(k), t);
    if (!prev.empty()) {
      EXPECT_LT(prev, k) << t;
    }
    prev = k;
  }
  const std::string e = keys::entry(keys::time_prefix("proj"), 42, "the-id");
  const auto parsed = keys::parse_entry(e, keys::time_prefix("proj").size());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->ts_us, 42);
  EXPECT_EQ(parsed->id, "the-id");
}

TEST(Keys, PrefixEnd) {
  EXPECT_EQ(keys::prefix_end(std::string("p\0", 2)), "p\x01");
  EXPECT_EQ(keys::prefix_end("a\xff"), "b");
  EXPECT_EQ(keys::prefix_end("\xff\xff"), "");
}

}  // namespace
}  // namespace arbiter::scoring
