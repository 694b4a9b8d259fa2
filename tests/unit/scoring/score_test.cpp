// The score model: parsing of every submission shape, config validation,
// encodings.

#include "scoring/score.hpp"

#include <gtest/gtest.h>

#include <limits>

#include "scoring/score_store.hpp"

namespace arbiter::scoring {
namespace {

using nlohmann::json;

std::string error_of(const json& body) {
  auto r = parse_helicone_scores(body);
  EXPECT_FALSE(r.ok()) << body.dump();
  return r.ok() ? "" : r.error().message;
}

TEST(HeliconeScores, AcceptsIntegersAndBooleans) {
  auto r =
      parse_helicone_scores(json::parse(R"({"scores": {"accuracy": 92, "ok": true, "neg": -3}})"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 3u);
  // nlohmann's object keeps keys sorted.
  EXPECT_EQ((*r)[0].name, "accuracy");
  EXPECT_EQ((*r)[0].data_type, ScoreDataType::kNumeric);
  EXPECT_EQ((*r)[0].value, 92);
  EXPECT_EQ((*r)[1].name, "neg");
  EXPECT_EQ((*r)[1].value, -3);
  EXPECT_EQ((*r)[2].data_type, ScoreDataType::kBoolean);
  EXPECT_EQ((*r)[2].value, 1);
}

TEST(HeliconeScores, RejectionsNameTheKey) {
  const std::string flt = error_of(json::parse(R"({"scores": {"accuracy": 0.92}})"));
  EXPECT_NE(flt.find("'accuracy'"), std::string::npos) << flt;
  EXPECT_NE(flt.find("send 92, not 0.92"), std::string::npos) << flt;
  EXPECT_NE(error_of(json::parse(R"({"scores": {"acc": 92.5}})")).find("send 93, not 92.5"),
            std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"scores": {"tone": "good"}})")).find("'tone'"),
            std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"scores": {"n": null}})")).find("'n'"), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"scores": {"nested": {"a": 1}}})")).find("'nested'"),
            std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"scores": {"arr": [1]}})")).find("'arr'"), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"scores": {"a": 1}, "extra": 1})")).find("'extra'"),
            std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"score": {"a": 1}})")).find("'score'"), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({})")).find("missing \"scores\""), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"scores": []})")).find("\"scores\""), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"scores": {}})")).find("empty"), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"scores": {"": 1}})")).find("empty"), std::string::npos);
  EXPECT_NE(error_of(json{{"scores", {{std::string(256, 'x'), 1}}}}).find("longer than 255"),
            std::string::npos);
  EXPECT_TRUE(parse_helicone_scores(json{{"scores", {{std::string(255, 'x'), 1}}}}).ok());
  EXPECT_NE(error_of(json::parse(R"({"scores": {"big": 18446744073709551615}})")).find("'big'"),
            std::string::npos);
  EXPECT_FALSE(parse_helicone_scores(json::array()).ok());
}

TEST(Feedback, RatingRequiredOtherFieldsKept) {
  auto f =
      parse_feedback(json::parse(R"({"rating": false, "ground_truth": "Paris", "x": {"y": 1}})"));
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->rating);
  EXPECT_EQ(f->fields, json::parse(R"({"ground_truth": "Paris", "x": {"y": 1}})"));
  EXPECT_FALSE(parse_feedback(json::parse(R"({"ground_truth": "x"})")).ok());
  EXPECT_FALSE(parse_feedback(json::parse(R"({"rating": 1})")).ok());
  EXPECT_FALSE(parse_feedback(json::parse(R"({"rating": "true"})")).ok());
}

