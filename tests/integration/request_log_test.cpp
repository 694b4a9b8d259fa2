// The request log end to end: calls through the real binary become records
// in RocksDB that the API serves back, and survive kills and restarts.

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/gateway_harness.hpp"
#include "tests/support/sanitizer.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kPricing =
    "pricing:\n  - model: gpt-4o-mini*\n    input_per_million: 0.15\n    output_per_million: 0.60\n";

std::string call(GatewayHarness& h, Headers extra = {}, std::string body = GatewayHarness::chat_body()) {
  auto c = h.proxy_client();
  extra.emplace_back("Content-Type", "application/json");
  auto res = c.request("POST", "/v1/chat/completions", GatewayHarness::auth(std::move(extra)), std::move(body));
  EXPECT_TRUE(res.header("helicone-id"));
  return res.header("helicone-id").value_or("");
}

// GET /v1/request/{id}: the status and the parsed envelope.
std::pair<int, json> get_record(GatewayHarness& h, const std::string& id, bool include_body = false,
                                const char* key = kKeyA) {
  auto res = h.api_client().request("GET", "/v1/request/" + id + (include_body ? "?includeBody=true" : ""),
                                    GatewayHarness::api_auth(key));
  return {res.status, json::parse(res.body)};
}

// Records are written asynchronously (relaxed durability): wait until it is there.
json await_record(GatewayHarness& h, const std::string& id, bool include_body = true) {
  json out;
  EXPECT_TRUE(wait_until(
      [&] {
        auto [status, body] = get_record(h, id, include_body);
        if (status != 200) return false;
        out = body["data"];
        return true;
      },
      10s))
      << "record " << id << " never appeared";
  return out;
}

std::pair<int, json> query(GatewayHarness& h, const std::string& body, const char* key = kKeyA) {
  auto res = h.api_client().request("POST", "/v1/request/query",
                                    {{"Authorization", std::string("Bearer ") + key}, {"Content-Type", "application/json"}},
                                    body);
  return {res.status, json::parse(res.body)};
}

