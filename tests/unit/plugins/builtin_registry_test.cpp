// The built-in kinds driven through their ABI tables, as the runtime drives
// them: every vector of ../shared/reference/evaluators.json, turned into an
// event, plus param validation and missing-field errors.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "plugins/builtin/registry.hpp"
#include "plugins/plugin_loader.hpp"

namespace arbiter::plugins::builtin {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr double kTolerance = 1e-9;
constexpr const char* kVectorsPath = ARBITER_SHARED_DIR "/reference/evaluators.json";

struct Vector {
  std::size_t index = 0;
  json data;
};

std::vector<Vector> load_vectors() {
  std::ifstream in(kVectorsPath);
  if (!in) return {};
  const json doc = json::parse(in, nullptr, false);
  if (doc.is_discarded() || !doc.contains("vectors") || !doc["vectors"].is_array()) return {};
  std::vector<Vector> out;
  for (const auto& v : doc["vectors"]) out.push_back({out.size(), v});
  return out;
}

const std::vector<Vector>& vectors() {
  static const std::vector<Vector> kVectors = load_vectors();
  return kVectors;
}

json config_with(json params, const std::string& score_name = "s") {
  params["score_name"] = score_name;
  return params;
}

// The event of DESIGN.md §6 for one vector.
json event_of(const json& v) {
  json event{{"inputs", json::object()},   {"outputs", json::object()},
             {"feedback", json::object()}, {"properties", json::object()},
             {"metadata", json::object()}, {"request_id", "r-1"}};
  if (v.contains("output")) event["outputs"]["content"] = v["output"];
  if (v.contains("ground_truth")) event["feedback"]["ground_truth"] = v["ground_truth"];
  if (v.contains("metadata")) event["metadata"] = v["metadata"];
  return event;
}

EvalResult run(std::string_view kind, const json& params, const json& event) {
  const ArbiterEvaluatorPluginV1* table = find_builtin(kind);
  if (table == nullptr) {
    ADD_FAILURE() << "no built-in table for kind " << kind;
    return {};
  }
  PluginInstance instance(table, nullptr, config_with(params));
  return instance.evaluate(event.dump());
}

std::string create_error(std::string_view kind, const json& config) {
  const ArbiterEvaluatorPluginV1* table = find_builtin(kind);
  if (table == nullptr) return "no table";
  try {
    PluginInstance instance(table, nullptr, config);
  } catch (const PluginError& e) {
    return e.what();
  }
  return "";
}

TEST(BuiltinVectors, FileLoads) {
  EXPECT_FALSE(vectors().empty()) << "cannot load " << kVectorsPath;
}

class BuiltinVector : public ::testing::TestWithParam<Vector> {};

TEST_P(BuiltinVector, ReproducesThroughTheAbiTable) {
  const json& v = GetParam().data;
  SCOPED_TRACE(v.dump());
  const EvalResult r =
      run(v.at("kind").get<std::string>(), v.value("params", json::object()), event_of(v));
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.scores.size(), 1u);
  EXPECT_EQ(r.scores[0].name, "s");
  const json& expected = v.at("expected");
  const json& got = r.scores[0].value;
  if (expected.is_boolean()) {
    ASSERT_TRUE(got.is_boolean()) << got;
    EXPECT_EQ(got.get<bool>(), expected.get<bool>());
  } else {
    ASSERT_TRUE(got.is_number()) << got;
    EXPECT_NEAR(got.get<double>(), expected.get<double>(), kTolerance);
  }
}

// The runtime calls built-ins directly (BuiltinEvaluator), not through the
// table: the same result for every vector, and for the event without the
// fields the kind reads (its error).
void expect_same(const EvalResult& direct, const EvalResult& table) {
  EXPECT_EQ(direct.ok, table.ok);
  EXPECT_EQ(direct.retryable, table.retryable);
  EXPECT_EQ(direct.error, table.error);
  ASSERT_EQ(direct.scores.size(), table.scores.size());
  for (std::size_t i = 0; i < direct.scores.size(); ++i) {
    EXPECT_EQ(direct.scores[i].name, table.scores[i].name);
    EXPECT_EQ(direct.scores[i].value, table.scores[i].value);
    EXPECT_EQ(direct.scores[i].comment, table.scores[i].comment);
  }
}

TEST_P(BuiltinVector, DirectCallGivesWhatTheAbiTableGives) {
  const json& v = GetParam().data;
  SCOPED_TRACE(v.dump());
  const std::string kind = v.at("kind").get<std::string>();
  const json params = v.value("params", json::object());
  auto direct = BuiltinEvaluator::create(kind, config_with(params));
  ASSERT_NE(direct, nullptr);
  const json event = event_of(v);
  expect_same(parse_evaluator_document(direct->evaluate(event)), run(kind, params, event));
  json bare{{"outputs", json::object()}, {"feedback", json::object()}, {"metadata", json::object()}};
  expect_same(parse_evaluator_document(direct->evaluate(bare)), run(kind, params, bare));
  EXPECT_FALSE(parse_evaluator_document(direct->evaluate(json::array())).ok);
}

