#include "plugins/plugin_loader.hpp"

#include <dlfcn.h>

#include <cstddef>
#include <set>
#include <utility>

#include "plugins/builtin/text.hpp"

namespace arbiter::plugins {

namespace {

using nlohmann::json;

constexpr std::size_t kQuoteBytes = 120;

// At most kQuoteBytes of `text` for an error message, cut on a UTF-8 boundary
// and made valid UTF-8 (a plugin may return any bytes; the message ends up in
// JSON records and API answers).
std::string quote(std::string_view text) {
  const bool cut_short = text.size() > kQuoteBytes;
  if (cut_short) {
    std::size_t cut = kQuoteBytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0u) == 0x80u) --cut;
    text = text.substr(0, cut);
  }
  std::string out = builtin::encode_utf8(builtin::decode_utf8(text));
  if (cut_short) out += "...";
  return out;
}

const char* type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::discarded:
      return "invalid";
    default:
      return "a number";
  }
}

bool valid_value(const json& value) {
  return value.is_number() || value.is_boolean() || value.is_string();
}

EvalResult failure(std::string message, bool retryable = false) {
  EvalResult r;
  r.ok = false;
  r.retryable = retryable;
  r.error = std::move(message);
  return r;
}

std::string score_label(const std::string& name) {
  return "score \"" + quote(name) + "\"";
}

// Checks one list entry; on success appends it to `out` and returns "".
std::string take_list_entry(const json& entry, std::size_t index, std::vector<EvalScore>& out) {
  const std::string where = "scores[" + std::to_string(index) + "]";
  if (!entry.is_object()) return where + " must be an object, got " + type_name(entry);
  for (auto it = entry.begin(); it != entry.end(); ++it) {
    const std::string& key = it.key();
    if (key != "name" && key != "value" && key != "comment" && key != "data_type") {
      return where + " has an unknown member \"" + quote(key) +
             "\" (expected name, value, comment, data_type)";
    }
  }
  auto name_it = entry.find("name");
  if (name_it == entry.end() || !name_it->is_string()) return where + ".name must be a string";
  const auto& name = name_it->get_ref<const std::string&>();
  if (name.empty()) return where + ".name is empty";
  auto value_it = entry.find("value");
  if (value_it == entry.end()) return score_label(name) + " has no value";
  if (!valid_value(*value_it)) {
    return score_label(name) + ": value must be a number, boolean or string, got " +
           type_name(*value_it);
  }
  std::string comment;
  if (auto it = entry.find("comment"); it != entry.end() && !it->is_null()) {
    if (!it->is_string()) return score_label(name) + ": comment must be a string";
    comment = it->get<std::string>();
  }
  if (auto it = entry.find("data_type"); it != entry.end() && !it->is_null()) {
    if (!it->is_string()) return score_label(name) + ": data_type must be a string";
    const auto& type = it->get_ref<const std::string&>();
    bool matches = false;
    if (type == "NUMERIC") {
      matches = value_it->is_number();
    } else if (type == "BOOLEAN") {
      matches = value_it->is_boolean();
    } else if (type == "CATEGORICAL") {
      matches = value_it->is_string();
    } else {
      return score_label(name) + ": data_type must be NUMERIC, BOOLEAN or CATEGORICAL, got \"" +
             quote(type) + "\"";
    }
    if (!matches)
      return score_label(name) + ": value is " + type_name(*value_it) + " but data_type is " + type;
  }
  out.push_back({name, *value_it, std::move(comment)});
  return {};
}

}  // namespace

EvalResult parse_evaluator_result(std::string_view json_text, std::string_view /*default_name*/) {
  json doc = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded())
    return failure("evaluator result is not valid JSON: \"" + quote(json_text) + "\"");
  return parse_evaluator_document(std::move(doc));
}

EvalResult parse_evaluator_document(json&& doc) {
  if (!doc.is_object())
    return failure(std::string("evaluator result must be a JSON object, got ") + type_name(doc));

  if (auto it = doc.find("error"); it != doc.end() && !it->is_null()) {
    std::string message = it->is_string() ? it->get<std::string>() : it->dump();
    if (message.empty()) message = "evaluator reported an error without a message";
    bool retryable = false;
    if (auto r = doc.find("retryable"); r != doc.end() && r->is_boolean())
      retryable = r->get<bool>();
    return failure(std::move(message), retryable);
  }

  auto scores_it = doc.find("scores");
  if (scores_it == doc.end())
    return failure("evaluator result has neither \"scores\" nor \"error\"");

  EvalResult result;
  std::set<std::string, std::less<>> seen;
  if (scores_it->is_object()) {
    for (auto it = scores_it->begin(); it != scores_it->end(); ++it) {
      const std::string& name = it.key();
      if (name.empty()) return failure("evaluator result has a score with an empty name");
      if (!valid_value(*it)) {
        return failure(score_label(name) + ": value must be a number, boolean or string, got " +
                       type_name(*it));
      }
      result.scores.push_back({name, std::move(*it), {}});
    }
    // Object members are unique by construction.
  } else if (scores_it->is_array()) {
    std::size_t index = 0;
    for (const auto& entry : *scores_it) {
      if (auto error = take_list_entry(entry, index++, result.scores); !error.empty())
        return failure(error);
      if (!seen.insert(result.scores.back().name).second) {
        return failure(score_label(result.scores.back().name) + " appears more than once");
      }
    }
  } else {
    return failure(std::string("evaluator result \"scores\" must be an object or a list, got ") +
                   type_name(*scores_it));
  }
  result.ok = true;
  return result;
}

