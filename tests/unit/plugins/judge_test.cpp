// LLM-judge template rendering and rating parsing.

#include "plugins/builtin/judge.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace arbiter::plugins::builtin {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const json kEvent = json::parse(R"({
  "inputs": {"model": "gpt-4o", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
  "outputs": {"content": "Paris.", "tool_calls": null},
  "feedback": {"ground_truth": "Paris", "score": 3},
  "properties": {"env": "prod"},
  "metadata": {"latency_ms": 120, "model": "gpt-4o"},
  "request_id": "7f0c1c9e-4c7a-4b84-9a53-111111111111",
  "user_id": "u-1",
  "session_id": null
})");

// ---------------------------------------------------------------------------
// render_judge_template

TEST(RenderJudgeTemplate, SubstitutesWithOrWithoutSpaces) {
  const Rendered r = render_judge_template(
      "Q: {{inputs.messages.-1.content}}\nA: {{ outputs.content }}\nRef: "
      "{{\tfeedback.ground_truth\t}}",
      kEvent);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text, "Q: What is the capital of France?\nA: Paris.\nRef: Paris");
}

TEST(RenderJudgeTemplate, NonStringValuesAreCompactJson) {
  const Rendered r = render_judge_template(
      "{{ inputs.messages }} | {{ feedback.score }} | {{ metadata.latency_ms }}", kEvent);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text, R"([{"content":"What is the capital of France?","role":"user"}] | 3 | 120)");
}

TEST(RenderJudgeTemplate, TopLevelIdsAndPropertiesAreAllowed) {
  const Rendered r =
      render_judge_template("{{request_id}} {{ user_id }} {{ properties.env }}", kEvent);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text, "7f0c1c9e-4c7a-4b84-9a53-111111111111 u-1 prod");
}

TEST(RenderJudgeTemplate, TextWithoutPlaceholdersAndLoneBracesIsKept) {
  const Rendered r = render_judge_template("Answer as {\"a\": 1} }} or { x }. Ünïcødé ✓", kEvent);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text, "Answer as {\"a\": 1} }} or { x }. Ünïcødé ✓");
  EXPECT_TRUE(render_judge_template("", kEvent).ok);
}

TEST(RenderJudgeTemplate, MissingOrNullFieldIsAnErrorNamingIt) {
  Rendered r = render_judge_template("Context: {{ feedback.context }}", kEvent);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "template field feedback.context is missing");
  EXPECT_TRUE(r.text.empty());

  r = render_judge_template("{{ outputs.tool_calls }}", kEvent);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "template field outputs.tool_calls is null");

  r = render_judge_template("{{ session_id }}", kEvent);
  EXPECT_EQ(r.error, "template field session_id is null");

  r = render_judge_template("{{ inputs.messages.5.content }}", kEvent);
  EXPECT_EQ(r.error, "template field inputs.messages.5.content is missing");
}

TEST(RenderJudgeTemplate, MalformedTemplatesAreErrors) {
  EXPECT_THAT(render_judge_template("line one\nA: {{ outputs.content", kEvent).error,
              HasSubstr("unterminated \"{{\" on line 2"));
  EXPECT_THAT(render_judge_template("{{}}", kEvent).error,
              HasSubstr("empty placeholder on line 1"));
  EXPECT_THAT(render_judge_template("{{   }}", kEvent).error, HasSubstr("empty placeholder"));
  EXPECT_THAT(render_judge_template("{{ outputs.content {{ inputs.model }}", kEvent).error,
              HasSubstr("is not an event path"));
  EXPECT_THAT(render_judge_template("{{ outputs..content }}", kEvent).error,
              HasSubstr("is not an event path"));
  EXPECT_THAT(render_judge_template("{{ outputs content }}", kEvent).error,
              HasSubstr("is not an event path"));
}

TEST(RenderJudgeTemplate, OnlyAllowedRoots) {
  for (const char* tmpl : {"{{ secrets.key }}", "{{ outputs }}", "{{ request_id.x }}",
                           "{{ content }}", "{{ Outputs.content }}"}) {
    const Rendered r = render_judge_template(tmpl, kEvent);
    EXPECT_FALSE(r.ok) << tmpl;
    EXPECT_THAT(r.error, HasSubstr("is not allowed")) << tmpl;
  }
}

// ---------------------------------------------------------------------------
// check_judge_template

TEST(CheckJudgeTemplate, AcceptsWellFormedTemplatesWhateverTheEvent) {
  EXPECT_EQ(
      check_judge_template("{{ outputs.content }} {{ feedback.not_there_yet }} {{ user_id }}"), "");
  EXPECT_EQ(check_judge_template("no placeholders"), "");
}

TEST(CheckJudgeTemplate, RejectsWhatRenderingWould) {
  EXPECT_THAT(check_judge_template("{{ outputs.content"), HasSubstr("unterminated"));
  EXPECT_THAT(check_judge_template("{{ env.HOME }}"), HasSubstr("is not allowed"));
  EXPECT_THAT(check_judge_template("{{}}"), HasSubstr("empty placeholder"));
}

