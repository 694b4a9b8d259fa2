#include "scoring/evaluator_kind.hpp"

#include <algorithm>

#include "plugins/builtin/registry.hpp"
#include "scoring/request_record.hpp"
#include "scoring/network_kinds.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

constexpr std::string_view kNetworkKinds[] = {"llm_judge", "http", "semantic_similarity",
                                              "moderation"};

// A dlopen()ed plugin, through the C ABI (the built-ins implement the same
// tables, tested as such, but the runtime calls them directly: BuiltinKind).
class LocalKind final : public EvaluatorKind {
 public:
  explicit LocalKind(std::unique_ptr<plugins::PluginInstance> instance) : instance_(std::move(instance)) {}

  plugins::EvalResult evaluate(const json&, const std::string& event_json,
                               std::chrono::milliseconds) const override {
    return instance_->evaluate(event_json);
  }
  bool names_own_scores() const override { return true; }

 private:
  std::unique_ptr<plugins::PluginInstance> instance_;
};

// A built-in, called directly (plugins::builtin::BuiltinEvaluator): the event
// object in, the result document out, no JSON text on the way.
class BuiltinKind final : public EvaluatorKind {
 public:
  BuiltinKind(std::unique_ptr<plugins::builtin::BuiltinEvaluator> builtin, const json& params)
      : builtin_(std::move(builtin)), reads_inputs_(names_inputs(params)) {}

  plugins::EvalResult evaluate(const json& event, const std::string&, std::chrono::milliseconds) const override {
    plugins::EvalResult result = plugins::parse_evaluator_document(builtin_->evaluate(event));
    // The text round trip replaced invalid UTF-8 (a comment quoting a cut
    // of the output, say); without it, do the same here.
    result.error = sanitize_utf8(result.error);
    for (auto& score : result.scores) {
      score.name = sanitize_utf8(score.name);
      score.comment = sanitize_utf8(score.comment);
      if (score.value.is_string()) score.value = sanitize_utf8(score.value.get_ref<const std::string&>());
    }
    return result;
  }
  bool may_be_slow() const override { return false; }
  bool wants_event_json() const override { return false; }
  bool reads_inputs() const override { return reads_inputs_; }

 private:
  // A built-in reads the event only at paths its params give (or their
  // defaults, none of which is under inputs): any string param naming an
  // inputs path counts, wherever it sits.
  static bool names_inputs(const json& params) {
    if (params.is_string()) {
      const auto& s = params.get_ref<const std::string&>();
      return s == "inputs" || s.rfind("inputs.", 0) == 0 || s.rfind("inputs[", 0) == 0;
    }
    if (params.is_structured()) {
      for (const auto& v : params) {
        if (names_inputs(v)) return true;
      }
    }
    return false;
  }

  std::unique_ptr<plugins::builtin::BuiltinEvaluator> builtin_;
  bool reads_inputs_;
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
    return std::make_unique<LocalKind>(std::move(instance));
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
  if (plugins::builtin::find_builtin(spec.kind) != nullptr) {
    json config = spec.params;
    config["score_name"] = spec.score_name;
    try {
      return std::make_unique<BuiltinKind>(plugins::builtin::BuiltinEvaluator::create(spec.kind, config), spec.params);
    } catch (const plugins::builtin::BuiltinConfigError& e) {
      throw EvaluatorSetupError(params_message(e.what()));
    }
  }
  std::string known;
  for (const auto& k : evaluator_kinds()) known += (known.empty() ? "" : ", ") + k;
  throw EvaluatorSetupError("kind: unknown kind '" + spec.kind + "' (known: " + known + ")");
}

}  // namespace arbiter::scoring
