#include "scoring/request_log.hpp"

#include <algorithm>
#include <functional>

#include "scoring/background_thread.hpp"
#include "scoring/eval_runs.hpp"
#include "scoring/hash_mix.hpp"
#include "scoring/score_store.hpp"

namespace arbiter::scoring {

namespace {

void lower_property_keys(RequestRecord& r) {
  const bool has_upper = std::any_of(r.properties.begin(), r.properties.end(), [](const auto& kv) {
    return std::any_of(kv.first.begin(), kv.first.end(),
                       [](char c) { return c >= 'A' && c <= 'Z'; });
  });
  if (!has_upper) return;
  std::map<std::string, std::string> lowered;
  for (auto& [k, v] : r.properties) {
    std::string key = k;
    for (char& c : key) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    lowered.insert_or_assign(std::move(key), std::move(v));
  }
  r.properties = std::move(lowered);
}

constexpr std::int64_t kMicrosPerDay = 86'400'000'000LL;

}  // namespace

// ---- InflightRegistry ----

InflightRegistry::Digest InflightRegistry::digest(std::string_view project,
                                                  std::string_view request_id) {
  // The two halves are hashed apart, so project and id never run together;
  // splitmix64's finaliser spreads the pair over all 64 bits (the shard is
  // taken from the top ones, the map's bucket from the bottom ones).
  const std::uint64_t first = std::hash<std::string_view>{}(project);
  return mix64((first * 0x9E3779B97F4A7C15ULL) ^ std::hash<std::string_view>{}(request_id));
}

void InflightRegistry::add(Digest d) {
  Shard& s = shard_for(d);
  std::lock_guard lk(s.mu);
  ++s.counts[d];
}

void InflightRegistry::remove(Digest d) {
  Shard& s = shard_for(d);
  std::lock_guard lk(s.mu);
  auto it = s.counts.find(d);
  if (it == s.counts.end()) return;
  if (--it->second == 0) s.counts.erase(it);
}

bool InflightRegistry::contains(Digest d) const {
  Shard& s = shard_for(d);
  std::lock_guard lk(s.mu);
  return s.counts.count(d) != 0;
}

std::size_t InflightRegistry::size() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lk(s.mu);
    for (const auto& [k, count] : s.counts) n += count;
  }
  return n;
}

InflightRegistry::Entry InflightRegistry::track(std::string_view project,
                                                std::string_view request_id) {
  const Digest d = digest(project, request_id);
  add(d);
  return Entry(this, d);
}

InflightRegistry::Entry::Entry(Entry&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)), digest_(other.digest_) {}

InflightRegistry::Entry& InflightRegistry::Entry::operator=(Entry&& other) noexcept {
  if (this != &other) {
    release();
    registry_ = std::exchange(other.registry_, nullptr);
    digest_ = other.digest_;
  }
  return *this;
}

InflightRegistry::Entry::~Entry() {
  release();
}

void InflightRegistry::Entry::release() {
  if (registry_ != nullptr) {
    registry_->remove(digest_);
    registry_ = nullptr;
  }
}

// ---- RequestLog ----

RequestLog::RequestLog(RequestLogOptions options)
    : options_(std::move(options)),
      // Strict mode's responses wait for their batch: it never lingers.
      lingering_(options_.durability == Durability::kRelaxed && options_.linger.count() > 0) {
  if (options_.queue_capacity == 0) options_.queue_capacity = 1;
  if (options_.max_batch == 0) options_.max_batch = 1;
  store_ = Store::open(options_.path, options_.store);
  storage_thread_ = std::thread([this] { storage_loop(); });
  if (options_.durability == Durability::kRelaxed) {
    try {
      sync_thread_ = std::thread([this] { sync_loop(); });
    } catch (...) {
      (void)close();
      throw;
    }
  }
  if (options_.retention_days > 0) {
    try {
      retention_thread_ = std::thread([this] { retention_loop(); });
    } catch (...) {
      (void)close();  // joins the storage thread before the members die
      throw;
    }
  }
}

RequestLog::~RequestLog() {
  (void)close();
}

