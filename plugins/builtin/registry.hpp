#pragma once
// The local built-in evaluator kinds as plugin tables (DESIGN.md §6: "the
// built-ins implement the same interface inside the binary"). The runtime
// drives a built-in exactly like a dlopen()ed plugin: PluginInstance(table,
// nullptr, config) with config = the evaluator's `params` object plus
// "score_name" (string, required).
//
// Each kind validates its params strictly at create (an unknown param or a
// wrong type fails with a message naming the param, e.g. "keywords: expected a
// list of strings") and evaluate returns {"scores": [{"name": score_name,
// "value": v, "comment"?}]}, or {"error": "event has no feedback.ground_truth"}
// (not retryable) when a field it reads is missing or null.
//
//   kind                 params                                   value
//   response_length      output                                   integer
//   levenshtein          output, reference                        number in [0, 1]
//   rouge_l              output, reference                        number in [0, 1]
//   bleu                 output, reference                        number in [0, 1]
//   flesch_reading_ease  output                                   number
//   json_key_coverage    output, required_keys                    integer (-1: not JSON)
//   keywords             output, keywords                         boolean
//   tokens_per_second    (none; metadata.completion_tokens and    number
//                        metadata.latency_ms)
//   json_schema          output, schema | schema_file             boolean (comment: first
//   violation) sql_parse            output, dialect (postgresql)             boolean (comment:
//   parse error)
//
// `output` defaults to "outputs.content", `reference` to
// "feedback.ground_truth"; both are event paths (event_path.hpp). The
// definitions of the values are metrics.hpp's.
//
// Thread-safety: the tables are immutable statics; every kind's evaluate may
// run concurrently on one handle (no table sets ARBITER_EVALUATOR_FLAG_SERIAL).

#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "plugins/evaluator_abi.h"

namespace arbiter::plugins::builtin {

class Kernel;

// The table of a local built-in kind, or nullptr (also for the kinds that
// need the network: llm_judge, http, semantic_similarity, moderation).
const ArbiterEvaluatorPluginV1* find_builtin(std::string_view kind);

// Every kind find_builtin knows, in a stable order.
std::vector<std::string_view> builtin_kinds();

// A param problem found when a built-in is created; what() names the param,
// as the table's create reports it.
class BuiltinConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The same kernels as the tables, called directly: the runtime's path for
// built-ins, which spares the event's serialisation, the kernel's parse of it
// and the result's text round trip (about 160 k instructions a run, most of
// a response_length run's cost). Same config, same result documents.
class BuiltinEvaluator {
 public:
  // nullptr for a kind find_builtin does not know. Throws BuiltinConfigError.
  static std::unique_ptr<BuiltinEvaluator> create(std::string_view kind, const nlohmann::json& config);
  ~BuiltinEvaluator();
  BuiltinEvaluator(const BuiltinEvaluator&) = delete;
  BuiltinEvaluator& operator=(const BuiltinEvaluator&) = delete;

  // The result document (see the table comment above). Never throws: a
  // failure is {"error": ...}. Thread-safe (kernels are immutable).
  nlohmann::json evaluate(const nlohmann::json& event) const;

 private:
  explicit BuiltinEvaluator(std::unique_ptr<Kernel> kernel);
  std::unique_ptr<Kernel> kernel_;
};

}  // namespace arbiter::plugins::builtin
