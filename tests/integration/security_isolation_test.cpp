// Project isolation, for every API endpoint, through the real binary: project
// beta's key against project alpha's objects finds nothing of alpha's (404,
// or an empty list), and a missing or malformed key gets 401. The matrix is a
// table; a second test builds the router exactly as main does and fails when
// a route exists that the table does not cover, so a new endpoint cannot skip
// the matrix. The proxy listener is checked too: beta reusing alpha's request
// id gets its own record and never touches alpha's.

#include <gtest/gtest.h>

#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gateway/api_router.hpp"
#include "gateway/api_routes.hpp"
#include "gateway/config.hpp"
#include "gateway/metrics.hpp"
#include "scoring/evaluator_runtime.hpp"
#include "scoring/request_log.hpp"
#include "scoring/score_store.hpp"
#include "scoring/webhook_service.hpp"
#include "scoring/webhook_transport.hpp"
#include "tests/integration/security_support.hpp"
#include "tests/support/webhook_receiver.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using namespace security;
using nlohmann::json;

// Strings that only alpha's data contains. None may appear in anything beta
// gets back, unless beta sent it itself (an id in the URL is echoed in "request
// <id> not found").
constexpr const char* kPropMarker = "alpha-only-property-7f3c";
constexpr const char* kContentMarker = "alpha-only-content-91ab";
constexpr const char* kScoreName = "alpha_only_quality";
constexpr const char* kTypedScoreId = "alpha-only-typed-score";
constexpr const char* kCommentMarker = "alpha-only-comment-5d2e";
constexpr const char* kConfigName = "alpha_only_config";
constexpr const char* kHookName = "alpha_only_hook";
constexpr const char* kEvalName = "echo_eval";

// Alpha's objects, made once for the whole suite (one gateway).
struct World {
  std::unique_ptr<WebhookReceiver> hook_rx;  // answers 500: alpha's delivery goes dead
  std::unique_ptr<WebhookReceiver> eval_rx;  // answers 400 echoing the event: the run's error quotes alpha's data
  std::unique_ptr<GatewayHarness> h;
  std::string request_id;   // proxied with alpha's key
  std::string logged_id;    // logged with alpha's key through /custom/v1/log
  std::string config_id;    // alpha's score config
  std::string delivery_id;  // alpha's dead webhook delivery

  // `with_config_names`: also the names the operator gave alpha's webhook in
  // the config file. The unauthenticated /metrics is the operator's and labels
  // counters by webhook name; no API response may show them to beta.
  std::vector<std::string> markers(bool with_config_names = true) const {
    std::vector<std::string> out = {kPropMarker, kContentMarker, kScoreName, kTypedScoreId, kCommentMarker,
                                    kConfigName, request_id,     logged_id,  config_id,     delivery_id};
    if (with_config_names) out.push_back(kHookName);
    return out;
  }
};

World* g_world = nullptr;

