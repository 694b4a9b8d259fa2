#pragma once
// API routes over webhook delivery (DESIGN.md §4, §7), and the translation of
// the `webhooks:` config into scoring's options. Handlers run on the blocking
// pool (outbox reads, the synchronous test send).

#include <string>

#include "gateway/api_router.hpp"
#include "gateway/config.hpp"

namespace arbiter::scoring {
class WebhookService;
struct WebhookServiceOptions;
}  // namespace arbiter::scoring

namespace arbiter::gateway {

// The webhooks of `config` in scoring's terms (secrets are copied in memory
// only), with storage.retention_days for pruning delivered entries.
scoring::WebhookServiceOptions webhook_service_options(const Config& config);

// Registers, all project-authenticated and scoped to the caller's project:
//   GET  /v1/webhooks                          configured hooks (no secrets,
//                                              no header values, the URL
//                                              without its query) + counters
//   GET  /v1/webhooks/deliveries               ?status=&webhook=&request_id=&limit=&cursor=
//   POST /v1/webhooks/{name}/test              sends a sample event now, reports the answer
//   POST /v1/webhooks/deliveries/{id}/retry    re-queues a dead delivery (404 / 409)
// `service` must outlive the router.
void register_webhook_routes(ApiRouter& router, scoring::WebhookService& service);

// Prometheus text for GET /metrics (per-webhook counters since start).
std::string webhook_metrics(const scoring::WebhookService& service);

}  // namespace arbiter::gateway
