#pragma once

// A webhook receiver for tests and benchmarks: an HTTP/1.1 server (plain or TLS) on a real socket
// (port 0 by default) that records every request it gets, whole body included, and answers as a
// responder function says — a status and body, extra headers, or hang (never answer, keep the
// connection open until the receiver stops). Keep-alive is honoured.
//
// Thread-safety: every public member may be called from any thread while it serves; the
// responder runs on the receiver's threads and may be swapped with set_responder. Lifetime: the
// constructor binds and starts serving; the destructor closes every connection (hanging ones
// included) and joins the threads.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace arbiter::testing {

struct ReceivedRequest {
  std::string method, target;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  std::string body;
  std::optional<std::string> header(std::string_view lower_name) const;
};

struct ReceiverReply {
  int status = 200;
  std::string body = "ok";
  std::vector<std::pair<std::string, std::string>> headers{};
  bool hang = false;  // never answer
};

struct WebhookReceiverOptions {
  bool tls = false;
  std::string cert_pem{}, key_pem{};  // PEM text, for tls
  unsigned threads = 1;
  bool record_requests = true;  // false: only count (benchmarks)
};

class WebhookReceiver {
 public:
  // index: 0 for the first request received, 1 for the next, ...
  using Responder = std::function<ReceiverReply(const ReceivedRequest&, std::size_t index)>;

  explicit WebhookReceiver(Responder responder = {}, WebhookReceiverOptions options = {});
  ~WebhookReceiver();
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  std::uint16_t port() const;
  // "http(s)://127.0.0.1:PORT<path>"
  std::string url(std::string_view path = "/hook") const;
  std::vector<ReceivedRequest> requests() const;
  std::size_t request_count() const;
  void set_responder(Responder responder);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace arbiter::testing
