#include "scoring/request_log.hpp"
#include "tests/support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

namespace arbiter::scoring {
namespace {

using arbiter::testing::TempDir;

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::int64_t kNow = 1714564800000000;  // 2024-05-01T12:00:00Z
constexpr std::int64_t kDay = 86'400'000'000;

std::string id_of(int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", i);
  return buf;
}

RequestRecord record(const std::string& project, int i, std::int64_t created_at = kNow) {
  RequestRecord r;
  r.project = project;
  r.request_id = id_of(i);
  r.created_at_us = created_at + i;
  r.response_at_us = created_at + i + 1000;
  r.latency_ms = 1.0 + i;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = "gpt-4o";
  r.user_id = "user-" + std::to_string(i % 3);
  r.properties = {{"env", i % 2 == 0 ? "prod" : "dev"}};
  r.request_body = R"({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]})";
  r.response_body = R"({"choices":[{"message":{"role":"assistant","content":"hello"}}]})";
  r.request_size = static_cast<std::int64_t>(r.request_body.size());
  r.response_size = static_cast<std::int64_t>(r.response_body.size());
  return r;
}

RequestLogOptions options_for(const TempDir& dir) {
  RequestLogOptions o;
  o.path = dir.path().string() + "/data";
  o.now_us = [] { return kNow; };
  return o;
}

// Waits for a condition another thread makes true (bounded, no fixed sleep).
template <class F>
bool eventually(F condition, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(RequestLog, SubmitThenGet) {
  TempDir dir;
  RequestLog log(options_for(dir));
  ASSERT_TRUE(log.submit(record("p", 1)));
  ASSERT_TRUE(log.flush());

  auto got = log.get("p", id_of(1), false);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->user_id, "user-1");
  EXPECT_TRUE((*got)->request_body.empty());

  auto with_bodies = log.get("p", id_of(1), true);
  ASSERT_TRUE(with_bodies.ok() && with_bodies->has_value());
  EXPECT_EQ((*with_bodies)->request_body, record("p", 1).request_body);
  EXPECT_EQ((*with_bodies)->response_body, record("p", 1).response_body);

  const auto c = log.counters();
  EXPECT_EQ(c.submitted, 1u);
  EXPECT_EQ(c.written, 1u);
  EXPECT_GE(c.batches, 1u);
  EXPECT_EQ(c.dropped, 0u);
  EXPECT_EQ(c.write_errors, 0u);
  EXPECT_EQ(c.queue_depth, 0u);
}

TEST(RequestLog, GetJsonShapes) {
  TempDir dir;
  RequestLog log(options_for(dir));
  ASSERT_TRUE(log.submit(record("p", 1)));
  ASSERT_TRUE(log.flush());

  auto j = log.get_json("p", id_of(1), false);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["request_id"], id_of(1));
  EXPECT_EQ((*j)["request_created_at"], "2024-05-01T12:00:00.000Z");
  EXPECT_FALSE(j->contains("request_body"));

  auto full = log.get_json("p", id_of(1), true);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ((*full)["request_body"]["messages"][0]["content"], "hi");
  EXPECT_EQ((*full)["response_body"]["choices"][0]["message"]["content"], "hello");

  for (auto [project, id] : {std::pair<std::string, std::string>{"p", id_of(2)},
                             {"other-project", id_of(1)},
                             {"p", "not a uuid"}}) {
    auto missing = log.get_json(project, id, false);
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(http_status(missing.error().code), 404);
  }
}

TEST(RequestLog, ProjectIsolation) {
  TempDir dir;
  RequestLog log(options_for(dir));
  ASSERT_TRUE(log.submit(record("a", 1)));
  ASSERT_TRUE(log.submit(record("b", 2)));
  ASSERT_TRUE(log.flush());
  EXPECT_TRUE(log.get("a", id_of(1), false)->has_value());
  EXPECT_FALSE(log.get("b", id_of(1), false)->has_value());
  EXPECT_FALSE(log.get("a", id_of(2), false)->has_value());
  auto a = log.query_json("a", json::object());
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0]["request_id"], id_of(1));
  EXPECT_FALSE(*log.known("b", id_of(1)));
}

