// Evaluators end to end through the real binary and the fake upstream: every
// built-in kind on real records against the shared reference vectors, ground
// truth posted later, the network kinds (llm_judge, http,
// semantic_similarity, moderation), the example plugin, sampling, failing and
// hanging evaluators, the /v1/evaluators API and its bad inputs, start-up
// errors for bad plugins, and runs that survive a SIGKILL.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "scoring/evaluator_runtime.hpp"
#include "tests/support/gateway_harness.hpp"
#include "tests/support/manual_log_body.hpp"
#include "tests/support/sanitizer.hpp"
#include "tests/support/webhook_receiver.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// ---- helpers ----

std::pair<int, json> api(GatewayHarness& h, const std::string& method, const std::string& target,
                         const std::string& body = "", const char* key = kKeyA) {
  Headers headers;
  if (key != nullptr) headers.emplace_back("Authorization", std::string("Bearer ") + key);
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  auto res = h.api_client().request(method, target, headers, body);
  json parsed = json::parse(res.body, nullptr, false);
  if (parsed.is_discarded()) parsed = res.body;
  return {res.status, parsed};
}

// A proxied chat call; returns the request id.
std::string call(GatewayHarness& h, Headers extra = {}) {
  auto c = h.proxy_client();
  extra.emplace_back("Content-Type", "application/json");
  auto res = c.request("POST", "/v1/chat/completions", GatewayHarness::auth(std::move(extra)),
                       GatewayHarness::chat_body());
  EXPECT_EQ(res.status, 200) << res.body;
  return res.header("helicone-id").value_or("");
}

// A call logged through POST /custom/v1/log, which fixes the output text,
// token counts and latency exactly.
std::string manual_log(GatewayHarness& h, const std::string& output, Headers extra = {},
                       std::int64_t completion_tokens = 5, std::int64_t latency_ms = 1000) {
  json body = manual_log_body(output, completion_tokens, latency_ms);
  Headers headers = {{"Authorization", std::string("Bearer ") + kKeyA}, {"Content-Type", "application/json"}};
  for (auto& e : extra) headers.push_back(std::move(e));
  auto res = h.api_client().request("POST", "/custom/v1/log", headers, body.dump());
  EXPECT_EQ(res.status, 200) << res.body;
  return json::parse(res.body)["data"]["request_id"].get<std::string>();
}

json runs_of(GatewayHarness& h, const std::string& id, const char* key = kKeyA) {
  auto [status, body] = api(h, "GET", "/v1/evaluators/runs?request_id=" + id, "", key);
  EXPECT_EQ(status, 200) << body;
  return body["data"];
}

std::optional<json> run_of(GatewayHarness& h, const std::string& id, const std::string& evaluator) {
  for (const auto& r : runs_of(h, id)) {
    if (r["evaluator"] == evaluator) return r;
  }
  return std::nullopt;
}

// Waits until the run is in `state` (or any finished state when "finished").
json await_run(GatewayHarness& h, const std::string& id, const std::string& evaluator,
               const std::string& state, std::chrono::milliseconds timeout = 20s) {
  json last;
  const bool ok = wait_until(
      [&] {
        auto r = run_of(h, id, evaluator);
        if (!r) return false;
        last = *r;
        const std::string s = (*r)["state"];
        return s == state || (state == "finished" && (s == "completed" || s == "error"));
      },
      timeout);
  EXPECT_TRUE(ok) << evaluator << " on " << id << " never reached " << state << "; last: " << last.dump();
  return last;
}

// name → score object (GET /v1/scores?request_id=).
std::map<std::string, json> scores_of(GatewayHarness& h, const std::string& id) {
  auto [status, body] = api(h, "GET", "/v1/scores?request_id=" + id + "&limit=100");
  EXPECT_EQ(status, 200) << body;
  std::map<std::string, json> out;
  for (const auto& s : body["data"]["scores"]) out[s["name"]] = s;
  return out;
}

int feedback(GatewayHarness& h, const std::string& id, const json& fields) {
  json body = fields;
  body["rating"] = true;
  return api(h, "POST", "/v1/request/" + id + "/feedback", body.dump()).first;
}

json reference_vectors() {
  std::ifstream in(std::string(ARBITER_SHARED_DIR) + "/reference/evaluators.json");
  EXPECT_TRUE(in) << "cannot read the reference vectors";
  return json::parse(in)["vectors"];
}

std::string yaml_string(const std::string& s) {
  return json(s).dump();  // a JSON string is a valid YAML double-quoted scalar
}

// ---- built-in kinds against the reference vectors ----

