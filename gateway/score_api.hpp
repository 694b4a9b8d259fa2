#pragma once
// API routes over the score store (DESIGN.md §4): Helicone's score and
// feedback submission, typed scores, score configs and the /v1/evals/*
// analytics. Handlers run on the blocking pool (durable RocksDB writes,
// index scans).

#include "gateway/api_router.hpp"
#include "scoring/request_log.hpp"
#include "scoring/score_store.hpp"

namespace arbiter::gateway {

// Registers POST /v1/request/{id}/score, POST /v1/request/{id}/feedback,
// POST|GET /v1/scores, DELETE /v1/scores/{id}, POST|GET /v1/score-configs,
// GET /v1/evals/scores, POST /v1/evals/query and
// POST /v1/evals/score-distributions/query, and the store's counters on
// /metrics. The routes use `scores` (the process's one ScoreStore over `log`:
// the evaluator runtime writes through it too, so that the eval aggregates
// see every score); both must outlive the router.
void register_score_routes(ApiRouter& router, scoring::RequestLog& log, scoring::ScoreStore& scores);

}  // namespace arbiter::gateway
