#pragma once
// The score store (DESIGN.md §4, §8): scores, score configs and feedback in
// the request log's RocksDB database (column families `scores` and
// `idx_score`).
//
// Key layouts (part() and ts as in keys.hpp; target = 'r' part(request_id)
// part(observation_id) for request scores, 's' part(session_id) part("") for
// session scores):
//
//   scores     'S' part(project) target part(name)       → encode_score
//              'I' part(project) part(id)                 → target part(name)
//              'M' part(project) part(name)               → ""  (names seen; kept
//                                                              when their scores are deleted)
//              'C' part(project) part(config_id)          → encode_config
//              'N' part(project) part(name)               → config_id
//              'F' part(project) part(request_id)         → CBOR object (feedback.*)
//   idx_score  'T' part(project) part(name) ts target     → type byte [+ be64 sortable(value)]
//              'V' part(project) part(name) sortable(value) target → ts   (valued scores only)
//              'A' part(project) ts target part(name)     → ""
//
// ts is the score's timestamp. T serves per-name time ranges (evals, the
// distribution), V per-name value ranges (scores.<k> filters), A the newest-
// first listing of GET /v1/scores. A score and all of its index entries are
// written in one WriteBatch with sync=true (WAL fsynced) before the call
// returns: a 201 means durable. Overwrites delete the old version's entries in
// the same batch.
//
// Feedback fields are kept under their own 'F' key rather than by rewriting
// the request record: the record may still be in flight or queued when the
// feedback arrives, and a rewrite would race the storage thread. Readers
// (attach_score_data) merge them into RequestRecord::feedback, the posted
// fields winning.
//
// Thread-safety: every member may be called concurrently from any thread
// (blocking: call from a worker, never an I/O thread). Writers touching one
// score serialise on striped mutexes, so an overwrite never leaves a stale
// index entry. Lifetime: the RequestLog must outlive the ScoreStore.

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <thread>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/request_log.hpp"
#include "scoring/score.hpp"
#include "scoring/score_aggregates.hpp"
#include "scoring/store.hpp"

namespace rocksdb {
class Snapshot;
class WriteBatch;
class WriteBatchWithIndex;
}

namespace arbiter::scoring {

namespace score_keys {
std::string target_request(std::string_view request_id, std::string_view observation_id = {});
std::string target_session(std::string_view session_id);
std::string target_of(const Score& s);
std::string score(std::string_view project, std::string_view target, std::string_view name);
std::string request_scores_prefix(std::string_view project, std::string_view request_id);
std::string time_prefix(std::string_view project, std::string_view name);   // 'T'
std::string value_prefix(std::string_view project, std::string_view name);  // 'V'
std::string names_prefix(std::string_view project);                         // 'M'
// 8 bytes whose byte order is the numeric order of v (NaN never stored).
void append_sortable(std::string& out, double v);
double decode_sortable(std::string_view eight_bytes);

// A parsed target: kind 'r' or 's', the id, and the observation id.
struct Target {
  char kind = 'r';
  std::string id;
  std::string observation_id;
};
// Parses a target at the start of `in`, advancing it past the target.
std::optional<Target> parse_target(std::string_view& in);

// One 'T' entry: timestamp, value (nullopt for an unmapped category), the
// data type and the target.
struct TimeEntry {
  std::int64_t ts_us = 0;
  std::optional<double> value;
  ScoreDataType data_type = ScoreDataType::kNumeric;
  Target target;
};
std::optional<TimeEntry> parse_time_entry(std::string_view key, std::size_t prefix_len,
                                          std::string_view value);
}  // namespace score_keys

// Fills record.scores (request-level scores: name → value) and merges the
// posted feedback fields into record.feedback. `snapshot` may be null.
Expected<void> attach_score_data(const Store::Lease& db, RequestRecord& record,
                                 const rocksdb::Snapshot* snapshot = nullptr);
// The feedback fields posted for a request (POST .../feedback), merged;
// nullopt when none were posted.
Expected<std::optional<nlohmann::json>> read_feedback(const Store::Lease& db, std::string_view project,
                                                      std::string_view request_id,
                                                      const rocksdb::Snapshot* snapshot = nullptr);
// Only the feedback part of attach_score_data.
Expected<void> attach_feedback(const Store::Lease& db, RequestRecord& record,
                               const rocksdb::Snapshot* snapshot = nullptr);

// Adds to `batch` the deletion of every score of the request (with its id
// mapping and index entries) and of its posted feedback; returns the number
// of scores. For retention, which deletes the request itself in the same
// batch. Reads the database as committed.
Expected<std::uint64_t> delete_request_scores(const Store::Lease& db, rocksdb::WriteBatch& batch,
                                              std::string_view project, std::string_view request_id);

// Every score name seen in the project, sorted.
Expected<std::vector<std::string>> score_names(const Store& store, std::string_view project);

struct ScoreListQuery {
  std::string request_id;
  std::string session_id;
  std::string name;
  std::optional<ScoreSource> source;
  std::optional<ScoreDataType> data_type;
  std::string config_id;
  std::optional<double> min_value;  // inclusive, on the numeric value
  std::optional<double> max_value;
  std::optional<std::int64_t> from_us;  // inclusive, on the timestamp
  std::optional<std::int64_t> to_us;    // exclusive
  std::size_t limit = 50;               // 1..100
  std::string cursor;                   // from a previous page's next_cursor
};

struct ScoreListPage {
  std::vector<Score> scores;
  std::string next_cursor;  // empty on the last page
};

struct BatchView;  // the writer's read view (score_store.cpp)

class ScoreStore {
 public:
  // now_us: unix µs clock (tests inject one); defaults to the system clock.
  // Starts the writer thread, and a warm-up thread that builds every stored
  // score name's histograms (so the first query after a restart is fast).
  explicit ScoreStore(RequestLog& log, std::function<std::int64_t()> now_us = {});
  // stop()s.
  ~ScoreStore();
  ScoreStore(const ScoreStore&) = delete;
  ScoreStore& operator=(const ScoreStore&) = delete;