std::string check_plugin_table(const ArbiterEvaluatorPluginV1* table) {
  if (table == nullptr) return "the entry point returned a NULL table";
  if (table->abi_version != ARBITER_EVALUATOR_ABI_VERSION) {
    return "ABI version " + std::to_string(table->abi_version) + ", gateway supports " +
           std::to_string(ARBITER_EVALUATOR_ABI_VERSION);
  }
  if (table->struct_size < sizeof(ArbiterEvaluatorPluginV1)) {
    return "table struct_size " + std::to_string(table->struct_size) + " is smaller than " +
           std::to_string(sizeof(ArbiterEvaluatorPluginV1)) + " (ArbiterEvaluatorPluginV1)";
  }
  if (table->create == nullptr) return "the table's create function is NULL";
  if (table->evaluate == nullptr) return "the table's evaluate function is NULL";
  if (table->free_string == nullptr) return "the table's free_string function is NULL";
  if (table->destroy == nullptr) return "the table's destroy function is NULL";
  return {};
}

// ---------------------------------------------------------------------------
// PluginLibrary

std::shared_ptr<PluginLibrary> PluginLibrary::open(const std::string& path) {
  const std::string where = "plugin " + path + ": ";
  if (path.empty()) throw PluginError("plugin library path is empty");
  // dlerror() is thread-local in glibc, so concurrent opens do not mix up
  // messages. Clear any stale message first.
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw PluginError(where + "cannot load: " + (why != nullptr ? why : "unknown dlopen error"));
  }
  // From here on the handle must be closed on every failure.
  struct Closer {
    void* h;
    ~Closer() {
      if (h != nullptr) dlclose(h);
    }
  } closer{handle};

  dlerror();
  void* symbol = dlsym(handle, ARBITER_EVALUATOR_PLUGIN_SYMBOL);
  if (symbol == nullptr) {
    const char* why = dlerror();
    throw PluginError(where + "does not export the symbol \"" ARBITER_EVALUATOR_PLUGIN_SYMBOL "\"" +
                      (why != nullptr ? std::string(" (") + why + ")" : std::string()));
  }
  // POSIX guarantees a data pointer from dlsym converts to a function pointer.
  auto entry = reinterpret_cast<ArbiterEvaluatorPluginEntry>(symbol);
  const ArbiterEvaluatorPluginV1* table = entry();
  if (auto reason = check_plugin_table(table); !reason.empty()) throw PluginError(where + reason);

  closer.h = nullptr;
  return std::shared_ptr<PluginLibrary>(new PluginLibrary(handle, table, path));
}

PluginLibrary::PluginLibrary(void* handle, const ArbiterEvaluatorPluginV1* table, std::string path)
    : handle_(handle), table_(table), path_(std::move(path)) {}

PluginLibrary::~PluginLibrary() {
  if (handle_ != nullptr) dlclose(handle_);
}

// ---------------------------------------------------------------------------
// PluginInstance

PluginInstance::PluginInstance(const ArbiterEvaluatorPluginV1* table,
                               std::shared_ptr<PluginLibrary> library, const nlohmann::json& config)
    : table_(table), library_(std::move(library)) {
  const std::string where = library_ ? "plugin " + library_->path() + ": " : std::string();
  if (auto reason = check_plugin_table(table_); !reason.empty()) throw PluginError(where + reason);
  // Invalid UTF-8 in the config (it comes from YAML) is replaced, not thrown.
  const std::string text = config.dump(-1, ' ', false, json::error_handler_t::replace);
  char* error = nullptr;
  handle_ = table_->create(text.c_str(), text.size(), &error);
  if (handle_ == nullptr) {
    std::string message =
        error != nullptr ? std::string(error) : std::string("create failed without a message");
    table_->free_string(error);
    throw PluginError(where + message);
  }
  if (error != nullptr)
    table_->free_string(error);  // a message alongside success: not ours to keep
}

PluginInstance::~PluginInstance() {
  table_->destroy(handle_);
}

std::string_view PluginInstance::name() const {
  return table_->name != nullptr ? table_->name : "";
}
std::string_view PluginInstance::version() const {
  return table_->version != nullptr ? table_->version : "";
}

EvalResult PluginInstance::evaluate(std::string_view event_json) const {
  // The ABI passes NUL-terminated strings; a view need not be one.
  const std::string event(event_json);
  char* out = nullptr;
  if (serial()) {
    std::lock_guard lock(serial_mutex_);
    out = table_->evaluate(handle_, event.c_str(), event.size());
  } else {
    out = table_->evaluate(handle_, event.c_str(), event.size());
  }
  if (out == nullptr) return failure("plugin returned no result");
  struct Freer {
    const ArbiterEvaluatorPluginV1* t;
    char* s;
    ~Freer() { t->free_string(s); }
  } freer{table_, out};
  return parse_evaluator_result(out);
}

}  // namespace arbiter::plugins
