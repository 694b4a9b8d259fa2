#pragma once
// The evaluator runtime (DESIGN.md §6): schedules evaluator runs for stored
// records, runs them on its own worker threads, and writes their scores.
//
// Scheduling. The runtime is a WriteListener on the RequestLog. In
// on_records (the storage thread: cheap work only) each record is matched
// against each evaluator's filter and deterministic sampling, and a
// *pending* run entry is added to the record's own WriteBatch: a hard kill
// can never lose a scheduled evaluation, because the run is durable exactly
// when its record is. records_written hands the runs to the workers. At
// start-up every unfinished run found in storage is resumed.
//
// Running. Workers (never the proxy's I/O threads) take runs round-robin
// over evaluators, each evaluator limited to its `concurrency`. A run reads
// the record (bodies and feedback included; a run queued by records_written
// gets the record it was scheduled with, copied in on_records within a
// bounded byte budget, and reads only the posted feedback), builds the event
// (eval_event.hpp), and if a `needs` path is missing becomes
// waiting-for-fields until feedback_written reports new fields for that
// request. Otherwise the kind evaluates it with the evaluator's timeout.
// Retryable failures (timeouts, 429, 5xx, a plugin's "retryable") are
// retried with exponential backoff and jitter up to retry.max_attempts; then
// the run is an error. Results become scores (source EVAL, typed from the
// value, comment = explanation, author = the evaluator, id derived from
// request + evaluator + score name so that a retry overwrites) written with
// the finished run in one durable batch through ScoreStore::write_evaluation,
// which lets webhooks see score.created and evaluation.completed.
//
// Bounded. The queue holds at most queue_capacity runs (ready + waiting for
// a retry). A run that finds it full is not dropped: it is deferred — its
// pending marker is in the record's batch like any run's, and it is counted —
// and the workers' backlog scan of unfinished runs in storage (the same one
// that resumes runs at start-up) queues it once the queue has drained to
// half. Under a sustained overload the backlog waits on disk, not in memory,
// and evaluation catches up when the load falls.
//
// The log first. Evaluations can wait; the request log cannot (a record its
// storage thread does not take before the log's queue fills is dropped).
// While the log's queue holds more than log_backlog_limit records, workers
// take no new run: they look again every kLogBackedUpPause, and start again
// once the queue is down to half the limit. Runs meanwhile wait in the queue,
// or in storage once it is full (deferred, as above).
//
// Thread-safety: every public member may be called from any thread. The
// WriteListener calls follow write_listener.hpp's rules.
// Lifetime: construct (builds every evaluator, may throw) → the constructor
// registers the listener on the log → start() → stop() → close the log →
// destroy. The RequestLog and ScoreStore must outlive the runtime, and the
// runtime must outlive the log's storage thread (close the log before
// destroying the runtime).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "scoring/eval_runs.hpp"
#include "scoring/evaluator_kind.hpp"
#include "scoring/expected.hpp"
#include "scoring/record_handoff.hpp"
#include "scoring/request_record.hpp"
#include "scoring/score.hpp"
#include "scoring/write_listener.hpp"

