#include "gateway/log_ingest.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http/fields.hpp>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gateway/request_context.hpp"

// The bodies below are what @helicone/helpers 1.8.3 (HeliconeManualLogger)
// sent to a capturing HTTP server, with only the timestamps changed.

namespace arbiter::gateway {
namespace {

namespace http = boost::beast::http;
using nlohmann::json;
using scoring::ErrorCode;
using scoring::RequestRecord;

constexpr std::int64_t kNow = 1'800'000'000'123'456;  // unix µs
constexpr const char* kRequestId = "919108f7-52d1-4320-9bac-f847db4148a8";
constexpr const char* kProjectKey = "arb-project-key-0123456789";

http::fields headers(const std::vector<std::pair<std::string, std::string>>& items) {
  http::fields f;
  for (const auto& [name, value] : items) f.insert(name, value);
  return f;
}

// The headers the package always sends, plus the call's additionalHeaders.
http::fields logger_headers(const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  auto f = headers({{"Authorization", std::string("Bearer ") + kProjectKey},
                    {"Content-Type", "application/json"},
                    {"User-Agent", "node"}});
  for (const auto& [name, value] : extra) f.insert(name, value);
  return f;
}

json chat_request() {
  return json::parse(
      R"({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})");
}

json chat_completion() {
  return json::parse(R"({
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})");
}

// logger.logRequest(request, op) where op calls resultRecorder.appendResults(completion).
json non_stream_body() {
  return json{
      {"providerRequest",
       {{"url", "custom-model-nopath"}, {"json", chat_request()}, {"meta", json::object()}}},
      {"providerResponse",
       {{"headers", json::object()}, {"status", 200}, {"json", chat_completion()}}},
      {"timing",
       {{"startTime", {{"seconds", 1795329582}, {"milliseconds", 336}}},
        {"endTime", {{"seconds", 1795329583}, {"milliseconds", 81}}}}},
  };
}

// The stream text HeliconeLogBuilder.toReadableStream / openai's
// Stream.toReadableStream produce: one JSON chunk per line.
const std::string kStreamText =
    R"({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}],"usage":null})"
    "\n"
    R"({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":null})"
    "\n"
    R"({"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}})"
    "\n";

json stream_body(const std::string& text = kStreamText) {
  json request = chat_request();
  request["stream"] = true;
  request["stream_options"] = {{"include_usage", true}};
  return json{
      {"providerRequest",
       {{"url", "custom-model-nopath"}, {"json", request}, {"meta", json::object()}}},
      {"providerResponse",
       {{"headers", json::object()},
        {"status", 200},
        {"json", json::object()},
        {"textBody", text}}},
      {"timing",
       {{"startTime", {{"seconds", 1795329582}, {"milliseconds", 495}}},
        {"endTime", {{"seconds", 1795329582}, {"milliseconds", 500}}},
        {"timeToFirstToken", 1}}},
  };
}

RequestRecord parse_ok(const json& body, const http::fields& h = logger_headers(),
                       std::string_view path_kind = "custom") {
  auto result = parse_manual_log(body, h, "default", path_kind, kNow);
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
  if (!result.ok()) return {};
  return std::move(result).value();
}

scoring::Error parse_error(const json& body, const http::fields& h = logger_headers(),
                           std::string_view project = "default",
                           std::string_view path_kind = "custom") {
  auto result = parse_manual_log(body, h, project, path_kind, kNow);
  EXPECT_FALSE(result.ok()) << "accepted: " << body.dump();
  if (result.ok()) return {};
  return std::move(result).error();
}

// Every string a record stores, for "this secret is nowhere" checks.
std::string everything(const RequestRecord& r) {
  std::string all = r.request_id + '\n' + r.project + '\n' + r.method + '\n' + r.path + '\n' +
                    r.upstream + '\n' + r.request_model + '\n' + r.response_model + '\n' +
                    r.user_id + '\n' + r.session_id + '\n' + r.session_path + '\n' +
                    r.session_name + '\n' + r.request_body + '\n' + r.response_body + '\n' +
                    r.stream_raw + '\n' + r.error_message + '\n' + r.feedback.dump();
  for (const auto& [name, value] : r.properties) all += '\n' + name + '=' + value;
  return all;
}

// --- what the package sends for a non-streaming chat call ---------------------

