#pragma once
// Handing a just-committed request record to background work in memory (the
// evaluator's runs, the webhook's request.logged deliveries), so that the
// work does not read back what the storage thread has just written.
//
// The request log holds its records through shared_ptrs (RequestRecord
// derives from enable_shared_from_this), so a hand-off shares the log's
// record instead of copying it; a record offered by anyone else (a test, a
// bench) is copied. Every hand-off counts the record's bytes (the struct and
// its three bodies) against the budget until its last pointer goes; a record
// over the per-record cap, or one the budget has no room for, is not handed
// off (nullptr), and the work reads it back as before. The bound keeps a
// backlog from pinning records in memory.
//
// Thread-safety: take() from any thread. The pointers handed out may outlive
// the RecordHandoff (the count they give back is shared with them).

#include <atomic>
#include <cstddef>
#include <memory>

#include "scoring/request_record.hpp"

namespace arbiter::scoring {

// No record larger than this (the struct and its bodies) is handed off.
inline constexpr std::size_t kMaxHandedRecordBytes = 256u << 10;

class RecordHandoff {
 public:
  explicit RecordHandoff(std::size_t budget_bytes) : budget_(budget_bytes) {}

  // The record as committed, or nullptr when over the cap or the budget.
  // The caller must not mutate the record afterwards (nobody does: the log
  // offers records to its listeners once they are final).
  std::shared_ptr<const RequestRecord> take(const RequestRecord& record);

  std::size_t held_bytes() const { return held_->load(std::memory_order_relaxed); }

 private:
  std::size_t budget_;
  std::shared_ptr<std::atomic<std::size_t>> held_ = std::make_shared<std::atomic<std::size_t>>(0);
};

}  // namespace arbiter::scoring
