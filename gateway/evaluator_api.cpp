#include "gateway/evaluator_api.hpp"

#include <string>

#include "scoring/request_record.hpp"

namespace arbiter::gateway {
namespace http = boost::beast::http;

void register_evaluator_routes(ApiRouter& router, scoring::EvaluatorRuntime& runtime) {
  router.add(http::verb::get, "/v1/evaluators", true,
             [&runtime](const ApiCall& call) { return ApiRouter::ok(runtime.describe(call.project->name)); });

  router.add(http::verb::get, "/v1/evaluators/runs", true, [&runtime](const ApiCall& call) {
    const auto id = call.query("request_id");
    if (!id || id->empty()) return ApiRouter::error(400, "query parameter request_id is required");
    if (!scoring::valid_request_id(*id)) {
      return ApiRouter::error(400, "request_id must be 1-128 printable ASCII characters");
    }
    auto runs = runtime.runs_json(call.project->name, *id);
    if (!runs) return ApiRouter::from_error(runs.error());
    return ApiRouter::ok(*runs);
  });

  router.add(http::verb::post, "/v1/evaluators/{}/run", true, [&runtime](const ApiCall& call) {
    const std::string name(call.params.at(0));
    if (!runtime.has_evaluator(name)) {
      return ApiRouter::error(404, "evaluator '" + scoring::sanitize_utf8(name) + "' not found");
    }
    ApiResponse bad;
    auto body = call.json_body(bad);
    if (!body) return bad;
    if (!body->is_object()) return ApiRouter::error(400, "request body must be a JSON object");
    for (const auto& [key, value] : body->items()) {
      if (key != "request_id" && key != "store") {
        return ApiRouter::error(400, "unknown field '" + scoring::sanitize_utf8(key) +
                                         "' (expected request_id and optional store)");
      }
    }
    auto id = body->find("request_id");
    if (id == body->end()) return ApiRouter::error(400, "missing \"request_id\"");
    if (!id->is_string() || !scoring::valid_request_id(id->get_ref<const std::string&>())) {
      return ApiRouter::error(400, "request_id must be a string of 1-128 printable ASCII characters");
    }
    bool store = false;
    if (auto s = body->find("store"); s != body->end()) {
      if (!s->is_boolean()) return ApiRouter::error(400, "store must be true or false");
      store = s->get<bool>();
    }
    auto run = runtime.run_now(call.project->name, name, id->get<std::string>(), store);
    if (!run) return ApiRouter::from_error(run.error());
    return ApiRouter::ok(*run, store ? 201 : 200);
  });

  router.add_metrics_source([&runtime] { return runtime.metrics_text(); });
}

}  // namespace arbiter::gateway