namespace arbiter::scoring {

class OutboundHttp;
class RequestLog;
class ScoreStore;

struct EvaluatorFilter {
  std::string path;   // glob on the path without query; "" = any
  std::string model;  // glob on the requested or the response model; "" = any
  std::map<std::string, std::string> properties;  // exact; keys lower-case
  std::string status;  // "" = any, "2xx" class, or "200"
};

struct RetryPolicy {
  unsigned max_attempts = 3;
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{60'000};
};

struct EvaluatorOptions {
  std::string name;
  std::string kind;
  EvaluatorFilter filter;
  unsigned sampling = 100;  // percent
  std::vector<std::string> needs;
  std::string score_name;                   // default: name
  std::optional<ScoreDataType> data_type;   // when set, every score must have it
  std::chrono::milliseconds timeout{30'000};  // per attempt
  unsigned concurrency = 4;
  RetryPolicy retry;
  nlohmann::json params = nlohmann::json::object();
};

struct EvaluatorRuntimeOptions {
  std::vector<EvaluatorOptions> evaluators;
  std::vector<EvalUpstream> upstreams;
  unsigned workers = 4;
  std::size_t queue_capacity = 10'000;
  // Niceness of the worker threads (0-19): evaluations yield the CPUs to the
  // proxy's I/O threads under contention, so they cannot add proxy latency;
  // what they cannot keep up with fills the queue (counted), never the proxy.
  int worker_nice = 10;
  // Run the worker threads under SCHED_IDLE instead (worker_nice is then
  // moot): they take only CPU time nothing else wants. Off here, so that
  // tests sharing a busy machine are not starved; arbiter's config turns it
  // on (server.evaluator_sched_idle).
  bool worker_sched_idle = false;
  // Unfinished runs read from storage per backlog scan step (tests make it small).
  std::size_t backlog_chunk = 256;
  // Records waiting in the request log's queue above which workers yield the
  // CPU to its storage thread (see "The log first"); 0: half the log's
  // queue_capacity.
  std::size_t log_backlog_limit = 0;
  // Unix µs clock; tests inject their own.
  std::function<std::int64_t()> now_us;
  // Tests: builds an evaluator's kind instead of make_evaluator_kind.
  std::function<std::unique_ptr<EvaluatorKind>(const KindSpec&)> make_kind;
};

// An evaluator that cannot be built; what() is "evaluator 'name' (kind k):
// params.x: ...".
class EvaluatorConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// '*' matches any run of characters (including none), '?' one byte.
bool glob_match(std::string_view pattern, std::string_view text);
// Whether the record passes the filter (see EvaluatorFilter).
bool filter_matches(const EvaluatorFilter& filter, const RequestRecord& record);
// The deterministic 0..99 bucket of (request, evaluator): a run is sampled in
// when bucket < sampling. The same pair gives the same bucket everywhere.
unsigned sampling_bucket(std::string_view request_id, std::string_view evaluator);
// The backoff before attempt `attempt + 1` after `attempt` failures (≥ 1):
// initial * 2^(attempt-1), capped at max, then scaled by `jitter` ∈ [0.5, 1].
std::chrono::milliseconds retry_backoff(const RetryPolicy& policy, unsigned attempt, double jitter);

class EvaluatorRuntime final : public WriteListener {
 public:
  // Builds every evaluator (plugins are loaded, templates read, params
  // checked) and registers the runtime as a listener on `log`. Throws
  // EvaluatorConfigError. Does not start threads.
  EvaluatorRuntime(RequestLog& log, ScoreStore& scores, EvaluatorRuntimeOptions options);
  ~EvaluatorRuntime() override;
  EvaluatorRuntime(const EvaluatorRuntime&) = delete;
  EvaluatorRuntime& operator=(const EvaluatorRuntime&) = delete;

  // Builds every evaluator and discards it (arbiter --check). Throws
  // EvaluatorConfigError.
  static void validate(const EvaluatorRuntimeOptions& options);

  // Starts the workers and resumes unfinished runs found in storage.
  void start();
  // Stops taking runs and joins the workers once their current attempt is
  // over. Runs not finished stay pending in storage and resume at the next
  // start. Idempotent.
  void stop();

  // ---- WriteListener
  void on_records(const Store::Lease& db, std::span<const RequestRecord* const> records,
                  rocksdb::WriteBatch& batch) override;
  void records_written(std::span<const RequestRecord* const> records) override;
  void feedback_written(std::string_view project, std::string_view request_id,
                        const nlohmann::json& fields) override;

  // ---- API (blocking reads: call from a worker, not an I/O thread)

  bool has_evaluator(std::string_view name) const;
  // GET /v1/evaluators: each evaluator's config (secrets redacted) and
  // counters. last_error is shown only when it came from one of `project`'s
  // runs (it may quote that run's data); the gateway's own errors (storage)
  // are never shown, since they may name files.
  nlohmann::json describe(std::string_view project) const;
  // GET /v1/evaluators/runs?request_id=: that request's runs in this project.
  Expected<nlohmann::json> runs_json(std::string_view project, std::string_view request_id) const;
  // POST /v1/evaluators/{name}/run: evaluates one stored request now (one
  // attempt, filter and sampling ignored) and returns the run as JSON with
  // its scores. With store, the scores and the run are written like a
  // scheduled run's. kNotFound for an unknown evaluator or request.
  Expected<nlohmann::json> run_now(std::string_view project, std::string_view evaluator,
                                   std::string_view request_id, bool store);
  // Prometheus text for /metrics.
  std::string metrics_text() const;

