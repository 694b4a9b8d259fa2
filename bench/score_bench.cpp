// Score store microbenchmark (DESIGN.md §9: score ingest >= 50,000 scores/s,
// distribution over 1,000,000 scores <= 200 ms).
//
//   score_bench [scores=1000000] [threads=64] [dir]
//
// 1. logs `scores` request records (through the request log's storage thread);
// 2. ingests one "accuracy" score (0..100) per request plus one "correct"
//    boolean per 10th request from `threads` threads through
//    ScoreStore::submit — each call one durable (sync=true) WriteBatch, as the
//    API does — and reports scores/s;
// 3. times the queries (median of 5 runs): distribution over everything,
//    eval query over everything and over one day, a scores.<k> request
//    filter, and an eval query grouped by model (the record-join path).
//
// This measures the store, not HTTP: the API adds its parse/serialise and
// socket costs on top.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "scoring/evals.hpp"
#include "scoring/score_store.hpp"

using namespace arbiter::scoring;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t kStart = 1714564800000000;  // 2024-05-01T12:00:00Z

std::string id_of(std::size_t i) {
  char buf[48];  // room for any size_t: gcc -O2 checks the worst case (-Wformat-truncation)
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012zu", i);
  return buf;
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

template <class F>
double median_ms(F&& f, int runs = 5) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    f();
    t.push_back(ms_since(start));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const std::size_t threads = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 64;
  const std::string dir =
      argc > 3 ? argv[3]
               : (std::filesystem::temp_directory_path() / "arbiter-score-bench").string();
  std::filesystem::remove_all(dir);

  RequestLogOptions options;
  options.path = dir;
  RequestLog log(options);
  // Scores are spread over 30 days: timestamp = start + i * (30 days / n).
  const std::int64_t step =
      static_cast<std::int64_t>(30LL * 86'400'000'000LL / static_cast<std::int64_t>(n));
  std::atomic<std::int64_t> clock{kStart};

  auto t0 = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    RequestRecord r;
    r.project = "bench";
    r.request_id = id_of(i);
    r.created_at_us = kStart + static_cast<std::int64_t>(i) * step;
    r.status = 200;
    r.request_model = i % 2 == 0 ? "gpt-4o" : "gpt-4o-mini";
    r.properties = {{"prompt-version", i % 4 < 2 ? "v1" : "v2"}};
    while (!log.submit(std::move(r))) log.flush();
  }
  log.flush(std::chrono::minutes(10));
  std::printf("records: %zu logged in %.0f ms\n", n, ms_since(t0));

  // Each thread's scores carry timestamps from the injected clock.
  ScoreStore store(log, [&] { return clock.load(std::memory_order_relaxed); });
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> written{0};
  t0 = Clock::now();
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (std::size_t i = next++; i < n; i = next++) {
        clock.store(kStart + static_cast<std::int64_t>(i) * step, std::memory_order_relaxed);
        std::vector<HeliconeScore> s = {
            {"accuracy", ScoreDataType::kNumeric, static_cast<double>((i * 7919) % 101)}};
        if (i % 10 == 0) s.push_back({"correct", ScoreDataType::kBoolean, i % 3 == 0 ? 0.0 : 1.0});
        if (auto ok = store.submit("bench", id_of(i), s); !ok) {
          std::fprintf(stderr, "submit failed: %s\n", ok.error().message.c_str());
          std::exit(1);
        }
        written += s.size();
      }
    });
  }
  for (auto& th : pool) th.join();
  const double ingest_ms = ms_since(t0);
  std::printf("ingest: %zu scores in %zu durable calls from %zu threads: %.0f ms, %.0f scores/s\n",
              written.load(), n, threads, ingest_ms,
              static_cast<double>(written.load()) * 1000.0 / ingest_ms);

  auto run = [&](const char* label, const nlohmann::json& body, bool distribution,
                 ScoreAggregates* aggregates) {
    auto q = parse_eval_query(body, distribution);
    if (!q) {
      std::fprintf(stderr, "%s: %s\n", label, q.error().message.c_str());
      std::exit(1);
    }
    std::size_t count = 0;
    const double ms = median_ms([&] {
      auto r = log.with_store([&](Store& s) {
        return distribution ? run_score_distribution(s, "bench", *q, aggregates)
                            : run_eval_query(s, "bench", *q, aggregates);
      });
      if (!r) {
        std::fprintf(stderr, "%s: %s\n", label, r.error().message.c_str());
        std::exit(1);
      }
      count = r->size();
    });
    std::printf("%-48s %8.1f ms (%zu entries)\n", label, ms, count);
  };
  const nlohmann::json all = nlohmann::json::object();
  const nlohmann::json day = {
      {"timeFilter", {{"start", "2024-05-10T00:00:00Z"}, {"end", "2024-05-11T00:00:00Z"}}}};
  const nlohmann::json odd = {
      {"timeFilter", {{"start", "2024-05-03T00:17:31Z"}, {"end", "2024-05-28T13:45:10Z"}}}};
  // The first query of a name loads its hourly histograms (one scan).
  t0 = Clock::now();
  {
    auto q = parse_eval_query(all, true);
    auto r = log.with_store(
        [&](Store& s) { return run_score_distribution(s, "bench", *q, &store.aggregates()); });
    if (!r) return 1;
  }
  std::printf("%-48s %8.1f ms\n", "first query: load hourly histograms", ms_since(t0));
  run("distribution, all scores (histograms)", all, true, &store.aggregates());
  run("eval query, all scores (histograms)", all, false, &store.aggregates());
  run("distribution, 25.5 days, ragged edges (hist.)", odd, true, &store.aggregates());
  run("eval query, 25.5 days, ragged edges (hist.)", odd, false, &store.aggregates());
  run("distribution, all scores (index scan)", all, true, nullptr);
  run("eval query, all scores (index scan)", all, false, nullptr);
  run("eval query, one day (index scan)", day, false, nullptr);

  auto rq = parse_request_query(nlohmann::json::parse(
      R"({"filter": {"request_response_rmt": {"scores": {"accuracy": {"gte": 100}}}}, "limit": 100})"));
  QueryStats stats;
  const double q_ms = median_ms([&] {
    auto rows = log.query("bench", *rq, &stats);
    if (!rows) std::exit(1);
  });
  std::printf("%-48s %8.1f ms (plan %s, %llu records examined)\n",
              "request query scores.accuracy >= 100", q_ms, stats.plan.c_str(),
              static_cast<unsigned long long>(stats.records_examined));
  run("eval query grouped by model, one day (join)",
      {{"groupBy", "model"},
       {"timeFilter", {{"start", "2024-05-10T00:00:00Z"}, {"end", "2024-05-11T00:00:00Z"}}}},
      false, &store.aggregates());
  (void)log.close();
  std::filesystem::remove_all(dir);
  return 0;
}