std::int64_t RequestLog::now_us() const {
  if (options_.now_us) return options_.now_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void RequestLog::set_error(std::string message) {
  std::lock_guard lk(error_mu_);
  last_error_ = std::move(message);
}

bool RequestLog::submit(RequestRecord&& record, DurableCallback&& on_durable) {
  if (record.project.empty() || !valid_request_id(record.request_id)) {
    invalid_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const InflightRegistry::Digest key = InflightRegistry::digest(record.project, record.request_id);
  // Allocated outside the lock the I/O threads share.
  auto shared = std::make_shared<RequestRecord>(std::move(record));
  bool wake = false;
  {
    std::lock_guard lk(mu_);
    if (stopping_ || queue_.size() >= options_.queue_capacity) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      record = std::move(*shared);  // left to the caller as it was (it may try again)
      return false;
    }
    ++queued_keys_[key];
    queue_.push_back(Pending{std::move(shared), std::move(on_durable), key, ++next_seq_});
    queued_.store(queue_.size(), std::memory_order_relaxed);
    // The storage thread sleeps only on an empty queue (or when paused, and
    // unpausing notifies), so the first record wakes it; while it lingers
    // for more, a full batch ends the wait.
    const bool first = queue_.size() == 1;
    wake = first || queue_.size() == options_.max_batch;
    if (first && lingering_) first_queued_at_ = std::chrono::steady_clock::now();
  }
  submitted_.fetch_add(1, std::memory_order_relaxed);
  if (wake) work_cv_.notify_one();
  return true;
}

bool RequestLog::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  const std::uint64_t target = next_seq_;
  ++flushing_;
  work_cv_.notify_one();  // ends a linger
  const bool done = done_cv_.wait_for(lk, timeout, [&] { return written_seq_ >= target; });
  --flushing_;
  return done;
}

void RequestLog::pause_storage_for_testing(bool paused) {
  {
    std::lock_guard lk(mu_);
    paused_ = paused;
  }
  work_cv_.notify_all();
}

void RequestLog::storage_loop() {
  enter_background_thread("arb-storage");
  const bool strict = options_.durability == Durability::kStrict;
  std::vector<Pending> batch;
  batch.reserve(options_.max_batch);

  for (;;) {
    bool exiting = false;
    {
      std::unique_lock lk(mu_);
      work_cv_.wait(lk, [&] { return stopping_ || (!paused_ && !queue_.empty()); });
      if (lingering_) {
        // Until `linger` after the oldest queued record entered an empty
        // queue (records left over from a full batch go at once).
        work_cv_.wait_until(lk, first_queued_at_ + options_.linger, [&] {
          return stopping_ || paused_ || flushing_ != 0 || queue_.size() >= options_.max_batch;
        });
      }
      if (stopping_ || !paused_) {
        while (!queue_.empty() && batch.size() < options_.max_batch) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        queued_.store(queue_.size(), std::memory_order_relaxed);
      }
      exiting = stopping_ && queue_.empty();
    }

    if (!batch.empty()) {
      // A failing disk: keep the batch (records wait in the bounded queue
      // behind it) and try again until it is written — or, once stopping,
      // give up after a few attempts so that shutdown ends.
      bool written = write_batch(batch, /*first_attempt=*/true);
      for (int attempts_while_stopping = 0; !written;) {
        {
          std::unique_lock lk(mu_);
          if (stopping_ && ++attempts_while_stopping > 3) break;
          work_cv_.wait_for(lk, options_.retry_interval, [&] { return stopping_; });
        }
        write_retries_.fetch_add(1, std::memory_order_relaxed);
        if (auto r = store_->resume(); !r.ok()) {
          set_error(r.error().message);
          continue;
        }
        written = write_batch(batch, /*first_attempt=*/false);
      }
      if (!written) {
        failed_records_.fetch_add(batch.size(), std::memory_order_relaxed);
        finish_batch(batch);
      }
      batch.clear();
      if (!strict && written) request_sync();
      {
        std::lock_guard lk(mu_);
        exiting = stopping_ && queue_.empty();
      }
    }
    if (exiting) break;
  }
}

void RequestLog::request_sync() {
  {
    std::lock_guard lk(sync_mu_);
    if (sync_due_) return;  // the pending sync covers this write too
    sync_due_ = std::chrono::steady_clock::now() + options_.batch_window;
  }
  sync_cv_.notify_one();
}

void RequestLog::sync_loop() {
  enter_background_thread("arb-wal-sync");
  std::unique_lock lk(sync_mu_);
  for (;;) {
    sync_cv_.wait(lk, [&] { return sync_stop_ || sync_due_.has_value(); });
    if (!sync_due_) return;  // stopping with nothing to sync (close() syncs anyway)
    sync_cv_.wait_until(lk, *sync_due_, [&] { return sync_stop_; });
    sync_due_.reset();
    lk.unlock();
    // Concurrent with the storage thread's writes (the fsync goes to the WAL
    // files, not through RocksDB: scoring/wal_files.hpp): a slow fsync never
    // holds records in the queue.
    if (auto r = store_->sync_wal(); !r.ok()) {
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      set_error(r.error().message);
    }
    lk.lock();
  }
}