TEST(RequestLog, RecordsANonStreamingCall) {
  GatewayHarness h({.top_extra = kPricing});
  const auto id = call(h, {{"Helicone-Property-Env", "prod"},
                           {"Helicone-Property-Prompt-Version", "v2"},
                           {"Helicone-User-Id", "user-42"},
                           {"Helicone-Session-Id", "sess-1"},
                           {"Helicone-Session-Path", "/a/b"},
                           {"Helicone-Session-Name", "checkout"},
                           {"Authorization", "Bearer sk-secret-provider-key"}});
  const json rec = await_record(h, id);
  EXPECT_EQ(rec["request_id"], id);
  EXPECT_EQ(rec["status"], 200);
  EXPECT_EQ(rec["model"], "gpt-4o-mini");
  EXPECT_EQ(rec["request_path"], "/v1/chat/completions");
  EXPECT_EQ(rec["provider"], "openai");
  EXPECT_EQ(rec["user_id"], "user-42");
  EXPECT_EQ(rec["session_id"], "sess-1");
  EXPECT_EQ(rec["session_path"], "/a/b");
  EXPECT_EQ(rec["session_name"], "checkout");
  EXPECT_EQ(rec["properties"], json({{"env", "prod"}, {"prompt-version", "v2"}}));
  EXPECT_EQ(rec["is_stream"], false);
  // Tokens come from the upstream's usage object, cost from the pricing table.
  const json usage = rec["response_body"]["usage"];
  ASSERT_TRUE(usage["prompt_tokens"].is_number_integer());
  EXPECT_EQ(rec["prompt_tokens"], usage["prompt_tokens"]);
  EXPECT_EQ(rec["completion_tokens"], usage["completion_tokens"]);
  EXPECT_EQ(rec["total_tokens"], usage["total_tokens"]);
  EXPECT_NEAR(rec["cost"].get<double>(),
              (usage["prompt_tokens"].get<double>() * 0.15 + usage["completion_tokens"].get<double>() * 0.60) / 1e6,
              1e-15);
  EXPECT_GT(rec["latency"].get<double>(), 0.0);
  EXPECT_EQ(rec["request_body"], json::parse(GatewayHarness::chat_body()));
  EXPECT_EQ(rec["response_body"]["choices"][0]["message"]["content"], "Hello from the fake upstream.");

  // Bodies only on request.
  auto [status, plain] = get_record(h, id, false);
  EXPECT_EQ(status, 200);
  EXPECT_FALSE(plain["data"].contains("request_body"));

  // The provider key never reaches storage or logs.
  h.terminate();
  std::string everything = h.stderr_text();
  for (const auto& entry : std::filesystem::recursive_directory_iterator(h.dir() / "data")) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    everything.append(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_EQ(everything.find("sk-secret-provider-key"), std::string::npos);
  EXPECT_EQ(everything.find(kKeyA), std::string::npos);
}

TEST(RequestLog, FallsBackToTheBodyUserAndLeavesUnknownCostUnknown) {
  GatewayHarness h;  // no pricing table
  json body = json::parse(GatewayHarness::chat_body());
  body["user"] = "body-user";
  const auto id = call(h, {}, body.dump());
  const json rec = await_record(h, id, false);
  EXPECT_EQ(rec["user_id"], "body-user");
  EXPECT_TRUE(rec["cost"].is_null());
}

TEST(RequestLog, RecordsAStreamWithItsUsageAndReassembledText) {
  GatewayHarness h;
  const auto id = call(h, {}, GatewayHarness::chat_body(true, true));
  const json rec = await_record(h, id);
  EXPECT_EQ(rec["is_stream"], true);
  EXPECT_EQ(rec["status"], 200);
  ASSERT_TRUE(rec["prompt_tokens"].is_number_integer());
  ASSERT_TRUE(rec["completion_tokens"].is_number_integer());
  EXPECT_GT(rec["completion_tokens"].get<int>(), 0);
  EXPECT_EQ(rec["total_tokens"], rec["prompt_tokens"].get<int>() + rec["completion_tokens"].get<int>());
  EXPECT_TRUE(rec["time_to_first_token"].is_number());
  EXPECT_EQ(rec["response_body"]["choices"][0]["message"]["content"], "Hello from the fake upstream.");
  EXPECT_EQ(rec["response_body"]["choices"][0]["finish_reason"], "stop");
}

// The proxy parses a stream's events only until the first token and leaves
// the completion to the storage thread, which rebuilds it from the raw copy.
// When the raw copy is cut at storage.max_logged_body_bytes, the proxy's own
// tap catches up on what the copy holds and reads the rest: the completion is
// still whole, with its usage, and the raw copy says it was cut.
TEST(RequestLog, AStreamLongerThanTheLoggedBodyCapIsStillReassembledWhole) {
  GatewayHarness h({.storage_extra = "  max_logged_body_bytes: 600\n"});
  std::string text;
  for (int i = 0; i < 60; ++i) text += "word" + std::to_string(i) + (i + 1 < 60 ? " " : "");
  for (const int chunks : {3, 40}) {  // a few large events, and many small ones
    const auto id = call(h, {{"x-fake-content", text}, {"x-fake-chunks", std::to_string(chunks)}},
                         GatewayHarness::chat_body(true, true));
    const json rec = await_record(h, id);
    EXPECT_EQ(rec["response_body"]["choices"][0]["message"]["content"], text) << chunks;
    EXPECT_EQ(rec["response_body"]["choices"][0]["finish_reason"], "stop") << chunks;
    EXPECT_TRUE(rec["completion_tokens"].is_number_integer()) << chunks;
    EXPECT_TRUE(rec["time_to_first_token"].is_number()) << chunks;
    EXPECT_EQ(rec["response_truncated"], true) << chunks;
    EXPECT_GT(rec["response_size"].get<std::int64_t>(), 600) << chunks;
  }
  // (Under the cap, RecordsAStreamWithItsUsageAndReassembledText: rebuilt from the raw copy.)
}

TEST(RequestLog, LeavesTokensUnknownWhenAStreamHasNoUsage) {
  GatewayHarness h;
  const auto id = call(h, {}, GatewayHarness::chat_body(true, false));
  const json rec = await_record(h, id);
  EXPECT_EQ(rec["is_stream"], true);
  EXPECT_TRUE(rec["prompt_tokens"].is_null());
  EXPECT_TRUE(rec["completion_tokens"].is_null());
  EXPECT_TRUE(rec["total_tokens"].is_null());
  EXPECT_EQ(rec["response_body"]["choices"][0]["message"]["content"], "Hello from the fake upstream.");
}

TEST(RequestLog, HonorsOmitHeaders) {
  GatewayHarness h;
  const auto id = call(h, {{"Helicone-Omit-Request", "true"}, {"Helicone-Omit-Response", "true"}});
  const json rec = await_record(h, id);
  EXPECT_EQ(rec["request_omitted"], true);
  EXPECT_EQ(rec["response_omitted"], true);
  EXPECT_TRUE(!rec.contains("request_body") || rec["request_body"].is_null() || rec["request_body"] == "");
  EXPECT_TRUE(!rec.contains("response_body") || rec["response_body"].is_null() || rec["response_body"] == "");
  EXPECT_EQ(rec["request_size"], GatewayHarness::chat_body().size());
  EXPECT_GT(rec["response_size"].get<int>(), 0);
}

TEST(RequestLog, RecordsFailuresWithTheirStatus) {
  GatewayHarness h({.upstream_extra = "    timeout_ms: 300\n"});
  const auto limited = call(h, {{"x-fake-status", "429"}});
  const auto hung = call(h, {{"x-fake-hang", "1"}});
  auto rec = await_record(h, limited);
  EXPECT_EQ(rec["status"], 429);
  EXPECT_EQ(rec["response_body"]["error"]["type"], "fake_error");
  rec = await_record(h, hung);
  EXPECT_EQ(rec["status"], -2);
  EXPECT_FALSE(rec["error_message"].get<std::string>().empty());

  // A client that walks away mid-stream.
  auto c = h.proxy_client();
  std::string id;
  int pieces = 0;
  auto res = c.request_streaming("POST", "/v1/chat/completions",
                                 GatewayHarness::auth({{"Content-Type", "application/json"},
                                                       {"x-fake-chunks", "20"},
                                                       {"x-fake-chunk-interval-ms", "100"}}),
                                 GatewayHarness::chat_body(true), [&](std::string_view) { return ++pieces < 2; });
  id = res.header("helicone-id").value_or("");
  ASSERT_FALSE(id.empty());
  rec = await_record(h, id);
  EXPECT_EQ(rec["status"], -3);
}

TEST(RequestLog, RecordsAnUnreachableUpstreamAsMinusOne) {
  GatewayHarness h({.base_url = "http://127.0.0.1:1"});
  const auto id = call(h);
  const auto rec = await_record(h, id, false);
  EXPECT_EQ(rec["status"], -1);
}

TEST(RequestLog, QueriesWithFiltersAndKeepsProjectsApart) {
  GatewayHarness h;
  std::vector<std::string> prod, dev;
  for (int i = 0; i < 4; ++i) prod.push_back(call(h, {{"Helicone-Property-Env", "prod"}}));
  for (int i = 0; i < 3; ++i) dev.push_back(call(h, {{"Helicone-Property-Env", "dev"}, {"Helicone-User-Id", "u-dev"}}));
  for (const auto& id : dev) await_record(h, id, false);
  for (const auto& id : prod) await_record(h, id, false);

  auto [status, body] = query(h, R"({"filter":{"request_response_rmt":{"properties":{"env":{"equals":"prod"}}}}})");
  ASSERT_EQ(status, 200) << body;
  EXPECT_EQ(body["data"].size(), 4u);
  for (const auto& r : body["data"]) EXPECT_EQ(r["properties"]["env"], "prod");

  std::tie(status, body) = query(h, R"({"filter":{"left":{"request_response_rmt":{"user_id":{"equals":"u-dev"}}},
    "operator":"or","right":{"request_response_rmt":{"properties":{"env":{"equals":"prod"}}}}},
    "sort":{"created_at":"asc"},"limit":5,"offset":1})");
  ASSERT_EQ(status, 200) << body;
  ASSERT_EQ(body["data"].size(), 5u);
  // Ascending creation order, skipping the first of the seven.
  EXPECT_EQ(body["data"][0]["request_id"], prod[1]);

  // Project beta sees none of alpha's calls.
  std::tie(status, body) = query(h, R"({"filter":"all"})", kKeyB);
  ASSERT_EQ(status, 200);
  EXPECT_TRUE(body["data"].empty());
  auto [st, other] = get_record(h, prod[0], false, kKeyB);
  EXPECT_EQ(st, 404);
  EXPECT_TRUE(other["data"].is_null());
}

