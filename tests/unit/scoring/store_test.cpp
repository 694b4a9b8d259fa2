#include "scoring/store.hpp"
#include "tests/support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/metadata.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/table_properties.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <chrono>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "scoring/background_thread.hpp"
#include "scoring/eval_runs.hpp"
#include "scoring/keys.hpp"
#include "scoring/score_store.hpp"
#include "scoring/webhook_outbox.hpp"

namespace arbiter::scoring {
namespace {

using arbiter::testing::TempDir;

// A fresh directory per test, removed afterwards.
RequestRecord make_record(std::string project, std::string id, std::int64_t ts) {
  RequestRecord r;
  r.project = std::move(project);
  r.request_id = std::move(id);
  r.created_at_us = ts;
  r.status = 200;
  r.request_model = "gpt-4o";
  r.user_id = "alice";
  r.session_id = "s1";
  r.properties = {{"env", "prod"}};
  r.request_body = R"({"model":"gpt-4o"})";
  r.response_body = std::string(10000, 'x');  // big enough for a blob file
  r.stream_raw = "data: [DONE]\n\n";
  return r;
}

Expected<void> write_one(Store& store, const RequestRecord& r, bool sync = false) {
  const RequestRecord* p = &r;
  return store.write(std::span<const RequestRecord* const>(&p, 1), sync);
}

std::size_t count_entries(const Store& store, ColumnFamily cf) {
  const auto db = *store.lease();
  std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(rocksdb::ReadOptions(), db.cf(cf)));
  std::size_t n = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
  EXPECT_TRUE(it->status().ok());
  return n;
}

TEST(Store, CreatesEveryColumnFamily) {
  TempDir dir;
  {
    auto store = Store::open(dir.path());
    const auto db = *store->lease();
    for (std::size_t i = 0; i < static_cast<std::size_t>(ColumnFamily::kCount); ++i) {
      EXPECT_NE(db.cf(static_cast<ColumnFamily>(i)), nullptr);
    }
  }
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.path(), &names).ok());
  for (const char* want :
       {"records", "bodies", "idx_time", "idx_user", "idx_session", "idx_property", "idx_model",
        "scores", "idx_score", "outbox", "eval_runs"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
  // Reopening an existing database works.
  EXPECT_NO_THROW(Store::open(dir.path()));
}

// The options of every column family of a new store, in ColumnFamily order.
std::vector<rocksdb::Options> options_by_column_family() {
  TempDir dir;
  auto store = Store::open(dir.path());
  const auto db = *store->lease();
  std::vector<rocksdb::Options> by_cf;
  for (std::size_t i = 0; i < static_cast<std::size_t>(ColumnFamily::kCount); ++i) {
    by_cf.push_back(db.db().GetOptions(db.cf(static_cast<ColumnFamily>(i))));
  }
  return by_cf;
}

// Every table's index, and the bloom filter where there is one, is
// partitioned: a point read loads one small partition, not a whole index or
// filter, so the bounded block cache holds what lookups need (the soak with
// whole blocks re-read and decompressed them on nearly every read).
TEST(Store, IndexesAndFiltersArePartitioned) {
  const std::vector<rocksdb::Options> by_cf = options_by_column_family();
  for (std::size_t i = 0; i < by_cf.size(); ++i) {
    const rocksdb::Options& options = by_cf[i];
    const auto* table = options.table_factory->GetOptions<rocksdb::BlockBasedTableOptions>();
    ASSERT_NE(table, nullptr) << i;
    EXPECT_EQ(table->index_type, rocksdb::BlockBasedTableOptions::IndexType::kTwoLevelIndexSearch) << i;
    EXPECT_TRUE(table->cache_index_and_filter_blocks) << i;
    EXPECT_EQ(table->partition_filters, table->filter_policy != nullptr) << i;
  }
  const rocksdb::Options& records_cf = by_cf[static_cast<std::size_t>(ColumnFamily::kRecords)];
  const auto* records = records_cf.table_factory->GetOptions<rocksdb::BlockBasedTableOptions>();
  EXPECT_TRUE(records->partition_filters);
}

// The column families read by random id have bloom filters, so a lookup of
// an id that is not there (a new evaluator run's finished entry, a record's
// old version) skips the tables instead of searching each of them.
TEST(Store, ColumnFamiliesReadByIdHaveBloomFilters) {
  const std::vector<rocksdb::Options> by_cf = options_by_column_family();
  for (ColumnFamily cf : {ColumnFamily::kRecords, ColumnFamily::kBodies, ColumnFamily::kScores, ColumnFamily::kEvalRuns}) {
    const auto& options = by_cf[static_cast<std::size_t>(cf)];
    const auto* table = options.table_factory->GetOptions<rocksdb::BlockBasedTableOptions>();
    ASSERT_NE(table, nullptr);
    EXPECT_NE(table->filter_policy, nullptr) << static_cast<int>(cf);
  }
}

// Files that are mostly deletions are compacted early only where deletions
// come in runs (the old end of a time-ordered index). In a column family keyed
// by id they are scattered: eval_runs deletes a 'P' marker for every finished
// run, and compacting each flushed file for it rewrote the whole level below.
// The outbox deletes queue and state entries with every delivery, so every
// file it flushed was pushed down early the same way.
TEST(Store, OnlyTimeOrderedIndexesCompactFilesOfDeletionsEarly) {
  const std::vector<rocksdb::Options> by_cf = options_by_column_family();
  // Every column family also has the yield-point collector; the others:
  auto collectors_of = [&](ColumnFamily cf) {
    std::vector<std::string> names;
    for (const auto& factory : by_cf[static_cast<std::size_t>(cf)].table_properties_collector_factories) {
      if (std::string(factory->Name()) != "ArbiterYield") names.emplace_back(factory->Name());
    }
    return names;
  };
  const std::set<ColumnFamily> time_ordered_indexes = {ColumnFamily::kIdxTime,     ColumnFamily::kIdxUser,
                                                        ColumnFamily::kIdxSession,  ColumnFamily::kIdxProperty,
                                                        ColumnFamily::kIdxModel,    ColumnFamily::kIdxScore};
  for (std::size_t i = 0; i < by_cf.size(); ++i) {
    const rocksdb::Options& options = by_cf[i];
    const bool time_ordered = time_ordered_indexes.count(static_cast<ColumnFamily>(i)) != 0;
    EXPECT_EQ(options.table_properties_collector_factories.size(), time_ordered ? 2u : 1u) << i;
    const std::vector<std::string> collectors = collectors_of(static_cast<ColumnFamily>(i));
    if (time_ordered) {
      ASSERT_EQ(collectors.size(), 1u) << i;
      EXPECT_NE(collectors[0].find("CompactOnDeletion"), std::string::npos) << i << ": " << collectors[0];
    } else {
      EXPECT_TRUE(collectors.empty()) << i << ": " << collectors.front();
    }
  }
  EXPECT_TRUE(collectors_of(ColumnFamily::kEvalRuns).empty());
  EXPECT_TRUE(collectors_of(ColumnFamily::kOutbox).empty());
  EXPECT_FALSE(collectors_of(ColumnFamily::kIdxTime).empty());
}

// RocksDB writes table and blob files in pieces of at most 64 KiB, not its
// default 1 MiB: one big write(2) holds its CPU for about a millisecond on a
// kernel without preemption.
TEST(Store, TableFilesAreWrittenInSmallPieces) {
  TempDir dir;
  auto store = Store::open(dir.path());
  const auto db = *store->lease();
  EXPECT_EQ(db.db().GetDBOptions().writable_file_max_buffer_size, 64u << 10);
}

// A store scaled down so that a few thousand records make many table files:
// 1 MiB of memtables in all, `memtable` per column family, level 1 capped at
// `level1` in files of `file` bytes.
StoreOptions small_tables(std::size_t memtable, std::uint64_t level1, std::uint64_t file) {
  StoreOptions options;
  options.write_buffer_total_bytes = 1u << 20;
  options.write_buffer_bytes = memtable;
  options.bodies_write_buffer_bytes = memtable;
  options.level1_bytes = level1;
  options.level1_file_bytes = file;
  return options;
}

// True once no column family has a compaction pending or running.
bool compactions_settled(const Store::Lease& db) {
  std::uint64_t running = 1;
  db.db().GetIntProperty("rocksdb.num-running-compactions", &running);
  if (running != 0) return false;
  for (std::size_t i = 0; i < static_cast<std::size_t>(ColumnFamily::kCount); ++i) {
    std::uint64_t pending = 1;
    db.db().GetIntProperty(db.cf(static_cast<ColumnFamily>(i)), "rocksdb.compaction-pending", &pending);
    if (pending != 0) return false;
  }
  return true;
}

// A flush builds its table in one run of CPU; RocksDB's thread passes a
// yield point every 16 keys (store.cpp, YieldingCollector), so a proxy thread
// waiting for that CPU gets it within the quantum. With the quantum at 0,
// each of those points yields.
TEST(Store, FlushesPassYieldPointsAsTheyBuildTables) {
  TempDir dir;
  auto store = Store::open(dir.path(), StoreOptions{});
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(write_one(*store, make_record("alpha", random_uuid(), 1'700'000'000'000'000 + i)).ok());
  }
  const auto db = *store->lease();
  set_yield_quantum_us_for_testing(0);
  const auto before = yields_made();
  ASSERT_TRUE(db.db().Flush(rocksdb::FlushOptions(), db.cf(ColumnFamily::kRecords)).ok());
  const auto yielded = yields_made() - before;
  set_yield_quantum_us_for_testing(-1);
  EXPECT_GE(yielded, 2000u / 16);
}

// Level 1 is capped (StoreOptions::level1_bytes): past it, tables move down
// to level 2 a file at a time. With RocksDB's default 256 MiB cap, level 1
// grew with the log and every level-0 compaction of a column family keyed by
// random id rewrote all of it. Scaled down here: a 128 KiB cap, 64 KiB
// memtables, a few MiB of records under random ids.
TEST(Store, LevelOneIsCappedSoLevelZeroCompactionsStaySmall) {
  TempDir dir;
  const StoreOptions options = small_tables(/*memtable=*/64u << 10, /*level1=*/128u << 10, /*file=*/32u << 10);
  auto store = Store::open(dir.path(), options);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 12000; ++i) {
    RequestRecord r = make_record("alpha", random_uuid(), 1'700'000'000'000'000 + i);
    r.response_body = std::to_string(rng());  // small: stays in the records' tables
    ASSERT_TRUE(write_one(*store, r).ok());
  }
  const auto db = *store->lease();
  rocksdb::ColumnFamilyHandle* records = db.cf(ColumnFamily::kRecords);
  ASSERT_TRUE(db.db().Flush(rocksdb::FlushOptions(), records).ok());
  auto level_bytes = [&](int level) {
    rocksdb::ColumnFamilyMetaData meta;
    db.db().GetColumnFamilyMetaData(records, &meta);
    return meta.levels.at(static_cast<std::size_t>(level)).size;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!(compactions_settled(db) && level_bytes(2) > 0) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(level_bytes(2), 0u) << "nothing moved below level 1";
  // Settled, level 1 holds no more than its cap (with a file of slack).
  EXPECT_LE(level_bytes(1), options.level1_bytes + 2 * options.level1_file_bytes);
  EXPECT_GT(level_bytes(1) + level_bytes(2) + level_bytes(3), 4 * options.level1_bytes);
}

// Level-0 files are compacted into level 1 only once there are
// StoreOptions::level0_compaction_trigger of them (8, not RocksDB's 4): each
// such compaction rewrites all of a randomly keyed level 1, so waiting for
// more files halves those rewrites.
TEST(Store, LevelZeroWaitsForEightFilesBeforeCompacting) {
  TempDir dir;
  const StoreOptions options = small_tables(/*memtable=*/64u << 10, /*level1=*/128u << 10, /*file=*/32u << 10);
  ASSERT_EQ(options.level0_compaction_trigger, 8);
  auto store = Store::open(dir.path(), options);
  const auto db = *store->lease();
  rocksdb::ColumnFamilyHandle* records = db.cf(ColumnFamily::kRecords);
  auto level0_files = [&] {
    rocksdb::ColumnFamilyMetaData meta;
    db.db().GetColumnFamilyMetaData(records, &meta);
    return meta.levels.at(0).files.size();
  };
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(write_one(*store, make_record("alpha", random_uuid(), 1'700'000'000'000'000 + i)).ok());
    ASSERT_TRUE(db.db().Flush(rocksdb::FlushOptions(), records).ok());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!compactions_settled(db) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(level0_files(), 7u) << "a compaction started before 8 level-0 files";
  ASSERT_TRUE(write_one(*store, make_record("alpha", random_uuid(), 1'700'000'000'000'100)).ok());
  ASSERT_TRUE(db.db().Flush(rocksdb::FlushOptions(), records).ok());
  while (level0_files() >= 8 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LT(level0_files(), 8u) << "the eighth file did not start a compaction";
}

// A table file, once opened, stays open while fewer than max_open_files are:
// the table cache is one exact LRU. RocksDB's default splits it into 64
// shards of 2 readers each, so with a few dozen files some shards overflowed
// and their tables were closed and reopened on every other read. Scaled
// down: tiny table files, so the records column family has dozens of them.
TEST(Store, TableFilesStayOpenWhileFewerThanTheCap) {
  TempDir dir;
  const StoreOptions options = small_tables(/*memtable=*/32u << 10, /*level1=*/32u << 10, /*file=*/2u << 10);
  auto store = Store::open(dir.path(), options);
  std::vector<std::string> ids;
  for (int i = 0; i < 2500; ++i) {
    ids.push_back(random_uuid());
    RequestRecord r = make_record("alpha", ids.back(), 1'700'000'000'000'000 + i);
    r.response_body = std::to_string(i);
    ASSERT_TRUE(write_one(*store, r).ok());
  }
  const auto db = *store->lease();
  for (std::size_t i = 0; i < static_cast<std::size_t>(ColumnFamily::kCount); ++i) {
    ASSERT_TRUE(db.db().Flush(rocksdb::FlushOptions(), db.cf(static_cast<ColumnFamily>(i))).ok());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!compactions_settled(db) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<rocksdb::LiveFileMetaData> live;
  db.db().GetLiveFilesMetaData(&live);
  std::set<std::string> records_files;
  for (const auto& f : live) {
    if (f.column_family_name == "records") records_files.insert(f.relative_filename);
  }
  // The premise: many tables to read, all of them together within the cap.
  ASSERT_GE(records_files.size(), 24u) << live.size() << " table files in all";
  ASSERT_LT(live.size(), static_cast<std::size_t>(options.max_open_files - 10));

  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& id : ids) {
      auto got = store->get("alpha", id, /*include_bodies=*/false);
      ASSERT_TRUE(got.ok() && got->has_value()) << id;
    }
  }
  const auto db_dir = std::filesystem::weakly_canonical(dir.path());
  std::set<std::string> open_files;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(fd.path(), ec);
    if (!ec && target.parent_path() == db_dir) open_files.insert(target.filename().string());
  }
  std::vector<std::string> closed;
  for (const auto& name : records_files) {
    if (!open_files.contains(name)) closed.push_back(name);
  }
  EXPECT_TRUE(closed.empty()) << closed.size() << " of the records column family's " << records_files.size()
                              << " table files are not open after reading every record; "
                              << live.size() << " table files in all";
}

// RocksDB's own memory, as /metrics reports it: memtables while records wait
// in them, table readers once they are flushed, cached blocks once read.
TEST(Store, ReportsRocksDbMemory) {
  TempDir dir;
  auto store = Store::open(dir.path());
  auto empty = store->memory_usage();
  ASSERT_TRUE(empty.ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    ids.push_back(random_uuid());
    RequestRecord r = make_record("alpha", ids.back(), 1'700'000'000'000'000 + i);
    r.response_body = std::string(512, 'x');
    ASSERT_TRUE(write_one(*store, r).ok());
  }
  auto written = store->memory_usage();
  ASSERT_TRUE(written.ok());
  EXPECT_GT(written->memtables, empty->memtables);
  EXPECT_EQ(written->table_readers, 0u);  // nothing flushed yet

  {
    const auto db = *store->lease();
    for (std::size_t i = 0; i < static_cast<std::size_t>(ColumnFamily::kCount); ++i) {
      ASSERT_TRUE(db.db().Flush(rocksdb::FlushOptions(), db.cf(static_cast<ColumnFamily>(i))).ok());
    }
  }
  for (const auto& id : ids) ASSERT_TRUE(store->get("alpha", id, /*include_bodies=*/true).ok());
  auto flushed = store->memory_usage();
  ASSERT_TRUE(flushed.ok());
  EXPECT_GT(flushed->table_readers, 0u);
  EXPECT_GT(flushed->block_cache, 0u);
  EXPECT_LT(flushed->memtables, written->memtables);

  ASSERT_TRUE(store->close().ok());
  EXPECT_EQ(store->memory_usage().error().code, ErrorCode::kUnavailable);
}

// Time-ordered index keys are inserted with a hint: RocksDB keeps the
// memtable position of the last insert per prefix, so the prefix must be
// exactly the part of the key before the timestamp (else every insert would
// start from a useless hint, or keys of different series would share one).
TEST(Store, TimeOrderedIndexesHintMemtableInsertsByTheirSeriesPrefix) {
  TempDir dir;
  auto store = Store::open(dir.path());
  const auto db = *store->lease();
  auto extractor = [&](ColumnFamily cf) {
    return db.db().GetOptions(db.cf(cf)).memtable_insert_with_hint_prefix_extractor;
  };
  // A project, user, value… with the escaped bytes and a timestamp holding 0x00.
  const std::string project = std::string("p\0j", 3) + "\x01";
  const std::int64_t ts = 0x0100000000000000;  // big-endian bytes with 0x00s
  auto expect_series = [&](ColumnFamily cf, const std::string& prefix) {
    const auto hint = extractor(cf);
    ASSERT_NE(hint, nullptr) << column_family_name(cf);
    const std::string key = keys::entry(prefix, ts, "id-1");
    const rocksdb::Slice slice(key);
    ASSERT_TRUE(hint->InDomain(slice)) << column_family_name(cf);
    EXPECT_EQ(hint->Transform(slice).ToString(), prefix) << column_family_name(cf);
  };
  expect_series(ColumnFamily::kIdxTime, keys::time_prefix(project));
  expect_series(ColumnFamily::kIdxUser, keys::user_prefix(project, "u\0"));
  expect_series(ColumnFamily::kIdxSession, keys::session_prefix(project, "s"));
  expect_series(ColumnFamily::kIdxModel, keys::model_prefix(project, "gpt-4o"));
  expect_series(ColumnFamily::kIdxProperty, keys::property_prefix(project, "env", "prod"));
  expect_series(ColumnFamily::kIdxScore, score_keys::time_prefix(project, "quality"));
  expect_series(ColumnFamily::kIdxScore, std::string("A") + keys::part(project));
  expect_series(ColumnFamily::kOutbox, outbox::queue_prefix("hook"));
  expect_series(ColumnFamily::kOutbox, outbox::list_prefix(project, "hook"));
  expect_series(ColumnFamily::kOutbox, outbox::state_prefix(project, DeliveryState::kPending, "hook"));
  expect_series(ColumnFamily::kOutbox, std::string(1, outbox::kPruneTag));
  // Ordered by value, not time: no hint.
  const std::string by_value = score_keys::value_prefix(project, "quality") + "12345678";
  EXPECT_FALSE(extractor(ColumnFamily::kIdxScore)->InDomain(by_value));
}

// Keys that lead with a request id form one series per project: the ids
// arbiter makes sort by time (gateway::new_request_id), so the hint is the
// part before the id, and inserts of a batch's records, bodies, run markers
// and scores each continue where the previous one stopped.
TEST(Store, RequestKeyedColumnFamiliesHintMemtableInsertsByProject) {
  TempDir dir;
  auto store = Store::open(dir.path());
  const auto db = *store->lease();
  auto hinted_prefix = [&](ColumnFamily cf, const std::string& key) -> std::string {
    const auto hint = db.db().GetOptions(db.cf(cf)).memtable_insert_with_hint_prefix_extractor;
    if (hint == nullptr || !hint->InDomain(key)) return "<no hint>";
    return hint->Transform(key).ToString();
  };
  const std::string project = std::string("p\0j", 3);
  const std::string id = "019ab3c4-5d6e-4f70-8a9b-0c1d2e3f4a5b";
  const std::string p = keys::part(project);
  EXPECT_EQ(hinted_prefix(ColumnFamily::kRecords, keys::record(project, id)), p);
  EXPECT_EQ(hinted_prefix(ColumnFamily::kBodies, keys::body(project, id, keys::BodyKind::kResponse)), p);
  EXPECT_EQ(hinted_prefix(ColumnFamily::kEvalRuns, run_keys::run(project, id, "judge")), "R" + p);
  EXPECT_EQ(hinted_prefix(ColumnFamily::kEvalRuns, run_keys::active(project, id, "judge")), "P" + p);
  EXPECT_EQ(hinted_prefix(ColumnFamily::kScores,
                          score_keys::score(project, score_keys::target_request(id), "quality")),
            "S" + p);
  EXPECT_EQ(hinted_prefix(ColumnFamily::kOutbox, outbox::request_prefix(project, id) + "msg_1"), "R" + p);
  EXPECT_EQ(hinted_prefix(ColumnFamily::kOutbox, outbox::delivery_key("msg_019ab3c45d6e0123")), "D");
  // Other score entries (by id, names, configs) are not a series.
  EXPECT_EQ(hinted_prefix(ColumnFamily::kScores, "I" + p + keys::part("score-id")), "<no hint>");
}

TEST(Store, NestedPathIsCreated) {
  TempDir dir;
  const std::string nested = dir.path().string() + "/a/b/data";
  EXPECT_NO_THROW(Store::open(nested));
}

TEST(Store, LockedDirectoryIsAClearError) {
  TempDir dir;
  auto first = Store::open(dir.path());
  try {
    auto second = Store::open(dir.path());
    FAIL() << "second open succeeded";
  } catch (const StorageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("storage.path " + dir.path().string() + " is locked by another process"),
              std::string::npos)
        << msg;
  }
}

TEST(Store, CorruptDirectoryIsAClearError) {
  TempDir dir;
  { auto store = Store::open(dir.path()); }
  {
    std::ofstream current(dir.path().string() + "/CURRENT", std::ios::trunc);
    current << "garbage-without-newline";
  }
  try {
    auto store = Store::open(dir.path());
    FAIL() << "open of a corrupt database succeeded";
  } catch (const StorageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("storage.path " + dir.path().string() + " is corrupt"), std::string::npos) << msg;
  }
}

TEST(Store, PathThatIsAFileIsAClearError) {
  TempDir dir;
  const std::string file = dir.path().string() + "/not-a-dir";
  std::ofstream(file) << "x";
  try {
    auto store = Store::open(file);
    FAIL() << "open succeeded";
  } catch (const StorageError& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
}

TEST(Store, WriteThenGetWithAndWithoutBodies) {
  TempDir dir;
  auto store = Store::open(dir.path());
  const RequestRecord r = make_record("p1", "id-1", 1000);
  ASSERT_TRUE(write_one(*store, r, /*sync=*/true).ok());

  auto meta = store->get("p1", "id-1", false);
  ASSERT_TRUE(meta.ok()) << meta.error().message;
  ASSERT_TRUE(meta->has_value());
  EXPECT_EQ((*meta)->user_id, "alice");
  EXPECT_TRUE((*meta)->request_body.empty());
  EXPECT_TRUE((*meta)->response_body.empty());

  auto full = store->get("p1", "id-1", true);
  ASSERT_TRUE(full.ok());
  ASSERT_TRUE(full->has_value());
  EXPECT_EQ((*full)->request_body, r.request_body);
  EXPECT_EQ((*full)->response_body, r.response_body);
  EXPECT_EQ((*full)->stream_raw, r.stream_raw);

  EXPECT_TRUE(*store->contains("p1", "id-1"));
  EXPECT_FALSE(*store->contains("p1", "id-2"));
}

TEST(Store, ProjectsAreIsolated) {
  TempDir dir;
  auto store = Store::open(dir.path());
  ASSERT_TRUE(write_one(*store, make_record("p1", "shared-id", 1)).ok());
  auto other = store->get("p2", "shared-id", true);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
  EXPECT_FALSE(*store->contains("p2", "shared-id"));
  // A project whose name extends another's is a different project too.
  EXPECT_FALSE(store->get("p", "shared-id", false)->has_value());
  EXPECT_FALSE(store->get("p1x", "shared-id", false)->has_value());
}

TEST(Store, EmptyBodiesAreNotStored) {
  TempDir dir;
  auto store = Store::open(dir.path());
  RequestRecord r = make_record("p", "id", 1);
  r.request_body.clear();
  r.response_body.clear();
  r.stream_raw.clear();
  r.request_omitted = true;
  ASSERT_TRUE(write_one(*store, r).ok());
  EXPECT_EQ(count_entries(*store, ColumnFamily::kBodies), 0u);
  auto got = store->get("p", "id", true);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_TRUE((*got)->request_omitted);
}

TEST(Store, WritesEveryIndexEntry) {
  TempDir dir;
  auto store = Store::open(dir.path());
  RequestRecord r = make_record("p", "id", 1);
  r.properties = {{"env", "prod"}, {"team", "a"}};
  ASSERT_TRUE(write_one(*store, r).ok());
  EXPECT_EQ(count_entries(*store, ColumnFamily::kRecords), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kBodies), 3u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxTime), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxUser), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxSession), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxModel), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxProperty), 2u);

  // No user / session / model → no entries for them.
  RequestRecord bare;
  bare.project = "p";
  bare.request_id = "bare";
  bare.created_at_us = 2;
  ASSERT_TRUE(write_one(*store, bare).ok());
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxTime), 2u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxUser), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxModel), 1u);
}