TEST(BuiltinEvaluator, CreateRefusesWhatTheTableRefusesWithTheSameMessage) {
  EXPECT_EQ(BuiltinEvaluator::create("llm_judge", config_with(json::object())), nullptr);
  for (const auto& [kind, config] : std::vector<std::pair<std::string, json>>{
           {"keywords", config_with({{"keywords", 3}})},
           {"keywords", config_with({{"keywords", {"a"}}, {"bogus", 1}})},
           {"response_length", json{{"output", "outputs.content"}}},
           {"json_schema", config_with({{"schema_file", "/nonexistent/schema.json"}})}}) {
    std::string message;
    try {
      (void)BuiltinEvaluator::create(kind, config);
    } catch (const BuiltinConfigError& e) {
      message = e.what();
    }
    EXPECT_FALSE(message.empty()) << kind << " " << config;
    EXPECT_EQ(message, create_error(kind, config)) << kind;
  }
}

INSTANTIATE_TEST_SUITE_P(Evaluators, BuiltinVector, ::testing::ValuesIn(vectors()),
                         [](const ::testing::TestParamInfo<Vector>& param_info) {
                           return std::to_string(param_info.param.index) + "_" +
                                  param_info.param.data.value("kind", std::string("unknown"));
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(BuiltinVector);

TEST(BuiltinRegistry, EveryVectorKindAndTheDocumentedKindsHaveTables) {
  for (const auto& v : vectors()) {
    EXPECT_NE(find_builtin(v.data.at("kind").get<std::string>()), nullptr) << v.data.at("kind");
  }
  const std::vector<std::string_view> kinds = builtin_kinds();
  for (const char* kind :
       {"response_length", "levenshtein", "rouge_l", "bleu", "flesch_reading_ease",
        "json_key_coverage", "tokens_per_second", "keywords", "json_schema", "sql_parse"}) {
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), kind), kinds.end()) << kind;
    const ArbiterEvaluatorPluginV1* table = find_builtin(kind);
    ASSERT_NE(table, nullptr) << kind;
    EXPECT_EQ(check_plugin_table(table), "") << kind;
    EXPECT_STREQ(table->name, kind);
    EXPECT_EQ(table->flags & ARBITER_EVALUATOR_FLAG_SERIAL, 0u) << kind;
  }
  for (const std::string_view kind : kinds) EXPECT_NE(find_builtin(kind), nullptr) << kind;
  EXPECT_EQ(find_builtin("llm_judge"), nullptr);
  EXPECT_EQ(find_builtin("http"), nullptr);
  EXPECT_EQ(find_builtin(""), nullptr);
  EXPECT_EQ(find_builtin("Levenshtein"), nullptr);
}

// ---------------------------------------------------------------------------
// Params

TEST(BuiltinParams, ScoreNameIsRequired) {
  EXPECT_THAT(create_error("response_length", json::object()), HasSubstr("score_name"));
  EXPECT_THAT(create_error("response_length", json{{"score_name", ""}}), HasSubstr("score_name"));
  EXPECT_THAT(create_error("response_length", json{{"score_name", 3}}), HasSubstr("score_name"));
  EXPECT_EQ(create_error("response_length", json{{"score_name", "len"}}), "");
}

TEST(BuiltinParams, ConfigMustBeAnObject) {
  EXPECT_THAT(create_error("bleu", json::array()), HasSubstr("params: expected an object"));
}

TEST(BuiltinParams, UnknownParamsAreRejectedByName) {
  EXPECT_THAT(create_error("levenshtein", config_with({{"refrence", "feedback.x"}})),
              HasSubstr("unknown param \"refrence\" (expected output, reference)"));
  EXPECT_THAT(create_error("tokens_per_second", config_with({{"output", "outputs.content"}})),
              HasSubstr("unknown param \"output\" (this kind takes no params)"));
  EXPECT_THAT(
      create_error("keywords", config_with({{"keywords", {"a"}}, {"case_sensitive", true}})),
      HasSubstr("unknown param \"case_sensitive\""));
}

TEST(BuiltinParams, WrongTypesNameTheParam) {
  EXPECT_EQ(create_error("keywords", config_with({{"keywords", "paris"}})),
            "keywords: expected a list of strings");
  EXPECT_EQ(create_error("keywords", config_with({{"keywords", {"a", 1}}})),
            "keywords: expected a list of strings");
  EXPECT_THAT(create_error("keywords", config_with({{"keywords", json::array()}})),
              HasSubstr("keywords: expected a non-empty list"));
  EXPECT_THAT(create_error("keywords", config_with(json::object())),
              HasSubstr("keywords: required"));
  EXPECT_EQ(create_error("json_key_coverage", config_with({{"required_keys", {{"a", 1}}}})),
            "required_keys: expected a list of strings");
  EXPECT_THAT(create_error("json_key_coverage", config_with(json::object())),
              HasSubstr("required_keys: required"));
  EXPECT_THAT(create_error("rouge_l", config_with({{"output", 5}})),
              HasSubstr("output: expected an event path"));
  EXPECT_THAT(create_error("rouge_l", config_with({{"reference", "feedback..x"}})),
              HasSubstr("reference: expected an event path"));
  EXPECT_THAT(create_error("response_length", config_with({{"output", ""}})),
              HasSubstr("output: expected an event path"));
}

