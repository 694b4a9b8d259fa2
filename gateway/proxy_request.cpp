#include "gateway/proxy_request.hpp"

#include <algorithm>
#include <cctype>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>

#include "gateway/auth.hpp"
#include "gateway/http_wire.hpp"

namespace arbiter::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string host_header(const UpstreamConfig& up) {
  std::string host = up.host.find(':') != std::string::npos ? "[" + up.host + "]" : up.host;
  const bool default_port = (up.tls && up.port == "443") || (!up.tls && up.port == "80");
  if (!default_port) host += ":" + up.port;
  return host;
}

ProxyRejection reject(http::status status, std::string code, std::string message, ProxyRejection::Counter counter) {
  return ProxyRejection{status, std::move(code), std::move(message), counter};
}

}  // namespace

bool is_hop_by_hop(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::te:
    case http::field::trailer:
    case http::field::upgrade:
    case http::field::transfer_encoding:
      return true;
    default:
      return false;
  }
}

bool is_client_gone(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
         ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated;
}

PreparedProxyRequest prepare_proxy_request(const Config& cfg, const std::vector<UpstreamConfig>& upstreams,
                                           const ProxyRequest& req, bool wants_bodies) {
  PreparedProxyRequest out;
  HeliconeHeaders hh = read_helicone_headers(req);

  // Authorization is a single-valued field. With two, the gateway would read
  // one as the key and forward the other, which may be an arbiter key.
  if (hh.authorization_headers > 1) {
    out.rejection = reject(http::status::bad_request, "duplicate_header",
                           "more than one Authorization header: send one", ProxyRejection::Counter::kBadRequest);
    return out;
  }

  // Gateway auth: Helicone-Auth first; Authorization only when it holds an arbiter key.
  const ProjectConfig* project = nullptr;
  bool authorization_is_arbiter_key = false;
  if (hh.auth_key) {
    project = find_project_by_key(cfg, *hh.auth_key);
    // An arbiter key in Authorization as well (the same one, or another
    // project's) is still not a provider key: it must not reach the upstream.
    authorization_is_arbiter_key = hh.bearer_key && find_project_by_key(cfg, *hh.bearer_key) != nullptr;
  } else if (hh.bearer_key) {
    project = find_project_by_key(cfg, *hh.bearer_key);
    authorization_is_arbiter_key = project != nullptr;
  }
  if (project == nullptr) {
    if (cfg.server.allow_anonymous && !hh.auth_key) {
      project = &cfg.projects.front();
    } else {
      out.rejection = reject(http::status::unauthorized, "unauthorized",
                             hh.auth_key ? "invalid gateway key in Helicone-Auth"
                                         : "missing gateway key: send Helicone-Auth: Bearer <arbiter api key>",
                             ProxyRejection::Counter::kUnauthorized);
      return out;
    }
  }

  // Values that could not round-trip through storage and the JSON API
  // (control bytes, invalid UTF-8, oversized) are refused, not mangled.
  if (auto problem = check_helicone_headers(hh)) {
    out.rejection = reject(http::status::bad_request, "bad_helicone_header", std::move(*problem),
                           ProxyRejection::Counter::kBadRequest);
    return out;
  }

  std::size_t upstream_index = 0;
  if (hh.upstream) {
    const auto it = std::find_if(upstreams.begin(), upstreams.end(),
                                 [&](const UpstreamConfig& u) { return u.name == *hh.upstream; });
    if (it == upstreams.end()) {
      out.rejection = reject(http::status::bad_request, "unknown_upstream",
                             "Helicone-Upstream names no configured upstream", ProxyRejection::Counter::kBadRequest);
      return out;
    }
    upstream_index = static_cast<std::size_t>(it - upstreams.begin());
  }
  const UpstreamConfig& up = upstreams.at(upstream_index);

  out.project = project;
  out.upstream_index = upstream_index;
  RequestContext& ctx = out.ctx;
  ctx.request_id_from_client = hh.request_id && is_valid_request_id(*hh.request_id);
  ctx.request_id = ctx.request_id_from_client ? lower(*hh.request_id) : new_request_id();
  ctx.project = project->name;
  ctx.upstream = up.name;
  ctx.method = std::string(req.method_string());
  ctx.target = std::string(req.target());
  ctx.properties = std::move(hh.properties);
  ctx.user_id = std::move(hh.user_id);
  ctx.session_id = std::move(hh.session_id);
  ctx.session_path = std::move(hh.session_path);
  ctx.session_name = std::move(hh.session_name);
  ctx.omit_request = hh.omit_request;
  ctx.omit_response = hh.omit_response;

  // The upstream request's head, written field by field as the client's are
  // read: same method, target (after the upstream's base path), headers and
  // body framing; minus hop-by-hop and helicone-* headers. Every header that
  // goes upstream is also shown to the credentials filter: whatever
  // credentials reach the provider (which may echo them back in its body)
  // and the gateway key itself are kept out of the log.
  std::string& head = out.upstream_head;
  head.reserve(512);
  head.append(req.method_string());
  head.push_back(' ');
  head.append(up.base_path);
  head.append(req.target());
  head.append(" HTTP/1.1\r\n", 11);
  auto field = [&](std::string_view name, std::string_view value,
                   http::field known = http::field::unknown) {
    append_field(head, name, value);
    ctx.credentials.consider(known, name, value);
  };
  for (const auto& f : req) {
    const auto name = f.name();
    if (is_hop_by_hop(name) || name == http::field::host) continue;
    if (name == http::field::expect) {
      // We answer 100-continue ourselves and stream the body; the upstream never waits.
      out.expect_continue = beast::iequals(f.value(), "100-continue");
      continue;
    }
    if (name == http::field::authorization && authorization_is_arbiter_key) continue;
    // Logged bodies must be readable by queries and evaluators; compression
    // only saves bytes on the provider leg, so identity is asked for below.
    if (name == http::field::accept_encoding && wants_bodies) continue;
    const auto ns = f.name_string();
    if (name == http::field::unknown && ns.size() >= 9 && beast::iequals(ns.substr(0, 9), "helicone-")) continue;
    field(ns, f.value(), name);
  }
  field("Host", host_header(up), http::field::host);
  if (wants_bodies) field("Accept-Encoding", "identity", http::field::accept_encoding);
  const bool client_sent_provider_key =
      (hh.has_authorization && !authorization_is_arbiter_key) || hh.has_api_key_header;
  if (!client_sent_provider_key && !up.api_key.empty()) {
    // Not a forwarded Authorization: one with a provider key was kept above.
    field("Authorization", "Bearer " + up.api_key, http::field::authorization);
  }
  out.upstream_chunked = req.chunked();
  if (out.upstream_chunked) field("Transfer-Encoding", "chunked", http::field::transfer_encoding);
  head.append("\r\n", 2);
  if (hh.auth_key) ctx.credentials.add(*hh.auth_key);
  if (hh.bearer_key) ctx.credentials.add(*hh.bearer_key);
  return out;
}

