#include "scoring/store.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <initializer_list>
#include <thread>
#include <unordered_map>
#include <variant>

#include "scoring/background_thread.hpp"
#include "scoring/free_space.hpp"
#include "scoring/keys.hpp"
#include "scoring/wal_files.hpp"

namespace arbiter::scoring {

namespace {

constexpr std::array<std::string_view, static_cast<std::size_t>(ColumnFamily::kCount)> kCfNames = {
    "records",   "bodies", "idx_time",  "idx_user", "idx_session", "idx_property",
    "idx_model", "scores", "idx_score", "outbox",   "eval_runs",
};

constexpr std::array<keys::BodyKind, 3> kBodyKinds = {
    keys::BodyKind::kRequest, keys::BodyKind::kResponse, keys::BodyKind::kStreamRaw};

// Retention deletes this many records per WriteBatch: small enough that the
// storage thread's writes interleave, large enough to amortise the commit.
constexpr std::size_t kRetentionBatch = 1000;

// The largest write(2) RocksDB makes to a table or blob file (its default is
// 1 MiB). On a kernel without full preemption (PREEMPT_NONE or _VOLUNTARY, as
// most server kernels are) a thread inside one write keeps its CPU until the
// copy into the page cache is done, whatever its priority: ~1 ms for 1 MiB on
// the 2-core bench VM (bench/wake_latency), while proxy threads woken on that
// CPU wait. Compaction runs of 1-4 ms were seen holding them (bench/README,
// "Results, session 8"); 64 KiB pieces bound this part of such a run.
constexpr std::size_t kWriteChunkBytes = 64u << 10;

rocksdb::Slice slice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}
std::string_view view(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

rocksdb::CompressionType pick_compression() {
  // The Debian build links lz4 and zstd; prefer lz4 (cheap) and degrade
  // gracefully if the library at hand was built without it.
  const auto supported = rocksdb::GetSupportedCompressions();
  for (auto want : {rocksdb::kLZ4Compression, rocksdb::kSnappyCompression}) {
    if (std::find(supported.begin(), supported.end(), want) != supported.end()) return want;
  }
  return rocksdb::kNoCompression;
}

// The insert-hint prefix of an index key: its leading parts (keys.hpp:
// part(s) never contains 0x00, so the n-th 0x00 ends the n-th part), after
// an optional one-byte tag. RocksDB keeps the skiplist position of the last
// insert per prefix; index keys of one prefix arrive in time order (entries
// are prefix + ts + id), so the next insert starts there instead of searching
// the whole memtable.
class PartsPrefix final : public rocksdb::SliceTransform {
 public:
  // Untagged keys: the prefix is the first `parts` parts.
  explicit PartsPrefix(int parts) : untagged_parts_(parts) {}
  // Tagged keys: the prefix is the tag byte and then as many parts as its
  // entry says (0 = the tag alone); keys with other tags are not hinted.
  explicit PartsPrefix(std::initializer_list<std::pair<char, int>> parts_by_tag) : tagged_(true) {
    parts_by_tag_.fill(-1);
    for (const auto& [tag, parts] : parts_by_tag) parts_by_tag_[static_cast<unsigned char>(tag)] = parts;
  }
  const char* Name() const override { return "arbiter.PartsPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), prefix_length(key));
  }
  bool InDomain(const rocksdb::Slice& key) const override { return prefix_length(key) != 0; }

 private:
  // 0 when the key has no hinted prefix.
  std::size_t prefix_length(const rocksdb::Slice& key) const {
    std::size_t at = 0;
    int parts = untagged_parts_;
    if (tagged_) {
      if (key.size() == 0) return 0;
      parts = parts_by_tag_[static_cast<unsigned char>(key[0])];
      if (parts < 0) return 0;
      if (parts == 0) return 1;
      at = 1;
    }
    for (; at < key.size(); ++at) {
      if (key[at] == '\0' && --parts == 0) return at + 1;
    }
    return 0;
  }

  bool tagged_ = false;
  int untagged_parts_ = 0;
  std::array<int, 256> parts_by_tag_{};
};

// The insert-hint prefix of each column family's time-ordered keys (layouts:
// keys.hpp, score_store.hpp, eval_runs.cpp, webhook_outbox.cpp); null for
// column families without any.
std::shared_ptr<const rocksdb::SliceTransform> insert_hint_prefix(ColumnFamily cf) {
  switch (cf) {
    case ColumnFamily::kIdxTime:
    // Keyed by request id, which leads with its creation time when arbiter
    // made it (new_request_id): one series per project. Ids a client chose
    // are random and insert as they would without a hint.
    case ColumnFamily::kRecords:
    case ColumnFamily::kBodies:
      return std::make_shared<PartsPrefix>(1);
    case ColumnFamily::kIdxUser:
    case ColumnFamily::kIdxSession:
    case ColumnFamily::kIdxModel:
      return std::make_shared<PartsPrefix>(2);
    case ColumnFamily::kIdxProperty:
      return std::make_shared<PartsPrefix>(3);
    case ColumnFamily::kEvalRuns:
      // 'R' project request_id evaluator (runs), 'P' … (pending markers).
      return std::make_shared<PartsPrefix>(std::initializer_list<std::pair<char, int>>{{'R', 1}, {'P', 1}});
    case ColumnFamily::kScores:
      // 'S' project target name, target = 'r' request_id … for request scores.
      return std::make_shared<PartsPrefix>(std::initializer_list<std::pair<char, int>>{{'S', 1}});
    case ColumnFamily::kIdxScore:
      // 'T' project name ts…, 'A' project ts…; 'V' is ordered by value.
      return std::make_shared<PartsPrefix>(std::initializer_list<std::pair<char, int>>{{'T', 2}, {'A', 1}});
    case ColumnFamily::kOutbox:
      // Queue 'Q' webhook ts…, list 'L' project webhook ts…, state 'S'
      // project state-byte webhook ts… (two 0x00s), prune 'T' ts…;
      // deliveries 'D' msg_<time><random>, by request 'R' project request_id ….
      return std::make_shared<PartsPrefix>(std::initializer_list<std::pair<char, int>>{
          {'Q', 1}, {'L', 2}, {'S', 2}, {'T', 0}, {'D', 0}, {'R', 1}});
    default:
      return nullptr;
  }
}

// Flushes and compactions build tables in one long run of CPU (a 4 MiB
// memtable is milliseconds of LZ4, checksums and filter bits), and a proxy
// thread woken on the same CPU waited for all of it (background_thread.hpp).
// RocksDB calls every table's property collectors once per key on the
// building thread, so this one gives that thread a yield point every 16 keys.
// It collects no properties.
class YieldingCollector final : public rocksdb::TablePropertiesCollector {
 public:
  YieldingCollector() { enable_yield_points(); }
  rocksdb::Status AddUserKey(const rocksdb::Slice&, const rocksdb::Slice&, rocksdb::EntryType,
                             rocksdb::SequenceNumber, std::uint64_t) override {
    if ((++keys_ & 15) == 0) yield_point();
    return rocksdb::Status::OK();
  }
  rocksdb::Status Finish(rocksdb::UserCollectedProperties*) override { return rocksdb::Status::OK(); }
  rocksdb::UserCollectedProperties GetReadableProperties() const override { return {}; }
  const char* Name() const override { return "ArbiterYield"; }

 private:
  unsigned keys_ = 0;
};

class YieldingCollectorFactory final : public rocksdb::TablePropertiesCollectorFactory {
 public:
  rocksdb::TablePropertiesCollector* CreateTablePropertiesCollector(
      rocksdb::TablePropertiesCollectorFactory::Context) override {
    return new YieldingCollector();
  }
  const char* Name() const override { return "ArbiterYield"; }
};

// Whether a column family compacts a table file early once it is mostly
// deletions: only the time-ordered indexes, where retention deletes runs of
// adjacent keys at the old end of each series and scans would otherwise step
// over them. Elsewhere deletions are scattered, and compacting a file for
// them rewrites most of the level below each time: eval_runs, where each
// finished run deletes its 'P' marker, had every flushed file compacted at
// once, half of all compaction work at full load (bench/README, "Results,
// session 8"); the outbox, where every delivery deletes its 'Q' and 'S'
// entries, had every file pushed down at once, half of its compaction CPU in
// the soak ("Results, session 10"). The outbox's dispatcher seeks its queue
// from the oldest entry it last saw, so it does not step over those deletions.
bool compacts_deletions_early(ColumnFamily cf) {
  switch (cf) {
    case ColumnFamily::kIdxTime:
    case ColumnFamily::kIdxUser:
    case ColumnFamily::kIdxSession:
    case ColumnFamily::kIdxProperty:
    case ColumnFamily::kIdxModel:
    case ColumnFamily::kIdxScore:
      return true;
    default:
      return false;
  }
}

bool is_lock_error(const rocksdb::Status& s) {
  if (!s.IsIOError()) return false;
  const std::string text = s.ToString();
  return text.find("lock") != std::string::npos || text.find("LOCK") != std::string::npos;
}

[[noreturn]] void throw_open_error(const std::string& path, const rocksdb::Status& s) {
  if (is_lock_error(s)) {
    throw StorageError(
        "storage.path " + path +
        " is locked by another process (is another arbiter running on it?): " + s.ToString());
  }
  if (s.IsCorruption()) {
    throw StorageError("storage.path " + path + " is corrupt: " + s.ToString());
  }
  throw StorageError("cannot open storage.path " + path + ": " + s.ToString());
}

// Puts (or deletes) every secondary index entry of one record version.
void index_ops(rocksdb::WriteBatch& batch, const Store::Lease& store, const RequestRecord& r, bool put,
               rocksdb::Status& status) {
  auto apply = [&](ColumnFamily cf, const std::string& key) {
    if (!status.ok()) return;
    status = put ? batch.Put(store.cf(cf), key, rocksdb::Slice()) : batch.Delete(store.cf(cf), key);
  };
  const std::int64_t ts = r.created_at_us;
  apply(ColumnFamily::kIdxTime, keys::entry(keys::time_prefix(r.project), ts, r.request_id));
  if (!r.user_id.empty()) {
    apply(ColumnFamily::kIdxUser,
          keys::entry(keys::user_prefix(r.project, r.user_id), ts, r.request_id));
  }
  if (!r.session_id.empty()) {
    apply(ColumnFamily::kIdxSession,
          keys::entry(keys::session_prefix(r.project, r.session_id), ts, r.request_id));
  }
  if (!r.model().empty()) {
    apply(ColumnFamily::kIdxModel,
          keys::entry(keys::model_prefix(r.project, r.model()), ts, r.request_id));
  }
  for (const auto& [k, v] : r.properties) {
    apply(ColumnFamily::kIdxProperty,
          keys::entry(keys::property_prefix(r.project, k, v), ts, r.request_id));
  }
}

void delete_bodies(rocksdb::WriteBatch& batch, const Store::Lease& store, std::string_view project,
                   std::string_view id, rocksdb::Status& status) {
  for (auto kind : kBodyKinds) {
    if (!status.ok()) return;
    status = batch.Delete(store.cf(ColumnFamily::kBodies), keys::body(project, id, kind));
  }
}

// Removes one record version completely: metadata, bodies, index entries.
void delete_record(rocksdb::WriteBatch& batch, const Store::Lease& store, const RequestRecord& r,
                   rocksdb::Status& status) {
  if (status.ok()) {
    status = batch.Delete(store.cf(ColumnFamily::kRecords), keys::record(r.project, r.request_id));
  }
  delete_bodies(batch, store, r.project, r.request_id, status);
  index_ops(batch, store, r, /*put=*/false, status);
}

}  // namespace

std::string_view column_family_name(ColumnFamily cf) {
  return kCfNames.at(static_cast<std::size_t>(cf));
}

Error status_error(std::string_view context, const rocksdb::Status& status) {
  return storage_error(std::string(context) + ": " + status.ToString());
}

SnapshotGuard::SnapshotGuard(Store::Lease lease)
    : lease_(std::move(lease)), snapshot_(lease_.db().GetSnapshot()) {}
SnapshotGuard::~SnapshotGuard() { lease_.db().ReleaseSnapshot(snapshot_); }

// What opening the database takes; kept for reopening it after an I/O error.
struct Store::Opener {
  std::string path;
  rocksdb::DBOptions db_options;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  std::size_t known_count = 0;        // descriptors[0, known_count) are kCfNames, in order
  std::shared_ptr<rocksdb::Env> env;  // keeps StoreOptions::env alive
  // RocksDB's file system, as seen through WalFiles; `wal_env` is the Env
  // RocksDB is given (db_options.env).
  std::shared_ptr<WalFiles> wal_files;
  std::shared_ptr<rocksdb::Env> wal_env;
  std::function<void()> after_failed_write;  // StoreOptions::after_failed_write