class Isolation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto w = std::make_unique<World>();
    w->hook_rx = std::make_unique<WebhookReceiver>([](const ReceivedRequest&, std::size_t) {
      return ReceiverReply{500, "no", {}, false};
    });
    w->eval_rx = std::make_unique<WebhookReceiver>([](const ReceivedRequest& r, std::size_t) {
      return ReceiverReply{400, r.body, {}, false};
    });
    w->h = std::make_unique<GatewayHarness>(GatewayOptions{
        .top_extra = "evaluators:\n  - name: " + std::string(kEvalName) +
                     "\n    kind: http\n    params: { url: " + w->eval_rx->url("/evaluate") +
                     ", allow_insecure: true }\nwebhooks:\n  - name: " + kHookName + "\n    url: " +
                     w->hook_rx->url("/hook") +
                     "\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n    allow_insecure: true\n"
                     "    projects: [ alpha ]\n    retry: { max_attempts: 1, initial_backoff_ms: 10, "
                     "max_backoff_ms: 10 }\n"});
    GatewayHarness& h = *w->h;

    json chat = json::parse(GatewayHarness::chat_body());
    chat["messages"][0]["content"] = kContentMarker;
    auto res = proxy_call(h, {{"Helicone-Property-Secret", kPropMarker}, {"Helicone-User-Id", kPropMarker}}, kKeyA,
                          chat.dump());
    ASSERT_EQ(res.status, 200) << res.body;
    w->request_id = res.header("helicone-id").value_or("");
    ASSERT_TRUE(wait_until([&] { return api(h, "GET", "/v1/request/" + w->request_id).first == 200; }, 10s));

    json manual = manual_log_body(kContentMarker);
    manual["providerRequest"]["json"]["messages"][0]["content"] = kContentMarker;
    auto logged = api(h, "POST", "/custom/v1/log", kKeyA, manual.dump());
    ASSERT_EQ(logged.first, 200) << logged.second;
    w->logged_id = logged.second["data"]["request_id"];

    ASSERT_EQ(api(h, "POST", "/v1/request/" + w->request_id + "/score", kKeyA,
                  json{{"scores", {{kScoreName, 7}}}}.dump())
                  .first,
              201);
    ASSERT_EQ(api(h, "POST", "/v1/request/" + w->request_id + "/feedback", kKeyA,
                  json{{"rating", true}, {"ground_truth", kContentMarker}}.dump())
                  .first,
              201);
    auto cfg = api(h, "POST", "/v1/score-configs", kKeyA,
                   json{{"name", kConfigName}, {"data_type", "NUMERIC"}, {"min_value", 0}, {"max_value", 10}}.dump());
    ASSERT_EQ(cfg.first, 201) << cfg.second;
    w->config_id = cfg.second["data"]["id"];
    auto typed = api(h, "POST", "/v1/scores", kKeyA,
                     json{{"id", kTypedScoreId},
                          {"request_id", w->request_id},
                          {"name", kConfigName},
                          {"value", 3},
                          {"comment", kCommentMarker}}
                         .dump());
    ASSERT_EQ(typed.first, 201) << typed.second;

    // Alpha's webhook delivery dies after its one attempt; alpha's evaluator
    // run fails with an error that quotes alpha's event.
    ASSERT_TRUE(wait_until(
        [&] {
          auto d = api(h, "GET", "/v1/webhooks/deliveries?status=dead", kKeyA).second;
          if (!d.is_object() || d["data"]["deliveries"].empty()) return false;
          w->delivery_id = d["data"]["deliveries"][0]["id"];
          return true;
        },
        15s));
    ASSERT_TRUE(wait_until(
        [&] {
          auto d = api(h, "GET", "/v1/evaluators", kKeyA).second;
          return d.is_object() && d["data"][0]["counters"]["last_error"].is_string();
        },
        15s));
    const auto alpha_view = api(h, "GET", "/v1/evaluators", kKeyA).second;
    ASSERT_NE(alpha_view.dump().find(kContentMarker), std::string::npos)
        << "the test needs an evaluator error quoting alpha's data: " << alpha_view;
    g_world = w.release();
  }

  static void TearDownTestSuite() {
    delete g_world;
    g_world = nullptr;
  }

  void SetUp() override { ASSERT_NE(g_world, nullptr) << "suite set-up failed"; }
};

// One request of the matrix: what beta (or a bad key) sends.
struct Probe {
  std::string target;
  std::string body;           // empty: none
  std::set<int> beta_status;  // what beta's key may get
};

struct Row {
  std::string method;   // as ApiRouter::routes() spells it
  std::string pattern;  // likewise
  bool authenticated;
  std::function<std::vector<Probe>(const World&)> probes;
};

std::string id_query(const std::string& id) { return "?request_id=" + id; }

