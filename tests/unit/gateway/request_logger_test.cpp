// build_record / derive_fields: what the proxy hands the request log, and the
// JSON-derived fields that the storage thread fills in later.

#include "gateway/request_logger.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "gateway/sse_tap.hpp"

namespace arbiter::gateway {
namespace {

std::shared_ptr<const Config> priced_config() {
  return load_config_from_string(R"(
upstreams:
  - name: openai
    base_url: http://127.0.0.1:9
projects:
  - name: p
    api_keys: [ k ]
pricing:
  - model: gpt-4o-mini*
    input_per_million: 1.0
    output_per_million: 2.0
)",
                                 "test.yaml");
}

RequestContext context() {
  RequestContext ctx;
  ctx.request_id = "00000000-0000-4000-8000-000000000001";
  ctx.project = "p";
  ctx.upstream = "openai";
  ctx.method = "POST";
  ctx.target = "/v1/chat/completions";
  return ctx;
}

ExchangeResult chat_result() {
  ExchangeResult r;
  r.status = 200;
  r.request_body.bytes = R"({"model":"gpt-4o-mini","user":"u-body","messages":[]})";
  r.request_body.size = r.request_body.bytes.size();
  r.response_body.bytes =
      R"({"model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}})";
  r.response_body.size = r.response_body.bytes.size();
  return r;
}

void expect_derived(const scoring::RequestRecord& rec) {
  EXPECT_FALSE(rec.derive_pending);
  EXPECT_EQ(rec.request_model, "gpt-4o-mini");
  EXPECT_EQ(rec.response_model, "gpt-4o-mini-2024-07-18");
  EXPECT_EQ(rec.user_id, "u-body");
  EXPECT_EQ(rec.prompt_tokens, 1000);
  EXPECT_EQ(rec.completion_tokens, 500);
  ASSERT_TRUE(rec.cost_usd);
  EXPECT_DOUBLE_EQ(*rec.cost_usd, (1000 * 1.0 + 500 * 2.0) / 1e6);
}

TEST(BuildRecord, DerivesModelTokensAndCostAtOnceByDefault) {
  const auto config = priced_config();
  expect_derived(build_record(context(), chat_result(), *config));
}

// Only an id the gateway made may skip the store's look-up of an earlier
// version: a client-chosen id can repeat, and its earlier record must be
// replaced with its index entries.
// The usage counts are scanned from the member's text, not parsed into a
// document; what they read must be what a parse would have typed as an
// integer, for every shape of count a provider (or a broken one) sends.
TEST(BuildRecord, UsageCountsAreReadAsAParseWouldTypeThem) {
  const auto config = priced_config();
  struct Case {
    std::string usage;
    std::optional<std::int64_t> prompt, completion, total;
  };
  const Case cases[] = {
      {R"({"prompt_tokens":7,"completion_tokens":3,"total_tokens":10})", 7, 3, 10},
      // OpenAI's nested details and whitespace around members.
      {R"({ "prompt_tokens" : 12 , "prompt_tokens_details" : {"cached_tokens":4,"audio_tokens":0},
           "completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 2} })",
       12, 5, 17},
      // The Responses API's and Anthropic's names; the total is summed.
      {R"({"input_tokens":20,"output_tokens":8})", 20, 8, 28},
      {R"({"prompt_tokens":1,"input_tokens":2,"completion_tokens":3,"output_tokens":4})", 1, 3, 4},
      // Not integers: fractions, exponents, strings, booleans, null, objects.
      {R"({"prompt_tokens":12.0,"completion_tokens":1e3,"total_tokens":"9"})", std::nullopt, std::nullopt,
       std::nullopt},
      {R"({"prompt_tokens":true,"completion_tokens":null,"total_tokens":{"n":1}})", std::nullopt, std::nullopt,
       std::nullopt},
      // Negative and zero counts are integers; "-0" is 0.
      {R"({"prompt_tokens":-3,"completion_tokens":0,"total_tokens":-0})", -3, 0, 0},
      // 64-bit edges: INT64_MIN; past INT64_MAX wraps as get<int64_t>() does;
      // past 64 bits a parse makes a double. A sum that would overflow is
      // left out.
      {R"({"prompt_tokens":-9223372036854775808,"completion_tokens":18446744073709551615,)"
       R"("total_tokens":18446744073709551616})",
       std::numeric_limits<std::int64_t>::min(), -1, std::nullopt},
      {R"({"prompt_tokens":9223372036854775807,"completion_tokens":1})", std::numeric_limits<std::int64_t>::max(), 1,
       std::nullopt},
      {R"({"prompt_tokens":-9223372036854775809})", std::nullopt, std::nullopt, std::nullopt},
      // The last of a repeated key, as a parse keeps.
      {R"({"prompt_tokens":1,"prompt_tokens":2,"completion_tokens":3})", 2, 3, 5},
      // Not an object, or a broken one: nothing.
      {R"("lots")", std::nullopt, std::nullopt, std::nullopt},
      {R"([1,2,3])", std::nullopt, std::nullopt, std::nullopt},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.usage);
    auto r = chat_result();
    r.response_body.bytes = R"({"model":"gpt-4o-mini","usage":)" + c.usage + "}";
    r.response_body.size = r.response_body.bytes.size();
    const auto rec = build_record(context(), std::move(r), *config);
    EXPECT_EQ(rec.prompt_tokens, c.prompt);
    EXPECT_EQ(rec.completion_tokens, c.completion);
    EXPECT_EQ(rec.total_tokens, c.total);
    // And the same as reading the member from a parsed document.
    const auto usage = nlohmann::json::parse(c.usage, nullptr, false);
    if (usage.is_object() && !usage.contains("input_tokens") && usage.count("prompt_tokens") == 1) {
      const auto it = usage.find("prompt_tokens");
      EXPECT_EQ(rec.prompt_tokens, it != usage.end() && it->is_number_integer()
                                       ? std::optional<std::int64_t>(it->get<std::int64_t>())
                                       : std::nullopt);
    }
  }
}

