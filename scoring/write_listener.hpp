#pragma once
// Write listeners: the seam through which the evaluator runtime and the
// webhook outbox learn about stored data, atomically with it.
//
// Every durable write of the request log (records), the score store (scores,
// feedback) and the evaluator runtime (finished runs) offers its
// rocksdb::WriteBatch to each registered listener before committing it. A
// listener adds its own entries (an outbox delivery, a pending evaluator run)
// to that batch, so they are committed — or lost — together with the data
// they describe: a delivery is never written for a record that was not, and a
// record is never written without its delivery. After a successful commit the
// matching *_written() call lets the listener wake its workers.
//
// Threads: on_records/records_written run on the request log's storage
// thread; the score, feedback and evaluation calls on whichever worker wrote
// them (API workers, evaluator workers). All of them must be quick and must
// not block on the network or on another write (no Store writes from inside:
// the caller holds write locks). Reads through `store` are allowed.
//
// Registration: add listeners to the RequestLog before the first submit()
// and before any ScoreStore write (main wires them up before starting the
// servers); the list is not guarded afterwards. Listeners must outlive the
// RequestLog's storage thread (close() it first).

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "scoring/request_record.hpp"
#include "scoring/score.hpp"
#include "scoring/store.hpp"

namespace rocksdb {
class WriteBatch;
}

namespace arbiter::scoring {

// A finished evaluator run, as reported to listeners (evaluation.completed).
struct EvaluationEvent {
  std::string project;
  std::string request_id;
  std::string evaluator;  // evaluator name from the config
  std::string run_id;
  std::string state;  // "completed" or "error"
  std::uint32_t attempts = 0;
  std::int64_t duration_us = 0;
  std::string error;          // set when state == "error"
  std::vector<Score> scores;  // the scores the run wrote (source EVAL)
};

class WriteListener {
 public:
  virtual ~WriteListener() = default;

  // Records about to be committed (bodies included, property keys lower-cased).
  virtual void on_records(const Store::Lease& db, std::span<const RequestRecord* const> records,
                          rocksdb::WriteBatch& batch) {
    (void)db, (void)records, (void)batch;
  }
  virtual void records_written(std::span<const RequestRecord* const> records) { (void)records; }

  // Scores about to be committed (ids, timestamps and project filled in).
  virtual void on_scores(const Store::Lease& db, std::string_view project, std::span<const Score> scores,
                         rocksdb::WriteBatch& batch) {
    (void)db, (void)project, (void)scores, (void)batch;
  }
  virtual void scores_written(std::string_view project, std::span<const Score> scores) {
    (void)project, (void)scores;
  }

  // Feedback fields posted for a request (POST /v1/request/{id}/feedback),
  // after they were merged and committed: `fields` is the merged object.
  virtual void feedback_written(std::string_view project, std::string_view request_id,
                                const nlohmann::json& fields) {
    (void)project, (void)request_id, (void)fields;
  }

  // An evaluator run that finished (completed or error), about to be committed.
  virtual void on_evaluation(const Store::Lease& db, const EvaluationEvent& event, rocksdb::WriteBatch& batch) {
    (void)db, (void)event, (void)batch;
  }
  virtual void evaluation_written(const EvaluationEvent& event) { (void)event; }
};

}  // namespace arbiter::scoring
