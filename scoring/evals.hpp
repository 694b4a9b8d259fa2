#pragma once
// Score analytics (DESIGN.md §4): POST /v1/evals/query and
// POST /v1/evals/score-distributions/query, in Helicone's response shapes:
//
//   evals/query → [{"name", "averageScore", "minScore", "maxScore", "count",
//                   "overTime": [{"date", "count"}],
//                   "averageOverTime": [{"date", "value"}]}]
//   score-distributions/query → [{"name", "distribution":
//                                  [{"lower", "upper", "value"}]}]
//   (with groupBy each entry also has "group", and entries are sorted by
//   name, then group).
//
// Body: {"filter": <request filter tree>, "timeFilter": {"start", "end"},
// "groupBy": "model" | "user_id" | "properties.<key>", "buckets": 1..100
// (distributions only; default 10)}; Helicone's "timeZoneDifference",
// "offset" and "limit" are accepted and ignored.
//
// Semantics (the choices this implementation makes):
//   - The time axis is the score's timestamp (submission time, or the typed
//     API's `timestamp`); timeFilter is [start, end), ISO-8601.
//   - averageScore/minScore/maxScore/count are over every score in range —
//     never a mean of bucket means. Booleans count as 0/1, so their average
//     is the true-rate. Categorical scores count by their config value;
//     labels without a value are left out.
//   - overTime / averageOverTime buckets: hourly when the range (timeFilter,
//     else the first to the last matching score) spans at most 7 days, daily
//     up to 180 days, weekly beyond; UTC-aligned, only buckets that hold
//     scores, oldest first; `date` is the bucket start.
//   - Distribution: `buckets` equal-width buckets from min to max (the last
//     one closed), counts summing to the number of scores; a name whose scores
//     are all booleans gets two buckets, false [0,0] and true [1,1]; when
//     every value is equal, one bucket [v, v].
//   - Without filter and groupBy the whole hours of the range come from the
//     score store's in-memory hourly histograms (score_aggregates.hpp) and
//     only the partial hours at the edges are scanned.
//   - filter / groupBy look at the scored request's record (model, user,
//     properties, other fields, even scores.<k>): a score whose request is
//     not stored (yet), and session scores, match neither. Without them only
//     the score index is read (the fast path).
//
// Thread-safety: pure functions over a Store that may be written
// concurrently (reads use one snapshot).

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "scoring/expected.hpp"
#include "scoring/query.hpp"

namespace arbiter::scoring {

class Store;
class ScoreAggregates;

enum class EvalGroupBy { kNone, kModel, kUserId, kProperty };

struct EvalQuery {
  FilterNode filter;
  std::optional<std::int64_t> start_us;  // inclusive
  std::optional<std::int64_t> end_us;    // exclusive
  EvalGroupBy group_by = EvalGroupBy::kNone;
  std::string group_key;  // property key (lower-cased) for kProperty
  std::size_t buckets = 10;
};

Expected<EvalQuery> parse_eval_query(const nlohmann::json& body, bool distribution);

// Bucket width for overTime (µs) for a time range of `span_us`.
std::int64_t eval_bucket_us(std::int64_t span_us);

// `aggregates` (optional, the ScoreStore's) serves whole hours of
// unfiltered, ungrouped queries from memory; without it every entry in range
// is scanned. The answers are the same either way.
Expected<nlohmann::json> run_eval_query(const Store& store, std::string_view project,
                                        const EvalQuery& query,
                                        ScoreAggregates* aggregates = nullptr);
Expected<nlohmann::json> run_score_distribution(const Store& store, std::string_view project,
                                                const EvalQuery& query,
                                                ScoreAggregates* aggregates = nullptr);

}  // namespace arbiter::scoring
