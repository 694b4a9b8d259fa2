// The webhook payload (Helicone's shape plus event, properties, scores),
// with and without bodies, and the matching rules: deterministic sampling per
// request id and exact property filters.

#include "scoring/webhook_payload.hpp"

#include <gtest/gtest.h>

#include <set>

#include "scoring/score.hpp"

namespace arbiter::scoring {
namespace {

using nlohmann::json;

RequestRecord chat_record() {
  RequestRecord r;
  r.request_id = "6f1c2a0e-0d4b-4c55-9a39-1f2e3d4c5b6a";
  r.project = "alpha";
  r.created_at_us = 1714564800000000;  // 2024-05-01T12:00:00Z
  r.latency_ms = 42.5;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = "gpt-4o-mini";
  r.response_model = "gpt-4o-mini-2024-07-18";
  r.user_id = "user-7";
  r.properties = {{"env", "prod"}, {"feature", "search"}};
  r.prompt_tokens = 12;
  r.completion_tokens = 7;
  r.total_tokens = 19;
  r.cost_usd = 0.000123;
  r.request_body = R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]})";
  r.response_body = R"({"id":"chatcmpl-1","choices":[{"message":{"role":"assistant","content":"hello"}}]})";
  return r;
}

TEST(WebhookPayload, HeliconeShapeWithBodiesAsObjects) {
  const RequestRecord r = chat_record();
  WebhookEventData ev;
  ev.record = &r;
  const json p = webhook_payload(ev, /*include_bodies=*/true);
  EXPECT_EQ(p.at("event"), "request.logged");
  EXPECT_EQ(p.at("request_id"), r.request_id);
  EXPECT_EQ(p.at("user_id"), "user-7");
  EXPECT_EQ(p.at("model"), r.response_model);  // the model Helicone shows: the response's
  EXPECT_EQ(p.at("provider"), "openai");
  EXPECT_EQ(p.at("properties"), (json{{"env", "prod"}, {"feature", "search"}}));
  const json& m = p.at("metadata");
  EXPECT_EQ(m.at("promptTokens"), 12);
  EXPECT_EQ(m.at("completionTokens"), 7);
  EXPECT_EQ(m.at("totalTokens"), 19);
  EXPECT_DOUBLE_EQ(m.at("cost").get<double>(), 0.000123);
  EXPECT_DOUBLE_EQ(m.at("latencyMs").get<double>(), 42.5);
  ASSERT_TRUE(p.at("request_body").is_object());
  EXPECT_EQ(p.at("request_body"), json::parse(r.request_body));
  ASSERT_TRUE(p.at("response_body").is_object());
  EXPECT_EQ(p.at("response_body").at("choices").at(0).at("message").at("content"), "hello");
  EXPECT_EQ(p.at("created_at"), "2024-05-01T12:00:00.000Z");
  EXPECT_FALSE(p.contains("scores"));
}

TEST(WebhookPayload, WithoutBodiesTheBodiesAreLeftOut) {
  const RequestRecord r = chat_record();
  WebhookEventData ev;
  ev.record = &r;
  const json p = webhook_payload(ev, /*include_bodies=*/false);
  EXPECT_FALSE(p.contains("request_body"));
  EXPECT_FALSE(p.contains("response_body"));
  EXPECT_EQ(p.at("request_id"), r.request_id);
  EXPECT_EQ(p.at("metadata").at("totalTokens"), 19);
}

TEST(WebhookPayload, UnknownValuesAreNullAndOddBodiesStayReadable) {
  RequestRecord r = chat_record();
  r.user_id.clear();
  r.prompt_tokens.reset();
  r.completion_tokens.reset();
  r.total_tokens.reset();
  r.cost_usd.reset();
  r.request_body = R"({"model":"gpt-4o-mini","messa)";  // truncated: not JSON
  r.request_truncated = true;
  r.response_body.clear();  // a stream the gateway could not reassemble
  r.stream_raw = "data: {\"x\":1}\n\ndata: [DONE]\n\n";
  WebhookEventData ev;
  ev.record = &r;
  const json p = webhook_payload(ev, true);
  EXPECT_TRUE(p.at("user_id").is_null());
  EXPECT_TRUE(p.at("metadata").at("promptTokens").is_null());
  EXPECT_TRUE(p.at("metadata").at("cost").is_null());
  EXPECT_EQ(p.at("request_body"), r.request_body);  // as text
  EXPECT_TRUE(p.at("request_truncated").get<bool>());
  EXPECT_EQ(p.at("response_body"), r.stream_raw);

  r.stream_raw.clear();  // omitted response: nothing stored
  r.response_omitted = true;
  EXPECT_TRUE(webhook_payload(ev, true).at("response_body").is_null());
}

TEST(WebhookPayload, ScoreAndEvaluationEventsCarryTheirData) {
  const RequestRecord r = chat_record();
  Score s;
  s.id = "score-1";
  s.request_id = r.request_id;
  s.name = "accuracy";
  s.value = 92;
  const json data = {{"scores", json::array({to_json(s)})}};
  WebhookEventData ev;
  ev.event = WebhookEvent::kScoreCreated;
  ev.record = &r;
  ev.data = &data;
  const json p = webhook_payload(ev, false);
  EXPECT_EQ(p.at("event"), "score.created");
  ASSERT_EQ(p.at("scores").size(), 1u);
  EXPECT_EQ(p.at("scores").at(0).at("name"), "accuracy");
  EXPECT_EQ(p.at("scores").at(0).at("value"), 92);
  EXPECT_EQ(p.at("request_id"), r.request_id);

  WebhookEventData session;
  session.event = WebhookEvent::kScoreCreated;
  session.session_id = "sess-1";
  session.data = &data;
  const json sp = webhook_payload(session, true);
  EXPECT_EQ(sp.at("session_id"), "sess-1");
  EXPECT_FALSE(sp.contains("request_id"));
  EXPECT_FALSE(sp.contains("request_body"));
}