  // Completes every queued write, then stops the writer; later writes fail
  // with kUnavailable. Call before closing the RequestLog. Idempotent.
  void stop();

  // Writes complete through a callback, run on the writer thread after the
  // group commit holding the write was fsynced (or failed); keep it short
  // (post to an io_context). Each *_async call runs its callback exactly
  // once — on the calling thread when the write is refused before queueing
  // (validation, unknown request, queue full → kUnavailable). The blocking
  // forms wait for the same callback; never call them from an I/O thread.
  using WriteCallback = std::function<void(Expected<std::vector<Score>>)>;

  // POST /v1/request/{id}/score. kNotFound for a request that is neither in
  // flight, queued nor stored in this project. All names are validated
  // (configs included) before anything is written; then one durable batch.
  Expected<void> submit(std::string_view project, std::string_view request_id,
                        const std::vector<HeliconeScore>& scores);
  void submit_async(std::string_view project, std::string_view request_id,
                    const std::vector<HeliconeScore>& scores, WriteCallback done);

  // POST /v1/request/{id}/feedback: score helicone-score-feedback plus the
  // other fields merged into the request's feedback, in one durable batch.
  Expected<void> submit_feedback(std::string_view project, std::string_view request_id,
                                 const Feedback& feedback);
  void submit_feedback_async(std::string_view project, std::string_view request_id,
                             const Feedback& feedback, WriteCallback done);

  // POST /v1/scores. The target must be known (request: as in submit;
  // session: at least one stored record with that session id). With an id
  // that exists, the score is updated in place (even when its target or name
  // changes). Returns the stored score (the callback gets it as the only
  // element).
  Expected<Score> upsert(std::string_view project, Score score);
  void upsert_async(std::string_view project, Score score, WriteCallback done);

  // DELETE /v1/scores/{id}: kNotFound when there is no such id.
  Expected<void> remove(std::string_view project, std::string_view id);
  void remove_async(std::string_view project, std::string_view id, WriteCallback done);

  Expected<std::optional<Score>> get(std::string_view project, std::string_view id) const;

  // GET /v1/scores. Newest first by timestamp, except with request_id or
  // session_id (then by target and name). kInvalidArgument for a bad cursor.
  Expected<ScoreListPage> list(std::string_view project, const ScoreListQuery& query) const;

  // POST /v1/score-configs: one config per name; kInvalidArgument when the
  // name already has one or the id is taken.
  Expected<ScoreConfig> create_config(std::string_view project, ScoreConfig config);
  Expected<std::vector<ScoreConfig>> configs(std::string_view project) const;

