// The score store and the eval queries over a real RocksDB in a temp dir:
// overwrite, idempotency, configs, listing, deletion, isolation, scores.<k>
// filters and sorting, and aggregates checked against values computed here
// over a known population.

#include "scoring/score_store.hpp"
#include "tests/support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "scoring/evals.hpp"

namespace arbiter::scoring {
namespace {

using arbiter::testing::TempDir;

using nlohmann::json;

constexpr std::int64_t kNow = 1714564800000000;  // 2024-05-01T12:00:00Z
constexpr std::int64_t kHour = 3'600'000'000;

std::string id_of(int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", i);
  return buf;
}

RequestRecord record(const std::string& project, int i) {
  RequestRecord r;
  r.project = project;
  r.request_id = id_of(i);
  r.created_at_us = kNow + i;
  r.response_at_us = kNow + i + 1000;
  r.latency_ms = 1.0 + i;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = i % 2 == 0 ? "gpt-4o" : "gpt-4o-mini";
  r.user_id = "user-" + std::to_string(i % 3);
  r.session_id = "sess-" + std::to_string(i % 2);
  r.properties = {{"prompt-version", i % 4 < 2 ? "v1" : "v2"}};
  return r;
}

// A listing query built field by field (designated initialisers would trip
// -Wmissing-field-initializers).
template <class F>
ScoreListQuery lq(F&& set) {
  ScoreListQuery q;
  set(q);
  return q;
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<RequestLog> log;
  std::unique_ptr<ScoreStore> scores;
  std::int64_t clock = kNow;

  Fixture() { open(); }
  void open() {
    RequestLogOptions o;
    o.path = dir.path().string() + "/data";
    o.now_us = [] { return kNow; };
    log = std::make_unique<RequestLog>(std::move(o));
    scores = std::make_unique<ScoreStore>(*log, [this] { return clock; });
  }
  void reopen() {
    scores.reset();
    ASSERT_TRUE(log->close().ok());
    log.reset();
    open();
  }
  void add_records(const std::string& project, int n) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(log->submit(record(project, i)));
    ASSERT_TRUE(log->flush());
  }
  json get(const std::string& project, int i) {
    auto j = log->get_json(project, id_of(i), false);
    EXPECT_TRUE(j.ok()) << (j.ok() ? "" : j.error().message);
    return j.ok() ? *j : json();
  }
  Score typed(const std::string& id, int request, const std::string& name, double value,
              std::int64_t ts) {
    Score s;
    s.id = id;
    s.request_id = id_of(request);
    s.name = name;
    s.value = value;
    s.timestamp_us = ts;
    return s;
  }
  template <class F>
  auto with(F&& f) {
    return log->with_store(std::forward<F>(f));
  }
  // With the store's hourly histograms by default, like the API.
  json evals(const std::string& project, const json& body, bool distribution = false,
             bool histograms = true) {
    auto q = parse_eval_query(body, distribution);
    EXPECT_TRUE(q.ok()) << (q.ok() ? "" : q.error().message);
    ScoreAggregates* aggs = histograms ? &scores->aggregates() : nullptr;
    auto r = log->with_store([&](Store& s) {
      return distribution ? run_score_distribution(s, project, *q, aggs)
                          : run_eval_query(s, project, *q, aggs);
    });
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json();
  }
  json query(const std::string& project, const json& body) {
    auto r = log->query_json(project, body);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json();
  }
};

TEST(ScoreStore, HeliconeScoresOverwritePerNameAndShowOnTheRecord) {
  Fixture f;
  f.add_records("p", 2);
  ASSERT_TRUE(
      f.scores
          ->submit("p", id_of(0),
                   {{"accuracy", ScoreDataType::kNumeric, 92}, {"ok", ScoreDataType::kBoolean, 1}})
          .ok());
  EXPECT_EQ(f.get("p", 0)["scores"], json::parse(R"({"accuracy": 92, "ok": true})"));
  ASSERT_TRUE(f.scores->submit("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 50}}).ok());
  EXPECT_EQ(f.get("p", 0)["scores"], json::parse(R"({"accuracy": 50, "ok": true})"));
  EXPECT_EQ(f.get("p", 1)["scores"], json::object());

  // One score per (request, name): the overwrite left one index entry.
  auto page = f.scores->list("p", lq([&](ScoreListQuery& q) { q.name = "accuracy"; }));
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->scores.size(), 1u);
  EXPECT_EQ(page->scores[0].value, 50);

  auto unknown = f.scores->submit("p", id_of(7), {{"a", ScoreDataType::kNumeric, 1}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  auto other = f.scores->submit("q", id_of(0), {{"a", ScoreDataType::kNumeric, 1}});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kNotFound);

  // In flight counts as known.
  auto entry = f.log->inflight().track("p", id_of(9));
  EXPECT_TRUE(f.scores->submit("p", id_of(9), {{"a", ScoreDataType::kNumeric, 1}}).ok());
}

TEST(ScoreStore, ScoresAreDurableAcrossReopen) {
  Fixture f;
  f.add_records("p", 1);
  ASSERT_TRUE(f.scores->submit("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 7}}).ok());
  ASSERT_TRUE(
      f.scores->submit_feedback("p", id_of(0), Feedback{true, {{"ground_truth", "Paris"}}}).ok());
  f.reopen();
  const json rec = f.get("p", 0);
  EXPECT_EQ(rec["scores"], json::parse(R"({"accuracy": 7, "helicone-score-feedback": true})"));
  EXPECT_EQ(rec["feedback"]["ground_truth"], "Paris");
}

TEST(ScoreStore, FeedbackMergesFields) {
  Fixture f;
  f.add_records("p", 1);
  ASSERT_TRUE(
      f.scores->submit_feedback("p", id_of(0), Feedback{true, {{"ground_truth", "A"}, {"x", 1}}})
          .ok());
  ASSERT_TRUE(
      f.scores->submit_feedback("p", id_of(0), Feedback{false, {{"ground_truth", "B"}}}).ok());
  auto rec = f.log->get("p", id_of(0), false);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->feedback, json::parse(R"({"ground_truth": "B", "x": 1})"));
  EXPECT_EQ((*rec)->scores["helicone-score-feedback"], false);
}

TEST(ScoreStore, TypedIdIsAnIdempotencyKeyAndOneStoreServesBothApis) {
  Fixture f;
  f.add_records("p", 3);
  auto first = f.scores->upsert("p", f.typed("key-1", 0, "accuracy", 0.5, kNow));
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->id, "key-1");
  f.clock += 10;
  auto again = f.scores->upsert("p", f.typed("key-1", 0, "accuracy", 0.75, kNow + 1));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->created_at_us, first->created_at_us);
  EXPECT_EQ(again->updated_at_us, kNow + 10);
  auto all = f.scores->list("p", {});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->scores.size(), 1u);
  EXPECT_EQ(all->scores[0].value, 0.75);

  // The Helicone API writes the same score (same request and name); the id stays.
  ASSERT_TRUE(f.scores->submit("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 90}}).ok());
  auto got = f.scores->get("p", "key-1");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, 90);

  // Re-POSTing the id with another target moves the score.
  auto moved = f.scores->upsert("p", f.typed("key-1", 1, "accuracy", 0.1, kNow));
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(f.get("p", 0)["scores"], json::object());
  EXPECT_EQ(f.get("p", 1)["scores"]["accuracy"], 0.1);
  all = f.scores->list("p", {});
  ASSERT_EQ(all->scores.size(), 1u);

  // Delete: gone from the record, the listing and the indexes.
  ASSERT_TRUE(f.scores->remove("p", "key-1").ok());
  EXPECT_EQ(f.get("p", 1)["scores"], json::object());
  EXPECT_TRUE(f.scores->list("p", {})->scores.empty());
  EXPECT_EQ(f.scores->remove("p", "key-1").error().code, ErrorCode::kNotFound);
  auto names_after = f.evals("p", json::object());
  EXPECT_TRUE(names_after.empty()) << names_after.dump();
}

TEST(ScoreStore, SessionScoresNeedAKnownSession) {
  Fixture f;
  f.add_records("p", 2);
  Score s;
  s.session_id = "sess-1";
  s.name = "helpful";
  s.data_type = ScoreDataType::kBoolean;
  s.value = 1;
  ASSERT_TRUE(f.scores->upsert("p", s).ok());
  s.session_id = "sess-404";
  EXPECT_EQ(f.scores->upsert("p", s).error().code, ErrorCode::kNotFound);
  s.session_id = "sess-1";
  EXPECT_EQ(f.scores->upsert("q", s).error().code, ErrorCode::kNotFound);
  auto page = f.scores->list("p", lq([&](ScoreListQuery& q) { q.session_id = "sess-1"; }));
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->scores.size(), 1u);
  EXPECT_EQ(page->scores[0].session_id, "sess-1");
}

// The writer remembers which names have no config and which names are
// stored, so that a score does not re-read its config or rewrite its name
// entry every time: a config created later must still apply at once, a config
// id that did not exist must be found once it does, and a name whose write
// was refused must still be stored by its first successful write.
TEST(ScoreStore, TheWritersMemoryOfConfigsAndNamesNeverGoesStale) {
  Fixture f;
  f.add_records("p", 1);
  ASSERT_TRUE(f.scores->submit("p", id_of(0), {{"latency", ScoreDataType::kNumeric, 120}}).ok());
  ASSERT_TRUE(f.scores
                  ->create_config("p", *parse_score_config(json::parse(
                                           R"({"name": "latency", "data_type": "NUMERIC", "max_value": 100})")))
                  .ok());
  auto over = f.scores->submit("p", id_of(0), {{"latency", ScoreDataType::kNumeric, 120}});
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.error().message.find("max_value 100"), std::string::npos) << over.error().message;

