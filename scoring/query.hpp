#pragma once
// POST /v1/request/query (DESIGN.md §4): Helicone's request filter tree,
// parsed into a RequestQuery and executed against the Store's indexes.
//
// Filter tree, as Helicone's clients send it:
//   "all" | {} | null                                   — no filter
//   {"request_response_rmt": {<field>: {<op>: value, ...}, ...}}   — leaf
//   {"request_response_rmt": {"properties": {<key>: {<op>: value}}}}
//   {"request_response_rmt": {"scores": {<name>: {<op>: value}}}}
//   {"properties": {<key>: {<op>: value}}}                  — Helicone's property table
//   {"left": <node>, "operator": "and" | "or", "right": <node>}
// Several fields or operators inside one leaf are ANDed. "properties.<k>" and
// "scores.<k>" are also accepted as field names.
//
// Fields and their operators:
//   text:      request_id model user_id session_id path provider properties.<k>
//              → equals not-equals contains not-contains like ilike
//   number:    status latency time_to_first_token prompt_tokens completion_tokens
//              total_tokens cost → equals not-equals gt gte lt lte
//   timestamp: request_created_at response_created_at (ISO-8601 strings)
//              → equals not-equals gt gte lt lte
//   scores.<k> (number, boolean or numeric string) → equals not-equals gt gte lt lte
//              on the request-level score <k> (booleans as 0/1; a missing
//              score or an unmapped category label matches nothing, not even
//              not-equals). A range on a score is answered from idx_score's
//              value index when that is the most selective source.
// Sort: {"<key>": "asc" | "desc"} with key created_at latency cost
// prompt_tokens completion_tokens total_tokens or scores.<name>.
// Semantics:
//   - `model` is RequestRecord::model() (response model, else request model).
//   - contains / not-contains: substring, ASCII case-insensitive.
//   - like: SQL LIKE, case-sensitive, '%' any run, '_' one UTF-8 character,
//     '\' escapes the next character. ilike: the same, ASCII case-insensitive.
//   - An unknown number (time_to_first_token, tokens, cost) or a missing
//     response time matches no operator, not even not-equals (SQL NULL).
//   - A missing property reads as "" (as in Helicone's ClickHouse map).
//
// Thread-safety: parse_request_query and matches are pure; execute_query may
// run concurrently with itself and with writers (it reads one snapshot).

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/request_record.hpp"

namespace arbiter::scoring {

class Store;

enum class FilterField {
  kRequestId,
  kModel,
  kUserId,
  kSessionId,
  kPath,
  kProvider,
  kProperty,  // FilterLeaf::key = property name (lower-cased)
  kStatus,
  kLatency,
  kTimeToFirstToken,
  kPromptTokens,
  kCompletionTokens,
  kTotalTokens,
  kCost,
  kRequestCreatedAt,
  kResponseCreatedAt,
  kScore,  // FilterLeaf::key = score name
};

enum class FilterOp {
  kEquals,
  kNotEquals,
  kGt,
  kGte,
  kLt,
  kLte,
  kContains,
  kNotContains,
  kLike,
  kIlike
};

struct FilterLeaf {
  FilterField field = FilterField::kRequestId;
  std::string key;  // property or score name
  FilterOp op = FilterOp::kEquals;
  // Text fields: string. Number fields and scores: double. Timestamps: unix µs.
  std::variant<std::string, double, std::int64_t> value;
};

struct FilterNode {
  enum class Kind { kAll, kLeaf, kAnd, kOr };
  Kind kind = Kind::kAll;
  FilterLeaf leaf;                   // kLeaf
  std::vector<FilterNode> children;  // kAnd / kOr, at least two (nested same-kind nodes flattened)
};

enum class SortKey {
  kCreatedAt,
  kLatency,
  kCost,
  kPromptTokens,
  kCompletionTokens,
  kTotalTokens,
  kScore,  // RequestQuery::sort_score; requests without that score sort last
};

struct RequestQuery {
  FilterNode filter;  // kAll by default
  SortKey sort = SortKey::kCreatedAt;
  std::string sort_score;  // the score name for SortKey::kScore
  bool descending = true;
  std::size_t limit = 100;  // 1..kMaxLimit
  std::size_t offset = 0;   // 0..kMaxOffset
};

inline constexpr std::size_t kMaxLimit = 1000;
// Deep pagination keeps offset+limit candidates in memory; past this, narrow
// the query with request_created_at instead.
inline constexpr std::size_t kMaxOffset = 1'000'000;
inline constexpr std::size_t kMaxFilterDepth = 64;

// Parses the query body: {filter, sort, limit, offset} plus the keys
// Helicone's client sends and we ignore (isCached, includeInputs,
// isPartOfExperiment, isScored). Errors are kInvalidArgument and name the
// offending key, field or operator, e.g. "unknown filter field 'modle'",
// "unsupported operator 'between' for field 'latency'",
// "limit must be an integer between 1 and 1000".
Expected<RequestQuery> parse_request_query(const nlohmann::json& body);

// Parses one filter node (the "filter" value).
Expected<FilterNode> parse_filter(const nlohmann::json& filter);

// Whether a record satisfies the filter. Score leaves read record.scores,
// which the caller fills (attach_score_data) when the filter has any.
bool matches(const FilterNode& filter, const RequestRecord& record);

// SQL LIKE (see above).
bool like_match(std::string_view text, std::string_view pattern, bool case_insensitive);

// What a query did; for tests, logs and the bench.
struct QueryStats {
  std::string plan;                         // e.g. "idx_property", "idx_time", "request_id"
  std::uint64_t index_entries_scanned = 0;  // index keys read (including the planner's probes)
  std::uint64_t records_examined = 0;       // records read and evaluated against the filter
};

// Runs the query over one project's records (another project's records are
// never read). Picks the most selective indexable leaf of the top-level AND
// chain — equality on request_id, a property, user_id, session_id or model,
// narrowed by any request_created_at range — by counting (up to a cap) the
// entries each candidate index would yield; otherwise scans idx_time (within
// the request_created_at range, if any). Sorted by created_at, results stream
// from the index in order and stop after offset+limit matches; other sorts
// keep the best offset+limit candidates. Ties break by created_at desc, then
// request_id. Records come without bodies.
Expected<std::vector<RequestRecord>> execute_query(const Store& store, std::string_view project,
                                                   const RequestQuery& query,
                                                   QueryStats* stats = nullptr);

}  // namespace arbiter::scoring