  // The database, or the RocksDB status that prevented opening it.
  std::variant<std::shared_ptr<Store::Instance>, rocksdb::Status> open() const {
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    const rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &handles, &db);
    if (!s.ok()) return s;
    auto instance = std::make_shared<Store::Instance>();
    instance->db = db;
    instance->handles.assign(handles.begin(), handles.begin() + static_cast<std::ptrdiff_t>(known_count));
    instance->unknown_handles.assign(handles.begin() + static_cast<std::ptrdiff_t>(known_count), handles.end());
    return instance;
  }
};

Store::Instance::~Instance() { (void)close(); }

Expected<void> Store::Instance::close() {
  if (db == nullptr) return {};
  Expected<void> result;
  for (auto* list : {&handles, &unknown_handles}) {
    for (auto* h : *list) {
      const rocksdb::Status s = db->DestroyColumnFamilyHandle(h);
      if (!s.ok() && result.ok()) result = status_error("close column family", s);
    }
    list->clear();
  }
  const rocksdb::Status closed = db->Close();
  if (!closed.ok() && result.ok()) result = status_error("close database", closed);
  delete db;
  db = nullptr;
  return result;
}

Store::Store(std::string path, std::shared_ptr<const Opener> opener)
    : path_(std::move(path)), opener_(std::move(opener)) {}

