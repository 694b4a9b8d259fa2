#include "scoring/score_store.hpp"

#include <rocksdb/db.h>
#include <rocksdb/utilities/write_batch_with_index.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <set>
#include <shared_mutex>

#include "scoring/background_thread.hpp"
#include "scoring/free_space.hpp"
#include "scoring/keys.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

rocksdb::Slice slice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}
std::string_view view(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

std::string tagged(char tag, std::string_view project) {
  std::string k(1, tag);
  keys::append_part(k, project);
  return k;
}

std::string id_key(std::string_view project, std::string_view id) {
  std::string k = tagged('I', project);
  keys::append_part(k, id);
  return k;
}
std::string name_key(std::string_view project, std::string_view name) {
  std::string k = tagged('M', project);
  keys::append_part(k, name);
  return k;
}
std::string config_key(std::string_view project, std::string_view id) {
  std::string k = tagged('C', project);
  keys::append_part(k, id);
  return k;
}
std::string config_name_key(std::string_view project, std::string_view name) {
  std::string k = tagged('N', project);
  keys::append_part(k, name);
  return k;
}
std::string feedback_key(std::string_view project, std::string_view request_id) {
  std::string k = tagged('F', project);
  keys::append_part(k, request_id);
  return k;
}


// Index entries of one score version.
struct IndexKeys {
  std::string time;   // 'T'
  std::string value;  // 'V' (empty when the score has no numeric value)
  std::string all;    // 'A'
};

IndexKeys index_keys(std::string_view project, const Score& s) {
  const std::string target = score_keys::target_of(s);
  IndexKeys k;
  k.time = score_keys::time_prefix(project, s.name);
  keys::append_ts(k.time, s.timestamp_us);
  k.time += target;
  if (s.value) {
    k.value = score_keys::value_prefix(project, s.name);
    score_keys::append_sortable(k.value, *s.value);
    k.value += target;
  }
  k.all = tagged('A', project);
  keys::append_ts(k.all, s.timestamp_us);
  k.all += target;
  keys::append_part(k.all, s.name);
  return k;
}

std::string time_payload(const Score& s) {
  std::string v(1, static_cast<char>(s.data_type));
  if (s.value) score_keys::append_sortable(v, *s.value);
  return v;
}

std::string ts_bytes(std::int64_t ts) {
  std::string out;
  keys::append_ts(out, ts);
  return out;
}

// Point read: nullopt when missing.
Expected<std::optional<std::string>> read(const Store::Lease& db, ColumnFamily cf,
                                          const std::string& key,
                                          const rocksdb::Snapshot* snapshot = nullptr) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  rocksdb::PinnableSlice value;
  const rocksdb::Status s = db.db().Get(ro, db.cf(cf), key, &value);
  if (s.IsNotFound()) return std::optional<std::string>{};
  if (!s.ok()) return status_error("read score data", s);
  return std::optional<std::string>(std::string(view(value)));
}

Expected<std::optional<Score>> read_score(const Store::Lease& db, const std::string& key,
                                          const rocksdb::Snapshot* snapshot = nullptr) {
  auto raw = read(db, ColumnFamily::kScores, key, snapshot);
  if (!raw.ok()) return std::move(raw).error();
  if (!*raw) return std::optional<Score>{};
  auto decoded = decode_score(**raw);
  if (!decoded.ok()) return std::move(decoded).error();
  return std::optional<Score>(std::move(decoded).value());
}

}  // namespace

// The writer's view while it builds a group commit: the batch so far (the
// earlier jobs of the group), then the database. A job overwriting a score
// that an earlier job of the same group wrote sees that version.
struct BatchView {
  const Store::Lease& lease;
  rocksdb::WriteBatchWithIndex& batch;

  Expected<std::optional<std::string>> read(ColumnFamily cf, const std::string& key) const {
    rocksdb::PinnableSlice value;
    const rocksdb::Status s =
        batch.GetFromBatchAndDB(&lease.db(), rocksdb::ReadOptions(), lease.cf(cf), key, &value);
    if (s.IsNotFound()) return std::optional<std::string>{};
    if (!s.ok()) return status_error("read score data", s);
    return std::optional<std::string>(std::string(view(value)));
  }
  Expected<std::optional<Score>> read_score(const std::string& key) const {
    auto raw = read(ColumnFamily::kScores, key);
    if (!raw.ok()) return std::move(raw).error();
    if (!*raw) return std::optional<Score>{};
    auto decoded = decode_score(**raw);
    if (!decoded.ok()) return std::move(decoded).error();
    return std::optional<Score>(std::move(decoded).value());
  }
};

