#pragma once
// Every API route of the binary, registered in one place so that main and the
// tests that must see the full route list (the project-isolation matrix)
// build the same router.

#include <memory>

#include "gateway/config.hpp"

namespace arbiter::scoring {
class EvaluatorRuntime;
class RequestLog;
class ScoreStore;
class WebhookService;
}  // namespace arbiter::scoring

namespace arbiter::gateway {

class ApiRouter;

// The services behind the routes; all must outlive the router.
struct ApiServices {
  scoring::RequestLog& log;
  scoring::ScoreStore& scores;
  scoring::EvaluatorRuntime& evaluators;
  scoring::WebhookService& webhooks;
  std::shared_ptr<const Config> config;
};

// Registers the request, score, evaluator and webhook routes and their
// metrics sources. Not thread-safe: call before serving.
void register_api_routes(ApiRouter& router, const ApiServices& services);

}  // namespace arbiter::gateway