TEST(ManualLogTest, NonStreamChatCallBecomesARecord) {
  const auto h = logger_headers({{"Helicone-Property-Env", "test"},
                                 {"Helicone-User-Id", "u-1"},
                                 {"Helicone-Request-Id", kRequestId}});
  const RequestRecord r = parse_ok(non_stream_body(), h);

  EXPECT_EQ(r.request_id, kRequestId);
  EXPECT_EQ(r.project, "default");
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/chat/completions");
  EXPECT_EQ(r.upstream, "manual");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.request_model, "gpt-4o-mini");
  EXPECT_EQ(r.response_model, "gpt-4o-mini-2024-07-18");
  EXPECT_EQ(r.model(), "gpt-4o-mini-2024-07-18");
  EXPECT_EQ(r.user_id, "u-1");
  EXPECT_EQ(r.properties, (std::map<std::string, std::string>{{"env", "test"}}));
  EXPECT_FALSE(r.is_stream);
  EXPECT_EQ(r.prompt_tokens, 9);
  EXPECT_EQ(r.completion_tokens, 3);
  EXPECT_EQ(r.total_tokens, 12);
  EXPECT_FALSE(r.cost_usd.has_value());

  EXPECT_EQ(r.created_at_us, 1'795'329'582'336'000);
  EXPECT_EQ(r.response_at_us, 1'795'329'583'081'000);
  EXPECT_DOUBLE_EQ(r.latency_ms, 745.0);
  EXPECT_FALSE(r.time_to_first_token_ms.has_value());

  EXPECT_EQ(json::parse(r.request_body), chat_request());
  EXPECT_EQ(json::parse(r.response_body), chat_completion());
  EXPECT_EQ(r.request_size, static_cast<std::int64_t>(r.request_body.size()));
  EXPECT_EQ(r.response_size, static_cast<std::int64_t>(r.response_body.size()));
  EXPECT_FALSE(r.request_truncated || r.response_truncated || r.request_omitted ||
               r.response_omitted);
  EXPECT_TRUE(r.stream_raw.empty());
  EXPECT_TRUE(r.error_message.empty());
}

TEST(ManualLogTest, OaiRouteWithProviderFieldIsAccepted) {
  // logRequest(..., provider = "openai") posts to /oai/v1/log with "provider".
  json body = non_stream_body();
  body["provider"] = "openai";
  const RequestRecord r = parse_ok(body, logger_headers(), "oai");
  EXPECT_EQ(r.path, "/v1/chat/completions");
  EXPECT_EQ(r.model(), "gpt-4o-mini-2024-07-18");
}

// --- streams --------------------------------------------------------------------------

TEST(ManualLogTest, StreamTextBodyIsTheResponseBody) {
  const RequestRecord r =
      parse_ok(stream_body(), logger_headers({{"Helicone-Property-Kind", "stream"}}));
  EXPECT_TRUE(r.is_stream);
  EXPECT_EQ(r.response_body, kStreamText);
  EXPECT_EQ(r.response_size, static_cast<std::int64_t>(kStreamText.size()));
  EXPECT_EQ(r.response_model, "gpt-4o-mini-2024-07-18");
  EXPECT_EQ(r.prompt_tokens, 9);
  EXPECT_EQ(r.completion_tokens, 2);
  EXPECT_EQ(r.total_tokens, 11);
  ASSERT_TRUE(r.time_to_first_token_ms.has_value());
  EXPECT_DOUBLE_EQ(*r.time_to_first_token_ms, 1.0);
  EXPECT_DOUBLE_EQ(r.latency_ms, 5.0);
  EXPECT_EQ(r.properties.at("kind"), "stream");
}

TEST(ManualLogTest, StreamWithoutUsageLeavesTokensUnknown) {
  const std::string text =
      R"({"object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"delta":{"content":"a"}}],"usage":null})"
      "\n";
  const RequestRecord r = parse_ok(stream_body(text));
  EXPECT_EQ(r.response_model, "gpt-4o-mini");
  EXPECT_FALSE(r.prompt_tokens.has_value());
  EXPECT_FALSE(r.completion_tokens.has_value());
  EXPECT_FALSE(r.total_tokens.has_value());
}

TEST(ManualLogTest, SseDataLinesAreUnderstood) {
  const std::string text =
      "data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
      "data: "
      "{\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1,"
      "\"total_tokens\":5}}\n\n"
      "data: [DONE]\n\n";
  const RequestRecord r = parse_ok(stream_body(text));
  EXPECT_EQ(r.response_body, text);
  EXPECT_EQ(r.response_model, "gpt-4o");
  EXPECT_EQ(r.prompt_tokens, 4);
  EXPECT_EQ(r.completion_tokens, 1);
  EXPECT_EQ(r.total_tokens, 5);
}

