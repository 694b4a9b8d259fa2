// json_schema (valijson) and sql_parse (libpg_query) through their ABI tables,
// plus the fence stripping and PostgreSQL check functions directly.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "plugins/builtin/registry.hpp"
#include "plugins/builtin/sql_parse.hpp"
#include "plugins/plugin_loader.hpp"
#include "tests/support/temp_dir.hpp"

namespace arbiter::plugins::builtin {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

json config_with(json params) {
  params["score_name"] = "s";
  return params;
}

std::unique_ptr<PluginInstance> make(std::string_view kind, const json& params) {
  return std::make_unique<PluginInstance>(find_builtin(kind), nullptr, config_with(params));
}

std::string create_error(std::string_view kind, const json& params) {
  try {
    make(kind, params);
  } catch (const PluginError& e) {
    return e.what();
  }
  return "";
}

json output_event(const std::string& output) {
  return json{{"outputs", {{"content", output}}}};
}

// The single score of an ok result; fails the test otherwise.
EvalScore only_score(const EvalResult& r) {
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.scores.size(), 1u);
  return r.scores.empty() ? EvalScore{} : r.scores[0];
}

// ---------------------------------------------------------------------------
// json_schema

const json kPersonSchema = json::parse(R"({
  "type": "object",
  "required": ["name", "age"],
  "properties": {
    "name": {"type": "string", "minLength": 1},
    "age": {"type": "integer", "minimum": 0},
    "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}}
  },
  "additionalProperties": false
})");

TEST(JsonSchemaKind, ValidOutputIsTrue) {
  const auto instance = make("json_schema", {{"schema", kPersonSchema}});
  const EvalScore s = only_score(
      instance->evaluate(output_event(R"({"name": "Ada", "age": 36, "tags": ["math"]})").dump()));
  EXPECT_EQ(s.value, json(true));
  EXPECT_EQ(s.comment, "");
}

TEST(JsonSchemaKind, ViolationIsFalseWithTheFirstViolationAsComment) {
  const auto instance = make("json_schema", {{"schema", kPersonSchema}});
  EvalScore s = only_score(instance->evaluate(output_event(R"({"name": "Ada"})").dump()));
  EXPECT_EQ(s.value, json(false));
  EXPECT_THAT(s.comment, HasSubstr("age"));

  s = only_score(instance->evaluate(output_event(R"({"name": "Ada", "age": -1})").dump()));
  EXPECT_EQ(s.value, json(false));
  EXPECT_THAT(s.comment, StartsWith("/age: "));

  s = only_score(instance->evaluate(
      output_event(R"({"name": "Ada", "age": 3, "tags": ["ok", "NO"]})").dump()));
  EXPECT_EQ(s.value, json(false));
  EXPECT_THAT(s.comment, StartsWith("/tags/1: "));

  s = only_score(instance->evaluate(output_event(R"({"name": "Ada", "age": 3.5})").dump()));
  EXPECT_EQ(s.value, json(false));

  s = only_score(
      instance->evaluate(output_event(R"({"name": "Ada", "age": 3, "extra": 1})").dump()));
  EXPECT_EQ(s.value, json(false));
  EXPECT_FALSE(s.comment.empty());
}

TEST(JsonSchemaKind, OutputNotJsonIsFalseWithReason) {
  const auto instance = make("json_schema", {{"schema", kPersonSchema}});
  for (const char* output : {"", "Sure! Here it is: {\"name\": \"Ada\"}",
                             "```json\n{\"name\": \"Ada\", \"age\": 1}\n```",
                             "{\"name\": \"Ada\", \"age\": 1} trailing", "{\"name\": \"Ada\", \"age\": 1e400}"}) {
    const EvalScore s = only_score(instance->evaluate(output_event(output).dump()));
    EXPECT_EQ(s.value, json(false)) << output;
    EXPECT_THAT(s.comment, StartsWith("output is not JSON: ")) << output;
    EXPECT_THAT(s.comment, Not(HasSubstr("json.exception"))) << output;
  }
}

