// Scores end to end through the real binary: Helicone's score and feedback
// endpoints, typed scores and configs, the evals queries, scores.<k> filters
// in /v1/request/query, isolation between projects, and durability of a
// 201'd score across SIGKILL.

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/gateway_harness.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::string call(GatewayHarness& h, Headers extra = {}) {
  auto c = h.proxy_client();
  extra.emplace_back("Content-Type", "application/json");
  auto res = c.request("POST", "/v1/chat/completions", GatewayHarness::auth(std::move(extra)),
                       GatewayHarness::chat_body());
  EXPECT_TRUE(res.header("helicone-id"));
  return res.header("helicone-id").value_or("");
}

std::pair<int, json> api(GatewayHarness& h, const std::string& method, const std::string& target,
                         const std::string& body = "", const char* key = kKeyA) {
  Headers headers;
  if (key != nullptr) headers.emplace_back("Authorization", std::string("Bearer ") + key);
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  auto res = h.api_client().request(method, target, headers, body);
  json parsed;
  try {
    parsed = json::parse(res.body);
  } catch (const json::exception&) {
    parsed = res.body;
  }
  return {res.status, parsed};
}

json await_record(GatewayHarness& h, const std::string& id, const char* key = kKeyA) {
  json out;
  EXPECT_TRUE(wait_until(
      [&] {
        auto [status, body] = api(h, "GET", "/v1/request/" + id, "", key);
        if (status != 200) return false;
        out = body["data"];
        return true;
      },
      10s))
      << "record " << id << " never appeared";
  return out;
}

int score(GatewayHarness& h, const std::string& id, const std::string& body,
          const char* key = kKeyA) {
  return api(h, "POST", "/v1/request/" + id + "/score", body, key).first;
}

TEST(Scores, HeliconeSubmissionShowsOnTheRecordAndOverwrites) {
  GatewayHarness h;
  const auto id = call(h);
  await_record(h, id);
  auto [status, body] = api(h, "POST", "/v1/request/" + id + "/score",
                            R"({"scores": {"accuracy": 92, "hallucination": false}})");
  EXPECT_EQ(status, 201);
  EXPECT_EQ(body, json::parse(R"({"data": null, "error": null})"));
  EXPECT_EQ(await_record(h, id)["scores"],
            json::parse(R"({"accuracy": 92, "hallucination": false})"));
  EXPECT_EQ(score(h, id, R"({"scores": {"accuracy": 40}})"), 201);
  EXPECT_EQ(await_record(h, id)["scores"],
            json::parse(R"({"accuracy": 40, "hallucination": false})"));
}

TEST(Scores, EveryRejectionNamesTheProblem) {
  GatewayHarness h;
  const auto id = call(h);
  await_record(h, id);
  const std::string path = "/v1/request/" + id + "/score";
  struct Case {
    std::string body;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {R"({"scores": {"accuracy": 0.92}})", "send 92, not 0.92"},
      {R"({"scores": {"tone": "good"}})", "'tone'"},
      {R"({"scores": {"nothing": null}})", "'nothing'"},
      {R"({"scores": {"deep": {"x": 1}}})", "'deep'"},
      {R"({"scores": {"a": 1}, "extra": true})", "'extra'"},
      {R"({"not_scores": {"a": 1}})", "'not_scores'"},
      {R"({})", "missing \"scores\""},
      {R"({"scores": {"": 1}})", "empty"},
      {json{{"scores", {{std::string(256, 'n'), 1}}}}.dump(), "longer than 255"},
      {R"({"scores": {"a": 1)", "malformed JSON"},
      {R"([1, 2])", "JSON object"},
  };
  for (const auto& c : cases) {
    auto [status, body] = api(h, "POST", path, c.body);
    EXPECT_EQ(status, 400) << c.body;
    ASSERT_TRUE(body.is_object()) << c.body;
    EXPECT_TRUE(body["data"].is_null());
    EXPECT_NE(body["error"].get<std::string>().find(c.needle), std::string::npos)
        << c.body << " → " << body["error"];
  }
  // Unknown id, another project's request, no key, wrong key.
  EXPECT_EQ(score(h, "0c8f2d3e-1b2a-4c5d-9e8f-0a1b2c3d4e5f", R"({"scores": {"a": 1}})"), 404);
  EXPECT_EQ(score(h, id, R"({"scores": {"a": 1}})", kKeyB), 404);
  EXPECT_EQ(score(h, id, R"({"scores": {"a": 1}})", nullptr), 401);
  EXPECT_EQ(score(h, id, R"({"scores": {"a": 1}})", "wrong-key"), 401);
  // Nothing was stored by any of these.
  EXPECT_EQ(await_record(h, id)["scores"], json::object());
}

