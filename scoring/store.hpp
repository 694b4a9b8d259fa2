#pragma once
// The RocksDB database behind the request log (DESIGN.md §8): one database
// per storage.path, column families by purpose, byte-ordered keys (see
// scoring/keys.hpp for every layout).
//
// Thread-safety: every const member function and write()/sync_wal()/
// delete_older_than() may be called concurrently from any thread (RocksDB's
// DB is thread-safe). close() must not race with any other call; the
// destructor calls it.
//
// Lifetime: open() returns the only owner; handles and snapshots handed out
// (db(), cf()) die with the Store.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
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
};

struct RetentionStats {
  std::uint64_t records_deleted = 0;
  std::uint64_t scores_deleted = 0;  // scores of the deleted records (and their feedback)
  std::uint64_t stale_entries_deleted = 0;  // time entries without a matching record
};

// A consistent read view of the database for the scope of one query.
// Thread-safe to create from any thread; release happens in the destructor.
class SnapshotGuard {
 public:
  explicit SnapshotGuard(rocksdb::DB& db);
  ~SnapshotGuard();
  SnapshotGuard(const SnapshotGuard&) = delete;
  SnapshotGuard& operator=(const SnapshotGuard&) = delete;
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB& db_;
  const rocksdb::Snapshot* snapshot_;
};

class Store {
 public:
  // Opens (creating if missing) the database at `path`, creating any column
  // family that does not exist yet. Throws StorageError with a message that
  // names the path: locked by another process, corrupt, or other I/O error.
  static std::unique_ptr<Store> open(const std::string& path, const StoreOptions& options = {});

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
  using BatchExtension = std::function<void(rocksdb::WriteBatch&)>;
  Expected<void> write(std::span<const RequestRecord* const> records, bool sync,
                       const BatchExtension& extend = {});

  // fsyncs the WAL: everything written before is durable against power loss.
  Expected<void> sync_wal();

  // After a failed write: RocksDB may have stopped accepting writes (a
  // background error, e.g. a full disk while writing the WAL or flushing).
  // Tries to clear it (DB::Resume: retries the failed flush, starts a new
  // WAL); ok when writes may be attempted again. Cheap when there is no
  // background error. Thread-safe like write().
  Expected<void> resume();

  // nullopt when there is no record with this id in this project (another
  // project's ids are invisible). Bodies are read only when include_bodies.
  // `snapshot` (optional) must come from db().
  Expected<std::optional<RequestRecord>> get(std::string_view project, std::string_view id,
                                             bool include_bodies,
                                             const rocksdb::Snapshot* snapshot = nullptr) const;

  Expected<bool> contains(std::string_view project, std::string_view id) const;

  // Deletes every record created before cutoff_us (all projects) with its
  // bodies and index entries, in batches, so that writers are never held up
  // for long. Stops early (returning what was done) when *cancel turns true.
  // `also`, when set, adds what else belongs to each deleted record (its
  // scores) to the same batch and returns how many scores it deleted.
  using RetentionExtension =
      std::function<Expected<std::uint64_t>(rocksdb::WriteBatch&, std::string_view project, std::string_view id)>;
  Expected<RetentionStats> delete_older_than(std::int64_t cutoff_us, const std::atomic<bool>* cancel = nullptr,
                                             const RetentionExtension& also = {});

  // Syncs the WAL and closes the database. Idempotent. After close() every
  // other call returns kUnavailable (or must not be made, for db()/cf()).
  Expected<void> close();
  bool is_open() const { return db_ != nullptr; }

  const std::string& path() const { return path_; }
  rocksdb::DB& db() const { return *db_; }
  rocksdb::ColumnFamilyHandle* cf(ColumnFamily which) const {
    return handles_[static_cast<std::size_t>(which)];
  }

 private:
  Store() = default;

  std::string path_;
  rocksdb::DB* db_ = nullptr;
  // Indexed by ColumnFamily; unknown_handles_ are column families found on
  // disk that this version does not know (kept open, as RocksDB requires).
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::vector<rocksdb::ColumnFamilyHandle*> unknown_handles_;
};

// "<context>: <status>" as an Error of code kStorage.
Error status_error(std::string_view context, const rocksdb::Status& status);

}  // namespace arbiter::scoring
