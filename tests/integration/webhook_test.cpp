// Webhooks end to end: the real binary, a fake upstream, and receivers on real
// sockets. Delivery with signatures and payloads, retries to a flaky
// receiver, dead-lettering and re-queueing over the API, a SIGKILL with
// deliveries outstanding, a hanging receiver next to the proxy and another
// receiver, the SSRF guard, score events, filters, the test endpoint and the
// API's bad inputs.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "scoring/webhook_signing.hpp"
#include "tests/support/gateway_harness.hpp"
#include "tests/support/test_cert.hpp"
#include "tests/support/webhook_receiver.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// One webhooks: item; `extra` lines are indented by 4.
std::string hook(const std::string& name, const std::string& url, const std::string& extra = "",
                 bool insecure = true) {
  return "  - name: " + name + "\n    url: " + url + "\n    secret: " + kSecret + "\n" +
         (insecure ? "    allow_insecure: true\n" : "") + extra;
}

constexpr const char* kFastRetry = "    retry: { max_attempts: 3, initial_backoff_ms: 10, max_backoff_ms: 50 }\n";

std::string call(GatewayHarness& h, Headers extra = {}, std::string body = GatewayHarness::chat_body()) {
  auto c = h.proxy_client();
  extra.emplace_back("Content-Type", "application/json");
  auto res = c.request("POST", "/v1/chat/completions", GatewayHarness::auth(std::move(extra)), std::move(body));
  EXPECT_EQ(res.status, 200);
  return res.header("helicone-id").value_or("");
}

std::pair<int, json> api(GatewayHarness& h, const std::string& method, const std::string& target,
                         const char* key = kKeyA, std::string body = {}) {
  Headers headers = GatewayHarness::api_auth(key);
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  auto res = h.api_client().request(method, target, headers, std::move(body));
  json parsed = json::parse(res.body, nullptr, false);
  return {res.status, parsed};
}

json deliveries(GatewayHarness& h, const std::string& query, const char* key = kKeyA) {
  auto [status, body] = api(h, "GET", "/v1/webhooks/deliveries" + query, key);
  EXPECT_EQ(status, 200) << body.dump();
  return body["data"]["deliveries"];
}

bool verify_signatures(const ReceivedRequest& r) {
  const auto id = r.header("webhook-id");
  const auto ts = r.header("webhook-timestamp");
  const auto sig = r.header("webhook-signature");
  const auto helicone = r.header("helicone-signature");
  if (!id || !ts || !sig || !helicone) return false;
  const std::string key = *scoring::decode_webhook_secret(kSecret);
  return *sig == scoring::standard_webhook_signature(key, *id, std::stoll(*ts), r.body) &&
         *helicone == scoring::helicone_signature(kSecret, r.body);
}

