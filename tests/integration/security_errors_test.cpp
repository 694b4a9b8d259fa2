// No stack traces or internal paths in any error response: every error path
// of the API and the proxy that a client can drive — bad JSON, unknown
// routes, wrong methods, bad HTTP, limits, unknown upstreams, unreachable and
// hanging upstreams — and an internal failure from a bad state (records
// corrupted on disk) answer with a short message; the internal failure is a
// generic 500 whose request id leads to the detailed line in the log.

#include <gtest/gtest.h>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "scoring/store.hpp"
#include "tests/integration/security_support.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using namespace security;
using nlohmann::json;

// What an error body must never contain.
std::vector<std::string> forbidden(const GatewayHarness& h) {
  return {"/work/", ".cpp", ".hpp", ".h:", std::string(ARBITER_SOURCE_DIR), h.dir().string(), "std::",
          "exception", "what()", "#0 ", "#1 ", " at 0x", "terminate", "Corruption", "rocksdb", "RocksDB",
          "IO error", "SIGSEGV", "Assertion", "boost::", "nlohmann"};
}

void expect_clean(const GatewayHarness& h, const std::string& what, const HttpResponse& res) {
  SCOPED_TRACE(what);
  EXPECT_GE(res.status, 400) << res.body;
  for (const auto& f : forbidden(h)) EXPECT_EQ(res.body.find(f), std::string::npos) << f << " in " << res.body;
  for (const auto& [name, value] : res.headers) {
    for (const auto& f : forbidden(h)) EXPECT_EQ(value.find(f), std::string::npos) << f << " in " << name;
  }
  EXPECT_LT(res.body.size(), 2048u) << "an error body this long is quoting something";
  EXPECT_TRUE(json::parse(res.body, nullptr, false).is_object()) << res.body;
}

void expect_clean_raw(const GatewayHarness& h, const std::string& what, const std::string& raw) {
  SCOPED_TRACE(what);
  ASSERT_FALSE(raw.empty());
  for (const auto& f : forbidden(h)) EXPECT_EQ(raw.find(f), std::string::npos) << f << " in " << raw;
}

