#include "scoring/evaluator_runtime.hpp"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cmath>
#include <future>
#include <random>
#include <set>
#include <utility>

#include "scoring/background_thread.hpp"
#include "scoring/eval_event.hpp"
#include "scoring/hash_mix.hpp"
#include "scoring/outbound_http.hpp"
#include "scoring/request_log.hpp"
#include "scoring/score_store.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Records handed off to queued runs (Task::record): at most this many bytes
// (bodies plus the struct) in all, and none over record_handoff.hpp's
// per-record cap; past either, the worker reads the record back as before.
constexpr std::size_t kHandoffBudgetBytes = 8u << 20;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// Params that may carry secrets are shown as "<redacted>" by GET
// /v1/evaluators: a name with a word (split on _ - . and spaces) such as key,
// secret, token or password ("api_key", "X-Api-Key", "client_secret"), but
// not "keywords" or "required_keys".
bool secret_name(std::string_view key) {
  static const std::set<std::string, std::less<>> kWords = {
      "key", "apikey", "secret", "token", "password", "passwd", "authorization", "auth",
      "cookie", "credential", "credentials", "bearer"};
  const std::string k = lower(key);
  std::size_t start = 0;
  for (std::size_t i = 0; i <= k.size(); ++i) {
    if (i == k.size() || k[i] == '_' || k[i] == '-' || k[i] == '.' || k[i] == ' ') {
      if (kWords.count(std::string_view(k).substr(start, i - start)) != 0) return true;
      start = i + 1;
    }
  }
  return false;
}

json redact(const json& value, bool all) {
  if (value.is_object()) {
    json out = json::object();
    for (const auto& [k, v] : value.items()) {
      // Every header value may be a credential (Authorization, X-Api-Key, ...).
      out[k] = redact(v, all || secret_name(k) || k == "headers");
    }
    return out;
  }
  if (value.is_array()) {
    json out = json::array();
    for (const auto& v : value) out.push_back(redact(v, all));
    return out;
  }
  if (all && !value.is_null()) return "<redacted>";
  return value;
}

double percentile(std::vector<std::int64_t> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
  const std::size_t index = rank == 0 ? 0 : rank - 1;
  return static_cast<double>(values[std::min(index, values.size() - 1)]) / 1000.0;
}

std::string label_value(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

double jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

json score_json(const Score& s) {
  return {{"id", s.id},
          {"name", sanitize_utf8(s.name)},
          {"value", score_value_json(s)},
          {"data_type", to_string(s.data_type)},
          {"comment", s.comment.empty() ? json(nullptr) : json(sanitize_utf8(s.comment))}};
}

}  // namespace

// ---- free functions ----

bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0;
  std::size_t star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool filter_matches(const EvaluatorFilter& f, const RequestRecord& r) {
  if (!f.path.empty()) {
    const std::string_view path = std::string_view(r.path).substr(0, r.path.find('?'));
    if (!glob_match(f.path, path)) return false;
  }
  if (!f.model.empty() && !glob_match(f.model, r.request_model) &&
      !glob_match(f.model, r.response_model)) {
    return false;
  }
  for (const auto& [key, value] : f.properties) {
    auto it = r.properties.find(key);
    if (it == r.properties.end() || it->second != value) return false;
  }
  if (!f.status.empty()) {
    if (f.status.size() == 3 && f.status[1] == 'x') {
      if (r.status <= 0 || r.status / 100 != f.status[0] - '0') return false;
    } else if (std::to_string(r.status) != f.status) {
      return false;
    }
  }
  return true;
}

unsigned sampling_bucket(std::string_view request_id, std::string_view evaluator) {
  std::uint64_t h = fnv1a(kFnv1aBasis, request_id);
  h = fnv1a(h, std::string_view("\0", 1));
  h = fnv1a(h, evaluator);
  return static_cast<unsigned>(mix64(h) % 100);
}

std::chrono::milliseconds retry_backoff(const RetryPolicy& policy, unsigned attempt, double j) {
  double ms = static_cast<double>(policy.initial_backoff.count());
  for (unsigned i = 1; i < attempt && ms < static_cast<double>(policy.max_backoff.count()); ++i) ms *= 2;
  ms = std::min(ms, static_cast<double>(policy.max_backoff.count()));
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms * std::clamp(j, 0.5, 1.0)));
}

// ---- the runtime ----

namespace {

// Normalises one evaluator's options and builds its kind (shared by the
// runtime and --check). Throws EvaluatorConfigError naming the evaluator.
std::unique_ptr<EvaluatorKind> build_kind(
    EvaluatorOptions& o, const KindEnvironment& env,
    const std::function<std::unique_ptr<EvaluatorKind>(const KindSpec&)>& make_kind,
    std::set<std::string>& names) {
  if (o.score_name.empty()) o.score_name = o.name;
  const std::string where = "evaluator '" + o.name + "' (kind " + o.kind + "): ";
  if (!names.insert(o.name).second) throw EvaluatorConfigError(where + "duplicate evaluator name");
  if (o.sampling > 100) throw EvaluatorConfigError(where + "sampling: must be between 0 and 100");
  if (o.concurrency == 0) o.concurrency = 1;
  if (o.retry.max_attempts == 0) o.retry.max_attempts = 1;
  KindSpec spec{o.name, o.kind, o.score_name, o.params};
  std::unique_ptr<EvaluatorKind> kind;
  try {
    kind = make_kind ? make_kind(spec) : make_evaluator_kind(spec, env);
  } catch (const EvaluatorSetupError& e) {
    throw EvaluatorConfigError(where + e.what());
  } catch (const plugins::PluginError& e) {
    throw EvaluatorConfigError(where + e.what());
  }
  if (!kind) throw EvaluatorConfigError(where + "kind could not be built");
  return kind;
}

bool any_network_kind(const std::vector<EvaluatorOptions>& evaluators) {
  return std::any_of(evaluators.begin(), evaluators.end(),
                     [](const EvaluatorOptions& e) { return is_network_kind(e.kind); });
}

}  // namespace