TEST(Evaluators, BuiltInKindsReproduceTheReferenceVectorsOnRealRecords) {
  const json vectors = reference_vectors();
  ASSERT_FALSE(vectors.empty());
  // One evaluator per vector, selected by a property, so each vector's
  // params apply to exactly its record.
  std::string yaml = "evaluators:\n";
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    const json& v = vectors[i];
    yaml += "  - name: v" + std::to_string(i) + "\n    kind: " + v["kind"].get<std::string>() +
            "\n    filter: { properties: { vector: \"" + std::to_string(i) + "\" } }\n";
    if (v.contains("ground_truth")) yaml += "    needs: [ feedback.ground_truth ]\n";
    if (v.contains("params")) yaml += "    params: " + v["params"].dump() + "\n";
  }
  // Kinds without vectors: json_schema and sql_parse.
  yaml += R"(  - name: schema
    kind: json_schema
    filter: { properties: { structured: "yes" } }
    params: { schema: { type: object, required: [ name ], properties: { name: { type: string } } } }
  - name: sql
    kind: sql_parse
    filter: { properties: { structured: "yes" } }
)";
  GatewayHarness h({.top_extra = yaml});

  std::vector<std::string> ids;
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    const json& v = vectors[i];
    const json meta = v.value("metadata", json::object());
    ids.push_back(manual_log(h, v.value("output", std::string("n/a")),
                             {{"Helicone-Property-Vector", std::to_string(i)}},
                             meta.value("completion_tokens", 5), meta.value("latency_ms", 1000)));
  }
  // Comparison kinds wait for their ground truth, posted later.
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    if (!vectors[i].contains("ground_truth")) continue;
    const json waiting = await_run(h, ids[i], "v" + std::to_string(i), "waiting-for-fields");
    EXPECT_EQ(waiting["missing"], json::array({"feedback.ground_truth"}));
    EXPECT_EQ(feedback(h, ids[i], {{"ground_truth", vectors[i]["ground_truth"]}}), 201);
  }
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    const std::string name = "v" + std::to_string(i);
    const json run = await_run(h, ids[i], name, "finished");
    ASSERT_EQ(run["state"], "completed") << vectors[i].dump() << " → " << run.dump();
    const auto scores = scores_of(h, ids[i]);
    ASSERT_TRUE(scores.count(name)) << name;
    const json& s = scores.at(name);
    EXPECT_EQ(s["source"], "EVAL");
    EXPECT_EQ(s["author"], name);
    const json& expected = vectors[i]["expected"];
    if (expected.is_boolean()) {
      EXPECT_EQ(s["data_type"], "BOOLEAN");
      EXPECT_EQ(s["value"], expected) << vectors[i].dump();
    } else {
      EXPECT_EQ(s["data_type"], "NUMERIC");
      EXPECT_NEAR(s["value"].get<double>(), expected.get<double>(), 1e-9) << vectors[i].dump();
    }
  }

  const std::string good = manual_log(h, R"({"name": "x"})", {{"Helicone-Property-Structured", "yes"}});
  const std::string bad = manual_log(h, "SELEC 1 FROM", {{"Helicone-Property-Structured", "yes"}});
  const std::string sql = manual_log(h, "```sql\nSELECT name FROM t WHERE id = 1\n```",
                                     {{"Helicone-Property-Structured", "yes"}});
  for (const auto& id : {good, bad, sql}) {
    await_run(h, id, "schema", "completed");
    await_run(h, id, "sql", "completed");
  }
  EXPECT_EQ(scores_of(h, good)["schema"]["value"], true);
  EXPECT_EQ(scores_of(h, bad)["schema"]["value"], false);
  EXPECT_EQ(scores_of(h, sql)["sql"]["value"], true);
  EXPECT_EQ(scores_of(h, bad)["sql"]["value"], false);
  EXPECT_FALSE(scores_of(h, bad)["sql"]["comment"].get<std::string>().empty());
}

// ---- network kinds ----

