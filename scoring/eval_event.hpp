#pragma once
// The event an evaluator sees (DESIGN.md §6), built from a stored record:
//
//   inputs      the request body, parsed (an object for every OpenAI call;
//               the raw text when it is not JSON; {} when omitted or empty)
//   outputs     content     the assistant text: choices[0].message.content
//                           (chat; for streams the gateway's reassembled
//                           completion), choices[0].text (legacy completions),
//                           or the Responses API's output_text parts; absent
//                           when the response has none (errors, embeddings)
//               tool_calls  choices[0].message.tool_calls, [] when none
//               raw         the whole response body, parsed (text when not JSON)
//   feedback    fields posted later (POST /v1/request/{id}/feedback), merged
//   properties  Helicone-Property-* values, keys lower-cased
//   metadata    model, status, latency_ms, and when known
//               time_to_first_token_ms, prompt_tokens, completion_tokens
//   user_id, session_id, request_id
//
// Unknown values are left out rather than set to null, so that `needs` and a
// kind's "event has no ..." checks see them as missing.
//
// Thread-safety: pure functions.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "scoring/request_record.hpp"

namespace arbiter::scoring {

// Precondition: the record was read with its bodies (RequestLog::get with
// include_bodies) so that feedback and bodies are attached.
// Without `with_inputs`, `inputs` is left {} (the request body is not parsed).
nlohmann::json build_eval_event(const RequestRecord& record, bool with_inputs = true);

// The `needs` paths that the event lacks, in the order given.
std::vector<std::string> missing_fields(const nlohmann::json& event,
                                        const std::vector<std::string>& needs);

}  // namespace arbiter::scoring