std::unique_ptr<Store> Store::open(const std::string& path, const StoreOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw StorageError("cannot create storage.path " + path + ": " + ec.message());

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = options.max_background_jobs;
  // A torn WAL tail after a hard kill is expected; recover up to it.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db_options.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(options.write_buffer_total_bytes);
  db_options.keep_log_file_num = 4;
  db_options.max_open_files = options.max_open_files;
  // The table cache is an LRU split into 2^table_cache_numshardbits shards,
  // each holding its share of the capacity (max_open_files - 10). RocksDB's
  // default, 64 shards, left 2 table readers per shard: a third file hashed
  // to a shard evicted one, long before 128 were open (the session-9 soak
  // had at most 74 open of 200+). Every evicted table was reopened on its
  // next read (open, footer, properties, index and filter tops, a tail
  // prefetch buffer of up to 512 KiB), which was two thirds of the
  // evaluator workers' CPU in a soak (bench/README, "Results, session 10").
  // One shard is an exact LRU; its lock is taken once per table probed.
  db_options.table_cache_numshardbits = 0;
  db_options.writable_file_max_buffer_size = kWriteChunkBytes;
  // Every file goes through WalFiles (on top of the caller's Env, if any),
  // which is how sync_wal() fsyncs the WAL (scoring/wal_files.hpp).
  rocksdb::Env* base_env = options.env ? options.env.get() : rocksdb::Env::Default();
  auto wal_files = std::make_shared<WalFiles>(base_env->GetFileSystem());
  std::shared_ptr<rocksdb::Env> wal_env = rocksdb::NewCompositeEnv(wal_files);
  db_options.env = wal_env.get();

  const auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  const auto compression = pick_compression();

  auto base_cf_options = [&](bool bloom) {
    rocksdb::ColumnFamilyOptions o;
    rocksdb::BlockBasedTableOptions t;
    t.block_cache = cache;
    // Index and filter blocks are charged to the (bounded) block cache
    // instead of living with each open table reader; level-0 ones, hit by
    // every lookup, stay pinned, and all of them are evicted last.
    t.cache_index_and_filter_blocks = true;
    t.cache_index_and_filter_blocks_with_high_priority = true;
    t.pin_l0_filter_and_index_blocks_in_cache = true;
    // Partitioned: a lookup loads one 4 KiB partition of a table's index and
    // of its filter, not the whole of each (a full bloom filter is ~1.2 bytes
    // per key, 100+ KiB per table here). With whole blocks, the soak's tables
    // outgrew the 8 MiB cache: every point read of an older record re-read,
    // checksummed and decompressed full index and filter blocks, and
    // evaluations of deferred runs crawled at ~700/s on two busy cores. The
    // small top-level index of each table stays pinned.
    t.index_type = rocksdb::BlockBasedTableOptions::IndexType::kTwoLevelIndexSearch;
    t.partition_filters = bloom;
    t.metadata_block_size = 4096;
    t.pin_top_level_index_and_filter = true;
    if (bloom) t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
    o.compression = compression;
    o.write_buffer_size = options.write_buffer_bytes;
    o.max_bytes_for_level_base = options.level1_bytes;
    o.target_file_size_base = options.level1_file_bytes;
    o.target_file_size_multiplier = 2;
    o.level0_file_num_compaction_trigger = options.level0_compaction_trigger;
    return o;
  };

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (std::size_t i = 0; i < kCfNames.size(); ++i) {
    const auto which = static_cast<ColumnFamily>(i);
    // Point lookups by id hit records ("does the old version exist" on every
    // write), scores and eval_runs (every run first looks for its finished
    // 'R' entry, which a new run does not have). Their keys are random, so
    // every table of every level covers them: without a bloom filter, each
    // miss searched an index partition and a data block of every table.
    rocksdb::ColumnFamilyOptions o =
        base_cf_options(which == ColumnFamily::kRecords || which == ColumnFamily::kBodies ||
                        which == ColumnFamily::kScores || which == ColumnFamily::kEvalRuns);
    if (which == ColumnFamily::kBodies) {
      o.write_buffer_size = options.bodies_write_buffer_bytes;
      o.enable_blob_files = true;
      o.min_blob_size = options.blob_min_size;
      o.blob_compression_type = compression;
      // Retention deletes bodies; without blob GC their space never returns.
      o.enable_blob_garbage_collection = true;
    }
    o.memtable_insert_with_hint_prefix_extractor = insert_hint_prefix(which);
    o.table_properties_collector_factories.push_back(std::make_shared<YieldingCollectorFactory>());
    if (compacts_deletions_early(which)) {
      o.table_properties_collector_factories.emplace_back(
          rocksdb::NewCompactOnDeletionCollectorFactory(/*sliding_window_size=*/16384,
                                                        /*deletion_trigger=*/8192));
    }
    descriptors.emplace_back(std::string(kCfNames[i]), o);
  }

  // RocksDB refuses to open a database without naming every column family on
  // disk, including "default" and any created by a newer arbiter.
  std::vector<std::string> existing;
  const rocksdb::Status list_status = rocksdb::DB::ListColumnFamilies(db_options, path, &existing);
  if (list_status.IsCorruption()) throw_open_error(path, list_status);
  // Any other failure (typically: no database yet) → open creates it.
  const std::size_t known_count = descriptors.size();
  bool has_default = false;
  for (const auto& name : existing) {
    if (name == rocksdb::kDefaultColumnFamilyName) has_default = true;
    if (std::find(kCfNames.begin(), kCfNames.end(), name) == kCfNames.end()) {
      descriptors.emplace_back(name, base_cf_options(false));
    }
  }
  if (!has_default) {
    descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, base_cf_options(false));
  }

  auto opener = std::make_shared<Opener>();
  opener->path = path;
  opener->db_options = db_options;
  opener->descriptors = std::move(descriptors);
  opener->known_count = known_count;
  opener->env = options.env;
  opener->wal_files = std::move(wal_files);
  opener->wal_env = std::move(wal_env);
  opener->after_failed_write = options.after_failed_write;
  auto opened = opener->open();
  if (auto* failed = std::get_if<rocksdb::Status>(&opened)) throw_open_error(path, *failed);

  std::unique_ptr<Store> store(new Store(path, std::move(opener)));
  store->publish(std::get<std::shared_ptr<Instance>>(std::move(opened)));
  return store;
}