struct EvaluatorRuntime::Evaluator {
  EvaluatorOptions options;
  std::unique_ptr<EvaluatorKind> kind;
  bool event_inputs = true;  // build the event's inputs (the kind or a `needs` path reads them)
  std::atomic<std::uint64_t> matched{0}, sampled_out{0}, scheduled{0}, waiting{0}, completed{0},
      errors{0}, retries{0}, deferred{0};
  unsigned running = 0;  // guarded by the runtime's mu_

  mutable std::mutex stats_mu;
  std::string last_error;
  std::string last_error_project;  // whose run it was; empty for the gateway's own errors
  std::vector<std::int64_t> durations;  // ring of the last kDurationWindow, µs
  std::size_t next_duration = 0;
};

EvaluatorRuntime::EvaluatorRuntime(RequestLog& log, ScoreStore& scores, EvaluatorRuntimeOptions options)
    : log_(log), scores_(scores), options_(std::move(options)), handoff_(kHandoffBudgetBytes) {
  if (options_.workers == 0) options_.workers = 1;
  if (options_.queue_capacity == 0) options_.queue_capacity = 1;
  log_backlog_limit_ = options_.log_backlog_limit != 0 ? options_.log_backlog_limit
                                                       : std::max<std::size_t>(log_.options().queue_capacity / 2, 1);
  if (any_network_kind(options_.evaluators) && !options_.make_kind) {
    OutboundOptions o;
    o.threads = 1;
    o.user_agent = "arbiter-evaluator";
    http_ = std::make_unique<OutboundHttp>(o);
  }
  build_evaluators(http_.get());
  ready_.resize(evaluators_.size());
  for (std::size_t i = 0; i < evaluators_.size(); ++i) {
    if (!evaluators_[i]->options.needs.empty()) with_needs_.push_back(i);
  }
  if (!evaluators_.empty()) log_.add_listener(this);
}

EvaluatorRuntime::~EvaluatorRuntime() {
  stop();
}

void EvaluatorRuntime::build_evaluators(OutboundHttp* http) {
  const KindEnvironment env{&options_.upstreams, http, &cancel_};
  std::set<std::string> names;
  for (auto& o : options_.evaluators) {
    auto ev = std::make_unique<Evaluator>();
    ev->kind = build_kind(o, env, options_.make_kind, names);
    ev->options = o;
    ev->event_inputs = ev->kind->reads_inputs() ||
                       std::any_of(o.needs.begin(), o.needs.end(), [](const std::string& path) {
                         return path == "inputs" || path.rfind("inputs.", 0) == 0 || path.rfind("inputs[", 0) == 0;
                       });
    evaluators_.push_back(std::move(ev));
  }
}

void EvaluatorRuntime::validate(const EvaluatorRuntimeOptions& options) {
  // The same construction as a start, minus storage and threads.
  EvaluatorRuntimeOptions copy = options;
  std::unique_ptr<OutboundHttp> http;
  if (any_network_kind(copy.evaluators) && !copy.make_kind) http = std::make_unique<OutboundHttp>();
  const std::atomic<bool> never{false};
  const KindEnvironment env{&copy.upstreams, http.get(), &never};
  std::set<std::string> names;
  for (auto& o : copy.evaluators) (void)build_kind(o, env, copy.make_kind, names);
}

