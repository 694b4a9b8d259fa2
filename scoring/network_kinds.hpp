#pragma once
// The evaluator kinds that call out over HTTP (DESIGN.md §6), through
// OutboundHttp::send_sync on the evaluator workers — never on the proxy's
// I/O threads:
//
//   llm_judge            params: template | template_file, upstream, model,
//                        temperature?, max_tokens?. POSTs the rendered
//                        template as one user message to the upstream's
//                        /v1/chat/completions; the rating is the answer's
//                        last [[n]] (1-5), the rest of the answer the comment.
//   http                 params: url, headers?, allow_insecure?. POSTs the
//                        event JSON; the answer is parsed like a plugin's
//                        ({"scores": ...} or {"error": ...}).
//   semantic_similarity  params: upstream, model?, output?, reference?.
//                        Embeds both texts with one /v1/embeddings call;
//                        the score is their cosine similarity.
//   moderation           params: upstream, model?, output?. /v1/moderations
//                        on the text; the score is the boolean `flagged`,
//                        the flagged categories the comment.
//
// Failures: a timeout, a connection error, 429 and 5xx are retryable; any
// other status, an answer that does not parse, or a judge answer without a
// valid rating is an error at once.
//
// Thread-safety: as EvaluatorKind.

#include <memory>

#include "scoring/evaluator_kind.hpp"

namespace arbiter::scoring {

// Throws EvaluatorSetupError naming the param at fault.
std::unique_ptr<EvaluatorKind> make_network_kind(const KindSpec& spec, const KindEnvironment& env);

}  // namespace arbiter::scoring