TEST(Store, RewritingAnIdReplacesItsIndexEntries) {
  TempDir dir;
  auto store = Store::open(dir.path());
  ASSERT_TRUE(write_one(*store, make_record("p", "id", 1000)).ok());
  RequestRecord v2 = make_record("p", "id", 2000);
  v2.user_id = "bob";
  v2.properties = {{"env", "dev"}};
  v2.stream_raw.clear();
  ASSERT_TRUE(write_one(*store, v2).ok());

  EXPECT_EQ(count_entries(*store, ColumnFamily::kRecords), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxTime), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxUser), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxProperty), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kBodies), 2u);  // old stream_raw is gone
  std::string value;
  EXPECT_TRUE(store->lease()->db()
                  .Get(rocksdb::ReadOptions(), store->lease()->cf(ColumnFamily::kIdxUser),
                       keys::entry(keys::user_prefix("p", "bob"), 2000, "id"), &value)
                  .ok());
  auto got = store->get("p", "id", false);
  EXPECT_EQ((*got)->user_id, "bob");
}

TEST(Store, DuplicateIdsInOneBatchKeepTheLast) {
  TempDir dir;
  auto store = Store::open(dir.path());
  RequestRecord a = make_record("p", "id", 1000);
  RequestRecord b = make_record("p", "id", 3000);
  b.user_id = "carol";
  const RequestRecord* batch[] = {&a, &b};
  ASSERT_TRUE(store->write(batch, false).ok());
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxTime), 1u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxUser), 1u);
  EXPECT_EQ((*store->get("p", "id", false))->user_id, "carol");
}