TEST(Evaluators, LlmJudgeRatesWithTheExplanationAsComment) {
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: judge
    kind: llm_judge
    params:
      template: "Question: {{ inputs.messages.0.content }}\nAnswer: {{ outputs.content }}\nRate it [[1-5]]."
      upstream: openai
      model: gpt-4o-mini
      temperature: 0
  - name: coherence
    kind: llm_judge
    filter: { properties: { file: "yes" } }
    params: { template_file: )" + std::string(ARBITER_SOURCE_DIR) +
                                    R"(/conf/judges/coherence.txt, upstream: openai, model: gpt-4o-mini }
  - name: needs_context
    kind: llm_judge
    filter: { properties: { context: "yes" } }
    params: { template: "Context: {{ feedback.context }} {{ outputs.content }}", upstream: openai, model: m }
)"});
  const std::string good =
      call(h, {{"x-fake-content", "Paris. <<judge-reply:Accurate and concise. [[4]]>>"},
               {"Helicone-Property-File", "yes"}});
  const json run = await_run(h, good, "judge", "finished");
  ASSERT_EQ(run["state"], "completed") << run;
  auto scores = scores_of(h, good);
  EXPECT_EQ(scores["judge"]["value"], 4);
  EXPECT_EQ(scores["judge"]["comment"], "Accurate and concise.");
  EXPECT_EQ(scores["judge"]["source"], "EVAL");
  await_run(h, good, "coherence", "completed");
  EXPECT_EQ(scores_of(h, good)["coherence"]["value"], 4);
  // The judge got the rendered template with the model and temperature.
  bool saw_rendered = false;
  for (const auto& r : h.upstream().requests()) {
    if (r.body_prefix.find("Question: Say hello") == std::string::npos) continue;
    const json body = json::parse(r.body_prefix);
    EXPECT_EQ(r.target, "/v1/chat/completions");
    EXPECT_EQ(body["model"], "gpt-4o-mini");
    EXPECT_EQ(body["temperature"], 0);
    EXPECT_NE(body["messages"][0]["content"].get<std::string>().find("Answer: Paris."), std::string::npos);
    saw_rendered = true;
  }
  EXPECT_TRUE(saw_rendered);

  // A judge answer without a rating is an error run, not retried.
  const std::string malformed = call(h, {{"x-fake-content", "<<judge-reply:I would rate it highly.>>"}});
  const json err = await_run(h, malformed, "judge", "finished");
  EXPECT_EQ(err["state"], "error");
  EXPECT_EQ(err["attempts"], 1);
  EXPECT_NE(err["error"].get<std::string>().find("no valid rating"), std::string::npos) << err;
  const std::string out_of_range = call(h, {{"x-fake-content", "<<judge-reply:Great [[9]]>>"}});
  EXPECT_EQ(await_run(h, out_of_range, "judge", "finished")["state"], "error");
  EXPECT_FALSE(scores_of(h, malformed).count("judge"));

  // A template field that is missing is an error on that run.
  const std::string no_context = call(h, {{"Helicone-Property-Context", "yes"}});
  const json missing = await_run(h, no_context, "needs_context", "finished");
  EXPECT_EQ(missing["state"], "error");
  EXPECT_NE(missing["error"].get<std::string>().find("feedback.context"), std::string::npos) << missing;
}

TEST(Evaluators, HttpSemanticSimilarityAndModerationKinds) {
  FakeUpstream hook;  // the http evaluator's endpoint: the fake's /evaluate
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: hook
    kind: http
    params:
      url: )" + hook.base_url() + R"(/evaluate
      allow_insecure: true
      headers: { X-Trace: abc, Authorization: "Bearer hook-secret" }
  - name: similarity
    kind: semantic_similarity
    needs: [ feedback.ground_truth ]
    params: { upstream: openai, model: text-embedding-3-small }
  - name: moderation
    kind: moderation
    params: { upstream: openai }
)"});
  const std::string answer = "The capital of France is Paris.";
  const std::string id = call(h, {{"x-fake-content", answer}});
  const std::string violent = call(h, {{"x-fake-content", "I will KILL the process now."}});

  // http: the event was posted with the configured headers; its answer's
  // scores (with their own names and comment) were stored.
  await_run(h, id, "hook", "completed");
  auto scores = scores_of(h, id);
  EXPECT_EQ(scores["content_bytes"]["value"], answer.size());
  EXPECT_EQ(scores["content_bytes"]["comment"], "bytes in outputs.content");
  EXPECT_EQ(scores["has_ground_truth"]["value"], false);
  EXPECT_EQ(scores["content_bytes"]["author"], "hook");
  ASSERT_GE(hook.requests().size(), 1u);
  const SeenRequest posted = hook.requests()[0];
  EXPECT_EQ(posted.header("x-trace"), "abc");
  EXPECT_EQ(posted.header("authorization"), "Bearer hook-secret");
  const json event = json::parse(posted.body_prefix);
  EXPECT_TRUE(event["request_id"] == id || event["request_id"] == violent);
  for (const char* key : {"inputs", "outputs", "feedback", "properties", "metadata", "user_id",
                          "session_id", "request_id"}) {
    EXPECT_TRUE(event.contains(key)) << key;
  }
  EXPECT_EQ(event["inputs"]["model"], "gpt-4o-mini");
  EXPECT_EQ(event["metadata"]["status"], 200);

  // moderation: boolean flagged, categories in the comment.
  await_run(h, id, "moderation", "completed");
  await_run(h, violent, "moderation", "completed");
  EXPECT_EQ(scores_of(h, id)["moderation"]["value"], false);
  const json flagged = scores_of(h, violent)["moderation"];
  EXPECT_EQ(flagged["value"], true);
  EXPECT_NE(flagged["comment"].get<std::string>().find("violence"), std::string::npos) << flagged;

  // semantic_similarity waits for the reference, then scores the cosine of
  // the two embeddings (the fake's vectors, recomputed here).
  await_run(h, id, "similarity", "waiting-for-fields");
  const std::string truth = "Paris is the capital of France";
  ASSERT_EQ(feedback(h, id, {{"ground_truth", truth}}), 201);
  await_run(h, id, "similarity", "completed");
  const auto a = fake_embedding(answer);
  const auto b = fake_embedding(truth);
  double dot = 0, na = 0, nb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    dot += double(a[i]) * double(b[i]);
    na += double(a[i]) * double(a[i]);
    nb += double(b[i]) * double(b[i]);
  }
  EXPECT_NEAR(scores_of(h, id)["similarity"]["value"].get<double>(), dot / (std::sqrt(na) * std::sqrt(nb)),
              1e-9);
  // The hook's secret never shows in the evaluator listing.
  auto [status, listing] = api(h, "GET", "/v1/evaluators");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(listing.dump().find("hook-secret"), std::string::npos);
}