// Every route the router knows, with probes aimed at alpha's objects.
std::vector<Row> matrix() {
  const std::set<int> not_found = {404};
  const std::set<int> ok = {200};
  return {
      {"GET", "/healthz", false, [](const World&) { return std::vector<Probe>{{"/healthz", "", {200}}}; }},
      {"GET", "/metrics", false, [](const World&) { return std::vector<Probe>{{"/metrics", "", {200}}}; }},
      {"GET", "/v1/request/{}", true,
       [=](const World& w) {
         return std::vector<Probe>{{"/v1/request/" + w.request_id, "", not_found},
                                   {"/v1/request/" + w.request_id + "?includeBody=true", "", not_found},
                                   {"/v1/request/" + w.logged_id, "", not_found}};
       }},
      {"POST", "/v1/request/query", true,
       [=](const World&) {
         return std::vector<Probe>{
             {"/v1/request/query", "{}", ok},
             {"/v1/request/query",
              json{{"filter", {{"request_response_rmt", {{"properties.secret", {{"equals", kPropMarker}}}}}}}}.dump(),
              ok}};
       }},
      {"POST", "/v1/request/{}/score", true,
       [=](const World& w) {
         return std::vector<Probe>{
             {"/v1/request/" + w.request_id + "/score", json{{"scores", {{"beta_score", 1}}}}.dump(), not_found}};
       }},
      {"POST", "/v1/request/{}/feedback", true,
       [=](const World& w) {
         return std::vector<Probe>{
             {"/v1/request/" + w.request_id + "/feedback", json{{"rating", false}}.dump(), not_found}};
       }},
      {"POST", "/v1/scores", true,
       [=](const World& w) {
         return std::vector<Probe>{
             {"/v1/scores", json{{"request_id", w.request_id}, {"name", "beta_score"}, {"value", 1}}.dump(),
              not_found},
             {"/v1/scores", json{{"request_id", w.logged_id}, {"name", "beta_score"}, {"value", 1}}.dump(),
              not_found}};
       }},
      {"GET", "/v1/scores", true,
       [=](const World& w) {
         return std::vector<Probe>{{"/v1/scores", "", ok},
                                   {"/v1/scores" + id_query(w.request_id), "", ok},
                                   {"/v1/scores?name=" + std::string(kScoreName), "", ok}};
       }},
      {"DELETE", "/v1/scores/{}", true,
       [=](const World&) {
         return std::vector<Probe>{{"/v1/scores/" + std::string(kTypedScoreId), "", not_found}};
       }},
      {"POST", "/v1/score-configs", true,
       [=](const World&) {
         // (Beta reusing alpha's config name: BetaReusingAlphasIdsAndNamesGetsItsOwnObjects.)
         return std::vector<Probe>{
             {"/v1/score-configs", json{{"name", "beta_config"}, {"data_type", "BOOLEAN"}}.dump(), {201}}};
       }},
      {"GET", "/v1/score-configs", true,
       [=](const World&) { return std::vector<Probe>{{"/v1/score-configs", "", ok}}; }},
      {"GET", "/v1/evals/scores", true,
       [=](const World&) { return std::vector<Probe>{{"/v1/evals/scores", "", ok}}; }},
      {"POST", "/v1/evals/query", true,
       [=](const World&) { return std::vector<Probe>{{"/v1/evals/query", "{}", ok}}; }},
      {"POST", "/v1/evals/score-distributions/query", true,
       [=](const World&) { return std::vector<Probe>{{"/v1/evals/score-distributions/query", "{}", ok}}; }},
      {"POST", "/custom/v1/log", true,
       [=](const World&) { return std::vector<Probe>{{"/custom/v1/log", manual_log_body("beta").dump(), ok}}; }},
      {"POST", "/oai/v1/log", true,
       [=](const World&) { return std::vector<Probe>{{"/oai/v1/log", manual_log_body("beta").dump(), ok}}; }},
      {"POST", "/anthropic/v1/log", true,
       [=](const World&) {
         return std::vector<Probe>{{"/anthropic/v1/log", manual_log_body("beta").dump(), ok}};
       }},
      {"POST", "/googleapis/v1/log", true,
       [=](const World&) {
         return std::vector<Probe>{{"/googleapis/v1/log", manual_log_body("beta").dump(), ok}};
       }},
      {"GET", "/v1/evaluators", true, [=](const World&) { return std::vector<Probe>{{"/v1/evaluators", "", ok}}; }},
      {"GET", "/v1/evaluators/runs", true,
       [=](const World& w) {
         return std::vector<Probe>{{"/v1/evaluators/runs" + id_query(w.request_id), "", ok}};
       }},
      {"POST", "/v1/evaluators/{}/run", true,
       [=](const World& w) {
         return std::vector<Probe>{{"/v1/evaluators/" + std::string(kEvalName) + "/run",
                                    json{{"request_id", w.request_id}}.dump(), not_found},
                                   {"/v1/evaluators/" + std::string(kEvalName) + "/run",
                                    json{{"request_id", w.request_id}, {"store", true}}.dump(), not_found}};
       }},
      {"GET", "/v1/webhooks", true, [=](const World&) { return std::vector<Probe>{{"/v1/webhooks", "", ok}}; }},
      {"GET", "/v1/webhooks/deliveries", true,
       [=](const World& w) {
         return std::vector<Probe>{{"/v1/webhooks/deliveries", "", ok},
                                   {"/v1/webhooks/deliveries?status=dead", "", ok},
                                   {"/v1/webhooks/deliveries" + id_query(w.request_id), "", ok},
                                   {"/v1/webhooks/deliveries?webhook=" + std::string(kHookName), "", {400}}};
       }},
      {"POST", "/v1/webhooks/{}/test", true,
       [=](const World&) {
         return std::vector<Probe>{{"/v1/webhooks/" + std::string(kHookName) + "/test", "", not_found}};
       }},
      {"POST", "/v1/webhooks/deliveries/{}/retry", true,
       [=](const World& w) {
         return std::vector<Probe>{{"/v1/webhooks/deliveries/" + w.delivery_id + "/retry", "", not_found}};
       }},
  };
}

