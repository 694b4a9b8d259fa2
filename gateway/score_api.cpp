#include "gateway/score_api.hpp"

#include <cmath>
#include <memory>
#include <string>

#include "scoring/evals.hpp"
#include "scoring/score_store.hpp"

namespace arbiter::gateway {
namespace http = boost::beast::http;

namespace {

using nlohmann::json;

// Parses the GET /v1/scores query string. Errors name the parameter.
scoring::Expected<scoring::ScoreListQuery> list_query(const ApiCall& call) {
  scoring::ScoreListQuery q;
  q.request_id = call.query("request_id").value_or("");
  q.session_id = call.query("session_id").value_or("");
  q.name = call.query("name").value_or("");
  q.config_id = call.query("config_id").value_or("");
  q.cursor = call.query("cursor").value_or("");
  if (!q.request_id.empty() && !q.session_id.empty()) {
    return scoring::invalid_argument("request_id and session_id cannot be combined");
  }
  if (const auto s = call.query("source")) {
    q.source = scoring::parse_source(*s);
    if (!q.source) return scoring::invalid_argument("source must be API, ANNOTATION or EVAL");
  }
  if (const auto t = call.query("data_type")) {
    q.data_type = scoring::parse_data_type(*t);
    if (!q.data_type) {
      return scoring::invalid_argument("data_type must be NUMERIC, BOOLEAN or CATEGORICAL");
    }
  }
  for (const char* key : {"min_value", "max_value"}) {
    const auto v = call.query(key);
    if (!v) continue;
    char* end = nullptr;
    const double d = std::strtod(v->c_str(), &end);
    if (v->empty() || end != v->c_str() + v->size() || !std::isfinite(d)) {
      return scoring::invalid_argument(std::string(key) + " must be a number");
    }
    (std::string_view(key) == "min_value" ? q.min_value : q.max_value) = d;
  }
  for (const char* key : {"from_timestamp", "to_timestamp"}) {
    const auto v = call.query(key);
    if (!v) continue;
    const auto ts = scoring::parse_iso8601(*v);
    if (!ts) return scoring::invalid_argument(std::string(key) + " must be an ISO-8601 timestamp");
    (std::string_view(key) == "from_timestamp" ? q.from_us : q.to_us) = *ts;
  }
  if (const auto l = call.query("limit")) {
    char* end = nullptr;
    const long n = std::strtol(l->c_str(), &end, 10);
    if (l->empty() || end != l->c_str() + l->size() || n < 1 || n > 100) {
      return scoring::invalid_argument("limit must be an integer between 1 and 100");
    }
    q.limit = static_cast<std::size_t>(n);
  }
  return q;
}

template <class Run>
ApiResponse eval_route(const ApiCall& call, scoring::RequestLog& log, scoring::ScoreStore& scores,
                       bool distribution, Run run) {
  ApiResponse bad;
  auto body = call.json_body(bad);
  if (!body) return bad;
  auto q = scoring::parse_eval_query(*body, distribution);
  if (!q) return ApiRouter::from_error(q.error());
  auto data = log.with_store([&](scoring::Store& store) {
    return run(store, call.project->name, *q, &scores.aggregates());
  });
  if (!data) return ApiRouter::from_error(data.error());
  return ApiRouter::ok(*data);
}

using Respond = ApiRouter::Respond;

// The answer to a score write: 201 with null data (Helicone's shape) or, for
// typed scores, the stored score.
scoring::ScoreStore::WriteCallback created(Respond respond, bool with_score) {
  return [respond = std::move(respond), with_score](scoring::Expected<std::vector<scoring::Score>> r) {
    if (!r) return respond(ApiRouter::from_error(r.error()));
    if (with_score && !r->empty()) return respond(ApiRouter::ok(scoring::to_json(r->front()), 201));
    respond(ApiRouter::ok(nullptr, 201));
  };
}

}  // namespace

void register_score_routes(ApiRouter& router, scoring::RequestLog& log, scoring::ScoreStore& score_store) {
  // Handlers capture a non-owning pointer: main owns the store (the
  // evaluator runtime writes through it too).
  scoring::ScoreStore* scores = &score_store;
  router.add_metrics_source([scores] {
    const auto c = scores->counters();
    return "# HELP arbiter_score_groups_total Score group commits (one fsync each).\n"
           "# TYPE arbiter_score_groups_total counter\n"
           "arbiter_score_groups_total " + std::to_string(c.groups) +
           "\n# HELP arbiter_score_writes_refused_total Score writes refused because the write queue was full.\n"
           "# TYPE arbiter_score_writes_refused_total counter\n"
           "arbiter_score_writes_refused_total " + std::to_string(c.refused_full) +
           "\n# HELP arbiter_score_queue_depth Score writes waiting for the writer.\n"
           "# TYPE arbiter_score_queue_depth gauge\n"
           "arbiter_score_queue_depth " + std::to_string(c.queue_depth) + "\n";
  });

  // Writes answer from the score writer after their group commit is fsynced,
  // so no API thread waits for the disk.
  router.add_async(http::verb::post, "/v1/request/{}/score", true, [scores](const ApiCall& call, Respond respond) {
    ApiResponse bad;
    auto body = call.json_body(bad);
    if (!body) return respond(std::move(bad));
    auto parsed = scoring::parse_helicone_scores(*body);
    if (!parsed) return respond(ApiRouter::from_error(parsed.error()));
    scores->submit_async(call.project->name, call.params.at(0), *parsed, created(std::move(respond), false));
  });

  router.add_async(http::verb::post, "/v1/request/{}/feedback", true, [scores](const ApiCall& call, Respond respond) {
    ApiResponse bad;
    auto body = call.json_body(bad);
    if (!body) return respond(std::move(bad));
    auto parsed = scoring::parse_feedback(*body);
    if (!parsed) return respond(ApiRouter::from_error(parsed.error()));
    scores->submit_feedback_async(call.project->name, call.params.at(0), *parsed, created(std::move(respond), false));
  });

  router.add_async(http::verb::post, "/v1/scores", true, [scores](const ApiCall& call, Respond respond) {
    ApiResponse bad;
    auto body = call.json_body(bad);
    if (!body) return respond(std::move(bad));
    auto parsed = scoring::parse_typed_score(*body);
    if (!parsed) return respond(ApiRouter::from_error(parsed.error()));
    scores->upsert_async(call.project->name, std::move(*parsed), created(std::move(respond), true));
  });

  router.add(http::verb::get, "/v1/scores", true, [scores](const ApiCall& call) {
    auto q = list_query(call);
    if (!q) return ApiRouter::from_error(q.error());
    auto page = scores->list(call.project->name, *q);
    if (!page) return ApiRouter::from_error(page.error());
    json items = json::array();
    for (const auto& s : page->scores) items.push_back(scoring::to_json(s));
    return ApiRouter::ok(
        {{"scores", std::move(items)},
         {"next_cursor", page->next_cursor.empty() ? json(nullptr) : json(page->next_cursor)}});
  });

  router.add_async(http::verb::delete_, "/v1/scores/{}", true, [scores](const ApiCall& call, Respond respond) {
    scores->remove_async(call.project->name, call.params.at(0),
                         [respond = std::move(respond)](scoring::Expected<std::vector<scoring::Score>> r) {
                           respond(r ? ApiRouter::ok(nullptr) : ApiRouter::from_error(r.error()));
                         });
  });

  router.add(http::verb::post, "/v1/score-configs", true, [scores](const ApiCall& call) {
    ApiResponse bad;
    auto body = call.json_body(bad);
    if (!body) return bad;
    auto parsed = scoring::parse_score_config(*body);
    if (!parsed) return ApiRouter::from_error(parsed.error());
    auto stored = scores->create_config(call.project->name, std::move(*parsed));
    if (!stored) return ApiRouter::from_error(stored.error());
    return ApiRouter::ok(scoring::to_json(*stored), 201);
  });

  router.add(http::verb::get, "/v1/score-configs", true, [scores](const ApiCall& call) {
    auto configs = scores->configs(call.project->name);
    if (!configs) return ApiRouter::from_error(configs.error());
    json items = json::array();
    for (const auto& c : *configs) items.push_back(scoring::to_json(c));
    return ApiRouter::ok(items);
  });

  router.add(http::verb::get, "/v1/evals/scores", true, [&log](const ApiCall& call) {
    auto names = log.with_store(
        [&](scoring::Store& store) { return scoring::score_names(store, call.project->name); });
    if (!names) return ApiRouter::from_error(names.error());
    json items = json::array();
    for (const auto& n : *names) items.push_back(scoring::sanitize_utf8(n));
    return ApiRouter::ok(items);
  });

  router.add(http::verb::post, "/v1/evals/query", true, [&log, scores](const ApiCall& call) {
    return eval_route(
        call, log, *scores, false,
        [](const scoring::Store& s, std::string_view p, const scoring::EvalQuery& q,
           scoring::ScoreAggregates* a) { return scoring::run_eval_query(s, p, q, a); });
  });

  router.add(http::verb::post, "/v1/evals/score-distributions/query", true,
             [&log, scores](const ApiCall& call) {
               return eval_route(call, log, *scores, true,
                                 [](const scoring::Store& s, std::string_view p,
                                    const scoring::EvalQuery& q, scoring::ScoreAggregates* a) {
                                   return scoring::run_score_distribution(s, p, q, a);
                                 });
             });
}

}  // namespace arbiter::gateway