// ---------------------------------------------------------------------------
// parse_judge_rating

TEST(ParseJudgeRating, ReadsTheMarkerAndKeepsTheExplanation) {
  const Rating r = parse_judge_rating("The answer is correct and concise.\n\nRating: [[4]]");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.value, 4);
  EXPECT_EQ(r.explanation, "The answer is correct and concise.\n\nRating:");
}

TEST(ParseJudgeRating, DecimalAndPaddedMarkers) {
  Rating r = parse_judge_rating("[[3.5]] because it is partly grounded");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.value, 3.5);
  EXPECT_EQ(r.explanation, "because it is partly grounded");

  r = parse_judge_rating("Fine. [[ 4 ]]");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.value, 4);
  EXPECT_EQ(r.explanation, "Fine.");

  r = parse_judge_rating("[[[5]]]");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.value, 5);
  EXPECT_EQ(r.explanation, "[]");
}

TEST(ParseJudgeRating, PlaceholderMarkersAreIgnored) {
  const Rating r = parse_judge_rating("I must answer as [[rating]], e.g. [[]]. My verdict: [[2]]");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.value, 2);
  EXPECT_EQ(r.explanation, "I must answer as [[rating]], e.g. [[]]. My verdict:");
}

TEST(ParseJudgeRating, RepeatedSameValueIsFine) {
  const Rating r = parse_judge_rating("Score [[4]]. Final answer: [[4.0]]");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.value, 4);
  EXPECT_EQ(r.explanation, "Score [[4]]. Final answer:");
}

TEST(ParseJudgeRating, UnicodeTextAroundTheMarker) {
  const Rating r = parse_judge_rating("  Réponse fidèle au contexte — très bien 👍 [[5]]\n");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.value, 5);
  EXPECT_EQ(r.explanation, "Réponse fidèle au contexte — très bien 👍");
}

TEST(ParseJudgeRating, MalformedOutputs) {
  struct Case {
    const char* output;
    const char* message_part;
  };
  const Case cases[] = {
      {"", "no [[rating]] marker"},
      {"[[]]", "no [[rating]] marker: \"[[]]\""},
      {"rating: 4", "no [[rating]] marker: \"rating: 4\""},
      {"[[four]]", "no [[rating]] marker"},
      {"[[4/5]]", "no [[rating]] marker"},
      {"[[4.]]", "no [[rating]] marker"},
      {"[[1e1]]", "no [[rating]] marker"},
      {"[4]", "no [[rating]] marker"},
      {"[[4", "no [[rating]] marker"},
      {"[[6]]", "judge rating [[6]] is outside [1, 5]"},
      {"[[0]]", "is outside [1, 5]"},
      {"[[-2]]", "is outside [1, 5]"},
      {"[[5.5]]", "is outside [1, 5]"},
      {"first [[2]] then [[5]]", "conflicting ratings [[2]] and [[5]]"},
  };
  for (const auto& c : cases) {
    const Rating r = parse_judge_rating(c.output);
    EXPECT_FALSE(r.ok) << c.output;
    EXPECT_THAT(r.error, HasSubstr(c.message_part)) << c.output;
  }
}

TEST(ParseJudgeRating, CustomRange) {
  Rating r = parse_judge_rating("[[0]]", 0, 10);
  EXPECT_TRUE(r.ok) << r.error;
  r = parse_judge_rating("[[10]]", 0, 10);
  EXPECT_TRUE(r.ok) << r.error;
  r = parse_judge_rating("[[11]]", 0, 10);
  EXPECT_THAT(r.error, HasSubstr("outside [0, 10]"));
  r = parse_judge_rating("[[-1]]", -1, 1);
  EXPECT_TRUE(r.ok) << r.error;
}

TEST(ParseJudgeRating, LongOutputWithoutMarkerIsQuotedTruncatedOnACharacterBoundary) {
  std::string output;
  for (int i = 0; i < 200; ++i) output += "é";
  output += " no verdict";
  const Rating r = parse_judge_rating(output);
  ASSERT_FALSE(r.ok);
  EXPECT_LT(r.error.size(), 160u);
  EXPECT_THAT(r.error, HasSubstr("no verdict\""));
  EXPECT_THAT(r.error, HasSubstr("\"..."));
  // Still valid UTF-8: serialising throws on a cut sequence.
  EXPECT_NO_THROW((void)json(r.error).dump());
}

// Markers are found in one pass even after long runs of brackets (the
// closing "]]" is looked up once per run, not once per bracket); which
// marker counts must not change.
TEST(JudgeRating, LongBracketRunsKeepTheSameMarkers) {
  const std::string run(20000, '[');
  Rating r = parse_judge_rating(run + "3]] and again [[3]]");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.value, 3);
  r = parse_judge_rating("[[2]] " + run + "4]]");
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("conflicting ratings [[2]] and [[4]]"));
  r = parse_judge_rating(run + "x]] [[5]]" + run);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.value, 5);
}

}  // namespace
}  // namespace arbiter::plugins::builtin