std::int64_t EvaluatorRuntime::now_us() const {
  if (options_.now_us) return options_.now_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::size_t EvaluatorRuntime::find(std::string_view name) const {
  for (std::size_t i = 0; i < evaluators_.size(); ++i) {
    if (evaluators_[i]->options.name == name) return i;
  }
  return evaluators_.size();
}

bool EvaluatorRuntime::has_evaluator(std::string_view name) const {
  return find(name) < evaluators_.size();
}

void EvaluatorRuntime::start() {
  {
    std::lock_guard lk(mu_);
    if (started_ || evaluators_.empty()) return;
    started_ = true;
    stopping_ = false;
    backlog_cursor_.clear();
    backlog_pending_ = true;
    startup_pass_ = true;
  }
  cancel_.store(false);
  workers_.reserve(options_.workers);
  for (unsigned i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
  work_cv_.notify_all();
}

void EvaluatorRuntime::stop() {
  {
    std::lock_guard lk(mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  cancel_.store(true);
  work_cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
  std::unique_lock lk(mu_);
  // Final writes in flight end (written, or refused once the score store
  // stops) before their callbacks could outlive the runtime.
  finish_cv_.wait(lk, [&] { return finishing_ == 0; });
  // What was queued stays pending in storage and resumes at the next start.
  for (auto& q : ready_) q.clear();
  while (!delayed_.empty()) delayed_.pop();
  queued_ = 0;
  active_.clear();
  idle_cv_.notify_all();
}

// ---- scheduling (WriteListener) ----

void EvaluatorRuntime::on_records(const Store::Lease& db, std::span<const RequestRecord* const> records,
                                  rocksdb::WriteBatch& batch) {
  // A batch whose commit failed never reached records_written: its runs were
  // not written either, so its reservations are void.
  if (staged_.reserved != 0 || !staged_.runs.empty() || staged_.deferred != 0) {
    release_reservations(staged_.reserved);
    staged_ = Staged{};
  }
  bool accepting = false;
  std::size_t room = 0;
  {
    std::lock_guard lk(mu_);
    accepting = started_ && !stopping_;
    const std::size_t used = queued_ + reserved_;
    room = used < options_.queue_capacity ? options_.queue_capacity - used : 0;
  }
  const std::int64_t now = now_us();
  for (const RequestRecord* r : records) {
    std::shared_ptr<const RequestRecord> handed;  // made for the record's first queued run
    for (std::size_t i = 0; i < evaluators_.size(); ++i) {
      Evaluator& ev = *evaluators_[i];
      if (!filter_matches(ev.options.filter, *r)) continue;
      ev.matched.fetch_add(1, std::memory_order_relaxed);
      if (sampling_bucket(r->request_id, ev.options.name) >= ev.options.sampling) {
        ev.sampled_out.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      // Just the unfinished marker: the run entry itself is written by the
      // worker that takes it (this is the storage thread's hot loop).
      if (auto ok = put_pending(db, batch, r->project, r->request_id, ev.options.name, now); !ok) {
        note_error(ev, ok.error().message);
        continue;
      }
      // Not started (or stopping): the run resumes from storage at the next
      // start. No room in the queue: it is deferred — pending in storage,
      // where the workers' backlog scan picks it up once the queue drains.
      // Either way nothing is lost and the storage thread does no more.
      if (!accepting) continue;
      if (staged_.reserved >= room) {
        ev.deferred.fetch_add(1, std::memory_order_relaxed);
        ++staged_.deferred;
        continue;
      }
      if (!handed) handed = handoff_.take(*r);
      staged_.runs.push_back(Task{r->project, r->request_id, i, /*skip_waiting=*/false, handed,
                                  /*fresh_created_us=*/r->new_id ? now : 0});
      ++staged_.reserved;
    }
  }
  if (staged_.reserved != 0) {
    std::lock_guard lk(mu_);
    reserved_ += staged_.reserved;
  }
}

void EvaluatorRuntime::records_written(std::span<const RequestRecord* const>) {
  if (staged_.reserved == 0 && staged_.runs.empty() && staged_.deferred == 0) return;
  Staged staged = std::move(staged_);
  staged_ = Staged{};
  std::size_t wake = 0;
  {
    std::lock_guard lk(mu_);
    reserved_ -= std::min(reserved_, staged.reserved);
    if (staged.deferred != 0) {
      // Committed now, so any backlog pass that starts from here sees the
      // markers; one already under way may have passed their keys, so it is
      // followed by another.
      deferred_since_pass_ = true;
      backlog_pending_ = true;
    }
    if (!stopping_) {
      for (auto& task : staged.runs) {
        Evaluator& ev = *evaluators_[task.evaluator];
        std::string key = run_keys::run(task.project, task.request_id, ev.options.name);
        auto [it, fresh] = active_.try_emplace(std::move(key), false);
        if (!fresh) {
          it->second = true;  // a replaced record while its run is active: look again
          continue;
        }
        ev.scheduled.fetch_add(1, std::memory_order_relaxed);
        ready_[task.evaluator].push_back(std::move(task));
        ++queued_;
        ++wake;
      }
    }
    if (staged.deferred != 0) ++wake;  // a worker resumes the backlog
  }
  wake_workers(wake);
}

void EvaluatorRuntime::wake_workers(std::size_t n) {
  // Any idle worker can take any task, so one wake-up per task is enough;
  // waking all of them for one run cost a futex call and a context switch
  // per idle worker per call (most of the workers' time at one connection).
  if (n >= workers_.size()) {
    work_cv_.notify_all();
  } else {
    for (std::size_t i = 0; i < n; ++i) work_cv_.notify_one();
  }
}

void EvaluatorRuntime::feedback_written(std::string_view project, std::string_view request_id,
                                        const json&) {
  // Cheap: queue a re-check per evaluator that waits for fields; the worker
  // reads the run and runs it only if it is waiting (or still pending).
  for (std::size_t i : with_needs_) enqueue(Task{std::string(project), std::string(request_id), i, /*skip_waiting=*/false, /*record=*/nullptr}, true);
}

void EvaluatorRuntime::release_reservations(std::size_t n) {
  if (n == 0) return;
  std::lock_guard lk(mu_);
  reserved_ -= std::min(reserved_, n);
}

bool EvaluatorRuntime::enqueue(Task task, bool force, bool recheck_active) {
  Evaluator& ev = *evaluators_[task.evaluator];
  std::string key = run_keys::run(task.project, task.request_id, ev.options.name);
  {
    std::lock_guard lk(mu_);
    if (!started_ || stopping_) return false;
    auto it = active_.find(key);
    if (it != active_.end()) {
      if (!recheck_active) return false;
      it->second = true;  // the worker that has it looks again before it lets go
      return true;
    }
    if (!force && queued_ + reserved_ >= options_.queue_capacity) return false;
    active_.emplace(std::move(key), false);
    ready_[task.evaluator].push_back(std::move(task));
    ++queued_;
  }
  work_cv_.notify_one();
  return true;
}

void EvaluatorRuntime::retry_later(const Task& task) {
  // The run's final write was refused (the score writer's queue was full, or
  // storage failed): it stays unfinished in storage. Try the run again in a
  // second — or, when stopping, at the next start.
  std::lock_guard lk(mu_);
  if (stopping_) {
    active_.erase(run_keys::run(task.project, task.request_id, evaluators_[task.evaluator]->options.name));
    return;
  }
  delay(task, Clock::now() + std::chrono::seconds(1));
}

void EvaluatorRuntime::delay(const Task& task, Clock::time_point due) {
  Task later = task;
  later.record.reset();
  delayed_.push(Delayed{due, std::move(later)});
  ++queued_;
}

void EvaluatorRuntime::request_recheck(const std::string& key) {
  std::lock_guard lk(mu_);
  if (auto it = active_.find(key); it != active_.end()) it->second = true;
}

bool EvaluatorRuntime::recheck_requested(const std::string& key) const {
  std::lock_guard lk(mu_);
  auto it = active_.find(key);
  return it == active_.end() || it->second;
}

void EvaluatorRuntime::finish_active(const std::string& key) {
  std::lock_guard lk(mu_);
  active_.erase(key);
}

// ---- workers ----

void EvaluatorRuntime::worker_loop() {
  name_thread("arb-eval");
  enable_yield_points();
  const bool idled = options_.worker_sched_idle && set_thread_sched_idle();  // else: niced
  if (!idled && options_.worker_nice > 0 && !set_thread_nice(options_.worker_nice)) {
    note_error(*evaluators_.front(), "cannot lower the evaluator workers' priority");
  }
  Task task;
  while (next_task(task)) {
    yield_point();
    process(task);
    bool slot_wanted = false;
    {
      std::lock_guard lk(mu_);
      --busy_;
      --evaluators_[task.evaluator]->running;
      if (idle_locked()) idle_cv_.notify_all();
      slot_wanted = !ready_[task.evaluator].empty() || backlog_ready();
    }
    // A concurrency slot was freed: a worker held back by that evaluator's
    // limit may take its next run, or an idle one refill from the backlog
    // (with neither, nobody is waiting for it).
    if (slot_wanted) work_cv_.notify_one();
  }
}

bool EvaluatorRuntime::log_backed_up() {
  const std::size_t queued = log_.queued();
  if (!log_backed_up_ && queued > log_backlog_limit_) {
    log_backed_up_ = true;
    log_backlog_pauses_.fetch_add(1, std::memory_order_relaxed);
  } else if (log_backed_up_ && queued <= log_backlog_limit_ / 2) {
    log_backed_up_ = false;
  }
  return log_backed_up_;
}

bool EvaluatorRuntime::next_task(Task& task) {
  std::unique_lock lk(mu_);
  for (;;) {
    if (stopping_) return false;
    if (log_backed_up()) {
      // The storage thread is behind: no new run (nor backlog refill) takes
      // CPU from it. Nothing wakes this wait when the log drains; it looks again.
      work_cv_.wait_for(lk, kLogBackedUpPause);
      continue;
    }
    const auto now = Clock::now();
    while (!delayed_.empty() && delayed_.top().due <= now) {
      Task t = delayed_.top().task;
      delayed_.pop();
      ready_[t.evaluator].push_front(std::move(t));  // retries go first
    }
    const std::size_t n = evaluators_.size();
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (next_evaluator_ + k) % n;
      if (ready_[i].empty() || evaluators_[i]->running >= evaluators_[i]->options.concurrency) continue;
      task = std::move(ready_[i].front());
      ready_[i].pop_front();
      --queued_;
      ++busy_;
      ++evaluators_[i]->running;
      next_evaluator_ = (i + 1) % n;
      return true;
    }
    // Refill from unfinished runs in storage while the queue has room to spare.
    if (backlog_ready()) {
      backlog_pending_ = false;  // one worker resumes at a time
      ++busy_;
      lk.unlock();
      resume_backlog();
      lk.lock();
      --busy_;
      if (idle_locked()) idle_cv_.notify_all();
      continue;
    }
    if (!delayed_.empty()) {
      work_cv_.wait_until(lk, delayed_.top().due);
    } else {
      work_cv_.wait(lk);
    }
  }
}

void EvaluatorRuntime::resume_backlog() {
  std::string cursor;
  bool startup = false;
  {
    std::lock_guard lk(mu_);
    cursor = backlog_cursor_;
    if (cursor.empty()) deferred_since_pass_ = false;  // a new pass sees every marker committed so far
    startup = startup_pass_;
  }
  auto refs = log_.with_store(
      [&](Store& store) { return scan_active(store, cursor, std::max<std::size_t>(options_.backlog_chunk, 1)); });
  if (!refs.ok()) {
    // Storage unavailable (closing) or failing: retried on the next refill.
    std::lock_guard lk(mu_);
    if (refs.error().code != ErrorCode::kUnavailable) backlog_pending_ = true;
    return;
  }
  for (auto& ref : *refs) {
    const std::size_t i = find(ref.evaluator);
    if (i == evaluators_.size()) continue;  // no longer configured: left as it is
    // A run already queued or running (scheduled by on_records) is left to it.
    if (enqueue(Task{std::move(ref.project), std::move(ref.request_id), i, /*skip_waiting=*/!startup, /*record=*/nullptr}, true,
                /*recheck_active=*/false)) {
      evaluators_[i]->scheduled.fetch_add(1, std::memory_order_relaxed);
    }
  }
  std::lock_guard lk(mu_);
  backlog_cursor_ = cursor;
  // At the end of a pass, runs deferred meanwhile may sit behind it: again.
  backlog_pending_ = !cursor.empty() || deferred_since_pass_;
  if (cursor.empty()) startup_pass_ = false;
}

Expected<void> EvaluatorRuntime::write_state(const EvalRun& run) {
  return log_.with_store([&](Store& store) -> Expected<void> {
    auto lease = store.lease();
    if (!lease.ok()) return std::move(lease).error();
    rocksdb::WriteBatch batch;
    if (auto ok = put_run(*lease, batch, run); !ok) return ok;
    // Not synced: intermediate states are informative; the durable facts
    // are the pending entry (with the record) and the final one (synced).
    auto written = store.commit(*lease, batch, /*sync=*/false);
    if (!written.ok()) return Error{written.error().code, "write evaluator run: " + written.error().message};
    return {};
  });
}

void EvaluatorRuntime::note_error(Evaluator& ev, const std::string& message, std::string_view project) {
  std::lock_guard lk(ev.stats_mu);
  ev.last_error = message;
  ev.last_error_project = std::string(project);
}

void EvaluatorRuntime::record_duration(Evaluator& ev, std::int64_t duration_us) {
  std::lock_guard lk(ev.stats_mu);
  if (ev.durations.size() < kDurationWindow) {
    ev.durations.push_back(duration_us);
  } else {
    ev.durations[ev.next_duration] = duration_us;
  }
  ev.next_duration = (ev.next_duration + 1) % kDurationWindow;
}

void EvaluatorRuntime::process(const Task& task) {
  Evaluator& ev = *evaluators_[task.evaluator];
  const std::string key = run_keys::run(task.project, task.request_id, ev.options.name);
  bool skip_waiting = task.skip_waiting;
  // The record handed off with the task is what was committed when the run
  // was scheduled; a second look (the run was re-checked) reads storage.
  std::shared_ptr<const RequestRecord> handed = task.record;
  for (;; handed.reset()) {
    // A fresh run's first look: its record was committed with its 'P' marker
    // and no earlier record can have its id, so storage holds that marker and
    // no 'R' entry, unless something asked for a re-check meanwhile (feedback,
    // a stored manual run): then read, as for any other run.
    const bool fresh = handed && task.fresh_created_us != 0 && !recheck_requested(key);
    auto stored = fresh ? Expected<std::optional<EvalRun>>(std::optional<EvalRun>(pending_run(
                              task.project, task.request_id, ev.options.name, task.fresh_created_us)))
                        : log_.with_store([&](Store& store) {
                            return read_run(store, task.project, task.request_id, ev.options.name);
                          });
    if (!stored.ok()) {
      // Left in storage as it is; resumed at the next start.
      if (stored.error().code != ErrorCode::kUnavailable) note_error(ev, stored.error().message);
      finish_active(key);
      return;
    }
    if (!*stored || is_finished((*stored)->state)) {
      finish_active(key);
      return;
    }
    if (skip_waiting && (*stored)->state == RunState::kWaiting) {
      // Left waiting, unless feedback arrived while this task held the run.
      std::lock_guard lk(mu_);
      auto it = active_.find(key);
      if (it == active_.end() || !it->second || stopping_) {
        if (it != active_.end()) active_.erase(it);
        return;
      }
      it->second = false;
      skip_waiting = false;
      continue;
    }
    EvalRun run = std::move(**stored);
    const std::int64_t now = now_us();
    if (run.next_attempt_us > now) {
      // Resumed during a backoff (e.g. after a restart): wait out the rest.
      std::lock_guard lk(mu_);
      delay(task, Clock::now() + std::chrono::microseconds(run.next_attempt_us - now));
      return;
    }

    // The record with its posted feedback: handed off (then only the
    // feedback is read), or read back with its bodies.
    std::optional<RequestRecord> stored_record;
    const RequestRecord* record = handed.get();
    std::optional<json> posted;
    auto loaded = [&]() -> Expected<bool> {
      if (handed) {
        auto fields = log_.with_lease([&](const Store::Lease& db) {
          return read_feedback(db, task.project, task.request_id);
        });
        if (!fields.ok()) return std::move(fields).error();
        posted = std::move(*fields);
        return true;
      }
      auto got = log_.get(task.project, task.request_id, /*include_bodies=*/true, /*with_scores=*/false);
      if (!got.ok()) return std::move(got).error();
      if (!*got) return false;
      stored_record = std::move(*got);
      record = &*stored_record;
      return true;
    }();
    if (!loaded.ok()) {
      if (loaded.error().code != ErrorCode::kUnavailable) note_error(ev, loaded.error().message);
      finish_active(key);
      return;
    }
    if (!*loaded) {
      run.error = "request " + task.request_id + " is no longer stored (retention?)";
      return finish_in_background(ev, std::move(run), nullptr, task, key);
    }
    json event = build_eval_event(*record, ev.event_inputs);
    if (posted) {
      json& feedback = event["feedback"];
      for (const auto& [k, v] : posted->items()) feedback[k] = v;
    }
    auto missing = missing_fields(event, ev.options.needs);
    if (!missing.empty()) {
      if (run.state != RunState::kWaiting || run.missing != missing) {
        if (run.state != RunState::kWaiting) ev.waiting.fetch_add(1, std::memory_order_relaxed);
        run.state = RunState::kWaiting;
        run.missing = std::move(missing);
        if (auto ok = write_state(run); !ok) note_error(ev, ok.error().message);
      }
      std::lock_guard lk(mu_);
      auto it = active_.find(key);
      if (it != active_.end() && it->second && !stopping_) {
        it->second = false;  // feedback arrived meanwhile: look again
        continue;
      }
      active_.erase(key);
      return;
    }

    run.state = RunState::kRunning;
    run.missing.clear();
    ++run.attempts;
    if (run.started_us == 0) run.started_us = now;
    run.next_attempt_us = 0;
    // A built-in finishes in microseconds: its `running` state would be
    // overwritten at once, so it is not written (a crash meanwhile leaves the
    // run pending, which resumes the same way).
    if (ev.kind->may_be_slow()) {
      if (auto ok = write_state(run); !ok) note_error(ev, ok.error().message);
    }

    const std::string event_json =
        ev.kind->wants_event_json() ? event.dump(-1, ' ', false, json::error_handler_t::replace) : std::string();
    const auto t0 = Clock::now();
    plugins::EvalResult result = ev.kind->evaluate(event, event_json, ev.options.timeout);
    const auto elapsed = Clock::now() - t0;
    run.duration_us += std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
    if (result.ok && elapsed > ev.options.timeout) {
      // A local kind cannot be interrupted; its late result is abandoned.
      result = plugins::EvalResult{};
      result.retryable = true;
      result.error = "timed out: took " +
                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()) +
                     " ms, timeout_ms is " + std::to_string(ev.options.timeout.count());
    }
    if (!result.ok && cancel_.load()) {
      // Stopping: the run stays running in storage and resumes at the next start.
      finish_active(key);
      return;
    }
    if (result.ok) return finish_in_background(ev, std::move(run), &result, task, key);
    if (result.retryable && run.attempts < ev.options.retry.max_attempts) {
      const auto backoff = retry_backoff(ev.options.retry, run.attempts, jitter());
      run.state = RunState::kPending;
      run.error = result.error;
      run.next_attempt_us = now_us() + std::chrono::duration_cast<std::chrono::microseconds>(backoff).count();
      if (auto ok = write_state(run); !ok) note_error(ev, ok.error().message);
      ev.retries.fetch_add(1, std::memory_order_relaxed);
      note_error(ev, result.error, task.project);
      {
        std::lock_guard lk(mu_);
        delay(task, Clock::now() + backoff);
      }
      work_cv_.notify_one();
      return;  // still active
    }
    run.error = run.attempts > 1 ? "after " + std::to_string(run.attempts) + " attempts: " + result.error
                                 : result.error;
    return finish_in_background(ev, std::move(run), nullptr, task, key);
  }
}

Expected<std::vector<Score>> EvaluatorRuntime::to_scores(const Evaluator& ev, const EvalRun& run,
                                                         const plugins::EvalResult& result) const {
  std::vector<Score> out;
  std::set<std::string> names;
  for (const auto& s : result.scores) {
    Score score;
    score.name = s.name.empty() ? ev.options.score_name : s.name;
    if (auto ok = validate_score_name(score.name); !ok) return std::move(ok).error();
    if (!names.insert(score.name).second) {
      return invalid_argument("score '" + sanitize_utf8(score.name) + "' appears twice in the result");
    }
    if (s.value.is_boolean()) {
      score.data_type = ScoreDataType::kBoolean;
      score.value = s.value.get<bool>() ? 1.0 : 0.0;
    } else if (s.value.is_number()) {
      const double v = s.value.get<double>();
      if (!std::isfinite(v)) {
        return invalid_argument("score '" + sanitize_utf8(score.name) + "' is not a finite number");
      }
      score.data_type = ScoreDataType::kNumeric;
      score.value = v;
    } else if (s.value.is_string()) {
      score.data_type = ScoreDataType::kCategorical;
      score.label = s.value.get<std::string>();
    } else {
      return invalid_argument("score '" + sanitize_utf8(score.name) +
                              "' must be a number, a boolean or a category label");
    }
    if (const auto want = ev.options.data_type; want && *want != score.data_type) {
      // A number may name a category through a score config.
      const bool mapped = *want == ScoreDataType::kCategorical && score.data_type == ScoreDataType::kNumeric;
      if (!mapped) {
        return invalid_argument("score '" + sanitize_utf8(score.name) + "' is " +
                                std::string(to_string(score.data_type)) + ", but score.data_type is " +
                                std::string(to_string(*want)));
      }
      score.data_type = ScoreDataType::kCategorical;
    }
    score.id = derived_id({run.project, run.request_id, ev.options.name, score.name});
    score.request_id = run.request_id;
    score.comment = s.comment;
    score.source = ScoreSource::kEval;
    score.author = ev.options.name;
    score.metadata = {{"evaluator", ev.options.name}, {"kind", ev.options.kind}, {"run_id", run.id}};
    out.push_back(std::move(score));
  }
  return out;
}

struct EvaluatorRuntime::Finish {
  Evaluator* ev = nullptr;
  EvalRun run;
  std::vector<Score> scores;  // until submit_finish hands them to the score writer
  bool with_scores = false;    // the write in flight carries scores
  bool rejected = false;       // a score config refused the scores: written again as an error run
  std::function<void(EvalRun&, bool)> done;
};

bool EvaluatorRuntime::finish_run(Evaluator& ev, EvalRun& run, const plugins::EvalResult* result) {
  std::promise<bool> written;
  auto future = written.get_future();
  finish_async(ev, std::move(run), result, [&](EvalRun& final_run, bool ok) {
    run = std::move(final_run);
    written.set_value(ok);
  });
  return future.get();
}

void EvaluatorRuntime::finish_async(Evaluator& ev, EvalRun run, const plugins::EvalResult* result,
                                    std::function<void(EvalRun&, bool)> done) {
  auto f = std::make_shared<Finish>();
  f->ev = &ev;
  f->run = std::move(run);
  f->done = std::move(done);
  EvalRun& r = f->run;
  r.finished_us = now_us();
  r.next_attempt_us = 0;
  r.missing.clear();
  if (result != nullptr && result->ok) {
    auto converted = to_scores(ev, r, *result);
    if (converted.ok()) {
      f->scores = std::move(converted).value();
      r.state = RunState::kCompleted;
      r.error.clear();
    } else {
      r.state = RunState::kError;
      r.error = "result rejected: " + converted.error().message;
    }
  } else {
    r.state = RunState::kError;
  }
  submit_finish(std::move(f));
}

void EvaluatorRuntime::submit_finish(std::shared_ptr<Finish> f) {
  EvalRun& run = f->run;
  run.scores = json::array();
  for (const auto& s : f->scores) run.scores.push_back(score_json(s));
  EvaluationEvent event{run.project, run.request_id, run.evaluator, run.id, std::string(to_string(run.state)),
                        run.attempts, run.duration_us, run.error, {}};
  f->with_scores = !f->scores.empty();
  // The run entry is built on the writer thread; nothing else touches the
  // run until the callback.
  scores_.write_evaluation_async(
      run.project, std::exchange(f->scores, {}), std::move(event),
      [f](const Store::Lease& db, rocksdb::WriteBatch& batch) { return put_run(db, batch, f->run); },
      [this, f](Expected<std::vector<Score>> written) { finish_written(f, std::move(written)); });
}

void EvaluatorRuntime::finish_written(const std::shared_ptr<Finish>& f, Expected<std::vector<Score>> written) {
  Evaluator& ev = *f->ev;
  EvalRun& run = f->run;
  if (!written.ok()) {
    if (written.error().code == ErrorCode::kInvalidArgument && f->with_scores && !f->rejected) {
      // A score config refused a score: nothing was written; record the run
      // as an error instead.
      f->rejected = true;
      run.state = RunState::kError;
      run.error = "result rejected: " + written.error().message;
      return submit_finish(f);
    }
    // Refused (the score writer's queue is full), storage failed, or closing:
    // the run stays unfinished in storage; the caller tries again later.
    if (!cancel_.load()) note_error(ev, written.error().message);
    return f->done(run, false);
  }
  // The stored versions (config-mapped labels/values) for the run entry
  // shown by the API were computed before the write; ids are final.
  if (!run.manual) {
    if (run.state == RunState::kCompleted) {
      ev.completed.fetch_add(1, std::memory_order_relaxed);
    } else {
      ev.errors.fetch_add(1, std::memory_order_relaxed);
      note_error(ev, run.error, run.project);
    }
    record_duration(ev, run.duration_us);
  }
  f->done(run, true);
}

void EvaluatorRuntime::finish_in_background(Evaluator& ev, EvalRun run, const plugins::EvalResult* result,
                                            const Task& task, std::string key) {
  {
    // Bounded: a worker that gets ahead of the score writer waits here.
    std::unique_lock lk(mu_);
    finish_cv_.wait(lk, [&] { return finishing_ < kMaxFinishing; });
    ++finishing_;
  }
  Task again = task;
  again.record.reset();  // the record's bytes go back to the hand-off budget now
  finish_async(ev, std::move(run), result, [this, again = std::move(again), key = std::move(key)](EvalRun&, bool ok) {
    if (ok) {
      finish_active(key);
    } else {
      retry_later(again);
    }
    std::lock_guard lk(mu_);
    --finishing_;
    finish_cv_.notify_all();
    if (!ok) work_cv_.notify_one();  // the retry waits in delayed_
    if (idle_locked()) idle_cv_.notify_all();
  });
}

// ---- API ----

json EvaluatorRuntime::describe(std::string_view project) const {
  json out = json::array();
  for (const auto& ev : evaluators_) {
    const auto& o = ev->options;
    const Counters c = counters(o.name);
    json filter = json::object();
    if (!o.filter.path.empty()) filter["path"] = o.filter.path;
    if (!o.filter.model.empty()) filter["model"] = o.filter.model;
    if (!o.filter.properties.empty()) filter["properties"] = o.filter.properties;
    if (!o.filter.status.empty()) filter["status"] = o.filter.status;
    json score = {{"name", o.score_name}};
    if (o.data_type) score["data_type"] = to_string(*o.data_type);
    out.push_back({{"name", o.name},
                   {"kind", o.kind},
                   {"filter", std::move(filter)},
                   {"sampling", o.sampling},
                   {"needs", o.needs},
                   {"score", std::move(score)},
                   {"timeout_ms", o.timeout.count()},
                   {"concurrency", o.concurrency},
                   {"retry",
                    {{"max_attempts", o.retry.max_attempts},
                     {"initial_backoff_ms", o.retry.initial_backoff.count()},
                     {"max_backoff_ms", o.retry.max_backoff.count()}}},
                   {"params", redact(o.params, false)},
                   {"counters",
                    {{"matched", c.matched},
                     {"sampled_out", c.sampled_out},
                     {"scheduled", c.scheduled},
                     {"waiting", c.waiting},
                     {"completed", c.completed},
                     {"errors", c.errors},
                     {"retries", c.retries},
                     {"deferred", c.deferred},
                     {"running", c.running},
                     // An error quotes the run's data (an evaluator's answer
                     // echoes the event): only its own project sees it.
                     {"last_error", c.last_error.empty() || c.last_error_project != project
                                        ? json(nullptr)
                                        : json(sanitize_utf8(c.last_error))},
                     {"duration_ms", {{"p50", c.duration_p50_ms}, {"p99", c.duration_p99_ms}}}}}});
  }
  return out;
}

EvaluatorRuntime::Counters EvaluatorRuntime::counters(std::string_view name) const {
  Counters c;
  const std::size_t i = find(name);
  if (i == evaluators_.size()) return c;
  const Evaluator& ev = *evaluators_[i];
  c.matched = ev.matched.load(std::memory_order_relaxed);
  c.sampled_out = ev.sampled_out.load(std::memory_order_relaxed);
  c.scheduled = ev.scheduled.load(std::memory_order_relaxed);
  c.waiting = ev.waiting.load(std::memory_order_relaxed);
  c.completed = ev.completed.load(std::memory_order_relaxed);
  c.errors = ev.errors.load(std::memory_order_relaxed);
  c.retries = ev.retries.load(std::memory_order_relaxed);
  c.deferred = ev.deferred.load(std::memory_order_relaxed);
  {
    std::lock_guard lk(mu_);
    c.running = ev.running;
  }
  std::vector<std::int64_t> durations;
  {
    std::lock_guard lk(ev.stats_mu);
    c.last_error = ev.last_error;
    c.last_error_project = ev.last_error_project;
    durations = ev.durations;
  }
  c.duration_p50_ms = percentile(durations, 0.50);
  c.duration_p99_ms = percentile(std::move(durations), 0.99);
  return c;
}

std::size_t EvaluatorRuntime::queue_depth() const {
  std::lock_guard lk(mu_);
  return queued_;
}

bool EvaluatorRuntime::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  return idle_cv_.wait_for(lk, timeout, [&] {
    return idle_locked() && !backlog_pending_;
  });
}

Expected<json> EvaluatorRuntime::runs_json(std::string_view project, std::string_view request_id) const {
  auto runs = log_.with_store(
      [&](Store& store) { return runs_for_request(store, project, request_id); });
  if (!runs.ok()) return std::move(runs).error();
  json out = json::array();
  for (const auto& r : *runs) out.push_back(to_json(r));
  return out;
}

Expected<json> EvaluatorRuntime::run_now(std::string_view project, std::string_view name,
                                         std::string_view request_id, bool store) {
  const std::size_t i = find(name);
  if (i == evaluators_.size()) return not_found("evaluator '" + sanitize_utf8(name) + "' not found");
  Evaluator& ev = *evaluators_[i];
  auto record = log_.get(project, request_id, /*include_bodies=*/true, /*with_scores=*/false);
  if (!record.ok()) return std::move(record).error();
  if (!*record) return not_found("request " + sanitize_utf8(request_id) + " not found");

  EvalRun run;
  run.id = derived_id({project, request_id, ev.options.name});
  run.project = std::string(project);
  run.request_id = std::string(request_id);
  run.evaluator = ev.options.name;
  run.manual = true;
  run.created_us = run.started_us = now_us();
  const json event = build_eval_event(**record);
  auto missing = missing_fields(event, ev.options.needs);
  if (!missing.empty()) {
    run.state = RunState::kWaiting;
    run.missing = std::move(missing);
    json out = to_json(run);
    out["stored"] = false;
    return out;
  }
  run.attempts = 1;
  const auto t0 = Clock::now();
  plugins::EvalResult result =
      ev.kind->evaluate(event, event.dump(-1, ' ', false, json::error_handler_t::replace), ev.options.timeout);
  run.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
  run.finished_us = now_us();
  if (store) {
    // An automatic run of this request queued meanwhile must read what this
    // one stores (finished: nothing left to do), not assume it fresh.
    request_recheck(run_keys::run(project, request_id, ev.options.name));
    if (!result.ok) run.error = result.error;
    if (!finish_run(ev, run, &result)) return storage_error("the run's scores could not be stored");
    json out = to_json(run);
    out["stored"] = true;
    return out;
  }
  if (result.ok) {
    auto scores = to_scores(ev, run, result);
    if (scores.ok()) {
      run.state = RunState::kCompleted;
      for (const auto& s : *scores) run.scores.push_back(score_json(s));
    } else {
      run.state = RunState::kError;
      run.error = "result rejected: " + scores.error().message;
    }
  } else {
    run.state = RunState::kError;
    run.error = result.error;
  }
  json out = to_json(run);
  out["stored"] = false;
  return out;
}

std::string EvaluatorRuntime::metrics_text() const {
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
  };
  static constexpr Metric kMetrics[] = {
      {"arbiter_evaluator_matched_total", "counter", "Records that passed the evaluator's filter."},
      {"arbiter_evaluator_sampled_out_total", "counter", "Matching records left out by sampling."},
      {"arbiter_evaluator_scheduled_total", "counter", "Runs queued for the workers (new and resumed)."},
      {"arbiter_evaluator_waiting_total", "counter", "Runs that started waiting for needed fields."},
      {"arbiter_evaluator_completed_total", "counter", "Runs that wrote their scores."},
      {"arbiter_evaluator_errors_total", "counter", "Runs that ended in an error."},
      {"arbiter_evaluator_retries_total", "counter", "Attempts retried after a transient failure."},
      {"arbiter_evaluator_deferred_total", "counter",
       "Runs that found the queue full and waited in storage for the backlog scan."},
      {"arbiter_evaluator_running", "gauge", "Runs being evaluated now."},
      {"arbiter_evaluator_duration_p50_ms", "gauge", "Median run duration over the last 1024 runs."},
      {"arbiter_evaluator_duration_p99_ms", "gauge", "99th percentile run duration over the last 1024 runs."},
  };
  std::vector<Counters> all;
  for (const auto& ev : evaluators_) all.push_back(counters(ev->options.name));
  std::string out;
  for (std::size_t m = 0; m < std::size(kMetrics); ++m) {
    out += std::string("# HELP ") + kMetrics[m].name + " " + kMetrics[m].help + "\n# TYPE " +
           kMetrics[m].name + " " + kMetrics[m].type + "\n";
    for (std::size_t i = 0; i < evaluators_.size(); ++i) {
      const Counters& c = all[i];
      const double values[] = {static_cast<double>(c.matched),   static_cast<double>(c.sampled_out),
                               static_cast<double>(c.scheduled), static_cast<double>(c.waiting),
                               static_cast<double>(c.completed), static_cast<double>(c.errors),
                               static_cast<double>(c.retries),   static_cast<double>(c.deferred),
                               static_cast<double>(c.running),   c.duration_p50_ms,
                               c.duration_p99_ms};
      char number[64];
      std::snprintf(number, sizeof number, "%.15g", values[m]);
      out += std::string(kMetrics[m].name) + "{evaluator=\"" + label_value(evaluators_[i]->options.name) +
             "\"} " + number + "\n";
    }
  }
  out += "# HELP arbiter_evaluator_queue_depth Runs waiting for an evaluator worker (ready or backing off).\n"
         "# TYPE arbiter_evaluator_queue_depth gauge\narbiter_evaluator_queue_depth " +
         std::to_string(queue_depth()) + "\n";
  out += "# HELP arbiter_evaluator_log_backlog_pauses_total Times the workers stopped taking runs to leave the CPU to "
         "the request log's storage thread, whose queue was backing up.\n"
         "# TYPE arbiter_evaluator_log_backlog_pauses_total counter\narbiter_evaluator_log_backlog_pauses_total " +
         std::to_string(log_backlog_pauses()) + "\n";
  return out;
}

}  // namespace arbiter::scoring