// Markers of alpha's that beta did not send itself.
std::vector<std::string> leaked(const World& w, const Probe& p, const std::string& response,
                                bool with_config_names = true) {
  std::vector<std::string> out;
  for (const auto& m : w.markers(with_config_names)) {
    if (m.empty() || p.target.find(m) != std::string::npos || p.body.find(m) != std::string::npos) continue;
    if (response.find(m) != std::string::npos) out.push_back(m);
  }
  return out;
}

// Authorization values that select no project.
std::vector<std::optional<std::string>> bad_keys() {
  return {std::nullopt,
          std::string(""),
          std::string("Bearer"),
          std::string("Bearer "),
          std::string("Bearer    "),
          std::string("Bearer not-a-key"),
          std::string("Basic ") + "dGVzdC1rZXktcHJvamVjdC1hOg==",  // base64("test-key-project-a:")
          std::string("Token ") + kKeyA,
          std::string(kKeyA),  // no scheme
          std::string("Bearer ") + kKeyA + "x",
          std::string("Bearer ") + std::string(kKeyA).substr(1),
          std::string("Bearer ") + kKeyA + " " + kKeyA,
          std::string("Bearer ") + std::string(16 * 1024, 'k'),
          std::string("Bearer ") + sha256_hex(kKeyB)};  // the configured digest is not the key
}

TEST_F(Isolation, EveryEndpointHidesAlphasObjectsFromBetaAndRefusesBadKeys) {
  const World& w = *g_world;
  for (const Row& row : matrix()) {
    for (const Probe& p : row.probes(w)) {
      SCOPED_TRACE(row.method + " " + p.target);
      // Beta's key: the expected status, nothing of alpha's.
      auto res = api_raw(*w.h, row.method, p.target, bearer(kKeyB), p.body);
      EXPECT_TRUE(p.beta_status.count(res.status)) << "beta got " << res.status << ": " << res.body;
      EXPECT_EQ(leaked(w, p, res.body, row.authenticated), std::vector<std::string>{}) << res.body;
      for (const auto& [name, value] : res.headers) {
        EXPECT_EQ(leaked(w, p, value), std::vector<std::string>{}) << name;
      }
      if (!row.authenticated) {
        EXPECT_EQ(api_raw(*w.h, row.method, p.target, std::nullopt, p.body).status, 200);
        continue;
      }
      // No key, or one that selects no project: 401 before anything is read,
      // and the 401 does not echo what was sent.
      for (const auto& key : bad_keys()) {
        auto bad = api_raw(*w.h, row.method, p.target, key, p.body);
        EXPECT_EQ(bad.status, 401) << "Authorization: " << key.value_or("<none>").substr(0, 40) << " → " << bad.body;
        EXPECT_EQ(leaked(w, p, bad.body), std::vector<std::string>{});
        if (key && key->size() > 12) {
          EXPECT_EQ(bad.body.find(key->substr(7)), std::string::npos) << "the key is echoed: " << bad.body;
        }
        const json envelope = json::parse(bad.body, nullptr, false);
        EXPECT_TRUE(envelope.is_object() && envelope["data"].is_null() && envelope["error"].is_string())
            << bad.body;
      }
      // The proxy's header is not an API key.
      auto helicone = api_raw(*w.h, row.method, p.target, std::nullopt, p.body,
                              {{"Helicone-Auth", bearer(kKeyA)}});
      EXPECT_EQ(helicone.status, 401) << helicone.body;
    }
  }
}