  Score t = f.typed("", 0, "speed", 5, kNow);
  t.config_id = "speed-cfg";
  EXPECT_NE(f.scores->upsert("p", t).error().message.find("does not exist"), std::string::npos);
  ASSERT_TRUE(f.scores
                  ->create_config("p", *parse_score_config(json::parse(
                                           R"({"id": "speed-cfg", "name": "speed", "data_type": "NUMERIC"})")))
                  .ok());
  auto stored = f.scores->upsert("p", t);
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  EXPECT_EQ(stored->config_id, "speed-cfg");

  // "fresh" is refused with its group-mate; later it is written alone.
  ASSERT_FALSE(f.scores
                   ->submit("p", id_of(0),
                            {{"fresh", ScoreDataType::kNumeric, 1}, {"latency", ScoreDataType::kNumeric, 101}})
                   .ok());
  ASSERT_TRUE(f.scores->submit("p", id_of(0), {{"fresh", ScoreDataType::kNumeric, 1}}).ok());
  auto names = f.with([](Store& store) { return score_names(store, "p"); });
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"fresh", "latency", "speed"}));
}

TEST(ScoreStore, ConfigsValidateSynchronously) {
  Fixture f;
  f.add_records("p", 1);
  auto cfg = f.scores->create_config(
      "p",
      *parse_score_config(json::parse(
          R"({"name": "accuracy", "data_type": "NUMERIC", "min_value": 0, "max_value": 100})")));
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  auto dup = f.scores->create_config(
      "p", *parse_score_config(json::parse(R"({"name": "accuracy", "data_type": "BOOLEAN"})")));
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("already has config"), std::string::npos);

  auto over = f.scores->submit("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 120}});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(over.error().message.find("max_value 100"), std::string::npos);
  auto wrong_type = f.scores->submit("p", id_of(0), {{"accuracy", ScoreDataType::kBoolean, 1}});
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.error().message.find("requires NUMERIC"), std::string::npos);
  // Nothing of a refused call is written, not even its valid names.
  auto mixed = f.scores->submit(
      "p", id_of(0),
      {{"fine", ScoreDataType::kNumeric, 1}, {"accuracy", ScoreDataType::kNumeric, 101}});
  ASSERT_FALSE(mixed.ok());
  EXPECT_EQ(f.get("p", 0)["scores"], json::object());
  ASSERT_TRUE(f.scores->submit("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 100}}).ok());
  EXPECT_EQ(f.scores->list("p", {})->scores.size(), 1u);

  auto cats = f.scores->create_config(
      "p",
      *parse_score_config(json::parse(
          R"({"id": "tone-cfg", "name": "tone", "data_type": "CATEGORICAL", "categories": [{"label": "bad", "value": 0}, {"label": "good", "value": 1}]})")));
  ASSERT_TRUE(cats.ok());
  Score t = f.typed("", 0, "tone", 0, kNow);
  t.data_type = ScoreDataType::kCategorical;
  t.value.reset();
  t.label = "good";
  auto stored = f.scores->upsert("p", t);
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  EXPECT_EQ(stored->value, 1);
  EXPECT_EQ(stored->config_id, "tone-cfg");
  t.label = "awful";
  EXPECT_NE(f.scores->upsert("p", t).error().message.find("not a category"), std::string::npos);
  t.label = "good";
  t.config_id = "missing";
  EXPECT_NE(f.scores->upsert("p", t).error().message.find("does not exist"), std::string::npos);
  t.config_id = cfg->id;  // the accuracy config for a tone score
  EXPECT_NE(f.scores->upsert("p", t).error().message.find("does not match"), std::string::npos);

  auto listed = f.scores->configs("p");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].name, "accuracy");
  EXPECT_TRUE(f.scores->configs("q")->empty());
}