bool RequestLog::write_batch(std::vector<Pending>& batch, bool first_attempt) {
  std::vector<const RequestRecord*> records;
  records.reserve(batch.size());
  // Yield between records only while the queue is short: behind a backlog,
  // the storage thread keeps every bit of CPU it gets.
  const bool yields = queued_.load(std::memory_order_relaxed) < options_.max_batch;
  for (auto& p : batch) {
    if (yields) yield_point();
    if (first_attempt) {
      if (options_.prepare) options_.prepare(*p.record);
      lower_property_keys(*p.record);
    }
    records.push_back(p.record.get());
  }
  const bool strict = options_.durability == Durability::kStrict;
  Store::BatchExtension extend;
  if (!listeners_.empty()) {
    extend = [&](rocksdb::WriteBatch& wb, const Store::Lease& db) {
      for (auto* l : listeners_) l->on_records(db, records, wb);
    };
  }
  const auto result = store_->write(records, /*sync=*/strict, extend);
  if (!result.ok()) {
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    set_error(result.error().message);
    storage_ok_.store(false, std::memory_order_relaxed);
    if (first_attempt) {
      // The proxy must not wait for the disk: the callbacks (strict mode
      // holds a response's last byte for them) learn now that this write
      // failed; the records stay with the storage thread and are retried.
      for (auto& p : batch) {
        if (p.on_durable) std::exchange(p.on_durable, {})(false);
      }
    }
    return false;
  }
  for (auto* l : listeners_) l->records_written(records);
  written_.fetch_add(batch.size(), std::memory_order_relaxed);
  batches_.fetch_add(1, std::memory_order_relaxed);
  if (!storage_ok_.exchange(true, std::memory_order_relaxed)) {
    recoveries_.fetch_add(1, std::memory_order_relaxed);
  }
  finish_batch(batch);
  return true;
}

void RequestLog::finish_batch(std::vector<Pending>& batch) {
  {
    // Only now, with the records readable from the store (or given up on),
    // do they leave the queued set (known() must never see a gap).
    std::lock_guard lk(mu_);
    for (const auto& p : batch) {
      auto it = queued_keys_.find(p.key);
      if (it != queued_keys_.end() && --it->second == 0) queued_keys_.erase(it);
    }
  }
  for (auto& p : batch) {
    if (p.on_durable) p.on_durable(true);
  }
  {
    // After the callbacks, so that flush() returning means they have run.
    std::lock_guard lk(mu_);
    written_seq_ = batch.back().seq;
  }
  done_cv_.notify_all();
}

void RequestLog::retention_loop() {
  enter_background_thread("arb-retention");
  for (;;) {
    if (retention_stop_.load()) return;
    if (auto r = run_retention(); !r.ok() && r.error().code != ErrorCode::kUnavailable) {
      set_error("retention: " + r.error().message);
    }
    std::unique_lock lk(retention_wait_mu_);
    retention_cv_.wait_for(lk, options_.retention_interval, [&] { return retention_stop_.load(); });
  }
}

Expected<RetentionStats> RequestLog::run_retention() {
  if (options_.retention_days == 0) return RetentionStats{};
  const std::int64_t cutoff =
      now_us() - static_cast<std::int64_t>(options_.retention_days) * kMicrosPerDay;
  std::lock_guard pass(retention_mu_);
  std::shared_lock lk(store_mu_);
  if (!store_->is_open()) return unavailable("request log is closed");
  auto r = store_->delete_older_than(
      cutoff, &retention_stop_,
      [](rocksdb::WriteBatch& batch, const Store::Lease& db, std::string_view project,
         std::string_view id) -> Expected<std::uint64_t> {
        // The request's evaluator runs go with it (not counted as scores).
        if (auto runs = delete_request_runs(db, batch, project, id); !runs.ok()) {
          return std::move(runs).error();
        }
        return delete_request_scores(db, batch, project, id);
      });
  if (r.ok()) {
    retention_deleted_.fetch_add(r->records_deleted, std::memory_order_relaxed);
    if (retention_observer_ && (r->records_deleted > 0 || r->scores_deleted > 0)) retention_observer_(*r);
  }
  return r;
}