TEST(RequestLog, QueryJson) {
  TempDir dir;
  RequestLog log(options_for(dir));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(log.submit(record("p", i)));
  ASSERT_TRUE(log.flush());

  auto prod = log.query_json(
      "p",
      {{"filter", {{"request_response_rmt", {{"properties", {{"env", {{"equals", "prod"}}}}}}}}},
       {"sort", {{"latency", "asc"}}},
       {"limit", 3},
       {"offset", 1}});
  ASSERT_TRUE(prod.ok()) << prod.error().message;
  ASSERT_TRUE(prod->is_array());
  ASSERT_EQ(prod->size(), 3u);
  EXPECT_EQ((*prod)[0]["request_id"], id_of(2));
  EXPECT_EQ((*prod)[1]["request_id"], id_of(4));
  EXPECT_EQ((*prod)[2]["request_id"], id_of(6));
  EXPECT_FALSE((*prod)[0].contains("request_body"));

  auto bad =
      log.query_json("p", {{"filter", {{"request_response_rmt", {{"modle", {{"equals", "x"}}}}}}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message, "unknown filter field 'modle'");

  auto limit = log.query_json("p", {{"limit", 1001}});
  ASSERT_FALSE(limit.ok());
  EXPECT_EQ(http_status(limit.error().code), 400);

  QueryStats stats;
  auto users = log.query(
      "p",
      *parse_request_query(
          {{"filter", {{"request_response_rmt", {{"user_id", {{"equals", "user-1"}}}}}}}}),
      &stats);
  ASSERT_TRUE(users.ok());
  EXPECT_EQ(users->size(), 7u);
  EXPECT_EQ(stats.plan, "idx_user");
}

TEST(RequestLog, InvalidRecordsAreRefused) {
  TempDir dir;
  RequestLog log(options_for(dir));
  RequestRecord no_project = record("", 1);
  EXPECT_FALSE(log.submit(std::move(no_project)));
  RequestRecord bad_id = record("p", 1);
  bad_id.request_id = "has\nnewline";
  EXPECT_FALSE(log.submit(std::move(bad_id)));
  EXPECT_EQ(log.counters().invalid, 2u);
  EXPECT_EQ(log.counters().submitted, 0u);
}

TEST(RequestLog, FullQueueDropsAndCounts) {
  TempDir dir;
  RequestLogOptions o = options_for(dir);
  o.queue_capacity = 2;
  RequestLog log(o);
  log.pause_storage_for_testing(true);
  std::atomic<int> callbacks{0};
  EXPECT_TRUE(log.submit(record("p", 1), [&](bool) { ++callbacks; }));
  EXPECT_TRUE(log.submit(record("p", 2), [&](bool) { ++callbacks; }));
  EXPECT_FALSE(log.submit(record("p", 3), [&](bool) { ++callbacks; }));
  EXPECT_FALSE(log.submit(record("p", 4)));
  auto c = log.counters();
  EXPECT_EQ(c.submitted, 2u);
  EXPECT_EQ(c.dropped, 2u);
  EXPECT_EQ(c.queue_depth, 2u);

  log.pause_storage_for_testing(false);
  ASSERT_TRUE(log.flush());
  EXPECT_EQ(callbacks.load(), 2);  // never for dropped records
  EXPECT_EQ(log.counters().written, 2u);
  EXPECT_TRUE(log.get("p", id_of(2), false)->has_value());
  EXPECT_FALSE(log.get("p", id_of(3), false)->has_value());
  // Room again.
  EXPECT_TRUE(log.submit(record("p", 5)));
  // A refused record is left to the caller as it was, so it can be submitted again.
  log.pause_storage_for_testing(true);
  EXPECT_TRUE(log.submit(record("p", 6)));
  RequestRecord kept = record("p", 7);
  // So is its callback: the caller can still tell its waiter.
  std::atomic<int> kept_calls{0};
  RequestLog::DurableCallback kept_callback = [&](bool ok) { kept_calls += ok ? 1 : 100; };
  EXPECT_FALSE(log.submit(std::move(kept), std::move(kept_callback)));
  EXPECT_EQ(kept.request_id, id_of(7));
  EXPECT_EQ(kept.response_body, record("p", 7).response_body);
  ASSERT_TRUE(kept_callback);
  log.pause_storage_for_testing(false);
  ASSERT_TRUE(log.flush());
  EXPECT_EQ(kept_calls.load(), 0);
  EXPECT_TRUE(log.submit(std::move(kept), std::move(kept_callback)));
  ASSERT_TRUE(log.flush());
  EXPECT_TRUE(log.get("p", id_of(7), false)->has_value());
  EXPECT_EQ(kept_calls.load(), 1);
}

TEST(RequestLog, StrictCallbackFiresOnlyAfterTheWrite) {
  TempDir dir;
  RequestLogOptions o = options_for(dir);
  o.durability = Durability::kStrict;
  RequestLog log(o);
  log.pause_storage_for_testing(true);

  std::atomic<bool> called{false};
  std::atomic<bool> ok_seen{false};
  std::atomic<bool> stored_when_called{false};
  ASSERT_TRUE(log.submit(record("p", 1), [&](bool ok) {
    ok_seen = ok;
    auto got = log.get("p", id_of(1), false);
    stored_when_called = got.ok() && got->has_value();
    called = true;
  }));
  // Paused: nothing is written, so the callback must not have run.
  EXPECT_FALSE(log.flush(50ms));
  EXPECT_FALSE(called.load());
  EXPECT_FALSE(log.get("p", id_of(1), false)->has_value());

  log.pause_storage_for_testing(false);
  ASSERT_TRUE(log.flush());
  ASSERT_TRUE(eventually([&] { return called.load(); }));
  EXPECT_TRUE(ok_seen.load());
  EXPECT_TRUE(stored_when_called.load());
}

TEST(RequestLog, RelaxedCallbackReportsSuccess) {
  TempDir dir;
  RequestLog log(options_for(dir));
  std::atomic<int> oks{0};
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(log.submit(record("p", i), [&](bool ok) { oks += ok ? 1 : 0; }));
  }
  ASSERT_TRUE(log.flush());
  ASSERT_TRUE(eventually([&] { return oks.load() == 100; }));
}

// Relaxed mode: the storage thread, woken by a record on an empty queue,
// waits `linger` for more, so one wake-up (and one hand-off to evaluators and
// webhooks) serves several calls. A full batch, flush() and close() end the
// wait; strict mode never waits (its responses wait for the write).
RequestLogOptions lingering_for(const TempDir& dir) {
  RequestLogOptions o = options_for(dir);
  o.linger = std::chrono::hours(1);  // only the events under test can end it
  return o;
}

TEST(RequestLog, RelaxedWritesLingerUntilTheBatchIsFull) {
  TempDir dir;
  RequestLogOptions o = lingering_for(dir);
  o.max_batch = 4;
  RequestLog log(o);
  ASSERT_TRUE(log.submit(record("p", 0)));
  // Without the linger the woken thread writes it at once, well within this.
  EXPECT_FALSE(eventually([&] { return log.counters().written != 0; }, 300ms));
  for (int i = 1; i < 4; ++i) ASSERT_TRUE(log.submit(record("p", i)));
  ASSERT_TRUE(eventually([&] { return log.counters().written == 4; }));
  EXPECT_EQ(log.counters().batches, 1u);
}

TEST(RequestLog, FlushEndsTheLinger) {
  TempDir dir;
  RequestLog log(lingering_for(dir));
  ASSERT_TRUE(log.submit(record("p", 0)));
  EXPECT_FALSE(eventually([&] { return log.counters().written != 0; }, 300ms));
  for (int i = 1; i < 3; ++i) ASSERT_TRUE(log.submit(record("p", i)));
  ASSERT_TRUE(log.flush(10s));
  const auto c = log.counters();
  EXPECT_EQ(c.written, 3u);
  EXPECT_EQ(c.batches, 1u);
  EXPECT_TRUE(log.get("p", id_of(2), false)->has_value());
}

TEST(RequestLog, CloseEndsTheLingerAndWritesEverything) {
  TempDir dir;
  const RequestLogOptions o = lingering_for(dir);
  {
    RequestLog log(o);
    ASSERT_TRUE(log.submit(record("p", 1)));
    ASSERT_TRUE(log.close().ok());
    EXPECT_EQ(log.counters().written, 1u);
  }
  RequestLog reopened(o);
  EXPECT_TRUE(reopened.get("p", id_of(1), false)->has_value());
}

TEST(RequestLog, StrictWritesNeverLinger) {
  TempDir dir;
  RequestLogOptions o = lingering_for(dir);
  o.durability = Durability::kStrict;
  RequestLog log(o);
  std::atomic<bool> durable{false};
  ASSERT_TRUE(log.submit(record("p", 1), [&](bool ok) { durable = ok; }));
  EXPECT_TRUE(eventually([&] { return durable.load(); }));
}

TEST(RequestLog, CloseDrainsEverythingAndReopenFindsIt) {
  TempDir dir;
  RequestLogOptions o = options_for(dir);
  o.max_batch = 64;
  constexpr int kRecords = 1000;
  {
    RequestLog log(o);
    log.pause_storage_for_testing(true);  // everything is still queued at close()
    for (int i = 0; i < kRecords; ++i) ASSERT_TRUE(log.submit(record("p", i)));
    EXPECT_EQ(log.counters().queue_depth, static_cast<std::uint64_t>(kRecords));
    ASSERT_TRUE(log.close().ok());
    const auto c = log.counters();
    EXPECT_EQ(c.written, static_cast<std::uint64_t>(kRecords));
    EXPECT_GE(c.batches, static_cast<std::uint64_t>(kRecords / 64));
    EXPECT_TRUE(log.close().ok());  // idempotent
    // After close: submit drops, reads are unavailable.
    EXPECT_FALSE(log.submit(record("p", kRecords)));
    EXPECT_EQ(log.counters().dropped, 1u);
    auto after = log.get("p", id_of(1), false);
    ASSERT_FALSE(after.ok());
    EXPECT_EQ(after.error().code, ErrorCode::kUnavailable);
  }
  RequestLog reopened(o);
  for (int i = 0; i < kRecords; ++i) {
    ASSERT_TRUE(reopened.get("p", id_of(i), false)->has_value()) << i;
  }
  auto all = reopened.query("p", *parse_request_query({{"limit", 1000}}));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), static_cast<std::size_t>(kRecords));
}

