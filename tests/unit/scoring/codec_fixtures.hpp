#pragma once
// Records and scores for the storage codec tests (storage_codec_test.cpp).
//
// The golden version-1 values in data/codec_v1_golden.json were produced by
// the version-1 encoders (commit 7539b77, before format version 2) from
// exactly these fixtures, so the fixtures must not change: add new ones
// instead. Each fixture exercises something a compact format can get wrong:
// optionals present with zero values vs absent, negative and extreme
// integers, -0.0 and denormal doubles, multi-byte UTF-8, embedded NUL bytes,
// invalid UTF-8 (stored as sent), strings long enough for 2- and 3-byte
// length prefixes, nested free-form JSON.

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "scoring/request_record.hpp"
#include "scoring/score.hpp"

namespace arbiter::scoring::codec_fixtures {

inline std::vector<std::pair<std::string, RequestRecord>> records() {
  std::vector<std::pair<std::string, RequestRecord>> out;

  RequestRecord full;
  full.request_id = "5b1e8f0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
  full.project = "default";
  full.created_at_us = 1714564800123456;
  full.response_at_us = 1714564801500000;
  full.latency_ms = 1376.5;
  full.time_to_first_token_ms = 210.25;
  full.method = "POST";
  full.path = "/v1/chat/completions?x=1&q=%C3%BC";
  full.upstream = "openai";
  full.status = 200;
  full.request_model = "gpt-4o";
  full.response_model = "gpt-4o-2024-08-06";
  full.user_id = "zo\xC3\xAB \xF0\x9F\xA6\x89";  // "zoë 🦉"
  full.session_id = "s-1";
  full.session_path = "/a/b";
  full.session_name = "checkout";
  full.properties = {{"env", "prod"},
                     {"team", "search"},
                     {"pa\xC3\xADs", "Espa\xC3\xB1" "a \xE2\x80\x94 \xC3\xB1"},
                     {"emoji", "\xF0\x9F\xA6\x89"}};
  full.is_stream = true;
  full.prompt_tokens = 12;
  full.completion_tokens = 30;
  full.total_tokens = 42;
  full.cost_usd = 0.00123;
  full.request_size = 1000;
  full.response_size = 2000;
  full.request_truncated = true;
  full.response_omitted = true;
  full.feedback = {{"ground_truth", "yes"},
                   {"nested", {{"a", {1, 2.5, nullptr, true, "\xC3\xBC"}}, {"b", nlohmann::json::object()}}},
                   {"n", -7},
                   {"big", std::numeric_limits<std::uint64_t>::max()}};
  out.emplace_back("full", full);

  RequestRecord minimal;
  minimal.request_id = "id-1";
  minimal.project = "p";
  out.emplace_back("minimal", minimal);

  // Present-but-zero optionals must stay present; a cancelled stream.
  RequestRecord cancelled;
  cancelled.request_id = "cancelled-1";
  cancelled.project = "p";
  cancelled.created_at_us = -5;  // before the epoch
  cancelled.latency_ms = -0.0;
  cancelled.time_to_first_token_ms = 0.0;
  cancelled.method = "POST";
  cancelled.path = "/v1/chat/completions";
  cancelled.status = kStatusClientCancelled;
  cancelled.is_stream = true;
  cancelled.prompt_tokens = 0;
  cancelled.cost_usd = 0.0;
  cancelled.request_omitted = true;
  cancelled.error_message = "client went away";
  out.emplace_back("cancelled", cancelled);

  // Limits of every integer and double field; every flag; odd strings.
  RequestRecord extremes;
  extremes.request_id = "x";
  extremes.project = std::string("pro\0ject", 8);
  extremes.created_at_us = std::numeric_limits<std::int64_t>::max();
  extremes.response_at_us = std::numeric_limits<std::int64_t>::min();
  extremes.latency_ms = std::numeric_limits<double>::max();
  extremes.time_to_first_token_ms = std::numeric_limits<double>::denorm_min();
  extremes.method = "";
  extremes.path = "/" + std::string(300, 'p');      // 2-byte length prefix
  extremes.upstream = std::string(17000, 'u');      // 3-byte length prefix
  extremes.status = std::numeric_limits<int>::min();
  extremes.request_model = "m";
  extremes.user_id = std::string("nul\0inside", 10);
  extremes.properties = {{"", ""}, {"k", std::string(200, 'v')}};
  extremes.is_stream = true;
  extremes.prompt_tokens = std::numeric_limits<std::int64_t>::max();
  extremes.completion_tokens = std::numeric_limits<std::int64_t>::min();
  extremes.total_tokens = -1;
  extremes.cost_usd = -1e300;
  extremes.request_size = std::numeric_limits<std::int64_t>::max();
  extremes.response_size = -1;
  extremes.request_truncated = true;
  extremes.response_truncated = true;
  extremes.request_omitted = true;
  extremes.response_omitted = true;
  extremes.error_message = "e";
  out.emplace_back("extremes", extremes);

  // Header values are stored as sent, valid UTF-8 or not.
  RequestRecord raw_bytes;
  raw_bytes.request_id = "raw-1";
  raw_bytes.project = "p";
  raw_bytes.status = 502;
  raw_bytes.user_id = "\xFF\xFE";
  raw_bytes.session_name = "\xC3";
  raw_bytes.properties = {{"bad", "\xED\xA0\x80"}};
  raw_bytes.error_message = "upstream unreachable: \x80";
  out.emplace_back("raw_bytes", raw_bytes);

  return out;
}

inline std::vector<std::pair<std::string, Score>> scores() {
  std::vector<std::pair<std::string, Score>> out;

  // What evaluator_runtime.cpp writes.
  Score eval;
  eval.id = "0b6f3c2e-8d4a-4f1b-9c7e-2a5d6e7f8a9b";
  eval.project = "default";
  eval.request_id = "7d1f5f0e-3a0b-4c47-9d77-5b1c2c9e0a11";
  eval.name = "answer_length";
  eval.value = 312;
  eval.source = ScoreSource::kEval;
  eval.metadata = {{"evaluator", "answer_length"},
                   {"kind", "response_length"},
                   {"run_id", "3f0c9a57-5d7e-4c1a-8b2f-6e9d0a1b2c3d"}};
  eval.timestamp_us = 1732270000123456;
  eval.created_at_us = 1732270000123456;
  eval.updated_at_us = 1732270000123999;
  out.emplace_back("eval", eval);

  // POST /v1/request/{id}/score with a boolean.
  Score helicone;
  helicone.id = "a3c1e2d4-0000-4000-8000-000000000001";
  helicone.project = "p";
  helicone.request_id = "r-1";
  helicone.name = "thumbs";
  helicone.data_type = ScoreDataType::kBoolean;
  helicone.value = 1;
  helicone.timestamp_us = 1;
  helicone.created_at_us = 2;
  helicone.updated_at_us = 3;
  out.emplace_back("helicone_bool", helicone);

  // Every string field set, multi-byte text, nested metadata.
  Score categorical;
  categorical.id = "client-key-42";
  categorical.project = "default";
  categorical.request_id = "r-2";
  categorical.observation_id = "obs-\xE2\x9C\x93";
  categorical.name = "tone \xF0\x9F\x91\x8D";
  categorical.data_type = ScoreDataType::kCategorical;
  categorical.value = 1;
  categorical.label = "gut \xC3\xBC";
  categorical.comment = "multi\nline\tcomment \xE2\x80\x94 ok";
  categorical.metadata = {{"reviewer", {{"id", 7}, {"teams", {"a", "b"}}}},
                          {"score", -0.5},
                          {"none", nullptr}};
  categorical.source = ScoreSource::kAnnotation;
  categorical.author = "rev@example.com";
  categorical.config_id = "cfg-1";
  categorical.timestamp_us = 1714564800000000;
  categorical.created_at_us = 1714564800000001;
  categorical.updated_at_us = 1714564800000002;
  out.emplace_back("categorical", categorical);

  // A session score with no value (a CATEGORICAL label no config maps),
  // null metadata and extreme times.
  Score session;
  session.id = "s";
  session.project = "p";
  session.session_id = std::string(1024, 's');
  session.name = "n";
  session.data_type = ScoreDataType::kCategorical;
  session.label = "unmapped";
  session.metadata = nullptr;
  session.timestamp_us = std::numeric_limits<std::int64_t>::min();
  session.created_at_us = std::numeric_limits<std::int64_t>::max();
  session.updated_at_us = -1;
  out.emplace_back("session_unmapped", session);

  // Numeric corners: -0.0, tiny and huge magnitudes, 2^53.
  for (const auto& [name, v] : std::vector<std::pair<std::string, double>>{
           {"numeric_negative_zero", -0.0},
           {"numeric_tiny", -1.5e-300},
           {"numeric_huge", 1.7976931348623157e308},
           {"numeric_2pow53", 9007199254740992.0},
           {"numeric_fraction", 0.1}}) {
    Score s;
    s.id = "id-" + name;
    s.project = "p";
    s.request_id = "r";
    s.name = name;
    s.value = v;
    s.source = ScoreSource::kApi;
    s.timestamp_us = 1714564800000000;
    s.created_at_us = 1714564800000000;
    s.updated_at_us = 1714564800000000;
    out.emplace_back(name, s);
  }
  return out;
}

}  // namespace arbiter::scoring::codec_fixtures
