// Request-log storage benchmark: the storage thread's sustained write rate,
// and query latency over a large log (DESIGN.md §9, issue "request log").
//
//   log_bench [--records N] [--query-records N] [--dir PATH]
//
// Writes into a fresh temp directory (removed at the end) and prints one JSON
// object with the figures. Timing lives here, never in pass/fail tests.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "scoring/query.hpp"
#include "scoring/request_log.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using arbiter::scoring::RequestLog;
using arbiter::scoring::RequestLogOptions;
using arbiter::scoring::RequestRecord;

std::string uuid(std::mt19937_64& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(36, '-');
  for (int i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    s[static_cast<std::size_t>(i)] = kHex[rng() & 15];
  }
  s[14] = '4';
  s[19] = '8';
  return s;
}

RequestRecord make_record(std::mt19937_64& rng, std::int64_t created_us, std::size_t body_bytes, int i) {
  static const char* kEnvs[] = {"prod", "dev", "staging"};
  static const char* kModels[] = {"gpt-4o-mini", "gpt-4o", "o3-mini"};
  RequestRecord r;
  r.request_id = uuid(rng);
  r.project = "bench";
  r.created_at_us = created_us;
  r.response_at_us = created_us + 350'000;
  r.latency_ms = 350;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = kModels[i % 3];
  r.response_model = r.request_model;
  r.user_id = "user-" + std::to_string(i % 5000);
  r.properties["env"] = kEnvs[i % 3];
  // One record in 10,000 carries a rare property: the selective-filter case.
  if (i % 10000 == 0) r.properties["experiment"] = "rare";
  r.prompt_tokens = 120;
  r.completion_tokens = 40;
  r.total_tokens = 160;
  r.request_body = R"({"model":")" + r.request_model + R"(","messages":[{"role":"user","content":")" +
                   std::string(body_bytes, 'q') + R"("}]})";
  r.response_body = R"({"choices":[{"message":{"role":"assistant","content":")" + std::string(body_bytes, 'a') +
                    R"("}}],"usage":{"prompt_tokens":120,"completion_tokens":40}})";
  r.request_size = static_cast<std::int64_t>(r.request_body.size());
  r.response_size = static_cast<std::int64_t>(r.response_body.size());
  return r;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Submits `n` records as fast as the queue takes them; returns records/s
// measured until every record is written.
double fill(RequestLog& log, std::size_t n, std::size_t body_bytes, std::int64_t start_us, std::mt19937_64& rng) {
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    auto rec = make_record(rng, start_us + static_cast<std::int64_t>(i) * 1000, body_bytes, static_cast<int>(i));
    while (!log.submit(std::move(rec))) {
      // Queue full: the benchmark, unlike the proxy, waits for room.
      log.flush(std::chrono::milliseconds(100));
      rec = make_record(rng, start_us + static_cast<std::int64_t>(i) * 1000, body_bytes, static_cast<int>(i));
    }
  }
  log.flush(std::chrono::minutes(10));
  return static_cast<double>(n) / (ms_since(t0) / 1000.0);
}

struct Latency {
  double p50 = 0, p99 = 0, max = 0;
  std::size_t rows = 0;
  std::uint64_t examined = 0;
};

Latency time_query(const RequestLog& log, const nlohmann::json& body, int runs) {
  auto q = arbiter::scoring::parse_request_query(body);
  if (!q) {
    std::fprintf(stderr, "bad query: %s\n", q.error().message.c_str());
    std::exit(1);
  }
  std::vector<double> ms;
  Latency out;
  for (int i = 0; i < runs; ++i) {
    arbiter::scoring::QueryStats stats;
    const auto t0 = Clock::now();
    auto rows = log.query("bench", *q, &stats);
    ms.push_back(ms_since(t0));
    if (!rows) {
      std::fprintf(stderr, "query failed: %s\n", rows.error().message.c_str());
      std::exit(1);
    }
    out.rows = rows->size();
    out.examined = stats.records_examined;
  }
  std::sort(ms.begin(), ms.end());
  out.p50 = ms[ms.size() / 2];
  out.p99 = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  out.max = ms.back();
  return out;
}

nlohmann::json to_json(const Latency& l) {
  return {{"p50_ms", l.p50}, {"p99_ms", l.p99}, {"max_ms", l.max}, {"rows", l.rows}, {"records_examined", l.examined}};
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t write_records = 200'000;
  std::size_t query_records = 1'000'000;
  std::filesystem::path dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--records" && i + 1 < argc) write_records = std::stoul(argv[++i]);
    else if (a == "--query-records" && i + 1 < argc) query_records = std::stoul(argv[++i]);
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else {
      std::fprintf(stderr, "usage: log_bench [--records N] [--query-records N] [--dir PATH]\n");
      return 2;
    }
  }
  if (dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "arbiter-log-bench-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) return 1;
    dir = tmpl;
  }
  std::mt19937_64 rng(7);
  nlohmann::json report;
  const std::int64_t now_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();

  {
    // Sustained write rate with ~1 KiB bodies each way (a typical chat call).
    RequestLogOptions o;
    o.path = (dir / "writes").string();
    RequestLog log(o);
    const double rate = fill(log, write_records, 1024, now_us - 3'600'000'000LL, rng);
    report["storage_write"] = {{"records", write_records}, {"body_bytes_each_way", 1024}, {"records_per_s", rate},
                               {"durability", "relaxed"}};
    (void)log.close();
  }
  {
    RequestLogOptions o;
    o.path = (dir / "writes-strict").string();
    o.durability = arbiter::scoring::Durability::kStrict;
    RequestLog log(o);
    const std::size_t n = std::min<std::size_t>(write_records, 50'000);
    const double rate = fill(log, n, 1024, now_us - 3'600'000'000LL, rng);
    report["storage_write_strict"] = {{"records", n}, {"records_per_s", rate}};
    (void)log.close();
  }
  {
    // A large log with small bodies, then the queries teams run most.
    RequestLogOptions o;
    o.path = (dir / "queries").string();
    RequestLog log(o);
    const double rate = fill(log, query_records, 64, now_us - static_cast<std::int64_t>(query_records) * 1000, rng);
    report["query_log_fill_records_per_s"] = rate;
    report["query_log_records"] = query_records;
    using nlohmann::json;
    report["query_rare_property"] = to_json(time_query(
        log, json::parse(R"({"filter":{"request_response_rmt":{"properties":{"experiment":{"equals":"rare"}}}},"limit":100})"),
        20));
    report["query_common_property_limit_100"] = to_json(time_query(
        log, json::parse(R"({"filter":{"request_response_rmt":{"properties":{"env":{"equals":"prod"}}}},"limit":100})"),
        20));
    report["query_user_limit_100"] = to_json(time_query(
        log, json::parse(R"({"filter":{"request_response_rmt":{"user_id":{"equals":"user-42"}}},"limit":100})"), 20));
    report["query_all_newest_100"] = to_json(time_query(log, json::parse(R"({"filter":"all","limit":100})"), 20));
    (void)log.close();
  }
  std::filesystem::remove_all(dir);
  std::printf("%s\n", report.dump(2).c_str());
  return 0;
}