TEST(RequestLog, DestructorDrainsToo) {
  TempDir dir;
  const RequestLogOptions o = options_for(dir);
  {
    RequestLog log(o);
    log.pause_storage_for_testing(true);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(log.submit(record("p", i)));
  }
  RequestLog reopened(o);
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(reopened.get("p", id_of(i), false)->has_value());
}

TEST(RequestLog, SecondLogOnTheSameDirectoryIsRefused) {
  TempDir dir;
  RequestLog first(options_for(dir));
  try {
    RequestLog second(options_for(dir));
    FAIL() << "second open succeeded";
  } catch (const StorageError& e) {
    EXPECT_NE(std::string(e.what()).find("is locked by another process"), std::string::npos)
        << e.what();
  }
  // The first one is unaffected.
  EXPECT_TRUE(first.submit(record("p", 1)));
  EXPECT_TRUE(first.flush());
}

TEST(RequestLog, KnownCoversInflightQueuedAndStored) {
  TempDir dir;
  RequestLog log(options_for(dir));
  EXPECT_FALSE(*log.known("p", id_of(1)));

  auto entry = log.inflight().track("p", id_of(1));
  EXPECT_TRUE(*log.known("p", id_of(1)));  // in flight
  EXPECT_FALSE(*log.known("q", id_of(1)));

  log.pause_storage_for_testing(true);
  ASSERT_TRUE(log.submit(record("p", 1)));
  entry.release();
  EXPECT_EQ(log.inflight().size(), 0u);
  EXPECT_TRUE(*log.known("p", id_of(1)));  // queued, not yet written
  EXPECT_FALSE(log.get("p", id_of(1), false)->has_value());

  log.pause_storage_for_testing(false);
  ASSERT_TRUE(log.flush());
  EXPECT_TRUE(*log.known("p", id_of(1)));  // stored
  EXPECT_FALSE(*log.known("p", id_of(2)));
}

