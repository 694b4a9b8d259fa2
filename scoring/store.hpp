#pragma once
// The RocksDB database behind the request log (DESIGN.md §8): one database
// per storage.path, column families by purpose, byte-ordered keys (see
// scoring/keys.hpp for every layout).
//
// Thread-safety: every member function except close() may be called
// concurrently from any thread (RocksDB's DB is thread-safe). close() must not
// race with any other call; the destructor calls it.
//
// Recovery by reopening: after a write or WAL sync fails with an I/O error,
// RocksDB 7.8 cannot continue on the same instance (DB::Resume() keeps the
// error, and the next WAL write or sync trips an assertion in Debian's build),
// so the Store marks the instance broken, refuses further writes and syncs on
// it, and resume() closes and reopens the database once a probe write to
// storage.path succeeds (WAL replay keeps everything written before the
// fault). To make that possible nobody holds the database across calls: every
// use takes a Lease, which keeps the current instance open until it ends.
//
// Lifetime: open() returns the only owner.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/request_record.hpp"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Env;
class Snapshot;
class Status;
class WriteBatch;
}  // namespace rocksdb

namespace arbiter::scoring {

// Opening the database failed (locked, corrupt, unreadable). Thrown only at
// start-up; what() is meant for the operator, e.g.
// "storage.path ./data is locked by another process".
class StorageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ColumnFamily : std::size_t {
  kRecords,      // request metadata
  kBodies,       // request / response / raw-stream bytes; blob files for large values
  kIdxTime,      // by created_at
  kIdxUser,      // by user_id, then time
  kIdxSession,   // by session_id, then time
  kIdxProperty,  // by property key and value, then time
  kIdxModel,     // by effective model (RequestRecord::model()), then time
  kScores,       // created now, filled by the scores issue
  kIdxScore,     // ditto; layout documented in keys.hpp
  kOutbox,       // webhook outbox (webhooks issue)
  kEvalRuns,     // evaluator runs (evaluators issue)
  kCount,
};

std::string_view column_family_name(ColumnFamily cf);

struct StoreOptions {
  // Bodies at least this large go to blob files, keeping the LSM tree (and
  // its compactions) small.
  std::uint64_t blob_min_size = 4096;
  // Sized for DESIGN.md §9's 64 MiB resident budget: memtables stay resident
  // until flushed, so their cap is memory the process keeps even when idle
  // (the first bench showed RSS climbing to 131 MiB with 64 MiB memtables
  // and a 32 MiB cache). Small memtables cost more flushes, which the
  // background jobs absorb.
  std::size_t block_cache_bytes = 8u << 20;
  // Memtables of all column families together; reaching the cap flushes
  // the largest memtable.
  std::size_t write_buffer_total_bytes = 16u << 20;
  std::size_t write_buffer_bytes = 4u << 20;         // per column family
  std::size_t bodies_write_buffer_bytes = 8u << 20;  // bodies are the bulk of the bytes
  int max_background_jobs = 2;
  // Level 1's size cap (RocksDB's max_bytes_for_level_base, 256 MiB by
  // default) and its table files' size (doubling at each level below).
  // Most column families hold keys from several series or random ids, so
  // every flushed level-0 file's key range covers all of level 1, and each
  // level-0 compaction rewrites the whole of it: with the default cap, the
  // soak's outbox rewrote a level 1 of 200+ MB every ~8 s, and compaction
  // CPU grew with the log (bench/README, "Results, session 9"). A small
  // level 1 bounds that rewrite; what outgrows it moves down a file at a
  // time, each file meeting only the slice of the next level its keys span.
  std::uint64_t level1_bytes = 32u << 20;
  std::uint64_t level1_file_bytes = 8u << 20;
  // Level-0 files that start a compaction into level 1 (RocksDB's default:
  // 4). Each such compaction rewrites the level-1 files its inputs overlap:
  // all of level 1 for keys by random id. Waiting for 8 files halves those
  // rewrites: at 64 connections with an evaluator, compaction CPU fell by a
  // third to a half (bench/README, session 16). Point reads check a few more
  // level-0 bloom filters (pinned in the cache); writes slow down only at 20
  // level-0 files (RocksDB's level0_slowdown_writes_trigger), as before.
  int level0_compaction_trigger = 8;
  // Table and blob file readers kept open (RocksDB's table cache). Unbounded
  // (-1), every SST and blob file the log ever wrote stays open with its
  // reader: the 10-minute soak showed fds 93 → 320 and RSS climbing with
  // them. Index and filter blocks live in the block cache, so a closed
  // reader costs a reopen, not memory.
  int max_open_files = 128;
  // The environment RocksDB does its file I/O through; null = the default.
  // A test seam: tests install a fault-injecting FileSystem (full disk, I/O
  // errors) to prove the gateway survives and recovers. Must outlive the Store.
  std::shared_ptr<rocksdb::Env> env;
  // A test seam: called on the writing thread after a write to the database
  // failed, before the failure is recorded (the instance marked broken).
  std::function<void()> after_failed_write;
};

struct RetentionStats {
  std::uint64_t records_deleted = 0;
  std::uint64_t scores_deleted = 0;  // scores of the deleted records (and their feedback)
  std::uint64_t stale_entries_deleted = 0;  // time entries without a matching record
};

class Store {
  // One opened database: the DB and its column family handles. Closed
  // (without a WAL sync) when the last Lease on it ends.
  struct Instance {
    rocksdb::DB* db = nullptr;
    // Indexed by ColumnFamily; unknown_handles are column families found on
    // disk that this version does not know (kept open, as RocksDB requires).
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    std::vector<rocksdb::ColumnFamilyHandle*> unknown_handles;
    Instance() = default;
    Instance(const Instance&) = delete;
    Instance& operator=(const Instance&) = delete;
    ~Instance();
    // Destroys the handles and closes the database; idempotent.
    Expected<void> close();
  };