TEST(ManualLogTest, AnthropicStreamEventsGiveModelAndUsage) {
  const std::string text =
      "event: message_start\n"
      "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-3-5-sonnet-20241022\","
      "\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
      "event: content_block_delta\n"
      "data: "
      "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
      "event: message_delta\n"
      "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
  const RequestRecord r = parse_ok(stream_body(text), logger_headers(), "anthropic");
  EXPECT_EQ(r.path, "/v1/messages");
  EXPECT_EQ(r.response_model, "claude-3-5-sonnet-20241022");
  EXPECT_EQ(r.prompt_tokens, 25);
  EXPECT_EQ(r.completion_tokens, 15);
  EXPECT_EQ(r.total_tokens, 40);
}

TEST(ManualLogTest, StreamedDataArrayInJsonIsUnderstood) {
  json body = non_stream_body();
  body["providerResponse"]["json"] = {
      {"streamed_data",
       {{{"model", "gpt-4o"}, {"usage", nullptr}},
        {{"model", "gpt-4o"},
         {"usage", {{"prompt_tokens", 2}, {"completion_tokens", 3}, {"total_tokens", 5}}}}}}};
  const RequestRecord r = parse_ok(body);
  EXPECT_EQ(r.response_model, "gpt-4o");
  EXPECT_EQ(r.total_tokens, 5);
}

TEST(ManualLogTest, SingleRequestTextBodyWithJsonDocument) {
  // logSingleRequest(request, JSON.stringify(body), {latencyMs: 12.5}): a
  // string body and a fractional end time.
  json body = non_stream_body();
  const std::string text = R"({"model":"m","usage":{"input_tokens":1,"output_tokens":2}})";
  body["providerResponse"]["json"] = json::object();
  body["providerResponse"]["textBody"] = text;
  body["timing"] = {{"startTime", {{"seconds", 1795329582}, {"milliseconds", 514}}},
                    {"endTime", {{"seconds", 1795329582}, {"milliseconds", 526.5}}}};
  const RequestRecord r = parse_ok(body);
  EXPECT_EQ(r.response_body, text);
  EXPECT_EQ(r.response_model, "m");
  EXPECT_EQ(r.prompt_tokens, 1);
  EXPECT_EQ(r.completion_tokens, 2);
  EXPECT_EQ(r.total_tokens, 3);
  EXPECT_EQ(r.response_at_us, 1'795'329'582'526'500);
  EXPECT_DOUBLE_EQ(r.latency_ms, 12.5);
}

TEST(ManualLogTest, DeeplyNestedTextBodyIsStoredNotTrusted) {
  // textBody is a string, so the router's depth limit never saw inside it.
  for (const std::string& text :
       {std::string(200000, '[') + std::string(200000, ']'), std::string(200000, '['),
        "{\"model\":\"m\",\"x\":" + std::string(100000, '[') + "\n" + std::string(100000, '{')}) {
    const RequestRecord r = parse_ok(stream_body(text));
    EXPECT_EQ(r.response_body, text.substr(0, kManualLogBodyCap));
    EXPECT_FALSE(r.total_tokens.has_value());
  }
}

TEST(ManualLogTest, ErrorAndCancelledStatusesAreKept) {
  // HeliconeLogBuilder.setError → status 500 and the stack as textBody.
  json body = non_stream_body();
  body["providerResponse"] = {{"headers", json::object()},
                              {"status", 500},
                              {"json", json::object()},
                              {"textBody", "Error: boom\n    at file:///x.mjs:32:52\n\n"}};
  RequestRecord r = parse_ok(body);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.response_body, "Error: boom\n    at file:///x.mjs:32:52\n\n");
  EXPECT_FALSE(r.prompt_tokens.has_value());

  body["providerResponse"]["status"] = -3;  // a cancelled stream
  r = parse_ok(body);
  EXPECT_EQ(r.status, scoring::kStatusClientCancelled);
}

TEST(ManualLogTest, UsageVariantsAndUnknowns) {
  json body = non_stream_body();
  body["providerResponse"]["json"]["usage"] = {{"input_tokens", 7}, {"output_tokens", 8}};
  RequestRecord r = parse_ok(body);
  EXPECT_EQ(r.prompt_tokens, 7);
  EXPECT_EQ(r.completion_tokens, 8);
  EXPECT_EQ(r.total_tokens, 15);  // the sum of two known counts, not a guess

  body["providerResponse"]["json"]["usage"] = {{"prompt_tokens", -1}, {"completion_tokens", "3"}};
  r = parse_ok(body);
  EXPECT_FALSE(r.prompt_tokens.has_value());
  EXPECT_FALSE(r.completion_tokens.has_value());
  EXPECT_FALSE(r.total_tokens.has_value());

  body["providerResponse"]["json"].erase("usage");
  r = parse_ok(body);
  EXPECT_FALSE(r.total_tokens.has_value());

  body["providerResponse"]["json"]["usage"] = {{"prompt_tokens", 5}};
  r = parse_ok(body);
  EXPECT_EQ(r.prompt_tokens, 5);
  EXPECT_FALSE(r.completion_tokens.has_value());
  EXPECT_FALSE(r.total_tokens.has_value());
}

