// Loading real shared objects: the example plugin (plugins/examples) and the
// deliberately broken ones built from tests/unit/plugins/test_plugins.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "plugins/plugin_loader.hpp"
#include "tests/support/temp_dir.hpp"

namespace arbiter::plugins {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string open_error(const std::string& path) {
  try {
    PluginLibrary::open(path);
  } catch (const PluginError& e) {
    return e.what();
  }
  return "";
}

json event(const std::string& output, const json& ground_truth) {
  json e{{"outputs", {{"content", output}}},
         {"feedback", json::object()},
         {"metadata", json::object()}};
  if (!ground_truth.is_null()) e["feedback"]["ground_truth"] = ground_truth;
  return e;
}

TEST(ExamplePlugin, LoadsAndDescribesItself) {
  const auto library = PluginLibrary::open(ARBITER_EXAMPLE_PLUGIN);
  ASSERT_NE(library, nullptr);
  EXPECT_EQ(library->path(), ARBITER_EXAMPLE_PLUGIN);
  ASSERT_NE(library->table(), nullptr);
  EXPECT_STREQ(library->table()->name, "word_overlap");
  EXPECT_EQ(check_plugin_table(library->table()), "");
}

TEST(ExamplePlugin, ScoresWordOverlapAndRequiredWords) {
  const auto library = PluginLibrary::open(ARBITER_EXAMPLE_PLUGIN);
  PluginInstance instance(library->table(), library, json{{"required_words", {"Paris"}}});
  EXPECT_FALSE(instance.serial());

  EvalResult r =
      instance.evaluate(event("The capital of France is Paris.", "Paris is the capital").dump());
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.scores.size(), 2u);
  EXPECT_EQ(r.scores[0].name, "mentions_required");
  EXPECT_EQ(r.scores[0].value, json(true));
  EXPECT_EQ(r.scores[1].name, "word_overlap");
  EXPECT_DOUBLE_EQ(r.scores[1].value.get<double>(), 1.0);  // paris is the capital: all four present

  r = instance.evaluate(event("Lyon, probably.", "Paris is the capital").dump());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.scores[0].value, json(false));
  EXPECT_DOUBLE_EQ(r.scores[1].value.get<double>(), 0.0);

  r = instance.evaluate(event("the capital", "Paris is the capital").dump());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.scores[1].value.get<double>(), 0.5);
}

TEST(ExamplePlugin, ReadsConfiguredPaths) {
  const auto library = PluginLibrary::open(ARBITER_EXAMPLE_PLUGIN);
  PluginInstance instance(
      library->table(), library,
      json{{"output", "inputs.messages.0.content"}, {"reference", "properties.expected"}});
  const json e{{"inputs", {{"messages", {{{"role", "user"}, {"content", "red green"}}}}}},
               {"properties", {{"expected", "green blue"}}}};
  const EvalResult r = instance.evaluate(e.dump());
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.scores.size(), 1u);  // no required_words: no mentions_required
  EXPECT_EQ(r.scores[0].name, "word_overlap");
  EXPECT_DOUBLE_EQ(r.scores[0].value.get<double>(), 0.5);
}

TEST(ExamplePlugin, MissingFieldIsAnErrorRun) {
  const auto library = PluginLibrary::open(ARBITER_EXAMPLE_PLUGIN);
  PluginInstance instance(library->table(), library, json::object());
  const EvalResult r = instance.evaluate(event("hello", nullptr).dump());
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.error, "event has no feedback.ground_truth");
}

TEST(ExamplePlugin, ConfigErrorsSurfaceAsPluginErrors) {
  const auto library = PluginLibrary::open(ARBITER_EXAMPLE_PLUGIN);
  const auto create_error = [&](const json& config) -> std::string {
    try {
      PluginInstance instance(library->table(), library, config);
    } catch (const PluginError& e) {
      return e.what();
    }
    return "";
  };
  const std::string prefix = std::string("plugin ") + ARBITER_EXAMPLE_PLUGIN + ": word_overlap: ";
  EXPECT_EQ(create_error(json{{"required_words", "paris"}}),
            prefix + "required_words: expected a list of strings");
  EXPECT_EQ(
      create_error(json{{"treshold", 1}}),
      prefix + "unknown config key \"treshold\" (expected output, reference, required_words)");
  EXPECT_EQ(create_error(json{{"output", 3}}), prefix + "output: expected an event path string");
  EXPECT_EQ(create_error(json::array()), prefix + "config must be an object");
  EXPECT_EQ(create_error(json::object()), "");
}