TEST(Webhooks, DeliversRequestLoggedSignedWithBodies) {
  WebhookReceiver rx;
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("rx", rx.url("/hook?token=t0ps3cret"), kFastRetry)});
  const std::string id = call(h, {{"Helicone-Property-Env", "prod"}, {"Helicone-User-Id", "user-9"}});
  ASSERT_TRUE(wait_until([&] { return rx.request_count() == 1; }, 10s));
  const ReceivedRequest got = rx.requests().at(0);
  EXPECT_EQ(got.method, "POST");
  EXPECT_EQ(got.target, "/hook?token=t0ps3cret");
  EXPECT_EQ(got.header("content-type"), "application/json");
  EXPECT_TRUE(verify_signatures(got));
  const json body = json::parse(got.body);
  EXPECT_EQ(body["event"], "request.logged");
  EXPECT_EQ(body["request_id"], id);
  EXPECT_EQ(body["user_id"], "user-9");
  EXPECT_EQ(body["provider"], "openai");
  EXPECT_EQ(body["properties"], json({{"env", "prod"}}));
  ASSERT_TRUE(body["request_body"].is_object());
  EXPECT_EQ(body["request_body"], json::parse(GatewayHarness::chat_body()));
  ASSERT_TRUE(body["response_body"].is_object());
  EXPECT_EQ(body["metadata"]["totalTokens"], body["response_body"]["usage"]["total_tokens"]);
  EXPECT_TRUE(body["metadata"]["latencyMs"].is_number());

  // The outbox shows it delivered, with the attempt.
  ASSERT_TRUE(wait_until([&] { return deliveries(h, "?status=delivered").size() == 1; }, 10s));
  const json d = deliveries(h, "?request_id=" + id).at(0);
  EXPECT_EQ(d["id"], *got.header("webhook-id"));
  EXPECT_EQ(d["webhook"], "rx");
  EXPECT_EQ(d["event"], "request.logged");
  EXPECT_EQ(d["attempts"].size(), 1u);
  EXPECT_EQ(d["attempts"][0]["status_code"], 200);
  EXPECT_TRUE(d["next_attempt_at"].is_null());

  // The hook list: counters, and no secret, header value or URL token.
  auto [status, hooks] = api(h, "GET", "/v1/webhooks");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(hooks["data"].size(), 1u);
  EXPECT_EQ(hooks["data"][0]["counters"]["delivered"], 1);
  EXPECT_EQ(hooks["data"][0]["counters"]["pending"], 0);
  const std::string text = hooks.dump();
  EXPECT_EQ(text.find("whsec_"), std::string::npos);
  EXPECT_EQ(text.find("t0ps3cret"), std::string::npos);
  EXPECT_EQ(h.metric("arbiter_webhook_delivered_total{webhook=\"rx\"}"), 1);
  // Nor does the secret reach the log.
  EXPECT_EQ(h.stderr_text().find("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), std::string::npos);
}

TEST(Webhooks, WithoutBodiesAndForStreams) {
  WebhookReceiver rx;
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("thin", rx.url(), "    include_bodies: false\n") +
                                 hook("full", rx.url("/full"))});
  call(h, {}, GatewayHarness::chat_body(/*stream=*/true, /*usage=*/true));
  ASSERT_TRUE(wait_until([&] { return rx.request_count() == 2; }, 10s));
  for (const auto& r : rx.requests()) {
    const json body = json::parse(r.body);
    if (r.target == "/hook") {
      EXPECT_FALSE(body.contains("request_body"));
      EXPECT_FALSE(body.contains("response_body"));
    } else {
      // The stream's reassembled completion, as an object.
      ASSERT_TRUE(body["response_body"].is_object()) << body.dump();
      EXPECT_TRUE(body["response_body"].contains("choices"));
      EXPECT_TRUE(body["metadata"]["totalTokens"].is_number());
    }
  }
}

TEST(Webhooks, AFlakyReceiverGetsItOnceItRecovers) {
  WebhookReceiver rx([](const ReceivedRequest&, std::size_t index) {
    return index < 2 ? ReceiverReply{503, "busy"} : ReceiverReply{200, "ok"};
  });
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("rx", rx.url(), kFastRetry)});
  const std::string id = call(h);
  ASSERT_TRUE(wait_until([&] { return deliveries(h, "?status=delivered").size() == 1; }, 10s));
  const json d = deliveries(h, "?request_id=" + id).at(0);
  ASSERT_EQ(d["attempts"].size(), 3u);
  EXPECT_EQ(d["attempts"][0]["status_code"], 503);
  EXPECT_EQ(d["attempts"][0]["error"], "HTTP 503: busy");
  EXPECT_EQ(d["attempts"][1]["status_code"], 503);
  EXPECT_EQ(d["attempts"][2]["status_code"], 200);
  EXPECT_TRUE(d["attempts"][2]["error"].is_null());
  const auto got = rx.requests();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& r : got) {
    EXPECT_EQ(r.header("webhook-id"), d["id"].get<std::string>());
    EXPECT_EQ(r.body, got[0].body);
    EXPECT_TRUE(verify_signatures(r));
  }
}

