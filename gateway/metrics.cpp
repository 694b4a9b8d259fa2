#include "gateway/metrics.hpp"

namespace arbiter::gateway {
namespace {

template <class T>
void line(std::string& out, const char* name, const char* type, const char* help, const std::atomic<T>& v) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
  out += name;
  out += ' ';
  out += std::to_string(v.load(std::memory_order_relaxed));
  out += '\n';
}

}  // namespace

std::string Metrics::render_prometheus() const {
  std::string out;
  out.reserve(4096);
  line(out, "arbiter_proxy_connections_total", "counter", "Client connections accepted by the proxy listener.", proxy_connections_total);
  line(out, "arbiter_proxy_connections_rejected_total", "counter", "Client connections refused over server.limits.max_connections.", proxy_connections_rejected);
  line(out, "arbiter_proxy_connections_open", "gauge", "Open client connections on the proxy listener.", proxy_connections_open);
  line(out, "arbiter_proxy_requests_total", "counter", "Requests read by the proxy listener.", proxy_requests_total);
  line(out, "arbiter_proxy_requests_in_flight", "gauge", "Proxied calls in progress.", proxy_requests_in_flight);
  line(out, "arbiter_proxy_responses_completed_total", "counter", "Upstream responses relayed in full (any status).", proxy_responses_completed);
  line(out, "arbiter_proxy_upstream_unreachable_total", "counter", "Calls answered 502: upstream unreachable.", proxy_upstream_unreachable);
  line(out, "arbiter_proxy_upstream_timeout_total", "counter", "Calls answered 504 or cut: upstream timed out.", proxy_upstream_timeout);
  line(out, "arbiter_proxy_upstream_broken_total", "counter", "Responses cut because the upstream failed mid-response.", proxy_upstream_broken);
  line(out, "arbiter_proxy_client_cancelled_total", "counter", "Calls cancelled because the client went away.", proxy_client_cancelled);
  line(out, "arbiter_proxy_rejected_unauthorized_total", "counter", "Requests refused 401: missing or unknown gateway key.", proxy_rejected_unauthorized);
  line(out, "arbiter_proxy_rejected_bad_request_total", "counter", "Requests refused 400: malformed.", proxy_rejected_bad_request);
  line(out, "arbiter_proxy_rejected_too_large_total", "counter", "Requests refused 413/431: over a size limit.", proxy_rejected_too_large);
  line(out, "arbiter_upstream_connections_opened_total", "counter", "New upstream connections.", upstream_connections_opened);
  line(out, "arbiter_upstream_connections_reused_total", "counter", "Upstream requests sent on a pooled connection.", upstream_connections_reused);
  line(out, "arbiter_api_requests_total", "counter", "Requests read by the API listener.", api_requests_total);
  line(out, "arbiter_api_connections_open", "gauge", "Open client connections on the API listener.", api_connections_open);
  return out;
}

}  // namespace arbiter::gateway
