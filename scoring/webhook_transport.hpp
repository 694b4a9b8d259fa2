#pragma once
// How webhook deliveries leave the process: an interface over OutboundHttp so
// that the delivery logic can be tested without sockets (a scripted transport)
// and run in production over the shared outbound client.
//
// Thread-safety: send() and send_sync() may be called from any thread; `done`
// runs exactly once, on a thread of the transport's choosing (keep it short).
// Lifetime: destroying the transport cancels calls in flight; their `done`
// still runs (with an error) before the destructor returns.

#include <functional>
#include <memory>

#include "scoring/outbound_http.hpp"

namespace arbiter::scoring {

class WebhookTransport {
 public:
  virtual ~WebhookTransport() = default;
  virtual void send(OutboundRequest request, std::function<void(OutboundResponse)> done) = 0;
  virtual OutboundResponse send_sync(OutboundRequest request) = 0;
};

// Over a dedicated OutboundHttp client (its own thread and connection pools,
// never the proxy's I/O threads).
std::unique_ptr<WebhookTransport> make_outbound_transport(OutboundOptions options = {});

}  // namespace arbiter::scoring