TEST(Webhooks, ADeadDeliveryIsVisibleAndCanBeRequeued) {
  WebhookReceiver rx([](const ReceivedRequest&, std::size_t) { return ReceiverReply{500, "down"}; });
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("rx", rx.url(), kFastRetry)});
  call(h);
  ASSERT_TRUE(wait_until([&] { return deliveries(h, "?status=dead").size() == 1; }, 10s));
  const json dead = deliveries(h, "?status=dead").at(0);
  EXPECT_EQ(dead["attempt_count"], 3);
  EXPECT_EQ(rx.request_count(), 3u);
  auto [s1, hooks] = api(h, "GET", "/v1/webhooks");
  EXPECT_EQ(hooks["data"][0]["counters"]["dead"], 1);
  const std::string retry = "/v1/webhooks/deliveries/" + dead["id"].get<std::string>() + "/retry";

  EXPECT_EQ(api(h, "POST", retry, kKeyB).first, 404) << "another project's delivery";
  EXPECT_EQ(api(h, "POST", "/v1/webhooks/deliveries/msg_00000000000000000000000000000000/retry").first, 404);
  EXPECT_EQ(api(h, "POST", "/v1/webhooks/deliveries/not-an-id/retry").first, 404);

  rx.set_responder([](const ReceivedRequest&, std::size_t) { return ReceiverReply{}; });
  auto [status, requeued] = api(h, "POST", retry);
  ASSERT_EQ(status, 200) << requeued.dump();
  EXPECT_EQ(requeued["data"]["status"], "pending");
  ASSERT_TRUE(wait_until([&] { return deliveries(h, "?status=delivered").size() == 1; }, 10s));
  EXPECT_EQ(deliveries(h, "?status=delivered").at(0)["attempt_count"], 4);
  auto [again, conflict] = api(h, "POST", retry);
  EXPECT_EQ(again, 409);
  EXPECT_NE(conflict["error"].get<std::string>().find("only dead deliveries"), std::string::npos);
}

TEST(Webhooks, SigkillWithDeliveriesOutstandingLosesNone) {
  // The receiver hangs: every attempt is in flight (max_in_flight of them)
  // or queued when the gateway is killed.
  WebhookReceiver rx([](const ReceivedRequest&, std::size_t) { return ReceiverReply{.hang = true}; });
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("rx", rx.url(), "    timeout_ms: 60000\n    max_in_flight: 2\n")});
  std::set<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.insert(call(h));
  ASSERT_TRUE(wait_until(
      [&] {
        auto [s, hooks] = api(h, "GET", "/v1/webhooks");
        return s == 200 && hooks["data"][0]["counters"]["pending"] == 6;
      },
      10s));
  ASSERT_TRUE(wait_until([&] { return rx.request_count() == 2; }, 10s));
  h.kill();

  rx.set_responder([](const ReceivedRequest&, std::size_t) { return ReceiverReply{}; });
  h.restart();
  ASSERT_TRUE(wait_until([&] { return deliveries(h, "?status=delivered").size() == 6; }, 20s));
  std::set<std::string> delivered_requests, webhook_ids;
  for (const auto& r : rx.requests()) {
    const auto body = json::parse(r.body);
    delivered_requests.insert(body["request_id"].get<std::string>());
    webhook_ids.insert(r.header("webhook-id").value_or(""));
  }
  EXPECT_EQ(delivered_requests, ids);
  EXPECT_EQ(webhook_ids.size(), 6u) << "duplicates reuse their webhook-id";
}

TEST(Webhooks, AHangingReceiverSlowsNeitherTheProxyNorAnotherWebhook) {
  WebhookReceiver slow([](const ReceivedRequest&, std::size_t) { return ReceiverReply{.hang = true}; });
  WebhookReceiver fast;
  GatewayHarness h({.top_extra = "webhooks:\n" +
                                 hook("slow", slow.url(), "    timeout_ms: 60000\n    max_in_flight: 2\n") +
                                 hook("fast", fast.url())});
  constexpr int kCalls = 20;
  for (int i = 0; i < kCalls; ++i) call(h);  // each asserts a 200
  ASSERT_TRUE(wait_until([&] { return fast.request_count() == kCalls; }, 20s));
  // The receiver has every request a moment before the gateway has recorded
  // every answer: wait for the counters too.
  json counters;
  auto counters_of = [&](const std::string& name) {
    auto [s, hooks] = api(h, "GET", "/v1/webhooks");
    for (const auto& w : hooks["data"]) {
      if (w["name"] == name) return w["counters"];
    }
    return json();
  };
  EXPECT_TRUE(wait_until([&] { return (counters = counters_of("fast"))["delivered"] == kCalls; }, 20s))
      << counters.dump();
  EXPECT_EQ(slow.request_count(), 2u);  // its own in-flight slots, no more
  EXPECT_EQ(h.metric("arbiter_webhook_in_flight{webhook=\"slow\"}"), 2);
  EXPECT_EQ(counters_of("slow")["pending"], kCalls);
}

