#include "scoring/query.hpp"
#include "tests/support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <vector>

#include "scoring/store.hpp"

namespace arbiter::scoring {
namespace {

using arbiter::testing::TempDir;

using nlohmann::json;

constexpr std::int64_t kBase = 1714564800000000;  // 2024-05-01T12:00:00Z

std::string id_of(int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", i);
  return buf;
}

// Record i of a deterministic data set with every kind of field, including
// unknown numbers.
RequestRecord sample(const std::string& project, int i) {
  RequestRecord r;
  r.project = project;
  r.request_id = id_of(i);
  r.created_at_us = kBase + std::int64_t{i} * 1'000'000;  // one per second
  r.response_at_us = i % 10 == 9 ? 0 : r.created_at_us + 500'000;
  r.latency_ms = static_cast<double>((i * 37) % 100);
  if (i % 2 == 0) r.time_to_first_token_ms = static_cast<double>(i % 13);
  r.method = "POST";
  r.path = i % 4 == 0 ? "/v1/embeddings" : "/v1/chat/completions?api-version=1";
  r.upstream = i % 3 == 0 ? "azure" : "openai";
  r.status = i % 5 == 0 ? 500 : (i % 11 == 0 ? -2 : 200);
  r.request_model = i % 3 == 0 ? "claude-3" : "gpt-4o";
  r.response_model = i % 6 == 1 ? "gpt-4o-2024-08-06" : "";
  r.user_id = i % 8 == 7 ? "" : "user-" + std::to_string(i % 7);
  r.session_id = "session-" + std::to_string(i % 4);
  r.properties["env"] = i % 2 == 0 ? "prod" : "Dev";
  if (i % 5 == 0) r.properties["tier"] = "gold";
  if (i % 4 != 3) {
    r.prompt_tokens = 10 + i % 17;
    r.completion_tokens = 5 + i % 9;
    r.total_tokens = *r.prompt_tokens + *r.completion_tokens;
  }
  if (i % 3 != 2) r.cost_usd = 0.001 * (i % 23);
  return r;
}

void write_all(Store& store, const std::vector<RequestRecord>& records) {
  std::vector<const RequestRecord*> ptrs;
  for (const auto& r : records) ptrs.push_back(&r);
  for (std::size_t i = 0; i < ptrs.size(); i += 1000) {
    const std::size_t n = std::min<std::size_t>(1000, ptrs.size() - i);
    ASSERT_TRUE(store.write(std::span<const RequestRecord* const>(ptrs.data() + i, n), false).ok());
  }
}

RequestQuery parse_ok(const json& body) {
  auto q = parse_request_query(body);
  EXPECT_TRUE(q.ok()) << body.dump() << " → " << (q.ok() ? "" : q.error().message);
  return q.ok() ? std::move(q).value() : RequestQuery{};
}

std::string parse_error(const json& body) {
  auto q = parse_request_query(body);
  if (q.ok()) return "<parsed>";
  EXPECT_EQ(q.error().code, ErrorCode::kInvalidArgument);
  return q.error().message;
}

json leaf(const std::string& field, const std::string& op, const json& value) {
  return {{"request_response_rmt", {{field, {{op, value}}}}}};
}

json prop(const std::string& key, const std::string& op, const json& value) {
  return {{"request_response_rmt", {{"properties", {{key, {{op, value}}}}}}}};
}

json branch(const json& left, const std::string& op, const json& right) {
  return {{"left", left}, {"operator", op}, {"right", right}};
}

bool match(const json& filter, const RequestRecord& r) {
  const RequestQuery q = parse_ok({{"filter", filter}});
  return matches(q.filter, r);
}

// ---------------------------------------------------------------- parsing

TEST(QueryParse, Defaults) {
  const RequestQuery q = parse_ok(json::object());
  EXPECT_EQ(q.filter.kind, FilterNode::Kind::kAll);
  EXPECT_EQ(q.sort, SortKey::kCreatedAt);
  EXPECT_TRUE(q.descending);
  EXPECT_EQ(q.limit, 100u);
  EXPECT_EQ(q.offset, 0u);
}

TEST(QueryParse, AllForms) {
  for (const json& f : {json("all"), json::object(), json(nullptr)}) {
    EXPECT_EQ(parse_ok({{"filter", f}}).filter.kind, FilterNode::Kind::kAll) << f.dump();
  }
  // "all" inside branches simplifies away.
  const json model = leaf("model", "equals", "gpt-4o");
  EXPECT_EQ(parse_ok({{"filter", branch("all", "and", model)}}).filter.kind,
            FilterNode::Kind::kLeaf);
  EXPECT_EQ(parse_ok({{"filter", branch(model, "or", "all")}}).filter.kind, FilterNode::Kind::kAll);
}

TEST(QueryParse, HeliconeClientKeysAreAccepted) {
  const RequestQuery q = parse_ok({{"filter", "all"},
                                   {"sort", {{"latency", "asc"}}},
                                   {"limit", 10},
                                   {"offset", 20},
                                   {"isCached", false},
                                   {"includeInputs", true},
                                   {"isPartOfExperiment", false},
                                   {"isScored", false}});
  EXPECT_EQ(q.sort, SortKey::kLatency);
  EXPECT_FALSE(q.descending);
  EXPECT_EQ(q.limit, 10u);
  EXPECT_EQ(q.offset, 20u);
  EXPECT_EQ(parse_ok({{"limit", 5.0}}).limit, 5u);  // JS numbers may arrive as 5.0
}

TEST(QueryParse, LeafWithSeveralFieldsAndOpsIsAnAnd) {
  const json f = {{"request_response_rmt",
                   {{"latency", {{"gte", 10}, {"lt", 20}}}, {"model", {{"equals", "x"}}}}}};
  const RequestQuery q = parse_ok({{"filter", f}});
  ASSERT_EQ(q.filter.kind, FilterNode::Kind::kAnd);
  EXPECT_EQ(q.filter.children.size(), 3u);
}

TEST(QueryParse, NestedAndsAreFlattened) {
  const json a = leaf("model", "equals", "a");
  const json f = branch(branch(a, "and", a), "and", branch(a, "and", branch(a, "or", a)));
  const RequestQuery q = parse_ok({{"filter", f}});
  ASSERT_EQ(q.filter.kind, FilterNode::Kind::kAnd);
  ASSERT_EQ(q.filter.children.size(), 4u);
  EXPECT_EQ(q.filter.children[3].kind, FilterNode::Kind::kOr);
}

TEST(QueryParse, PropertyFormsAndCase) {
  const RequestQuery nested = parse_ok({{"filter", prop("Env", "equals", "prod")}});
  ASSERT_EQ(nested.filter.kind, FilterNode::Kind::kLeaf);
  EXPECT_EQ(nested.filter.leaf.field, FilterField::kProperty);
  EXPECT_EQ(nested.filter.leaf.key, "env");  // stored keys are lower-case
  const RequestQuery flat = parse_ok({{"filter", leaf("properties.env", "equals", "prod")}});
  EXPECT_EQ(flat.filter.leaf.field, FilterField::kProperty);
  EXPECT_EQ(flat.filter.leaf.key, "env");
  const RequestQuery table =
      parse_ok({{"filter", {{"properties", {{"env", {{"equals", "prod"}}}}}}}});
  EXPECT_EQ(table.filter.leaf.field, FilterField::kProperty);
  EXPECT_EQ(table.filter.leaf.key, "env");
  EXPECT_EQ(std::get<std::string>(table.filter.leaf.value), "prod");
}

TEST(QueryParse, ErrorsNameTheProblem) {
  EXPECT_EQ(parse_error({{"filter", leaf("modle", "equals", "x")}}),
            "unknown filter field 'modle'");
  EXPECT_EQ(parse_error({{"filter", leaf("latency", "between", json::array({1, 2}))}}),
            "unsupported operator 'between' for field 'latency'");
  EXPECT_EQ(parse_error({{"filter", leaf("latency", "like", "1%")}}),
            "unsupported operator 'like' for field 'latency'");
  EXPECT_EQ(parse_error({{"filter", leaf("model", "gt", "a")}}),
            "unsupported operator 'gt' for field 'model'");
  EXPECT_EQ(parse_error({{"filter", prop("env", "lt", "a")}}),
            "unsupported operator 'lt' for field 'properties.env'");
  EXPECT_EQ(parse_error({{"filter", leaf("request_created_at", "contains", "2024")}}),
            "unsupported operator 'contains' for field 'request_created_at'");
  for (const json& limit :
       {json(0), json(1001), json("10"), json(10.5), json(-1), json(nullptr), json(true)}) {
    EXPECT_EQ(parse_error({{"limit", limit}}), "limit must be an integer between 1 and 1000")
        << limit.dump();
  }
  EXPECT_EQ(parse_error({{"offset", -1}}), "offset must be an integer between 0 and 1000000");
  EXPECT_EQ(parse_error({{"offset", "5"}}), "offset must be an integer between 0 and 1000000");
  EXPECT_EQ(parse_error({{"fliter", "all"}}), "unknown key 'fliter' in query body");
  EXPECT_EQ(parse_error(json::array()), "query body must be a JSON object");
  EXPECT_EQ(parse_error({{"filter", {{"request", {{"model", {{"equals", "x"}}}}}}}}),
            "unknown filter table 'request' (only request_response_rmt and properties are "
            "supported)");
  EXPECT_EQ(parse_error({{"filter", branch("all", "xor", "all")}}),
            "unsupported filter operator \"xor\" (expected \"and\" or \"or\")");
  EXPECT_EQ(parse_error({{"filter", {{"left", "all"}, {"operator", "and"}}}}),
            "filter branch needs \"left\", \"operator\" and \"right\"");
  EXPECT_EQ(
      parse_error({{"filter", {{"left", "all"}, {"operator", "and"}, {"right", "all"}, {"x", 1}}}}),
      "unknown key 'x' in filter branch");
  EXPECT_EQ(parse_error({{"filter", "everything"}}),
            "filter must be \"all\", a leaf or a branch, got the string 'everything'");
  EXPECT_EQ(parse_error({{"filter", 42}}),
            "filter must be \"all\", a leaf or a branch, got number");
  EXPECT_EQ(parse_error({{"filter", {{"request_response_rmt", {{"model", "gpt-4o"}}}}}}),
            "filter on 'model' must be an object of operators, e.g. {\"equals\": ...}");
  EXPECT_EQ(parse_error({{"filter", {{"request_response_rmt", {{"model", json::object()}}}}}}),
            "filter on 'model' has no operator");
  // A nested error deep in a branch still names its field.
  EXPECT_EQ(parse_error({{"filter", branch("all", "or",
                                           branch("all", "and", leaf("colour", "equals", "x")))}}),
            "unknown filter field 'colour'");
}

TEST(QueryParse, WrongValueTypesAreRefused) {
  EXPECT_EQ(parse_error({{"filter", leaf("latency", "gt", "fast")}}),
            "filter value for 'latency' (gt) must be a number, got string");
  EXPECT_EQ(parse_error({{"filter", leaf("status", "equals", true)}}),
            "filter value for 'status' (equals) must be a number, got boolean");
  EXPECT_EQ(parse_error({{"filter", leaf("model", "equals", 4)}}),
            "filter value for 'model' (equals) must be a string, got number");
  EXPECT_EQ(parse_error({{"filter", prop("env", "equals", nullptr)}}),
            "filter value for 'properties.env' (equals) must be a string, got null");
  EXPECT_EQ(parse_error({{"filter", leaf("request_created_at", "gte", 1714564800)}}),
            "filter value for 'request_created_at' (gte) must be an ISO-8601 timestamp string, got "
            "number");
  EXPECT_EQ(parse_error({{"filter", leaf("request_created_at", "gte", "last tuesday")}}),
            "filter value for 'request_created_at' (gte) is not an ISO-8601 timestamp: 'last "
            "tuesday'");
}

TEST(QueryParse, SortErrors) {
  EXPECT_EQ(parse_error({{"sort", {{"random", true}}}}).rfind("unsupported sort key 'random'", 0),
            0u);
  EXPECT_EQ(parse_error({{"sort", {{"latency", "up"}}}}),
            "sort direction for 'latency' must be \"asc\" or \"desc\"");
  EXPECT_EQ(parse_error({{"sort", {{"latency", "asc"}, {"cost", "desc"}}}}), "sort takes one key");
  EXPECT_EQ(parse_error({{"sort", "latency"}}),
            "sort must be an object, e.g. {\"created_at\": \"desc\"}");
  for (const char* key :
       {"created_at", "latency", "cost", "prompt_tokens", "completion_tokens", "total_tokens"}) {
    EXPECT_TRUE(parse_request_query({{"sort", {{key, "asc"}}}}).ok()) << key;
  }
}

TEST(QueryParse, ScoresAreValidated) {
  const json scores = {{"request_response_rmt", {{"scores", {{"quality", {{"gte", 3}}}}}}}};
  EXPECT_TRUE(parse_request_query({{"filter", scores}}).ok());
  EXPECT_TRUE(parse_request_query({{"filter", branch(leaf("model", "equals", "x"), "or",
                                                     leaf("scores.accurate", "equals", true))}})
                  .ok());
  // The shape is checked first: bad operators and values are named.
  EXPECT_EQ(parse_error({{"filter", leaf("scores.quality", "like", "3")}}),
            "unsupported operator 'like' for field 'scores.quality'");
  EXPECT_EQ(parse_error({{"filter", leaf("scores.quality", "equals", "high")}}),
            "filter value for 'scores.quality' (equals) must be a number or boolean, got 'high'");
  EXPECT_EQ(parse_error({{"filter", leaf("scores.quality", "equals", json::array())}}),
            "filter value for 'scores.quality' (equals) must be a number or boolean, got array");
  // parse_filter (no refusal) builds the leaf for the scores issue to use.
  auto f = parse_filter(leaf("scores.quality", "equals", "4"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->leaf.field, FilterField::kScore);
  EXPECT_EQ(f->leaf.key, "quality");
  EXPECT_EQ(std::get<double>(f->leaf.value), 4.0);
}

TEST(QueryParse, DepthIsBounded) {
  json f = leaf("model", "equals", "x");
  for (int i = 0; i < 70; ++i) f = branch(f, "or", leaf("model", "equals", "y"));
  EXPECT_EQ(parse_error({{"filter", f}}), "filter is nested deeper than 64");
}

// ------------------------------------------------------------- evaluation

TEST(QueryMatch, LikePatterns) {
  struct Case {
    const char* text;
    const char* pattern;
    bool ci;
    bool want;
  };
  const Case cases[] = {
      {"gpt-4o", "gpt%", false, true},
      {"gpt-4o", "%4o", false, true},
      {"gpt-4o", "gpt-_o", false, true},
      {"gpt-4o", "gpt_o", false, false},
      {"gpt-4o", "%", false, true},
      {"", "%", false, true},
      {"", "_", false, false},
      {"gpt-4o", "GPT%", false, false},
      {"gpt-4o", "GPT%", true, true},
      {"abc", "a%c", false, true},
      {"abcbc", "a%bc", false, true},
      {"abcbd", "a%bc", false, false},
      {"50%", "50\\%", false, true},
      {"500", "50\\%", false, false},
      {"a_b", "a\\_b", false, true},
      {"axb", "a\\_b", false, false},
      {"héllo", "h_llo", false, true},
      {"中文", "__", false, true},
      {"中文", "___", false, false},
      {"gpt-4o-mini", "%4o%", false, true},
      {"mississippi", "%iss%pi", false, true},
      {"abc", "abc", false, true},
      {"abc", "ab", false, false},
      {"ab", "abc", false, false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(like_match(c.text, c.pattern, c.ci), c.want)
        << c.text << " LIKE " << c.pattern << (c.ci ? " (ci)" : "");
  }
}

TEST(QueryMatch, TextFieldsEveryOperator) {
  RequestRecord r = sample("p", 1);  // gpt-4o request, gpt-4o-2024-08-06 response
  r.user_id = "Alice@Example.com";
  r.session_id = "sess-42";
  r.path = "/v1/chat/completions?x=1";
  r.upstream = "openai";
  r.properties["team"] = "Search";
  struct FieldValue {
    const char* field;
    const char* value;  // the record's value
  };
  const FieldValue fields[] = {
      {"request_id", "00000000-0000-4000-8000-000000000001"},
      {"model", "gpt-4o-2024-08-06"},  // model() prefers the response's model
      {"user_id", "Alice@Example.com"},
      {"session_id", "sess-42"},
      {"path", "/v1/chat/completions?x=1"},
      {"provider", "openai"},
      {"properties.team", "Search"},
  };
  for (const auto& f : fields) {
    const std::string v = f.value;
    SCOPED_TRACE(f.field);
    EXPECT_TRUE(match(leaf(f.field, "equals", v), r));
    EXPECT_FALSE(match(leaf(f.field, "equals", v + "x"), r));
    EXPECT_FALSE(match(leaf(f.field, "not-equals", v), r));
    EXPECT_TRUE(match(leaf(f.field, "not-equals", v + "x"), r));
    // contains: case-insensitive substring.
    std::string upper = v.substr(1, 4);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_TRUE(match(leaf(f.field, "contains", upper), r));
    EXPECT_FALSE(match(leaf(f.field, "contains", "zzz"), r));
    EXPECT_FALSE(match(leaf(f.field, "not-contains", upper), r));
    EXPECT_TRUE(match(leaf(f.field, "not-contains", "zzz"), r));
    // like: case-sensitive; ilike is not.
    EXPECT_TRUE(match(leaf(f.field, "like", v.substr(0, 3) + "%"), r));
    EXPECT_TRUE(match(leaf(f.field, "like", "_" + v.substr(1)), r));
    EXPECT_FALSE(match(leaf(f.field, "like", v.substr(0, 3)), r));
    std::string all_upper = v;
    for (char& c : all_upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_TRUE(match(leaf(f.field, "ilike", all_upper), r));
    EXPECT_EQ(match(leaf(f.field, "like", all_upper), r), all_upper == v);
  }
  EXPECT_FALSE(match(leaf("user_id", "like", "alice%"), r));
  EXPECT_TRUE(match(leaf("user_id", "ilike", "alice%"), r));
}

TEST(QueryMatch, MissingPropertyReadsAsEmpty) {
  const RequestRecord r = sample("p", 1);  // no "tier"
  EXPECT_FALSE(match(prop("tier", "equals", "gold"), r));
  EXPECT_TRUE(match(prop("tier", "not-equals", "gold"), r));
  EXPECT_TRUE(match(prop("tier", "equals", ""), r));
}

TEST(QueryMatch, NumberFieldsEveryOperator) {
  RequestRecord r;
  r.request_id = "x";
  r.project = "p";
  r.status = 200;
  r.latency_ms = 12.5;
  r.time_to_first_token_ms = 3.0;
  r.prompt_tokens = 10;
  r.completion_tokens = 20;
  r.total_tokens = 30;
  r.cost_usd = 0.25;
  const std::pair<const char*, double> fields[] = {
      {"status", 200},       {"latency", 12.5},         {"time_to_first_token", 3.0},
      {"prompt_tokens", 10}, {"completion_tokens", 20}, {"total_tokens", 30},
      {"cost", 0.25},
  };
  for (const auto& [field, v] : fields) {
    SCOPED_TRACE(field);
    EXPECT_TRUE(match(leaf(field, "equals", v), r));
    EXPECT_FALSE(match(leaf(field, "equals", v + 1), r));
    EXPECT_TRUE(match(leaf(field, "not-equals", v + 1), r));
    EXPECT_FALSE(match(leaf(field, "not-equals", v), r));
    EXPECT_TRUE(match(leaf(field, "gt", v - 1), r));
    EXPECT_FALSE(match(leaf(field, "gt", v), r));
    EXPECT_TRUE(match(leaf(field, "gte", v), r));
    EXPECT_FALSE(match(leaf(field, "gte", v + 0.01), r));
    EXPECT_TRUE(match(leaf(field, "lt", v + 1), r));
    EXPECT_FALSE(match(leaf(field, "lt", v), r));
    EXPECT_TRUE(match(leaf(field, "lte", v), r));
    EXPECT_FALSE(match(leaf(field, "lte", v - 0.01), r));
  }
  // Negative gateway codes compare as numbers.
  r.status = kStatusUpstreamTimeout;
  EXPECT_TRUE(match(leaf("status", "lt", 0), r));
  EXPECT_TRUE(match(leaf("status", "equals", -2), r));
}

TEST(QueryMatch, UnknownNumbersMatchNothing) {
  RequestRecord r;  // no ttft, tokens or cost
  r.request_id = "x";
  r.project = "p";
  for (const char* field :
       {"time_to_first_token", "prompt_tokens", "completion_tokens", "total_tokens", "cost"}) {
    for (const char* op : {"equals", "not-equals", "gt", "gte", "lt", "lte"}) {
      EXPECT_FALSE(match(leaf(field, op, 0), r)) << field << " " << op;
    }
  }
  for (const char* op : {"equals", "not-equals", "gt", "gte", "lt", "lte"}) {
    EXPECT_FALSE(match(leaf("response_created_at", op, "2024-01-01T00:00:00Z"), r)) << op;
  }
}

TEST(QueryMatch, TimestampFieldsEveryOperator) {
  RequestRecord r;
  r.request_id = "x";
  r.project = "p";
  r.created_at_us = kBase + 123000;  // 12:00:00.123
  r.response_at_us = kBase + 2'000'000;
  const std::string at = "2024-05-01T12:00:00.123Z";
  const std::string before = "2024-05-01T12:00:00.122Z";
  const std::string after = "2024-05-01T14:00:00.124+02:00";  // same instant + 1 ms
  EXPECT_TRUE(match(leaf("request_created_at", "equals", at), r));
  EXPECT_FALSE(match(leaf("request_created_at", "equals", before), r));
  EXPECT_TRUE(match(leaf("request_created_at", "not-equals", before), r));
  EXPECT_FALSE(match(leaf("request_created_at", "not-equals", at), r));
  EXPECT_TRUE(match(leaf("request_created_at", "gt", before), r));
  EXPECT_FALSE(match(leaf("request_created_at", "gt", at), r));
  EXPECT_TRUE(match(leaf("request_created_at", "gte", at), r));
  EXPECT_FALSE(match(leaf("request_created_at", "gte", after), r));
  EXPECT_TRUE(match(leaf("request_created_at", "lt", after), r));
  EXPECT_FALSE(match(leaf("request_created_at", "lt", at), r));
  EXPECT_TRUE(match(leaf("request_created_at", "lte", at), r));
  EXPECT_FALSE(match(leaf("request_created_at", "lte", before), r));
  EXPECT_TRUE(match(leaf("response_created_at", "gte", "2024-05-01T12:00:02Z"), r));
  EXPECT_FALSE(match(leaf("response_created_at", "gt", "2024-05-01T12:00:02Z"), r));
}

TEST(QueryMatch, AndOrNesting) {
  const RequestRecord r = sample("p", 1);  // gpt-4o-2024-08-06, status 200, env Dev, latency 37
  const json is_gpt = leaf("model", "like", "gpt%");
  const json is_500 = leaf("status", "equals", 500);
  const json is_dev = prop("env", "equals", "Dev");
  const json slow = leaf("latency", "gt", 50);
  EXPECT_FALSE(match(branch(is_gpt, "and", is_500), r));
  EXPECT_TRUE(match(branch(is_gpt, "or", is_500), r));
  EXPECT_TRUE(match(branch(branch(is_500, "or", is_dev), "and", is_gpt), r));
  EXPECT_FALSE(match(branch(branch(is_500, "or", slow), "and", is_gpt), r));
  EXPECT_TRUE(match(branch(branch(is_500, "or", slow), "or", branch(is_dev, "and", is_gpt)), r));
  EXPECT_TRUE(match("all", r));
}

// -------------------------------------------------------------- execution

class QueryExec : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = Store::open(dir_.path());
    for (int i = 0; i < kCount; ++i) {
      records_.push_back(sample("p", i));
      other_.push_back(sample("other", i));
    }
    write_all(*store_, records_);
    write_all(*store_, other_);
  }

  // What the query must return, computed by brute force over the records.
  std::vector<std::string> expected(const RequestQuery& q) const {
    std::vector<const RequestRecord*> hits;
    for (const auto& r : records_) {
      if (matches(q.filter, r)) hits.push_back(&r);
    }
    auto value = [&](const RequestRecord& r) -> std::optional<double> {
      auto opt = [](const std::optional<std::int64_t>& v) -> std::optional<double> {
        if (!v) return std::nullopt;
        return static_cast<double>(*v);
      };
      switch (q.sort) {
        case SortKey::kCreatedAt:
          return static_cast<double>(r.created_at_us);
        case SortKey::kLatency:
          return r.latency_ms;
        case SortKey::kCost:
          return r.cost_usd;
        case SortKey::kPromptTokens:
          return opt(r.prompt_tokens);
        case SortKey::kCompletionTokens:
          return opt(r.completion_tokens);
        case SortKey::kTotalTokens:
          return opt(r.total_tokens);
        case SortKey::kScore:
          return std::nullopt;  // no scores in these records (score_store_test covers them)
      }
      return std::nullopt;
    };
    std::stable_sort(hits.begin(), hits.end(), [&](const RequestRecord* a, const RequestRecord* b) {
      const auto va = value(*a);
      const auto vb = value(*b);
      if (va.has_value() != vb.has_value()) return va.has_value();
      if (va && *va != *vb) return q.descending ? *va > *vb : *va < *vb;
      if (a->created_at_us != b->created_at_us) return a->created_at_us > b->created_at_us;
      return a->request_id < b->request_id;
    });
    std::vector<std::string> ids;
    for (std::size_t i = q.offset; i < hits.size() && ids.size() < q.limit; ++i) {
      ids.push_back(hits[i]->request_id);
    }
    return ids;
  }

  std::vector<std::string> run(const json& body, QueryStats* stats = nullptr) {
    const RequestQuery q = parse_ok(body);
    auto result = execute_query(*store_, "p", q, stats);
    EXPECT_TRUE(result.ok()) << result.error().message;
    std::vector<std::string> ids;
    if (!result.ok()) return ids;
    for (const auto& r : *result) {
      EXPECT_EQ(r.project, "p");
      ids.push_back(r.request_id);
    }
    EXPECT_EQ(ids, expected(q)) << body.dump();
    return ids;
  }

  static constexpr int kCount = 200;
  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::vector<RequestRecord> records_;
  std::vector<RequestRecord> other_;
};

TEST_F(QueryExec, EveryFieldAndOperatorAgainstBruteForce) {
  const std::vector<json> filters = {
      "all",
      leaf("request_id", "equals", id_of(17)),
      leaf("request_id", "like", "%00000000001_"),
      leaf("model", "equals", "gpt-4o"),
      leaf("model", "equals", "gpt-4o-2024-08-06"),
      leaf("model", "not-equals", "gpt-4o"),
      leaf("model", "contains", "CLAUDE"),
      leaf("model", "like", "gpt-4o-%"),
      leaf("user_id", "equals", "user-3"),
      leaf("user_id", "equals", ""),
      leaf("user_id", "ilike", "USER-_"),
      leaf("session_id", "equals", "session-2"),
      leaf("session_id", "not-contains", "1"),
      leaf("path", "contains", "api-version"),
      leaf("provider", "equals", "azure"),
      prop("env", "equals", "prod"),
      prop("env", "equals", "dev"),  // values are case-sensitive
      prop("env", "ilike", "dev"),
      prop("tier", "equals", "gold"),
      prop("tier", "not-equals", "gold"),
      leaf("status", "equals", 500),
      leaf("status", "lt", 0),
      leaf("status", "gte", 200),
      leaf("latency", "gt", 50),
      leaf("latency", "lte", 10),
      leaf("time_to_first_token", "lt", 5),
      leaf("time_to_first_token", "not-equals", 4),
      leaf("prompt_tokens", "gte", 20),
      leaf("completion_tokens", "equals", 7),
      leaf("total_tokens", "lt", 20),
      leaf("cost", "gt", 0.01),
      leaf("cost", "not-equals", 0),
      leaf("request_created_at", "gte", "2024-05-01T12:01:00Z"),
      leaf("request_created_at", "lt", "2024-05-01T12:00:30Z"),
      leaf("request_created_at", "equals", "2024-05-01T12:00:05Z"),
      leaf("request_created_at", "not-equals", "2024-05-01T12:00:05Z"),
      leaf("response_created_at", "gt", "2024-05-01T12:02:00Z"),
  };
  for (const auto& f : filters) {
    SCOPED_TRACE(f.dump());
    run({{"filter", f}, {"limit", 1000}});
  }
}

TEST_F(QueryExec, AndOrNestingAgainstBruteForce) {
  const json prod = prop("env", "equals", "prod");
  const json gold = prop("tier", "equals", "gold");
  const json user3 = leaf("user_id", "equals", "user-3");
  const json slow = leaf("latency", "gte", 60);
  const json recent = leaf("request_created_at", "gte", "2024-05-01T12:01:40Z");
  const json early = leaf("request_created_at", "lt", "2024-05-01T12:00:50Z");
  const std::vector<json> filters = {
      branch(prod, "and", gold),
      branch(prod, "or", gold),
      branch(branch(prod, "and", slow), "or", user3),
      branch(user3, "and", branch(slow, "or", gold)),
      branch(recent, "and", prod),
      branch(early, "or", recent),
      branch(branch(early, "or", recent), "and", branch(gold, "or", user3)),
      branch(branch(prod, "and", recent), "and", leaf("model", "equals", "gpt-4o")),
      branch(leaf("session_id", "equals", "session-1"), "and", leaf("status", "not-equals", 200)),
  };
  for (const auto& f : filters) {
    SCOPED_TRACE(f.dump());
    run({{"filter", f}, {"limit", 1000}});
  }
}

TEST_F(QueryExec, SortOffsetLimit) {
  for (const char* key :
       {"created_at", "latency", "cost", "prompt_tokens", "completion_tokens", "total_tokens"}) {
    for (const char* dir : {"asc", "desc"}) {
      SCOPED_TRACE(std::string(key) + " " + dir);
      const json sort = {{key, dir}};
      run({{"sort", sort}, {"limit", 1000}});
      run({{"sort", sort}, {"limit", 7}, {"offset", 3}});
      run({{"filter", prop("env", "equals", "prod")},
           {"sort", sort},
           {"limit", 5},
           {"offset", 10}});
      // Pages cover everything exactly once.
      std::vector<std::string> all;
      for (int offset = 0; offset < kCount; offset += 30) {
        const auto page = run({{"sort", sort}, {"limit", 30}, {"offset", offset}});
        all.insert(all.end(), page.begin(), page.end());
      }
      EXPECT_EQ(all.size(), static_cast<std::size_t>(kCount));
      EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(),
                static_cast<std::size_t>(kCount));
    }
  }
  // Default: newest first.
  const auto ids = run({{"limit", 3}});
  EXPECT_EQ(ids,
            (std::vector<std::string>{id_of(kCount - 1), id_of(kCount - 2), id_of(kCount - 3)}));
  // Past the end: empty.
  EXPECT_TRUE(run({{"offset", 5000}}).empty());
  EXPECT_TRUE(run({{"offset", 5000}, {"sort", {{"latency", "asc"}}}}).empty());
}

TEST_F(QueryExec, UnknownValuesSortLast) {
  const auto asc = run({{"sort", {{"cost", "asc"}}}, {"limit", 1000}});
  const auto desc = run({{"sort", {{"cost", "desc"}}}, {"limit", 1000}});
  auto cost_of = [&](const std::string& id) {
    return records_[std::stoul(id.substr(24))].cost_usd;
  };
  EXPECT_TRUE(cost_of(asc.front()).has_value());
  EXPECT_FALSE(cost_of(asc.back()).has_value());
  EXPECT_TRUE(cost_of(desc.front()).has_value());
  EXPECT_FALSE(cost_of(desc.back()).has_value());
}

TEST_F(QueryExec, ProjectsAreIsolated) {
  auto none = execute_query(*store_, "nobody", parse_ok(json::object()));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto other = execute_query(*store_, "other", parse_ok({{"limit", 1000}}));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->size(), static_cast<std::size_t>(kCount));
  for (const auto& r : *other) EXPECT_EQ(r.project, "other");
  // An id from project "p" looked up through "other"'s index only sees "other"'s record.
  auto by_id = execute_query(*store_, "other",
                             parse_ok({{"filter", leaf("request_id", "equals", id_of(3))}}));
  ASSERT_EQ(by_id->size(), 1u);
  EXPECT_EQ((*by_id)[0].project, "other");
}

TEST_F(QueryExec, PlansUseTheIndexes) {
  QueryStats stats;
  run({{"filter", leaf("request_id", "equals", id_of(5))}}, &stats);
  EXPECT_EQ(stats.plan, "request_id");
  EXPECT_EQ(stats.records_examined, 1u);

  run({{"filter", leaf("user_id", "equals", "user-3")}, {"limit", 1000}}, &stats);
  EXPECT_EQ(stats.plan, "idx_user");
  run({{"filter", leaf("session_id", "equals", "session-3")}, {"limit", 1000}}, &stats);
  EXPECT_EQ(stats.plan, "idx_session");
  EXPECT_EQ(stats.records_examined, static_cast<std::uint64_t>(kCount / 4));
  run({{"filter", leaf("model", "equals", "claude-3")}, {"limit", 1000}}, &stats);
  EXPECT_EQ(stats.plan, "idx_model");
  run({{"filter", prop("tier", "equals", "gold")}, {"limit", 1000}}, &stats);
  EXPECT_EQ(stats.plan, "idx_property");
  EXPECT_EQ(stats.records_examined, static_cast<std::uint64_t>(kCount / 5));

  // The most selective of several: gold (40) beats prod (100).
  run({{"filter", branch(prop("env", "equals", "prod"), "and", prop("tier", "equals", "gold"))},
       {"limit", 1000}},
      &stats);
  EXPECT_EQ(stats.plan, "idx_property");
  EXPECT_EQ(stats.records_examined, static_cast<std::uint64_t>(kCount / 5));

  // A time range alone scans just that range.
  run({{"filter", leaf("request_created_at", "gte", "2024-05-01T12:03:00Z")}, {"limit", 1000}},
      &stats);
  EXPECT_EQ(stats.plan, "idx_time");
  EXPECT_EQ(stats.records_examined, static_cast<std::uint64_t>(kCount - 180));

  // A narrow time range beats an unselective equality.
  run({{"filter", branch(prop("env", "equals", "prod"), "and",
                         leaf("request_created_at", "lt", "2024-05-01T12:00:04Z"))},
       {"limit", 1000}},
      &stats);
  EXPECT_LE(stats.records_examined, 4u);

  // ...and narrows an equality scan too.
  run({{"filter", branch(leaf("session_id", "equals", "session-0"), "and",
                         leaf("request_created_at", "gte", "2024-05-01T12:03:00Z"))},
       {"limit", 1000}},
      &stats);
  EXPECT_EQ(stats.records_examined, 5u);

  // OR cannot use one index: the time index, still correct.
  run({{"filter",
        branch(prop("tier", "equals", "gold"), "or", leaf("user_id", "equals", "user-1"))},
       {"limit", 1000}},
      &stats);
  EXPECT_EQ(stats.plan, "idx_time");

  // Contradictory range: nothing read.
  run({{"filter", branch(leaf("request_created_at", "gt", "2024-05-01T13:00:00Z"), "and",
                         leaf("request_created_at", "lt", "2024-05-01T12:00:00Z"))}},
      &stats);
  EXPECT_EQ(stats.plan, "empty");
  EXPECT_EQ(stats.records_examined, 0u);
}

TEST_F(QueryExec, TimeOrderStopsEarly) {
  QueryStats stats;
  run({{"limit", 5}}, &stats);
  EXPECT_EQ(stats.records_examined, 5u);
  // Without a filter the offset is skipped without reading records.
  run({{"limit", 5}, {"offset", 100}}, &stats);
  EXPECT_EQ(stats.records_examined, 5u);
  run({{"limit", 5}, {"sort", {{"created_at", "asc"}}}}, &stats);
  EXPECT_EQ(stats.records_examined, 5u);
  // An indexed filter streams in time order too: 5 of session-2's 50.
  run({{"filter", leaf("session_id", "equals", "session-2")}, {"limit", 5}}, &stats);
  EXPECT_EQ(stats.records_examined, 5u);
}

TEST(QueryIndex, PropertyFilterOnTenThousandRecordsExaminesOnlyMatches) {
  TempDir dir;
  auto store = Store::open(dir.path());
  std::vector<RequestRecord> records;
  records.reserve(10000);
  for (int i = 0; i < 10000; ++i) {
    RequestRecord r;
    r.project = "p";
    r.request_id = id_of(i);
    r.created_at_us = kBase + i;
    r.request_model = "gpt-4o";
    r.user_id = i % 1000 == 0 ? "needle" : "hay-" + std::to_string(i % 50);
    r.properties["env"] = "prod";
    r.properties["customer"] = i % 1000 == 0 ? "acme" : "c" + std::to_string(i % 97);
    records.push_back(std::move(r));
  }
  write_all(*store, records);

  QueryStats stats;
  auto hits = execute_query(
      *store, "p", parse_ok({{"filter", prop("customer", "equals", "acme")}, {"limit", 100}}),
      &stats);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 10u);
  EXPECT_EQ(stats.plan, "idx_property");
  EXPECT_EQ(stats.records_examined, 10u);
  EXPECT_LE(stats.index_entries_scanned, 30u);

  hits = execute_query(
      *store, "p",
      parse_ok({{"filter", leaf("user_id", "equals", "needle")}, {"sort", {{"latency", "desc"}}}}),
      &stats);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 10u);
  EXPECT_EQ(stats.plan, "idx_user");
  EXPECT_EQ(stats.records_examined, 10u);

  // env=prod matches everything; the planner's probe costs at most its cap
  // before choosing customer=acme.
  hits = execute_query(*store, "p",
                       parse_ok({{"filter", branch(prop("env", "equals", "prod"), "and",
                                                   prop("customer", "equals", "acme"))}}),
                       &stats);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 10u);
  EXPECT_EQ(stats.records_examined, 10u);
  EXPECT_LE(stats.index_entries_scanned, 1100u);
}

TEST(QueryExecClosed, ClosedStoreIsUnavailable) {
  TempDir dir;
  auto store = Store::open(dir.path());
  ASSERT_TRUE(store->close().ok());
  auto r = execute_query(*store, "p", RequestQuery{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace arbiter::scoring