Store::~Store() { (void)close(); }

std::shared_ptr<Store::Instance> Store::publish(std::shared_ptr<Instance> instance, std::string why) {
  std::lock_guard lk(current_mu_);
  unavailable_ = std::move(why);
  std::swap(current_, instance);
  return instance;
}

std::shared_ptr<Store::Instance> Store::current() const {
  std::lock_guard lk(current_mu_);
  return current_;
}

Expected<Store::Lease> Store::lease() const {
  {
    std::lock_guard lk(current_mu_);
    if (current_ != nullptr) return Lease(current_);
    if (!unavailable_.empty()) return unavailable(unavailable_);
  }
  if (closed_.load(std::memory_order_acquire)) return unavailable("storage is closed");
  return unavailable("storage is being reopened");
}

void Store::note_failure(const rocksdb::Status& status) {
  // An I/O error (a full disk included) in a write or WAL sync leaves
  // RocksDB's WAL writer failed for good; see the top of store.hpp.
  if (status.IsIOError()) broken_.store(true, std::memory_order_release);
}

bool Store::wait_unleased(const std::shared_ptr<Instance>& instance, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (instance.use_count() > 1) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // use_count() is a relaxed read. Taking and dropping a reference (an
  // acq_rel increment in libstdc++) orders every Lease's last use of the
  // instance before the caller closes it.
  { const std::shared_ptr<Instance> order = instance; }
  return true;
}