TEST(TypedScores, ParsesAndValidates) {
  auto s = parse_typed_score(json::parse(R"({"id": "k1", "request_id": "r-1", "name": "acc",
      "value": 0.75, "comment": "c", "metadata": {"m": 1}, "source": "EVAL", "author": "me",
      "timestamp": "2024-05-01T12:00:00Z"})"));
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->id, "k1");
  EXPECT_EQ(s->data_type, ScoreDataType::kNumeric);
  EXPECT_EQ(s->value, 0.75);
  EXPECT_EQ(s->source, ScoreSource::kEval);
  EXPECT_EQ(s->timestamp_us, 1714564800000000);

  auto b = parse_typed_score(json::parse(R"({"session_id": "s", "name": "ok", "value": true})"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->data_type, ScoreDataType::kBoolean);
  auto c =
      parse_typed_score(json::parse(R"({"request_id": "r", "name": "tone", "value": "good"})"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->data_type, ScoreDataType::kCategorical);
  EXPECT_EQ(c->label, "good");

  for (const char* bad : {
           R"({"name": "a", "value": 1})",                                        // no target
           R"({"request_id": "r", "session_id": "s", "name": "a", "value": 1})",  // two targets
           R"({"request_id": "r", "value": 1})",                                  // no name
           R"({"request_id": "r", "name": "a"})",                                 // no value
           R"({"request_id": "r", "name": "a", "value": null})",
           R"({"request_id": "r", "name": "a", "value": [1]})",
           R"({"request_id": "r", "name": "a", "value": 1, "data_type": "BOOLEAN"})",  // 1 ok? no:
                                                                                       // see below
           R"({"request_id": "r", "name": "a", "value": "x", "data_type": "NUMERIC"})",
           R"({"request_id": "r", "name": "a", "value": true, "data_type": "NUMERIC"})",
           R"({"request_id": "r", "name": "a", "value": 1, "source": "HUMAN"})",
           R"({"request_id": "r", "name": "a", "value": 1, "metadata": [1]})",
           R"({"request_id": "r", "name": "a", "value": 1, "timestamp": "yesterday"})",
           R"({"request_id": "r", "name": "a", "value": 1, "bogus": 1})",
           R"({"session_id": "s", "observation_id": "o", "name": "a", "value": 1})",
       }) {
    auto r = parse_typed_score(json::parse(bad));
    if (std::string(bad).find("\"BOOLEAN\"") != std::string::npos) {
      // 0/1 are accepted for BOOLEAN.
      EXPECT_TRUE(r.ok()) << bad;
      continue;
    }
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_FALSE(
      parse_typed_score(
          json::parse(R"({"request_id": "r", "name": "a", "value": 2, "data_type": "BOOLEAN"})"))
          .ok());
}

TEST(ScoreConfigs, ValidationNamesTheRule) {
  auto ok = parse_score_config(
      json::parse(R"({"name": "acc", "data_type": "NUMERIC", "min_value": 0, "max_value": 100})"));
  ASSERT_TRUE(ok.ok());
  auto msg = [](const char* body) {
    auto r = parse_score_config(json::parse(body));
    EXPECT_FALSE(r.ok()) << body;
    return r.ok() ? std::string() : r.error().message;
  };
  EXPECT_NE(msg(R"({"name": "a", "data_type": "NUMERIC", "min_value": 5, "max_value": 1})")
                .find("greater"),
            std::string::npos);
  EXPECT_NE(msg(R"({"name": "a", "data_type": "CATEGORICAL"})").find("at least one category"),
            std::string::npos);
  EXPECT_NE(
      msg(R"({"name": "a", "data_type": "CATEGORICAL", "categories": [{"label": "x", "value": 1}, {"label": "x", "value": 2}]})")
          .find("appears twice"),
      std::string::npos);
  EXPECT_NE(
      msg(R"({"name": "a", "data_type": "CATEGORICAL", "categories": [{"label": "x", "value": 1}, {"label": "y", "value": 1}]})")
          .find("appears twice"),
      std::string::npos);
  EXPECT_NE(msg(R"({"name": "a", "data_type": "BOOLEAN", "min_value": 0})").find("BOOLEAN"),
            std::string::npos);
  EXPECT_NE(msg(R"({"name": "a"})").find("data_type"), std::string::npos);
  EXPECT_NE(msg(R"({"data_type": "NUMERIC"})").find("name"), std::string::npos);
  EXPECT_NE(msg(R"({"name": "a", "data_type": "NUMBER"})").find("data_type"), std::string::npos);
  EXPECT_NE(msg(R"({"name": "a", "data_type": "NUMERIC", "x": 1})").find("'x'"), std::string::npos);
}

TEST(ScoreConfigs, ApplyChecksTypeRangeAndCategories) {
  ScoreConfig range;
  range.id = "c1";
  range.name = "acc";
  range.min_value = 0;
  range.max_value = 100;
  Score s;
  s.name = "acc";
  s.value = 100;
  EXPECT_TRUE(apply_config(s, range).ok());
  EXPECT_EQ(s.config_id, "c1");
  s.value = 100.5;
  auto above = apply_config(s, range);
  ASSERT_FALSE(above.ok());
  EXPECT_NE(above.error().message.find("max_value 100"), std::string::npos)
      << above.error().message;
  s.value = -1;
  EXPECT_NE(apply_config(s, range).error().message.find("min_value 0"), std::string::npos);
  s.data_type = ScoreDataType::kBoolean;
  s.value = 1;
  EXPECT_NE(apply_config(s, range).error().message.find("requires NUMERIC"), std::string::npos);

  ScoreConfig cats;
  cats.id = "c2";
  cats.name = "tone";
  cats.data_type = ScoreDataType::kCategorical;
  cats.categories = {{"bad", 0}, {"good", 1}};
  Score c;
  c.name = "tone";
  c.data_type = ScoreDataType::kCategorical;
  c.label = "good";
  ASSERT_TRUE(apply_config(c, cats).ok());
  EXPECT_EQ(c.value, 1);
  c.label = "meh";
  EXPECT_NE(apply_config(c, cats).error().message.find("not a category"), std::string::npos);
  Score by_value;
  by_value.name = "tone";
  by_value.value = 0;
  ASSERT_TRUE(apply_config(by_value, cats).ok());
  EXPECT_EQ(by_value.label, "bad");
  EXPECT_EQ(by_value.data_type, ScoreDataType::kCategorical);
}

TEST(ScoreEncoding, RoundTrips) {
  Score s;
  s.id = "id";
  s.project = "p";
  s.request_id = "r";
  s.name = "n";
  s.data_type = ScoreDataType::kBoolean;
  s.value = 1;
  s.metadata = {{"k", "v"}};
  s.source = ScoreSource::kAnnotation;
  s.timestamp_us = -5;
  auto back = decode_score(encode_score(s));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->id, "id");
  EXPECT_EQ(back->value, 1);
  EXPECT_EQ(back->source, ScoreSource::kAnnotation);
  EXPECT_EQ(back->timestamp_us, -5);
  EXPECT_EQ(to_json(*back)["value"], true);
  EXPECT_FALSE(decode_score("garbage").ok());
}

TEST(ScoreKeys, SortableOrderIsNumericOrder) {
  const double values[] = {-std::numeric_limits<double>::infinity(),
                           -1e300,
                           -2.5,
                           -1,
                           -0.0,
                           0,
                           1e-300,
                           0.5,
                           1,
                           92,
                           1e300,
                           std::numeric_limits<double>::infinity()};
  std::string prev;
  for (double v : values) {
    std::string k;
    score_keys::append_sortable(k, v);
    EXPECT_EQ(score_keys::decode_sortable(k), v == 0 ? 0.0 : v);
    if (!prev.empty() && v != 0) {
      EXPECT_LT(prev, k) << v;
    }
    prev = k;
  }
  std::string target = score_keys::target_request("abc", "obs\x01x");
  std::string_view in = target;
  auto t = score_keys::parse_target(in);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->kind, 'r');
  EXPECT_EQ(t->id, "abc");
  EXPECT_EQ(t->observation_id, "obs\x01x");
  EXPECT_TRUE(in.empty());
}

TEST(ScoreIds, RandomUuidsAreValidAndDistinct) {
  const auto a = random_uuid();
  const auto b = random_uuid();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');
}

}  // namespace
}  // namespace arbiter::scoring