TEST(ExamplePlugin, ConcurrentCallsOnOneHandle) {
  const auto library = PluginLibrary::open(ARBITER_EXAMPLE_PLUGIN);
  PluginInstance instance(library->table(), library, json{{"required_words", {"b"}}});
  const std::string e = event("a b c", "a b c d").dump();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        const EvalResult r = instance.evaluate(e);
        if (!r.ok || r.scores.size() != 2 || r.scores[1].value != json(0.75)) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(ExamplePlugin, InstanceKeepsTheLibraryLoaded) {
  std::unique_ptr<PluginInstance> instance;
  {
    auto library = PluginLibrary::open(ARBITER_EXAMPLE_PLUGIN);
    instance = std::make_unique<PluginInstance>(library->table(), library, json::object());
  }
  // The local shared_ptr is gone; the instance's copy keeps the code mapped.
  const EvalResult r = instance->evaluate(event("x y", "y z").dump());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.scores.at(0).value.get<double>(), 0.5);
}

// ---------------------------------------------------------------------------
// Start-up errors

TEST(BadPlugin, NonexistentPathNamesItAndDlerror) {
  arbiter::testing::TempDir dir;
  const std::string path = (dir.path() / "no_such_plugin.so").string();
  const std::string error = open_error(path);
  EXPECT_THAT(error, HasSubstr("plugin " + path + ": cannot load: "));
  EXPECT_THAT(error, HasSubstr("No such file"));
}

TEST(BadPlugin, NotASharedObject) {
  arbiter::testing::TempDir dir;
  const std::string path = (dir.path() / "text.so").string();
  std::ofstream(path) << "just text\n";
  const std::string error = open_error(path);
  EXPECT_THAT(error, HasSubstr("plugin " + path + ": cannot load: "));
}

TEST(BadPlugin, EmptyPath) {
  EXPECT_THAT(open_error(""), HasSubstr("path is empty"));
}

TEST(BadPlugin, MissingSymbol) {
  EXPECT_THAT(open_error(BAD_MISSING_SYMBOL_PLUGIN),
              HasSubstr(std::string("plugin ") + BAD_MISSING_SYMBOL_PLUGIN +
                        ": does not export the symbol \"arbiter_evaluator_plugin\""));
}

TEST(BadPlugin, NullTable) {
  EXPECT_EQ(open_error(BAD_NULL_TABLE_PLUGIN), std::string("plugin ") + BAD_NULL_TABLE_PLUGIN +
                                                   ": the entry point returned a NULL table");
}

TEST(BadPlugin, WrongAbiVersion) {
  EXPECT_EQ(open_error(BAD_ABI_VERSION_PLUGIN), std::string("plugin ") + BAD_ABI_VERSION_PLUGIN +
                                                    ": ABI version 2, gateway supports 1");
}

TEST(BadPlugin, StructSizeTooSmall) {
  EXPECT_THAT(open_error(BAD_STRUCT_SIZE_PLUGIN),
              HasSubstr(std::string("plugin ") + BAD_STRUCT_SIZE_PLUGIN +
                        ": table struct_size 16 is smaller than"));
}

TEST(BadPlugin, NullFunction) {
  EXPECT_EQ(open_error(BAD_NULL_FUNCTION_PLUGIN), std::string("plugin ") +
                                                      BAD_NULL_FUNCTION_PLUGIN +
                                                      ": the table's evaluate function is NULL");
}

TEST(BadPlugin, GarbageResultsAreErrorRunsNotCrashes) {
  const auto library = PluginLibrary::open(BAD_GARBAGE_PLUGIN);
  PluginInstance instance(library->table(), library, json::object());
  EvalResult r = instance.evaluate(R"({"outputs": {"content": "x"}})");
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("not valid JSON: \"this is not json\""));
  r = instance.evaluate(R"({"outputs": {"content": null}})");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "plugin returned no result");
}

}  // namespace
}  // namespace arbiter::plugins
