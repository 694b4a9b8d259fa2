#pragma once
// Evaluator plugins behind the C ABI of evaluator_abi.h (DESIGN.md §6):
// loading a shared library, holding one configured evaluator over a plugin
// table (a loaded library's or a built-in's), and normalising what an
// evaluator returns.
//
// Errors at start-up (a library that cannot be loaded, a refused table, a
// config the plugin rejects) are PluginError exceptions with a message fit for
// the operator. Errors of one evaluation are values (EvalResult::ok == false):
// they become an error run, never an exception on a worker thread.

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/evaluator_abi.h"

namespace arbiter::plugins {

class PluginError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One evaluator result, normalised. `value` is a number, a boolean, or a
// string (a category label); never null, an object or an array.
struct EvalScore {
  std::string name;
  nlohmann::json value;
  std::string comment;
};

struct EvalResult {
  bool ok = false;
  bool retryable = false;  // transient failure: the runtime retries with backoff
  std::string error;       // when !ok
  std::vector<EvalScore> scores;
};

// Parses what evaluate() or an http evaluator returns. Accepted shapes (a JSON
// object; other top-level members are ignored):
//   {"scores": {"<name>": <number | bool | string>, ...}}
//   {"scores": [{"name": "...", "value": ..., "comment"?: "...",
//                "data_type"?: "NUMERIC" | "BOOLEAN" | "CATEGORICAL"}, ...]}
//   {"error": "<message>", "retryable"?: bool}
// An empty "scores" object or list is ok with no scores. A non-null "error"
// wins over "scores". Anything else (invalid JSON, not an object, neither key,
// a value that is null / an object / an array, an empty or repeated name, an
// unknown member in a list entry, a data_type that does not match its value)
// is !ok (not retryable) with a message naming the offending score.
// `default_name` is reserved for evaluators that return a bare value; it is
// unused now.
// Thread-safety: pure.
EvalResult parse_evaluator_result(std::string_view json_text, std::string_view default_name = {});
// The same for a document already parsed (the built-ins' direct path); the
// document is consumed.
EvalResult parse_evaluator_document(nlohmann::json&& doc);

// Checks a plugin table the way the loader does: non-NULL, abi_version equal
// to ARBITER_EVALUATOR_ABI_VERSION, struct_size at least the V1 table, no NULL
// function pointer. Returns "" or the reason ("ABI version 2, gateway supports
// 1"). Only the frozen header is read before struct_size is checked.
std::string check_plugin_table(const ArbiterEvaluatorPluginV1* table);

// A dlopen()ed plugin library (RTLD_NOW | RTLD_LOCAL), closed when the last
// owner lets go. Every failure is a PluginError naming the library path:
// dlopen failure (with dlerror()), a missing `arbiter_evaluator_plugin` symbol,
// and each check_plugin_table reason.
// Thread-safety: open() may run concurrently; the object is immutable.
// Lifetime: keep it alive for as long as any PluginInstance over its table
// (PluginInstance holds a shared_ptr for that).
class PluginLibrary {
 public:
  static std::shared_ptr<PluginLibrary> open(const std::string& path);

  const ArbiterEvaluatorPluginV1* table() const { return table_; }
  const std::string& path() const { return path_; }

  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;
  ~PluginLibrary();

 private:
  PluginLibrary(void* handle, const ArbiterEvaluatorPluginV1* table, std::string path);

  void* handle_;
  const ArbiterEvaluatorPluginV1* table_;
  std::string path_;
};

// One configured evaluator over a table: create() runs in the constructor with
// `config` serialised as JSON, destroy() in the destructor.
//  - Throws PluginError when the table is refused (check_plugin_table) or when
//    create fails; the message is the plugin's own (prefixed with
//    "plugin <path>: " for a loaded library; a built-in's message already
//    names the param at fault).
//  - evaluate() is thread-safe. Calls run concurrently on the plugin unless
//    the table sets ARBITER_EVALUATOR_FLAG_SERIAL, in which case this instance
//    serialises them. A NULL return, invalid JSON or a malformed result is an
//    !ok EvalResult (see parse_evaluator_result); evaluate never throws for
//    what the plugin returns.
// Lifetime: the destructor must not run while an evaluate() is in progress
// (the ABI promises destroy happens after every evaluate has returned).
class PluginInstance {
 public:
  PluginInstance(const ArbiterEvaluatorPluginV1* table, std::shared_ptr<PluginLibrary> library,
                 const nlohmann::json& config);
  ~PluginInstance();

  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  EvalResult evaluate(std::string_view event_json) const;

  const ArbiterEvaluatorPluginV1* table() const { return table_; }
  // The table's name ("" when NULL) and version ("" when NULL).
  std::string_view name() const;
  std::string_view version() const;
  bool serial() const { return (table_->flags & ARBITER_EVALUATOR_FLAG_SERIAL) != 0; }
  // Null for a built-in.
  const std::shared_ptr<PluginLibrary>& library() const { return library_; }

 private:
  const ArbiterEvaluatorPluginV1* table_;
  std::shared_ptr<PluginLibrary> library_;
  ArbiterEvaluator* handle_ = nullptr;
  mutable std::mutex serial_mutex_;  // used only when serial()
};

}  // namespace arbiter::plugins
