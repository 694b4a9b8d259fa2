// No secret at rest: traffic carrying provider keys (sent by the client, and
// the upstream's configured key injected by the gateway), both projects'
// arbiter keys, a webhook secret and credential headers of webhooks and
// evaluators runs through the real binary (debug logging on); then the
// gateway stops and every file under the data directory (raw bytes: SST, WAL,
// blob, MANIFEST, LOG), every key and value of every column family read back
// through RocksDB (so compressed blocks are seen decompressed), and the
// captured stdout/stderr are searched for each secret in plain, base64 and
// hex form.

#include <gtest/gtest.h>

#include <rocksdb/db.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "scoring/store.hpp"
#include "scoring/webhook_signing.hpp"
#include "tests/integration/security_support.hpp"
#include "tests/support/webhook_receiver.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using namespace security;
using nlohmann::json;

constexpr const char* kClientProviderKey = "sk-client-provider-Q7wL2pX9vR4tY8uI";
constexpr const char* kClientXApiKey = "sk-ant-client-xapikey-M3nB6vC1zX5aS8dF";
constexpr const char* kUpstreamKey = "sk-upstream-configured-K4jH7gF2dS9aP1oI";
constexpr const char* kWebhookSecret = "whsec_c2VjcmV0LXdlYmhvb2sta2V5LWZvci1hcmJpdGVyLXRlc3Q=";
constexpr const char* kWebhookHeaderToken = "hook-header-token-Z8xC4vB7nM2qW5eR";
constexpr const char* kEvaluatorToken = "eval-header-token-T6yU1iO9pA3sD7fG";
constexpr const char* kMetaProviderKey = "sk-manual-meta-key-H2jK5lZ8xC1vB4nM";

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

struct Secret {
  std::string label;
  std::string bytes;
};

// Each secret in every form worth searching for.
std::vector<Secret> forms() {
  std::vector<Secret> out;
  auto add = [&](const std::string& label, const std::string& s) {
    out.push_back({label, s});
    out.push_back({label + " (base64)", scoring::base64_encode(s)});
    out.push_back({label + " (hex)", hex(s)});
  };
  add("client provider key", kClientProviderKey);
  add("client x-api-key", kClientXApiKey);
  add("upstream api_key", kUpstreamKey);
  add("arbiter key alpha", kKeyA);
  add("arbiter key beta", kKeyB);
  add("webhook secret", kWebhookSecret);
  add("webhook header token", kWebhookHeaderToken);
  add("evaluator header token", kEvaluatorToken);
  add("manual-log meta key", kMetaProviderKey);
  // The webhook signing key itself (the secret's decoded bytes).
  const auto key = scoring::decode_webhook_secret(kWebhookSecret);
  EXPECT_TRUE(key.ok());
  if (key.ok()) add("webhook signing key", *key);
  return out;
}

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> find_secrets(const std::string& where, std::string_view haystack) {
  std::vector<std::string> found;
  for (const auto& s : forms()) {
    if (haystack.find(s.bytes) != std::string_view::npos) found.push_back(s.label + " in " + where);
  }
  return found;
}