TEST(ManualLogTest, CostIsTakenWhenGiven) {
  json body = non_stream_body();
  body["providerResponse"]["cost"] = 0.00125;
  const RequestRecord r = parse_ok(body);
  ASSERT_TRUE(r.cost_usd.has_value());
  EXPECT_DOUBLE_EQ(*r.cost_usd, 0.00125);
}

// --- Helicone headers -------------------------------------------------------------------

TEST(ManualLogTest, PropertiesUserAndSessionFromHeaders) {
  const auto h = logger_headers({{"Helicone-Property-Environment", "production"},
                                 {"helicone-property-Feature", "search"},
                                 {"Helicone-User-Id", "alice"},
                                 {"Helicone-Session-Id", "s-1"},
                                 {"Helicone-Session-Path", "/a/b"},
                                 {"Helicone-Session-Name", "Trip"}});
  const RequestRecord r = parse_ok(non_stream_body(), h);
  EXPECT_EQ(r.properties, (std::map<std::string, std::string>{{"environment", "production"},
                                                              {"feature", "search"}}));
  EXPECT_EQ(r.user_id, "alice");
  EXPECT_EQ(r.session_id, "s-1");
  EXPECT_EQ(r.session_path, "/a/b");
  EXPECT_EQ(r.session_name, "Trip");
}

TEST(ManualLogTest, MetaHeliconeHeadersAreUsedAndCallHeadersWin) {
  json body = non_stream_body();
  body["providerRequest"]["meta"] = {{"Helicone-Property-Env", "meta"},
                                     {"Helicone-Property-Only-Meta", "m"},
                                     {"Helicone-User-Id", "meta-user"},
                                     {"Helicone-Session-Id", "meta-session"},
                                     {"Not-Helicone", "ignored"}};
  const RequestRecord r = parse_ok(
      body, logger_headers({{"Helicone-Property-Env", "call"}, {"Helicone-User-Id", "call-user"}}));
  EXPECT_EQ(r.properties,
            (std::map<std::string, std::string>{{"env", "call"}, {"only-meta", "m"}}));
  EXPECT_EQ(r.user_id, "call-user");
  EXPECT_EQ(r.session_id, "meta-session");
}

TEST(ManualLogTest, UserFallsBackToTheRequestBody) {
  json body = non_stream_body();
  body["providerRequest"]["json"]["user"] = "body-user";
  EXPECT_EQ(parse_ok(body).user_id, "body-user");
  EXPECT_EQ(parse_ok(body, logger_headers({{"Helicone-User-Id", "header-user"}})).user_id,
            "header-user");

  body["providerRequest"]["json"]["user"] = 42;  // not a string: ignored
  EXPECT_EQ(parse_ok(body).user_id, "");

  body["providerRequest"]["json"].erase("user");
  body["providerRequest"]["json"]["metadata"] = {{"user_id", "anthropic-user"}};
  EXPECT_EQ(parse_ok(body).user_id, "anthropic-user");
}

TEST(ManualLogTest, RequestIdFromHeaderIsLowerCased) {
  const RequestRecord r =
      parse_ok(non_stream_body(),
               logger_headers({{"Helicone-Request-Id", "919108F7-52D1-4320-9BAC-F847DB4148A8"}}));
  EXPECT_EQ(r.request_id, kRequestId);
}

TEST(ManualLogTest, RequestIdFallsBackToMetaThenToANewOne) {
  json body = non_stream_body();
  body["providerRequest"]["meta"] = {
      {"Helicone-Request-Id", "2ed6657d-e927-568b-95e1-2665a8aea6a2"}};
  // An invalid header id is ignored in favour of meta's.
  EXPECT_EQ(parse_ok(body, logger_headers({{"Helicone-Request-Id", "not-a-uuid"}})).request_id,
            "2ed6657d-e927-568b-95e1-2665a8aea6a2");
  // The header wins over meta.
  EXPECT_EQ(parse_ok(body, logger_headers({{"Helicone-Request-Id", kRequestId}})).request_id,
            kRequestId);

  body["providerRequest"]["meta"] = {{"Helicone-Request-Id", "also-not-a-uuid"}};
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    const RequestRecord r = parse_ok(body, logger_headers({{"Helicone-Request-Id", "x"}}));
    EXPECT_TRUE(is_valid_request_id(r.request_id)) << r.request_id;
    ids.insert(r.request_id);
  }
  EXPECT_EQ(ids.size(), 3u);
}

