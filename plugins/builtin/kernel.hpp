#pragma once
// The C++ side of the built-in evaluator kinds: each kind is a Kernel made by
// a factory from its validated params, and registry.cpp wraps every factory in
// an ArbiterEvaluatorPluginV1 table, so the runtime drives built-ins and
// dlopen()ed plugins through the same interface.
//
// Internal to plugins/builtin (and its tests): the runtime only sees
// registry.hpp and the ABI tables.

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/evaluator_abi.h"

namespace arbiter::plugins::builtin {

// A param problem found at create; the message names the param.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Strict reader of a built-in's create() config: the evaluator's `params`
// object plus "score_name" (added by the runtime). Each getter marks its key
// as known; finish() rejects any key no getter asked for. Every problem is a
// ConfigError "<param>: <what was expected>".
class Params {
 public:
  explicit Params(nlohmann::json config);

  const std::string& score_name() const { return score_name_; }

  // An event path (valid_event_path), or `fallback` when absent.
  std::string path(std::string_view key, std::string_view fallback);
  // A required non-empty list of strings.
  std::vector<std::string> string_list(std::string_view key);
  // A string, or nullopt when absent.
  std::optional<std::string> optional_string(std::string_view key);
  // Any value, or nullptr when absent.
  const nlohmann::json* optional(std::string_view key);

  // Throws ConfigError for the first key no getter asked for.
  void finish() const;

 private:
  const nlohmann::json* take(std::string_view key);

  nlohmann::json config_;
  std::string score_name_;
  std::set<std::string, std::less<>> known_;
};

// One configured built-in evaluator. evaluate() is const and called
// concurrently from several worker threads: a kernel is immutable after its
// factory returns.
class Kernel {
 public:
  explicit Kernel(std::string score_name) : score_name_(std::move(score_name)) {}
  virtual ~Kernel() = default;

  // The result document, in a shape parse_evaluator_result accepts:
  // {"scores": [{"name", "value", "comment"?}]} or {"error": "..."}.
  // May throw (std::bad_alloc); the ABI bridge turns that into an error.
  virtual nlohmann::json evaluate(const nlohmann::json& event) const = 0;

 protected:
  nlohmann::json score(nlohmann::json value, std::string comment = {}) const;

  const std::string score_name_;
};

using KernelFactory = std::unique_ptr<Kernel> (*)(Params& params);

// {"error": message} (not retryable).
nlohmann::json error_result(std::string message);

// The text at `path` in the event (event_value_text), or nullopt when the
// field is missing or JSON null.
std::optional<std::string> event_text(const nlohmann::json& event, std::string_view path);

// "event has no <path>"
std::string missing_field(std::string_view path);

// ABI bridge: the bodies of a built-in table's functions. `create_kernel`
// parses the config, runs the factory and Params::finish(), and reports a
// ConfigError through error_out. None of them throws.
ArbiterEvaluator* create_kernel(KernelFactory factory, const char* config_json, size_t config_len,
                                char** error_out) noexcept;
char* evaluate_kernel(ArbiterEvaluator* handle, const char* event_json, size_t event_len) noexcept;
void free_kernel_string(char* s) noexcept;
void destroy_kernel(ArbiterEvaluator* handle) noexcept;

// Factories of the kinds (text_kinds.cpp, json_schema.cpp, sql_parse.cpp).
std::unique_ptr<Kernel> make_response_length(Params& params);
std::unique_ptr<Kernel> make_levenshtein(Params& params);
std::unique_ptr<Kernel> make_rouge_l(Params& params);
std::unique_ptr<Kernel> make_bleu(Params& params);
std::unique_ptr<Kernel> make_flesch_reading_ease(Params& params);
std::unique_ptr<Kernel> make_json_key_coverage(Params& params);
std::unique_ptr<Kernel> make_tokens_per_second(Params& params);
std::unique_ptr<Kernel> make_keywords(Params& params);
std::unique_ptr<Kernel> make_json_schema(Params& params);
std::unique_ptr<Kernel> make_sql_parse(Params& params);

}  // namespace arbiter::plugins::builtin