TEST(Evaluators, StreamedResponsesAreEvaluatedOnTheReassembledText) {
  FakeUpstream hook;
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: hook
    kind: http
    params: { url: )" + hook.base_url() + R"(/evaluate, allow_insecure: true }
  - name: words
    kind: response_length
)"});
  const std::string text = "Streams are reassembled before anyone scores them.";
  auto c = h.proxy_client();
  auto res = c.request("POST", "/v1/chat/completions",
                       GatewayHarness::auth({{"Content-Type", "application/json"},
                                             {"x-fake-content", text},
                                             {"x-fake-chunks", "4"}}),
                       GatewayHarness::chat_body(/*stream=*/true, /*usage=*/true));
  ASSERT_EQ(res.status, 200);
  const std::string id = res.header("helicone-id").value_or("");
  await_run(h, id, "hook", "completed");
  await_run(h, id, "words", "completed");
  EXPECT_EQ(scores_of(h, id)["content_bytes"]["value"], text.size());
  EXPECT_EQ(scores_of(h, id)["words"]["value"], 7);
  const json event = json::parse(hook.requests().at(0).body_prefix);
  EXPECT_EQ(event["outputs"]["content"], text);
  EXPECT_EQ(event["inputs"]["stream"], true);
  EXPECT_TRUE(event["metadata"].contains("time_to_first_token_ms"));
  EXPECT_TRUE(event["metadata"].contains("completion_tokens"));
}

TEST(Evaluators, ExamplePluginScoresRecords) {
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: overlap
    kind: plugin
    needs: [ feedback.ground_truth ]
    params:
      library: )" + std::string(ARBITER_EXAMPLE_PLUGIN) + R"(
      config: { required_words: [ paris ] }
)"});
  const std::string id = call(h, {{"x-fake-content", "It is Paris, the capital."}});
  await_run(h, id, "overlap", "waiting-for-fields");
  ASSERT_EQ(feedback(h, id, {{"ground_truth", "Paris capital city"}}), 201);
  await_run(h, id, "overlap", "completed");
  auto scores = scores_of(h, id);
  EXPECT_NEAR(scores["word_overlap"]["value"].get<double>(), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(scores["mentions_required"]["value"], true);
  EXPECT_EQ(scores["word_overlap"]["author"], "overlap");
}

// ---- webhooks ----

TEST(Evaluators, FinishedRunsReachWebhooksAsEvaluationCompleted) {
  WebhookReceiver receiver;
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: length
    kind: response_length
  - name: broken
    kind: keywords
    needs: [ outputs.content ]
    params: { keywords: [ x ], output: feedback.nothing }
webhooks:
  - name: evals
    url: )" + receiver.url() + R"(
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    events: [ evaluation.completed, score.created ]
    allow_insecure: true
)"});
  const std::string id = call(h);
  await_run(h, id, "length", "completed");
  await_run(h, id, "broken", "error");
  std::map<std::string, json> evaluations;
  json score_created;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& r : receiver.requests()) {
          const json body = json::parse(r.body, nullptr, false);
          if (body.is_discarded() || body.value("request_id", "") != id) continue;
          if (body["event"] == "evaluation.completed") evaluations[body["evaluation"]["evaluator"]] = body;
          if (body["event"] == "score.created") score_created = body;
        }
        return evaluations.size() == 2 && !score_created.is_null();
      },
      20s))
      << receiver.request_count() << " deliveries: " << [&] {
           std::string all;
           for (const auto& r : receiver.requests()) {
             const json b = json::parse(r.body, nullptr, false);
             all += b.is_discarded() ? std::string("?") : b.value("event", "") + " " + b.value("evaluation", json()).dump() + "; ";
           }
           return all;
         }();
  const json& ok = evaluations["length"];
  EXPECT_EQ(ok["evaluation"]["state"], "completed");
  EXPECT_EQ(ok["evaluation"]["attempts"], 1);
  ASSERT_EQ(ok["scores"].size(), 1u);
  EXPECT_EQ(ok["scores"][0]["name"], "length");
  EXPECT_EQ(ok["scores"][0]["value"], 5);
  const json& failed = evaluations["broken"];
  EXPECT_EQ(failed["evaluation"]["state"], "error");
  EXPECT_NE(failed["evaluation"]["error"].get<std::string>().find("feedback.nothing"), std::string::npos)
      << failed;
  EXPECT_EQ(failed["scores"], json::array());
  EXPECT_EQ(score_created["scores"][0]["source"], "EVAL");
}