TEST(RequestLog, KnownNeverMissesDuringTheHandOff) {
  TempDir dir;
  RequestLog log(options_for(dir));
  std::atomic<bool> stop{false};
  std::atomic<int> misses{0};
  std::atomic<int> current{-1};
  std::thread checker([&] {
    while (!stop) {
      const int i = current.load();
      if (i >= 0) {
        auto k = log.known("p", id_of(i));
        if (!k.ok() || !*k) ++misses;
      }
    }
  });
  for (int i = 0; i < 300; ++i) {
    auto entry = log.inflight().track("p", id_of(i));
    current = i;
    ASSERT_TRUE(log.submit(record("p", i)));
    entry.release();
  }
  ASSERT_TRUE(log.flush());
  stop = true;
  checker.join();
  EXPECT_EQ(misses.load(), 0);
}

TEST(InflightRegistry, CountsDuplicatesAndEntriesMove) {
  InflightRegistry reg;
  reg.add("p", "a");
  reg.add("p", "a");
  EXPECT_EQ(reg.size(), 2u);
  reg.remove("p", "a");
  EXPECT_TRUE(reg.contains("p", "a"));
  reg.remove("p", "a");
  EXPECT_FALSE(reg.contains("p", "a"));
  reg.remove("p", "a");  // extra removes are harmless
  EXPECT_EQ(reg.size(), 0u);

  {
    auto e1 = reg.track("p", "b");
    InflightRegistry::Entry e2 = std::move(e1);
    EXPECT_TRUE(reg.contains("p", "b"));
    InflightRegistry::Entry e3;
    e3 = std::move(e2);
    EXPECT_EQ(reg.size(), 1u);
  }
  EXPECT_FALSE(reg.contains("p", "b"));
  // Project and id do not run together.
  reg.add("ab", "c");
  EXPECT_FALSE(reg.contains("a", "bc"));
}

