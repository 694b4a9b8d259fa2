#pragma once
// API routes over the request log (DESIGN.md §4): read one record, query
// with Helicone's filter tree, and ingest calls logged by clients that do not
// proxy (HeliconeManualLogger). Handlers run on the blocking pool.

#include "gateway/api_router.hpp"
#include "scoring/request_log.hpp"

namespace arbiter::gateway {

// Registers GET /v1/request/{id}, POST /v1/request/query and the manual-log
// routes POST /{custom,oai,anthropic,googleapis}/v1/log. `log` must outlive
// the router.
void register_request_routes(ApiRouter& router, scoring::RequestLog& log, std::shared_ptr<const Config> config);

}  // namespace arbiter::gateway