// --- omit flags, truncation -----------------------------------------------------------------

TEST(ManualLogTest, OmitRequestKeepsSizeAndDropsBody) {
  const RequestRecord r =
      parse_ok(stream_body(), logger_headers({{"Helicone-Omit-Request", "true"}}));
  EXPECT_TRUE(r.request_omitted);
  EXPECT_TRUE(r.request_body.empty());
  EXPECT_GT(r.request_size, 0);
  EXPECT_FALSE(r.response_omitted);
  EXPECT_EQ(r.response_body, kStreamText);
  EXPECT_EQ(r.request_model, "gpt-4o-mini");  // metadata is still taken from the body
  EXPECT_TRUE(r.is_stream);
}

TEST(ManualLogTest, OmitResponseKeepsModelAndTokens) {
  const RequestRecord r =
      parse_ok(non_stream_body(), logger_headers({{"Helicone-Omit-Response", "true"}}));
  EXPECT_TRUE(r.response_omitted);
  EXPECT_TRUE(r.response_body.empty());
  EXPECT_EQ(r.response_size, static_cast<std::int64_t>(chat_completion().dump().size()));
  EXPECT_EQ(r.response_model, "gpt-4o-mini-2024-07-18");
  EXPECT_EQ(r.total_tokens, 12);
  EXPECT_FALSE(r.request_omitted);
  EXPECT_FALSE(r.request_body.empty());
}

TEST(ManualLogTest, OmitViaMetaCounts) {
  json body = non_stream_body();
  body["providerRequest"]["meta"] = {{"Helicone-Omit-Response", "true"}};
  const RequestRecord r = parse_ok(body, logger_headers({{"Helicone-Omit-Response", "false"}}));
  EXPECT_TRUE(r.response_omitted);
}

TEST(ManualLogTest, OversizedBodiesAreTruncatedWithSizesKept) {
  const std::string big(kManualLogBodyCap + 1000, 'x');
  json body = stream_body(big);
  body["providerRequest"]["json"]["messages"][0]["content"] = big;
  const RequestRecord r = parse_ok(body);
  EXPECT_TRUE(r.request_truncated);
  EXPECT_TRUE(r.response_truncated);
  EXPECT_EQ(r.request_body.size(), kManualLogBodyCap);
  EXPECT_EQ(r.response_body.size(), kManualLogBodyCap);
  EXPECT_GT(r.request_size, static_cast<std::int64_t>(kManualLogBodyCap));
  EXPECT_EQ(r.response_size, static_cast<std::int64_t>(big.size()));
  EXPECT_EQ(r.request_model, "gpt-4o-mini");
}

TEST(ManualLogTest, TruncationDoesNotSplitUtf8) {
  // "é" is two bytes; put one across the cap.
  std::string text(kManualLogBodyCap - 1, 'a');
  text += "\xC3\xA9";
  text += std::string(100, 'b');
  const RequestRecord r = parse_ok(stream_body(text));
  EXPECT_TRUE(r.response_truncated);
  EXPECT_EQ(r.response_body.size(), kManualLogBodyCap - 1);
  EXPECT_EQ(r.response_size, static_cast<std::int64_t>(text.size()));
}

TEST(ManualLogTest, BodyExactlyAtTheCapIsNotTruncated) {
  const std::string text(kManualLogBodyCap, 'a');
  const RequestRecord r = parse_ok(stream_body(text));
  EXPECT_FALSE(r.response_truncated);
  EXPECT_EQ(r.response_body.size(), kManualLogBodyCap);
}

// --- path, timing defaults ------------------------------------------------------------------

TEST(ManualLogTest, PathFromUrl) {
  const auto path_for = [](json url, std::string_view kind = "custom") {
    json body = non_stream_body();
    if (url.is_null()) {
      body["providerRequest"].erase("url");
    } else {
      body["providerRequest"]["url"] = std::move(url);
    }
    return parse_ok(body, logger_headers(), kind).path;
  };
  EXPECT_EQ(path_for("custom-model-nopath"), "/v1/chat/completions");
  EXPECT_EQ(path_for(nullptr), "/v1/chat/completions");
  EXPECT_EQ(path_for(""), "/v1/chat/completions");
  EXPECT_EQ(path_for("custom-model-nopath", "anthropic"), "/v1/messages");
  EXPECT_EQ(path_for("https://api.openai.com/v1/embeddings"), "/v1/embeddings");
  EXPECT_EQ(path_for("https://user:pw@api.example.com:8443/v1/x?a=1#frag"), "/v1/x?a=1");
  EXPECT_EQ(path_for("HTTP://host"), "/");
  EXPECT_EQ(path_for("http://host?x=1"), "/?x=1");
  EXPECT_EQ(path_for("/v1/completions?x=1"), "/v1/completions?x=1");
  EXPECT_EQ(path_for("https://generativelanguage.googleapis.com/v1beta/models/"
                     "g:generateContent?key=AIzaSecret&alt=sse"),
            "/v1beta/models/g:generateContent?key=[REDACTED]&alt=sse");
}