TEST(Webhooks, LoopbackIsRefusedWithoutAllowInsecure) {
  const TestCert cert = make_self_signed_cert();
  WebhookReceiverOptions tls;
  tls.tls = true;
  tls.cert_pem = cert.cert_pem;
  tls.key_pem = cert.key_pem;
  WebhookReceiver rx({}, tls);
  TempDir dir;
  write_file(dir.path() / "ca.pem", cert.cert_pem);
  GatewayHarness h({.top_extra = "webhooks:\n" +
                                 hook("guarded", rx.url(),
                                      "    ca_file: " + (dir.path() / "ca.pem").string() +
                                          "\n    retry: { max_attempts: 1, initial_backoff_ms: 10, max_backoff_ms: 10 }\n",
                                      /*insecure=*/false)});
  call(h);
  ASSERT_TRUE(wait_until([&] { return deliveries(h, "?status=dead").size() == 1; }, 10s));
  const json d = deliveries(h, "?status=dead").at(0);
  const std::string error = d["attempts"][0]["error"];
  EXPECT_NE(error.find("private address 127.0.0.1"), std::string::npos) << error;
  EXPECT_TRUE(d["attempts"][0]["status_code"].is_null());
  auto [status, test] = api(h, "POST", "/v1/webhooks/guarded/test");
  ASSERT_EQ(status, 200);
  EXPECT_FALSE(test["data"]["ok"].get<bool>());
  EXPECT_NE(test["data"]["error"].get<std::string>().find("private address"), std::string::npos);
  EXPECT_EQ(rx.request_count(), 0u);
}

TEST(Webhooks, HttpsReceiverWithAllowInsecureIsReached) {
  const TestCert cert = make_self_signed_cert();
  WebhookReceiverOptions tls;
  tls.tls = true;
  tls.cert_pem = cert.cert_pem;
  tls.key_pem = cert.key_pem;
  WebhookReceiver rx({}, tls);
  TempDir dir;
  write_file(dir.path() / "ca.pem", cert.cert_pem);
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("tls", rx.url(), "    ca_file: " + (dir.path() / "ca.pem").string() + "\n")});
  call(h);
  ASSERT_TRUE(wait_until([&] { return rx.request_count() == 1; }, 10s));
  EXPECT_TRUE(verify_signatures(rx.requests().at(0)));
}

TEST(Webhooks, ScoreSubmissionsAreDeliveredAsScoreCreated) {
  WebhookReceiver rx;
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("scores", rx.url(), "    events: [ score.created ]\n")});
  const std::string id = call(h);
  ASSERT_TRUE(wait_until([&] { return api(h, "GET", "/v1/request/" + id).first == 200; }, 10s));
  auto [status, res] = api(h, "POST", "/v1/request/" + id + "/score", kKeyA, R"({"scores": {"accuracy": 90}})");
  ASSERT_EQ(status, 201) << res.dump();
  ASSERT_TRUE(wait_until([&] { return rx.request_count() == 1; }, 10s));
  const json body = json::parse(rx.requests().at(0).body);
  EXPECT_EQ(body["event"], "score.created");
  EXPECT_EQ(body["request_id"], id);
  ASSERT_EQ(body["scores"].size(), 1u);
  EXPECT_EQ(body["scores"][0]["name"], "accuracy");
  EXPECT_EQ(body["scores"][0]["value"], 90);
}

TEST(Webhooks, PropertyFiltersAndSampling) {
  WebhookReceiver rx;
  GatewayHarness h({.top_extra = "webhooks:\n" +
                                 hook("prod", rx.url("/prod"), "    property_filters: { env: prod }\n") +
                                 hook("never", rx.url("/never"), "    sample_rate: 0\n")});
  const std::string prod = call(h, {{"Helicone-Property-Env", "prod"}});
  const std::string dev = call(h, {{"Helicone-Property-Env", "dev"}});
  call(h);
  ASSERT_TRUE(wait_until([&] { return rx.request_count() >= 1; }, 10s));
  // The records are all stored; only the prod one had a delivery.
  ASSERT_TRUE(wait_until([&] { return api(h, "GET", "/v1/request/" + dev).first == 200; }, 10s));
  EXPECT_EQ(deliveries(h, "").size(), 1u);
  ASSERT_EQ(rx.request_count(), 1u);
  EXPECT_EQ(rx.requests().at(0).target, "/prod");
  EXPECT_EQ(json::parse(rx.requests().at(0).body)["request_id"], prod);
}

