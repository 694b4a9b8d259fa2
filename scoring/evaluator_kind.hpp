#pragma once
// Evaluator kinds (DESIGN.md §6): what one configured evaluator does with an
// event. A kind is built once at start-up from the evaluator's `params` — a
// bad param, template, library or upstream is an EvaluatorSetupError then,
// never a surprise at run time — and evaluate() runs on the runtime's worker
// threads.
//
//   local      response_length, levenshtein, rouge_l, bleu, json_schema,
//              sql_parse, flesch_reading_ease, json_key_coverage,
//              tokens_per_second, keywords: the built-in C-ABI tables
//              (plugins/builtin/registry.hpp) behind a PluginInstance
//   plugin     params.library (dlopen()ed at start) and params.config
//   network    llm_judge, http, semantic_similarity, moderation: calls through
//              OutboundHttp (scoring/network_kinds.cpp)
//
// Thread-safety: evaluate() may be called concurrently from several workers.
// Lifetime: a kind is destroyed after every evaluate() on it has returned.

#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/plugin_loader.hpp"

namespace arbiter::scoring {

class OutboundHttp;

// A configured upstream that llm_judge, semantic_similarity and moderation
// may call (`params.upstream` names it). base_url as configured: the calls
// go to base_url + "/v1/chat/completions" etc. — or base_url +
// "/chat/completions" when base_url already ends in /v1 (a local
// OpenAI-compatible server).
struct EvalUpstream {
  std::string name;
  std::string base_url;
  std::string api_key;  // sent as "Authorization: Bearer ..." when set; never logged
  std::string ca_file;
  bool verify_tls = true;
};

// An evaluator that cannot be built. what() names the param at fault, e.g.
// "params.template_file: cannot read 'x': No such file or directory"; the
// runtime prefixes the evaluator's name.
class EvaluatorSetupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct KindSpec {
  std::string evaluator;   // the evaluator's name
  std::string kind;        // as configured
  std::string score_name;  // the score a single-score kind writes
  nlohmann::json params = nlohmann::json::object();
};

struct KindEnvironment {
  const std::vector<EvalUpstream>* upstreams = nullptr;
  OutboundHttp* http = nullptr;  // required by network kinds
  // When it turns true (the runtime is stopping), network kinds stop waiting
  // for calls in flight and return a retryable "cancelled" failure at once.
  const std::atomic<bool>* cancel = nullptr;
};

class EvaluatorKind {
 public:
  virtual ~EvaluatorKind() = default;

  // One evaluation of `event` (`event_json` is its serialised form). A
  // transient failure (timeout, 429, 5xx, connection error) is !ok with
  // retryable set; the runtime decides about retries. Network kinds give up
  // after `timeout`; local kinds cannot be interrupted and run to the end
  // (the runtime records the overrun as a timeout).
  virtual plugins::EvalResult evaluate(const nlohmann::json& event, const std::string& event_json,
                                       std::chrono::milliseconds timeout) const = 0;

  // Whether the scores carry names of their own (plugin, http) rather than
  // the evaluator's score name.
  virtual bool names_own_scores() const { return false; }

  // Whether an evaluation may take long enough for its `running` state to be
  // worth a write (everything but the built-ins, which take microseconds).
  virtual bool may_be_slow() const { return true; }

  // Whether evaluate() reads `event_json`; when not, the runtime passes an
  // empty string and spares the serialisation.
  virtual bool wants_event_json() const { return true; }

  // Whether evaluate() may read the event's `inputs` (the parsed request
  // body, often the largest part: the whole conversation). When not, and no
  // `needs` path is under inputs, the runtime leaves it empty and spares the
  // parse.
  virtual bool reads_inputs() const { return true; }
};

// Builds the kind for `spec`. Throws EvaluatorSetupError.
std::unique_ptr<EvaluatorKind> make_evaluator_kind(const KindSpec& spec, const KindEnvironment& env);

// llm_judge, http, semantic_similarity, moderation.
bool is_network_kind(std::string_view kind);

// Every kind name make_evaluator_kind accepts, for messages.
std::vector<std::string> evaluator_kinds();

}  // namespace arbiter::scoring
