#pragma once
// One proxied (or manually logged) LLM call, as stored in the request log
// (DESIGN.md §2, §8) and served by GET /v1/request/{id} and
// POST /v1/request/query (§4).
//
// Thread-safety: plain value types and pure functions; safe to use from any
// thread as long as one object is not mutated concurrently.

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/json_limits.hpp"

namespace arbiter::scoring {

// Negative `status` values for calls that have no upstream status.
inline constexpr int kStatusUpstreamUnreachable = -1;
inline constexpr int kStatusUpstreamTimeout = -2;
inline constexpr int kStatusClientCancelled = -3;

// The request log holds its records through shared_ptrs, so that a listener
// can keep a committed record without copying it (record_handoff.hpp).
struct RequestRecord : std::enable_shared_from_this<RequestRecord> {
  // Declared, so that `RequestRecord{}` is value-initialisation rather than
  // aggregate initialisation (which cannot reach the base's protected members).
  RequestRecord() = default;

  std::string request_id;  // RFC 4122 UUID from the gateway; see valid_request_id()
  std::string project;     // project name from config; never empty

  std::int64_t created_at_us = 0;   // unix µs, when the request arrived
  std::int64_t response_at_us = 0;  // unix µs, when the response ended; 0 = no response
  double latency_ms = 0;
  std::optional<double> time_to_first_token_ms;  // streams only

  std::string method;    // "POST"
  std::string path;      // with query string, as the client sent it
  std::string upstream;  // upstream name from config
  int status = 0;        // HTTP status, or kStatus* (< 0)

  std::string request_model;   // from the request body
  std::string response_model;  // from the response body (may be a dated snapshot name)

  std::string user_id;
  std::string session_id;
  std::string session_path;
  std::string session_name;
  std::map<std::string, std::string> properties;  // keys lower-cased

  bool is_stream = false;
  // Unknown stays unknown (e.g. a stream without a usage chunk): never guessed.
  std::optional<std::int64_t> prompt_tokens;
  std::optional<std::int64_t> completion_tokens;
  std::optional<std::int64_t> total_tokens;
  std::optional<double> cost_usd;  // unknown model → unknown cost

  // Raw bytes, possibly truncated to the gateway's cap. For a stream the
  // response body is the reassembled completion JSON made by the gateway and
  // `stream_raw` holds the raw SSE bytes (up to a cap).
  std::string request_body;
  std::string response_body;
  std::string stream_raw;
  std::int64_t request_size = 0;  // full size on the wire, even when truncated/omitted
  std::int64_t response_size = 0;
  bool request_truncated = false;
  bool response_truncated = false;
  bool request_omitted = false;  // Helicone-Omit-Request
  bool response_omitted = false;

  std::string error_message;  // gateway-side error text (negative status), else empty
  // Not stored: set by the proxy when model, user, tokens and cost are still
  // to be read from the bodies. RequestLogOptions::prepare does that on the
  // storage thread, so no JSON is parsed on an I/O thread.
  bool derive_pending = false;
  // Not stored: a stream whose response_body (the reassembled completion) is
  // still to be rebuilt from stream_raw, on the storage thread with the rest
  // of derive_pending's work. Set only when stream_raw holds the whole stream.
  bool reassemble_pending = false;
  // Not stored: request_id is a random UUID the gateway made for this call
  // (the client sent none), so no earlier record can have it and the write
  // skips looking one up. False for client-chosen ids, which may repeat.
  bool new_id = false;
  // Not stored: credential values that travelled with the call (provider and
  // gateway keys). RequestLogOptions::prepare removes every occurrence from
  // the record's text on the storage thread, then clears this.
  std::vector<std::string> redact;
  nlohmann::json feedback = nlohmann::json::object();  // fields posted later (feedback.*)
  // Not stored with the record: the request-level scores (name → true/false,
  // number or label), filled from the score store when a record is read for
  // the API or for a scores.<k> filter (attach_score_data in score_store.hpp).
  nlohmann::json scores = nlohmann::json::object();

  // The model Helicone's `model` column shows: the response's model when the
  // upstream reported one, else the requested model. Filters on `model` and
  // the idx_model index use this.
  const std::string& model() const {
    return response_model.empty() ? request_model : response_model;
  }
};

// Ids end up inside RocksDB keys and URLs: 1..128 bytes of printable ASCII
// (no control bytes, so '\0' can separate key parts).
bool valid_request_id(std::string_view id);

// The metadata (everything except the three bodies) as compact bytes: one
// format-version byte, then (version 2) fixed-order binary fields with the
// feedback as embedded CBOR; the layout is in the .cpp. Bodies are stored
// under their own keys so that listing records never reads them.
std::string encode_metadata(const RequestRecord& record);

// Inverse of encode_metadata; bodies are left empty. Reads version 2 and the
// version-1 values (CBOR with short keys) older databases hold. A value that
// does not decode (truncated, corrupt, unknown version) is kStorage
// ("corrupt record: ..."); never throws.
Expected<RequestRecord> decode_metadata(std::string_view bytes);

// The API's record shape. Field names follow Helicone's HeliconeRequest where
// it has one, plus arbiter's own (see the .cpp for the full list). Strings are
// made valid UTF-8 (invalid bytes → U+FFFD) so that dump() never throws.
// `request_body` / `response_body` (parsed JSON when they parse, else
// strings) and `stream_raw` appear only when include_body.
nlohmann::json to_json(const RequestRecord& record, bool include_body);

// A body as the API and webhooks show it: the parsed JSON value when the
// bytes parse (objects, not escaped strings), null when empty, else the text
// (invalid UTF-8 replaced). Bodies nested deeper than kMaxJsonDepth
// (json_limits.hpp) stay text too.
nlohmann::json body_json(const std::string& body);

// "2024-05-01T12:00:00.123Z" (UTC, millisecond precision).
std::string format_iso8601_ms(std::int64_t unix_us);

// Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.fraction]]" with 'T' or ' ',
// optionally followed by 'Z' or ±HH[:MM]; no zone means UTC. → unix µs.
std::optional<std::int64_t> parse_iso8601(std::string_view text);

// Replaces invalid UTF-8 sequences with U+FFFD.
std::string sanitize_utf8(std::string_view bytes);

// utf8_sequence_length: scoring/json_limits.hpp.

}  // namespace arbiter::scoring
