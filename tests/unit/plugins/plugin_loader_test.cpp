// parse_evaluator_result, check_plugin_table and PluginInstance over tables
// defined in this file (loading real shared objects is in plugin_library_test).

#include "plugins/plugin_loader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace arbiter::plugins {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// parse_evaluator_result

TEST(ParseEvaluatorResult, ObjectForm) {
  const EvalResult r =
      parse_evaluator_result(R"({"scores": {"accuracy": 0.5, "passed": true, "tone": "polite"}})");
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.scores.size(), 3u);
  // nlohmann objects iterate in key order.
  EXPECT_EQ(r.scores[0].name, "accuracy");
  EXPECT_EQ(r.scores[0].value, json(0.5));
  EXPECT_EQ(r.scores[1].name, "passed");
  EXPECT_EQ(r.scores[1].value, json(true));
  EXPECT_EQ(r.scores[2].name, "tone");
  EXPECT_EQ(r.scores[2].value, json("polite"));
  EXPECT_TRUE(r.scores[2].comment.empty());
}

TEST(ParseEvaluatorResult, ListForm) {
  const EvalResult r = parse_evaluator_result(R"({"scores": [
      {"name": "faithfulness", "value": 4, "comment": "mostly grounded"},
      {"name": "ok", "value": false, "data_type": "BOOLEAN"},
      {"name": "label", "value": "spam", "comment": null, "data_type": "CATEGORICAL"}]})");
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.scores.size(), 3u);
  EXPECT_EQ(r.scores[0].name, "faithfulness");
  EXPECT_EQ(r.scores[0].value, json(4));
  EXPECT_EQ(r.scores[0].comment, "mostly grounded");
  EXPECT_EQ(r.scores[1].value, json(false));
  EXPECT_EQ(r.scores[2].value, json("spam"));
  EXPECT_EQ(r.scores[2].comment, "");
}

TEST(ParseEvaluatorResult, EmptyScoresAreOkWithNoScore) {
  for (const char* text : {R"({"scores": {}})", R"({"scores": []})"}) {
    const EvalResult r = parse_evaluator_result(text);
    EXPECT_TRUE(r.ok) << text << ": " << r.error;
    EXPECT_TRUE(r.scores.empty());
  }
}

TEST(ParseEvaluatorResult, ErrorForm) {
  EvalResult r = parse_evaluator_result(R"({"error": "upstream said 429", "retryable": true})");
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.error, "upstream said 429");

  r = parse_evaluator_result(R"({"error": "bad input"})");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.error, "bad input");

  // An error wins over scores; a null error is no error.
  r = parse_evaluator_result(R"({"error": "boom", "scores": {"a": 1}})");
  EXPECT_FALSE(r.ok);
  r = parse_evaluator_result(R"({"error": null, "scores": {"a": 1}})");
  EXPECT_TRUE(r.ok) << r.error;

  r = parse_evaluator_result(R"({"error": ""})");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.error.empty());
}

struct BadCase {
  const char* text;
  const char* message_part;
};

TEST(ParseEvaluatorResult, RejectsMalformedResults) {
  const BadCase cases[] = {
      {"", "not valid JSON"},
      {"{\"scores\": {\"a\": 1}", "not valid JSON"},
      {"[1, 2]", "must be a JSON object, got an array"},
      {"42", "must be a JSON object, got a number"},
      {"{}", "neither \"scores\" nor \"error\""},
      {R"({"score": {"a": 1}})", "neither \"scores\" nor \"error\""},
      {R"({"scores": 3})", "must be an object or a list, got a number"},
      {R"({"scores": {"a": null}})",
       "score \"a\": value must be a number, boolean or string, got null"},
      {R"({"scores": {"a": {"v": 1}}})", "got an object"},
      {R"({"scores": {"a": [1]}})", "got an array"},
      {R"({"scores": {"": 1}})", "empty name"},
      {R"({"scores": [1]})", "scores[0] must be an object"},
      {R"({"scores": [{"value": 1}]})", "scores[0].name must be a string"},
      {R"({"scores": [{"name": 7, "value": 1}]})", "scores[0].name must be a string"},
      {R"({"scores": [{"name": "", "value": 1}]})", "scores[0].name is empty"},
      {R"({"scores": [{"name": "a"}]})", "score \"a\" has no value"},
      {R"({"scores": [{"name": "a", "value": null}]})", "got null"},
      {R"({"scores": [{"name": "a", "value": 1, "comment": 5}]})", "comment must be a string"},
      {R"({"scores": [{"name": "a", "value": 1, "extra": 5}]})", "unknown member \"extra\""},
      {R"({"scores": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]})",
       "appears more than once"},
      {R"({"scores": [{"name": "a", "value": "x", "data_type": "NUMERIC"}]})",
       "but data_type is NUMERIC"},
      {R"({"scores": [{"name": "a", "value": 1, "data_type": "BOOLEAN"}]})",
       "but data_type is BOOLEAN"},
      {R"({"scores": [{"name": "a", "value": 1, "data_type": "FLOAT"}]})",
       "data_type must be NUMERIC"},
  };
  for (const auto& c : cases) {
    const EvalResult r = parse_evaluator_result(c.text);
    EXPECT_FALSE(r.ok) << c.text;
    EXPECT_FALSE(r.retryable) << c.text;
    EXPECT_THAT(r.error, HasSubstr(c.message_part)) << c.text;
  }
}