  struct Counters {
    std::uint64_t matched = 0;      // records that passed the filter
    std::uint64_t sampled_out = 0;  // matched, but not in the sample
    std::uint64_t scheduled = 0;    // runs queued (sampled in, plus resumed)
    std::uint64_t waiting = 0;      // times a run started waiting for fields
    std::uint64_t completed = 0;
    std::uint64_t errors = 0;
    std::uint64_t retries = 0;
    std::uint64_t deferred = 0;  // runs that found the queue full and waited in storage
    std::int64_t running = 0;
    std::string last_error;
    std::string last_error_project;  // empty: not a run's error
    double duration_p50_ms = 0;  // over the last kDurationWindow finished runs
    double duration_p99_ms = 0;
  };
  Counters counters(std::string_view evaluator) const;
  std::size_t queue_depth() const;
  // Times the workers stopped taking runs because the request log's queue
  // was over log_backlog_limit (each stop, not each look while stopped).
  std::uint64_t log_backlog_pauses() const { return log_backlog_pauses_.load(std::memory_order_relaxed); }

  // Test hook: blocks until no run is queued, delayed or running, or the
  // timeout passes. Runs that wait for fields do not count.
  bool wait_idle(std::chrono::milliseconds timeout);

  static constexpr std::size_t kDurationWindow = 1024;

 private:
  struct Evaluator;
  struct Task {
    std::string project;
    std::string request_id;
    std::size_t evaluator = 0;
    // From a backlog pass after start-up's: a run waiting for fields is left
    // waiting (feedback_written re-checks those), so a pass over deferred
    // runs does not re-read every waiting one.
    bool skip_waiting = false;
    // The record as committed, when the run was scheduled by
    // records_written and the handoff budget had room: the worker's first
    // look uses it instead of reading the record back. Shared by the
    // record's runs; never mutated.
    std::shared_ptr<const RequestRecord> record;
    // Scheduled by records_written for a record whose id the gateway made
    // (RequestRecord::new_id): the created_us its 'P' marker holds. Until
    // someone asks for a re-check, such a run's first look knows what
    // read_run would find (pending since then) and skips those two reads.
    std::int64_t fresh_created_us = 0;
  };
  // A task that waits (a retry, a backoff) reads its record back when it
  // runs: it does not hold the handed-off record meanwhile. Call with mu_ held.
  void delay(const Task& task, std::chrono::steady_clock::time_point due);
  struct Delayed {
    std::chrono::steady_clock::time_point due;
    Task task;
    bool operator>(const Delayed& o) const { return due > o.due; }
  };
  struct Staged {  // on_records → records_written, storage thread only
    std::vector<Task> runs;
    std::size_t deferred = 0;  // runs left pending in storage: the queue had no room
    std::size_t reserved = 0;
  };

