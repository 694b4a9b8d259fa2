// The shipped judge templates in conf/judges: each is well-formed, renders
// against an event carrying every field they use, explains a 1-5 scale and
// ends with the [[rating]] instruction.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "plugins/builtin/judge.hpp"

namespace arbiter::plugins::builtin {
namespace {

using nlohmann::json;
using ::testing::EndsWith;
using ::testing::HasSubstr;

const std::filesystem::path kJudgesDir =
    std::filesystem::path(ARBITER_SOURCE_DIR) / "conf" / "judges";

const char* const kTemplates[] = {
    "answer_faithfulness.txt",
    "answer_relevance.txt",
    "context_relevance.txt",
    "format_adherence.txt",
    "tool_usage.txt",
    "intent_identification.txt",
    "toxicity.txt",
    "coherence.txt",
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const json kSampleEvent = json::parse(R"({
  "inputs": {
    "model": "gpt-4o-mini",
    "messages": [
      {"role": "system", "content": "Answer in one sentence."},
      {"role": "user", "content": "When was the Eiffel Tower completed?"}
    ],
    "tools": [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
  },
  "outputs": {
    "content": "The Eiffel Tower was completed in 1889.",
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"Eiffel\"}"}}]
  },
  "feedback": {"context": "The Eiffel Tower was built from 1887 to 1889 for the World's Fair.", "ground_truth": "1889"},
  "properties": {"env": "test"},
  "metadata": {"model": "gpt-4o-mini", "status": 200, "latency_ms": 420},
  "user_id": "u-1", "session_id": "s-1", "request_id": "00000000-0000-4000-8000-000000000001"
})");

class JudgeTemplate : public ::testing::TestWithParam<const char*> {};

TEST_P(JudgeTemplate, IsWellFormedRendersAndEndsWithTheRatingInstruction) {
  const std::filesystem::path path = kJudgesDir / GetParam();
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  const std::string tmpl = read_file(path);
  ASSERT_FALSE(tmpl.empty());
  EXPECT_EQ(check_judge_template(tmpl), "");

  const Rendered r = render_judge_template(tmpl, kSampleEvent);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text.find("{{"), std::string::npos) << "unrendered placeholder";
  // Every template shows the judge something from the request or response.
  EXPECT_TRUE(tmpl.find("{{ inputs.") != std::string::npos ||
              tmpl.find("{{ outputs.") != std::string::npos);

  // The 1-5 scale, every level explained.
  for (const char* level : {"\n1 - ", "\n2 - ", "\n3 - ", "\n4 - ", "\n5 - "}) {
    EXPECT_THAT(r.text, HasSubstr(level)) << GetParam();
  }
  // Ends with the instruction (trailing newline aside).
  std::string text = r.text;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  EXPECT_THAT(text, EndsWith("answer with the rating as [[rating]], e.g. [[4]]."));
}

TEST_P(JudgeTemplate, AMissingFieldIsAnErrorRun) {
  const std::string tmpl = read_file(kJudgesDir / GetParam());
  // A response without content and no feedback posted yet.
  json event = kSampleEvent;
  event["outputs"] = json::object();
  event["feedback"] = json::object();
  const Rendered r = render_judge_template(tmpl, event);
  EXPECT_FALSE(r.ok) << GetParam();
  EXPECT_THAT(r.error,
              ::testing::MatchesRegex("template field (outputs|feedback)\\.[a-z_]+ is missing"))
      << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Shipped, JudgeTemplate, ::testing::ValuesIn(kTemplates),
                         [](const ::testing::TestParamInfo<const char*>& param_info) {
                           std::string name = param_info.param;
                           return name.substr(0, name.find('.'));
                         });

TEST(JudgeTemplates, NoUnlistedTemplateFiles) {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kJudgesDir)) {
    if (entry.path().extension() != ".txt") continue;
    ++count;
    EXPECT_NE(
        std::find(std::begin(kTemplates), std::end(kTemplates), entry.path().filename().string()),
        std::end(kTemplates))
        << entry.path() << " is not covered by this test";
  }
  EXPECT_EQ(count, std::size(kTemplates));
}

}  // namespace
}  // namespace arbiter::plugins::builtin