// Gateway-made ids (new_id) skip the look-up of an earlier version; in a
// batch that mixes them with a client id that replaces an earlier record,
// the replaced record must still lose its old index entries.
TEST(Store, NewIdsMixedWithAReplacementInOneBatch) {
  TempDir dir;
  auto store = Store::open(dir.path());
  ASSERT_TRUE(write_one(*store, make_record("p", "client-id", 1000)).ok());
  RequestRecord fresh1 = make_record("p", "fresh-1", 2000);
  fresh1.new_id = true;
  RequestRecord replacement = make_record("p", "client-id", 3000);
  replacement.user_id = "bob";
  replacement.properties = {{"env", "dev"}};
  RequestRecord fresh2 = make_record("p", "fresh-2", 4000);
  fresh2.new_id = true;
  const RequestRecord* batch[] = {&fresh1, &replacement, &fresh2};
  ASSERT_TRUE(store->write(batch, false).ok());

  EXPECT_EQ(count_entries(*store, ColumnFamily::kRecords), 3u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxTime), 3u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxUser), 3u);      // alice, bob, alice
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxProperty), 3u);  // the old env=prod is gone
  std::string value;
  EXPECT_TRUE(store->lease()->db()
                  .Get(rocksdb::ReadOptions(), store->lease()->cf(ColumnFamily::kIdxUser),
                       keys::entry(keys::user_prefix("p", "alice"), 1000, "client-id"), &value)
                  .IsNotFound());
  EXPECT_EQ((*store->get("p", "client-id", false))->user_id, "bob");
  EXPECT_EQ((*store->get("p", "fresh-2", false))->user_id, "alice");
}