Expected<void> Store::close() {
  std::lock_guard lock(reopen_mu_);
  if (closed_.exchange(true)) return {};
  auto instance = publish(nullptr, "storage is closed");
  if (instance == nullptr) return {};  // a reopen failed: nothing is open
  // Every Lease should have ended (the contract); wait out stragglers.
  (void)wait_unleased(instance, std::chrono::hours(1));
  Expected<void> result;
  if (!broken_.load(std::memory_order_acquire)) {
    const rocksdb::Status sync = instance->db->SyncWAL();
    if (!sync.ok()) result = status_error("sync WAL on close", sync);
  }
  auto closed = instance->close();
  if (!closed.ok() && result.ok()) result = std::move(closed);
  return result;
}

Expected<void> Store::write(std::span<const RequestRecord* const> records, bool sync,
                            const BatchExtension& extend) {
  if (records.empty()) return {};
  auto lease = this->lease();
  if (!lease.ok()) return std::move(lease).error();
  const Lease& db = *lease;
  if (broken()) return broken_error();
  if (auto space = ensure_free_space(*db.db().GetEnv(), path_); !space.ok()) return space;

  // Look up earlier versions of these ids in one MultiGet: with bloom
  // filters the usual answer ("none") costs no disk read. Ids the gateway
  // has just made (new_id) cannot have one and are not looked up.
  std::vector<std::string> record_keys;
  record_keys.reserve(records.size());
  for (const auto* r : records) record_keys.push_back(keys::record(r->project, r->request_id));
  std::vector<rocksdb::Slice> key_slices;
  std::vector<std::size_t> looked_up;  // index in records of each key_slices entry
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (records[i]->new_id) continue;
    key_slices.emplace_back(record_keys[i]);
    looked_up.push_back(i);
  }
  std::vector<rocksdb::PinnableSlice> old_values(key_slices.size());
  std::vector<rocksdb::Status> lookups(key_slices.size());
  if (!key_slices.empty()) {
    db.db().MultiGet(rocksdb::ReadOptions(), db.cf(ColumnFamily::kRecords), key_slices.size(), key_slices.data(),
                  old_values.data(), lookups.data());
  }
  std::vector<rocksdb::Status> statuses(records.size(), rocksdb::Status::NotFound());
  std::vector<rocksdb::PinnableSlice*> old_of(records.size(), nullptr);
  for (std::size_t j = 0; j < looked_up.size(); ++j) {
    statuses[looked_up[j]] = lookups[j];
    old_of[looked_up[j]] = &old_values[j];
  }

  rocksdb::WriteBatch batch;
  rocksdb::Status status;
  // Later records in the same batch may replace earlier ones.
  std::unordered_map<std::string_view, const RequestRecord*> in_batch;
  for (std::size_t i = 0; i < records.size() && status.ok(); ++i) {
    const RequestRecord& r = *records[i];
    if (auto it = in_batch.find(record_keys[i]); it != in_batch.end()) {
      delete_record(batch, db, *it->second, status);
    } else if (statuses[i].ok()) {
      auto old = decode_metadata(view(*old_of[i]));
      if (old.ok()) {
        old->project = r.project;  // key-derived; robust even if the value disagrees
        old->request_id = r.request_id;
        delete_record(batch, db, *old, status);
      } else {
        // Unreadable old version: its index entries cannot be derived. The
        // new version still replaces it; query-time checks skip stale entries.
        delete_bodies(batch, db, r.project, r.request_id, status);
      }
    } else if (!statuses[i].IsNotFound()) {
      return status_error("read previous version of request " + r.request_id, statuses[i]);
    }
    in_batch[record_keys[i]] = &r;

    if (status.ok()) {
      status = batch.Put(db.cf(ColumnFamily::kRecords), record_keys[i], encode_metadata(r));
    }
    const std::pair<keys::BodyKind, const std::string*> bodies[] = {
        {keys::BodyKind::kRequest, &r.request_body},
        {keys::BodyKind::kResponse, &r.response_body},
        {keys::BodyKind::kStreamRaw, &r.stream_raw}};
    for (const auto& [kind, bytes] : bodies) {
      if (!bytes->empty() && status.ok()) {
        status =
            batch.Put(db.cf(ColumnFamily::kBodies), keys::body(r.project, r.request_id, kind), *bytes);
      }
    }
    index_ops(batch, db, r, /*put=*/true, status);
  }
  if (!status.ok()) return status_error("build write batch", status);
  if (extend) extend(batch, db);
  return write_batch(db, batch, sync);
}