// ---- scheduling ----

// Scheduling policy (0 = SCHED_OTHER, 5 = SCHED_IDLE) and nice value of each
// of `pid`'s threads named `name`, from /proc (stat fields 41 and 19).
std::vector<std::pair<int, int>> policies_of(pid_t pid, const std::string& name) {
  std::vector<std::pair<int, int>> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream stat(task.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const auto open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || line.substr(open + 1, close - open - 1) != name) {
      continue;
    }
    std::istringstream rest(line.substr(close + 2));  // from field 3 (state)
    std::vector<std::string> fields;
    for (std::string f; rest >> f;) fields.push_back(f);
    if (fields.size() < 39) continue;
    out.emplace_back(std::stoi(fields[41 - 3]), std::stoi(fields[19 - 3]));
  }
  return out;
}

TEST(Evaluators, WorkersRunInSchedIdleUnlessConfiguredOtherwise) {
  const std::string evaluators = "evaluators:\n  - name: len\n    kind: response_length\n";
  for (const bool idle : {true, false}) {
    SCOPED_TRACE(idle ? "evaluator_sched_idle: true" : "evaluator_sched_idle: false");
    GatewayHarness h({.server_extra = idle ? "  evaluator_sched_idle: true\n"
                                           : "  evaluator_sched_idle: false\n  evaluator_workers: 3\n",
                      .top_extra = evaluators});
    std::vector<std::pair<int, int>> workers;
    ASSERT_TRUE(wait_until(
        [&] {
          workers = policies_of(h.process().pid(), "arb-eval");
          if (workers.size() != (idle ? 4u : 3u)) return false;
          for (const auto& [policy, nice] : workers) {
            if (idle ? policy != 5 : nice != 10) return false;
          }
          return true;
        },
        20s));
    for (const auto& [policy, nice] : workers) {
      EXPECT_EQ(policy, idle ? 5 : 0);
      if (!idle) {
        EXPECT_EQ(nice, 10);
      }
    }
    // The proxy's threads keep the normal policy.
    for (const auto& [policy, nice] : policies_of(h.process().pid(), "arb-io")) EXPECT_EQ(policy, 0);
    // And evaluations still happen.
    await_run(h, call(h), "len", "completed");
  }
}

// ---- sampling ----

TEST(Evaluators, SamplingIsDeterministicPerRequestId) {
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: half
    kind: response_length
    sampling: 50
  - name: none
    kind: response_length
    sampling: 0
)"});
  constexpr int kN = 40;
  int in = 0;
  std::vector<std::string> ids;
  for (int i = 0; i < kN; ++i) ids.push_back(call(h));
  for (const auto& id : ids) {
    const bool sampled = scoring::sampling_bucket(id, "half") < 50;
    in += sampled ? 1 : 0;
    if (sampled) await_run(h, id, "half", "completed");
  }
  ASSERT_TRUE(wait_until(
      [&] {
        auto [status, body] = api(h, "GET", "/v1/evaluators");
        const json& c = body["data"][0]["counters"];
        return c["matched"] == kN && c["completed"].get<int>() == in;
      },
      20s));
  for (const auto& id : ids) {
    const json runs = runs_of(h, id);
    std::set<std::string> names;
    for (const auto& r : runs) names.insert(r["evaluator"]);
    EXPECT_EQ(names.count("half") == 1, scoring::sampling_bucket(id, "half") < 50) << id;
    EXPECT_EQ(names.count("none"), 0u);
  }
  // Not everything and not nothing: the bucket really samples.
  EXPECT_GT(in, 0);
  EXPECT_LT(in, kN);
  auto [status, body] = api(h, "GET", "/v1/evaluators");
  EXPECT_EQ(body["data"][0]["counters"]["sampled_out"], kN - in);
  EXPECT_EQ(body["data"][1]["counters"]["sampled_out"], kN);
}

// ---- failures ----

