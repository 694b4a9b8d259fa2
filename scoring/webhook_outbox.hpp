#pragma once
// The webhook outbox (DESIGN.md §7, §8): one durable entry per (event,
// webhook) in the `outbox` column family, written in the same WriteBatch as
// the data the event reports, and updated by the delivery workers after
// every attempt.
//
// Key layouts (part() and ts as in keys.hpp; id = "msg_" + 32 hex digits,
// the webhook-id header, stable across retries):
//
//   'D' id                                          → encode_delivery
//   'Q' part(webhook) ts(next_attempt_at) id        → ""   pending / retrying only
//   'L' part(project) part(webhook) ts(created) id  → ""   listing, newest first
//   'S' part(project) state part(webhook) ts(created) id → "" listing by state
//   'R' part(project) part(request_id) id           → ""   deliveries of one request
//   'T' ts(created) id                              → ""   pruning (retention)
//   'C' part(project) part(webhook)                 → be64 deliveries ever delivered
//
// 'Q' is the work queue: the delivery workers seek each webhook's prefix and
// take what is due, so a backlog for one receiver never delays another's.
// States: pending (never attempted) → delivered | retrying (next_attempt_at)
// | dead; retrying → delivered | retrying | dead; dead → pending only by an
// explicit retry (POST /v1/webhooks/deliveries/{id}/retry).
//
// Thread-safety: plain value types and functions over a Store; the caller
// serialises writers of one delivery (see webhook_service.hpp).

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/store.hpp"
#include "scoring/webhook_payload.hpp"

namespace rocksdb {
class WriteBatch;
}

namespace arbiter::scoring {


enum class DeliveryState : char {
  kPending = 'p',
  kRetrying = 'r',
  kDelivered = 'd',
  kDead = 'x',
};
std::string_view to_string(DeliveryState s);
std::optional<DeliveryState> parse_delivery_state(std::string_view s);

struct DeliveryAttempt {
  std::int64_t at_us = 0;        // when the attempt started (unix µs)
  int status = 0;                // HTTP status; 0 when no response arrived
  std::string error;             // "" for a 2xx; otherwise what failed
  std::int64_t duration_us = 0;
};

// At most this many attempts are kept per delivery (the newest);
// attempt_count still counts all of them.
inline constexpr std::size_t kMaxStoredAttempts = 50;

struct Delivery {
  std::string id;
  std::string webhook;
  std::string project;
  WebhookEvent event = WebhookEvent::kRequestLogged;
  std::string request_id;  // empty for events about a session
  std::string session_id;  // session scores only
  std::int64_t created_at_us = 0;
  DeliveryState state = DeliveryState::kPending;
  std::int64_t next_attempt_at_us = 0;  // pending / retrying; 0 otherwise
  std::uint32_t attempt_count = 0;      // every attempt ever made
  std::uint32_t run_start = 0;          // attempt_count when the current run began (retry resets)
  std::vector<DeliveryAttempt> attempts;  // newest last, at most kMaxStoredAttempts
  // The event happened before its request was stored (a score on a call in
  // flight), so the webhook's property filters are checked at send time.
  bool filter_deferred = false;
  nlohmann::json data = nlohmann::json::object();  // event data for the payload (scores, evaluation)

  bool queued() const { return state == DeliveryState::kPending || state == DeliveryState::kRetrying; }
};

// "msg_" + 32 hex digits: the creation time in milliseconds since the epoch
// (12 digits), then 80 random bits (20 digits). Ids created later sort later,
// so the outbox's 'D' entries are appended at the end of their key range and
// compactions leave the older ones where they are (a random id made every
// flushed file overlap all of them). Receivers may sort by it, as with
// Svix's time-ordered ids; it is not a secret and carries no more than the
// webhook-timestamp header already does.
std::string new_delivery_id();
std::string new_delivery_id(std::int64_t now_ms);
bool valid_delivery_id(std::string_view id);

std::string encode_delivery(const Delivery& d);
Expected<Delivery> decode_delivery(std::string_view bytes);

// The API's shape (GET /v1/webhooks/deliveries).
nlohmann::json to_json(const Delivery& d);

namespace outbox {

std::string delivery_key(std::string_view id);
std::string queue_prefix(std::string_view webhook);
std::string list_prefix(std::string_view project, std::string_view webhook);
std::string state_prefix(std::string_view project, DeliveryState state, std::string_view webhook);
std::string request_prefix(std::string_view project, std::string_view request_id);
std::string counter_key(std::string_view project, std::string_view webhook);
inline constexpr char kPruneTag = 'T';

// Adds a new delivery with all its index entries.
void append(const Store::Lease& db, rocksdb::WriteBatch& batch, const Delivery& d);
// Rewrites `after` and moves its queue / state entries from `before`'s.
void update(const Store::Lease& db, rocksdb::WriteBatch& batch, const Delivery& before,
            const Delivery& after);
// Removes the delivery and every index entry.
void remove(const Store::Lease& db, rocksdb::WriteBatch& batch, const Delivery& d);

Expected<std::optional<Delivery>> load(const Store& store, std::string_view id);

// Number of keys under a prefix (the S counts: pending, retrying, dead).
Expected<std::uint64_t> count(const Store& store, std::string_view prefix);
Expected<std::uint64_t> delivered_total(const Store& store, std::string_view project,
                                        std::string_view webhook);

// A due entry of a webhook's queue.
struct QueueEntry {
  std::int64_t due_us = 0;
  std::string id;
};

struct ListQuery {
  std::optional<DeliveryState> state;
  std::string webhook;     // "" = every webhook in `webhooks`
  std::string request_id;  // "" = any
  std::size_t limit = 50;  // 1..100
  std::string cursor;      // from a previous page
};
struct ListPage {
  std::vector<Delivery> deliveries;  // newest first (created_at, then id)
  std::string next_cursor;           // "" on the last page
};
// `webhooks`: the configured webhook names (deliveries of webhooks no longer
// configured are not listed). kInvalidArgument for a malformed cursor.
Expected<ListPage> list(const Store& store, std::string_view project, const ListQuery& query,
                        const std::vector<std::string>& webhooks);

}  // namespace outbox

}  // namespace arbiter::scoring