// ---------------------------------------------------------------------------
// Events

TEST(BuiltinEvents, CustomPathsAreRead) {
  const json event{{"outputs", {{"choices", {{{"text", "the cat sat"}}}}}},
                   {"feedback", {{"expected", {{"answer", "the cat sat"}}}}}};
  const EvalResult r =
      run("levenshtein",
          {{"output", "outputs.choices.0.text"}, {"reference", "feedback.expected.answer"}}, event);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.scores.at(0).value.get<double>(), 1.0);
}

TEST(BuiltinEvents, MissingFieldsAreNamedAndNotRetryable) {
  const json no_ground_truth{{"outputs", {{"content", "Paris"}}}, {"feedback", json::object()}};
  EvalResult r = run("rouge_l", json::object(), no_ground_truth);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.error, "event has no feedback.ground_truth");

  r = run("response_length", json::object(), json{{"outputs", json::object()}});
  EXPECT_EQ(r.error, "event has no outputs.content");

  // A null field counts as missing (a tool-call response has content null).
  r = run("keywords", {{"keywords", {"a"}}}, json{{"outputs", {{"content", nullptr}}}});
  EXPECT_EQ(r.error, "event has no outputs.content");

  r = run("tokens_per_second", json::object(), json{{"metadata", {{"latency_ms", 100}}}});
  EXPECT_EQ(r.error, "event has no metadata.completion_tokens");
  r = run("tokens_per_second", json::object(), json{{"metadata", {{"completion_tokens", 10}}}});
  EXPECT_EQ(r.error, "event has no metadata.latency_ms");
  r = run("tokens_per_second", json::object(),
          json{{"metadata", {{"completion_tokens", "10"}, {"latency_ms", 5}}}});
  EXPECT_EQ(r.error, "metadata.completion_tokens is not a number");
}

TEST(BuiltinEvents, NonStringFieldsAreComparedAsJsonText) {
  // A structured ground truth is compared as its compact JSON text.
  const json event{{"outputs", {{"content", R"({"a":1})"}}},
                   {"feedback", {{"ground_truth", {{"a", 1}}}}}};
  const EvalResult r = run("levenshtein", json::object(), event);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.scores.at(0).value.get<double>(), 1.0);
}

TEST(BuiltinEvents, JsonKeyCoverageExplainsMinusOne) {
  const EvalResult r = run("json_key_coverage", {{"required_keys", {"a"}}},
                           json{{"outputs", {{"content", "nope"}}}});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.scores.at(0).value, json(-1));
  EXPECT_EQ(r.scores.at(0).comment, "output is not JSON");
}

TEST(BuiltinEvents, BadEventsAreErrorsNotCrashes) {
  const ArbiterEvaluatorPluginV1* table = find_builtin("response_length");
  ASSERT_NE(table, nullptr);
  PluginInstance instance(table, nullptr, config_with(json::object()));
  EvalResult r = instance.evaluate("not json");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "event is not valid JSON");
  r = instance.evaluate("[1]");
  EXPECT_EQ(r.error, "event is not a JSON object");
}

TEST(BuiltinEvents, EventWithALoneSurrogateIsRefused) {
  // A lone UTF-16 surrogate escape cannot be decoded to UTF-8: the event is
  // refused as a whole, with an error run rather than a mangled score.
  const ArbiterEvaluatorPluginV1* table = find_builtin("response_length");
  PluginInstance instance(table, nullptr, config_with(json::object()));
  const EvalResult r = instance.evaluate(R"({"outputs": {"content": "a \ud800 b"}})");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "event is not valid JSON");
}

TEST(BuiltinEvents, ConcurrentEvaluationsOnOneHandleAgree) {
  const ArbiterEvaluatorPluginV1* table = find_builtin("rouge_l");
  PluginInstance instance(table, nullptr, config_with(json::object()));
  const std::string event =
      json{{"outputs", {{"content", "The cat sat on the mat. It was happy."}}},
           {"feedback", {{"ground_truth", "The cat was sitting on the mat. The cat was happy."}}}}
          .dump();
  const EvalResult first = instance.evaluate(event);
  ASSERT_TRUE(first.ok) << first.error;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        const EvalResult r = instance.evaluate(event);
        if (!r.ok || r.scores.at(0).value != first.scores.at(0).value) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace arbiter::plugins::builtin