TEST(ManualLogTest, MissingOrNullTimingMeansNow) {
  json body = non_stream_body();
  body.erase("timing");
  RequestRecord r = parse_ok(body);
  EXPECT_EQ(r.created_at_us, kNow);
  EXPECT_EQ(r.response_at_us, kNow);
  EXPECT_DOUBLE_EQ(r.latency_ms, 0.0);
  EXPECT_FALSE(r.time_to_first_token_ms.has_value());

  body["timing"] = nullptr;
  r = parse_ok(body);
  EXPECT_EQ(r.created_at_us, kNow);
}

TEST(ManualLogTest, NullOptionalFieldsAreAbsent) {
  json body = non_stream_body();
  body["providerRequest"]["meta"] = nullptr;
  body["providerResponse"]["headers"] = nullptr;
  body["providerResponse"]["textBody"] = nullptr;
  body["timing"]["timeToFirstToken"] = nullptr;
  const RequestRecord r = parse_ok(body);
  EXPECT_EQ(json::parse(r.response_body), chat_completion());
  EXPECT_FALSE(r.time_to_first_token_ms.has_value());
}

TEST(ManualLogTest, NoResponseJsonMeansAnEmptyResponseBody) {
  json body = non_stream_body();
  body["providerResponse"].erase("json");
  body["providerResponse"].erase("status");
  const RequestRecord r = parse_ok(body);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.response_body.empty());
  EXPECT_EQ(r.response_size, 0);
  EXPECT_TRUE(r.response_model.empty());
  EXPECT_EQ(r.model(), "gpt-4o-mini");
}

// --- secrets ----------------------------------------------------------------------------------

TEST(ManualLogTest, KeysNeverReachTheRecord) {
  const std::string provider_key = "sk-provider-SECRET-0123456789";
  const std::string anthropic_key = "sk-ant-SECRET-abcdefghijkl";
  const std::string logger_key = "sk-logger-header-SECRET-99";
  const std::string meta_key = "sk-meta-SECRET-7777777";
  json body = non_stream_body();
  body["providerRequest"]["meta"] = {{"Authorization", "Bearer " + meta_key}};
  // The logger's `headers` option is echoed as providerResponse.headers.
  body["providerResponse"]["headers"] = {{"OpenAI-Api-Key", logger_key}};
  // A careless client logs its own key inside the bodies and the URL.
  body["providerRequest"]["json"]["messages"][0]["content"] = "my key is " + provider_key;
  body["providerRequest"]["url"] = "https://api.openai.com/v1/chat/completions?k=" + logger_key;
  body["providerResponse"]["json"]["echo"] = anthropic_key + " and " + meta_key;
  const auto h = logger_headers({{"api-key", provider_key},
                                 {"x-api-key", anthropic_key},
                                 {"Helicone-Auth", "Bearer sk-helicone-auth-SECRET-1"},
                                 {"Helicone-Property-Leak", provider_key},
                                 {"Helicone-Property-Api-Key-Name", "prod-key"},
                                 {"Helicone-User-Id", "user " + anthropic_key}});
  const RequestRecord r = parse_ok(body, h);
  const std::string all = everything(r);
  for (const std::string& secret :
       {provider_key, anthropic_key, logger_key, meta_key, std::string(kProjectKey),
        std::string("sk-helicone-auth-SECRET-1")}) {
    EXPECT_EQ(all.find(secret), std::string::npos) << secret << " in\n" << all.substr(0, 2000);
  }
  EXPECT_EQ(all.find("SECRET"), std::string::npos);
  // Redaction keeps the bodies valid JSON and the non-secret parts intact.
  EXPECT_EQ(json::parse(r.request_body)["messages"][0]["content"], "my key is [REDACTED]");
  EXPECT_EQ(json::parse(r.response_body)["echo"], "[REDACTED] and [REDACTED]");
  EXPECT_EQ(r.path, "/v1/chat/completions?k=[REDACTED]");
  EXPECT_EQ(r.properties.at("leak"), "[REDACTED]");
  EXPECT_EQ(r.properties.at("api-key-name"), "prod-key");  // a property is data, not a credential
  EXPECT_EQ(r.user_id, "user [REDACTED]");
}

