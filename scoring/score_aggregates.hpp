#pragma once
// In-memory hourly value histograms per (project, score name): what makes an
// unfiltered distribution or eval query over 1,000,000 scores answer in
// milliseconds (DESIGN.md §9) instead of scanning every index entry.
//
// For each name: hour → (value → count) for numeric scores, plus true/false
// counts for booleans. Any [start, end) query is answered exactly from the
// histograms of the whole hours inside the range plus a scan of the index for
// the partial hours at its edges (see evals.cpp). Scores with the same value
// share one entry, so typical scores (integers 0..100, booleans) stay small.
//
// The histograms are derived data: built lazily from idx_score on a name's
// first query and kept current by the score store's writers, never written to
// disk. A name whose histograms grow past kMaxEntriesPerName (e.g. a
// continuous float score), or that does not fit in kMaxEntriesTotal, is not
// kept: its queries scan the index instead (still correct, just slower).
//
// Consistency with concurrent writers: a writer holds gate() shared from
// before its WriteBatch until after it called apply(); a load takes the gate
// exclusively only to take its RocksDB snapshot, then scans that snapshot
// while deltas that arrive meanwhile are queued and applied afterwards. So
// every committed score is counted exactly once.
//
// Thread-safety: all members may be called concurrently. Lifetime: owned by
// the ScoreStore.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/score.hpp"

namespace arbiter::scoring {

class Store;

struct HourHistogram {
  std::map<double, std::uint64_t> numeric;  // value → count (NUMERIC and mapped CATEGORICAL)
  std::uint64_t bool_false = 0;
  std::uint64_t bool_true = 0;
  bool empty() const { return numeric.empty() && bool_false == 0 && bool_true == 0; }
};

using NameHistograms = std::map<std::int64_t, HourHistogram>;  // hour start (µs) → histogram

class ScoreAggregates {
 public:
  static constexpr std::size_t kMaxEntriesPerName = 200'000;
  static constexpr std::size_t kMaxEntriesTotal = 400'000;
  static constexpr std::int64_t kHourUs = 3'600'000'000LL;

  // One change: +1 (written) or -1 (deleted / overwritten) of a valued score.
  struct Delta {
    std::string project;
    std::string name;
    std::int64_t ts_us = 0;
    double value = 0;
    ScoreDataType data_type = ScoreDataType::kNumeric;
    int sign = +1;
  };

  // Writers: hold shared while writing the batch and calling apply().
  std::shared_mutex& gate() { return gate_; }
  void apply(const std::vector<Delta>& deltas);

  // Forgets every histogram (they are rebuilt on their next query): for
  // deletions made outside the writers, i.e. retention.
  void invalidate();

  // Calls fn(histograms) for the name, loading it first if needed (a scan of
  // the name's 'T' index). Returns false, without calling fn, when the name
  // is not kept (too large); errors are storage errors from the load.
  Expected<bool> with_name(const Store& store, std::string_view project, std::string_view name,
                           const std::function<void(const NameHistograms&)>& fn);

 private:
  struct Entry {
    enum class State { kLoading, kReady, kTooLarge } state = State::kLoading;
    NameHistograms hours;
    std::size_t entries = 0;     // histogram entries (for the caps)
    std::vector<Delta> pending;  // deltas that arrived while loading
  };
  void apply_locked(Entry& e, const Delta& d);

  std::shared_mutex gate_;
  std::mutex mu_;       // guards names_ and total_entries_
  std::mutex load_mu_;  // one load at a time
  std::map<std::pair<std::string, std::string>, Entry> names_;
  std::size_t total_entries_ = 0;
};

}  // namespace arbiter::scoring
