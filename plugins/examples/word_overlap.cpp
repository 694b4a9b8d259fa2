// word_overlap: an example evaluator plugin for arbiter (see README.md here).
//
// Built as libexample_plugin.so and loaded with
//   evaluators:
//     - name: overlap
//       kind: plugin
//       params:
//         library: build/release/plugins/libexample_plugin.so
//         config: { required_words: [paris] }
//
// Scores per event:
//   word_overlap       fraction of the distinct words of the reference that
//                      also occur in the output (number in [0, 1]); omitted
//                      when the reference has no words
//   mentions_required  whether every word of `required_words` occurs in the
//                      output (boolean); only when required_words is set
//
// Config (all optional, unknown keys are refused at start-up):
//   output          event path of the text to score (default outputs.content)
//   reference       event path of the reference text (default feedback.ground_truth)
//   required_words  list of words
//
// Words are runs of ASCII letters and digits plus any non-ASCII byte, and
// ASCII letters are lower-cased: enough for an example, not Unicode-correct
// (the built-in kinds are).
//
// It is written in C++ but exports only the C ABI of evaluator_abi.h: no
// exception leaves a function below, and every string it returns comes from
// malloc and goes back through free_string. The handle is immutable after
// create, so evaluate may run concurrently and the table sets no SERIAL flag.

#include <cstdlib>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/evaluator_abi.h"

namespace {

using nlohmann::json;

struct Config {
  std::string output = "outputs.content";
  std::string reference = "feedback.ground_truth";
  bool has_required = false;
  std::set<std::string> required_words;
};

char* copy_string(const std::string& s) {
  auto* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

std::set<std::string> words_of(std::string_view text) {
  std::set<std::string> out;
  std::string word;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c >= 0x80) {
      word += ch;
    } else if (c >= 'A' && c <= 'Z') {
      word += static_cast<char>(c - 'A' + 'a');
    } else if (!word.empty()) {
      out.insert(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) out.insert(std::move(word));
  return out;
}

// A dotted path ("feedback.ground_truth", "inputs.messages.0.content"); NULL
// when missing.
const json* find_path(const json& root, std::string_view path) {
  const json* at = &root;
  while (!path.empty()) {
    const std::size_t dot = path.find('.');
    const std::string key(path.substr(0, dot));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    if (at->is_object()) {
      auto it = at->find(key);
      if (it == at->end()) return nullptr;
      at = &*it;
    } else if (at->is_array()) {
      char* end = nullptr;
      const unsigned long index = std::strtoul(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || index >= at->size()) return nullptr;
      at = &(*at)[index];
    } else {
      return nullptr;
    }
  }
  return at;
}

// Throws std::runtime_error with a message for the operator.
Config parse_config(const json& cfg) {
  if (!cfg.is_object()) throw std::runtime_error("config must be an object");
  Config out;
  for (auto it = cfg.begin(); it != cfg.end(); ++it) {
    const std::string& key = it.key();
    if (key == "output" || key == "reference") {
      if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
        throw std::runtime_error(key + ": expected an event path string");
      }
      (key == "output" ? out.output : out.reference) = it->get<std::string>();
    } else if (key == "required_words") {
      if (!it->is_array()) throw std::runtime_error("required_words: expected a list of strings");
      for (const auto& w : *it) {
        if (!w.is_string()) throw std::runtime_error("required_words: expected a list of strings");
        for (auto& word : words_of(w.get<std::string>())) out.required_words.insert(word);
      }
      out.has_required = true;
    } else {
      throw std::runtime_error("unknown config key \"" + key +
                               "\" (expected output, reference, required_words)");
    }
  }
  return out;
}

json error(const std::string& message) {
  return json{{"error", message}};
}

// The string at `path`, or an error result in `problem`.
const std::string* text_at(const json& event, const std::string& path, json& problem) {
  const json* v = find_path(event, path);
  if (v == nullptr || v->is_null()) {
    problem = error("event has no " + path);
    return nullptr;
  }
  if (!v->is_string()) {
    problem = error(path + " is not a string");
    return nullptr;
  }
  return &v->get_ref<const std::string&>();
}

json evaluate_event(const Config& config, const json& event) {
  json problem;
  const std::string* output = text_at(event, config.output, problem);
  if (output == nullptr) return problem;
  const std::string* reference = text_at(event, config.reference, problem);
  if (reference == nullptr) return problem;
  const std::set<std::string> output_words = words_of(*output);
  const std::set<std::string> reference_words = words_of(*reference);

  json scores = json::object();
  if (!reference_words.empty()) {
    std::size_t found = 0;
    for (const auto& w : reference_words) found += output_words.count(w);
    scores["word_overlap"] =
        static_cast<double>(found) / static_cast<double>(reference_words.size());
  }
  if (config.has_required) {
    bool all = true;
    for (const auto& w : config.required_words) all = all && output_words.count(w) != 0;
    scores["mentions_required"] = all;
  }
  return json{{"scores", scores}};
}

ArbiterEvaluator* word_overlap_create(const char* config_json, size_t config_len,
                                      char** error_out) {
  try {
    const json cfg = json::parse(config_json, config_json + config_len);
    auto* config = new Config(parse_config(cfg));
    return reinterpret_cast<ArbiterEvaluator*>(config);
  } catch (const std::exception& e) {
    if (error_out != nullptr) *error_out = copy_string(std::string("word_overlap: ") + e.what());
  } catch (...) {
    if (error_out != nullptr) *error_out = copy_string("word_overlap: unknown error");
  }
  return nullptr;
}

char* word_overlap_evaluate(ArbiterEvaluator* handle, const char* event_json, size_t event_len) {
  try {
    const auto* config = reinterpret_cast<const Config*>(handle);
    const json event = json::parse(event_json, event_json + event_len, nullptr, false);
    if (event.is_discarded()) return copy_string(error("event is not valid JSON").dump());
    return copy_string(evaluate_event(*config, event).dump());
  } catch (...) {
    return nullptr;  // the gateway records "plugin returned no result"
  }
}

void word_overlap_free(char* s) {
  std::free(s);
}

void word_overlap_destroy(ArbiterEvaluator* handle) {
  delete reinterpret_cast<Config*>(handle);
}

const ArbiterEvaluatorPluginV1 kTable = {
    ARBITER_EVALUATOR_ABI_VERSION,
    sizeof(ArbiterEvaluatorPluginV1),
    0u,  // flags: evaluate is safe to call concurrently
    "word_overlap",
    "1.0.0",
    word_overlap_create,
    word_overlap_evaluate,
    word_overlap_free,
    word_overlap_destroy,
};

}  // namespace

extern "C" ARBITER_EVALUATOR_EXPORT const ArbiterEvaluatorPluginV1* arbiter_evaluator_plugin(void) {
  return &kTable;
}