TEST(ManualLogTest, EverySchemeIsPeeledOffACredential) {
  // Found by the manual_logger fuzz target: "Bearer basic X" was remembered
  // whole and as "basic X", so X itself, echoed in a body, was stored.
  json body = non_stream_body();
  body["providerRequest"]["json"]["messages"][0]["content"] = "hi sk-ret-12345";
  const RequestRecord r = parse_ok(body, headers({{"Authorization", "Bearer basic ret-12345"}, {"Content-Type", "application/json"}}));
  EXPECT_EQ(everything(r).find("ret-12345"), std::string::npos);
  EXPECT_EQ(json::parse(r.request_body)["messages"][0]["content"], "hi sk-[REDACTED]");
}

TEST(ManualLogTest, ShortHeaderValuesAreNotTreatedAsSecrets) {
  // A header like "X-Auth-Mode: on" must not blank out every "on" in the bodies.
  const RequestRecord r = parse_ok(non_stream_body(), logger_headers({{"X-Auth-Mode", "on"}}));
  EXPECT_EQ(json::parse(r.response_body), chat_completion());
}

// --- bad input: every error names its field --------------------------------------------------

struct BadCase {
  const char* name;
  json body;
  const char* field;  // the message starts with "<field>: "
};

std::vector<BadCase> bad_cases() {
  std::vector<BadCase> cases;
  const auto with = [&](const char* name, const char* field, auto mutate) {
    json body = non_stream_body();
    mutate(body);
    cases.push_back({name, std::move(body), field});
  };
  cases.push_back({"body is an array", json::array(), "body"});
  cases.push_back({"body is a string", "x", "body"});
  with("no providerRequest", "providerRequest", [](json& b) { b.erase("providerRequest"); });
  with("null providerRequest", "providerRequest", [](json& b) { b["providerRequest"] = nullptr; });
  with("providerRequest string", "providerRequest", [](json& b) { b["providerRequest"] = "x"; });
  with("no providerRequest.json", "providerRequest.json",
       [](json& b) { b["providerRequest"].erase("json"); });
  with("providerRequest.json array", "providerRequest.json",
       [](json& b) { b["providerRequest"]["json"] = json::array(); });
  with("providerRequest.json string", "providerRequest.json",
       [](json& b) { b["providerRequest"]["json"] = "{}"; });
  with("providerRequest.url number", "providerRequest.url",
       [](json& b) { b["providerRequest"]["url"] = 1; });
  with("providerRequest.url control", "providerRequest.url",
       [](json& b) { b["providerRequest"]["url"] = "/v1/x\r\nInjected: 1"; });
  with("providerRequest.url too long", "providerRequest.url",
       [](json& b) { b["providerRequest"]["url"] = "/" + std::string(9000, 'a'); });
  with("providerRequest.meta array", "providerRequest.meta",
       [](json& b) { b["providerRequest"]["meta"] = json::array(); });
  with("providerRequest.meta value", "providerRequest.meta.Helicone-Property-N", [](json& b) {
    b["providerRequest"]["meta"] = {{"Helicone-Property-N", 5}};
  });
  with("providerRequest.meta too long", "providerRequest.meta.Helicone-Property-N", [](json& b) {
    b["providerRequest"]["meta"] = {{"Helicone-Property-N", std::string(20000, 'v')}};
  });
  with("no providerResponse", "providerResponse", [](json& b) { b.erase("providerResponse"); });
  with("providerResponse array", "providerResponse",
       [](json& b) { b["providerResponse"] = json::array(); });
  with("providerResponse.json string", "providerResponse.json",
       [](json& b) { b["providerResponse"]["json"] = "ok"; });
  with("providerResponse.textBody object", "providerResponse.textBody",
       [](json& b) { b["providerResponse"]["textBody"] = json::object(); });
  with("providerResponse.status string", "providerResponse.status",
       [](json& b) { b["providerResponse"]["status"] = "200"; });
  with("providerResponse.status float", "providerResponse.status",
       [](json& b) { b["providerResponse"]["status"] = 200.5; });
  with("providerResponse.status bool", "providerResponse.status",
       [](json& b) { b["providerResponse"]["status"] = true; });
  with("providerResponse.status 0", "providerResponse.status",
       [](json& b) { b["providerResponse"]["status"] = 0; });
  with("providerResponse.status 600", "providerResponse.status",
       [](json& b) { b["providerResponse"]["status"] = 600; });
  with("providerResponse.status -4", "providerResponse.status",
       [](json& b) { b["providerResponse"]["status"] = -4; });
  with("providerResponse.status huge", "providerResponse.status",
       [](json& b) { b["providerResponse"]["status"] = std::uint64_t{18446744073709551615u}; });
  with("providerResponse.headers string", "providerResponse.headers",
       [](json& b) { b["providerResponse"]["headers"] = "x"; });
  with("providerResponse.cost string", "providerResponse.cost",
       [](json& b) { b["providerResponse"]["cost"] = "1"; });
  with("providerResponse.cost negative", "providerResponse.cost",
       [](json& b) { b["providerResponse"]["cost"] = -0.5; });
  with("provider number", "provider", [](json& b) { b["provider"] = 3; });
  with("timing string", "timing", [](json& b) { b["timing"] = "now"; });
  with("no timing.startTime", "timing.startTime", [](json& b) { b["timing"].erase("startTime"); });
  with("no timing.endTime", "timing.endTime", [](json& b) { b["timing"].erase("endTime"); });
  with("timing.startTime number", "timing.startTime",
       [](json& b) { b["timing"]["startTime"] = 1795329582; });
  with("timing.startTime.seconds string", "timing.startTime.seconds",
       [](json& b) { b["timing"]["startTime"]["seconds"] = "1795329582"; });
  with("no timing.startTime.milliseconds", "timing.startTime.milliseconds",
       [](json& b) { b["timing"]["startTime"].erase("milliseconds"); });
  with("negative seconds", "timing.startTime",
       [](json& b) { b["timing"]["startTime"]["seconds"] = -1; });
  with("negative milliseconds", "timing.endTime",
       [](json& b) { b["timing"]["endTime"]["milliseconds"] = -5; });
  with("seconds out of range", "timing.endTime",
       [](json& b) { b["timing"]["endTime"]["seconds"] = 1e15; });
  with("end before start", "timing.endTime", [](json& b) {
    b["timing"]["endTime"] = {{"seconds", 1795329582}, {"milliseconds", 335}};
  });
  with("timeToFirstToken string", "timing.timeToFirstToken",
       [](json& b) { b["timing"]["timeToFirstToken"] = "5"; });
  with("timeToFirstToken negative", "timing.timeToFirstToken",
       [](json& b) { b["timing"]["timeToFirstToken"] = -1; });
  return cases;
}

