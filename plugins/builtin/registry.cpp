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
};

constexpr std::array<Entry, 10> kBuiltins{{
    {"response_length", ARBITER_BUILTIN_TABLE(response_length)},
    {"levenshtein", ARBITER_BUILTIN_TABLE(levenshtein)},
    {"rouge_l", ARBITER_BUILTIN_TABLE(rouge_l)},
    {"bleu", ARBITER_BUILTIN_TABLE(bleu)},
    {"flesch_reading_ease", ARBITER_BUILTIN_TABLE(flesch_reading_ease)},
    {"json_key_coverage", ARBITER_BUILTIN_TABLE(json_key_coverage)},
    {"tokens_per_second", ARBITER_BUILTIN_TABLE(tokens_per_second)},
    {"keywords", ARBITER_BUILTIN_TABLE(keywords)},
    {"json_schema", ARBITER_BUILTIN_TABLE(json_schema)},
    {"sql_parse", ARBITER_BUILTIN_TABLE(sql_parse)},
}};

#undef ARBITER_BUILTIN_TABLE

}  // namespace

const ArbiterEvaluatorPluginV1* find_builtin(std::string_view kind) {
  for (const auto& entry : kBuiltins) {
    if (entry.kind == kind) return &entry.table;
  }
  return nullptr;
}

std::vector<std::string_view> builtin_kinds() {
  std::vector<std::string_view> out;
  out.reserve(kBuiltins.size());
  for (const auto& entry : kBuiltins) out.push_back(entry.kind);
  return out;
}

}  // namespace arbiter::plugins::builtin