namespace {

// Visits keys with `prefix` in [lower, upper) (empty = prefix bounds), in
// order or reversed; fn(key, value) returns false to stop.
template <class Fn>
Expected<void> scan(const Store::Lease& db, ColumnFamily cf, const std::string& prefix,
                    std::string lower, std::string upper, bool reverse, Fn&& fn,
                    const rocksdb::Snapshot* snapshot = nullptr) {
  if (lower.empty()) lower = prefix;
  if (upper.empty()) upper = keys::prefix_end(prefix);
  const rocksdb::Slice lo(lower);
  const rocksdb::Slice hi(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  ro.iterate_lower_bound = &lo;
  ro.iterate_upper_bound = &hi;
  std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(ro, db.cf(cf)));
  if (reverse) {
    it->SeekToLast();
  } else {
    it->SeekToFirst();
  }
  for (; it->Valid(); reverse ? it->Prev() : it->Next()) {
    if (!fn(view(it->key()), view(it->value()))) break;
  }
  if (!it->status().ok()) return status_error("scan scores", it->status());
  return {};
}

std::string hex(std::string_view bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::optional<std::string> unhex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < text.size(); i += 2) {
    const int hi = digit(text[i]);
    const int lo = digit(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace

// ---- key helpers ----

namespace score_keys {

std::string target_request(std::string_view request_id, std::string_view observation_id) {
  std::string k(1, 'r');
  keys::append_part(k, request_id);
  keys::append_part(k, observation_id);
  return k;
}

std::string target_session(std::string_view session_id) {
  std::string k(1, 's');
  keys::append_part(k, session_id);
  keys::append_part(k, "");
  return k;
}

std::string target_of(const Score& s) {
  return s.request_id.empty() ? target_session(s.session_id)
                              : target_request(s.request_id, s.observation_id);
}

std::string score(std::string_view project, std::string_view target, std::string_view name) {
  std::string k = tagged('S', project);
  k += target;
  keys::append_part(k, name);
  return k;
}

std::string request_scores_prefix(std::string_view project, std::string_view request_id) {
  std::string k = tagged('S', project);
  k += target_request(request_id, "");
  return k;
}

std::string time_prefix(std::string_view project, std::string_view name) {
  std::string k = tagged('T', project);
  keys::append_part(k, name);
  return k;
}

std::string value_prefix(std::string_view project, std::string_view name) {
  std::string k = tagged('V', project);
  keys::append_part(k, name);
  return k;
}

std::string names_prefix(std::string_view project) {
  return tagged('M', project);
}

void append_sortable(std::string& out, double v) {
  if (v == 0) v = 0;  // -0.0 and 0.0 are one value
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  bits = (bits & (1ull << 63)) != 0 ? ~bits : bits | (1ull << 63);
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((bits >> shift) & 0xFF));
}

double decode_sortable(std::string_view b) {
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<unsigned char>(b[i]);
  bits = (bits & (1ull << 63)) != 0 ? bits & ~(1ull << 63) : ~bits;
  double v = 0;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

std::optional<Target> parse_target(std::string_view& in) {
  if (in.empty() || (in[0] != 'r' && in[0] != 's')) return std::nullopt;
  Target t;
  t.kind = in[0];
  in.remove_prefix(1);
  if (!keys::read_part(in, t.id) || !keys::read_part(in, t.observation_id)) return std::nullopt;
  return t;
}

std::optional<TimeEntry> parse_time_entry(std::string_view key, std::size_t prefix_len,
                                          std::string_view value) {
  if (key.size() < prefix_len + 8 || value.empty()) return std::nullopt;
  TimeEntry e;
  e.ts_us = keys::decode_ts(key.substr(prefix_len, 8));
  std::string_view rest = key.substr(prefix_len + 8);
  auto target = parse_target(rest);
  if (!target) return std::nullopt;
  e.target = std::move(*target);
  const auto type = static_cast<unsigned char>(value[0]);
  if (type > 2) return std::nullopt;
  e.data_type = static_cast<ScoreDataType>(type);
  if (value.size() >= 9) e.value = decode_sortable(value.substr(1, 8));
  return e;
}

}  // namespace score_keys

// ---- reads shared with the request log ----

Expected<void> attach_score_data(const Store::Lease& db, RequestRecord& record,
                                 const rocksdb::Snapshot* snapshot) {
  record.scores = json::object();
  const std::string prefix = score_keys::request_scores_prefix(record.project, record.request_id);
  Error failure;
  auto scanned = scan(
      db, ColumnFamily::kScores, prefix, {}, {}, false,
      [&](std::string_view key, std::string_view value) {
        auto s = decode_score(value);
        if (!s.ok()) {
          failure = std::move(s).error();
          return false;
        }
        (void)key;
        record.scores[sanitize_utf8(s->name)] = score_value_json(*s);
        return true;
      },
      snapshot);
  if (!scanned.ok()) return scanned;
  if (!failure.message.empty()) return failure;
  return attach_feedback(db, record, snapshot);
}

Expected<std::optional<json>> read_feedback(const Store::Lease& db, std::string_view project,
                                            std::string_view request_id, const rocksdb::Snapshot* snapshot) {
  auto fb = read(db, ColumnFamily::kScores, feedback_key(project, request_id), snapshot);
  if (!fb.ok()) return std::move(fb).error();
  if (!*fb) return std::optional<json>();
  try {
    return std::optional<json>(json::from_cbor(**fb));
  } catch (const json::exception& e) {
    return storage_error(std::string("corrupt feedback: ") + e.what());
  }
}

Expected<void> attach_feedback(const Store::Lease& db, RequestRecord& record, const rocksdb::Snapshot* snapshot) {
  auto fields = read_feedback(db, record.project, record.request_id, snapshot);
  if (!fields.ok()) return std::move(fields).error();
  if (*fields) {
    if (!record.feedback.is_object()) record.feedback = json::object();
    for (const auto& [k, v] : (*fields)->items()) record.feedback[k] = v;
  }
  return {};
}

Expected<std::uint64_t> delete_request_scores(const Store::Lease& db, rocksdb::WriteBatch& batch,
                                              std::string_view project, std::string_view request_id) {
  std::uint64_t deleted = 0;
  rocksdb::Status st;
  // Observation scores too: the prefix stops after the request id.
  std::string prefix = tagged('S', project) + 'r';
  keys::append_part(prefix, request_id);
  auto r = scan(db, ColumnFamily::kScores, prefix, {}, {}, false, [&](std::string_view key, std::string_view value) {
    auto decoded = decode_score(value);
    if (st.ok()) st = batch.Delete(db.cf(ColumnFamily::kScores), slice(key));
    if (decoded.ok()) {
      const Score& sc = *decoded;
      if (st.ok()) st = batch.Delete(db.cf(ColumnFamily::kScores), id_key(project, sc.id));
      const IndexKeys ik = index_keys(project, sc);
      if (st.ok()) st = batch.Delete(db.cf(ColumnFamily::kIdxScore), ik.time);
      if (st.ok() && !ik.value.empty()) st = batch.Delete(db.cf(ColumnFamily::kIdxScore), ik.value);
      if (st.ok()) st = batch.Delete(db.cf(ColumnFamily::kIdxScore), ik.all);
    }
    ++deleted;
    return st.ok();
  });
  if (!r.ok()) return std::move(r).error();
  if (st.ok()) st = batch.Delete(db.cf(ColumnFamily::kScores), feedback_key(project, request_id));
  if (!st.ok()) return status_error("retention: delete scores", st);
  return deleted;
}

Expected<std::vector<std::string>> score_names(const Store& store, std::string_view project) {
  auto lease = store.lease();
  if (!lease.ok()) return std::move(lease).error();
  const Store::Lease& db = *lease;
  std::vector<std::string> names;
  const std::string prefix = score_keys::names_prefix(project);
  auto r = scan(db, ColumnFamily::kScores, prefix, {}, {}, false,
                [&](std::string_view key, std::string_view) {
                  std::string_view rest = key.substr(prefix.size());
                  std::string name;
                  if (keys::read_part(rest, name)) names.push_back(std::move(name));
                  return true;
                });
  if (!r.ok()) return std::move(r).error();
  return names;
}

// ---- ScoreStore ----

ScoreStore::ScoreStore(RequestLog& log, std::function<std::int64_t()> now_us)
    : log_(log), now_us_(std::move(now_us)) {
  writer_ = std::thread([this] { writer_loop(); });
  warmer_ = std::thread([this] { warm_up(); });
  log_.set_retention_observer([this](const RetentionStats& stats) {
    if (stats.scores_deleted > 0) aggregates_.invalidate();
  });
}

// Builds every score name's histograms in the background after start, so
// that the first eval or distribution query after a restart does not pay
// for the index scan (285 ms per name over 1,000,000 scores). Queries that
// arrive first simply load their name themselves; loads are serialised.
void ScoreStore::warm_up() {
  enter_background_thread("arb-score-warm");
  std::vector<std::pair<std::string, std::string>> names;
  auto listed = log_.with_lease([&](const Store::Lease& db) -> Expected<void> {
    return scan(db, ColumnFamily::kScores, "M", {}, {}, false, [&](std::string_view key, std::string_view) {
      std::string_view rest = key.substr(1);
      std::string project, name;
      if (keys::read_part(rest, project) && keys::read_part(rest, name)) names.emplace_back(std::move(project), std::move(name));
      return !warm_stop_.load(std::memory_order_relaxed);
    });
  });
  if (!listed.ok()) return;
  for (const auto& [project, name] : names) {
    if (warm_stop_.load(std::memory_order_relaxed)) return;
    // Init-captures: clang 14 (the fuzz build) cannot capture a structured binding.
    (void)log_.with_store([this, &p = project, &n = name](Store& store) -> Expected<bool> {
      return aggregates_.with_name(store, p, n, [](const NameHistograms&) {});
    });
    warmed_.fetch_add(1, std::memory_order_relaxed);
  }
}

ScoreStore::~ScoreStore() { stop(); }

void ScoreStore::stop() {
  warm_stop_.store(true);
  log_.set_retention_observer({});
  {
    std::lock_guard lk(queue_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (warmer_.joinable()) warmer_.join();
}

std::int64_t ScoreStore::now_us() const {
  if (now_us_) return now_us_();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Expected<std::optional<ScoreConfig>> ScoreStore::config_by_id(const BatchView& db, std::string_view project,
                                                              const std::string& id) {
  WriterCache::Key key{std::string(project), id};
  if (auto it = cache_.by_id.find(key); it != cache_.by_id.end()) return std::optional<ScoreConfig>(it->second);
  auto raw = db.read(ColumnFamily::kScores, config_key(project, id));
  if (!raw.ok()) return std::move(raw).error();
  if (!*raw) return std::optional<ScoreConfig>();  // may be created later: not remembered
  auto config = decode_config(**raw);
  if (!config.ok()) return std::move(config).error();
  if (cache_.by_id.size() >= WriterCache::kMaxEntries) cache_.by_id.clear();
  cache_.by_id.emplace(std::move(key), *config);
  return std::optional<ScoreConfig>(std::move(config).value());
}

Expected<void> ScoreStore::check_configs(const BatchView& db, std::string_view project, std::vector<Score>& scores) {
  for (auto& s : scores) {
    std::optional<ScoreConfig> config;
    if (!s.config_id.empty()) {
      auto by_id = config_by_id(db, project, s.config_id);
      if (!by_id.ok()) return std::move(by_id).error();
      if (!*by_id) return invalid_argument("score config '" + sanitize_utf8(s.config_id) + "' does not exist");
      config = std::move(*by_id);
    } else {
      WriterCache::Key key{std::string(project), s.name};
      if (auto it = cache_.by_name.find(key); it != cache_.by_name.end()) {
        config = it->second;
      } else {
        auto named = db.read(ColumnFamily::kScores, config_name_key(project, s.name));
        if (!named.ok()) return std::move(named).error();
        if (*named) {
          auto by_id = config_by_id(db, project, **named);
          if (!by_id.ok()) return std::move(by_id).error();
          if (!*by_id) return invalid_argument("score config '" + sanitize_utf8(**named) + "' does not exist");
          config = std::move(*by_id);
        }
        if (cache_.by_name.size() >= WriterCache::kMaxEntries) cache_.by_name.clear();
        cache_.by_name.emplace(std::move(key), config);
      }
    }
    if (!config) {
      if (s.data_type == ScoreDataType::kCategorical && s.label.empty()) {
        return invalid_argument("score '" + sanitize_utf8(s.name) +
                                "': a numeric CATEGORICAL value needs a score config that maps it");
      }
      if (s.data_type == ScoreDataType::kCategorical) s.value.reset();
      continue;
    }
    if (config->name != s.name) {
      return invalid_argument("score '" + sanitize_utf8(s.name) + "' does not match the name '" +
                              sanitize_utf8(config->name) + "' of config '" + sanitize_utf8(config->id) + "'");
    }
    if (auto ok = apply_config(s, *config); !ok) return ok;
  }
  return {};
}


// ---- the group-commit writer ----
//
// Every score write (Helicone scores, feedback, typed scores, deletes) is a
// job on one queue. The writer thread takes every job waiting (up to
// kMaxGroup), builds them one after another into one WriteBatchWithIndex —
// each job reads through the batch, so a job sees the versions the earlier
// jobs of its group wrote, and a job that fails is rolled back to its save
// point without touching the others — and commits the group with one fsync.
// Callers are completed after that fsync: a 201 still means durable, but a
// few hundred concurrent calls share one WAL sync instead of each paying
// for its own (4 ms on the bench machine's disk). One writer also means no
// locks between writers: overwrites of one score are ordered by the queue.

struct ScoreStore::Job {
  enum class Kind { kWrite, kRemove } kind = Kind::kWrite;
  std::string project;
  std::vector<Score> scores;         // kWrite: the scores to write
  std::optional<Feedback> feedback;  // kWrite: fields to merge (submit_feedback)
  std::string session_check;         // kWrite: a session id that must have a stored record
  std::string remove_id;             // kRemove
  // An evaluator run (write_evaluation): its entries, and what listeners hear.
  RunEntries run_entries;
  std::optional<EvaluationEvent> evaluation;
  bool durable = true;  // the group is fsynced when any of its jobs is durable
  WriteCallback done;
  // Filled by the writer.
  Expected<std::vector<Score>> result{std::vector<Score>{}};
  std::vector<ScoreAggregates::Delta> deltas;
  std::optional<json> merged_feedback;
};

void ScoreStore::enqueue(std::unique_ptr<Job> job) {
  {
    std::unique_lock lk(queue_mu_);
    if (!stopping_ && queue_.size() < kQueueCapacity) {
      queue_.push_back(std::move(job));
      lk.unlock();
      queue_cv_.notify_one();
      return;
    }
  }
  // Refused, never accepted-then-dropped: the caller hears about it now.
  bool stopped;
  {
    std::lock_guard lk(queue_mu_);
    stopped = stopping_;
  }
  if (!stopped) refused_full_.fetch_add(1, std::memory_order_relaxed);
  auto done = std::move(job->done);
  done(unavailable(stopped ? "score store is shut down" : "score write queue is full, retry later"));
}

namespace {
constexpr std::size_t kKeptBatchBytes = 1 << 20;
}  // namespace

void ScoreStore::writer_loop() {
  enter_background_thread("arb-scores");
  std::vector<std::unique_ptr<Job>> group;
  std::optional<rocksdb::WriteBatchWithIndex> batch;
  for (;;) {
    {
      std::unique_lock lk(queue_mu_);
      queue_cv_.wait(lk, [&] { return stopping_ || (!paused_ && !queue_.empty()); });
      if (queue_.empty()) return;  // stopping, and drained
      while (!queue_.empty() && group.size() < kMaxGroup) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!batch) batch.emplace();
    run_group(group, *batch);
    group.clear();
    // A group of large jobs (feedback objects) does not keep its buffer.
    if (batch->GetWriteBatch()->GetDataSize() > kKeptBatchBytes) batch.reset();
  }
}

void ScoreStore::run_group(std::vector<std::unique_ptr<Job>>& group, rocksdb::WriteBatchWithIndex& batch) {
  const auto& listeners = log_.listeners();
  if (const auto generation = config_generation_.load(std::memory_order_acquire);
      generation != cache_.config_generation) {
    cache_.by_name.clear();  // a config was created: "no config" answers may be stale
    cache_.config_generation = generation;
  }
  auto committed = log_.with_store([&](Store& store) -> Expected<void> {
    auto lease = store.lease();
    if (!lease.ok()) return std::move(lease).error();
    batch.Clear();  // keeps the WriteBatch's buffer
    const BatchView db{*lease, batch};
    bool durable = false;
    for (auto& job : group) {
      yield_point();
      batch.SetSavePoint();
      job->result = job->kind == Job::Kind::kWrite ? build_write(db, *job) : build_remove(db, *job);
      if (job->result.ok() && job->run_entries) {
        if (auto added = job->run_entries(*lease, *batch.GetWriteBatch()); !added) {
          job->result = std::move(added).error();
        }
      }
      if (!job->result.ok()) {
        (void)batch.RollbackToSavePoint();
        continue;
      }
      (void)batch.PopSavePoint();
      durable = durable || job->durable;
      if (job->kind == Job::Kind::kWrite && !job->result->empty()) {
        for (auto* l : listeners) l->on_scores(*lease, job->project, *job->result, *batch.GetWriteBatch());
      }
      if (job->evaluation) {
        job->evaluation->project = job->project;
        job->evaluation->scores = *job->result;
        for (auto* l : listeners) l->on_evaluation(*lease, *job->evaluation, *batch.GetWriteBatch());
      }
    }
    if (batch.GetWriteBatch()->Count() == 0) return {};
    // durable: fsynced before any API caller hears "written". A full disk
    // is refused (503) before RocksDB sees it (free_space.hpp).
    std::shared_lock gate(aggregates_.gate());
    auto written = store.commit(*lease, *batch.GetWriteBatch(), /*sync=*/durable);
    if (!written.ok()) {
      return Error{written.error().code, "write scores: " + written.error().message};
    }
    for (auto& job : group) {
      if (!job->result.ok()) continue;
      aggregates_.apply(job->deltas);
      if (job->kind != Job::Kind::kWrite) continue;
      for (const Score& s : *job->result) {
        if (cache_.names.size() >= WriterCache::kMaxEntries) cache_.names.clear();
        cache_.names.emplace(job->project, s.name);  // its 'M' entry is stored now
      }
    }
    return {};
  });
  if (!committed.ok() && committed.error().code == ErrorCode::kStorage) {
    // A failing disk stops RocksDB's writes until resumed (or reopened);
    // without proxied traffic (whose storage thread resumes too) nothing
    // else would. Outside the Lease above: a reopen waits for every Lease.
    // The callers get the error (5xx): nothing unstored is acknowledged.
    (void)log_.with_store([](Store& store) { return store.resume(); });
  }
  groups_.fetch_add(1, std::memory_order_relaxed);
  for (auto& job : group) {
    if (!committed.ok() && job->result.ok()) job->result = committed.error();
    if (job->result.ok() && job->kind == Job::Kind::kWrite) {
      if (!job->result->empty()) {
        for (auto* l : listeners) l->scores_written(job->project, *job->result);
      }
      if (job->evaluation) {
        for (auto* l : listeners) l->evaluation_written(*job->evaluation);
      }
      if (job->merged_feedback) {
        for (auto* l : listeners) {
          l->feedback_written(job->project, job->scores.empty() ? std::string_view() : job->scores[0].request_id,
                              *job->merged_feedback);
        }
      }
    }
    job->done(std::move(job->result));
  }
}

Expected<std::vector<Score>> ScoreStore::build_write(const BatchView& db, Job& job) {
  const std::string_view project = job.project;
  std::vector<Score>& scores = job.scores;
  if (!job.session_check.empty()) {
    bool seen = false;
    auto r = scan(db.lease, ColumnFamily::kIdxSession, keys::session_prefix(project, job.session_check), {}, {},
                  false, [&](std::string_view, std::string_view) {
                    seen = true;
                    return false;
                  });
    if (!r.ok()) return std::move(r).error();
    if (!seen) return not_found("session " + sanitize_utf8(job.session_check) + " not found");
  }
  if (auto ok = check_configs(db, project, scores); !ok) return std::move(ok).error();

  const std::int64_t now = now_us();
  rocksdb::WriteBatchWithIndex& batch = db.batch;
  const Store::Lease& lease = db.lease;
  rocksdb::Status st;
  auto put = [&](ColumnFamily cf, const std::string& k, std::string_view v) {
    if (st.ok()) st = batch.Put(lease.cf(cf), k, slice(v));
  };
  auto del = [&](ColumnFamily cf, const std::string& k) {
    if (st.ok()) st = batch.Delete(lease.cf(cf), k);
  };
  auto delta = [&](const Score& v, int sign) {
    if (v.value) {
      job.deltas.push_back({std::string(project), v.name, v.timestamp_us, *v.value, v.data_type, sign});
    }
  };
  auto delete_indexes = [&](const Score& old) {
    delta(old, -1);
    const IndexKeys ik = index_keys(project, old);
    del(ColumnFamily::kIdxScore, ik.time);
    if (!ik.value.empty()) del(ColumnFamily::kIdxScore, ik.value);
    del(ColumnFamily::kIdxScore, ik.all);
  };

  for (Score& s : scores) {
    const std::string key = score_keys::score(project, score_keys::target_of(s), s.name);
    std::optional<std::int64_t> created;
    if (!s.id.empty()) {
      auto mapped = db.read(ColumnFamily::kScores, id_key(project, s.id));
      if (!mapped.ok()) return std::move(mapped).error();
      if (*mapped) {
        const std::string at = tagged('S', project) + **mapped;
        if (at != key) {
          // Same id, new target or name: the score moves.
          auto old = db.read_score(at);
          if (!old.ok()) return std::move(old).error();
          if (*old) {
            delete_indexes(**old);
            created = (*old)->created_at_us;
          }
          del(ColumnFamily::kScores, at);
        }
      }
    }
    auto old = db.read_score(key);
    if (!old.ok()) return std::move(old).error();
    if (*old) {
      delete_indexes(**old);
      if (s.id.empty()) {
        s.id = (*old)->id;  // a Helicone overwrite keeps the score's id
      } else if ((*old)->id != s.id) {
        del(ColumnFamily::kScores, id_key(project, (*old)->id));  // the old id is gone
      }
      if (!created && (*old)->id == s.id) created = (*old)->created_at_us;
    }
    if (s.id.empty()) s.id = random_uuid();
    s.project = std::string(project);
    s.created_at_us = created.value_or(now);
    s.updated_at_us = now;
    if (s.timestamp_us == 0) s.timestamp_us = now;

    put(ColumnFamily::kScores, key, encode_score(s));
    put(ColumnFamily::kScores, id_key(project, s.id), std::string_view(key).substr(tagged('S', project).size()));
    if (cache_.names.count({std::string(project), s.name}) == 0) put(ColumnFamily::kScores, name_key(project, s.name), {});
    const IndexKeys ik = index_keys(project, s);
    put(ColumnFamily::kIdxScore, ik.time, time_payload(s));
    if (!ik.value.empty()) put(ColumnFamily::kIdxScore, ik.value, ts_bytes(s.timestamp_us));
    put(ColumnFamily::kIdxScore, ik.all, {});
    delta(s, +1);
  }

  if (job.feedback && !job.feedback->fields.empty() && !scores.empty()) {
    const std::string fkey = feedback_key(project, scores[0].request_id);
    auto raw = db.read(ColumnFamily::kScores, fkey);
    if (!raw.ok()) return std::move(raw).error();
    json merged = json::object();
    if (*raw) {
      try {
        merged = json::from_cbor(**raw);
      } catch (const json::exception& e) {
        return storage_error(std::string("corrupt feedback: ") + e.what());
      }
    }
    for (const auto& [k, v] : job.feedback->fields.items()) merged[k] = v;
    std::string bytes;
    json::to_cbor(merged, bytes);
    put(ColumnFamily::kScores, fkey, bytes);
    job.merged_feedback = std::move(merged);
  }
  if (!st.ok()) return status_error("build score batch", st);
  return scores;
}

Expected<std::vector<Score>> ScoreStore::build_remove(const BatchView& db, Job& job) {
  const std::string_view project = job.project;
  const std::string ikey = id_key(project, job.remove_id);
  auto mapped = db.read(ColumnFamily::kScores, ikey);
  if (!mapped.ok()) return std::move(mapped).error();
  if (!*mapped) return not_found("score " + sanitize_utf8(job.remove_id) + " not found");
  const std::string key = tagged('S', project) + **mapped;
  auto old = db.read_score(key);
  if (!old.ok()) return std::move(old).error();
  rocksdb::Status st = db.batch.Delete(db.lease.cf(ColumnFamily::kScores), ikey);
  if (*old && (*old)->id == job.remove_id) {
    const Score& o = **old;
    if (st.ok()) st = db.batch.Delete(db.lease.cf(ColumnFamily::kScores), key);
    const IndexKeys ik = index_keys(project, o);
    if (st.ok()) st = db.batch.Delete(db.lease.cf(ColumnFamily::kIdxScore), ik.time);
    if (st.ok() && !ik.value.empty()) st = db.batch.Delete(db.lease.cf(ColumnFamily::kIdxScore), ik.value);
    if (st.ok()) st = db.batch.Delete(db.lease.cf(ColumnFamily::kIdxScore), ik.all);
    if (o.value) job.deltas.push_back({std::string(project), o.name, o.timestamp_us, *o.value, o.data_type, -1});
  }
  if (!st.ok()) return status_error("build delete batch", st);
  return std::vector<Score>{};
}

// ---- entry points ----

namespace {

// Blocks until an asynchronous write completes.
template <class T, class Start>
Expected<T> wait_for(Start&& start) {
  std::promise<Expected<std::vector<Score>>> promise;
  auto future = promise.get_future();
  start([&promise](Expected<std::vector<Score>> r) { promise.set_value(std::move(r)); });
  auto r = future.get();
  if (!r.ok()) return std::move(r).error();
  if constexpr (std::is_same_v<T, void>) {
    return {};
  } else {
    return T(std::move(r).value().front());
  }
}

}  // namespace

Expected<void> ScoreStore::check_known(std::string_view project, std::string_view request_id) const {
  auto known = log_.known(project, request_id);
  if (!known.ok()) return std::move(known).error();
  if (!*known) return not_found("request " + sanitize_utf8(request_id) + " not found");
  return {};
}

void ScoreStore::submit_async(std::string_view project, std::string_view request_id,
                              const std::vector<HeliconeScore>& input, WriteCallback done) {
  if (auto ok = check_known(project, request_id); !ok) return done(std::move(ok).error());
  auto job = std::make_unique<Job>();
  job->project = std::string(project);
  for (const auto& h : input) {
    Score s;
    s.request_id = std::string(request_id);
    s.name = h.name;
    s.data_type = h.data_type;
    s.value = h.value;
    job->scores.push_back(std::move(s));
  }
  job->done = std::move(done);
  enqueue(std::move(job));
}

Expected<void> ScoreStore::submit(std::string_view project, std::string_view request_id,
                                  const std::vector<HeliconeScore>& scores) {
  return wait_for<void>([&](WriteCallback cb) { submit_async(project, request_id, scores, std::move(cb)); });
}

void ScoreStore::submit_feedback_async(std::string_view project, std::string_view request_id,
                                       const Feedback& feedback, WriteCallback done) {
  if (auto ok = check_known(project, request_id); !ok) return done(std::move(ok).error());
  auto job = std::make_unique<Job>();
  job->project = std::string(project);
  job->scores.resize(1);
  job->scores[0].request_id = std::string(request_id);
  job->scores[0].name = std::string(kFeedbackScoreName);
  job->scores[0].data_type = ScoreDataType::kBoolean;
  job->scores[0].value = feedback.rating ? 1.0 : 0.0;
  job->feedback = feedback;
  job->done = std::move(done);
  enqueue(std::move(job));
}

Expected<void> ScoreStore::submit_feedback(std::string_view project, std::string_view request_id,
                                           const Feedback& feedback) {
  return wait_for<void>(
      [&](WriteCallback cb) { submit_feedback_async(project, request_id, feedback, std::move(cb)); });
}

void ScoreStore::upsert_async(std::string_view project, Score score, WriteCallback done) {
  if (!score.request_id.empty()) {
    if (auto ok = check_known(project, score.request_id); !ok) return done(std::move(ok).error());
  }
  auto job = std::make_unique<Job>();
  job->project = std::string(project);
  job->session_check = score.session_id;
  job->scores.push_back(std::move(score));
  job->done = std::move(done);
  enqueue(std::move(job));
}

Expected<Score> ScoreStore::upsert(std::string_view project, Score score) {
  return wait_for<Score>([&](WriteCallback cb) { upsert_async(project, std::move(score), std::move(cb)); });
}

void ScoreStore::remove_async(std::string_view project, std::string_view id, WriteCallback done) {
  if (!valid_request_id(id)) return done(not_found("score " + sanitize_utf8(id) + " not found"));
  auto job = std::make_unique<Job>();
  job->kind = Job::Kind::kRemove;
  job->project = std::string(project);
  job->remove_id = std::string(id);
  job->done = std::move(done);
  enqueue(std::move(job));
}

Expected<std::vector<Score>> ScoreStore::write_evaluation(std::string_view project, std::vector<Score> scores,
                                                          EvaluationEvent& evaluation, RunEntries extend) {
  std::promise<Expected<std::vector<Score>>> promise;
  auto future = promise.get_future();
  write_evaluation_job(project, std::move(scores), evaluation, std::move(extend),
                       [&promise](Expected<std::vector<Score>> r) { promise.set_value(std::move(r)); },
                       &evaluation);
  return future.get();
}

void ScoreStore::write_evaluation_async(std::string_view project, std::vector<Score> scores,
                                        EvaluationEvent evaluation, RunEntries extend, WriteCallback done) {
  write_evaluation_job(project, std::move(scores), evaluation, std::move(extend), std::move(done), nullptr);
}

void ScoreStore::write_evaluation_job(std::string_view project, std::vector<Score> scores,
                                      const EvaluationEvent& evaluation, RunEntries extend, WriteCallback done,
                                      EvaluationEvent* copy_back) {
  auto job = std::make_unique<Job>();
  job->project = std::string(project);
  job->scores = std::move(scores);
  job->run_entries = std::move(extend);
  job->evaluation = evaluation;
  job->durable = false;
  Job* raw = job.get();
  // The job outlives its callback (the writer destroys it after done()), so
  // the listeners' view of the event can be copied back from it there.
  job->done = [done = std::move(done), copy_back, raw](Expected<std::vector<Score>> r) {
    if (copy_back != nullptr && raw->evaluation) *copy_back = *raw->evaluation;
    done(std::move(r));
  };
  enqueue(std::move(job));
}

Expected<void> ScoreStore::remove(std::string_view project, std::string_view id) {
  return wait_for<void>([&](WriteCallback cb) { remove_async(project, id, std::move(cb)); });
}

void ScoreStore::pause_writer_for_testing(bool paused) {
  {
    std::lock_guard lk(queue_mu_);
    paused_ = paused;
  }
  queue_cv_.notify_all();
}

ScoreStore::Counters ScoreStore::counters() const {
  Counters c;
  c.groups = groups_.load(std::memory_order_relaxed);
  c.refused_full = refused_full_.load(std::memory_order_relaxed);
  c.names_warmed = warmed_.load(std::memory_order_relaxed);
  std::lock_guard lk(queue_mu_);
  c.queue_depth = queue_.size();
  return c;
}

Expected<std::optional<Score>> ScoreStore::get(std::string_view project,
                                               std::string_view id) const {
  return log_.with_lease([&](const Store::Lease& db) -> Expected<std::optional<Score>> {
    auto mapped = read(db, ColumnFamily::kScores, id_key(project, id));
    if (!mapped.ok()) return std::move(mapped).error();
    if (!*mapped) return std::optional<Score>{};
    return read_score(db, tagged('S', project) + **mapped);
  });
}

Expected<ScoreListPage> ScoreStore::list(std::string_view project, const ScoreListQuery& q) const {
  return log_.with_lease([&](const Store::Lease& db) -> Expected<ScoreListPage> {
    // Pick the source: the target's scores, the name's time index, or all by time.
    ColumnFamily cf = ColumnFamily::kIdxScore;
    std::string prefix;
    bool reverse = true;
    bool time_in_key = true;
    if (!q.request_id.empty() || !q.session_id.empty()) {
      cf = ColumnFamily::kScores;
      prefix = tagged('S', project);
      if (!q.request_id.empty()) {
        prefix += 'r';
        keys::append_part(prefix, q.request_id);
      } else {
        prefix += score_keys::target_session(q.session_id);
      }
      reverse = false;
      time_in_key = false;
    } else if (!q.name.empty()) {
      prefix = score_keys::time_prefix(project, q.name);
    } else {
      prefix = tagged('A', project);
    }
    std::string lower = prefix;
    std::string upper = keys::prefix_end(prefix);
    if (time_in_key) {
      if (q.from_us) {
        lower = prefix;
        keys::append_ts(lower, *q.from_us);
      }
      if (q.to_us) {
        upper = prefix;
        keys::append_ts(upper, *q.to_us);
      }
    }
    if (!q.cursor.empty()) {
      const auto after = unhex(q.cursor);
      if (!after || !after->starts_with(prefix)) return invalid_argument("invalid cursor");
      if (reverse) {
        upper = std::min(upper, *after);  // strictly before the last key returned
      } else {
        lower = std::max(lower, *after + std::string(1, '\0'));  // strictly after it
      }
    }
    if (lower >= upper) return ScoreListPage{};

    SnapshotGuard snapshot(db);
    ScoreListPage page;
    std::string last_key;
    Error failure;
    bool more = false;
    auto visit = [&](std::string_view key, std::string_view value) {
      if (page.scores.size() == q.limit) {
        more = true;
        return false;
      }
      std::optional<Score> s;
      if (cf == ColumnFamily::kScores) {
        auto decoded = decode_score(value);
        if (!decoded.ok()) {
          failure = std::move(decoded).error();
          return false;
        }
        s = std::move(decoded).value();
      } else {
        // Rebuild the score key from the index key.
        std::string_view rest = key.substr(prefix.size() + 8);
        std::string name = q.name;
        std::string_view target_start = rest;
        auto target = score_keys::parse_target(rest);
        if (!target) return true;
        const std::string_view target_bytes =
            target_start.substr(0, target_start.size() - rest.size());
        if (q.name.empty() && !keys::read_part(rest, name)) return true;
        auto got =
            read_score(db, score_keys::score(project, target_bytes, name), snapshot.get());
        if (!got.ok()) {
          failure = std::move(got).error();
          return false;
        }
        if (!*got) return true;  // deleted after the snapshot's index read; skip
        s = std::move(**got);
      }
      last_key.assign(key);
      if (!q.name.empty() && s->name != q.name) return true;
      if (!q.session_id.empty() && s->session_id != q.session_id) return true;
      if (q.source && s->source != *q.source) return true;
      if (q.data_type && s->data_type != *q.data_type) return true;
      if (!q.config_id.empty() && s->config_id != q.config_id) return true;
      if ((q.min_value || q.max_value) && !s->value) return true;
      if (q.min_value && *s->value < *q.min_value) return true;
      if (q.max_value && *s->value > *q.max_value) return true;
      if (q.from_us && s->timestamp_us < *q.from_us) return true;
      if (q.to_us && s->timestamp_us >= *q.to_us) return true;
      page.scores.push_back(std::move(*s));
      return true;
    };
    auto r = scan(db, cf, prefix, lower, upper, reverse, visit, snapshot.get());
    if (!r.ok()) return std::move(r).error();
    if (!failure.message.empty()) return failure;
    if (more) page.next_cursor = hex(last_key);
    return page;
  });
}

Expected<ScoreConfig> ScoreStore::create_config(std::string_view project, ScoreConfig config) {
  std::lock_guard lk(config_mu_);
  return log_.with_store([&](Store& store) -> Expected<ScoreConfig> {
    auto lease = store.lease();
    if (!lease.ok()) return std::move(lease).error();
    const Store::Lease& db = *lease;
    auto by_name = read(db, ColumnFamily::kScores, config_name_key(project, config.name));
    if (!by_name.ok()) return std::move(by_name).error();
    if (*by_name) {
      return invalid_argument("score '" + sanitize_utf8(config.name) + "' already has config '" +
                              sanitize_utf8(**by_name) + "'");
    }
    if (config.id.empty()) config.id = random_uuid();
    auto by_id = read(db, ColumnFamily::kScores, config_key(project, config.id));
    if (!by_id.ok()) return std::move(by_id).error();
    if (*by_id)
      return invalid_argument("score config id '" + sanitize_utf8(config.id) + "' is taken");
    config.created_at_us = now_us();
    rocksdb::WriteBatch batch;
    rocksdb::Status st = batch.Put(db.cf(ColumnFamily::kScores), config_key(project, config.id),
                                   encode_config(config));
    if (st.ok()) {
      st = batch.Put(db.cf(ColumnFamily::kScores), config_name_key(project, config.name),
                     config.id);
    }
    if (!st.ok()) return status_error("build config batch", st);
    auto written = store.commit(db, batch, /*sync=*/true);
    if (!written.ok()) return Error{written.error().code, "write score config: " + written.error().message};
    config_generation_.fetch_add(1, std::memory_order_release);
    return config;
  });
}

Expected<std::vector<ScoreConfig>> ScoreStore::configs(std::string_view project) const {
  return log_.with_lease([&](const Store::Lease& db) -> Expected<std::vector<ScoreConfig>> {
    std::vector<ScoreConfig> out;
    Error failure;
    auto r = scan(db, ColumnFamily::kScores, tagged('C', project), {}, {}, false,
                  [&](std::string_view, std::string_view value) {
                    auto c = decode_config(value);
                    if (!c.ok()) {
                      failure = std::move(c).error();
                      return false;
                    }
                    out.push_back(std::move(c).value());
                    return true;
                  });
    if (!r.ok()) return std::move(r).error();
    if (!failure.message.empty()) return failure;
    std::sort(out.begin(), out.end(),
              [](const ScoreConfig& a, const ScoreConfig& b) { return a.name < b.name; });
    return out;
  });
}

}  // namespace arbiter::scoring