TEST(Store, DeleteOlderThanRemovesEverythingOfOldRecords) {
  TempDir dir;
  auto store = Store::open(dir.path());
  for (int i = 0; i < 10; ++i) {
    for (const char* project : {"a", "b"}) {
      RequestRecord r = make_record(project, "id-" + std::to_string(i), 1000 * (i + 1));
      r.properties = {{"env", "prod"}, {"i", std::to_string(i)}};
      ASSERT_TRUE(write_one(*store, r).ok());
    }
  }
  // Records 0..4 (ts 1000..5000) are older than 5500.
  auto stats = store->delete_older_than(5500);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->records_deleted, 10u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kRecords), 10u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kBodies), 30u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxTime), 10u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxUser), 10u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxSession), 10u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxModel), 10u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxProperty), 20u);
  for (const char* project : {"a", "b"}) {
    EXPECT_FALSE(store->get(project, "id-4", false)->has_value());
    EXPECT_TRUE(store->get(project, "id-5", false)->has_value());
  }
  // A second pass finds nothing more.
  EXPECT_EQ(store->delete_older_than(5500)->records_deleted, 0u);
}

TEST(Store, DeleteOlderThanStopsWhenCancelled) {
  TempDir dir;
  auto store = Store::open(dir.path());
  ASSERT_TRUE(write_one(*store, make_record("p", "id", 1)).ok());
  std::atomic<bool> cancel{true};
  auto stats = store->delete_older_than(100, &cancel);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->records_deleted, 0u);
  EXPECT_TRUE(store->get("p", "id", false)->has_value());
}