TEST(BuildRecord, OnlyGatewayMadeIdsAreMarkedNew) {
  const auto config = priced_config();
  auto ctx = context();
  EXPECT_TRUE(build_record(ctx, chat_result(), *config).new_id);
  ctx.request_id_from_client = true;
  EXPECT_FALSE(build_record(ctx, chat_result(), *config).new_id);
}

TEST(BuildRecord, DeferredDerivationParsesNothingUntilTheStorageThreadAsks) {
  const auto config = priced_config();
  auto rec = build_record(context(), chat_result(), *config, /*defer_derivation=*/true);
  EXPECT_TRUE(rec.derive_pending);
  EXPECT_TRUE(rec.request_model.empty());
  EXPECT_TRUE(rec.user_id.empty());
  EXPECT_FALSE(rec.prompt_tokens);
  EXPECT_FALSE(rec.cost_usd);
  derive_fields(rec, *config);
  expect_derived(rec);
}

// A stream as the proxy leaves it: the raw SSE copy is whole, the completion
// is not rebuilt yet (stream_reassembly_deferred).
ExchangeResult deferred_stream_result() {
  ExchangeResult r = chat_result();
  r.is_stream = true;
  r.response_body.bytes =
      "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\","
      "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n"
      "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\","
      "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n"
      "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\","
      "\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":500,\"total_tokens\":1500}}\n\n"
      "data: [DONE]\n\n";
  r.response_body.size = r.response_body.bytes.size();
  r.stream_reassembly_deferred = true;
  return r;
}

TEST(BuildRecord, ADeferredStreamIsReassembledWithTheDerivationOnTheStorageThread) {
  const auto config = priced_config();
  const ExchangeResult result = deferred_stream_result();
  const std::string raw = result.response_body.bytes;
  auto rec = build_record(context(), ExchangeResult(result), *config, /*defer_derivation=*/true);
  EXPECT_TRUE(rec.reassemble_pending);
  EXPECT_TRUE(rec.response_body.empty());
  EXPECT_EQ(rec.stream_raw, raw);
  derive_fields(rec, *config);
  EXPECT_FALSE(rec.reassemble_pending);
  EXPECT_EQ(rec.response_body, reassemble_stream(raw));
  const auto completion = nlohmann::json::parse(rec.response_body);
  EXPECT_EQ(completion["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(completion["choices"][0]["finish_reason"], "stop");
  expect_derived(rec);

  // Derived at once (no deferral): reassembled at once too.
  auto now = build_record(context(), ExchangeResult(result), *config);
  EXPECT_FALSE(now.reassemble_pending);
  EXPECT_EQ(now.response_body, reassemble_stream(raw));
  expect_derived(now);

  // Not deferred by the proxy (the copy was cut): its completion is used as is.
  ExchangeResult cut = result;
  cut.stream_reassembly_deferred = false;
  cut.stream_reassembled = R"({"model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":1000,"completion_tokens":500}})";
  auto kept = build_record(context(), std::move(cut), *config, true);
  EXPECT_FALSE(kept.reassemble_pending);
  derive_fields(kept, *config);
  EXPECT_EQ(nlohmann::json::parse(kept.response_body)["usage"]["completion_tokens"], 500);
}

TEST(BuildRecord, OmittedBodiesAreDerivedBeforeTheyAreDropped) {
  const auto config = priced_config();
  auto ctx = context();
  ctx.omit_request = true;
  ctx.omit_response = true;
  auto rec = build_record(ctx, chat_result(), *config, /*defer_derivation=*/true);
  expect_derived(rec);
  EXPECT_TRUE(rec.request_body.empty());
  EXPECT_TRUE(rec.response_body.empty());
  EXPECT_TRUE(rec.request_omitted);
  EXPECT_EQ(rec.request_size, static_cast<std::int64_t>(chat_result().request_body.size));
}

TEST(BuildRecord, TruncatedBodiesAreNotParsed) {
  const auto config = priced_config();
  auto result = chat_result();
  result.request_body.truncated = true;
  result.response_body.truncated = true;
  auto rec = build_record(context(), std::move(result), *config, true);
  derive_fields(rec, *config);
  EXPECT_TRUE(rec.request_model.empty());
  EXPECT_TRUE(rec.response_model.empty());
  EXPECT_FALSE(rec.prompt_tokens);
  EXPECT_FALSE(rec.cost_usd);
}

}  // namespace
}  // namespace arbiter::gateway