TEST(ParseEvaluatorResult, QuotesLongInvalidTextTruncatedOnCharacterBoundary) {
  std::string text = "not json ";
  for (int i = 0; i < 100; ++i) text += "é";  // two bytes each
  const EvalResult r = parse_evaluator_result(text);
  ASSERT_FALSE(r.ok);
  EXPECT_LT(r.error.size(), 200u);
  EXPECT_THAT(r.error, HasSubstr("..."));
  // The quoted part is still valid UTF-8: it parses as a JSON string.
  EXPECT_NO_THROW((void)json(r.error).dump());
}

TEST(ParseEvaluatorResult, QuotedGarbageIsMadeValidUtf8) {
  const EvalResult r = parse_evaluator_result("\xff\xfe garbage \xc3");
  ASSERT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("not valid JSON"));
  EXPECT_THAT(r.error, HasSubstr("\xEF\xBF\xBD"));  // U+FFFD
  EXPECT_NO_THROW((void)json(r.error).dump());
}

// ---------------------------------------------------------------------------
// In-test plugin tables. Each table's functions keep their state in a struct
// behind the opaque handle.

struct Counter {
  std::atomic<int> in_flight{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> calls{0};
};

Counter g_counter;
std::atomic<int> g_live_handles{0};
std::string g_last_config;

char* dup(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

ArbiterEvaluator* echo_create(const char* config, size_t len, char** error_out) {
  g_last_config.assign(config, len);
  const json cfg = json::parse(g_last_config, nullptr, false);
  if (cfg.contains("fail")) {
    if (error_out != nullptr) *error_out = dup("threshold: expected a number");
    return nullptr;
  }
  if (cfg.contains("fail_silently")) return nullptr;
  ++g_live_handles;
  return reinterpret_cast<ArbiterEvaluator*>(new int(7));
}

// Returns the event's "reply" member verbatim (NULL when absent), after
// checking that no other call is inside evaluate at the same time.
char* echo_evaluate(ArbiterEvaluator* handle, const char* event, size_t len) {
  if (handle == nullptr || *reinterpret_cast<int*>(handle) != 7)
    return dup(R"({"error": "bad handle"})");
  if (std::strlen(event) != len) return dup(R"({"error": "length mismatch"})");
  if (g_counter.in_flight.fetch_add(1) != 0) ++g_counter.overlaps;
  ++g_counter.calls;
  for (int i = 0; i < 200; ++i) std::this_thread::yield();  // widen the window
  const json e = json::parse(std::string(event, len), nullptr, false);
  g_counter.in_flight.fetch_sub(1);
  if (!e.contains("reply")) return nullptr;
  return dup(e["reply"].get<std::string>());
}

void echo_free(char* s) {
  std::free(s);
}

void echo_destroy(ArbiterEvaluator* handle) {
  if (handle == nullptr) return;
  --g_live_handles;
  delete reinterpret_cast<int*>(handle);
}

ArbiterEvaluatorPluginV1 make_table(uint32_t flags = 0) {
  ArbiterEvaluatorPluginV1 t{};
  t.abi_version = ARBITER_EVALUATOR_ABI_VERSION;
  t.struct_size = sizeof(ArbiterEvaluatorPluginV1);
  t.flags = flags;
  t.name = "echo";
  t.version = "0.1";
  t.create = echo_create;
  t.evaluate = echo_evaluate;
  t.free_string = echo_free;
  t.destroy = echo_destroy;
  return t;
}

TEST(CheckPluginTable, NamesEachProblem) {
  EXPECT_EQ(check_plugin_table(nullptr), "the entry point returned a NULL table");
  auto t = make_table();
  EXPECT_EQ(check_plugin_table(&t), "");
  t.abi_version = 2;
  EXPECT_EQ(check_plugin_table(&t), "ABI version 2, gateway supports 1");
  t = make_table();
  t.struct_size = 8;
  EXPECT_THAT(check_plugin_table(&t), HasSubstr("struct_size 8 is smaller than"));
  t = make_table();
  t.create = nullptr;
  EXPECT_THAT(check_plugin_table(&t), HasSubstr("create function is NULL"));
  t = make_table();
  t.evaluate = nullptr;
  EXPECT_THAT(check_plugin_table(&t), HasSubstr("evaluate function is NULL"));
  t = make_table();
  t.free_string = nullptr;
  EXPECT_THAT(check_plugin_table(&t), HasSubstr("free_string function is NULL"));
  t = make_table();
  t.destroy = nullptr;
  EXPECT_THAT(check_plugin_table(&t), HasSubstr("destroy function is NULL"));
}

TEST(PluginInstance, CreatesWithConfigAndDestroys) {
  const auto table = make_table();
  const int before = g_live_handles.load();
  {
    PluginInstance instance(&table, nullptr, json{{"threshold", 3}});
    EXPECT_EQ(g_live_handles.load(), before + 1);
    EXPECT_EQ(json::parse(g_last_config), (json{{"threshold", 3}}));
    EXPECT_EQ(instance.name(), "echo");
    EXPECT_EQ(instance.version(), "0.1");
    EXPECT_FALSE(instance.serial());
  }
  EXPECT_EQ(g_live_handles.load(), before);
}

TEST(PluginInstance, CreateFailureCarriesThePluginsMessage) {
  const auto table = make_table();
  try {
    PluginInstance instance(&table, nullptr, json{{"fail", true}});
    FAIL() << "create should have failed";
  } catch (const PluginError& e) {
    EXPECT_STREQ(e.what(), "threshold: expected a number");
  }
  EXPECT_THROW(PluginInstance(&table, nullptr, json{{"fail_silently", true}}), PluginError);
}

TEST(PluginInstance, RefusesABadTable) {
  auto table = make_table();
  table.abi_version = 2;
  EXPECT_THROW(PluginInstance(&table, nullptr, json::object()), PluginError);
  EXPECT_THROW(PluginInstance(nullptr, nullptr, json::object()), PluginError);
}

TEST(PluginInstance, EvaluateParsesWhatThePluginReturns) {
  const auto table = make_table();
  PluginInstance instance(&table, nullptr, json::object());

  EvalResult r = instance.evaluate(json{{"reply", R"({"scores": {"x": 1}})"}}.dump());
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.scores.size(), 1u);
  EXPECT_EQ(r.scores[0].name, "x");

  r = instance.evaluate(json{{"reply", R"({"error": "slow down", "retryable": true})"}}.dump());
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.error, "slow down");