TEST(RequestLog, PropertyKeysAreLowerCased) {
  TempDir dir;
  RequestLog log(options_for(dir));
  RequestRecord r = record("p", 1);
  r.properties = {{"Env", "Prod"}, {"TEAM", "x"}};
  ASSERT_TRUE(log.submit(std::move(r)));
  ASSERT_TRUE(log.flush());
  const auto got = log.get("p", id_of(1), false);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->properties,
            (std::map<std::string, std::string>{{"env", "Prod"}, {"team", "x"}}));
  auto hits = log.query_json(
      "p",
      {{"filter", {{"request_response_rmt", {{"properties", {{"ENV", {{"equals", "Prod"}}}}}}}}}});
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 1u);
}

TEST(RequestLog, RetentionDeletesOldRecords) {
  TempDir dir;
  RequestLogOptions o = options_for(dir);
  o.retention_days = 7;
  RequestLog log(o);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(log.submit(record("p", i, kNow - 30 * kDay)));       // old
    ASSERT_TRUE(log.submit(record("p", 100 + i, kNow - 1 * kDay)));  // recent
  }
  ASSERT_TRUE(log.submit(record("q", 200, kNow - 8 * kDay)));  // old, another project
  ASSERT_TRUE(log.flush());

  auto stats = log.run_retention();
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  // The background pass at start may have raced with the writes and taken
  // some of them; together the passes deleted exactly the old ones.
  EXPECT_EQ(log.counters().retention_deleted, 11u);
  EXPECT_EQ(log.run_retention()->records_deleted, 0u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(log.get("p", id_of(i), true)->has_value());
    EXPECT_TRUE(log.get("p", id_of(100 + i), true)->has_value());
  }
  EXPECT_FALSE(log.get("q", id_of(200), false)->has_value());
  auto left = log.query_json("p", {{"limit", 1000}});
  EXPECT_EQ(left->size(), 10u);
  auto by_user = log.query_json(
      "p", {{"filter", {{"request_response_rmt", {{"user_id", {{"equals", "user-0"}}}}}}}});
  EXPECT_EQ(by_user->size(), 3u);  // 102, 105, 108
}

TEST(RequestLog, RetentionRunsInTheBackgroundAtStart) {
  TempDir dir;
  RequestLogOptions o = options_for(dir);
  {
    RequestLog log(o);  // no retention: keeps everything
    ASSERT_TRUE(log.submit(record("p", 1, kNow - 40 * kDay)));
    ASSERT_TRUE(log.submit(record("p", 2, kNow)));
  }
  o.retention_days = 30;
  RequestLog log(o);
  ASSERT_TRUE(eventually([&] { return log.counters().retention_deleted == 1; }));
  EXPECT_FALSE(log.get("p", id_of(1), false)->has_value());
  EXPECT_TRUE(log.get("p", id_of(2), false)->has_value());
}

TEST(RequestLog, RetentionOffKeepsEverything) {
  TempDir dir;
  RequestLog log(options_for(dir));
  ASSERT_TRUE(log.submit(record("p", 1, 0)));
  ASSERT_TRUE(log.flush());
  EXPECT_EQ(log.run_retention()->records_deleted, 0u);
  EXPECT_TRUE(log.get("p", id_of(1), false)->has_value());
}

TEST(RequestLog, ConcurrentSubmitters) {
  TempDir dir;
  RequestLogOptions o = options_for(dir);
  o.max_batch = 128;
  RequestLog log(o);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_TRUE(log.submit(record("p", t * kPerThread + i)));
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(log.flush());
  const auto c = log.counters();
  EXPECT_EQ(c.submitted, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(c.written, c.submitted);
  EXPECT_EQ(c.dropped, 0u);
  QueryStats stats;
  auto prod = log.query(
      "p",
      *parse_request_query(
          {{"filter",
            {{"request_response_rmt", {{"properties", {{"env", {{"equals", "prod"}}}}}}}}},
           {"limit", 1000},
           {"offset", 2000}}),
      &stats);
  ASSERT_TRUE(prod.ok());
  EXPECT_EQ(prod->size(), 1000u);  // 3000 prod records, page 3
}

}  // namespace
}  // namespace arbiter::scoring
