#include "plugins/builtin/registry.hpp"

#include <array>

#include "plugins/builtin/kernel.hpp"

namespace arbiter::plugins::builtin {

namespace {

// One table per kind. create differs per kind (it has to know which factory
// to run, and the ABI passes it nothing else); the other functions are shared.
#define ARBITER_BUILTIN_TABLE(kind)                                                            \
  ArbiterEvaluatorPluginV1 {                                                                   \
    ARBITER_EVALUATOR_ABI_VERSION, sizeof(ArbiterEvaluatorPluginV1), 0u, #kind, "builtin",     \
        [](const char* config, size_t len, char** error_out) {                                 \
          return create_kernel(&make_##kind, config, len, error_out);                          \
        },                                                                                     \
        [](ArbiterEvaluator* h, const char* event, size_t len) {                               \
          return evaluate_kernel(h, event, len);                                               \
        },                                                                                     \
        [](char* s) { free_kernel_string(s); }, [](ArbiterEvaluator* h) { destroy_kernel(h); } \
  }

struct Entry {
  std::string_view kind;
  ArbiterEvaluatorPluginV1 table;
  KernelFactory factory;
};

#define ARBITER_BUILTIN(kind) {#kind, ARBITER_BUILTIN_TABLE(kind), &make_##kind}

constexpr std::array<Entry, 10> kBuiltins{{
    ARBITER_BUILTIN(response_length),
    ARBITER_BUILTIN(levenshtein),
    ARBITER_BUILTIN(rouge_l),
    ARBITER_BUILTIN(bleu),
    ARBITER_BUILTIN(flesch_reading_ease),
    ARBITER_BUILTIN(json_key_coverage),
    ARBITER_BUILTIN(tokens_per_second),
    ARBITER_BUILTIN(keywords),
    ARBITER_BUILTIN(json_schema),
    ARBITER_BUILTIN(sql_parse),
}};

#undef ARBITER_BUILTIN

#undef ARBITER_BUILTIN_TABLE

}  // namespace

const ArbiterEvaluatorPluginV1* find_builtin(std::string_view kind) {
  for (const auto& entry : kBuiltins) {
    if (entry.kind == kind) return &entry.table;
  }
  return nullptr;
}

std::unique_ptr<BuiltinEvaluator> BuiltinEvaluator::create(std::string_view kind, const nlohmann::json& config) {
  for (const auto& entry : kBuiltins) {
    if (entry.kind != kind) continue;
    try {
      Params params(config);
      std::unique_ptr<Kernel> kernel = entry.factory(params);
      params.finish();
      return std::unique_ptr<BuiltinEvaluator>(new BuiltinEvaluator(std::move(kernel)));
    } catch (const ConfigError& e) {
      throw BuiltinConfigError(e.what());
    } catch (const std::exception& e) {  // e.g. a schema_file that cannot be read
      throw BuiltinConfigError(e.what());
    }
  }
  return nullptr;
}

BuiltinEvaluator::BuiltinEvaluator(std::unique_ptr<Kernel> kernel) : kernel_(std::move(kernel)) {}
BuiltinEvaluator::~BuiltinEvaluator() = default;

nlohmann::json BuiltinEvaluator::evaluate(const nlohmann::json& event) const {
  // What evaluate_kernel does, minus the text: the same checks and errors.
  try {
    if (!event.is_object()) return error_result("event is not a JSON object");
    return kernel_->evaluate(event);
  } catch (const std::exception& e) {
    return error_result(std::string("built-in evaluator failed: ") + e.what());
  } catch (...) {
    return error_result("built-in evaluator failed: unknown error");
  }
}

std::vector<std::string_view> builtin_kinds() {
  std::vector<std::string_view> out;
  out.reserve(kBuiltins.size());
  for (const auto& entry : kBuiltins) out.push_back(entry.kind);
  return out;
}

}  // namespace arbiter::plugins::builtin