TEST(Scores, ARequestInFlightIsKnown) {
  GatewayHarness h;
  const std::string id = "6f1c2a44-9d7e-4b3a-8c21-5e0f9a8b7c6d";
  std::thread slow([&] { call(h, {{"Helicone-Request-Id", id}, {"x-fake-delay-ms", "3000"}}); });
  // Once the fake upstream has the call, the gateway tracks it as in flight.
  ASSERT_TRUE(wait_until([&] { return h.upstream().request_count() >= 1; }, 10s));
  EXPECT_EQ(score(h, id, R"({"scores": {"early": 1}})"), 201);
  slow.join();
  EXPECT_EQ(await_record(h, id)["scores"]["early"], 1);
}

TEST(Scores, FeedbackBecomesAScoreAndFeedbackFields) {
  GatewayHarness h;
  const auto id = call(h);
  await_record(h, id);
  auto [status, body] =
      api(h, "POST", "/v1/request/" + id + "/feedback",
          R"({"rating": true, "ground_truth": "Paris", "expected": {"a": [1, 2]}})");
  EXPECT_EQ(status, 201) << body;
  const json rec = await_record(h, id);
  EXPECT_EQ(rec["scores"]["helicone-score-feedback"], true);
  EXPECT_EQ(rec["feedback"]["ground_truth"], "Paris");
  EXPECT_EQ(rec["feedback"]["expected"], json::parse(R"({"a": [1, 2]})"));
  EXPECT_EQ(api(h, "POST", "/v1/request/" + id + "/feedback", R"({"rating": "yes"})").first, 400);
  EXPECT_EQ(api(h, "POST", "/v1/request/" + id + "/feedback", R"({"ground_truth": "x"})").first,
            400);
  EXPECT_EQ(api(h, "POST", "/v1/request/" + id + "/feedback", R"({"rating": true})", kKeyB).first,
            404);
}

TEST(Scores, A201dScoreSurvivesSigkill) {
  GatewayHarness h;
  const auto id = call(h);
  await_record(h, id);
  ASSERT_EQ(score(h, id, R"({"scores": {"durable": 7, "ok": true}})"), 201);
  auto [typed_status, typed] =
      api(h, "POST", "/v1/scores",
          json{{"id", "typed-1"}, {"request_id", id}, {"name", "f1"}, {"value", 0.83}}.dump());
  ASSERT_EQ(typed_status, 201) << typed;
  h.kill();  // right after the 201s
  h.restart();
  const json rec = await_record(h, id);
  EXPECT_EQ(rec["scores"]["durable"], 7);
  EXPECT_EQ(rec["scores"]["ok"], true);
  EXPECT_EQ(rec["scores"]["f1"], 0.83);
}

