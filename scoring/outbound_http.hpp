#pragma once
// Outbound HTTP(S) calls made by arbiter itself, off the proxy path: webhook
// deliveries and evaluator calls (llm_judge, http, embeddings, moderation).
//
// One OutboundHttp owns its own io_context and thread(s), so nothing here ever
// runs on the proxy's I/O threads. Connections are kept alive and reused per
// (scheme, host, port, TLS settings); TLS verifies the peer against the
// system store (plus an optional CA file) with SNI. Redirects are never
// followed: a 3xx is returned as is.
//
// The SSRF guard: unless a request sets allow_private, every address the host
// name resolves to is checked before connecting, and loopback, private
// (RFC 1918, fc00::/7), link-local, CGNAT, multicast and unspecified
// addresses are refused with an error naming the address. The check is on
// the resolved addresses actually dialled, so DNS tricks cannot bypass it.
//
// Thread-safety: send() and send_sync() may be called from any thread.
// Callbacks run on the client's own thread; keep them short (post heavier
// work elsewhere). send_sync() must not be called from a callback.
//
// Lifetime: the destructor cancels calls in flight (their callbacks run with
// error "client shut down") and joins the thread(s).

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

namespace arbiter::scoring {

struct OutboundRequest {
  std::string method = "POST";
  std::string url;  // http://host[:port]/path?query or https://...; IPv6 as [::1]
  std::vector<std::pair<std::string, std::string>> headers;  // sent as given
  std::string body;                                          // Content-Length is set
  std::chrono::milliseconds timeout{10'000};                 // connect + send + whole response
  std::size_t max_response_bytes = 4u << 20;                 // larger → error
  bool allow_private = false;  // permit loopback / private destinations (SSRF guard off)
  std::string ca_file;         // extra PEM CA bundle for https; empty = system store
  bool verify_tls = true;
};

struct OutboundResponse {
  int status = 0;  // HTTP status; 0 when there was no response (see error)
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string error;       // "" when a response arrived; otherwise what failed
  bool timed_out = false;  // the timeout expired (error is set too)

  bool ok() const { return error.empty() && status >= 200 && status < 300; }
  std::optional<std::string_view> header(std::string_view lower_name) const;
};

struct OutboundOptions {
  unsigned threads = 1;
  std::size_t max_idle_per_host = 16;  // kept-alive connections per destination
  std::chrono::milliseconds idle_timeout{30'000};
  std::string user_agent = "arbiter";
};

// "https://a.b:8443/x?y" → parts; nullopt (with *error set) when malformed.
struct ParsedUrl {
  bool tls = true;
  std::string host;  // without brackets
  std::string port;  // explicit, or 443 / 80
  std::string target;  // path + query, "/" at least
};
std::optional<ParsedUrl> parse_url(std::string_view url, std::string* error = nullptr);

// Whether an address is one the SSRF guard refuses (loopback, private, ...).
bool is_private_address(std::string_view ip_literal);

class OutboundHttp {
 public:
  explicit OutboundHttp(OutboundOptions options = {});
  ~OutboundHttp();
  OutboundHttp(const OutboundHttp&) = delete;
  OutboundHttp& operator=(const OutboundHttp&) = delete;

  using Callback = std::function<void(OutboundResponse)>;
  // Starts the call; done runs exactly once, on the client's thread.
  void send(OutboundRequest request, Callback done);
  // Blocks the calling thread until the call finishes (for worker threads).
  OutboundResponse send_sync(OutboundRequest request);

  struct Counters {
    std::uint64_t requests = 0;
    std::uint64_t connections_opened = 0;  // fewer than requests = reuse
    std::uint64_t errors = 0;
  };
  Counters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arbiter::scoring
