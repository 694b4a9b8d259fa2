#include "scoring/evaluator_kind.hpp"

#include <algorithm>

#include "plugins/builtin/registry.hpp"
#include "scoring/network_kinds.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

constexpr std::string_view kNetworkKinds[] = {"llm_judge", "http", "semantic_similarity",
                                              "moderation"};

// A built-in or a plugin: the same C ABI, in the binary or dlopen()ed.
class LocalKind final : public EvaluatorKind {
 public:
  LocalKind(std::unique_ptr<plugins::PluginInstance> instance, bool plugin)
      : instance_(std::move(instance)), plugin_(plugin) {}

  plugins::EvalResult evaluate(const json&, const std::string& event_json,
                               std::chrono::milliseconds) const override {
    return instance_->evaluate(event_json);
  }
  bool names_own_scores() const override { return plugin_; }
  bool may_be_slow() const override { return plugin_; }

 private:
  std::unique_ptr<plugins::PluginInstance> instance_;
  bool plugin_;  // a dlopen()ed plugin (else a built-in)
};

std::unique_ptr<EvaluatorKind> make_plugin(const KindSpec& spec) {
  const json& p = spec.params;
  for (const auto& [key, value] : p.items()) {
    if (key != "library" && key != "config") {
      throw EvaluatorSetupError("params." + key + ": unknown param (plugin takes library and config)");
    }
  }
  auto lib = p.find("library");
  if (lib == p.end()) throw EvaluatorSetupError("params.library: required (the plugin's .so path)");
  if (!lib->is_string() || lib->get_ref<const std::string&>().empty()) {
    throw EvaluatorSetupError("params.library: expected a file path");
  }
  json config = json::object();
  if (auto c = p.find("config"); c != p.end() && !c->is_null()) {
    if (!c->is_object()) throw EvaluatorSetupError("params.config: expected a mapping");
    config = *c;
  }
  std::shared_ptr<plugins::PluginLibrary> library;
  try {
    library = plugins::PluginLibrary::open(lib->get<std::string>());
  } catch (const plugins::PluginError& e) {
    throw EvaluatorSetupError(std::string("params.library: ") + e.what());
  }
  try {
    const auto* table = library->table();
    auto instance = std::make_unique<plugins::PluginInstance>(table, std::move(library), config);
    return std::make_unique<LocalKind>(std::move(instance), /*plugin=*/true);
  } catch (const plugins::PluginError& e) {
    // The plugin refused its config (create failed).
    throw EvaluatorSetupError(std::string("params.config: ") + e.what());
  }
}

// A built-in's message names the param ("keywords: expected a list of
// strings") → "params.keywords: ..."; others ("unknown param 'x'") →
// "params: ...".
std::string params_message(std::string_view what) {
  if (what.rfind("params", 0) == 0) return std::string(what);
  std::size_t i = 0;
  auto ident = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.';
  };
  while (i < what.size() && ident(what[i])) ++i;
  if (i > 0 && i < what.size() && what[i] == ':') return "params." + std::string(what);
  return "params: " + std::string(what);
}

}  // namespace

bool is_network_kind(std::string_view kind) {
  return std::find(std::begin(kNetworkKinds), std::end(kNetworkKinds), kind) != std::end(kNetworkKinds);
}

std::vector<std::string> evaluator_kinds() {
  std::vector<std::string> out;
  for (auto k : plugins::builtin::builtin_kinds()) out.emplace_back(k);
  for (auto k : kNetworkKinds) out.emplace_back(k);
  out.emplace_back("plugin");
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<EvaluatorKind> make_evaluator_kind(const KindSpec& spec, const KindEnvironment& env) {
  if (!spec.params.is_object()) throw EvaluatorSetupError("params: expected a mapping");
  if (spec.kind == "plugin") return make_plugin(spec);
  if (is_network_kind(spec.kind)) return make_network_kind(spec, env);
  if (const auto* table = plugins::builtin::find_builtin(spec.kind)) {
    json config = spec.params;
    config["score_name"] = spec.score_name;
    try {
      auto instance = std::make_unique<plugins::PluginInstance>(table, nullptr, config);
      return std::make_unique<LocalKind>(std::move(instance), /*plugin=*/false);
    } catch (const plugins::PluginError& e) {
      throw EvaluatorSetupError(params_message(e.what()));
    }
  }
  std::string known;
  for (const auto& k : evaluator_kinds()) known += (known.empty() ? "" : ", ") + k;
  throw EvaluatorSetupError("kind: unknown kind '" + spec.kind + "' (known: " + known + ")");
}

}  // namespace arbiter::scoring