TEST(JsonSchemaKind, DeepOutputIsRefusedNotRecursedInto) {
  // A self-referencing schema would follow the output's nesting.
  const auto instance = make(
      "json_schema", {{"schema", json::parse(R"({"type": "array", "items": {"$ref": "#"}})")}});
  EXPECT_EQ(only_score(instance->evaluate(output_event("[[[]]]").dump())).value, json(true));
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const EvalScore s = only_score(instance->evaluate(output_event(deep).dump()));
  EXPECT_EQ(s.value, json(false));
  EXPECT_THAT(s.comment, HasSubstr("nests deeper than"));
}

TEST(JsonSchemaKind, SchemaFileIsReadAtCreate) {
  arbiter::testing::TempDir dir;
  const std::string path = (dir.path() / "person.schema.json").string();
  std::ofstream(path) << kPersonSchema.dump(2);
  const auto instance = make("json_schema", {{"schema_file", path}});
  // The file is not read again per event.
  std::filesystem::remove(path);
  EXPECT_EQ(only_score(instance->evaluate(output_event(R"({"name": "A", "age": 1})").dump())).value,
            json(true));
  EXPECT_EQ(only_score(instance->evaluate(output_event(R"({"name": "A"})").dump())).value,
            json(false));
}

TEST(JsonSchemaKind, Draft4SchemaIsHonoured) {
  // Draft 4's boolean exclusiveMaximum; draft 7 would refuse the boolean.
  const json schema = json::parse(R"({"$schema": "http://json-schema.org/draft-04/schema#",
                                      "type": "number", "maximum": 5, "exclusiveMaximum": true})");
  const auto instance = make("json_schema", {{"schema", schema}});
  EXPECT_EQ(only_score(instance->evaluate(output_event("4").dump())).value, json(true));
  EXPECT_EQ(only_score(instance->evaluate(output_event("5").dump())).value, json(false));
}

TEST(JsonSchemaKind, ParamErrors) {
  EXPECT_THAT(create_error("json_schema", json::object()), HasSubstr("give exactly one of schema"));
  EXPECT_THAT(create_error("json_schema", {{"schema", kPersonSchema}, {"schema_file", "x.json"}}),
              HasSubstr("give exactly one of schema"));
  EXPECT_EQ(create_error("json_schema", {{"schema", "{}"}}),
            "schema: expected a JSON Schema object");
  EXPECT_EQ(create_error("json_schema", {{"schema_file", 5}}), "schema_file: expected a string");
  EXPECT_THAT(create_error("json_schema", {{"schema", kPersonSchema}, {"strict", true}}),
              HasSubstr("unknown param \"strict\""));

  arbiter::testing::TempDir dir;
  const std::string missing = (dir.path() / "missing.json").string();
  EXPECT_THAT(create_error("json_schema", {{"schema_file", missing}}),
              HasSubstr("schema_file: cannot read " + missing + ": No such file"));
  const std::string broken = (dir.path() / "broken.json").string();
  std::ofstream(broken) << "{\"type\": ";
  EXPECT_EQ(create_error("json_schema", {{"schema_file", broken}}),
            "schema_file: " + broken + " is not valid JSON");
}

TEST(JsonSchemaKind, InvalidSchemaFailsAtCreateNamingIt) {
  EXPECT_THAT(create_error("json_schema", {{"schema", {{"type", 5}}}}),
              StartsWith("schema: invalid JSON Schema: "));
  EXPECT_THAT(create_error("json_schema", {{"schema", {{"type", "strnig"}}}}),
              StartsWith("schema: invalid JSON Schema: "));
  EXPECT_THAT(create_error("json_schema", {{"schema", {{"required", "name"}}}}),
              StartsWith("schema: invalid JSON Schema: "));
  // Remote references are not fetched.
  EXPECT_THAT(create_error("json_schema", {{"schema", {{"$ref", "https://example.com/s.json"}}}}),
              StartsWith("schema: invalid JSON Schema: "));

  arbiter::testing::TempDir dir;
  const std::string path = (dir.path() / "bad.schema.json").string();
  std::ofstream(path) << R"({"minimum": "zero"})";
  EXPECT_THAT(create_error("json_schema", {{"schema_file", path}}),
              StartsWith("schema_file " + path + ": invalid JSON Schema: "));
}

// ---------------------------------------------------------------------------
// sql_parse

TEST(StripCodeFence, RemovesAFenceAroundTheWholeOutput) {
  EXPECT_EQ(strip_code_fence("```sql\nSELECT 1;\n```"), "SELECT 1;");
  EXPECT_EQ(strip_code_fence("  ```SQL\r\nSELECT 1\r\n```  \n"), "SELECT 1");
  EXPECT_EQ(strip_code_fence("```\nSELECT 1\n```"), "SELECT 1");
  EXPECT_EQ(strip_code_fence("~~~postgresql\nSELECT 1\n~~~"), "SELECT 1");
  // An unclosed fence (a truncated answer) loses only its opening line.
  EXPECT_EQ(strip_code_fence("```sql\nSELECT 1"), "SELECT 1");
  EXPECT_EQ(strip_code_fence("SELECT 1"), "SELECT 1");
  EXPECT_EQ(strip_code_fence("\n SELECT 1 \n"), "SELECT 1");
  // Prose around a fence is left alone (and will not parse).
  EXPECT_EQ(strip_code_fence("Here:\n```sql\nSELECT 1\n```"), "Here:\n```sql\nSELECT 1\n```");
  EXPECT_EQ(strip_code_fence("```SELECT 1```"), "```SELECT 1```");
  EXPECT_EQ(strip_code_fence(""), "");
}

TEST(CheckPostgresql, ValidStatements) {
  for (const char* sql : {
           "SELECT 1",
           "select id, name from users where id = $1 order by name limit 10;",
           "WITH t AS (SELECT generate_series(1, 3) AS n) SELECT sum(n) FROM t",
           "INSERT INTO t (a, b) VALUES (1, 'x') ON CONFLICT (a) DO UPDATE SET b = excluded.b "
           "RETURNING *",
           "CREATE TABLE t (id bigserial PRIMARY KEY, body jsonb NOT NULL DEFAULT '{}')",
           "SELECT 1; SELECT 2;",
           "SELECT 'café' AS ünïcode -- a comment",
       }) {
    const SqlVerdict v = check_postgresql(sql);
    EXPECT_TRUE(v.valid) << sql << ": " << v.error;
    EXPECT_EQ(v.error, "") << sql;
  }
}

TEST(CheckPostgresql, InvalidStatementsCarryPostgresMessage) {
  SqlVerdict v = check_postgresql("SELECT * FORM users");
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.error, "syntax error at or near \"FORM\" (at character 10)");

  // The position counts characters, not bytes.
  v = check_postgresql("SELECT 'é', * FORM users");
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.error, "syntax error at or near \"FORM\" (at character 15)");

  v = check_postgresql("SELEC 1");
  EXPECT_FALSE(v.valid);
  EXPECT_THAT(v.error, HasSubstr("syntax error at or near \"SELEC\""));

  v = check_postgresql("SELECT (1");
  EXPECT_FALSE(v.valid);
  EXPECT_THAT(v.error, HasSubstr("syntax error at end of input"));

  v = check_postgresql("SELECT 'unterminated");
  EXPECT_FALSE(v.valid);
  EXPECT_THAT(v.error, HasSubstr("unterminated quoted string"));

  v = check_postgresql("The answer is 42.");
  EXPECT_FALSE(v.valid);
}

TEST(CheckPostgresql, NoStatementIsInvalid) {
  for (const char* sql : {"", "   ", "-- only a comment", ";", "/* nothing */ ;"}) {
    const SqlVerdict v = check_postgresql(sql);
    EXPECT_FALSE(v.valid) << sql;
    EXPECT_EQ(v.error, "output contains no SQL statement") << sql;
  }
}

TEST(CheckPostgresql, NulByteIsInvalid) {
  const std::string sql("SELECT 1;\0DROP TABLE x", 22);
  const SqlVerdict v = check_postgresql(sql);
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.error, "output contains a NUL byte");
}