TEST(ScoreStore, ListFiltersAndPaginatesWithACursor) {
  Fixture f;
  f.add_records("p", 30);
  for (int i = 0; i < 30; ++i) {
    Score s = f.typed("", i, i % 2 == 0 ? "even" : "odd", i, kNow + i * kHour);
    if (i % 3 == 0) s.source = ScoreSource::kEval;
    ASSERT_TRUE(f.scores->upsert("p", s).ok());
  }
  // All, newest first, 7 per page.
  std::vector<double> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto page = f.scores->list("p", lq([&](ScoreListQuery& q) {
                                 q.limit = 7;
                                 q.cursor = cursor;
                               }));
    ASSERT_TRUE(page.ok()) << page.error().message;
    for (const auto& s : page->scores) seen.push_back(*s.value);
    cursor = page->next_cursor;
    ++pages;
  } while (!cursor.empty());
  EXPECT_EQ(pages, 5);
  ASSERT_EQ(seen.size(), 30u);
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 29.0 - static_cast<double>(i));

  auto evens = f.scores->list("p", lq([&](ScoreListQuery& q) {
                                q.name = "even";
                                q.source = ScoreSource::kEval;
                                q.min_value = 6;
                                q.max_value = 24;
                              }));
  ASSERT_TRUE(evens.ok());
  std::vector<double> got;
  for (const auto& s : evens->scores) got.push_back(*s.value);
  EXPECT_EQ(got, (std::vector<double>{24, 18, 12, 6}));

  auto window = f.scores->list("p", lq([&](ScoreListQuery& q) {
                                 q.from_us = kNow + 10 * kHour;
                                 q.to_us = kNow + 13 * kHour;
                               }));
  ASSERT_TRUE(window.ok());
  ASSERT_EQ(window->scores.size(), 3u);
  EXPECT_EQ(window->scores[0].value, 12);

  auto by_request = f.scores->list("p", lq([&](ScoreListQuery& q) { q.request_id = id_of(4); }));
  ASSERT_EQ(by_request->scores.size(), 1u);
  EXPECT_EQ(by_request->scores[0].value, 4);
  EXPECT_FALSE(f.scores->list("p", lq([&](ScoreListQuery& q) { q.cursor = "zz"; })).ok());
  EXPECT_TRUE(f.scores->list("q", {})->scores.empty());
}