TEST(Scores, TypedScoresConfigsListingAndDeletion) {
  GatewayHarness h;
  const auto id = call(h, {{"Helicone-Session-Id", "sess-9"}});
  await_record(h, id);

  // Configs: validated synchronously.
  auto [cfg_status, cfg] =
      api(h, "POST", "/v1/score-configs",
          R"({"name": "accuracy", "data_type": "NUMERIC", "min_value": 0, "max_value": 100})");
  ASSERT_EQ(cfg_status, 201) << cfg;
  EXPECT_EQ(api(h, "POST", "/v1/score-configs",
                R"({"name": "x", "data_type": "NUMERIC", "min_value": 3, "max_value": 1})")
                .first,
            400);
  EXPECT_EQ(
      api(h, "POST", "/v1/score-configs", R"({"name": "accuracy", "data_type": "BOOLEAN"})").first,
      400);
  EXPECT_EQ(
      api(h, "POST", "/v1/score-configs",
          R"({"name": "tone", "data_type": "CATEGORICAL", "categories": [{"label": "good", "value": 1}, {"label": "bad", "value": 0}]})")
          .first,
      201);
  auto [list_cfg_status, configs] = api(h, "GET", "/v1/score-configs");
  EXPECT_EQ(list_cfg_status, 200);
  EXPECT_EQ(configs["data"].size(), 2u);
  EXPECT_EQ(api(h, "GET", "/v1/score-configs", "", kKeyB).second["data"], json::array());

  // Out of range, wrong type, unknown category: 400 naming the rule. Never accept-then-drop.
  auto [over_status, over] =
      api(h, "POST", "/v1/request/" + id + "/score", R"({"scores": {"accuracy": 101}})");
  EXPECT_EQ(over_status, 400);
  EXPECT_NE(over["error"].get<std::string>().find("max_value 100"), std::string::npos) << over;
  EXPECT_EQ(api(h, "POST", "/v1/scores",
                json{{"request_id", id}, {"name", "accuracy"}, {"value", true}}.dump())
                .first,
            400);
  auto [cat_status, cat] = api(h, "POST", "/v1/scores",
                               json{{"request_id", id}, {"name", "tone"}, {"value", "meh"}}.dump());
  EXPECT_EQ(cat_status, 400);
  EXPECT_NE(cat["error"].get<std::string>().find("not a category"), std::string::npos);

  // Typed scores: create, idempotent update, session target.
  auto [s1_status, s1] = api(h, "POST", "/v1/scores",
                             json{{"id", "k-1"},
                                  {"request_id", id},
                                  {"name", "accuracy"},
                                  {"value", 55.5},
                                  {"comment", "first"},
                                  {"metadata", {{"run", 1}}},
                                  {"source", "EVAL"},
                                  {"author", "ci"}}
                                 .dump());
  ASSERT_EQ(s1_status, 201) << s1;
  EXPECT_EQ(s1["data"]["id"], "k-1");
  EXPECT_EQ(s1["data"]["config_id"], cfg["data"]["id"]);
  auto [s2_status, s2] =
      api(h, "POST", "/v1/scores",
          json{{"id", "k-1"}, {"request_id", id}, {"name", "accuracy"}, {"value", 60}}.dump());
  ASSERT_EQ(s2_status, 201) << s2;
  EXPECT_EQ(api(h, "POST", "/v1/scores",
                json{{"request_id", id}, {"name", "tone"}, {"value", "good"}}.dump())
                .first,
            201);
  EXPECT_EQ(api(h, "POST", "/v1/scores",
                json{{"session_id", "sess-9"}, {"name", "resolved"}, {"value", true}}.dump())
                .first,
            201);
  EXPECT_EQ(api(h, "POST", "/v1/scores",
                json{{"session_id", "sess-unknown"}, {"name", "resolved"}, {"value", true}}.dump())
                .first,
            404);
  EXPECT_EQ(api(h, "POST", "/v1/scores",
                json{{"request_id", id}, {"name", "a"}, {"value", 1}}.dump(), kKeyB)
                .first,
            404);

  // The Helicone view of the same request shows the typed scores (one store).
  const json rec = await_record(h, id);
  EXPECT_EQ(rec["scores"]["accuracy"], 60);
  EXPECT_EQ(rec["scores"]["tone"], "good");

  auto [list_status, list] = api(h, "GET", "/v1/scores?limit=2");
  ASSERT_EQ(list_status, 200) << list;
  EXPECT_EQ(list["data"]["scores"].size(), 2u);
  ASSERT_TRUE(list["data"]["next_cursor"].is_string());
  auto [next_status, next] =
      api(h, "GET", "/v1/scores?limit=2&cursor=" + list["data"]["next_cursor"].get<std::string>());
  EXPECT_EQ(next_status, 200);
  EXPECT_EQ(next["data"]["scores"].size(), 1u);
  EXPECT_TRUE(next["data"]["next_cursor"].is_null());
  // The re-POST replaced the score's fields (source back to the default API).
  EXPECT_EQ(api(h, "GET", "/v1/scores?name=accuracy&source=EVAL").second["data"]["scores"],
            json::array());
  auto [acc_status, acc] =
      api(h, "GET", "/v1/scores?name=accuracy&source=API&min_value=59&max_value=61");
  ASSERT_EQ(acc["data"]["scores"].size(), 1u) << acc;
  EXPECT_EQ(acc["data"]["scores"][0]["value"], 60);
  EXPECT_EQ(acc["data"]["scores"][0]["id"], "k-1");
  EXPECT_EQ(api(h, "GET", "/v1/scores?session_id=sess-9").second["data"]["scores"].size(), 1u);
  EXPECT_EQ(api(h, "GET", "/v1/scores?data_type=CATEGORICAL").second["data"]["scores"].size(), 1u);
  EXPECT_EQ(api(h, "GET", "/v1/scores?limit=0").first, 400);
  EXPECT_EQ(api(h, "GET", "/v1/scores?limit=101").first, 400);
  EXPECT_EQ(api(h, "GET", "/v1/scores?source=HUMAN").first, 400);
  EXPECT_EQ(api(h, "GET", "/v1/scores", "", kKeyB).second["data"]["scores"], json::array());
  EXPECT_EQ(api(h, "GET", "/v1/scores", "", nullptr).first, 401);

  // Delete: another project cannot; the owner can, once.
  EXPECT_EQ(api(h, "DELETE", "/v1/scores/k-1", "", kKeyB).first, 404);
  EXPECT_EQ(api(h, "DELETE", "/v1/scores/k-1").first, 200);
  EXPECT_EQ(api(h, "DELETE", "/v1/scores/k-1").first, 404);
  EXPECT_FALSE(await_record(h, id)["scores"].contains("accuracy"));

  auto [names_status, names] = api(h, "GET", "/v1/evals/scores");
  EXPECT_EQ(names_status, 200);
  EXPECT_EQ(names["data"], json::parse(R"(["accuracy", "resolved", "tone"])"));
  EXPECT_EQ(api(h, "GET", "/v1/evals/scores", "", kKeyB).second["data"], json::array());
}

