#include "plugins/builtin/kernel.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include "plugins/event_path.hpp"

namespace arbiter::plugins::builtin {

using nlohmann::json;

namespace {

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// A malloc'd NUL-terminated copy (freed by free_kernel_string), or NULL when
// out of memory.
char* dup_string(std::string_view s) noexcept {
  auto* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Params

Params::Params(json config) : config_(std::move(config)) {
  if (!config_.is_object()) throw ConfigError("params: expected an object");
  const json* name = take("score_name");
  if (name == nullptr || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    throw ConfigError("score_name: expected a non-empty string");
  }
  score_name_ = name->get<std::string>();
}

const json* Params::take(std::string_view key) {
  known_.emplace(key);
  auto it = config_.find(key);
  return it == config_.end() ? nullptr : &*it;
}

std::string Params::path(std::string_view key, std::string_view fallback) {
  const json* v = take(key);
  if (v == nullptr) return std::string(fallback);
  if (!v->is_string() || !valid_event_path(v->get_ref<const std::string&>())) {
    throw ConfigError(std::string(key) + ": expected an event path such as \"outputs.content\"");
  }
  return v->get<std::string>();
}

std::vector<std::string> Params::string_list(std::string_view key) {
  const json* v = take(key);
  if (v == nullptr) throw ConfigError(std::string(key) + ": required (a list of strings)");
  const auto bad = [&] { return ConfigError(std::string(key) + ": expected a list of strings"); };
  if (!v->is_array()) throw bad();
  std::vector<std::string> out;
  out.reserve(v->size());
  for (const auto& item : *v) {
    if (!item.is_string()) throw bad();
    out.push_back(item.get<std::string>());
  }
  if (out.empty()) throw ConfigError(std::string(key) + ": expected a non-empty list of strings");
  return out;
}

std::optional<std::string> Params::optional_string(std::string_view key) {
  const json* v = take(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) throw ConfigError(std::string(key) + ": expected a string");
  return v->get<std::string>();
}

const json* Params::optional(std::string_view key) {
  return take(key);
}

void Params::finish() const {
  for (auto it = config_.begin(); it != config_.end(); ++it) {
    if (known_.count(it.key()) != 0) continue;
    std::string expected;
    for (const auto& k : known_) {
      if (k == "score_name") continue;
      expected += expected.empty() ? k : ", " + k;
    }
    throw ConfigError("unknown param " + in_quotes(it.key()) +
                      (expected.empty() ? std::string(" (this kind takes no params)")
                                        : " (expected " + expected + ")"));
  }
}

// ---------------------------------------------------------------------------
// Results and event fields

json Kernel::score(json value, std::string comment) const {
  json entry{{"name", score_name_}, {"value", std::move(value)}};
  if (!comment.empty()) entry["comment"] = std::move(comment);
  return json{{"scores", json::array({std::move(entry)})}};
}

json error_result(std::string message) {
  return json{{"error", std::move(message)}};
}

std::optional<std::string> event_text(const json& event, std::string_view path) {
  const json* v = find_event_path(event, path);
  if (v == nullptr || v->is_null()) return std::nullopt;
  return event_value_text(*v);
}

std::string missing_field(std::string_view path) {
  return "event has no " + std::string(path);
}

// ---------------------------------------------------------------------------
// ABI bridge

ArbiterEvaluator* create_kernel(KernelFactory factory, const char* config_json, size_t config_len,
                                char** error_out) noexcept {
  const auto fail = [&](const char* message) -> ArbiterEvaluator* {
    if (error_out != nullptr) *error_out = dup_string(message);
    return nullptr;
  };
  try {
    json config =
        json::parse(config_json, config_json + config_len, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded()) return fail("params: not valid JSON");
    Params params(std::move(config));
    std::unique_ptr<Kernel> kernel = factory(params);
    params.finish();
    return reinterpret_cast<ArbiterEvaluator*>(kernel.release());
  } catch (const ConfigError& e) {
    return fail(e.what());
  } catch (const std::exception& e) {
    return fail(e.what());
  } catch (...) {
    return fail("cannot create evaluator: unknown error");
  }
}

char* evaluate_kernel(ArbiterEvaluator* handle, const char* event_json, size_t event_len) noexcept {
  try {
    if (handle == nullptr)
      return dup_string(R"({"error":"built-in evaluator called without a handle"})");
    const auto* kernel = reinterpret_cast<const Kernel*>(handle);
    const json event =
        json::parse(event_json, event_json + event_len, nullptr, /*allow_exceptions=*/false);
    if (event.is_discarded()) return dup_string(error_result("event is not valid JSON").dump());
    if (!event.is_object()) return dup_string(error_result("event is not a JSON object").dump());
    const json result = kernel->evaluate(event);
    // Comments may quote invalid UTF-8 from the output; replace, never throw.
    return dup_string(result.dump(-1, ' ', false, json::error_handler_t::replace));
  } catch (const std::exception& e) {
    try {
      return dup_string(error_result(std::string("built-in evaluator failed: ") + e.what())
                            .dump(-1, ' ', false, json::error_handler_t::replace));
    } catch (...) {
    }
  } catch (...) {
  }
  return nullptr;  // recorded by the runtime as "plugin returned no result"
}

void free_kernel_string(char* s) noexcept {
  std::free(s);
}

void destroy_kernel(ArbiterEvaluator* handle) noexcept {
  delete reinterpret_cast<Kernel*>(handle);
}

}  // namespace arbiter::plugins::builtin
