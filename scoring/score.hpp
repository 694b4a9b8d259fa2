#pragma once
// The score model (DESIGN.md §4): one store for Helicone's
// `POST /v1/request/{id}/score` and the typed `POST /v1/scores`.
//
// A score is identified by (project, target, name), where the target is a
// request (optionally narrowed to an observation inside it) or a session. A
// Helicone score and a typed score with the same request and name are the
// same score: the later write overwrites the earlier one. Every score also
// has an `id`: the typed API's idempotency key when the client sent one,
// otherwise a generated UUID that stays the same across overwrites.
//
// Values: NUMERIC (a finite double; Helicone's API only sends integers),
// BOOLEAN (stays a boolean; aggregated as 0/1, i.e. a true-rate) and
// CATEGORICAL (a label; it has a numeric value, and so takes part in
// aggregates, only when a score config maps the label to one).
//
// Thread-safety: plain value types and pure functions.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scoring/expected.hpp"

namespace arbiter::scoring {

enum class ScoreDataType { kNumeric, kBoolean, kCategorical };
enum class ScoreSource { kApi, kAnnotation, kEval };

std::string_view to_string(ScoreDataType t);
std::string_view to_string(ScoreSource s);
std::optional<ScoreDataType> parse_data_type(std::string_view s);
std::optional<ScoreSource> parse_source(std::string_view s);

inline constexpr std::size_t kMaxScoreNameBytes = 255;
// Bounds on the free-form parts of a submission, far beyond any real use, so
// that one call cannot grow a stored score (or a feedback record) without
// limit: comment, metadata (serialised), a config's description, each
// feedback field (serialised); author; scores in one Helicone submission.
inline constexpr std::size_t kMaxScoreTextBytes = 64 * 1024;
inline constexpr std::size_t kMaxAuthorBytes = 1024;
inline constexpr std::size_t kMaxScoresPerSubmission = 1000;
inline constexpr std::size_t kMaxFeedbackFields = 100;
// The Helicone feedback endpoint's score name.
inline constexpr std::string_view kFeedbackScoreName = "helicone-score-feedback";

struct Score {
  std::string id;
  std::string project;
  // Exactly one of request_id / session_id is set; observation_id only with
  // request_id.
  std::string request_id;
  std::string observation_id;
  std::string session_id;
  std::string name;
  ScoreDataType data_type = ScoreDataType::kNumeric;
  // NUMERIC / BOOLEAN (0 or 1) / CATEGORICAL with a mapped value.
  std::optional<double> value;
  std::string label;  // CATEGORICAL only
  std::string comment;
  nlohmann::json metadata = nlohmann::json::object();
  ScoreSource source = ScoreSource::kApi;
  std::string author;
  std::string config_id;
  std::int64_t timestamp_us = 0;   // when it was observed: the time axis of /v1/evals/*
  std::int64_t created_at_us = 0;  // first write under this id
  std::int64_t updated_at_us = 0;  // last write
};

// The value as the API shows it: true/false, a number, or the label.
nlohmann::json score_value_json(const Score& s);
// The typed API's shape (GET /v1/scores, POST /v1/scores answers).
nlohmann::json to_json(const Score& s);

// Storage encoding: a format-version byte, then (version 2) fixed-order
// binary fields with the metadata as embedded CBOR (layout in the .cpp).
// decode also reads version 1 (CBOR of a short-keyed object) from older
// databases; a truncated, corrupt or unknown value is kStorage ("corrupt
// score: ..."), never an exception.
std::string encode_score(const Score& s);
Expected<Score> decode_score(std::string_view bytes);

// A score config (POST /v1/score-configs): fixes a name's type and its
// inclusive range (NUMERIC) or categories (CATEGORICAL).
struct ScoreCategory {
  std::string label;
  double value = 0;
};
struct ScoreConfig {
  std::string id;
  std::string name;
  ScoreDataType data_type = ScoreDataType::kNumeric;
  std::optional<double> min_value;
  std::optional<double> max_value;
  std::vector<ScoreCategory> categories;
  std::string description;
  std::int64_t created_at_us = 0;
};

nlohmann::json to_json(const ScoreConfig& c);
std::string encode_config(const ScoreConfig& c);
Expected<ScoreConfig> decode_config(std::string_view bytes);

// Validates a POST /v1/score-configs body (unknown keys, types, min <= max,
// unique non-empty labels and values...). The id is the body's or empty.
Expected<ScoreConfig> parse_score_config(const nlohmann::json& body);

// Checks a score against its config: type, range, category (mapping a
// CATEGORICAL label to its value, or a number to its label). Errors name the
// rule, e.g. "score 'accuracy' = 120 is above the config's max_value 100".
Expected<void> apply_config(Score& s, const ScoreConfig& c);

// Score names: 1..255 bytes, valid UTF-8, no control bytes.
Expected<void> validate_score_name(std::string_view name);

// POST /v1/request/{id}/score: {"scores": {"name": int | bool, ...}} →
// (name, value) pairs; booleans as BOOLEAN, integers as NUMERIC. Errors
// name the key (floats get a "send 92, not 0.92" hint).
struct HeliconeScore {
  std::string name;
  ScoreDataType data_type;
  double value;
};
Expected<std::vector<HeliconeScore>> parse_helicone_scores(const nlohmann::json& body);

// POST /v1/request/{id}/feedback: {"rating": bool, ...}. `rating` is
// required; every other top-level field is kept for feedback.*.
struct Feedback {
  bool rating = false;
  nlohmann::json fields = nlohmann::json::object();
};
Expected<Feedback> parse_feedback(const nlohmann::json& body);

// POST /v1/scores: validates shape and types; `id` empty when not sent;
// timestamp_us 0 when not sent. Config checks happen in the store.
Expected<Score> parse_typed_score(const nlohmann::json& body);

// A random RFC 4122 v4 UUID.
std::string random_uuid();

}  // namespace arbiter::scoring