Expected<Store::MemoryUsage> Store::memory_usage() const {
  auto lease = this->lease();
  if (!lease.ok()) return std::move(lease).error();
  rocksdb::DB& db = lease->db();
  MemoryUsage m;
  std::uint64_t v = 0;
  if (db.GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) m.memtables = v;
  if (db.GetAggregatedIntProperty(rocksdb::DB::Properties::kEstimateTableReadersMem, &v)) m.table_readers = v;
  // One cache shared by every column family: read it once, not summed.
  if (db.GetIntProperty(rocksdb::DB::Properties::kBlockCacheUsage, &v)) m.block_cache = v;
  return m;
}

Expected<void> Store::commit(const Lease& lease, rocksdb::WriteBatch& batch, bool sync) {
  if (!lease) return unavailable("storage is closed");
  if (broken()) return broken_error();
  if (auto space = ensure_free_space(*lease.db().GetEnv(), path_); !space.ok()) return space;
  return write_batch(lease, batch, sync);
}

namespace {
// DB::Write through a function of our own, so that ThreadSanitizer's stacks
// of what happens inside (uninstrumented) librocksdb name Store::write_batch,
// its caller: a TSan frame is the caller's call site, and librocksdb's own
// frames are not recorded (tests/sanitizers/tsan.supp).
[[gnu::noinline]] rocksdb::Status db_write(rocksdb::DB& db, const rocksdb::WriteOptions& wo,
                                           rocksdb::WriteBatch& batch) {
  return db.Write(wo, &batch);
}
}  // namespace

Expected<void> Store::write_batch(const Lease& lease, rocksdb::WriteBatch& batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  const rocksdb::Status s = db_write(lease.db(), wo, batch);
  if (!s.ok()) {
    if (opener_->after_failed_write) opener_->after_failed_write();
    note_failure(s);
    return status_error("write batch", s);
  }
  return {};
}

Error Store::broken_error() {
  return storage_error("storage write failed: an I/O error stopped writes; they resume once the database is reopened");
}

