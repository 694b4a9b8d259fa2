#include "gateway/api_router.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>

#include <nlohmann/json.hpp>

#include "gateway/auth.hpp"
#include "gateway/log.hpp"
#include "gateway/metrics.hpp"
#include "gateway/request_context.hpp"
#include "scoring/json_limits.hpp"

namespace arbiter::gateway {
namespace http = boost::beast::http;

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out.push_back(' ');
    } else if (in[i] == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> ApiCall::query(std::string_view name) const {
  const std::string_view target = request.target();
  const auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq)) == name) {
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::optional<nlohmann::json> ApiCall::json_body(ApiResponse& error) const {
  const std::string& body = request.body();
  if (body.empty()) {
    error = ApiRouter::error(400, "request body must be a JSON object");
    return std::nullopt;
  }
  if (scoring::json_too_deep(body)) {
    error = ApiRouter::error(400, "request body: JSON nested deeper than " + std::to_string(scoring::kMaxJsonDepth) +
                                      " levels");
    return std::nullopt;
  }
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number beyond double ("1e400",
    // found by the manual_logger fuzz target). what() is
    // "[json.exception.parse_error.101] parse error at ...": the bracketed
    // library tag means nothing to a client.
    std::string_view what = e.what();
    if (const auto tag_end = what.find("] "); what.rfind("[json.exception.", 0) == 0 && tag_end != what.npos) {
      what.remove_prefix(tag_end + 2);
    }
    error = ApiRouter::error(400, "request body: malformed JSON: " + std::string(what));
    return std::nullopt;
  }
}

ApiRouter::ApiRouter(std::shared_ptr<const Config> config, const Metrics& metrics) : config_(std::move(config)) {
  add(http::verb::get, "/healthz", false, [this](const ApiCall&) {
    nlohmann::json body = {{"status", "ok"}};
    for (const auto& [name, check] : health_checks_) {
      HealthCheck h = check();
      if (!h.ok) body["status"] = "degraded";
      body[name] = std::move(h.detail);
    }
    return json(200, body);
  });
  add(http::verb::get, "/metrics", false, [this, &metrics](const ApiCall&) {
    ApiResponse res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain; version=0.0.4");
    res.body() = metrics.render_prometheus();
    for (const auto& source : metrics_sources_) res.body() += source();
    res.prepare_payload();
    return res;
  });
}

void ApiRouter::add_health_check(std::string name, std::function<HealthCheck()> check) {
  health_checks_.emplace_back(std::move(name), std::move(check));
}

void ApiRouter::add_metrics_source(std::function<std::string()> source) {
  metrics_sources_.push_back(std::move(source));
}

void ApiRouter::add(http::verb method, std::string pattern, bool authenticated, Handler handler) {
  Route r{method, {}, authenticated, std::move(handler), {}};
  for (auto seg : split_path(pattern)) r.segments.emplace_back(seg);
  routes_.push_back(std::move(r));
}

void ApiRouter::add_async(http::verb method, std::string pattern, bool authenticated, AsyncHandler handler) {
  Route r{method, {}, authenticated, {}, std::move(handler)};
  for (auto seg : split_path(pattern)) r.segments.emplace_back(seg);
  routes_.push_back(std::move(r));
}

std::vector<ApiRouter::RouteInfo> ApiRouter::routes() const {
  std::vector<RouteInfo> out;
  out.reserve(routes_.size());
  for (const auto& r : routes_) {
    std::string pattern;
    for (const auto& seg : r.segments) pattern += "/" + seg;
    out.push_back({std::string(http::to_string(r.method)), pattern.empty() ? "/" : pattern, r.authenticated});
  }
  return out;
}

ApiResponse ApiRouter::json(unsigned status, const nlohmann::json& body, unsigned version) {
  ApiResponse res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, "application/json");
  res.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  res.prepare_payload();
  return res;
}

ApiResponse ApiRouter::ok(const nlohmann::json& data, unsigned status) {
  return json(status, {{"data", data}, {"error", nullptr}});
}

ApiResponse ApiRouter::error(unsigned status, std::string_view message) {
  return json(status, {{"data", nullptr}, {"error", message}});
}

ApiResponse ApiRouter::from_error(const scoring::Error& e) {
  if (e.code == scoring::ErrorCode::kStorage) return internal_error("storage error", e.message);
  return error(static_cast<unsigned>(scoring::http_status(e.code)), e.message);
}

ApiResponse ApiRouter::internal_error(std::string_view what, std::string_view detail) {
  const std::string id = new_request_id();
  log::error("api internal error", {{"request_id", id}, {"what", std::string(what)}, {"error", std::string(detail)}});
  ApiResponse res = error(500, "internal error (request id " + id + ")");
  res.set("X-Request-Id", id);
  return res;
}

ApiResponse ApiRouter::handle(const ApiRequest& request) const {
  // A deferred handler may answer from another thread: wait for it.
  struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<ApiResponse> res;
  };
  auto slot = std::make_shared<Slot>();
  handle_async(request, [slot](ApiResponse res) {
    std::lock_guard lk(slot->mu);
    slot->res = std::move(res);
    slot->cv.notify_one();
  });
  std::unique_lock lk(slot->mu);
  slot->cv.wait(lk, [&] { return slot->res.has_value(); });
  return std::move(*slot->res);
}

void ApiRouter::handle_async(const ApiRequest& request, Respond respond) const {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const auto segments = split_path(path);
  const unsigned version = request.version();

  bool path_matched = false;
  for (const auto& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::vector<std::string_view> params;
    bool match = true;
    for (std::size_t i = 0; i < segments.size() && match; ++i) {
      if (route.segments[i] == "{}") {
        params.push_back(segments[i]);
      } else {
        match = route.segments[i] == segments[i];
      }
    }
    if (!match) continue;
    path_matched = true;
    if (route.method != request.method()) continue;

    ApiCall call{request, path, std::move(params), nullptr};
    if (route.authenticated) {
      const auto auth = request[http::field::authorization];
      if (auth.empty()) {
        return respond(error(401, "missing Authorization header: send Authorization: Bearer <project api key>"));
      }
      call.project = find_project_by_bearer(*config_, auth);
      if (call.project == nullptr) return respond(error(401, "invalid API key in Authorization header"));
    }
    auto versioned = [respond = std::move(respond), version](ApiResponse res) {
      res.version(version);
      respond(std::move(res));
    };
    // An exception out of a handler is a bug, not a client error: the client
    // gets a generic 500, never the exception's text (it may name files or
    // internal state). An async handler that answered and then threw has
    // answered: `once` drops anything after the first answer.
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto once = [answered, versioned = std::move(versioned)](ApiResponse res) {
      if (!answered->exchange(true)) versioned(std::move(res));
    };
    try {
      if (route.async_handler) return route.async_handler(call, once);
      return once(route.handler(call));
    } catch (const std::exception& e) {
      if (!answered->load()) once(internal_error("handler threw", e.what()));
    } catch (...) {
      if (!answered->load()) once(internal_error("handler threw", "unknown exception"));
    }
    return;
  }
  if (path_matched) {
    return respond(error(405, "method " + std::string(request.method_string()) + " not allowed on " + std::string(path)));
  }
  respond(error(404, "no route for " + std::string(request.method_string()) + " " + std::string(path)));
}

}  // namespace arbiter::gateway