TEST(Evaluators, AFailingEvaluatorRetriesThenErrorsWithoutAffectingOthers) {
  FakeUpstream hook;
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: failing
    kind: http
    retry: { max_attempts: 3, initial_backoff_ms: 10, max_backoff_ms: 40 }
    params:
      url: )" + hook.base_url() + R"(/evaluate
      allow_insecure: true
      headers: { x-fake-status: "503" }
  - name: rejected
    kind: http
    params:
      url: )" + hook.base_url() + R"(/evaluate
      allow_insecure: true
      headers: { x-fake-status: "400" }
  - name: length
    kind: response_length
  - name: private
    kind: http
    retry: { max_attempts: 1 }
    params: { url: "https://127.0.0.1:)" + std::to_string(hook.port()) + R"(/evaluate" }
)"});
  const std::string id = call(h);
  // Without allow_insecure the SSRF guard refuses a loopback destination.
  const json refused = await_run(h, id, "private", "error");
  EXPECT_NE(refused["error"].get<std::string>().find("private address 127.0.0.1"), std::string::npos)
      << refused;
  const json failed = await_run(h, id, "failing", "error");
  EXPECT_EQ(failed["attempts"], 3);
  EXPECT_NE(failed["error"].get<std::string>().find("after 3 attempts"), std::string::npos) << failed;
  EXPECT_NE(failed["error"].get<std::string>().find("503"), std::string::npos) << failed;
  // A 400 is not transient: one attempt.
  const json rejected = await_run(h, id, "rejected", "error");
  EXPECT_EQ(rejected["attempts"], 1);
  EXPECT_EQ(await_run(h, id, "length", "completed")["state"], "completed");
  EXPECT_EQ(scores_of(h, id)["length"]["value"], 5);  // "Hello from the fake upstream."

  // Counters are updated just after each run's commit.
  ASSERT_TRUE(wait_until(
      [&] {
        const json d = api(h, "GET", "/v1/evaluators").second["data"];
        return d[0]["counters"]["errors"] == 1 && d[1]["counters"]["errors"] == 1 &&
               d[2]["counters"]["completed"] == 1;
      },
      10s));
  auto [status, body] = api(h, "GET", "/v1/evaluators");
  ASSERT_EQ(status, 200);
  const json& c = body["data"][0]["counters"];
  EXPECT_EQ(body["data"][0]["name"], "failing");
  EXPECT_EQ(c["errors"], 1);
  EXPECT_EQ(c["retries"], 2);
  EXPECT_NE(c["last_error"].get<std::string>().find("503"), std::string::npos);
  EXPECT_EQ(body["data"][2]["counters"]["completed"], 1);
  EXPECT_EQ(body["data"][2]["counters"]["errors"], 0);
  EXPECT_EQ(h.metric("arbiter_evaluator_errors_total{evaluator=\"failing\"}"), 1);
  EXPECT_EQ(h.metric("arbiter_evaluator_retries_total{evaluator=\"failing\"}"), 2);
  EXPECT_EQ(h.metric("arbiter_evaluator_completed_total{evaluator=\"length\"}"), 1);
}

TEST(Evaluators, AHangingEvaluatorTimesOutAndNeverDelaysTheProxy) {
  FakeUpstream hook;
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: hanging
    kind: http
    timeout_ms: 1500
    concurrency: 1
    retry: { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 10 }
    params:
      url: )" + hook.base_url() + R"(/evaluate
      allow_insecure: true
      headers: { x-fake-hang: "1" }
  - name: length
    kind: response_length
)"});
  const std::string first = call(h);
  // The evaluator's call to the hook is hanging now...
  ASSERT_TRUE(wait_until([&] { return hook.request_count() >= 1; }, 10s));
  // ...and a proxied call is answered meanwhile, its other evaluator too.
  const std::string second = call(h);
  const auto still = run_of(h, first, "hanging");
  ASSERT_TRUE(still);
  EXPECT_TRUE((*still)["state"] == "running" || (*still)["state"] == "pending") << *still;
  await_run(h, second, "length", "completed");
  // Timeout → one retry → error.
  const json err = await_run(h, first, "hanging", "error", 30s);
  EXPECT_EQ(err["attempts"], 2);
  EXPECT_NE(err["error"].get<std::string>().find("timed out"), std::string::npos) << err;
}

// ---- the API ----