TEST(CheckPostgresql, DeepNestingIsAnErrorNotACrash) {
  const std::string sql = "SELECT " + std::string(100000, '(') + "1" + std::string(100000, ')');
  const SqlVerdict v = check_postgresql(sql);
  EXPECT_FALSE(v.valid);
  EXPECT_FALSE(v.error.empty());
}

TEST(CheckPostgresql, ConcurrentParsesAgree) {
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        const bool want_valid = (i + t) % 2 == 0;
        const SqlVerdict v = check_postgresql(want_valid ? "SELECT a, b FROM t WHERE c > 1"
                                                         : "SELECT a b c FROM FROM");
        if (v.valid != want_valid) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(SqlParseKind, ThroughTheAbiTable) {
  const auto instance = make("sql_parse", json::object());
  EvalScore s = only_score(
      instance->evaluate(output_event("```sql\nSELECT name FROM users WHERE id = 1;\n```").dump()));
  EXPECT_EQ(s.value, json(true));
  EXPECT_EQ(s.comment, "");

  s = only_score(
      instance->evaluate(output_event("```sql\nSELECT name FROM WHERE id = 1;\n```").dump()));
  EXPECT_EQ(s.value, json(false));
  EXPECT_THAT(s.comment, HasSubstr("syntax error at or near \"WHERE\""));

  const EvalResult r = instance->evaluate(json{{"outputs", json::object()}}.dump());
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "event has no outputs.content");
}

TEST(SqlParseKind, ParamErrors) {
  EXPECT_EQ(create_error("sql_parse", {{"dialect", "postgresql"}}), "");
  EXPECT_EQ(create_error("sql_parse", {{"dialect", "mysql"}}),
            "dialect: only \"postgresql\" is supported, got \"mysql\"");
  EXPECT_EQ(create_error("sql_parse", {{"dialect", 1}}), "dialect: expected a string");
  EXPECT_THAT(create_error("sql_parse", {{"schema", "x"}}),
              HasSubstr("unknown param \"schema\" (expected dialect, output)"));
}

}  // namespace
}  // namespace arbiter::plugins::builtin
