#pragma once
// The request log (DESIGN.md §2, §8): the proxy hands each finished call to
// submit() from its I/O threads; one storage thread writes them to RocksDB in
// WriteBatches (group commit); the API reads them back with get() / query().
//
// Durability:
//   relaxed — batches are written with WAL on and sync=false, so a record is
//     in the OS page cache (safe from a process crash / SIGKILL) as soon as
//     its batch is written: at most `linger` (2 ms) after submit, sooner
//     when a batch fills (plus the time writing the previous batches takes
//     under load); the WAL is fsynced at most `batch_window` after a write,
//     so a power loss or kernel crash loses at most the last window and
//     linger. A SIGKILL loses only records still in the queue (not yet
//     written).
//   strict — every batch is written with sync=true (WAL fsynced) before its
//     on_durable callbacks fire; the gateway holds the response's last byte
//     until then.
//   Either way close() (SIGTERM path) drains the queue and syncs: nothing lost.
//   The relaxed WAL fsync runs on its own thread, so a slow fsync never
//   holds records in the queue (where a SIGKILL would lose them).
//
// Storage failures: below the free-space floor (free_space.hpp) the store
// refuses writes before RocksDB sees a full disk. A batch whose write fails
// is not dropped. Its on_durable callbacks run at once with ok=false (the proxy is
// never held up by a failing disk), the storage thread keeps the records and
// retries them every `retry_interval` after DB::Resume(), while new records
// wait in the bounded queue behind them; once the queue is full, submit()
// drops and counts (`dropped`). The first successful write ends the outage
// (`storage_ok` turns true again). Only close() gives up on a batch that
// still cannot be written (counted in `failed_records`).
//
// Lifetime: the constructor opens the store and starts the storage thread
// (and the retention thread when retention_days > 0); close() or the
// destructor drains, syncs and stops them. Callbacks passed to submit() must
// stay callable until they have run.
//
// Thread-safety: every member function may be called from any thread,
// concurrently. submit() never blocks on I/O (a short mutex section only).
// close() waits for readers in progress.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/query.hpp"
#include "scoring/request_record.hpp"
#include "scoring/store.hpp"
#include "scoring/write_listener.hpp"

namespace arbiter::scoring {

// Calls in progress (DESIGN.md §4: "a request still in flight counts as
// known"), keyed by (project, request_id). Counts duplicates, so two calls
// reusing one client-chosen id are both tracked.
//
// Entries are 64-bit digests of the pair, not the strings: adding and
// removing a call is then a counter in a map of integers, with no key
// strings built or copied on the I/O thread. Two different pairs share a
// digest with a chance of about 2^-64 per pair; such a pair would only make
// known() answer "in flight" for an id that is not.
// Thread-safety: all members may be called concurrently (sharded mutexes).
class InflightRegistry {
 public:
  using Digest = std::uint64_t;
  static Digest digest(std::string_view project, std::string_view request_id);

  void add(std::string_view project, std::string_view request_id) {
    add(digest(project, request_id));
  }
  void remove(std::string_view project, std::string_view request_id) {
    remove(digest(project, request_id));
  }
  bool contains(std::string_view project, std::string_view request_id) const {
    return contains(digest(project, request_id));
  }
  void add(Digest d);
  void remove(Digest d);
  bool contains(Digest d) const;
  std::size_t size() const;

  // Removes its entry when destroyed. Destroy it only after the record was
  // handed to RequestLog::submit(), so that known() sees no gap.
  class Entry {
   public:
    Entry() = default;
    Entry(InflightRegistry* registry, Digest d) : registry_(registry), digest_(d) {}
    Entry(Entry&& other) noexcept;
    Entry& operator=(Entry&& other) noexcept;
    ~Entry();
    void release();  // removes now

   private:
    InflightRegistry* registry_ = nullptr;
    Digest digest_ = 0;
  };
  // add() now, remove() when the returned Entry dies. The registry must
  // outlive the Entry.
  Entry track(std::string_view project, std::string_view request_id);

 private:
  static constexpr std::size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<Digest, std::uint32_t> counts;
  };
  Shard& shard_for(Digest d) const { return shards_[d >> 60]; }
  mutable Shard shards_[kShards];
};

enum class Durability { kRelaxed, kStrict };

struct RequestLogOptions {
  std::string path;  // storage.path
  Durability durability = Durability::kRelaxed;
  std::size_t queue_capacity = 65536;  // records waiting for the storage thread
  std::size_t max_batch = 512;         // records per WriteBatch
  // relaxed: longest time written data stays un-fsynced. 5 ms keeps the
  // fsync rate at ≤ 200/s under load while bounding power-loss exposure.
  std::chrono::milliseconds batch_window{5};
  // relaxed: how long after a record enters an empty queue the storage
  // thread waits for more before it writes them (cut short by a full batch,
  // flush() and close()). At low rates each wake-up then writes several
  // records, and hands them to the evaluators and webhooks in one go,
  // instead of waking every background thread once per call. A SIGKILL
  // loses at most this long of records (DESIGN §8: the last batch window);
  // fsync follows at most batch_window after the write. 0: write at once.
  std::chrono::microseconds linger{std::chrono::milliseconds(2)};
  unsigned retention_days = 0;  // 0 = keep forever
  std::chrono::milliseconds retention_interval{std::chrono::hours(1)};
  // Pause between attempts to write a batch that failed (storage errors).
  std::chrono::milliseconds retry_interval{500};
  // Runs on the storage thread for each record before it is written (and
  // before write listeners see it): the gateway derives model, tokens and
  // cost from the bodies here, off the I/O threads. Optional.
  std::function<void(RequestRecord&)> prepare;
  // Clock for retention cutoffs (unix µs); tests inject their own.
  std::function<std::int64_t()> now_us;
  StoreOptions store;
};

