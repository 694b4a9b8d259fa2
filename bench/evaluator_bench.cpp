// Evaluator benchmark (DESIGN.md §9, issue #5 "Bench"): evaluations per
// second for each built-in kind, and what the evaluator runtime costs the
// request log's storage thread.
//
//   evaluator_bench [--seconds S] [--records N] [--workers W] [--dir PATH]
//
//   kernel   one thread calling the kind's C-ABI table (PluginInstance) on a
//            prepared event: the evaluation itself
//   runtime  records logged through the RequestLog with one evaluator of the
//            kind, run by the EvaluatorRuntime with W workers, until every run
//            is finished: scheduling, the record read, the event, the kind,
//            and the durable score + run write — evaluations/s end to end
//   storage  records/s the storage thread writes with 0 and with 10
//            evaluators configured (runtime not started, so this is
//            on_records alone: filter, sampling, a pending run per evaluator)
//   on_records  the listener's own CPU per record (thread CPU time), with 1
//            and with 10 evaluators
//
// Writes into a fresh temp directory (removed at the end) and prints one JSON
// object. Timing lives here, never in pass/fail tests.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <rocksdb/write_batch.h>
#include <time.h>
#include <unistd.h>

#include "plugins/builtin/registry.hpp"
#include "plugins/plugin_loader.hpp"
#include "scoring/eval_event.hpp"
#include "scoring/evaluator_runtime.hpp"
#include "scoring/request_log.hpp"
#include "scoring/score_store.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace sc = arbiter::scoring;

struct KindCase {
  const char* kind;
  json params;
};

// Every local built-in, with params that make it do its full work on the
// event below (comparison kinds compare against the user's message, so no
// feedback is needed).
std::vector<KindCase> kind_cases() {
  const json ref = {{"reference", "inputs.messages.0.content"}};
  return {
      {"response_length", json::object()},
      {"levenshtein", ref},
      {"rouge_l", ref},
      {"bleu", ref},
      {"flesch_reading_ease", json::object()},
      {"json_key_coverage", {{"required_keys", {"name", "title", "date"}}}},
      {"keywords", {{"keywords", {"paris", "capital", "france"}}}},
      {"tokens_per_second", json::object()},
      {"json_schema", {{"schema", {{"type", "object"}, {"required", {"name"}}}}}},
      {"sql_parse", json::object()},
  };
}

// A typical chat call: a ~60-word question and a ~90-word answer.
sc::RequestRecord make_record() {
  const std::string question =
      "I am planning a trip to Europe next spring and would like to know more about the capital "
      "of France. What is it called, what is it famous for, and which neighbourhoods would you "
      "recommend to a first-time visitor who likes museums, food markets and long walks along "
      "the river? Please keep the answer short.";
  const std::string answer =
      "The capital of France is Paris. It is famous for the Eiffel Tower, the Louvre, its cafés "
      "and its long history as a centre of art and science. A first-time visitor who likes "
      "museums should stay near the Marais or Saint-Germain, both within walking distance of the "
      "Louvre and the Musée d'Orsay. For food markets, try the Marché des Enfants Rouges or the "
      "market on Rue Cler. Walks along the Seine between Notre-Dame and the Eiffel Tower are the "
      "classic choice, especially in the evening.";
  sc::RequestRecord r;
  r.project = "bench";
  r.request_id = sc::random_uuid();
  r.created_at_us = 1714564800000000;
  r.response_at_us = r.created_at_us + 900'000;
  r.latency_ms = 900;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = "gpt-4o-mini";
  r.response_model = "gpt-4o-mini-2024-07-18";
  r.prompt_tokens = 70;
  r.completion_tokens = 110;
  r.properties = {{"env", "prod"}};
  r.request_body =
      json{{"model", "gpt-4o-mini"}, {"messages", {{{"role", "user"}, {"content", question}}}}}.dump();
  r.response_body =
      json{{"id", "chatcmpl-x"},
           {"object", "chat.completion"},
           {"model", r.response_model},
           {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", answer}}}}}},
           {"usage", {{"prompt_tokens", 70}, {"completion_tokens", 110}}}}
          .dump();
  return r;
}

json kernel_rate(const KindCase& c, double seconds) {
  const auto* table = arbiter::plugins::builtin::find_builtin(c.kind);
  json config = c.params;
  config["score_name"] = c.kind;
  arbiter::plugins::PluginInstance instance(table, nullptr, config);
  const std::string event = sc::build_eval_event(make_record()).dump();
  std::uint64_t n = 0, failures = 0;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    for (int i = 0; i < 64; ++i) {
      if (!instance.evaluate(event).ok) ++failures;
      ++n;
    }
  }
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  return {{"evaluations", n}, {"per_s", static_cast<double>(n) / s}, {"us_each", s * 1e6 / static_cast<double>(n)},
          {"failures", failures}};
}

struct Stack {
  std::unique_ptr<sc::RequestLog> log;
  std::unique_ptr<sc::ScoreStore> scores;
  std::unique_ptr<sc::EvaluatorRuntime> runtime;
  ~Stack() {
    if (runtime) runtime->stop();
    if (log) (void)log->close();
  }
};