TEST_F(Isolation, AlphasObjectsAreIntactAfterBetasAttempts) {
  const World& w = *g_world;
  // Run the matrix's writes once more, so that this test does not depend on order.
  for (const Row& row : matrix()) {
    if (row.method == "GET") continue;
    for (const Probe& p : row.probes(w)) (void)api_raw(*w.h, row.method, p.target, bearer(kKeyB), p.body);
  }
  auto [status, rec] = api(*w.h, "GET", "/v1/request/" + w.request_id + "?includeBody=true");
  ASSERT_EQ(status, 200) << rec;
  EXPECT_EQ(rec["data"]["properties"]["secret"], kPropMarker);
  EXPECT_EQ(rec["data"]["scores"][kScoreName], 7) << rec;
  auto scores = api(*w.h, "GET", "/v1/scores" + id_query(w.request_id) + "&limit=100").second;
  std::map<std::string, json> by_name;
  for (const auto& s : scores["data"]["scores"]) by_name[s["name"]] = s;
  ASSERT_TRUE(by_name.count(kConfigName)) << scores;
  EXPECT_EQ(by_name[kConfigName]["id"], kTypedScoreId);
  EXPECT_EQ(by_name[kConfigName]["value"], 3);
  EXPECT_EQ(by_name[kConfigName]["comment"], kCommentMarker);
  EXPECT_FALSE(by_name.count("beta_score"));
  auto configs = api(*w.h, "GET", "/v1/score-configs").second["data"];
  ASSERT_EQ(configs.size(), 1u) << configs;
  EXPECT_EQ(configs[0]["data_type"], "NUMERIC");
  auto dead = api(*w.h, "GET", "/v1/webhooks/deliveries?status=dead&limit=100").second["data"]["deliveries"];
  EXPECT_NE(dead.dump().find(w.delivery_id), std::string::npos) << dead;
  EXPECT_EQ(api(*w.h, "GET", "/v1/request/" + w.logged_id).first, 200);
  // Beta's score config of the same name is beta's own.
  auto beta_configs = api(*w.h, "GET", "/v1/score-configs", kKeyB).second["data"];
  ASSERT_EQ(beta_configs.size(), 1u);
  EXPECT_EQ(beta_configs[0]["data_type"], "BOOLEAN");
}

TEST_F(Isolation, BetaReusingAlphasIdsAndNamesGetsItsOwnObjects) {
  const World& w = *g_world;
  // Through the proxy.
  auto res = proxy_call(*w.h, {{"Helicone-Request-Id", w.request_id}, {"Helicone-Property-Secret", "beta-value"}},
                        kKeyB);
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.header("helicone-id"), w.request_id);
  ASSERT_TRUE(wait_until([&] { return api(*w.h, "GET", "/v1/request/" + w.request_id, kKeyB).first == 200; }, 10s));
  EXPECT_EQ(api(*w.h, "GET", "/v1/request/" + w.request_id, kKeyB).second["data"]["properties"]["secret"],
            "beta-value");
  EXPECT_EQ(api(*w.h, "GET", "/v1/request/" + w.request_id).second["data"]["properties"]["secret"], kPropMarker);
  // Through the manual logger.
  Headers headers = {{"Helicone-Request-Id", w.logged_id}, {"Helicone-Property-Secret", "beta-logged"}};
  auto logged = api_raw(*w.h, "POST", "/custom/v1/log", bearer(kKeyB), manual_log_body("beta output").dump(), headers);
  ASSERT_EQ(logged.status, 200) << logged.body;
  EXPECT_EQ(api(*w.h, "GET", "/v1/request/" + w.logged_id, kKeyB).second["data"]["properties"]["secret"],
            "beta-logged");
  auto alpha = api(*w.h, "GET", "/v1/request/" + w.logged_id + "?includeBody=true").second["data"];
  EXPECT_TRUE(alpha["properties"].empty()) << alpha;
  EXPECT_NE(alpha.dump().find(kContentMarker), std::string::npos) << alpha;
  // Beta's scores land on beta's record, alpha's stay alpha's.
  ASSERT_EQ(api(*w.h, "POST", "/v1/request/" + w.request_id + "/score", kKeyB,
                json{{"scores", {{kScoreName, 1}}}}.dump())
                .first,
            201);
  EXPECT_EQ(api(*w.h, "GET", "/v1/request/" + w.request_id).second["data"]["scores"][kScoreName], 7);
  // Score config names are per project: alpha's name is free for beta (no
  // 409 that would tell beta it exists elsewhere), and alpha's stays as it was.
  auto same_name = api(*w.h, "POST", "/v1/score-configs", kKeyB,
                       json{{"name", kConfigName}, {"data_type", "BOOLEAN"}}.dump());
  EXPECT_EQ(same_name.first, 201) << same_name.second;
  auto alpha_configs = api(*w.h, "GET", "/v1/score-configs").second["data"];
  ASSERT_EQ(alpha_configs.size(), 1u) << alpha_configs;
  EXPECT_EQ(alpha_configs[0]["data_type"], "NUMERIC");
  // The typed-score id space is per project too.
  auto typed = api(*w.h, "POST", "/v1/scores", kKeyB,
                   json{{"id", kTypedScoreId}, {"request_id", w.request_id}, {"name", "beta_score"}, {"value", 2}}
                       .dump());
  EXPECT_EQ(typed.first, 201) << typed.second;
  auto alpha_scores = api(*w.h, "GET", "/v1/scores" + id_query(w.request_id) + "&limit=100").second;
  EXPECT_EQ(alpha_scores.dump().find("beta_score"), std::string::npos) << alpha_scores;
  // Beta's calls are not delivered to alpha's webhook: a later call of
  // alpha's arrives there, beta's never do.
  auto sentinel = proxy_call(*w.h, {{"Helicone-Property-Sentinel", "alpha-sentinel"}});
  ASSERT_EQ(sentinel.status, 200);
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& r : w.hook_rx->requests()) {
          if (r.body.find("alpha-sentinel") != std::string::npos) return true;
        }
        return false;
      },
      15s));
  for (const auto& r : w.hook_rx->requests()) {
    EXPECT_EQ(r.body.find("beta-"), std::string::npos) << r.body.substr(0, 300);
  }
}