class RequestLog {
 public:
  using DurableCallback = std::function<void(bool ok)>;

  // Opens storage (throws StorageError: locked, corrupt, unreadable) and
  // starts the background threads.
  explicit RequestLog(RequestLogOptions options);
  ~RequestLog();
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  // Queues a finished record. Never blocks on I/O. Returns false — and
  // counts it in `dropped` (queue full or closed) or `invalid` (empty
  // project, bad request id) — when the record will not be stored; then
  // on_durable is not called. Otherwise on_durable(ok) runs once on the
  // storage thread after the batch holding the record was written (relaxed)
  // or written and fsynced (strict); ok=false when that write failed. Keep
  // it short and non-blocking (e.g. post to an io_context).
  // Property keys are lower-cased (on the storage thread) if the caller did not.
  // When it returns false, `record` and `on_durable` are left as they were
  // (a caller may try again, or tell its waiter).
  bool submit(RequestRecord&& record, DurableCallback&& on_durable = {});

  // Waits until every record submitted before this call has been written
  // (or failed) and its on_durable callback has run. False on timeout. For tests and orderly
  // shutdown paths; never call it from an I/O thread.
  bool flush(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Drains the queue, fsyncs, stops the threads and closes the database.
  // Idempotent. Afterwards submit() drops and reads return kUnavailable.
  Expected<void> close();

  // --- reads (blocking RocksDB reads: call from a worker, not an I/O thread)

  // Whether a score may refer to this request: in flight, queued but not yet
  // written, or stored. The three are checked in that order, which never
  // misses a request that moves from one to the next meanwhile (an entry
  // leaves each stage only after it is in the next).
  Expected<bool> known(std::string_view project, std::string_view request_id) const;
  // The first two stages of known(): in flight or waiting to be written. Does
  // not touch storage, so it may be called from inside with_store().
  bool pending(std::string_view project, std::string_view request_id) const;

  // Stored record, with its scores and posted feedback fields attached
  // (attach_score_data); nullopt for unknown ids and for another project's ids.
  // Without `with_scores` only the feedback is attached (what an evaluator's
  // event has), sparing the scores' reads.
  Expected<std::optional<RequestRecord>> get(std::string_view project, std::string_view request_id,
                                             bool include_bodies, bool with_scores = true) const;

  Expected<std::vector<RequestRecord>> query(std::string_view project, const RequestQuery& query,
                                             QueryStats* stats = nullptr) const;

  // The API handlers' entry points: the `data` of the response envelope, or
  // an error whose code maps to the status (http_status()).
  //   GET /v1/request/{id}[?includeBody=true] → record object; kNotFound.
  Expected<nlohmann::json> get_json(std::string_view project, std::string_view request_id,
                                    bool include_body) const;
  //   POST /v1/request/query → array of record objects (no bodies).
  Expected<nlohmann::json> query_json(std::string_view project, const nlohmann::json& body) const;

  // Runs one retention pass now (also what the background task runs).
  // Deletes records created before now_us() - retention_days, with their
  // scores and feedback, in the same batches. No-op when retention_days == 0.
  Expected<RetentionStats> run_retention();

  // Called after each retention pass that deleted something (the score
  // store drops its derived histograms). Set or clear it while no pass runs
  // concurrently is not required: it is guarded.
  void set_retention_observer(std::function<void(const RetentionStats&)> observer);

  // Runs fn(Store&) under the reader lock, so close() waits for it; returns
  // kUnavailable instead when the log is closed. fn must return an
  // Expected<...>. The score store and the eval queries share the database
  // through this. Do not call other RequestLog members from fn (the lock is
  // not recursive).
  template <class F>
  auto with_store(F&& fn) const -> decltype(fn(std::declval<Store&>())) {
    std::shared_lock lk(store_mu_);
    if (!store_->is_open()) return unavailable("request log is closed");
    return fn(*store_);
  }

  // with_store for one Lease on the open database (see Store::Lease):
  // fn(const Store::Lease&), kUnavailable while the store is reopening.
  template <class F>
  auto with_lease(F&& fn) const -> decltype(fn(std::declval<const Store::Lease&>())) {
    return with_store([&](Store& store) -> decltype(fn(std::declval<const Store::Lease&>())) {
      auto lease = store.lease();
      if (!lease.ok()) return std::move(lease).error();
      return fn(*lease);
    });
  }

  // Registers a listener offered every record batch (and, through the score
  // store and the evaluator runtime, every score, feedback and evaluation
  // write). Call before the first submit(); see write_listener.hpp.
  void add_listener(WriteListener* listener) { listeners_.push_back(listener); }
  const std::vector<WriteListener*>& listeners() const { return listeners_; }

  InflightRegistry& inflight() { return inflight_; }
  const InflightRegistry& inflight() const { return inflight_; }

  struct Counters {
    std::uint64_t submitted = 0;       // accepted into the queue
    std::uint64_t written = 0;         // in a successful batch
    std::uint64_t dropped = 0;         // refused: queue full or closed
    std::uint64_t invalid = 0;         // refused: bad project / id
    std::uint64_t batches = 0;         // successful WriteBatches
    std::uint64_t write_errors = 0;    // failed WriteBatches (+ failed WAL syncs)
    std::uint64_t failed_records = 0;  // records given up on (a failing write at close)
    std::uint64_t write_retries = 0;   // attempts to write a batch again after a failure
    std::uint64_t recoveries = 0;      // outages ended by a successful write
    std::uint64_t reopens = 0;         // database reopens after an I/O error (Store::resume)
    bool storage_ok = true;            // false from a failed write until one succeeds
    std::uint64_t retention_deleted = 0;
    std::uint64_t queue_depth = 0;
    std::string last_error;  // most recent write / sync / retention failure, "" if none
  };
  Counters counters() const;

  // Records waiting for the storage thread: a snapshot read without the lock,
  // for background work that can wait (the evaluator workers) to see that the
  // storage thread is falling behind and leave it the CPU.
  std::size_t queued() const { return queued_.load(std::memory_order_relaxed); }

  // Test hook: while paused the storage thread takes nothing from the queue
  // (close() still drains). Lets tests fill the queue deterministically.
  void pause_storage_for_testing(bool paused);

  const RequestLogOptions& options() const { return options_; }

 private:
  struct Pending {
    // Shared, so that listeners can keep it once committed (record_handoff.hpp).
    std::shared_ptr<RequestRecord> record;
    DurableCallback on_durable;
    InflightRegistry::Digest key = 0;  // of (project, id), for known()
    std::uint64_t seq = 0;
  };

  void storage_loop();
  void sync_loop();
  void request_sync();
  // Writes the batch; false when the write failed (the batch is kept).
  bool write_batch(std::vector<Pending>& batch, bool first_attempt);
  // Releases a batch written (or given up on): known() keys, callbacks
  // not yet run (with ok=true: written), flush() waiters.
  void finish_batch(std::vector<Pending>& batch);
  void retention_loop();
  std::int64_t now_us() const;

  RequestLogOptions options_;
  const bool lingering_;  // relaxed with a linger: see RequestLogOptions::linger
  std::unique_ptr<Store> store_;
  InflightRegistry inflight_;
  std::vector<WriteListener*> listeners_;

  // Guards the queue, the queued-key counts and the sequence numbers.
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // storage thread waits for records
  std::condition_variable done_cv_;  // flush() waits for written_seq_
  std::deque<Pending> queue_;
  std::atomic<std::size_t> queued_{0};  // queue_.size(), stored under mu_ on every change
  std::unordered_map<InflightRegistry::Digest, std::uint32_t>
      queued_keys_;                                             // queued or being written
  std::uint64_t next_seq_ = 0;                                  // last sequence number handed out
  std::uint64_t written_seq_ = 0;  // all records with seq <= this are written or failed
  std::size_t flushing_ = 0;  // flush() calls waiting: no lingering meanwhile
  std::chrono::steady_clock::time_point first_queued_at_;  // when the queue last stopped being empty
  bool stopping_ = false;
  bool paused_ = false;
  bool closed_ = false;

  // Readers hold it shared; close() takes it exclusively before closing the
  // store, so no read runs on a closed database.
  mutable std::shared_mutex store_mu_;
  std::mutex close_mu_;

  std::thread storage_thread_;
  std::thread retention_thread_;
  // relaxed: the WAL fsync thread. sync_due_ is set by the storage thread
  // after a write when no sync is due yet.
  std::thread sync_thread_;
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  std::optional<std::chrono::steady_clock::time_point> sync_due_;
  bool sync_stop_ = false;
  std::mutex retention_mu_;  // serialises retention passes; guards retention_observer_
  std::function<void(const RetentionStats&)> retention_observer_;
  std::mutex retention_wait_mu_;
  std::condition_variable retention_cv_;
  std::atomic<bool> retention_stop_{false};

  std::atomic<std::uint64_t> submitted_{0};
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> invalid_{0};
  std::atomic<std::uint64_t> batches_{0};
  std::atomic<std::uint64_t> write_errors_{0};
  std::atomic<std::uint64_t> failed_records_{0};
  std::atomic<std::uint64_t> write_retries_{0};
  std::atomic<std::uint64_t> recoveries_{0};
  std::atomic<bool> storage_ok_{true};
  std::atomic<std::uint64_t> retention_deleted_{0};
  mutable std::mutex error_mu_;
  std::string last_error_;
  void set_error(std::string message);
};

}  // namespace arbiter::scoring