std::optional<ProxyRejection> rejection_for_read_error(const error_code& ec, const LimitsConfig& limits) {
  if (ec == http::error::header_limit) {
    return reject(http::status::request_header_fields_too_large, "header_too_large",
                  "request header exceeds server.limits.max_header_bytes (" +
                      std::to_string(limits.max_header_bytes) + " bytes)",
                  ProxyRejection::Counter::kTooLarge);
  }
  if (ec == http::error::body_limit) {
    return reject(http::status::payload_too_large, "body_too_large",
                  "request body exceeds server.limits.max_body_bytes (" + std::to_string(limits.max_body_bytes) +
                      " bytes)",
                  ProxyRejection::Counter::kTooLarge);
  }
  // TimedStream has already closed the socket on a timeout: a slow client just loses the
  // connection.
  if (ec == beast::error::timeout || is_client_gone(ec)) return std::nullopt;
  return reject(http::status::bad_request, "bad_request", "malformed HTTP request: " + ec.message(),
                ProxyRejection::Counter::kBadRequest);
}

http::response<http::string_body> proxy_error_response(http::status status, std::string_view code,
                                                       std::string_view message, bool keep_alive,
                                                       const std::string* request_id) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "application/json");
  if (request_id) {
    res.set("Helicone-Id", *request_id);
    res.set("Helicone-Status", "failed");
  }
  const nlohmann::json body = {{"error", {{"message", message}, {"type", "gateway_error"}, {"code", code}}}};
  res.body() = body.dump();
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

}  // namespace arbiter::gateway
