#pragma once
// API routes over the evaluator runtime (DESIGN.md §4, §6). Handlers run on
// the blocking pool (storage reads; a manual run calls the evaluator).

#include "gateway/api_router.hpp"
#include "scoring/evaluator_runtime.hpp"

namespace arbiter::gateway {

// Registers GET /v1/evaluators, GET /v1/evaluators/runs?request_id= and
// POST /v1/evaluators/{name}/run, and the runtime's counters on /metrics.
// `runtime` must outlive the router.
void register_evaluator_routes(ApiRouter& router, scoring::EvaluatorRuntime& runtime);

}  // namespace arbiter::gateway
