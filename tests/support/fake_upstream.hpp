#pragma once

// A fake OpenAI-compatible upstream for integration tests, e2e tests and benchmarks.
//
// It speaks HTTP/1.1 (optionally over TLS) with keep-alive and is steered per request by the
// path, the JSON body and `x-fake-*` headers, so any client (including the `openai` npm SDK via
// `defaultHeaders`) can make it stream, pace, delay, fail, hang or drop the connection:
//
//   POST .../chat/completions   chat.completion JSON, or SSE `chat.completion.chunk`s when
//                               `"stream": true` (usage chunk when stream_options.include_usage)
//   POST .../completions        legacy text_completion, JSON or SSE likewise
//   POST .../embeddings         one fake_embedding() vector per input (float or base64 encoding)
//   GET  .../models             a list of two models
//   POST .../moderations        flagged when the input contains one of `moderation_words`
//                               (default "kill", case-insensitive) or x-fake-flagged: true
//   POST .../evaluate           an `http` evaluator: the body is an evaluator event; answers
//                               {"scores": [content_bytes (bytes of outputs.content),
//                               has_ground_truth (feedback.ground_truth present)]}
//   anything else               200 echo: {method, target, headers, body_size, body_sha256}
//
//   x-fake-content: TEXT            assistant text (default "Hello from the fake upstream.")
//   "<<judge-reply:TEXT>>" anywhere in a chat request's messages makes TEXT the assistant text
//                                   (an LLM judge's prompt quotes the judged answer, so a test
//                                   puts the marker in the proxied call's x-fake-content)
//   x-fake-chunks: N                content chunks in a stream (default 5): split on words, or
//                                   inside words when N exceeds them; at most one per character
//   x-fake-chunk-interval-ms: N     pause between consecutive SSE events
//   x-fake-embedding-dim: N         embedding dimension (default 8)
//   x-fake-flagged: true            moderation result flagged
//   x-fake-status: NNN              that status with an OpenAI-style error body
//   x-fake-retry-after: V           `retry-after: V` on the response
//   x-fake-delay-ms: N              wait before the response header
//   x-fake-hang: 1                  read the request, never answer
//   x-fake-close: immediately       read the request, close without answering
//   x-fake-close: after-headers     send the header (with Content-Length), then close
//   x-fake-close: if-reused         like immediately, but only when the connection already
//                                   served a request (a pooled connection gone stale)
//
// Paths match on their suffix, so `/openai/v1/chat/completions` behaves like
// `/v1/chat/completions`. Request bodies (up to 64 MiB) are streamed: only the first 64 KiB are
// kept, the rest is counted and hashed as it arrives.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace arbiter::testing {

struct FakeUpstreamOptions {
  bool tls = false;                   // serve HTTPS with cert_pem/key_pem
  std::string cert_pem{}, key_pem{};  // PEM text, not file names
  unsigned threads = 1;               // 0 = one per core
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 = any free port
  // Keep a SeenRequest per request for requests(). The benchmark turns this off so that memory
  // stays flat over millions of requests; request_count() still counts.
  bool record_requests = true;
  // Moderation flags an input containing any of these (case-insensitive).
  std::vector<std::string> moderation_words{"kill"};
};

// What the upstream received.
struct SeenRequest {
  std::string method{}, target{};
  std::vector<std::pair<std::string, std::string>>
      headers{};  // names lower-cased, in order received
  std::optional<std::string> header(std::string_view lower_name) const;  // first match
  std::size_t body_size = 0;
  std::string body_sha256_hex{};  // of the whole body
  std::string body_prefix{};      // first 64 KiB of the body
  bool body_was_chunked = false;
};

// Thread-safety: every public member may be called from any thread while the upstream serves.
// Lifetime: serving starts in the constructor and stops in the destructor, which closes every
// connection (hanging ones included) and joins the threads.
class FakeUpstream {
 public:
  explicit FakeUpstream(
      FakeUpstreamOptions opts = {});  // binds, starts its threads; throws on failure
  ~FakeUpstream();
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  uint16_t port() const;
  std::string base_url() const;               // "http://127.0.0.1:PORT" or "https://..."
  std::vector<SeenRequest> requests() const;  // snapshot, in the order requests completed
  // Requests whose body was read completely (recorded before their response is written).
  std::size_t request_count() const;
  std::size_t connections_accepted() const;
  // Responses that ended because the peer (the gateway) went away before the response was fully
  // written — how tests see that a client abort cancelled the upstream call. A response is in
  // progress from the moment its request header arrived, so a peer that drops the connection
  // mid-upload, or while the fake delays, paces or hangs, is counted too. Connections the fake
  // drops on purpose (x-fake-close) are not.
  std::size_t aborted_responses() const;
  std::size_t open_connections() const;
  // Clears requests() and zeroes request_count, connections_accepted and aborted_responses
  // (open_connections is a gauge and stays).
  void reset_stats();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Polls pred every few ms until true or timeout; returns pred's final value. For tests that await
// conditions instead of sleeping.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// The vector the fake returns for `text`: feature hashing of the lower-cased words (each word adds
// ±1 to one dimension chosen by its hash), normalised to unit length, so texts sharing words have
// a higher cosine similarity than unrelated ones. Text without words maps to the unit vector e0.
std::vector<float> fake_embedding(std::string_view text, std::size_t dim = 8);

}  // namespace arbiter::testing