TEST(NoSecretAtRest, NoKeyOrSecretReachesTheDataDirectoryOrTheLogs) {
  WebhookReceiver rx;
  FakeUpstream hook;  // the http evaluator's endpoint
  GatewayHarness h(
      {.server_extra = "  log_level: debug\n",
       .upstream_extra = std::string("    api_key: ") + kUpstreamKey + "\n",
       .top_extra = "evaluators:\n  - name: hook\n    kind: http\n    params:\n      url: " + hook.base_url() +
                    "/evaluate\n      allow_insecure: true\n      headers: { Authorization: \"Bearer " +
                    kEvaluatorToken + "\" }\n  - name: len\n    kind: response_length\n"
                    "webhooks:\n  - name: rx\n    url: " + rx.url("/hook") + "\n    secret: " + kWebhookSecret +
                    "\n    allow_insecure: true\n    include_bodies: true\n    events: [ request.logged, "
                    "score.created ]\n    headers: { Authorization: \"Bearer " + kWebhookHeaderToken + "\" }\n"});

  std::vector<std::string> ids;
  auto keep = [&](const HttpResponse& res) {
    EXPECT_EQ(res.status, 200) << res.body;
    if (auto id = res.header("helicone-id")) ids.push_back(*id);
  };
  // The client's own provider key (Authorization), forwarded as sent.
  keep(proxy_call(h, {{"Authorization", bearer(kClientProviderKey)}}));
  // A streamed call with an x-api-key provider key.
  keep(proxy_call(h, {{"x-api-key", kClientXApiKey}}, kKeyA, GatewayHarness::chat_body(true, true)));
  // No provider key: the upstream's configured key is injected.
  keep(proxy_call(h));
  // Beta's arbiter key in Authorization (the fallback) instead of Helicone-Auth.
  {
    auto c = h.proxy_client();
    keep(c.request("POST", "/v1/chat/completions",
                   {{"Authorization", bearer(kKeyB)}, {"Content-Type", "application/json"}},
                   GatewayHarness::chat_body()));
  }
  // An upstream that echoes the request headers back in its body (the
  // fake's catch-all route) — the provider key comes back in a logged body.
  {
    auto c = h.proxy_client();
    keep(c.request("POST", "/v1/echo",
                   GatewayHarness::auth({{"Authorization", bearer(kClientProviderKey)},
                                         {"Content-Type", "application/json"}}),
                   R"({"model":"gpt-4o-mini"})"));
    keep(c.request("GET", "/v1/models", GatewayHarness::auth()));
  }
  // A failed call (the upstream hangs up), which is logged at debug level.
  {
    auto res = proxy_call(h, {{"Authorization", bearer(kClientProviderKey)}, {"x-fake-close", "immediately"}});
    EXPECT_EQ(res.status, 502) << res.body;
  }
  // The manual logger, with provider keys in its headers and meta.
  {
    json body = manual_log_body("manual answer");
    body["providerRequest"]["meta"]["Authorization"] = bearer(kMetaProviderKey);
    body["providerResponse"]["headers"]["x-api-key"] = kMetaProviderKey;
    auto res = api_raw(h, "POST", "/custom/v1/log", bearer(kKeyA), body.dump(), {{"x-api-key", kClientXApiKey}});
    EXPECT_EQ(res.status, 200) << res.body;
  }
  // Scores (webhook score.created events), a bad key attempt, a test send.
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(api(h, "POST", "/v1/request/" + ids[0] + "/score", kKeyA, R"({"scores":{"quality":1}})").first, 201);
  EXPECT_EQ(api_raw(h, "GET", "/v1/scores", bearer(kClientProviderKey)).status, 401);
  EXPECT_EQ(api(h, "POST", "/v1/webhooks/rx/test", kKeyA).first, 200);

  // Everything delivered and evaluated before the gateway stops.
  ASSERT_TRUE(wait_until([&] { return rx.request_count() >= ids.size() + 2; }, 20s)) << rx.request_count();
  for (const auto& r : rx.requests()) {
    EXPECT_EQ(r.header("authorization"), bearer(kWebhookHeaderToken)) << "the receiver must get its token";
  }
  ASSERT_TRUE(wait_until(
      [&] {
        auto d = api(h, "GET", "/v1/evaluators", kKeyA).second;
        return d.is_object() && d["data"][0]["counters"]["completed"].get<int>() >= 3;
      },
      20s));
  ASSERT_EQ(h.terminate(), std::optional<int>(0));

  std::vector<std::string> found;
  // 1. Raw bytes of every file in the data directory.
  const auto data = h.dir() / "data";
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(data)) {
    if (!entry.is_regular_file()) continue;
    ++files;
    for (auto& f : find_secrets(entry.path().filename().string(), read_all(entry.path()))) found.push_back(f);
  }
  EXPECT_GT(files, 3u);
  // 2. Every key and value of every column family, decompressed by RocksDB.
  {
    auto store = scoring::Store::open(data.string());
    const auto db = *store->lease();
    std::size_t entries = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(scoring::ColumnFamily::kCount); ++i) {
      const auto cf = static_cast<scoring::ColumnFamily>(i);
      std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(rocksdb::ReadOptions(), db.cf(cf)));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        ++entries;
        const std::string where = std::string(scoring::column_family_name(cf));
        for (auto& f : find_secrets(where + " key", it->key().ToStringView())) found.push_back(f);
        for (auto& f : find_secrets(where + " value", it->value().ToStringView())) found.push_back(f);
      }
      EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    }
    EXPECT_GT(entries, ids.size()) << "the scan read nothing: is the data directory right?";
  }
  // 3. The logs.
  for (auto& f : find_secrets("stderr", h.stderr_text())) found.push_back(f);
  std::string out;
  for (const auto& line : h.process().stdout_lines()) out += line + "\n";
  for (auto& f : find_secrets("stdout", out)) found.push_back(f);
  EXPECT_NE(h.stderr_text().find("\"level\":\"debug\""), std::string::npos) << "debug logging was not on";

  EXPECT_EQ(found, std::vector<std::string>{});
  // The scan can find things: the secrets did travel (to the upstream and the receiver).
  bool upstream_saw_key = false, upstream_saw_injected = false;
  for (const auto& r : h.upstream().requests()) {
    upstream_saw_key |= r.header("authorization") == bearer(kClientProviderKey);
    upstream_saw_injected |= r.header("authorization") == bearer(kUpstreamKey);
  }
  EXPECT_TRUE(upstream_saw_key);
  EXPECT_TRUE(upstream_saw_injected);
}

}  // namespace
}  // namespace arbiter::testing