TEST_F(Isolation, TheProxyRefusesMissingAndMalformedGatewayKeys) {
  const World& w = *g_world;
  const std::vector<std::optional<std::string>> keys = {
      std::nullopt, std::string(""), std::string("Bearer "), std::string("Bearer nope"),
      std::string("Bearer ") + std::string(16 * 1024, 'k'), std::string("Basic ") + kKeyA,
      std::string("Bearer ") + sha256_hex(kKeyB)};
  const auto before = w.h->upstream().request_count();
  for (const auto& key : keys) {
    Headers headers = {{"Content-Type", "application/json"}};
    if (key) headers.emplace_back("Helicone-Auth", *key);
    auto res = w.h->proxy_client().request("POST", "/v1/chat/completions", headers, GatewayHarness::chat_body());
    EXPECT_EQ(res.status, 401) << key.value_or("<none>").substr(0, 40) << ": " << res.body;
    EXPECT_EQ(res.body.find("kkkkkkkk"), std::string::npos);
  }
  EXPECT_EQ(w.h->upstream().request_count(), before) << "an unauthorised call reached the upstream";
}

// The router main builds, walked route by route: every route must have a
// row in matrix(), and every row a route (no stale rows).
TEST(IsolationCoverage, TheMatrixCoversEveryRouteTheRouterKnows) {
  TempDir dir;
  auto config = gateway::load_config_from_string(
      "upstreams:\n  - name: openai\n    base_url: http://127.0.0.1:9\nprojects:\n  - name: alpha\n"
      "    api_keys: [\"k\"]\n",
      "coverage.yaml");
  scoring::RequestLogOptions lo;
  lo.path = (dir.path() / "data").string();
  scoring::RequestLog log(std::move(lo));
  scoring::ScoreStore scores(log);
  scoring::EvaluatorRuntime evaluators(log, scores, scoring::EvaluatorRuntimeOptions{});
  scoring::WebhookService webhooks(log, scoring::WebhookServiceOptions{}, scoring::make_outbound_transport());
  gateway::Metrics metrics;
  gateway::ApiRouter router(config, metrics);
  gateway::register_api_routes(router, gateway::ApiServices{log, scores, evaluators, webhooks, config});

  std::set<std::string> routes, rows;
  for (const auto& r : router.routes()) {
    routes.insert(r.method + " " + r.pattern);
    // Everything but liveness and metrics needs a project key.
    const bool public_route = r.pattern == "/healthz" || r.pattern == "/metrics";
    EXPECT_EQ(r.authenticated, !public_route) << r.method << " " << r.pattern;
  }
  for (const auto& row : matrix()) {
    rows.insert(row.method + " " + row.pattern);
  }
  for (const auto& r : routes) EXPECT_TRUE(rows.count(r)) << "route not in the isolation matrix: " << r;
  for (const auto& r : rows) EXPECT_TRUE(routes.count(r)) << "matrix row for a route that does not exist: " << r;
  EXPECT_GE(routes.size(), 20u);

  evaluators.stop();
  scores.stop();
  webhooks.stop();
  ASSERT_TRUE(log.close().ok());
}

}  // namespace
}  // namespace arbiter::testing