std::unique_ptr<Stack> open_stack(const std::filesystem::path& dir, std::vector<sc::EvaluatorOptions> evaluators,
                                  unsigned workers, std::size_t queue) {
  auto s = std::make_unique<Stack>();
  sc::RequestLogOptions lo;
  lo.path = dir.string();
  s->log = std::make_unique<sc::RequestLog>(std::move(lo));
  s->scores = std::make_unique<sc::ScoreStore>(*s->log);
  sc::EvaluatorRuntimeOptions o;
  o.evaluators = std::move(evaluators);
  o.workers = workers;
  o.queue_capacity = queue;
  s->runtime = std::make_unique<sc::EvaluatorRuntime>(*s->log, *s->scores, std::move(o));
  return s;
}

sc::EvaluatorOptions evaluator_of(const KindCase& c, std::string name) {
  sc::EvaluatorOptions e;
  e.name = std::move(name);
  e.kind = c.kind;
  e.params = c.params;
  e.concurrency = 64;
  return e;
}

json runtime_rate(const KindCase& c, const std::filesystem::path& dir, std::size_t records, unsigned workers) {
  auto s = open_stack(dir, {evaluator_of(c, c.kind)}, workers, records + 16);
  // The runs are queued as the records are written; start the clock when
  // the workers start, so that this measures the evaluations alone.
  for (std::size_t i = 0; i < records; ++i) {
    while (!s->log->submit(make_record())) s->log->flush();
  }
  s->log->flush();
  const auto start = Clock::now();
  s->runtime->start();
  s->runtime->wait_idle(std::chrono::minutes(10));
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const auto counters = s->runtime->counters(c.kind);
  return {{"evaluations", counters.completed + counters.errors},
          {"completed", counters.completed},
          {"errors", counters.errors},
          {"per_s", static_cast<double>(counters.completed + counters.errors) / secs},
          {"p50_ms", counters.duration_p50_ms},
          {"p99_ms", counters.duration_p99_ms}};
}

json storage_rate(const std::filesystem::path& dir, std::size_t records, std::size_t evaluators) {
  std::vector<sc::EvaluatorOptions> evs;
  const auto cases = kind_cases();
  for (std::size_t i = 0; i < evaluators; ++i) evs.push_back(evaluator_of(cases[i % cases.size()], "e" + std::to_string(i)));
  auto s = open_stack(dir, std::move(evs), 1, 16);
  std::vector<sc::RequestRecord> prepared;
  prepared.reserve(records);
  for (std::size_t i = 0; i < records; ++i) prepared.push_back(make_record());
  const auto start = Clock::now();
  for (auto& r : prepared) {
    while (!s->log->submit(std::move(r))) s->log->flush();
  }
  s->log->flush();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  return {{"evaluators", evaluators},
          {"records", records},
          {"records_per_s", static_cast<double>(records) / secs},
          {"pending_runs_written", records * evaluators}};
}

// The listener's own cost on the storage thread, in thread CPU time (which
// other work on the machine barely disturbs): on_records for batches of 64
// records against `evaluators` evaluators (filter, sampling, a pending marker
// each), the batch discarded.
json on_records_cost(const std::filesystem::path& dir, std::size_t evaluators, std::size_t records) {
  std::vector<sc::EvaluatorOptions> evs;
  const auto cases = kind_cases();
  for (std::size_t i = 0; i < evaluators; ++i) evs.push_back(evaluator_of(cases[i % cases.size()], "e" + std::to_string(i)));
  auto s = open_stack(dir, std::move(evs), 1, 16);
  std::vector<sc::RequestRecord> prepared;
  for (std::size_t i = 0; i < 64; ++i) prepared.push_back(make_record());
  std::vector<const sc::RequestRecord*> ptrs;
  for (const auto& r : prepared) ptrs.push_back(&r);
  auto thread_cpu_us = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
  };
  double cpu = 0;
  std::size_t done = 0;
  (void)s->log->with_lease([&](const sc::Store::Lease& db) -> sc::Expected<void> {
    rocksdb::WriteBatch batch;
    const double t0 = thread_cpu_us();
    while (done < records) {
      s->runtime->on_records(db, ptrs, batch);
      s->runtime->records_written(ptrs);
      batch.Clear();
      done += ptrs.size();
    }
    cpu = thread_cpu_us() - t0;
    return {};
  });
  return {{"evaluators", evaluators}, {"records", done}, {"cpu_us_per_record", cpu / static_cast<double>(done)}};
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  std::size_t records = 5000;
  unsigned workers = 2;
  std::filesystem::path base;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (flag == "--records") records = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--workers") workers = static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 10));
    else if (flag == "--dir") base = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: evaluator_bench [--seconds S] [--records N] [--workers W] [--dir PATH]\n");
      return 2;
    }
  }
  if (base.empty()) base = std::filesystem::temp_directory_path();
  const std::filesystem::path dir = base / ("arbiter-evalbench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);

  json out = {{"records", records}, {"workers", workers}, {"kernel", json::object()}, {"runtime", json::object()}};
  int n = 0;
  for (const auto& c : kind_cases()) {
    out["kernel"][c.kind] = kernel_rate(c, seconds);
    out["runtime"][c.kind] = runtime_rate(c, dir / ("rt" + std::to_string(n++)), records, workers);
    std::fprintf(stderr, "%s: kernel %.0f/s, runtime %.0f/s\n", c.kind,
                 out["kernel"][c.kind]["per_s"].get<double>(), out["runtime"][c.kind]["per_s"].get<double>());
  }
  out["storage"] = json::array({storage_rate(dir / "st0", records * 4, 0), storage_rate(dir / "st10", records * 4, 10)});
  out["on_records"] = json::array({on_records_cost(dir / "or1", 1, records * 20), on_records_cost(dir / "or10", 10, records * 20)});
  std::filesystem::remove_all(dir);
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