TEST(ErrorResponses, ApiErrorsNameTheProblemAndNothingInternal) {
  GatewayHarness h({.server_extra = "  limits: { max_body_bytes: 65536, max_header_bytes: 8192 }\n",
                    .top_extra = "evaluators:\n  - name: len\n    kind: response_length\n"});
  auto call = proxy_call(h);
  const std::string id = *call.header("helicone-id");
  ASSERT_TRUE(wait_until([&] { return api(h, "GET", "/v1/request/" + id).first == 200; }, 10s));
  const auto key = bearer(kKeyA);
  struct Case {
    std::string method, target, body;
    int status;
  };
  const std::vector<Case> cases = {
      {"GET", "/nope", "", 404},
      {"GET", "/v1/../../etc/passwd", "", 404},
      {"DELETE", "/healthz", "", 405},
      {"PUT", "/v1/scores", "{}", 405},
      {"POST", "/v1/scores", "{not json", 400},
      {"POST", "/v1/scores", "", 400},
      {"POST", "/v1/scores", "[]", 400},
      {"POST", "/v1/scores", "null", 400},
      {"POST", "/v1/scores", "{\"a\":1} trailing", 400},
      {"POST", "/v1/scores", std::string(100, '{'), 400},
      {"POST", "/v1/request/" + id + "/score", R"({"scores":{"x":1.5}})", 400},
      {"POST", "/v1/request/" + id + "/score", R"({"scores":{"x":"s"}})", 400},
      {"POST", "/v1/request/query", R"({"filter":{"request_response_rmt":{"nope":{"equals":1}}}})", 400},
      {"POST", "/v1/request/query", R"({"sort":{"x":"sideways"}})", 400},
      {"POST", "/v1/evals/query", R"({"timeFilter":{"start":"yesterday"}})", 400},
      {"GET", "/v1/scores?limit=-1", "", 400},
      {"GET", "/v1/scores?min_value=abc", "", 400},
      {"GET", "/v1/request/" + id + "?includeBody=maybe", "", 400},
      {"POST", "/v1/evaluators/nope/run", R"({"request_id":"x"})", 404},
      {"POST", "/v1/evaluators/len/run", R"({"request_id":"00000000-0000-4000-8000-000000000000"})", 404},
      {"POST", "/v1/webhooks/nope/test", "", 404},
      {"POST", "/v1/webhooks/deliveries/nope/retry", "", 404},
      {"DELETE", "/v1/scores/nope", "", 404},
      {"POST", "/custom/v1/log", R"({"providerRequest":1})", 400},
      {"POST", "/v1/scores", std::string(70000, ' '), 413},
      {"GET", "/v1/scores", "", 431},  // with a huge header, below
  };
  for (const auto& c : cases) {
    Headers extra;
    if (c.status == 431) extra.emplace_back("X-Big", std::string(10000, 'b'));
    auto res = api_raw(h, c.method, c.target, key, c.body, extra);
    EXPECT_EQ(res.status, c.status) << c.method << " " << c.target << ": " << res.body.substr(0, 200);
    expect_clean(h, c.method + " " + c.target.substr(0, 60), res);
  }
  // Malformed HTTP straight on the socket.
  for (const std::string& raw : {std::string("GARBAGE\r\n\r\n"), std::string("GET / HTTP/9.9\r\n\r\n"),
                                std::string("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"),
                                std::string("POST /v1/scores HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
    expect_clean_raw(h, raw, raw_exchange("127.0.0.1", h.api_port(), raw, 3s));
  }
}

TEST(ErrorResponses, ProxyErrorsNameTheProblemAndNothingInternal) {
  GatewayHarness h({.server_extra = "  limits: { max_body_bytes: 65536, max_header_bytes: 8192 }\n",
                    .upstream_extra = "    timeout_ms: 500\n    idle_timeout_ms: 500\n"});
  const std::vector<std::pair<std::string, HttpResponse>> cases = {
      {"unknown upstream", proxy_call(h, {{"Helicone-Upstream", "nope"}})},
      {"bad key", h.proxy_client().request("GET", "/v1/models", {{"Helicone-Auth", "Bearer nope"}})},
      {"no key", h.proxy_client().request("GET", "/v1/models")},
      {"bad property", proxy_call(h, {{"Helicone-Property-X", "\xff"}})},
      {"hanging upstream", proxy_call(h, {{"x-fake-hang", "1"}})},
      {"header too large", proxy_call(h, {{"X-Big", std::string(10000, 'b')}})},
      {"body too large", proxy_call(h, {}, kKeyA, std::string(70000, 'x'))},
  };
  for (const auto& [what, res] : cases) expect_clean(h, what, res);
  EXPECT_EQ(cases[4].second.status, 504);
  expect_clean_raw(h, "garbage", raw_exchange("127.0.0.1", h.proxy_port(), "GARBAGE\r\n\r\n", 3s));

  // An upstream nobody listens on.
  GatewayHarness down({.base_url = "http://127.0.0.1:1"});
  auto res = proxy_call(down);
  EXPECT_EQ(res.status, 502);
  expect_clean(down, "unreachable upstream", res);
}

TEST(ErrorResponses, AnInternalFailureIsAGeneric500WhoseIdLeadsToTheLog) {
  GatewayHarness h;
  auto call = proxy_call(h);
  const std::string id = *call.header("helicone-id");
  ASSERT_TRUE(wait_until([&] { return api(h, "GET", "/v1/request/" + id).first == 200; }, 10s));
  ASSERT_EQ(api(h, "POST", "/v1/request/" + id + "/score", kKeyA, R"({"scores":{"q":1}})").first, 201);
  ASSERT_EQ(h.terminate(), std::optional<int>(0));
  {
    // The bad state: every stored record and score overwritten with bytes that do not decode.
    auto store = scoring::Store::open((h.dir() / "data").string());
    const auto db = *store->lease();
    rocksdb::WriteBatch batch;
    std::size_t n = 0;
    for (auto cf : {scoring::ColumnFamily::kRecords, scoring::ColumnFamily::kScores}) {
      std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(rocksdb::ReadOptions(), db.cf(cf)));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        ASSERT_TRUE(batch.Put(db.cf(cf), it->key(), "\xff\xfe not a record").ok());
        ++n;
      }
    }
    ASSERT_GT(n, 1u);
    ASSERT_TRUE(store->commit(db, batch, /*sync=*/true).ok());
  }
  h.restart();
  const std::vector<std::pair<std::string, std::string>> reads = {
      {"GET", "/v1/request/" + id},
      {"GET", "/v1/request/" + id + "?includeBody=true"},
      {"POST", "/v1/request/query"},
      {"GET", "/v1/scores?request_id=" + id},
  };
  bool saw_500 = false;
  for (const auto& [method, target] : reads) {
    auto res = api_raw(h, method, target, bearer(kKeyA), method == "POST" ? "{}" : "");
    if (res.status == 200) continue;  // a read that skips what it cannot decode is fine too
    expect_clean(h, method + " " + target, res);
    ASSERT_EQ(res.status, 500) << res.body;
    saw_500 = true;
    const auto incident = res.header("x-request-id");
    ASSERT_TRUE(incident) << "a 500 must carry the id of its log line";
    EXPECT_NE(res.body.find(*incident), std::string::npos) << res.body;
    EXPECT_EQ(json::parse(res.body)["error"], "internal error (request id " + *incident + ")");
    // The log has the detail under the same id.
    ASSERT_TRUE(wait_until([&] { return h.stderr_text().find(*incident) != std::string::npos; }, 5s));
  }
  EXPECT_TRUE(saw_500) << "the corrupted records never produced an internal error";
  EXPECT_EQ(api(h, "GET", "/healthz").first, 200);
}

}  // namespace
}  // namespace arbiter::testing
