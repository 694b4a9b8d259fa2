// The text and metadata kinds over the pure kernels of metrics.hpp: read the
// configured event fields, call the kernel, wrap the value as one score.

#include "plugins/builtin/kernel.hpp"
#include "plugins/builtin/metrics.hpp"
#include "plugins/event_path.hpp"

namespace arbiter::plugins::builtin {

using nlohmann::json;

namespace {

constexpr std::string_view kDefaultOutput = "outputs.content";
constexpr std::string_view kDefaultReference = "feedback.ground_truth";

// A kernel of the output text alone.
class OutputKernel : public Kernel {
 public:
  using Fn = json (*)(const std::string& output);
  OutputKernel(Params& params, Fn fn)
      : Kernel(params.score_name()), output_(params.path("output", kDefaultOutput)), fn_(fn) {}

  json evaluate(const json& event) const override {
    const auto output = event_text(event, output_);
    if (!output) return error_result(missing_field(output_));
    return score(fn_(*output));
  }

 private:
  const std::string output_;
  const Fn fn_;
};

// A kernel comparing the output with a reference text.
class ComparisonKernel : public Kernel {
 public:
  using Fn = double (*)(std::string_view output, std::string_view reference);
  ComparisonKernel(Params& params, Fn fn)
      : Kernel(params.score_name()),
        output_(params.path("output", kDefaultOutput)),
        reference_(params.path("reference", kDefaultReference)),
        fn_(fn) {}

  json evaluate(const json& event) const override {
    const auto output = event_text(event, output_);
    if (!output) return error_result(missing_field(output_));
    const auto reference = event_text(event, reference_);
    if (!reference) return error_result(missing_field(reference_));
    return score(fn_(*output, *reference));
  }

 private:
  const std::string output_;
  const std::string reference_;
  const Fn fn_;
};

class JsonKeyCoverageKernel : public Kernel {
 public:
  explicit JsonKeyCoverageKernel(Params& params)
      : Kernel(params.score_name()),
        output_(params.path("output", kDefaultOutput)),
        required_keys_(params.string_list("required_keys")) {}

  json evaluate(const json& event) const override {
    const auto output = event_text(event, output_);
    if (!output) return error_result(missing_field(output_));
    const std::int64_t covered = json_key_coverage(*output, required_keys_);
    // -1 is the reference's value for "not JSON"; say so next to it.
    return score(covered, covered < 0 ? "output is not JSON" : "");
  }

 private:
  const std::string output_;
  const std::vector<std::string> required_keys_;
};

class KeywordsKernel : public Kernel {
 public:
  explicit KeywordsKernel(Params& params)
      : Kernel(params.score_name()),
        output_(params.path("output", kDefaultOutput)),
        keywords_(params.string_list("keywords")) {}

  json evaluate(const json& event) const override {
    const auto output = event_text(event, output_);
    if (!output) return error_result(missing_field(output_));
    return score(keywords(*output, keywords_));
  }

 private:
  const std::string output_;
  const std::vector<std::string> keywords_;
};

// Reads metadata.completion_tokens and metadata.latency_ms; takes no params.
class TokensPerSecondKernel : public Kernel {
 public:
  explicit TokensPerSecondKernel(Params& params) : Kernel(params.score_name()) {}

  json evaluate(const json& event) const override {
    double tokens = 0;
    double latency = 0;
    if (auto error = number(event, "metadata.completion_tokens", tokens); !error.empty())
      return error_result(error);
    if (auto error = number(event, "metadata.latency_ms", latency); !error.empty())
      return error_result(error);
    return score(tokens_per_second(tokens, latency));
  }

 private:
  static std::string number(const json& event, std::string_view path, double& out) {
    const json* v = find_event_path(event, path);
    if (v == nullptr || v->is_null()) return missing_field(path);
    if (!v->is_number()) return std::string(path) + " is not a number";
    out = v->get<double>();
    return {};
  }
};

}  // namespace

std::unique_ptr<Kernel> make_response_length(Params& params) {
  return std::make_unique<OutputKernel>(
      params, [](const std::string& output) { return json(response_length(output)); });
}

std::unique_ptr<Kernel> make_flesch_reading_ease(Params& params) {
  return std::make_unique<OutputKernel>(
      params, [](const std::string& output) { return json(flesch_reading_ease(output)); });
}

std::unique_ptr<Kernel> make_levenshtein(Params& params) {
  return std::make_unique<ComparisonKernel>(params, &levenshtein);
}

std::unique_ptr<Kernel> make_rouge_l(Params& params) {
  return std::make_unique<ComparisonKernel>(params, &rouge_l);
}

std::unique_ptr<Kernel> make_bleu(Params& params) {
  return std::make_unique<ComparisonKernel>(params, &bleu);
}

std::unique_ptr<Kernel> make_json_key_coverage(Params& params) {
  return std::make_unique<JsonKeyCoverageKernel>(params);
}

std::unique_ptr<Kernel> make_keywords(Params& params) {
  return std::make_unique<KeywordsKernel>(params);
}

std::unique_ptr<Kernel> make_tokens_per_second(Params& params) {
  return std::make_unique<TokensPerSecondKernel>(params);
}

}  // namespace arbiter::plugins::builtin
