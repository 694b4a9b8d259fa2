#include "gateway/api_router.hpp"

#include <nlohmann/json.hpp>

#include "gateway/auth.hpp"
#include "gateway/metrics.hpp"

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

}  // namespace

ApiRouter::ApiRouter(std::shared_ptr<const Config> config, const Metrics& metrics) : config_(std::move(config)) {
  add(http::verb::get, "/healthz", false, [](const ApiCall&) {
    return json(200, {{"status", "ok"}});
  });
  add(http::verb::get, "/metrics", false, [&metrics](const ApiCall&) {
    ApiResponse res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain; version=0.0.4");
    res.body() = metrics.render_prometheus();
    res.prepare_payload();
    return res;
  });
}

void ApiRouter::add(http::verb method, std::string pattern, bool authenticated, Handler handler) {
  Route r{method, {}, authenticated, std::move(handler)};
  for (auto seg : split_path(pattern)) r.segments.emplace_back(seg);
  routes_.push_back(std::move(r));
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

ApiResponse ApiRouter::handle(const ApiRequest& request) const {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const auto segments = split_path(path);

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
      if (auth.empty()) return error(401, "missing Authorization header: send Authorization: Bearer <project api key>");
      call.project = find_project_by_bearer(*config_, auth);
      if (call.project == nullptr) return error(401, "invalid API key in Authorization header");
    }
    auto res = route.handler(call);
    res.version(request.version());
    return res;
  }
  if (path_matched) return error(405, "method " + std::string(request.method_string()) + " not allowed on " + std::string(path));
  return error(404, "no route for " + std::string(request.method_string()) + " " + std::string(path));
}

}  // namespace arbiter::gateway