  r = instance.evaluate(json{{"reply", "garbage"}}.dump());
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("not valid JSON"));

  r = instance.evaluate(json::object().dump());  // the plugin returns NULL
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "plugin returned no result");
}

TEST(PluginInstance, PassesANulTerminatedCopyOfAView) {
  const auto table = make_table();
  PluginInstance instance(&table, nullptr, json::object());
  // A view into the middle of a larger buffer: the plugin must see exactly the
  // view, NUL-terminated (echo_evaluate checks strlen against the length).
  const std::string buffer = json{{"reply", R"({"scores": {}})"}}.dump() + "TRAILING";
  const std::string_view view(buffer.data(), buffer.size() - 8);
  const EvalResult r = instance.evaluate(view);
  EXPECT_TRUE(r.ok) << r.error;
}

TEST(PluginInstance, SerialFlagSerialisesCalls) {
  const auto table = make_table(ARBITER_EVALUATOR_FLAG_SERIAL);
  PluginInstance instance(&table, nullptr, json::object());
  ASSERT_TRUE(instance.serial());
  g_counter.overlaps = 0;
  g_counter.calls = 0;
  const std::string event = json{{"reply", R"({"scores": {"x": 1}})"}}.dump();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (!instance.evaluate(event).ok) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(g_counter.calls.load(), 800);
  EXPECT_EQ(g_counter.overlaps.load(), 0);
}

}  // namespace
}  // namespace arbiter::plugins