void RequestLog::set_retention_observer(std::function<void(const RetentionStats&)> observer) {
  std::lock_guard pass(retention_mu_);
  retention_observer_ = std::move(observer);
}

Expected<void> RequestLog::close() {
  std::lock_guard cl(close_mu_);
  if (closed_) return {};
  closed_ = true;

  retention_stop_.store(true);
  { std::lock_guard lk(retention_wait_mu_); }
  retention_cv_.notify_all();
  if (retention_thread_.joinable()) retention_thread_.join();

  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  if (storage_thread_.joinable()) storage_thread_.join();
  {
    std::lock_guard lk(sync_mu_);
    sync_stop_ = true;
  }
  sync_cv_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();

  std::unique_lock lk(store_mu_);
  return store_->close();
}

bool RequestLog::pending(std::string_view project, std::string_view request_id) const {
  const InflightRegistry::Digest d = InflightRegistry::digest(project, request_id);
  if (inflight_.contains(d)) return true;
  std::lock_guard lk(mu_);
  return queued_keys_.count(d) != 0;
}

Expected<bool> RequestLog::known(std::string_view project, std::string_view request_id) const {
  if (pending(project, request_id)) return true;
  std::shared_lock lk(store_mu_);
  if (!store_->is_open()) return unavailable("request log is closed");
  return store_->contains(project, request_id);
}

Expected<std::optional<RequestRecord>> RequestLog::get(std::string_view project,
                                                       std::string_view request_id,
                                                       bool include_bodies, bool with_scores) const {
  std::shared_lock lk(store_mu_);
  if (!store_->is_open()) return unavailable("request log is closed");
  auto lease = store_->lease();
  if (!lease.ok()) return std::move(lease).error();
  auto got = Store::get(*lease, project, request_id, include_bodies);
  if (got.ok() && *got) {
    auto ok = with_scores ? attach_score_data(*lease, **got) : attach_feedback(*lease, **got);
    if (!ok) return std::move(ok).error();
  }
  return got;
}

Expected<std::vector<RequestRecord>> RequestLog::query(std::string_view project,
                                                       const RequestQuery& query,
                                                       QueryStats* stats) const {
  std::shared_lock lk(store_mu_);
  if (!store_->is_open()) return unavailable("request log is closed");
  return execute_query(*store_, project, query, stats);
}

Expected<nlohmann::json> RequestLog::get_json(std::string_view project, std::string_view request_id,
                                              bool include_body) const {
  auto got = get(project, request_id, include_body);
  if (!got.ok()) return std::move(got).error();
  if (!*got) return not_found("request " + sanitize_utf8(request_id) + " not found");
  return to_json(**got, include_body);
}

Expected<nlohmann::json> RequestLog::query_json(std::string_view project,
                                                const nlohmann::json& body) const {
  auto parsed = parse_request_query(body);
  if (!parsed.ok()) return std::move(parsed).error();
  auto records = query(project, *parsed);
  if (!records.ok()) return std::move(records).error();
  // Every record is shown with its scores and posted feedback.
  auto attached = with_lease([&](const Store::Lease& db) -> Expected<void> {
    for (auto& r : *records) {
      if (auto ok = attach_score_data(db, r); !ok) return ok;
    }
    return {};
  });
  if (!attached.ok()) return std::move(attached).error();
  nlohmann::json data = nlohmann::json::array();
  for (const auto& r : *records) data.push_back(to_json(r, false));
  return data;
}

RequestLog::Counters RequestLog::counters() const {
  Counters c;
  c.submitted = submitted_.load(std::memory_order_relaxed);
  c.written = written_.load(std::memory_order_relaxed);
  c.dropped = dropped_.load(std::memory_order_relaxed);
  c.invalid = invalid_.load(std::memory_order_relaxed);
  c.batches = batches_.load(std::memory_order_relaxed);
  c.write_errors = write_errors_.load(std::memory_order_relaxed);
  c.failed_records = failed_records_.load(std::memory_order_relaxed);
  c.write_retries = write_retries_.load(std::memory_order_relaxed);
  c.recoveries = recoveries_.load(std::memory_order_relaxed);
  c.reopens = store_ ? store_->reopens() : 0;
  c.storage_ok = storage_ok_.load(std::memory_order_relaxed);
  c.retention_deleted = retention_deleted_.load(std::memory_order_relaxed);
  {
    std::lock_guard lk(mu_);
    c.queue_depth = queue_.size();
  }
  {
    std::lock_guard lk(error_mu_);
    c.last_error = last_error_;
  }
  return c;
}

}  // namespace arbiter::scoring