 public:
  // One use of the open database, e.g. one read, one scan or one write. The
  // instance it names stays open until the Lease (and every copy) ends; a
  // reopen waits for that, so keep Leases short, destroy iterators and
  // snapshots before their Lease, and never wait for another thread while
  // holding one. Empty while the store is closed or being reopened.
  class Lease {
   public:
    Lease() = default;
    explicit operator bool() const { return instance_ != nullptr; }
    rocksdb::DB& db() const { return *instance_->db; }
    rocksdb::ColumnFamilyHandle* cf(ColumnFamily which) const {
      return instance_->handles[static_cast<std::size_t>(which)];
    }

   private:
    friend class Store;
    explicit Lease(std::shared_ptr<Instance> instance) : instance_(std::move(instance)) {}
    std::shared_ptr<Instance> instance_;
  };

  // Opens (creating if missing) the database at `path`, creating any column
  // family that does not exist yet. Throws StorageError with a message that
  // names the path: locked by another process, corrupt, or other I/O error.
  static std::unique_ptr<Store> open(const std::string& path, const StoreOptions& options = {});

  // The open database, or an error of code kUnavailable ("storage is
  // closed", "storage is being reopened after an I/O error", or, after a
  // reopen that failed, the reason).
  Expected<Lease> lease() const;

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Writes the records — metadata, non-empty bodies, and every index entry —
  // in one atomic WriteBatch (WAL on). `sync` = fsync the WAL before
  // returning. A record whose (project, request_id) already exists replaces
  // it, and the old version's index entries and bodies are removed, so the
  // indexes never point at stale versions.
  // Preconditions (RequestLog::submit checks them): non-empty project,
  // valid_request_id(id), lower-case property keys.
  // `extend`, when set, adds further entries to the same batch just before
  // it is committed (write listeners: outbox deliveries, pending runs).
  // `extend` receives the Lease the batch is written through (for column
  // family handles).
  using BatchExtension = std::function<void(rocksdb::WriteBatch&, const Lease&)>;
  Expected<void> write(std::span<const RequestRecord* const> records, bool sync,
                       const BatchExtension& extend = {});

  // Commits a batch built with `lease`'s column family handles (`sync` =
  // fsync the WAL first). Every write to the database goes through here or
  // write(), so that an I/O error marks the instance broken (see the top of
  // this file); while it is broken, commits fail at once without reaching
  // RocksDB. Below the free-space floor (scoring/free_space.hpp) they fail
  // with kUnavailable before RocksDB sees the full disk.
  Expected<void> commit(const Lease& lease, rocksdb::WriteBatch& batch, bool sync);

  // fsyncs the WAL: everything written before is durable against power loss.
  // Runs beside writes (never holds them up), and never through RocksDB's
  // own WAL writer, which a write failing at the same moment can leave in a
  // state DB::SyncWAL() asserts on (scoring/wal_files.hpp).
  Expected<void> sync_wal();

  // After a failed write: RocksDB may have stopped accepting writes (a
  // background error, e.g. a full disk while writing the WAL or flushing).
  // Without an I/O error on this instance: DB::Resume(), which retries the
  // failed flush and starts a new WAL. With one (the instance is broken):
  // writes and fsyncs a small probe file in storage.path and, when that
  // works, closes and reopens the database. Ok when writes may be attempted
  // again. Cheap when healthy. Must not be called while holding a Lease (the
  // reopen waits for every Lease; it gives up after `lease_wait` and keeps
  // the old instance).
  Expected<void> resume(std::chrono::milliseconds lease_wait = std::chrono::seconds(5));