TEST(Evaluators, ApiListsRunsAndDryRunsWithErrorsNamingTheField) {
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: length
    kind: response_length
    filter: { path: /never }
  - name: kw
    kind: keywords
    score: { name: mentions_hello, data_type: BOOLEAN }
    params: { keywords: [ hello ] }
)"});
  const std::string id = call(h);
  await_run(h, id, "kw", "completed");

  // GET /v1/evaluators: config and counters (counted just after the commit).
  ASSERT_TRUE(wait_until(
      [&] { return api(h, "GET", "/v1/evaluators").second["data"][1]["counters"]["completed"] == 1; }, 10s));
  auto [status, list] = api(h, "GET", "/v1/evaluators");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(list["data"].size(), 2u);
  const json& kw = list["data"][1];
  EXPECT_EQ(kw["name"], "kw");
  EXPECT_EQ(kw["kind"], "keywords");
  EXPECT_EQ(kw["score"], json::parse(R"({"name": "mentions_hello", "data_type": "BOOLEAN"})"));
  EXPECT_EQ(kw["params"]["keywords"], json::array({"hello"}));
  EXPECT_EQ(kw["sampling"], 100);
  for (const char* c : {"matched", "sampled_out", "waiting", "completed", "errors", "last_error", "duration_ms"}) {
    EXPECT_TRUE(kw["counters"].contains(c)) << c;
  }
  EXPECT_EQ(kw["counters"]["completed"], 1);
  EXPECT_EQ(list["data"][0]["counters"]["matched"], 0);

  // Runs: project-isolated.
  const json runs = runs_of(h, id);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["evaluator"], "kw");
  EXPECT_EQ(runs[0]["scores"][0]["name"], "mentions_hello");
  EXPECT_EQ(runs[0]["scores"][0]["value"], true);
  EXPECT_EQ(runs_of(h, id, kKeyB), json::array());
  EXPECT_EQ(api(h, "GET", "/v1/evaluators/runs").first, 400);
  EXPECT_EQ(api(h, "GET", "/v1/evaluators/runs?request_id=" + id, "", nullptr).first, 401);
  EXPECT_EQ(api(h, "GET", "/v1/evaluators", "", "wrong").first, 401);

  // A dry run returns scores without storing them.
  auto [dry_status, dry] =
      api(h, "POST", "/v1/evaluators/length/run", json{{"request_id", id}}.dump());
  ASSERT_EQ(dry_status, 200) << dry;
  EXPECT_EQ(dry["data"]["state"], "completed");
  EXPECT_EQ(dry["data"]["stored"], false);
  EXPECT_EQ(dry["data"]["scores"][0]["name"], "length");
  EXPECT_EQ(dry["data"]["scores"][0]["value"], 5);
  EXPECT_FALSE(scores_of(h, id).count("length"));
  EXPECT_FALSE(run_of(h, id, "length"));
  // store: true writes the scores and the run.
  auto [stored_status, stored] =
      api(h, "POST", "/v1/evaluators/length/run", json{{"request_id", id}, {"store", true}}.dump());
  ASSERT_EQ(stored_status, 201) << stored;
  EXPECT_EQ(scores_of(h, id)["length"]["value"], 5);
  EXPECT_EQ(run_of(h, id, "length").value_or(json())["manual"], true);

  // Bad inputs.
  struct Case {
    std::string target, body;
    int status;
    std::string needle;
    const char* key = kKeyA;
  };
  const std::vector<Case> cases = {
      {"/v1/evaluators/nope/run", json{{"request_id", id}}.dump(), 404, "evaluator 'nope' not found"},
      {"/v1/evaluators/length/run", R"({"request_id": "0c8f2d3e-1b2a-4c5d-9e8f-0a1b2c3d4e5f"})", 404,
       "not found"},
      {"/v1/evaluators/length/run", json{{"request_id", id}}.dump(), 404, "not found", kKeyB},
      {"/v1/evaluators/length/run", "{}", 400, "request_id"},
      {"/v1/evaluators/length/run", R"({"request_id": 7})", 400, "request_id"},
      {"/v1/evaluators/length/run", json{{"request_id", id}, {"store", "yes"}}.dump(), 400, "store"},
      {"/v1/evaluators/length/run", json{{"request_id", id}, {"extra", 1}}.dump(), 400, "'extra'"},
      {"/v1/evaluators/length/run", R"({"request_id": )", 400, "malformed JSON"},
      {"/v1/evaluators/length/run", "[1]", 400, "JSON object"},
      {"/v1/evaluators/length/run", json{{"request_id", id}}.dump(), 401, "Authorization", nullptr},
  };
  for (const auto& c : cases) {
    auto [st, body] = api(h, "POST", c.target, c.body, c.key);
    EXPECT_EQ(st, c.status) << c.body;
    ASSERT_TRUE(body.is_object()) << c.body;
    EXPECT_NE(body["error"].get<std::string>().find(c.needle), std::string::npos)
        << c.body << " → " << body["error"];
  }
}

// ---- start-up ----

std::pair<int, std::string> start_with(const std::string& evaluators_yaml, bool check_only) {
  TempDir dir;
  const std::string yaml = "server:\n  proxy_listen: 127.0.0.1:0\n  api_listen: 127.0.0.1:0\nstorage:\n  path: " +
                           (dir.path() / "data").string() +
                           "\nupstreams:\n  - name: openai\n    base_url: http://127.0.0.1:9\n"
                           "projects:\n  - name: alpha\n    api_keys: [ k ]\n" +
                           evaluators_yaml;
  const auto config = dir.path() / "arbiter.yaml";
  std::ofstream(config) << yaml;
  std::vector<std::string> argv = {arbiter_binary().string(), "--config", config.string()};
  if (check_only) argv.push_back("--check");
  ChildProcess p(argv, {}, dir.path() / "stderr");
  const auto code = p.wait_exit(20s);
  std::ifstream in(dir.path() / "stderr");
  std::string err(std::istreambuf_iterator<char>(in), {});
  // Callers expect a failed start (any non-zero code): a sanitizer's exit
  // code must not pass for one.
  EXPECT_EQ(find_sanitizer_report(err), "");
  return {code.value_or(-1), std::move(err)};
}

