#pragma once
// Evaluator runs (DESIGN.md §6): one entry per (project, request, evaluator)
// in the `eval_runs` column family, written by the evaluator runtime.
//
// Key layouts (part() as in keys.hpp):
//
//   eval_runs  'R' part(project) part(request_id) part(evaluator) → encode_run
//              'P' part(project) part(request_id) part(evaluator) → be64(created_us)
//
// 'P' marks the runs that are not finished (pending, running,
// waiting-for-fields): start-up scans it to resume them, and a finished run
// deletes its 'P' entry in the batch that writes its final state, so the two
// never disagree. 'R' is the run itself — except for a run that was only
// scheduled: the storage thread writes just its 'P' entry (one small entry
// per run on the record's batch, no encoding), and readers see a 'P' without
// an 'R' as a pending run created at the 'P' value's time. GET
// /v1/evaluators/runs?request_id= scans both prefixes of the request.
//
// A run's id is derived from (project, request, evaluator): rescheduling the
// same evaluator on the same request (the record was replaced, a manual run
// with store) overwrites the entry instead of adding another.
//
// Thread-safety: pure functions and plain values; the reads may run on any
// thread (RocksDB is thread-safe).

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/store.hpp"

namespace rocksdb {
class WriteBatch;
}

namespace arbiter::scoring {


enum class RunState { kPending, kWaiting, kRunning, kCompleted, kError };

// "pending", "waiting-for-fields", "running", "completed", "error".
std::string_view to_string(RunState state);
std::optional<RunState> parse_run_state(std::string_view text);
inline bool is_finished(RunState s) {
  return s == RunState::kCompleted || s == RunState::kError;
}

struct EvalRun {
  std::string id;
  std::string project;
  std::string request_id;
  std::string evaluator;
  RunState state = RunState::kPending;
  std::uint32_t attempts = 0;      // attempts started so far
  std::int64_t created_us = 0;     // scheduled (the record's batch)
  std::int64_t started_us = 0;     // first attempt began; 0 = not yet
  std::int64_t finished_us = 0;    // completed or error; 0 = not yet
  std::int64_t duration_us = 0;    // time spent evaluating, over all attempts
  std::int64_t next_attempt_us = 0;  // pending after a retryable failure: not before this
  std::string error;               // error: why; pending/running after a failure: the last one
  std::vector<std::string> missing;  // waiting-for-fields: the `needs` not present yet
  // completed: [{"id", "name", "value", "data_type", "comment"}] of the scores written.
  nlohmann::json scores = nlohmann::json::array();
  bool manual = false;  // written by POST /v1/evaluators/{name}/run with "store": true
};

namespace run_keys {
std::string run(std::string_view project, std::string_view request_id, std::string_view evaluator);
std::string active(std::string_view project, std::string_view request_id,
                   std::string_view evaluator);
std::string request_prefix(std::string_view project, std::string_view request_id);  // 'R'
std::string active_prefix();                                                         // 'P'

struct ActiveRef {
  std::string project;
  std::string request_id;
  std::string evaluator;
};
// Parses a 'P' key; nullopt when it is not one.
std::optional<ActiveRef> parse_active(std::string_view key);
}  // namespace run_keys

// A stable id for a name tuple: 128 bits of two FNV-1a passes, printed as an
// RFC 4122-shaped UUID (version nibble 8, "custom"). The same parts give the
// same id in every build and on every machine.
std::string derived_id(std::initializer_list<std::string_view> parts);

std::string encode_run(const EvalRun& run);
Expected<EvalRun> decode_run(std::string_view bytes);

// The API's shape of a run (times as ISO-8601, duration in ms).
nlohmann::json to_json(const EvalRun& run);

// Adds the run's entries to `batch`: 'R', and 'P' put or deleted by state.
Expected<void> put_run(const Store::Lease& db, rocksdb::WriteBatch& batch, const EvalRun& run);

// Adds a just-scheduled run: its 'P' entry alone (see the layout above).
Expected<void> put_pending(const Store::Lease& db, rocksdb::WriteBatch& batch, std::string_view project,
                           std::string_view request_id, std::string_view evaluator,
                           std::int64_t created_us);

// The run a lone 'P' entry stands for: pending, 0 attempts, id derived.
EvalRun pending_run(std::string_view project, std::string_view request_id, std::string_view evaluator,
                    std::int64_t created_us);

Expected<std::optional<EvalRun>> read_run(const Store& store, std::string_view project,
                                          std::string_view request_id, std::string_view evaluator);

// Every run of one request in this project, ordered by evaluator name.
Expected<std::vector<EvalRun>> runs_for_request(const Store& store, std::string_view project,
                                                std::string_view request_id);

// Adds deletes of every run entry ('R' and 'P') of one request to `batch`
// (record retention). Returns how many runs were deleted.
Expected<std::uint64_t> delete_request_runs(const Store::Lease& db, rocksdb::WriteBatch& batch,
                                            std::string_view project, std::string_view request_id);

// Up to `limit` unfinished runs after the 'P' key `after` (exclusive; empty =
// from the start), in key order. `next` is set to the last key visited, or
// cleared when the scan reached the end.
Expected<std::vector<run_keys::ActiveRef>> scan_active(const Store& store, std::string& next,
                                                       std::size_t limit);

}  // namespace arbiter::scoring