// A known population: for each of 200 requests an "accuracy" in 0..100, a
// "correct" boolean, spread over 30 hours.
struct Population {
  struct Item {
    int request;
    double accuracy;
    bool correct;
    std::int64_t ts;
  };
  std::vector<Item> items;
};

Population seed(Fixture& f, int n) {
  f.add_records("p", n);
  f.add_records("other", 3);
  Population pop;
  std::mt19937 rng(42);
  for (int i = 0; i < n; ++i) {
    Population::Item it{i, static_cast<double>(rng() % 101), rng() % 3 != 0,
                        kNow + static_cast<std::int64_t>(rng() % 30) * kHour +
                            static_cast<std::int64_t>(rng() % 3600) * 1'000'000};
    pop.items.push_back(it);
    Score a = f.typed("", i, "accuracy", it.accuracy, it.ts);
    Score c = f.typed("", i, "correct", it.correct ? 1 : 0, it.ts);
    c.data_type = ScoreDataType::kBoolean;
    EXPECT_TRUE(f.scores->upsert("p", a).ok());
    EXPECT_TRUE(f.scores->upsert("p", c).ok());
  }
  // Another project's scores never show up.
  EXPECT_TRUE(
      f.scores->submit("other", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 1000}}).ok());
  return pop;
}

const json& by_name(const json& arr, const std::string& name, const std::string& group = "") {
  for (const auto& e : arr) {
    if (e["name"] == name && (group.empty() || e["group"] == group)) return e;
  }
  static const json kNull;
  ADD_FAILURE() << "no entry " << name << "/" << group << " in " << arr.dump();
  return kNull;
}