TEST(ManualLogTest, EachBadInputIsA400NamingTheField) {
  for (const auto& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    const scoring::Error e = parse_error(c.body);
    EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(scoring::http_status(e.code), 400);
    EXPECT_EQ(e.message.rfind(std::string(c.field) + ": ", 0), 0u) << e.message;
  }
}

TEST(ManualLogTest, ErrorMessagesAreSpecific) {
  json body = non_stream_body();
  body["providerRequest"]["json"] = json::array();
  EXPECT_EQ(parse_error(body).message, "providerRequest.json: expected an object");
  body = non_stream_body();
  body["providerResponse"]["status"] = "200";
  EXPECT_EQ(parse_error(body).message, "providerResponse.status: expected an integer");
  body = non_stream_body();
  body["timing"]["endTime"]["seconds"] = 1795329581;
  EXPECT_EQ(parse_error(body).message, "timing.endTime: before timing.startTime");
  body = non_stream_body();
  body.erase("providerResponse");
  EXPECT_EQ(parse_error(body).message, "providerResponse: missing");
}

TEST(ManualLogTest, CallerMistakesAreRejected) {
  EXPECT_EQ(
      parse_error(non_stream_body(), logger_headers(), "", "custom").message.rfind("project: ", 0),
      0u);
  EXPECT_EQ(parse_error(non_stream_body(), logger_headers(), "default", "v1")
                .message.rfind("path_kind: ", 0),
            0u);
}

TEST(ManualLogTest, ProviderFieldContentsNeverFailTheLog) {
  // Odd types inside the provider's own bodies are ignored, not refused.
  json body = non_stream_body();
  body["providerRequest"]["json"]["model"] = 5;
  body["providerRequest"]["json"]["stream"] = "yes";
  body["providerResponse"]["json"]["model"] = json::array();
  body["providerResponse"]["json"]["usage"] = "lots";
  const RequestRecord r = parse_ok(body);
  EXPECT_TRUE(r.request_model.empty());
  EXPECT_TRUE(r.response_model.empty());
  EXPECT_FALSE(r.is_stream);
  EXPECT_FALSE(r.total_tokens.has_value());
}

}  // namespace
}  // namespace arbiter::gateway
