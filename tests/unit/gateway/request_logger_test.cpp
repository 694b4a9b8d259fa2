// build_record / derive_fields: what the proxy hands the request log, and the
// JSON-derived fields that the storage thread fills in later.

#include "gateway/request_logger.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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