  // True between an I/O error and the reopen that clears it.
  bool broken() const { return broken_.load(std::memory_order_acquire); }
  // Successful reopens since open().
  std::uint64_t reopens() const { return reopens_.load(std::memory_order_relaxed); }

  // RocksDB's own account of the memory it holds (DB properties): a large
  // part of the process's resident memory, each bounded by a StoreOptions
  // setting.
  struct MemoryUsage {
    std::uint64_t memtables = 0;      // active and immutable memtables, all column families
    std::uint64_t table_readers = 0;  // open table files' readers, outside the block cache (max_open_files)
    std::uint64_t block_cache = 0;    // the shared block cache in use, pinned blocks included
  };
  Expected<MemoryUsage> memory_usage() const;

  // nullopt when there is no record with this id in this project (another
  // project's ids are invisible). Bodies are read only when include_bodies.
  // `snapshot` (optional) must come from db().
  Expected<std::optional<RequestRecord>> get(std::string_view project, std::string_view id,
                                             bool include_bodies,
                                             const rocksdb::Snapshot* snapshot = nullptr) const;
  // get() through a Lease the caller holds (a snapshot must come from it).
  static Expected<std::optional<RequestRecord>> get(const Lease& db, std::string_view project,
                                                    std::string_view id, bool include_bodies,
                                                    const rocksdb::Snapshot* snapshot = nullptr);

  Expected<bool> contains(std::string_view project, std::string_view id) const;

  // Deletes every record created before cutoff_us (all projects) with its
  // bodies and index entries, in batches, so that writers are never held up
  // for long. Stops early (returning what was done) when *cancel turns true.
  // `also`, when set, adds what else belongs to each deleted record (its
  // scores) to the same batch and returns how many scores it deleted.
  using RetentionExtension =
      std::function<Expected<std::uint64_t>(rocksdb::WriteBatch&, const Lease&, std::string_view project,
                                            std::string_view id)>;
  Expected<RetentionStats> delete_older_than(std::int64_t cutoff_us, const std::atomic<bool>* cancel = nullptr,
                                             const RetentionExtension& also = {});

  // Syncs the WAL (unless broken) and closes the database. Idempotent. After
  // close() every other call returns kUnavailable. Every Lease must have
  // ended.
  Expected<void> close();
  bool is_open() const { return !closed_.load(std::memory_order_acquire); }

  const std::string& path() const { return path_; }

 private:
  struct Opener;
  Store(std::string path, std::shared_ptr<const Opener> opener);
  // Marks the instance broken when `status` is an I/O error.
  void note_failure(const rocksdb::Status& status);
  Expected<void> write_batch(const Lease& lease, rocksdb::WriteBatch& batch, bool sync);
  // Writes and fsyncs a small file in path_: can the disk take writes?
  Expected<void> probe_write() const;
  static Error broken_error();
  // Waits until `instance` is referenced only by the caller's copy.
  static bool wait_unleased(const std::shared_ptr<Instance>& instance, std::chrono::milliseconds limit);

  std::string path_;
  std::shared_ptr<const Opener> opener_;  // everything needed to open the database again
  // The open instance; null while closed or being reopened (then
  // unavailable_ says why). A plain mutex rather than
  // std::atomic<std::shared_ptr>: libstdc++ 12's load() releases its lock bit
  // with a relaxed store, which ThreadSanitizer rightly reports as a race
  // with a concurrent store().
  mutable std::mutex current_mu_;
  std::shared_ptr<Instance> current_;
  std::string unavailable_;
  // Publishes `instance` (null: none, for `why`); returns the previous one.
  std::shared_ptr<Instance> publish(std::shared_ptr<Instance> instance, std::string why = {});
  std::shared_ptr<Instance> current() const;
  std::atomic<bool> broken_{false};
  std::atomic<bool> closed_{false};
  std::atomic<std::uint64_t> reopens_{0};
  std::mutex reopen_mu_;  // one resume()/close() at a time
};

// A consistent read view of the database for the scope of one query.
// Thread-safe to create from any thread; release happens in the destructor.
// Keeps its Lease (so the instance) alive.
class SnapshotGuard {
 public:
  explicit SnapshotGuard(Store::Lease lease);
  ~SnapshotGuard();
  SnapshotGuard(const SnapshotGuard&) = delete;
  SnapshotGuard& operator=(const SnapshotGuard&) = delete;
  const rocksdb::Snapshot* get() const { return snapshot_; }
  const Store::Lease& lease() const { return lease_; }

 private:
  Store::Lease lease_;
  const rocksdb::Snapshot* snapshot_;
};

// "<context>: <status>" as an Error of code kStorage.
Error status_error(std::string_view context, const rocksdb::Status& status);

}  // namespace arbiter::scoring