TEST(Evals, AggregatesMatchTheKnownPopulation) {
  Fixture f;
  const auto pop = seed(f, 200);
  const std::int64_t start = kNow + 5 * kHour;
  const std::int64_t end = kNow + 20 * kHour;
  const json out = f.evals(
      "p",
      {{"timeFilter", {{"start", format_iso8601_ms(start)}, {"end", format_iso8601_ms(end)}}}});
  ASSERT_EQ(out.size(), 2u);

  double sum = 0, mn = 1e9, mx = -1e9;
  std::uint64_t count = 0, trues = 0;
  std::map<std::int64_t, std::pair<std::uint64_t, double>> hours;
  for (const auto& it : pop.items) {
    if (it.ts < start || it.ts >= end) continue;
    sum += it.accuracy;
    mn = std::min(mn, it.accuracy);
    mx = std::max(mx, it.accuracy);
    ++count;
    trues += it.correct;
    auto& h = hours[(it.ts / kHour) * kHour];
    ++h.first;
    h.second += it.accuracy;
  }
  const json& acc = by_name(out, "accuracy");
  EXPECT_EQ(acc["count"], count);
  EXPECT_DOUBLE_EQ(acc["averageScore"].get<double>(), sum / static_cast<double>(count));
  EXPECT_EQ(acc["minScore"], mn);
  EXPECT_EQ(acc["maxScore"], mx);
  ASSERT_EQ(acc["overTime"].size(), hours.size());
  std::uint64_t bucket_total = 0;
  std::size_t i = 0;
  for (const auto& [hour, h] : hours) {
    EXPECT_EQ(acc["overTime"][i]["date"], format_iso8601_ms(hour));
    EXPECT_EQ(acc["overTime"][i]["count"], h.first);
    EXPECT_DOUBLE_EQ(acc["averageOverTime"][i]["value"].get<double>(),
                     h.second / static_cast<double>(h.first));
    bucket_total += acc["overTime"][i]["count"].get<std::uint64_t>();
    ++i;
  }
  EXPECT_EQ(bucket_total, count);

  const json& correct = by_name(out, "correct");
  EXPECT_EQ(correct["count"], count);
  EXPECT_DOUBLE_EQ(correct["averageScore"].get<double>(),
                   static_cast<double>(trues) / static_cast<double>(count));

  // Over everything, with a range longer than 7 days: daily buckets.
  const json all = f.evals("p", {{"timeFilter",
                                  {{"start", format_iso8601_ms(kNow - 10 * 24 * kHour)},
                                   {"end", format_iso8601_ms(kNow + 24 * kHour * 2)}}}});
  const json& acc_all = by_name(all, "accuracy");
  EXPECT_EQ(acc_all["count"], pop.items.size());
  std::set<std::string> days;
  for (const auto& it : pop.items)
    days.insert(format_iso8601_ms((it.ts / (24 * kHour)) * 24 * kHour));
  EXPECT_EQ(acc_all["overTime"].size(), days.size());

  // The other project sees only its own.
  const json other = f.evals("other", json::object());
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0]["averageScore"], 1000.0);
}

TEST(Evals, FilterAndGroupByLookAtTheRecord) {
  Fixture f;
  const auto pop = seed(f, 120);
  auto check = [&](const json& out, const std::string& group, auto pred) {
    double sum = 0;
    std::uint64_t n = 0;
    for (const auto& it : pop.items) {
      if (!pred(record("p", it.request))) continue;
      sum += it.accuracy;
      ++n;
    }
    const json& e = by_name(out, "accuracy", group);
    EXPECT_EQ(e["count"], n) << group;
    EXPECT_DOUBLE_EQ(e["averageScore"].get<double>(), sum / static_cast<double>(n)) << group;
  };
  const json by_model = f.evals("p", {{"groupBy", "model"}});
  EXPECT_EQ(by_model.size(), 4u);  // 2 names × 2 models
  for (const char* m : {"gpt-4o", "gpt-4o-mini"}) {
    check(by_model, m, [&](const RequestRecord& r) { return r.model() == m; });
  }
  const json by_version =
      f.evals("p", {{"groupBy", "properties.Prompt-Version"},
                    {"filter", {{"request_response_rmt", {{"user_id", {{"equals", "user-1"}}}}}}}});
  for (const char* v : {"v1", "v2"}) {
    check(by_version, v, [&](const RequestRecord& r) {
      return r.properties.at("prompt-version") == v && r.user_id == "user-1";
    });
  }
  const json by_user = f.evals("p", {{"groupBy", "user_id"}});
  check(by_user, "user-2", [&](const RequestRecord& r) { return r.user_id == "user-2"; });

  // A scores.<k> filter inside the eval filter.
  const json high = f.evals(
      "p", {{"filter", {{"request_response_rmt", {{"scores", {{"accuracy", {{"gte", 50}}}}}}}}}});
  double sum = 0;
  std::uint64_t n = 0;
  for (const auto& it : pop.items) {
    if (it.accuracy >= 50) {
      sum += it.accuracy;
      ++n;
    }
  }
  EXPECT_EQ(by_name(high, "accuracy")["count"], n);
  EXPECT_DOUBLE_EQ(by_name(high, "accuracy")["averageScore"].get<double>(),
                   sum / static_cast<double>(n));
}

TEST(Evals, DistributionBucketsSumToTheCount) {
  Fixture f;
  const auto pop = seed(f, 150);
  const json out = f.evals("p", json::object(), true);
  const json& acc = by_name(out, "accuracy");
  ASSERT_EQ(acc["distribution"].size(), 10u);
  double mn = 1e9, mx = -1e9;
  for (const auto& it : pop.items) {
    mn = std::min(mn, it.accuracy);
    mx = std::max(mx, it.accuracy);
  }
  const double width = (mx - mn) / 10;
  std::vector<std::uint64_t> expected(10, 0);
  for (const auto& it : pop.items) {
    expected[std::min<std::size_t>(static_cast<std::size_t>(std::floor((it.accuracy - mn) / width)),
                                   9)]++;
  }
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < 10; ++i) {
    const json& b = acc["distribution"][i];
    EXPECT_EQ(b["value"], expected[i]) << i;
    EXPECT_DOUBLE_EQ(b["lower"].get<double>(), mn + width * static_cast<double>(i));
    total += b["value"].get<std::uint64_t>();
  }
  EXPECT_EQ(acc["distribution"][9]["upper"], mx);
  EXPECT_EQ(total, pop.items.size());

  const json& correct = by_name(out, "correct");
  ASSERT_EQ(correct["distribution"].size(), 2u);
  const auto trues = static_cast<std::uint64_t>(
      std::count_if(pop.items.begin(), pop.items.end(), [](const auto& it) { return it.correct; }));
  EXPECT_EQ(correct["distribution"][0]["value"], pop.items.size() - trues);
  EXPECT_EQ(correct["distribution"][1]["value"], trues);

  const json five = f.evals("p", {{"buckets", 5}}, true);
  EXPECT_EQ(by_name(five, "accuracy")["distribution"].size(), 5u);
}