  void build_evaluators(OutboundHttp* http);
  void worker_loop();
  bool next_task(Task& task);
  void process(const Task& task);
  // Adds a task unless its run is already active (then, with recheck_active,
  // asks its worker to look again); `force` ignores capacity (resumed and
  // retried runs were admitted before).
  bool enqueue(Task task, bool force, bool recheck_active = true);
  void finish_active(const std::string& key);
  // Asks the worker holding this active run (if any) to read it again before
  // it lets go; recheck_requested is true for it from then on (or when the
  // run is not active).
  void request_recheck(const std::string& key);
  bool recheck_requested(const std::string& key) const;
  void retry_later(const Task& task);
  void release_reservations(std::size_t n);
  // Wakes n idle workers (all of them when n >= their number).
  void wake_workers(std::size_t n);
  // Under mu_: unfinished runs in storage wait and the queue has room to
  // refill from them.
  bool backlog_ready() const {
    return backlog_pending_ && queued_ + reserved_ < options_.queue_capacity / 2 + 1;
  }
  void resume_backlog();
  // Under mu_: whether workers leave the CPU to the request log's storage
  // thread now (with hysteresis: see "The log first").
  bool log_backed_up();
  static constexpr std::chrono::milliseconds kLogBackedUpPause{5};
  void record_duration(Evaluator& ev, std::int64_t duration_us);
  // `project` is the run's project, empty for errors that are the gateway's own.
  void note_error(Evaluator& ev, const std::string& message, std::string_view project = {});
  Expected<void> write_state(const EvalRun& run);
  // Finishes a run: scores (maybe none) + final run entry, durable, with
  // listeners. On a score-config violation the run becomes an error. False
  // when storage failed (the run stays as it was in storage).
  // Blocking (run_now); the workers use finish_in_background.
  bool finish_run(Evaluator& ev, EvalRun& run, const plugins::EvalResult* result);
  // The same, handed to the score writer: `done` gets the run as written and
  // whether it was, on the writer thread (or on the caller's, when the write
  // is refused before it is queued).
  struct Finish;
  void finish_async(Evaluator& ev, EvalRun run, const plugins::EvalResult* result,
                    std::function<void(EvalRun&, bool)> done);
  void submit_finish(std::shared_ptr<Finish> f);
  void finish_written(const std::shared_ptr<Finish>& f, Expected<std::vector<Score>> written);
  // A worker's run ends with its final write in flight: the worker takes its
  // next run at once instead of sleeping through the score writer's group
  // commit (a futex wait and wake per run, and most of the workers' CPU). The
  // run stays active until written (then finish_active) or refused (then
  // retry_later). At most kMaxFinishing writes are in flight.
  void finish_in_background(Evaluator& ev, EvalRun run, const plugins::EvalResult* result, const Task& task,
                            std::string key);
  static constexpr std::size_t kMaxFinishing = 256;
  // Under mu_: nothing queued, running or being written.
  bool idle_locked() const { return queued_ == 0 && busy_ == 0 && reserved_ == 0 && finishing_ == 0; }
  Expected<std::vector<Score>> to_scores(const Evaluator& ev, const EvalRun& run,
                                         const plugins::EvalResult& result) const;
  std::int64_t now_us() const;
  std::size_t find(std::string_view name) const;

  RequestLog& log_;
  ScoreStore& scores_;
  EvaluatorRuntimeOptions options_;
  std::unique_ptr<OutboundHttp> http_;
  std::atomic<bool> cancel_{false};  // network kinds abandon calls in flight when set (stop)
  // Records handed to queued runs (Task::record); budget and cap in the .cpp.
  RecordHandoff handoff_;
  std::vector<std::unique_ptr<Evaluator>> evaluators_;
  std::vector<std::size_t> with_needs_;  // evaluators that have `needs`

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::vector<std::deque<Task>> ready_;  // per evaluator
  std::priority_queue<Delayed, std::vector<Delayed>, std::greater<>> delayed_;
  std::size_t queued_ = 0;    // ready + delayed
  std::size_t reserved_ = 0;  // claimed in on_records, not yet queued
  std::size_t busy_ = 0;      // tasks being processed
  std::size_t finishing_ = 0;  // finished runs whose final write is in flight
  std::condition_variable finish_cv_;  // finishing_ went down
  std::size_t next_evaluator_ = 0;  // round-robin cursor
  // Runs queued, delayed or being processed, by run key; true = re-check
  // requested while active (new feedback arrived).
  std::unordered_map<std::string, bool> active_;
  std::string backlog_cursor_;  // resume scan position in 'P'; "" = done
  bool backlog_pending_ = false;
  bool deferred_since_pass_ = false;  // a run was deferred since the current pass began
  bool startup_pass_ = false;         // the current pass is start-up's (it re-checks waiting runs)
  std::size_t log_backlog_limit_ = 0;  // resolved log_backlog_limit
  bool log_backed_up_ = false;         // over the limit, and not yet down to half of it
  std::atomic<std::uint64_t> log_backlog_pauses_{0};
  bool started_ = false;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  Staged staged_;
};

}  // namespace arbiter::scoring