TEST(Scores, EvalQueriesGroupByAndRequestFilters) {
  GatewayHarness h;
  // 12 calls over two models and two prompt versions, each with a known accuracy.
  struct Call {
    std::string id;
    std::string model;
    std::string version;
    int accuracy;
    bool correct;
  };
  std::vector<Call> calls;
  for (int i = 0; i < 12; ++i) {
    json body = json::parse(GatewayHarness::chat_body());
    const std::string model = i % 2 == 0 ? "gpt-4o" : "gpt-4o-mini";
    body["model"] = model;
    auto c = h.proxy_client();
    auto res =
        c.request("POST", "/v1/chat/completions",
                  GatewayHarness::auth({{"Content-Type", "application/json"},
                                        {"Helicone-Property-Prompt-Version", i < 6 ? "v1" : "v2"}}),
                  body.dump());
    calls.push_back({res.header("helicone-id").value_or(""), model, i < 6 ? "v1" : "v2",
                     (i * 37) % 101, i % 3 != 0});
  }
  for (const auto& c : calls) {
    await_record(h, c.id);
    ASSERT_EQ(
        score(h, c.id, json{{"scores", {{"accuracy", c.accuracy}, {"correct", c.correct}}}}.dump()),
        201);
  }
  // The other project's scores never mix in.
  {
    auto c = h.proxy_client();
    auto res = c.request("POST", "/v1/chat/completions",
                         GatewayHarness::auth({{"Content-Type", "application/json"}}, kKeyB),
                         GatewayHarness::chat_body());
    const std::string other = res.header("helicone-id").value_or("");
    await_record(h, other, kKeyB);
    ASSERT_EQ(score(h, other, R"({"scores": {"accuracy": 1000}})", kKeyB), 201);
  }

  auto [status, evals] = api(
      h, "POST", "/v1/evals/query",
      R"({"filter": "all", "timeFilter": {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}})");
  ASSERT_EQ(status, 200) << evals;
  ASSERT_EQ(evals["data"].size(), 2u);
  const json acc = evals["data"][0];
  EXPECT_EQ(acc["name"], "accuracy");
  double sum = 0;
  int mn = 1000, mx = -1, trues = 0;
  for (const auto& c : calls) {
    sum += c.accuracy;
    mn = std::min(mn, c.accuracy);
    mx = std::max(mx, c.accuracy);
    trues += c.correct;
  }
  EXPECT_EQ(acc["count"], 12);
  EXPECT_DOUBLE_EQ(acc["averageScore"].get<double>(), sum / 12);
  EXPECT_EQ(acc["minScore"], mn);
  EXPECT_EQ(acc["maxScore"], mx);
  // A 100-year range is bucketed weekly; all 12 scores fall in one week.
  ASSERT_EQ(acc["overTime"].size(), 1u);
  EXPECT_EQ(acc["overTime"][0]["count"], 12);
  EXPECT_DOUBLE_EQ(acc["averageOverTime"][0]["value"].get<double>(), sum / 12);
  EXPECT_DOUBLE_EQ(evals["data"][1]["averageScore"].get<double>(), trues / 12.0);

  // Group by model and by prompt version, against the known population.
  for (const std::string group_by : {"model", "properties.prompt-version"}) {
    auto [g_status, grouped] =
        api(h, "POST", "/v1/evals/query", json{{"groupBy", group_by}}.dump());
    ASSERT_EQ(g_status, 200) << grouped;
    std::map<std::string, std::pair<int, double>> expected;
    for (const auto& c : calls) {
      auto& e = expected[group_by == "model" ? c.model : c.version];
      ++e.first;
      e.second += c.accuracy;
    }
    int seen = 0;
    for (const auto& e : grouped["data"]) {
      if (e["name"] != "accuracy") continue;
      const auto& want = expected.at(e["group"].get<std::string>());
      EXPECT_EQ(e["count"], want.first);
      EXPECT_DOUBLE_EQ(e["averageScore"].get<double>(), want.second / want.first);
      ++seen;
    }
    EXPECT_EQ(seen, 2) << group_by;
  }
  const json other_evals = api(h, "POST", "/v1/evals/query", "{}", kKeyB).second["data"];
  ASSERT_EQ(other_evals.size(), 1u) << other_evals;
  EXPECT_EQ(other_evals[0]["count"], 1);
  EXPECT_EQ(other_evals[0]["averageScore"], 1000.0);
  EXPECT_EQ(api(h, "POST", "/v1/evals/query", R"({"groupBy": "colour"})").first, 400);
  EXPECT_EQ(api(h, "POST", "/v1/evals/query", "{}", nullptr).first, 401);
  EXPECT_EQ(api(h, "POST", "/v1/evals/query", R"({"timeFilter": {"start": "soon"}})").first, 400);

  // Filters combine with properties and model.
  auto [f_status, filtered] = api(
      h, "POST", "/v1/evals/query",
      R"({"filter": {"left": {"request_response_rmt": {"model": {"equals": "gpt-4o"}}}, "operator": "and",
                                      "right": {"request_response_rmt": {"properties": {"prompt-version": {"equals": "v2"}}}}}})");
  ASSERT_EQ(f_status, 200) << filtered;
  int n = 0;
  double s = 0;
  for (const auto& c : calls) {
    if (c.model == "gpt-4o" && c.version == "v2") {
      ++n;
      s += c.accuracy;
    }
  }
  EXPECT_EQ(filtered["data"][0]["count"], n);
  EXPECT_DOUBLE_EQ(filtered["data"][0]["averageScore"].get<double>(), s / n);

  // Distributions: bucket counts sum to N; booleans get two buckets.
  auto [d_status, dist] =
      api(h, "POST", "/v1/evals/score-distributions/query", R"({"filter": "all"})");
  ASSERT_EQ(d_status, 200) << dist;
  ASSERT_EQ(dist["data"].size(), 2u);
  EXPECT_EQ(dist["data"][0]["name"], "accuracy");
  ASSERT_EQ(dist["data"][0]["distribution"].size(), 10u);
  int total = 0;
  for (const auto& b : dist["data"][0]["distribution"]) total += b["value"].get<int>();
  EXPECT_EQ(total, 12);
  EXPECT_EQ(dist["data"][0]["distribution"][0]["lower"], mn);
  EXPECT_EQ(dist["data"][0]["distribution"][9]["upper"], mx);
  ASSERT_EQ(dist["data"][1]["distribution"].size(), 2u);
  EXPECT_EQ(dist["data"][1]["distribution"][1]["value"], trues);
  const json other_dist =
      api(h, "POST", "/v1/evals/score-distributions/query", "{}", kKeyB).second["data"];
  ASSERT_EQ(other_dist.size(), 1u) << other_dist;
  EXPECT_EQ(other_dist[0]["distribution"],
            json::parse(R"([{"lower": 1000.0, "upper": 1000.0, "value": 1}])"));

  // scores.<k> filters and sorting in /v1/request/query.
  auto [q_status, rows] = api(
      h, "POST", "/v1/request/query",
      R"({"filter": {"request_response_rmt": {"scores": {"accuracy": {"gt": 50}}}}, "sort": {"scores.accuracy": "desc"}})");
  ASSERT_EQ(q_status, 200) << rows;
  std::vector<int> want;
  for (const auto& c : calls) {
    if (c.accuracy > 50) want.push_back(c.accuracy);
  }
  std::sort(want.rbegin(), want.rend());
  std::vector<int> got;
  for (const auto& r : rows["data"]) got.push_back(r["scores"]["accuracy"].get<int>());
  EXPECT_EQ(got, want);
  auto [b_status, bools] =
      api(h, "POST", "/v1/request/query",
          R"({"filter": {"request_response_rmt": {"scores.correct": {"equals": true}}}})");
  ASSERT_EQ(b_status, 200);
  EXPECT_EQ(static_cast<int>(bools["data"].size()), trues);
  const json other_rows =
      api(h, "POST", "/v1/request/query",
          R"({"filter": {"request_response_rmt": {"scores": {"accuracy": {"gt": 0}}}}})", kKeyB)
          .second["data"];
  ASSERT_EQ(other_rows.size(), 1u);
  EXPECT_EQ(other_rows[0]["scores"]["accuracy"], 1000);
}

}  // namespace
}  // namespace arbiter::testing
