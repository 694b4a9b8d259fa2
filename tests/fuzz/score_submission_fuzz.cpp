// Score submission bodies → the real validators behind
// POST /v1/request/{id}/score, POST /v1/request/{id}/feedback,
// POST /v1/scores and POST /v1/score-configs (score_api.cpp), through the
// API's own JSON parsing (ApiCall::json_body, depth-limited). Accepted typed
// scores are checked against score configs, stored (encode/decode) and
// serialised as the API answers them.
//
// Input: byte 0 picks the route; the rest is the request body.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "scoring/score.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {
using namespace arbiter::scoring;
using arbiter::fuzz::check;

const std::vector<ScoreConfig>& configs() {
  static const std::vector<ScoreConfig> kConfigs = [] {
    std::vector<ScoreConfig> out;
    for (const char* body : {
             R"({"name": "accuracy", "data_type": "NUMERIC", "min_value": 0, "max_value": 100})",
             R"({"name": "tone", "data_type": "CATEGORICAL",
                 "categories": [{"label": "good", "value": 1}, {"label": "bad", "value": 0}]})",
             R"({"name": "helpful", "data_type": "BOOLEAN"})"}) {
      auto c = parse_score_config(nlohmann::json::parse(body));
      if (!c) arbiter::fuzz::fail("seed score config rejected");
      out.push_back(std::move(*c));
    }
    return out;
  }();
  return kConfigs;
}

void typed(const nlohmann::json& body) {
  auto parsed = parse_typed_score(body);
  if (!parsed) {
    check(parsed.error().code == ErrorCode::kInvalidArgument, "typed score rejected without a 400");
    return;
  }
  Score score = std::move(*parsed);
  check(validate_score_name(score.name).ok(), "accepted a score with an invalid name");
  check(!score.value || std::isfinite(*score.value), "accepted a non-finite value");
  for (const auto& config : configs()) {
    if (config.name != score.name) continue;
    Score copy = score;
    if (apply_config(copy, config).ok()) score = std::move(copy);
  }
  score.project = "fuzz";
  const std::string stored = encode_score(score);
  auto back = decode_score(stored);
  check(back.ok(), "a stored score does not decode");
  check(back->name == score.name && back->label == score.label && back->comment == score.comment,
        "score changed in storage");
  arbiter::fuzz::dump_like_api(to_json(*back));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto route = data[0] % 4;
  auto body = arbiter::fuzz::api_json_body(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  if (!body) return 0;
  switch (route) {
    case 0: {
      auto scores = parse_helicone_scores(*body);
      if (scores) {
        for (const auto& s : *scores) {
          check(validate_score_name(s.name).ok(), "accepted a Helicone score with an invalid name");
          check(std::isfinite(s.value), "accepted a non-finite Helicone score");
        }
      }
      break;
    }
    case 1: {
      auto feedback = parse_feedback(*body);
      if (feedback) arbiter::fuzz::dump_like_api(feedback->fields);
      break;
    }
    case 2:
      typed(*body);
      break;
    default: {
      auto config = parse_score_config(*body);
      if (config) {
        check(!config->min_value || !config->max_value || *config->min_value <= *config->max_value,
              "accepted min_value > max_value");
        auto back = decode_config(encode_config(*config));
        check(back.ok(), "a stored score config does not decode");
        arbiter::fuzz::dump_like_api(to_json(*back));
      }
      break;
    }
  }
  return 0;
}