TEST(RequestLog, RejectsBadQueriesWithClearErrors) {
  GatewayHarness h;
  auto [status, body] = query(h, "{not json");
  EXPECT_EQ(status, 400);
  EXPECT_TRUE(body["data"].is_null());
  std::tie(status, body) = query(h, R"({"filter":{"request_response_rmt":{"modle":{"equals":"x"}}}})");
  EXPECT_EQ(status, 400);
  EXPECT_NE(body["error"].get<std::string>().find("modle"), std::string::npos) << body;
  std::tie(status, body) = query(h, R"({"filter":{"request_response_rmt":{"latency":{"between":3}}}})");
  EXPECT_EQ(status, 400);
  EXPECT_NE(body["error"].get<std::string>().find("between"), std::string::npos) << body;
  std::tie(status, body) = query(h, R"({"filter":"all","limit":1001})");
  EXPECT_EQ(status, 400);
  EXPECT_NE(body["error"].get<std::string>().find("limit"), std::string::npos) << body;
  std::tie(status, body) = query(h, R"({"filter":"all","limit":"ten"})");
  EXPECT_EQ(status, 400);
  std::tie(status, body) = query(h, std::string(200, '[') + std::string(200, ']'));
  EXPECT_EQ(status, 400);

  auto api = h.api_client();
  EXPECT_EQ(api.request("POST", "/v1/request/query", {}, R"({"filter":"all"})").status, 401);
  EXPECT_EQ(api.request("POST", "/v1/request/query", {{"Authorization", "Bearer nope"}}, "{}").status, 401);
  auto [st, missing] = get_record(h, "0c8f2d3e-1b2a-4c5d-9e8f-0a1b2c3d4e5f");
  EXPECT_EQ(st, 404);
  EXPECT_NE(missing["error"].get<std::string>().find("not found"), std::string::npos);
  auto res = api.request("GET", "/v1/request/abc?includeBody=maybe", GatewayHarness::api_auth());
  EXPECT_EQ(res.status, 400);
}

