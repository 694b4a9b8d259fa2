// An LLM judge's answer → parse_judge_rating (plugins/builtin/judge.*), the
// parser the llm_judge evaluator runs on every judge response, with the
// scales a config can give it; and judge prompt templates →
// check_judge_template / render_judge_template against a sample event.
//
// Oracle: an accepted rating lies within [min, max] and is finite; every
// message the evaluator would store serialises as JSON.
//
// Input: byte 0 picks the mode and the scale; the rest is the judge's
// answer (or the template).

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "plugins/builtin/judge.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {
using arbiter::fuzz::check;
namespace builtin = arbiter::plugins::builtin;

constexpr std::array<std::pair<double, double>, 4> kScales = {
    {{1, 5}, {0, 1}, {0, 10}, {-1, 1}}};

const nlohmann::json& event() {
  static const nlohmann::json kEvent = nlohmann::json::parse(R"({
    "request_id": "0b6c2f3e-8f1d-4c1a-9a6e-2f4b1c3d5e7f",
    "user_id": "alice",
    "inputs": {"messages": [{"role": "user", "content": "What is 2+2?"}], "model": "gpt-4o-mini"},
    "outputs": {"content": "4", "choices": [{"message": {"content": "4"}}]},
    "feedback": {"rating": true, "ground_truth": "4"},
    "properties": {"env": "prod"},
    "metadata": {"nested": {"deep": [1, 2, {"x": null}]}}
  })");
  return kEvent;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 0x80) == 0) {
    const auto [min, max] = kScales[data[0] % kScales.size()];
    const builtin::Rating r = builtin::parse_judge_rating(text, min, max);
    if (r.ok) {
      check(std::isfinite(r.value), "non-finite rating accepted");
      check(r.value >= min && r.value <= max, "rating outside the scale accepted");
      check(r.error.empty(), "accepted rating with an error");
    } else {
      check(!r.error.empty(), "refused rating without a message");
    }
    // What the evaluator stores with a run: explanation or error.
    const nlohmann::json stored = {{"explanation", r.explanation}, {"error", r.error}};
    (void)stored.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    const std::string problem = builtin::check_judge_template(text);
    const builtin::Rendered rendered = builtin::render_judge_template(text, event());
    if (problem.empty()) {
      check(rendered.ok || !rendered.error.empty(), "render failed without a message");
    } else {
      check(!rendered.ok, "a template refused by the check rendered");
    }
  }
  return 0;
}