TEST(Store, OddProjectNamesStaySeparate) {
  TempDir dir;
  auto store = Store::open(dir.path());
  const std::string weird("a\0b", 3);
  ASSERT_TRUE(write_one(*store, make_record(weird, "id", 1)).ok());
  ASSERT_TRUE(write_one(*store, make_record("a", "id", 2)).ok());
  EXPECT_EQ((*store->get(weird, "id", false))->created_at_us, 1);
  EXPECT_EQ((*store->get("a", "id", false))->created_at_us, 2);
  // Retention unescapes the project name correctly.
  EXPECT_EQ(store->delete_older_than(10)->records_deleted, 2u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kRecords), 0u);
  EXPECT_EQ(count_entries(*store, ColumnFamily::kIdxProperty), 0u);
}

TEST(Store, CallsAfterCloseAreUnavailable) {
  TempDir dir;
  auto store = Store::open(dir.path());
  ASSERT_TRUE(store->close().ok());
  EXPECT_TRUE(store->close().ok());  // idempotent
  auto got = store->get("p", "id", false);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, ErrorCode::kUnavailable);
  const RequestRecord r = make_record("p", "id", 1);
  EXPECT_FALSE(write_one(*store, r).ok());
}

}  // namespace
}  // namespace arbiter::scoring