TEST(WebhookPayload, SerialisationIsCompactAndStable) {
  const RequestRecord r = chat_record();
  WebhookEventData ev;
  ev.record = &r;
  const std::string a = serialize_payload(webhook_payload(ev, true));
  const std::string b = serialize_payload(webhook_payload(ev, true));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.find(": "), std::string::npos);
  EXPECT_EQ(a.find("\n"), std::string::npos);
  // Invalid UTF-8 in a body never makes serialisation throw.
  RequestRecord bad = r;
  bad.request_body = "\xff\xfe not json";
  ev.record = &bad;
  EXPECT_NO_THROW(serialize_payload(webhook_payload(ev, true)));
}

TEST(WebhookPayload, BytesAreWhatJsonStringifyGivesBack) {
  // Helicone's receivers verify Helicone-Signature over
  // JSON.stringify(req.body): the bytes must survive a JavaScript parse and
  // re-serialisation unchanged. Expected output checked with Node 20:
  // JSON.stringify(JSON.parse(expected)) === expected.
  const json in = json::parse(
      R"({"b":1,"a":0.000045,"10":1e-7,"9":123.0,"x":1e21,"y":1.5e300,"z":-0.0,"w":0.1,)"
      R"("v":123456789012,"u":1e-6,"t":1.7976931348623157e308,"s":5e-324,"q":1e20,)"
      R"("p":123456789.125,"o":-2.5e-8,"n":[1.0,-0.5,{"2":true,"1":null}],)"
      "\"r\":\"\\u0001\\u007f\\u2028\\u00e9\\\"\\\\/\"}");
  const std::string expected =
      R"({"9":123,"10":1e-7,"a":0.000045,"b":1,"n":[1,-0.5,{"1":null,"2":true}],"o":-2.5e-8,)"
      R"("p":123456789.125,"q":100000000000000000000,"r":")"
      "\\u0001\x7f\xe2\x80\xa8\xc3\xa9\\\"\\\\/\""
      R"(,"s":5e-324,"t":1.7976931348623157e+308,"u":0.000001,"v":123456789012,)"
      R"("w":0.1,"x":1e+21,"y":1.5e+300,"z":0})";
  EXPECT_EQ(serialize_payload(in), expected);
}

TEST(WebhookMatching, SamplingIsDeterministicPerRequestId) {
  std::set<std::string> ids;
  while (ids.size() < 20'000) ids.insert(random_uuid());
  std::size_t in = 0;
  for (const auto& id : ids) {
    const bool s = sampled(25, id);
    EXPECT_EQ(s, sampled(25, id));  // same id, same answer
    if (s) {
      ++in;
      EXPECT_TRUE(sampled(50, id)) << "a higher rate keeps every id a lower one took";
    }
    EXPECT_TRUE(sampled(100, id));
    EXPECT_FALSE(sampled(0, id));
  }
  // 25 % of 20,000: the binomial standard deviation is ~61, so ±400 is > 6σ.
  EXPECT_NEAR(static_cast<double>(in), 5000.0, 400.0);
}

TEST(WebhookMatching, PropertyFiltersAreExact) {
  const std::map<std::string, std::string> props = {{"env", "prod"}, {"team", "search"}};
  EXPECT_TRUE(properties_match({}, props));
  EXPECT_TRUE(properties_match({{"env", "prod"}}, props));
  EXPECT_TRUE(properties_match({{"env", "prod"}, {"team", "search"}}, props));
  EXPECT_FALSE(properties_match({{"env", "Prod"}}, props));
  EXPECT_FALSE(properties_match({{"env", "pro"}}, props));
  EXPECT_FALSE(properties_match({{"region", "eu"}}, props));
  EXPECT_FALSE(properties_match({{"env", "prod"}, {"team", "ads"}}, props));
}

TEST(WebhookMatching, EventNamesRoundTrip) {
  for (auto e : {WebhookEvent::kRequestLogged, WebhookEvent::kScoreCreated,
                 WebhookEvent::kEvaluationCompleted}) {
    EXPECT_EQ(parse_webhook_event(to_string(e)), e);
  }
  EXPECT_FALSE(parse_webhook_event("request.created"));
  WebhookOptions w;
  w.events = static_cast<std::uint8_t>(WebhookEvent::kScoreCreated);
  EXPECT_TRUE(w.wants(WebhookEvent::kScoreCreated));
  EXPECT_FALSE(w.wants(WebhookEvent::kRequestLogged));
  EXPECT_TRUE(w.applies_to("anything"));
  w.projects = {"alpha"};
  EXPECT_TRUE(w.applies_to("alpha"));
  EXPECT_FALSE(w.applies_to("beta"));
}

}  // namespace
}  // namespace arbiter::scoring