TEST(Webhooks, TestEndpointSendsASampleNow) {
  WebhookReceiver rx([](const ReceivedRequest&, std::size_t) { return ReceiverReply{202, "thanks"}; });
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("rx", rx.url()) +
                                 hook("beta-only", rx.url("/b"), "    projects: [ beta ]\n")});
  auto [status, res] = api(h, "POST", "/v1/webhooks/rx/test");
  ASSERT_EQ(status, 200) << res.dump();
  EXPECT_TRUE(res["data"]["ok"].get<bool>());
  EXPECT_EQ(res["data"]["status_code"], 202);
  EXPECT_EQ(res["data"]["body"], "thanks");
  ASSERT_EQ(rx.request_count(), 1u);
  const auto got = rx.requests().at(0);
  EXPECT_TRUE(verify_signatures(got));
  EXPECT_EQ(got.header("webhook-id"), res["data"]["webhook_id"].get<std::string>());
  EXPECT_TRUE(json::parse(got.body)["test"].get<bool>());
  EXPECT_TRUE(deliveries(h, "").empty()) << "a test send is not stored";

  EXPECT_EQ(api(h, "POST", "/v1/webhooks/nope/test").first, 404);
  EXPECT_EQ(api(h, "POST", "/v1/webhooks/beta-only/test").first, 404) << "scoped to another project";
  EXPECT_EQ(api(h, "POST", "/v1/webhooks/beta-only/test", kKeyB).first, 200);
  auto [s2, alpha_hooks] = api(h, "GET", "/v1/webhooks");
  EXPECT_EQ(alpha_hooks["data"].size(), 1u);
  auto [s3, beta_hooks] = api(h, "GET", "/v1/webhooks", kKeyB);
  EXPECT_EQ(beta_hooks["data"].size(), 2u);
}

TEST(Webhooks, ApiRejectsBadInputAndSeparatesProjects) {
  WebhookReceiver rx;
  GatewayHarness h({.top_extra = "webhooks:\n" + hook("rx", rx.url())});
  const std::string id = call(h);
  ASSERT_TRUE(wait_until([&] { return deliveries(h, "?status=delivered").size() == 1; }, 10s));
  EXPECT_TRUE(deliveries(h, "", kKeyB).empty()) << "beta sees none of alpha's deliveries";
  EXPECT_TRUE(deliveries(h, "?request_id=" + id, kKeyB).empty());

  auto expect_400 = [&](const std::string& query, const std::string& words) {
    auto [status, body] = api(h, "GET", "/v1/webhooks/deliveries" + query);
    EXPECT_EQ(status, 400) << query;
    EXPECT_NE(body["error"].get<std::string>().find(words), std::string::npos) << body.dump();
  };
  expect_400("?status=lost", "status");
  expect_400("?limit=0", "limit");
  expect_400("?limit=abc", "limit");
  expect_400("?webhook=nope", "webhook");
  expect_400("?request_id=a%20b", "request_id");
  expect_400("?cursor=garbage", "cursor");

  auto unauth = h.api_client().request("GET", "/v1/webhooks");
  EXPECT_EQ(unauth.status, 401);
  auto wrong = h.api_client().request("GET", "/v1/webhooks/deliveries", {{"Authorization", "Bearer nope"}});
  EXPECT_EQ(wrong.status, 401);

  // Paging with a cursor walks every delivery once.
  for (int i = 0; i < 4; ++i) call(h);
  ASSERT_TRUE(wait_until([&] { return deliveries(h, "?status=delivered").size() == 5; }, 10s));
  std::set<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto [status, body] = api(h, "GET", "/v1/webhooks/deliveries?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(status, 200);
    for (const auto& d : body["data"]["deliveries"]) seen.insert(d["id"].get<std::string>());
    if (body["data"]["next_cursor"].is_null()) break;
    cursor = body["data"]["next_cursor"];
  }
  EXPECT_EQ(seen.size(), 5u);
}

}  // namespace
}  // namespace arbiter::testing
