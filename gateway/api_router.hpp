#pragma once
// The API listener's routes (DESIGN.md §4): a plain function from request to
// response, testable without sockets.
//
// handle() is thread-safe and may block (storage reads), so sessions call it
// on the blocking pool, never on an I/O thread. Responses use Helicone's
// envelope {"data": ..., "error": null} / {"data": null, "error": "message"}.

#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include "gateway/config.hpp"
#include "scoring/expected.hpp"

namespace arbiter::gateway {

struct Metrics;

using ApiRequest = boost::beast::http::request<boost::beast::http::string_body>;
using ApiResponse = boost::beast::http::response<boost::beast::http::string_body>;

// What a route handler gets besides the request.
struct ApiCall {
  const ApiRequest& request;
  std::string_view path;                     // target without the query
  std::vector<std::string_view> params;      // path segments captured by {} in the pattern
  const ProjectConfig* project = nullptr;    // set for authenticated routes

  // The query-string parameter `name`, percent-decoded; nullopt if absent.
  std::optional<std::string> query(std::string_view name) const;
  // The body parsed as JSON (depth-limited). On failure returns nullopt and
  // sets `error` to a 400 response naming the problem.
  std::optional<nlohmann::json> json_body(ApiResponse& error) const;
};

class ApiRouter {
 public:
  using Handler = std::function<ApiResponse(const ApiCall&)>;
  // Answers exactly once, from any thread (e.g. after a durable write).
  using Respond = std::function<void(ApiResponse)>;
  // A handler that may answer later: it must call respond exactly once. The
  // ApiCall (and the request it refers to) is valid only during the call:
  // copy what the deferred part needs.
  using AsyncHandler = std::function<void(const ApiCall&, Respond)>;

  ApiRouter(std::shared_ptr<const Config> config, const Metrics& metrics);

  // Registers a route. `pattern` is a path with `{}` for one segment, e.g.
  // "/v1/request/{}/score". Authenticated routes require
  // "Authorization: Bearer <project key>". Not thread-safe: register before serving.
  void add(boost::beast::http::verb method, std::string pattern, bool authenticated, Handler handler);
  void add_async(boost::beast::http::verb method, std::string pattern, bool authenticated, AsyncHandler handler);

  // Routes the request; respond runs exactly once (on this thread for plain
  // handlers and errors, maybe later on another thread for async ones). An
  // exception out of a handler becomes internal_error(): the client never
  // sees its text.
  void handle_async(const ApiRequest& request, Respond respond) const;
  // Blocking form (tests): waits for the response.
  ApiResponse handle(const ApiRequest& request) const;

  // What the router serves, in registration order: one entry per route, with
  // its method ("GET"), pattern ("/v1/request/{}") and whether it needs a
  // project key. Tests walk it so that no endpoint escapes the isolation matrix.
  struct RouteInfo {
    std::string method;
    std::string pattern;
    bool authenticated = false;
  };
  std::vector<RouteInfo> routes() const;

  // Adds Prometheus text to GET /metrics (e.g. the request log's counters).
  // Not thread-safe: register before serving. `source` must be thread-safe.
  void add_metrics_source(std::function<std::string()> source);

  // Adds a section `name` to GET /healthz: the check returns whether the
  // component works and what to show. /healthz stays 200 while the process
  // serves (it is a liveness probe: restarting would not bring a disk back);
  // "status" turns "degraded" when a check fails. Not thread-safe: register
  // before serving. `check` must be thread-safe and quick.
  struct HealthCheck {
    bool ok = true;
    nlohmann::json detail;
  };
  void add_health_check(std::string name, std::function<HealthCheck()> check);

  // Response helpers, shared by every route.
  static ApiResponse json(unsigned status, const nlohmann::json& body, unsigned version = 11);
  static ApiResponse ok(const nlohmann::json& data, unsigned status = 200);
  static ApiResponse error(unsigned status, std::string_view message);
  // A scoring error as a response: the caller's mistakes (4xx, 503) keep
  // their message, which names the field; storage failures become a generic
  // 500 (see internal_error), since RocksDB's messages carry file paths.
  static ApiResponse from_error(const scoring::Error& e);
  // A generic 500 that shows nothing of the cause: the cause is logged with
  // a fresh incident id, and the id (in the message and the X-Request-Id
  // header) is all the client gets, so an operator can find the log line.
  static ApiResponse internal_error(std::string_view what, std::string_view detail);

 private:
  struct Route {
    boost::beast::http::verb method;
    std::vector<std::string> segments;  // "{}" = capture
    bool authenticated;
    Handler handler;             // one of the two is set
    AsyncHandler async_handler;
  };
  std::shared_ptr<const Config> config_;
  std::vector<Route> routes_;
  std::vector<std::function<std::string()>> metrics_sources_;
  std::vector<std::pair<std::string, std::function<HealthCheck()>>> health_checks_;
};

}  // namespace arbiter::gateway
