#pragma once
// What the proxy knows about one call: the Helicone-* headers turned into a
// typed context, and the outcome once the call has ended. This is the
// interface between the proxy path and whatever records calls (the request
// log subscribes through ExchangeObserver).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>

#include "gateway/credentials.hpp"

namespace arbiter::gateway {

struct ProjectConfig;

struct RequestContext {
  std::string request_id;  // lower-case RFC 4122 UUID
  bool request_id_from_client = false;
  std::string project;     // project name
  std::string upstream;    // upstream name
  std::string method;
  std::string target;      // as received from the client, query included
  std::map<std::string, std::string> properties;  // Helicone-Property-<Name> → name lower-cased
  std::string user_id;     // Helicone-User-Id (body `user` fallback is the log's job)
  std::string session_id, session_path, session_name;
  bool omit_request = false;
  bool omit_response = false;
  // Credential header values sent upstream and the gateway key: the log
  // removes them from anything it stores (not finish()ed here: the storage
  // thread does that, off the I/O thread).
  Credentials credentials;
  std::chrono::system_clock::time_point created_at;
  std::chrono::steady_clock::time_point started;  // for latency
};

// How a call ended, from the proxy's point of view.
enum class Outcome {
  completed,            // a response (any status, including upstream 4xx/5xx) was relayed in full
  upstream_unreachable, // connect/TLS/write failed before a response → 502
  upstream_timeout,     // no response header in time, or the body stalled → 504 / cut
  upstream_broken,      // the upstream closed or sent garbage mid-response
  client_cancelled,     // the client went away; the upstream call was cancelled
  rejected,             // refused by the gateway itself (limits, bad request)
};

// A bounded copy of a body, taken while it streams through.
struct BodyTee {
  std::string bytes;         // first `limit` bytes
  std::uint64_t size = 0;    // full size seen
  bool truncated = false;
};

struct ExchangeResult {
  Outcome outcome = Outcome::completed;
  int status = 0;                 // HTTP status sent to the client (0 if none was sent)
  std::string error;              // gateway-side error message, if any
  std::chrono::system_clock::time_point response_at;
  std::chrono::microseconds latency{0};
  std::optional<std::chrono::microseconds> time_to_first_token;  // streams
  bool is_stream = false;         // response was text/event-stream
  std::string response_content_type;
  BodyTee request_body;           // empty when omitted or when the observer wants no bodies
  BodyTee response_body;
  std::string stream_reassembled; // streams: the completion rebuilt from SSE events (JSON)
  // Streams: stream_reassembled is left empty for the log to rebuild from
  // response_body, which holds the whole stream (not truncated).
  bool stream_reassembly_deferred = false;
};

// Receives proxied calls. Methods are called on I/O threads and must not
// block: hand the data to a queue and return. The observer outlives the
// server that calls it.
class ExchangeObserver {
 public:
  virtual ~ExchangeObserver() = default;
  // Whether the proxy should tee bodies (up to body_tee_limit bytes each).
  virtual bool wants_bodies() const { return false; }
  virtual std::size_t body_tee_limit() const { return 1 << 20; }
  // storage.durability: strict — the proxy holds a response's last bytes
  // until the observer reports the record durable.
  virtual bool wants_durable_ack() const { return false; }
  // The call was authorised and has its id; it is about to be forwarded.
  virtual void on_request_start(const RequestContext&) {}
  // The call is over: completed, failed or cancelled. Called exactly once per
  // on_request_start. When `on_durable` is set, the observer calls it exactly
  // once, from any thread: true once the record is durable, false if it will
  // not be stored.
  using DurableCallback = std::function<void(bool ok)>;
  virtual void on_request_end(const RequestContext&, ExchangeResult&&, DurableCallback on_durable) {
    if (on_durable) on_durable(true);
  }
};

// --- Helicone header handling (pure functions; unit-tested) ---------------

// True for an RFC 4122 UUID of versions 1-5 with the RFC 4122 variant,
// in 8-4-4-4-12 hex form (either case).
bool is_valid_request_id(std::string_view id);

// A fresh version-4 UUID, lower-case, that sorts by creation time: its first
// 60 bits are the Unix time in milliseconds and a 12-bit fraction of the
// millisecond (around the version nibble), the other 62 bits are random.
std::string new_request_id();

// Result of reading the gateway's own headers from a client request.
struct HeliconeHeaders {
  std::optional<std::string> auth_key;        // from Helicone-Auth: Bearer <key>
  std::optional<std::string> bearer_key;      // from Authorization: Bearer <key> (may be a provider key)
  std::optional<std::string> request_id;      // raw Helicone-Request-Id
  std::optional<std::string> upstream;        // Helicone-Upstream: <name> (arbiter extension)
  std::map<std::string, std::string> properties;
  std::string user_id, session_id, session_path, session_name;
  bool omit_request = false, omit_response = false;
  bool has_authorization = false;             // an Authorization header is present
  int authorization_headers = 0;              // how many: more than one is refused (which one is the key?)
  bool has_api_key_header = false;            // api-key or x-api-key (Azure, Anthropic style) present
};

HeliconeHeaders read_helicone_headers(const boost::beast::http::fields& fields);

// What the Helicone-* data headers may carry. The header-size limit bounds
// the total; these keep every stored string and index key small, whatever a
// client sends.
inline constexpr std::size_t kMaxProperties = 128;
inline constexpr std::size_t kMaxPropertyNameBytes = 256;
inline constexpr std::size_t kMaxHeliconeValueBytes = 8192;

// Why the headers cannot be logged as sent, naming the header (e.g.
// "Helicone-Property-env: value is not valid UTF-8"), or nullopt when they
// can: at most kMaxProperties properties, names up to kMaxPropertyNameBytes,
// values (properties, user, session id/path/name) up to
// kMaxHeliconeValueBytes of valid UTF-8 without control characters (tab
// aside). Such a value could never round-trip through the JSON API intact,
// nor be safely copied into another header.
std::optional<std::string> check_helicone_headers(const HeliconeHeaders& headers);

}  // namespace arbiter::gateway
