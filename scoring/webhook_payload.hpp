#pragma once
// What a webhook delivery says (DESIGN.md §7): event names, the per-webhook
// options that decide whether an event is delivered (events, sampling,
// property filters, projects), and the JSON payload.
//
// Payload: Helicone's webhook shape plus arbiter's own fields.
//   event          "request.logged" | "score.created" | "evaluation.completed"
//   request_id, user_id (null when unknown), model, provider (the upstream's
//   name), properties, metadata {cost, promptTokens, completionTokens,
//   totalTokens, latencyMs} (null where unknown, never guessed), status,
//   created_at, session_id (null when none), path
//   request_body, response_body   only with include_bodies: the parsed JSON
//                  value (an object, not a string) when the stored bytes parse;
//                  the text otherwise (a truncated body, a non-JSON upload);
//                  null when empty or omitted (Helicone-Omit-*). For a stream
//                  the response body is the chat.completion object the gateway
//                  reassembled from the chunks; when it could not reassemble
//                  one (an unknown SSE dialect) it is the raw SSE text, so the
//                  receiver still gets everything that was stored.
//   request_truncated, response_truncated   with the bodies
//   scores         score.created: the score(s) written in one call for one
//                  target, in GET /v1/scores' shape; evaluation.completed: the
//                  scores the run wrote
//   evaluation     evaluation.completed: {evaluator, run_id, state, attempts,
//                  duration_ms, error}
// A score on a session (no request) carries session_id and the scores only.
//
// Thread-safety: pure functions and plain value types.

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scoring/request_record.hpp"

namespace arbiter::scoring {

enum class WebhookEvent : std::uint8_t {
  kRequestLogged = 1,
  kScoreCreated = 2,
  kEvaluationCompleted = 4,
};
std::string_view to_string(WebhookEvent e);
std::optional<WebhookEvent> parse_webhook_event(std::string_view s);

struct WebhookRetryOptions {
  std::uint32_t max_attempts = 8;  // attempts before a delivery is dead (per run; see retry)
  std::chrono::milliseconds initial_backoff{5'000};
  std::chrono::milliseconds max_backoff{3'600'000};
};

// One configured webhook, in scoring's own terms (the gateway translates its
// Config into these). Holds the secret in memory only.
struct WebhookOptions {
  std::string name;  // unique; also the key of its outbox entries
  std::string url;   // http(s)://host[:port]/path[?query]
  std::string key;          // the decoded whsec_ key: Standard Webhooks signature
  std::string secret_text;  // the configured "whsec_..." string: Helicone-Signature
  std::uint8_t events = static_cast<std::uint8_t>(WebhookEvent::kRequestLogged);  // bit set
  double sample_rate = 100;  // percent of requests, 0-100
  std::map<std::string, std::string> property_filters;  // exact; keys lower-case
  bool include_bodies = true;
  WebhookRetryOptions retry;
  std::chrono::milliseconds timeout{15'000};
  std::vector<std::pair<std::string, std::string>> headers;  // static extra headers
  bool allow_insecure = false;  // plain http and private / loopback destinations
  std::string ca_file;          // extra CA bundle for https receivers
  std::size_t max_in_flight = 4;  // concurrent attempts to this webhook
  std::vector<std::string> projects;  // empty = every project

  bool wants(WebhookEvent e) const { return (events & static_cast<std::uint8_t>(e)) != 0; }
  bool applies_to(std::string_view project) const;
};

// Sampling is a pure function of the request id, so every event about one
// request (request.logged, score.created, evaluation.completed) gets the same
// decision, on every webhook with the same rate and across restarts.
// Resolution 0.01 %.
bool sampled(double sample_rate_percent, std::string_view request_id);

// Every filter key present in `properties` with exactly that value.
bool properties_match(const std::map<std::string, std::string>& filters,
                      const std::map<std::string, std::string>& properties);

struct WebhookEventData {
  WebhookEvent event = WebhookEvent::kRequestLogged;
  const RequestRecord* record = nullptr;  // the request; null for session scores
  std::string session_id;                 // session scores only
  // Without a record: the request the event is about, when it will never be
  // stored (lost by relaxed durability at a crash, or deleted by retention).
  std::string request_id;
  const nlohmann::json* data = nullptr;   // {"scores": [...]} / {"evaluation": {...}, "scores": [...]}
};

nlohmann::json webhook_payload(const WebhookEventData& event, bool include_bodies);

// The bytes sent and signed: exactly what JavaScript's
// JSON.stringify(JSON.parse(bytes)) gives back — compact, numbers formatted
// as JavaScript formats them (123 not 123.0, 0.000045 not 4.5e-05, 1e-7),
// integer-like keys first — so that a receiver written for Helicone, which
// re-serialises the parsed body before checking Helicone-Signature, verifies
// it. (The one exception is integers beyond 2^53 inside bodies, which
// JavaScript cannot hold.) Other keys are in sorted order; invalid UTF-8 is
// replaced.
std::string serialize_payload(const nlohmann::json& payload);

}  // namespace arbiter::scoring