TEST(Evaluators, BadPluginsAndParamsAreStartUpErrors) {
  struct Case {
    std::string yaml;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"evaluators:\n  - name: broken\n    kind: plugin\n    params: { library: " +
           yaml_string(BAD_ABI_VERSION_PLUGIN) + " }\n",
       "evaluators[0]: evaluator 'broken' (kind plugin): params.library: plugin " +
           std::string(BAD_ABI_VERSION_PLUGIN) + ": ABI version"},
      {"evaluators:\n  - name: broken\n    kind: plugin\n    params: { library: " +
           yaml_string(BAD_MISSING_SYMBOL_PLUGIN) + " }\n",
       "arbiter_evaluator_plugin"},
      {"evaluators:\n  - name: missing\n    kind: plugin\n    params: { library: /nonexistent/lib.so }\n",
       "/nonexistent/lib.so"},
      {"evaluators:\n  - name: cfg\n    kind: plugin\n    params: { library: " +
           yaml_string(ARBITER_EXAMPLE_PLUGIN) + ", config: { colour: red } }\n",
       "evaluator 'cfg' (kind plugin)"},
      {"evaluators:\n  - name: kw\n    kind: keywords\n    params: { keywords: 3 }\n",
       "evaluator 'kw' (kind keywords): params.keywords"},
      {"evaluators:\n  - name: what\n    kind: telepathy\n", "unknown kind 'telepathy'"},
      {"evaluators:\n  - name: j\n    kind: llm_judge\n    params: { template_file: /nonexistent.txt, upstream: "
       "openai, model: m }\n",
       "params.template_file: cannot read '/nonexistent.txt'"},
      {"evaluators:\n  - name: j\n    kind: llm_judge\n    params: { template: \"{{ secrets.x }}\", upstream: "
       "openai, model: m }\n",
       "params.template"},
      {"evaluators:\n  - name: j\n    kind: llm_judge\n    params: { template: x, upstream: nowhere, model: m }\n",
       "params.upstream: no upstream named 'nowhere'"},
      {"evaluators:\n  - name: hook\n    kind: http\n    params: { url: \"http://example.com/x\" }\n",
       "params.url: plain http:// needs allow_insecure: true"},
  };
  for (const auto& c : cases) {
    for (bool check : {false, true}) {
      auto [code, err] = start_with(c.yaml, check);
      EXPECT_EQ(code, 1) << c.yaml;
      EXPECT_NE(err.find(c.needle), std::string::npos) << (check ? "--check: " : "") << err;
      EXPECT_NE(err.find("arbiter.yaml:"), std::string::npos) << err;
    }
  }
  auto [code, err] = start_with(
      "evaluators:\n  - name: ok\n    kind: plugin\n    params: { library: " + yaml_string(ARBITER_EXAMPLE_PLUGIN) +
          " }\n",
      true);
  EXPECT_EQ(code, 0) << err;
}

// ---- durability ----

TEST(Evaluators, RunsPendingAtASigkillCompleteAfterRestart) {
  FakeUpstream hook;
  GatewayHarness h({.top_extra = R"(evaluators:
  - name: slow
    kind: http
    concurrency: 1
    params:
      url: )" + hook.base_url() + R"(/evaluate
      allow_insecure: true
      headers: { x-fake-delay-ms: "800" }
)"});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(call(h));
  // The first run is with the hook; the others wait their turn (concurrency 1).
  ASSERT_TRUE(wait_until([&] { return hook.request_count() >= 1; }, 10s));
  // Every run is scheduled (its record is stored) before the kill.
  int unfinished = 0;
  for (const auto& id : ids) {
    std::optional<json> r;
    ASSERT_TRUE(wait_until([&] { return (r = run_of(h, id, "slow")).has_value(); }, 10s)) << id;
    if ((*r)["state"] != "completed" && (*r)["state"] != "error") ++unfinished;
  }
  EXPECT_GE(unfinished, 2);
  h.kill();
  h.restart();
  for (const auto& id : ids) {
    const json r = await_run(h, id, "slow", "finished", 30s);
    EXPECT_EQ(r["state"], "completed") << r;
    EXPECT_EQ(scores_of(h, id)["content_bytes"]["value"], 29);  // "Hello from the fake upstream."
  }
}

}  // namespace
}  // namespace arbiter::testing