  // An evaluator run's outcome (scoring/evaluator_runtime.hpp): its scores
  // (ids, source EVAL and author set by the caller; checked against score
  // configs like any other score) and the run's own entries, which `extend`
  // adds, in one batch of a group commit. Listeners get on_scores, then
  // on_evaluation with `evaluation.scores` set to the stored scores, and
  // scores_written / evaluation_written after the commit. With no scores only
  // the run entries are written (an error run). kInvalidArgument when a score
  // breaks its config (nothing of this job is written then); `extend` may
  // fail too. Unlike the API writes, a group holding only evaluations is not
  // fsynced: a process crash cannot lose it (the WAL write is in the page
  // cache), and a power cut that does loses the run's final state with it, so
  // the run — pending since its record's batch — is evaluated again.
  // The blocking form copies the listeners' view of `evaluation` back; call
  // it from an evaluator worker. The async form is what the workers use: a
  // worker hands its finished run over and takes the next one, instead of
  // sleeping through the group commit (a futex wait and wake per run).
  using RunEntries = std::function<Expected<void>(const Store::Lease&, rocksdb::WriteBatch&)>;
  Expected<std::vector<Score>> write_evaluation(std::string_view project, std::vector<Score> scores,
                                                EvaluationEvent& evaluation, RunEntries extend);
  void write_evaluation_async(std::string_view project, std::vector<Score> scores, EvaluationEvent evaluation,
                              RunEntries extend, WriteCallback done);

  // The hourly histograms the eval queries' fast path reads (evals.hpp).
  ScoreAggregates& aggregates() { return aggregates_; }

  struct Counters {
    std::uint64_t groups = 0;        // group commits (one fsync each)
    std::uint64_t refused_full = 0;  // writes refused because the queue was full
    std::uint64_t queue_depth = 0;
    std::uint64_t names_warmed = 0;  // score names whose histograms the start-up warm-up built
  };
  Counters counters() const;

  // Test hook: while paused the writer takes nothing from the queue, so a
  // test can queue several writes and have them committed as one group.
  void pause_writer_for_testing(bool paused);

 private:
  struct Job;
  void enqueue(std::unique_ptr<Job> job);
  // Both forms of write_evaluation; copy_back (may be null) receives the
  // listeners' view of the event before `done` runs.
  void write_evaluation_job(std::string_view project, std::vector<Score> scores, const EvaluationEvent& evaluation,
                            RunEntries extend, WriteCallback done, EvaluationEvent* copy_back);
  void writer_loop();
  void warm_up();
  // `batch` is the writer's own, cleared for each group (kept: a fresh one
  // costs a 2.5 KiB allocation and its arena, bench/README session 19).
  void run_group(std::vector<std::unique_ptr<Job>>& group, rocksdb::WriteBatchWithIndex& batch);
  Expected<std::vector<Score>> build_write(const BatchView& db, Job& job);
  Expected<std::vector<Score>> build_remove(const BatchView& db, Job& job);
  // Applies each score's config (by its config_id, else by its name).
  Expected<void> check_configs(const BatchView& db, std::string_view project, std::vector<Score>& scores);
  // The stored config with this id, through cache_; nullopt when none.
  Expected<std::optional<ScoreConfig>> config_by_id(const BatchView& db, std::string_view project,
                                                    const std::string& id);
  Expected<void> check_known(std::string_view project, std::string_view request_id) const;
  std::int64_t now_us() const;

  static constexpr std::size_t kQueueCapacity = 65536;  // jobs waiting for the writer
  static constexpr std::size_t kMaxGroup = 1024;        // jobs per group commit
  RequestLog& log_;
  std::function<std::int64_t()> now_us_;
  std::mutex config_mu_;  // serialises config creation (one config per name)
  // Bumped after every config creation: the writer forgets which names had
  // no config.
  std::atomic<std::uint64_t> config_generation_{0};
  ScoreAggregates aggregates_;

  // What the writer thread knows storage holds, so that a score does not
  // re-read its config or rewrite its name entry every time (writer thread
  // only). Configs are never changed or deleted once created, and name
  // entries never deleted, so only "no config for this name" can go stale
  // (config_generation_). Names are remembered only after their commit.
  struct WriterCache {
    using Key = std::pair<std::string, std::string>;  // project, score name or config id
    static constexpr std::size_t kMaxEntries = 4096;  // per map; past it, start over
    std::set<Key> names;                               // 'M' entry stored
    std::map<Key, std::optional<ScoreConfig>> by_name;  // the config named by the score's name, or none
    std::map<Key, ScoreConfig> by_id;                  // configs by id (found ones only)
    std::uint64_t config_generation = 0;
  };
  WriterCache cache_;

  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stopping_ = false;
  bool paused_ = false;
  std::atomic<std::uint64_t> groups_{0};
  std::atomic<std::uint64_t> refused_full_{0};
  std::thread writer_;
  std::atomic<bool> warm_stop_{false};
  std::atomic<std::uint64_t> warmed_{0};
  std::thread warmer_;
};

}  // namespace arbiter::scoring
