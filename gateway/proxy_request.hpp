#pragma once
// What the proxy does with a parsed request header before any I/O: gateway
// key check, Helicone-* extraction, request id, upstream choice and the
// header rewrite for the upstream; plus the gateway's own error responses.
// Plain functions of (config, request) → decision, shared by the proxy
// session and tests/fuzz/proxy_request_fuzz.cpp. Included by those two only
// (it pulls in Beast's message types).
//
// Thread-safety: pure functions over a const Config and UpstreamSet.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "gateway/config.hpp"
#include "gateway/request_context.hpp"

namespace arbiter::gateway {

using ProxyRequest = boost::beast::http::request<boost::beast::http::buffer_body>;

// An answer the gateway gives itself instead of forwarding.
struct ProxyRejection {
  enum class Counter { kUnauthorized, kBadRequest, kTooLarge };
  boost::beast::http::status status = boost::beast::http::status::bad_request;
  std::string code;     // "unauthorized", "unknown_upstream", ...
  std::string message;  // names the header or limit at fault; never echoes a key
  Counter counter = Counter::kBadRequest;
};

struct PreparedProxyRequest {
  std::optional<ProxyRejection> rejection;  // set: answer it, forward nothing
  // The rest is meaningful only without a rejection.
  const ProjectConfig* project = nullptr;
  std::size_t upstream_index = 0;
  // request id, project, upstream, method, target and the Helicone-* fields;
  // the caller stamps created_at / started.
  RequestContext ctx;
  bool expect_continue = false;  // the client sent "Expect: 100-continue"
  // The head to send upstream, rendered for the wire: "METHOD target
  // HTTP/1.1\r\n" with the target after the upstream's base path; the
  // client's end-to-end fields in its order and spelling, minus hop-by-hop,
  // Host, Expect, helicone-* and an Authorization that carried the arbiter
  // key; then Host, Accept-Encoding: identity (when bodies are logged), the
  // upstream's api_key when the client sent no provider key, and
  // Transfer-Encoding: chunked when the client's body was chunked; "\r\n".
  // Rendered straight from the parsed request: no second set of fields.
  std::string upstream_head;
  bool upstream_chunked = false;  // the body goes upstream in chunked framing
};

// Decides what to do with a request whose header has been parsed.
// `upstreams`: the configured upstreams in order (Config::upstreams, which
// UpstreamSet indexes the same way); the first is the default. `wants_bodies`: the observer tees bodies, so the
// upstream is asked for an identity encoding.
PreparedProxyRequest prepare_proxy_request(const Config& config, const std::vector<UpstreamConfig>& upstreams,
                                           const ProxyRequest& request, bool wants_bodies);

// The rejection for a failed header read (limits, malformed HTTP), or nullopt
// when no answer is possible or useful (timeout, client gone).
std::optional<ProxyRejection> rejection_for_read_error(const boost::system::error_code& ec,
                                                       const LimitsConfig& limits);

// Headers that concern one connection only and are never relayed.
bool is_hop_by_hop(boost::beast::http::field f);

// A read or write error that only means the client went away.
bool is_client_gone(const boost::system::error_code& ec);

// The gateway's JSON error response ({"error": {message, type, code}}), with
// Helicone-Id / Helicone-Status: failed when the call already has an id.
boost::beast::http::response<boost::beast::http::string_body> proxy_error_response(
    boost::beast::http::status status, std::string_view code, std::string_view message, bool keep_alive,
    const std::string* request_id = nullptr);

}  // namespace arbiter::gateway