Expected<void> Store::sync_wal() {
  auto lease = this->lease();
  if (!lease.ok()) return std::move(lease).error();
  // Nothing to make durable on a broken instance: the reopen replays what
  // reached the WAL. Not DB::SyncWAL(): see scoring/wal_files.hpp.
  if (broken()) return broken_error();
  const rocksdb::Status s = opener_->wal_files->sync();
  if (!s.ok()) {
    note_failure(s);
    return status_error("sync WAL", s);
  }
  return {};
}

Expected<void> Store::probe_write() const {
  // Through the database's Env, so a test's fault-injecting file system
  // sees it like any other write.
  rocksdb::Env& env = *opener_->db_options.env;  // always set: WalFiles over the caller's Env
  if (auto space = ensure_free_space(env, path_); !space.ok()) return space;
  const std::string probe = path_ + "/REOPEN_PROBE";
  std::unique_ptr<rocksdb::WritableFile> file;
  rocksdb::Status s = env.NewWritableFile(probe, &file, rocksdb::EnvOptions());
  if (s.ok()) s = file->Append("arbiter storage probe\n");
  if (s.ok()) s = file->Sync();
  if (file) {
    const rocksdb::Status closed = file->Close();
    if (s.ok()) s = closed;
  }
  (void)env.DeleteFile(probe);
  if (!s.ok()) return status_error("storage still failing", s);
  return {};
}

Expected<void> Store::resume(std::chrono::milliseconds lease_wait) {
  std::lock_guard lock(reopen_mu_);
  if (closed_.load(std::memory_order_acquire)) return unavailable("storage is closed");
  auto instance = current();
  if (instance != nullptr && !broken()) {
    // Resume() is a no-op without a background error; with one it retries
    // what failed (flush, WAL switch) and fails again while the cause stays.
    const rocksdb::Status s = instance->db->Resume();
    if (!s.ok()) {
      note_failure(s);
      return status_error("resume after storage error", s);
    }
    return {};
  }

  // Broken (or a reopen failed and nothing is open): reopen once the disk
  // takes writes again.
  if (auto probe = probe_write(); !probe.ok()) return probe;
  if (instance != nullptr) {
    publish(nullptr, "storage is being reopened after an I/O error");
    if (!wait_unleased(instance, lease_wait)) {
      publish(std::move(instance));
      return unavailable("storage reopen postponed: the database is still in use");
    }
    // No WAL sync: the WAL writer has failed. What reached the WAL before
    // the fault is replayed by the open below.
    (void)instance->close();
    instance.reset();
  }
  auto opened = opener_->open();
  if (auto* failed = std::get_if<rocksdb::Status>(&opened)) {
    auto error = status_error("reopen storage", *failed);
    publish(nullptr, error.message);
    return unavailable(error.message);
  }
  publish(std::get<std::shared_ptr<Instance>>(std::move(opened)));
  broken_.store(false, std::memory_order_release);
  reopens_.fetch_add(1, std::memory_order_relaxed);
  return {};
}

Expected<std::optional<RequestRecord>> Store::get(std::string_view project, std::string_view id,
                                                  bool include_bodies,
                                                  const rocksdb::Snapshot* snapshot) const {
  if (project.empty() || !valid_request_id(id)) return std::optional<RequestRecord>{};
  auto lease = this->lease();
  if (!lease.ok()) return std::move(lease).error();
  return get(*lease, project, id, include_bodies, snapshot);
}

Expected<std::optional<RequestRecord>> Store::get(const Lease& db, std::string_view project, std::string_view id,
                                                  bool include_bodies, const rocksdb::Snapshot* snapshot) {
  if (project.empty() || !valid_request_id(id)) return std::optional<RequestRecord>{};
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  rocksdb::PinnableSlice value;
  const rocksdb::Status s =
      db.db().Get(ro, db.cf(ColumnFamily::kRecords), keys::record(project, id), &value);
  if (s.IsNotFound()) return std::optional<RequestRecord>{};
  if (!s.ok()) return status_error("read request " + std::string(id), s);
  auto decoded = decode_metadata(view(value));
  if (!decoded.ok()) {
    return storage_error("request " + std::string(id) + ": " + decoded.error().message);
  }
  RequestRecord r = std::move(decoded).value();
  if (include_bodies) {
    std::array<std::string, 3> body_keys;
    std::array<rocksdb::Slice, 3> slices;
    for (std::size_t i = 0; i < kBodyKinds.size(); ++i) {
      body_keys[i] = keys::body(project, id, kBodyKinds[i]);
      slices[i] = slice(body_keys[i]);
    }
    std::array<rocksdb::PinnableSlice, 3> values;
    std::array<rocksdb::Status, 3> statuses;
    db.db().MultiGet(ro, db.cf(ColumnFamily::kBodies), slices.size(), slices.data(), values.data(),
                  statuses.data());
    std::string* targets[] = {&r.request_body, &r.response_body, &r.stream_raw};
    for (std::size_t i = 0; i < kBodyKinds.size(); ++i) {
      if (statuses[i].IsNotFound()) continue;
      if (!statuses[i].ok()) {
        return status_error("read body of request " + std::string(id), statuses[i]);
      }
      targets[i]->assign(values[i].data(), values[i].size());
    }
  }
  return std::optional<RequestRecord>(std::move(r));
}