TEST(RequestLog, KeepsEveryWrittenRecordAcrossSigkill) {
  GatewayHarness h;
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(call(h));
  // relaxed: what the storage thread has written is in the WAL; a hard kill
  // loses at most what was still queued.
  ASSERT_TRUE(wait_until([&] { return h.metric("arbiter_log_records_written_total") >= 20; }, 10s));
  h.kill();
  h.restart();
  for (const auto& id : ids) EXPECT_EQ(get_record(h, id).first, 200) << id;
}

TEST(RequestLog, MetricsReportRocksDbMemory) {
  GatewayHarness h;
  for (int i = 0; i < 5; ++i) call(h);
  ASSERT_TRUE(wait_until([&] { return h.metric("arbiter_log_records_written_total") >= 5; }, 10s));
  EXPECT_GT(h.metric("arbiter_storage_memtable_bytes"), 0);
  // Present (-1 means absent); zero is fine before the first flush.
  EXPECT_GE(h.metric("arbiter_storage_table_readers_bytes"), 0);
  EXPECT_GE(h.metric("arbiter_storage_block_cache_bytes"), 0);
}

TEST(RequestLog, StrictDurabilityLosesNothingTheClientSawComplete) {
  GatewayHarness h({.storage_extra = "  durability: strict\n"});
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(call(h));
  ids.push_back(call(h, {}, GatewayHarness::chat_body(true, true)));
  h.kill();  // no waiting: every response above had completed
  h.restart();
  for (const auto& id : ids) EXPECT_EQ(get_record(h, id).first, 200) << id;
}

TEST(RequestLog, SigtermLosesNothing) {
  // A long fsync window: only the shutdown drain can have saved these.
  GatewayHarness h({.storage_extra = "  batch_window_ms: 60000\n"});
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(call(h));
  EXPECT_EQ(h.terminate(), 0);
  h.restart();
  for (const auto& id : ids) EXPECT_EQ(get_record(h, id).first, 200) << id;
}

TEST(RequestLog, CanBeTurnedOffForProxiedCalls) {
  GatewayHarness h({.storage_extra = "  log_requests: false\n"});
  const auto id = call(h);
  ASSERT_FALSE(id.empty());
  // Nothing is queued for the call; the API still answers.
  EXPECT_EQ(h.metric("arbiter_log_records_submitted_total"), 0);
  EXPECT_EQ(get_record(h, id).first, 404);
}

TEST(RequestLog, ALockedDataDirectoryIsAClearStartupError) {
  GatewayHarness h;
  ChildProcess second({arbiter_binary().string(), "--config", h.config_path().string()}, {},
                      h.dir() / "second.stderr");
  auto code = second.wait_exit(20s);
  ASSERT_TRUE(code);
  EXPECT_NE(*code, 0);
  std::ifstream in(h.dir() / "second.stderr");
  std::string err((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(err.find("lock"), std::string::npos) << err;
  EXPECT_EQ(find_sanitizer_report(err), "");
  // The first instance is unaffected.
  EXPECT_FALSE(call(h).empty());
}

}  // namespace
}  // namespace arbiter::testing