TEST(Evals, HourlyHistogramsAnswerExactlyLikeTheScan) {
  Fixture f;
  const auto pop = seed(f, 200);
  auto ranges = [] {
    std::vector<json> out = {json::object()};
    const std::pair<std::int64_t, std::int64_t> bounds[] = {
        {kNow + 3 * kHour + 17'000'000, kNow + 21 * kHour + 5},     // ragged edges
        {kNow + 2 * kHour, kNow + 9 * kHour},                       // whole hours
        {kNow + 4 * kHour + 10, kNow + 4 * kHour + 1'800'000'000},  // inside one hour
        {kNow - 100 * kHour, kNow + 1000 * kHour},                  // longer than 7 days
    };
    for (const auto& [lo, hi] : bounds) {
      out.push_back(
          {{"timeFilter", {{"start", format_iso8601_ms(lo)}, {"end", format_iso8601_ms(hi)}}}});
    }
    // Only one side bounded.
    out.push_back({{"timeFilter", {{"start", format_iso8601_ms(kNow + 7 * kHour + 123'000)}}}});
    out.push_back({{"timeFilter", {{"end", format_iso8601_ms(kNow + 7 * kHour + 123'000)}}}});
    return out;
  };
  auto compare_all = [&] {
    for (const auto& body : ranges()) {
      for (bool distribution : {false, true}) {
        const json hist = f.evals("p", body, distribution, true);
        const json scan = f.evals("p", body, distribution, false);
        EXPECT_EQ(hist, scan) << body.dump() << (distribution ? " distribution" : " evals");
      }
    }
  };
  compare_all();

  // Writers keep loaded histograms current: overwrites (value and time),
  // moves, deletions, new names' first scores.
  for (int i = 0; i < 40; ++i) {
    Score s = f.typed("", i, "accuracy", 100 - pop.items[static_cast<std::size_t>(i)].accuracy,
                      kNow + (i % 7) * kHour + 1);
    ASSERT_TRUE(f.scores->upsert("p", s).ok());
  }
  ASSERT_TRUE(f.scores->upsert("p", f.typed("mover", 50, "accuracy", 3, kNow)).ok());
  ASSERT_TRUE(f.scores->upsert("p", f.typed("mover", 51, "accuracy", 4, kNow + 2 * kHour)).ok());
  auto page = f.scores->list("p", lq([&](ScoreListQuery& q) { q.request_id = id_of(60); }));
  ASSERT_TRUE(page.ok());
  for (const auto& s : page->scores) ASSERT_TRUE(f.scores->remove("p", s.id).ok());
  compare_all();

  // And a reopened store (histograms rebuilt from disk) agrees too.
  const json before = f.evals("p", json::object(), true);
  f.reopen();
  EXPECT_EQ(f.evals("p", json::object(), true), before);
  compare_all();
}

TEST(RequestQueryScores, FiltersAndSortsOnScores) {
  Fixture f;
  const auto pop = seed(f, 100);
  QueryStats stats;
  auto parsed = parse_request_query(json::parse(
      R"({"filter": {"request_response_rmt": {"scores": {"accuracy": {"gt": 90}}}}, "limit": 1000})"));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  auto rows = f.log->query("p", *parsed, &stats);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(stats.plan, "idx_score");
  std::set<std::string> expected;
  for (const auto& it : pop.items) {
    if (it.accuracy > 90) expected.insert(id_of(it.request));
  }
  std::set<std::string> got;
  for (const auto& r : *rows) got.insert(r.request_id);
  EXPECT_EQ(got, expected);
  // Default order (created_at desc) holds on the score index path too.
  for (std::size_t i = 1; i < rows->size(); ++i) {
    EXPECT_GT((*rows)[i - 1].created_at_us, (*rows)[i].created_at_us);
  }

  // Booleans, combined with a property, OR, and sorting by a score.
  const json out = f.query(
      "p",
      json::parse(
          R"({"filter": {"left": {"request_response_rmt": {"scores.correct": {"equals": true}}},
      "operator": "and", "right": {"request_response_rmt": {"properties": {"prompt-version": {"equals": "v2"}}}}},
      "sort": {"scores.accuracy": "asc"}, "limit": 1000})"));
  std::vector<double> accs;
  std::size_t want = 0;
  for (const auto& it : pop.items) {
    if (it.correct && record("p", it.request).properties.at("prompt-version") == "v2") ++want;
  }
  for (const auto& r : out) {
    EXPECT_EQ(r["scores"]["correct"], true);
    EXPECT_EQ(r["properties"]["prompt-version"], "v2");
    accs.push_back(r["scores"]["accuracy"].get<double>());
  }
  EXPECT_EQ(out.size(), want);
  EXPECT_TRUE(std::is_sorted(accs.begin(), accs.end()));

  const json ored = f.query(
      "p",
      json::parse(
          R"({"filter": {"left": {"request_response_rmt": {"scores": {"accuracy": {"lt": 10}}}},
      "operator": "or", "right": {"request_response_rmt": {"scores": {"accuracy": {"gte": 95}}}}}, "limit": 1000})"));
  std::size_t want_or = 0;
  for (const auto& it : pop.items) want_or += (it.accuracy < 10 || it.accuracy >= 95) ? 1 : 0;
  EXPECT_EQ(ored.size(), want_or);

  // Another project's scores are not visible to the filter.
  const json other = f.query(
      "other",
      json::parse(R"({"filter": {"request_response_rmt": {"scores": {"accuracy": {"gte": 0}}}}})"));
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0]["scores"]["accuracy"], 1000);
}

TEST(ScoreStore, ConcurrentOverwritesLeaveOneIndexEntry) {
  Fixture f;
  f.add_records("p", 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        EXPECT_TRUE(
            f.scores
                ->submit("p", id_of(0),
                         {{"accuracy", ScoreDataType::kNumeric, static_cast<double>(t * 100 + i)}})
                .ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  const json out = f.evals("p", json::object());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["count"], 1);
  EXPECT_EQ(f.scores->list("p", {})->scores.size(), 1u);
  const json dist = f.evals("p", json::object(), true);
  EXPECT_EQ(dist[0]["distribution"][0]["value"], 1);
}

TEST(ScoreStore, QueuedWritesCommitAsOneGroupAndFailIndependently) {
  Fixture f;
  f.add_records("p", 40);
  ScoreConfig cfg;
  cfg.name = "bounded";
  cfg.data_type = ScoreDataType::kNumeric;
  cfg.min_value = 0;
  cfg.max_value = 10;
  ASSERT_TRUE(f.scores->create_config("p", cfg).ok());
  const auto groups_before = f.scores->counters().groups;

  struct Outcome {
    std::mutex mu;
    std::vector<std::optional<Error>> errors;  // nullopt = ok
    int done = 0;
  } outcome;
  constexpr int kCalls = 43;
  outcome.errors.resize(kCalls);
  auto cb = [&](int i) {
    return [&, i](Expected<std::vector<Score>> r) {
      std::lock_guard lk(outcome.mu);
      if (!r.ok()) outcome.errors[static_cast<std::size_t>(i)] = r.error();
      ++outcome.done;
    };
  };
  f.scores->pause_writer_for_testing(true);
  for (int i = 0; i < 40; ++i) {
    f.scores->submit_async("p", id_of(i), {{"accuracy", ScoreDataType::kNumeric, static_cast<double>(i)}}, cb(i));
  }
  // Two overwrites of one score in the same group: the later one wins and
  // the earlier version's index entries are gone.
  f.scores->submit_async("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 70.0}}, cb(40));
  f.scores->submit_async("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 71.0}}, cb(41));
  // Out of its config's range: fails alone, rolled back inside the group.
  f.scores->submit_async("p", id_of(1), {{"bounded", ScoreDataType::kNumeric, 11.0}}, cb(42));
  EXPECT_EQ(f.scores->counters().queue_depth, static_cast<std::uint64_t>(kCalls));
  f.scores->pause_writer_for_testing(false);
  f.scores->stop();  // completes everything queued

  ASSERT_EQ(outcome.done, kCalls);
  for (int i = 0; i < 42; ++i) EXPECT_FALSE(outcome.errors[static_cast<std::size_t>(i)]) << i;
  ASSERT_TRUE(outcome.errors[42]);
  EXPECT_EQ(outcome.errors[42]->code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(f.scores->counters().groups, groups_before + 1);

  const json out = f.evals("p", json::object(), false, /*histograms=*/false);
  ASSERT_EQ(out.size(), 1u);  // "bounded" never got a score
  EXPECT_EQ(out[0]["name"], "accuracy");
  EXPECT_EQ(out[0]["count"], 40);
  EXPECT_EQ(out[0]["maxScore"], 71);
  EXPECT_EQ(f.get("p", 0)["scores"]["accuracy"], 71);
  EXPECT_FALSE(f.get("p", 1)["scores"].contains("bounded"));
  // The in-memory histograms agree with the index.
  EXPECT_EQ(f.evals("p", json::object())[0]["count"], 40);
}

TEST(ScoreStore, WritesAfterStopAreRefusedNotDropped) {
  Fixture f;
  f.add_records("p", 1);
  f.scores->stop();
  auto r = f.scores->submit("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 1.0}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
}

TEST(ScoreStore, HistogramsAreBuiltInTheBackgroundAfterARestart) {
  Fixture f;
  f.add_records("p", 3);
  f.add_records("q", 1);
  ASSERT_TRUE(f.scores->submit("p", id_of(0), {{"accuracy", ScoreDataType::kNumeric, 80.0},
                                               {"correct", ScoreDataType::kBoolean, 1.0}}).ok());
  ASSERT_TRUE(f.scores->submit("p", id_of(1), {{"accuracy", ScoreDataType::kNumeric, 60.0}}).ok());
  ASSERT_TRUE(f.scores->submit("q", id_of(0), {{"other", ScoreDataType::kNumeric, 1.0}}).ok());
  f.reopen();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (f.scores->counters().names_warmed < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(f.scores->counters().names_warmed, 3u);  // p/accuracy, p/correct, q/other
  const json out = f.evals("p", json::object());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["name"], "accuracy");
  EXPECT_EQ(out[0]["count"], 2);
  EXPECT_DOUBLE_EQ(out[0]["averageScore"].get<double>(), 70.0);
}

TEST(ScoreStore, RetentionDeletesTheScoresOfDeletedRequests) {
  TempDir dir;
  RequestLogOptions o;
  o.path = dir.path().string() + "/data";
  o.retention_days = 1;
  const std::int64_t day = 24 * kHour;
  std::int64_t now = kNow;
  o.now_us = [&now] { return now; };
  RequestLog log(std::move(o));
  ScoreStore scores(log, [&now] { return now; });
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(log.submit(record("p", i)));
  ASSERT_TRUE(log.flush());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(scores.submit("p", id_of(i), {{"accuracy", ScoreDataType::kNumeric, 10.0 * i}}).ok());
  }
  Feedback fb;
  fb.rating = true;
  fb.fields = {{"ground_truth", "x"}};
  ASSERT_TRUE(scores.submit_feedback("p", id_of(0), fb).ok());
  Score obs;
  obs.request_id = id_of(0);
  obs.observation_id = "span-1";
  obs.name = "step_ok";
  obs.data_type = ScoreDataType::kBoolean;
  obs.value = 1;
  ASSERT_TRUE(scores.upsert("p", obs).ok());
  auto eval_count = [&](bool histograms) {
    auto q = parse_eval_query(json::object(), false);
    auto r = log.with_store([&](Store& st) { return run_eval_query(st, "p", *q, histograms ? &scores.aggregates() : nullptr); });
    EXPECT_TRUE(r.ok());
    for (const auto& e : *r) {
      if (e["name"] == "accuracy") return e["count"].get<int>();
    }
    return 0;
  };
  ASSERT_EQ(eval_count(true), 4);  // histograms loaded before retention

  // Two days later, records 0 and 1 are re-written as old ones: make 0..1
  // old by moving the clock, then keep 2..3 young by re-submitting them.
  now = kNow + 2 * day;
  for (int i = 2; i < 4; ++i) {
    auto r = record("p", i);
    r.created_at_us = now;
    ASSERT_TRUE(log.submit(std::move(r)));
  }
  ASSERT_TRUE(log.flush());
  auto stats = log.run_retention();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->records_deleted, 2u);
  EXPECT_EQ(stats->scores_deleted, 4u);  // accuracy x2, feedback score, observation score

  auto listed = scores.list("p", lq([](ScoreListQuery& q) { q.limit = 100; }));
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->scores.size(), 2u);
  for (const auto& sc : listed->scores) EXPECT_TRUE(sc.request_id == id_of(2) || sc.request_id == id_of(3));
  EXPECT_EQ(eval_count(false), 2);  // the index
  EXPECT_EQ(eval_count(true), 2);   // the histograms, rebuilt
  // The feedback went with the request: an id reused later starts clean.
  auto fields = log.with_lease([&](const Store::Lease& db) -> Expected<bool> {
    RequestRecord r = record("p", 0);
    if (auto ok = attach_score_data(db, r); !ok) return std::move(ok).error();
    return r.feedback.empty();
  });
  ASSERT_TRUE(fields.ok());
  EXPECT_TRUE(*fields);
}

}  // namespace
}  // namespace arbiter::scoring