Expected<bool> Store::contains(std::string_view project, std::string_view id) const {
  if (project.empty() || !valid_request_id(id)) return false;
  auto lease = this->lease();
  if (!lease.ok()) return std::move(lease).error();
  rocksdb::PinnableSlice value;
  const rocksdb::Status s = lease->db().Get(rocksdb::ReadOptions(), lease->cf(ColumnFamily::kRecords),
                                     keys::record(project, id), &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return status_error("read request " + std::string(id), s);
  return true;
}

Expected<RetentionStats> Store::delete_older_than(std::int64_t cutoff_us, const std::atomic<bool>* cancel,
                                                  const RetentionExtension& also) {
  auto lease = this->lease();
  if (!lease.ok()) return std::move(lease).error();
  const Lease& db = *lease;
  RetentionStats stats;
  rocksdb::WriteBatch batch;
  std::size_t in_batch = 0;
  auto flush = [&]() -> Expected<void> {
    if (in_batch == 0) return {};
    auto written = commit(db, batch, /*sync=*/false);
    batch.Clear();
    in_batch = 0;
    if (!written.ok()) return Error{written.error().code, "retention delete: " + written.error().message};
    return {};
  };

  // Walk the time index project by project: within a project everything
  // older than the cutoff is one contiguous key range at its start. Point
  // deletes rather than DeleteRange on idx_time: a record written late with
  // an old created_at (manual log ingestion) could land inside the range
  // after the scan, and a range tombstone would orphan it from the index.
  std::unique_ptr<rocksdb::Iterator> it(
      db.db().NewIterator(rocksdb::ReadOptions(), db.cf(ColumnFamily::kIdxTime)));
  it->SeekToFirst();
  while (it->Valid()) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) break;
    const std::string_view key = view(it->key());
    const std::size_t terminator = key.find('\0');
    if (terminator == std::string_view::npos) {
      it->Next();  // not one of ours; leave it alone
      continue;
    }
    const std::string prefix(key.substr(0, terminator + 1));
    // The project name, unescaped, for building its other keys.
    std::string project;
    for (std::size_t i = 0; i < terminator; ++i) {
      if (key[i] == '\x01' && i + 1 < terminator) {
        project.push_back(key[i + 1] == '\x01' ? '\0' : '\x01');
        ++i;
      } else {
        project.push_back(key[i]);
      }
    }

    for (; it->Valid(); it->Next()) {
      const std::string_view k = view(it->key());
      if (!k.starts_with(prefix)) break;
      const auto entry = keys::parse_entry(k, prefix.size());
      if (!entry || entry->ts_us >= cutoff_us) break;

      rocksdb::PinnableSlice value;
      const rocksdb::Status s = db.db().Get(rocksdb::ReadOptions(), db.cf(ColumnFamily::kRecords),
                                         keys::record(project, entry->id), &value);
      rocksdb::Status bs;
      std::optional<RequestRecord> record;
      if (s.ok()) {
        auto decoded = decode_metadata(view(value));
        if (decoded.ok()) record = std::move(decoded).value();
      } else if (!s.IsNotFound()) {
        return status_error("retention read", s);
      }
      if (record && record->created_at_us == entry->ts_us) {
        record->project = project;
        record->request_id = std::string(entry->id);
        delete_record(batch, db, *record, bs);
        ++stats.records_deleted;
        if (also) {
          auto extra = also(batch, db, project, entry->id);
          if (!extra.ok()) return std::move(extra).error();
          stats.scores_deleted += *extra;
        }
      } else {
        // The record is gone, unreadable, or a newer version with another
        // time: only this entry is stale.
        bs = batch.Delete(db.cf(ColumnFamily::kIdxTime), it->key());
        ++stats.stale_entries_deleted;
      }
      if (!bs.ok()) return status_error("retention batch", bs);
      if (++in_batch >= kRetentionBatch) {
        if (auto r = flush(); !r.ok()) return std::move(r).error();
        if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) break;
      }
    }
    if (!it->status().ok()) return status_error("retention scan", it->status());
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) break;
    // Skip the rest of this project (all newer than the cutoff).
    it->Seek(keys::prefix_end(prefix));
  }
  if (!it->status().ok()) return status_error("retention scan", it->status());
  if (auto r = flush(); !r.ok()) return std::move(r).error();
  return stats;
}

}  // namespace arbiter::scoring
