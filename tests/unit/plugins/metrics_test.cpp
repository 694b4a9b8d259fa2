// The built-in scoring kernels against ../shared/reference/evaluators.json
// (loaded at run time, every vector is its own test case) plus edge cases the
// vectors do not cover.

#include "plugins/builtin/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace arbiter::plugins::builtin {
namespace {

using nlohmann::json;

constexpr double kTolerance = 1e-9;  // the reference file's own tolerance
constexpr const char* kVectorsPath = ARBITER_SHARED_DIR "/reference/evaluators.json";

struct Vector {
  std::size_t index = 0;
  json data;
};

// Loaded during test registration so each vector becomes a named test case.
// Failures here must not throw (that would abort test discovery); the
// ReferenceFile tests below report them instead.
std::vector<Vector> load_vectors() {
  std::ifstream in(kVectorsPath);
  if (!in) return {};
  const json doc = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.contains("vectors") || !doc["vectors"].is_array()) return {};
  std::vector<Vector> out;
  for (const auto& v : doc["vectors"]) out.push_back({out.size(), v});
  return out;
}

const std::vector<Vector>& vectors() {
  static const std::vector<Vector> kVectors = load_vectors();
  return kVectors;
}

std::vector<std::string> string_list(const json& params, const char* key) {
  return params.at(key).get<std::vector<std::string>>();
}

// Runs one vector's kernel; the result as JSON so numbers and booleans
// compare the same way. Unknown kinds fail the test rather than pass silently.
json run_kernel(const json& v) {
  const std::string kind = v.at("kind").get<std::string>();
  const std::string output = v.value("output", "");
  const std::string reference = v.value("ground_truth", "");
  const json params = v.value("params", json::object());
  if (kind == "response_length") return response_length(output);
  if (kind == "levenshtein") return levenshtein(output, reference);
  if (kind == "rouge_l") return rouge_l(output, reference);
  if (kind == "bleu") return bleu(output, reference);
  if (kind == "flesch_reading_ease") return flesch_reading_ease(output);
  if (kind == "json_key_coverage") {
    return json_key_coverage(output, string_list(params, "required_keys"));
  }
  if (kind == "keywords") return keywords(output, string_list(params, "keywords"));
  if (kind == "tokens_per_second") {
    const json& metadata = v.at("metadata");
    return tokens_per_second(metadata.at("completion_tokens").get<double>(),
                             metadata.at("latency_ms").get<double>());
  }
  ADD_FAILURE() << "no kernel for kind '" << kind << "'";
  return nullptr;
}

TEST(ReferenceFile, LoadsAndHasVectors) {
  std::ifstream in(kVectorsPath);
  ASSERT_TRUE(in) << "cannot open " << kVectorsPath;
  const json doc = json::parse(in, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << kVectorsPath << " is not JSON";
  ASSERT_TRUE(doc.contains("vectors"));
  EXPECT_FALSE(vectors().empty());
  EXPECT_EQ(vectors().size(), doc["vectors"].size());
}

class ReferenceVector : public ::testing::TestWithParam<Vector> {};

TEST_P(ReferenceVector, Reproduces) {
  const json& v = GetParam().data;
  const json& expected = v.at("expected");
  const json got = run_kernel(v);
  SCOPED_TRACE(v.dump());
  if (expected.is_boolean()) {
    ASSERT_TRUE(got.is_boolean()) << got;
    EXPECT_EQ(got.get<bool>(), expected.get<bool>());
  } else {
    ASSERT_TRUE(expected.is_number()) << expected;
    ASSERT_TRUE(got.is_number()) << got;
    EXPECT_NEAR(got.get<double>(), expected.get<double>(), kTolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Evaluators, ReferenceVector, ::testing::ValuesIn(vectors()),
                         [](const ::testing::TestParamInfo<Vector>& param_info) {
                           return std::to_string(param_info.param.index) + "_" +
                                  param_info.param.data.value("kind", std::string("unknown"));
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ReferenceVector);

// ---------------------------------------------------------------------------
// response_length

TEST(ResponseLength, CountsSpaceSeparatedFields) {
  EXPECT_EQ(response_length(""), 1u);
  EXPECT_EQ(response_length("one"), 1u);
  EXPECT_EQ(response_length("one two"), 2u);
  // The reference form is split(" "): runs of spaces give empty fields, and
  // other whitespace does not separate.
  EXPECT_EQ(response_length("a  b"), 3u);
  EXPECT_EQ(response_length("a\nb"), 1u);
  EXPECT_EQ(response_length("ça va très bien"), 4u);
}

// ---------------------------------------------------------------------------
// levenshtein

TEST(Levenshtein, EdgeCases) {
  EXPECT_DOUBLE_EQ(levenshtein("", ""), 1.0);
  EXPECT_DOUBLE_EQ(levenshtein("abc", ""), 0.0);
  EXPECT_DOUBLE_EQ(levenshtein("", "abc"), 0.0);
  EXPECT_DOUBLE_EQ(levenshtein("same", "same"), 1.0);
  EXPECT_DOUBLE_EQ(levenshtein("abc", "xyz"), 0.0);
}

TEST(Levenshtein, IsCaseInsensitive) {
  EXPECT_DOUBLE_EQ(levenshtein("HELLO", "hello"), 1.0);
  EXPECT_DOUBLE_EQ(levenshtein("ÉCOLE", "école"), 1.0);
  EXPECT_DOUBLE_EQ(levenshtein("МОСКВА", "москва"), 1.0);
  EXPECT_DOUBLE_EQ(levenshtein("ΟΔΟΣ", "οδος"), 1.0);  // final sigma
}

TEST(Levenshtein, CountsCodePointsNotBytes) {
  // One substitution out of four code points (é is two bytes).
  EXPECT_DOUBLE_EQ(levenshtein("café", "cafe"), 0.75);
  // Astral-plane characters are one code point each.
  EXPECT_DOUBLE_EQ(levenshtein("a😀", "a😃"), 0.5);
}

TEST(Levenshtein, IsSymmetric) {
  EXPECT_DOUBLE_EQ(levenshtein("kitten", "sitting"), levenshtein("sitting", "kitten"));
  EXPECT_DOUBLE_EQ(levenshtein("flaw", "lawn"), 0.5);
}

// ---------------------------------------------------------------------------
// rouge_l

TEST(RougeL, EdgeCases) {
  EXPECT_DOUBLE_EQ(rouge_l("", ""), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l("some words", ""), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l("...", "!!!"), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l("A b c. D e!", "a B C. d E!"), 1.0);
}

TEST(RougeL, WeightsRecallWithBeta) {
  // L = 2, P = 2/2, R = 2/4: F = 2.44 * 0.5 / (0.5 + 1.44) = 1.22 / 1.94.
  EXPECT_NEAR(rouge_l("a b", "a b c d"), 1.22 / 1.94, 1e-12);
  // Swapping the sides swaps P and R, which beta makes asymmetric.
  EXPECT_NEAR(rouge_l("a b c d", "a b"), 2.44 * 0.5 / (1.0 + 1.44 * 0.5), 1e-12);
}

TEST(RougeL, BestOutputSentencePerReferenceSentence) {
  // Reference sentence 2 matches output sentence 2 fully; the order of the
  // sentences does not matter at summary level.
  EXPECT_DOUBLE_EQ(rouge_l("x y. a b c.", "a b c. x y."), 1.0);
}

TEST(RougeL, StaysWithinUnitRange) {
  // Every reference sentence picks the same output sentence; without the cap
  // P would be 3.
  const double score = rouge_l("the cat", "The cat. The cat. The cat.");
  EXPECT_GT(score, 0.0);
  EXPECT_LE(score, 1.0);
}

TEST(RougeL, UnicodeWordsMatchAcrossCase) {
  EXPECT_DOUBLE_EQ(rouge_l("Привет мир", "привет МИР"), 1.0);
  EXPECT_DOUBLE_EQ(rouge_l("ΚΑΛΗΜΕΡΑ ΚΟΣΜΕ", "καλημερα κοσμε"), 1.0);
}

// ---------------------------------------------------------------------------
// bleu

TEST(Bleu, EdgeCases) {
  EXPECT_DOUBLE_EQ(bleu("", ""), 0.0);
  EXPECT_DOUBLE_EQ(bleu("", "a b c d"), 0.0);
  EXPECT_DOUBLE_EQ(bleu("a b c d", ""), 0.0);
  // Fewer than four tokens: no 4-grams, and no smoothing.
  EXPECT_DOUBLE_EQ(bleu("a b c", "a b c"), 0.0);
  EXPECT_DOUBLE_EQ(bleu("A B C D", "a b c d"), 1.0);
}

TEST(Bleu, AppliesBrevityPenaltyToShortOutput) {
  // Output is a prefix of the reference: every precision is 1, so the score
  // is the brevity penalty exp(1 - r / c).
  EXPECT_NEAR(bleu("a b c d", "a b c d e f g h"), std::exp(1.0 - 8.0 / 4.0), 1e-12);
  // A longer output is not penalised by BP (precision pays instead).
  EXPECT_NEAR(
      bleu("a b c d e", "a b c d"),
      std::exp((std::log(4.0 / 5) + std::log(3.0 / 4) + std::log(2.0 / 3) + std::log(1.0 / 2)) / 4),
      1e-12);
}

TEST(Bleu, ClipsRepeatedNgrams) {
  // "the" x7 against a reference with two: p1 = 2/7, and no higher-order
  // n-gram matches, so the score is 0 without smoothing.
  EXPECT_DOUBLE_EQ(bleu("the the the the the the the", "the cat is on the mat"), 0.0);
}

TEST(Bleu, KeepsPunctuationOnTokens) {
  EXPECT_DOUBLE_EQ(bleu("one two three four.", "one two three four"), 0.0);
}

// ---------------------------------------------------------------------------
// flesch_reading_ease

TEST(Flesch, EdgeCases) {
  EXPECT_DOUBLE_EQ(flesch_reading_ease(""), 0.0);
  EXPECT_DOUBLE_EQ(flesch_reading_ease("   ...  !!"), 0.0);
}

TEST(Flesch, CountsVowelGroups) {
  // One sentence, one word each time: 206.835 - 1.015 - 84.6 * syllables.
  const auto one_word = [](double syllables) { return 206.835 - 1.015 - 84.6 * syllables; };
  EXPECT_NEAR(flesch_reading_ease("cat"), one_word(1), 1e-9);
  EXPECT_NEAR(flesch_reading_ease("beautiful"), one_word(3), 1e-9);  // eau-i-u
  EXPECT_NEAR(flesch_reading_ease("rhythm"), one_word(1), 1e-9);     // at least one
  EXPECT_NEAR(flesch_reading_ease("make"), one_word(2), 1e-9);       // no silent-e rule
}

TEST(Flesch, CountsSentences) {
  // Two sentences of two one-syllable words: 206.835 - 1.015 * 2 - 84.6.
  EXPECT_NEAR(flesch_reading_ease("Cats sit. Dogs run."), 206.835 - 2.03 - 84.6, 1e-9);
  EXPECT_NEAR(flesch_reading_ease("Cats sit\nDogs run"), 206.835 - 2.03 - 84.6, 1e-9);
}

// ---------------------------------------------------------------------------
// json_key_coverage

TEST(JsonKeyCoverage, CountsDistinctRequiredKeysAnywhere) {
  const std::vector<std::string> keys{"a", "b", "c"};
  EXPECT_EQ(json_key_coverage(R"({"a": 1, "b": null})", keys), 2);
  EXPECT_EQ(json_key_coverage(R"({"x": {"y": [{"c": true}]}})", keys), 1);
  EXPECT_EQ(json_key_coverage(R"([{"a": 1}, {"a": 2}])", keys), 1);
  EXPECT_EQ(json_key_coverage(R"({"A": 1})", keys), 0);  // keys are case-sensitive
  // Values are not keys.
  EXPECT_EQ(json_key_coverage(R"({"x": "a", "y": ["b"]})", keys), 0);
  EXPECT_EQ(json_key_coverage("42", keys), 0);
  EXPECT_EQ(json_key_coverage("{}", {}), 0);
  const std::vector<std::string> duplicated{"a", "a"};
  EXPECT_EQ(json_key_coverage(R"({"a": 1})", duplicated), 1);
}

TEST(JsonKeyCoverage, NotJsonIsMinusOne) {
  const std::vector<std::string> keys{"a"};
  EXPECT_EQ(json_key_coverage("", keys), -1);
  EXPECT_EQ(json_key_coverage("{\"a\": 1", keys), -1);
  EXPECT_EQ(json_key_coverage("```json\n{\"a\": 1}\n```", keys), -1);
  EXPECT_EQ(json_key_coverage("{\"a\": 1} trailing", keys), -1);
}

TEST(JsonKeyCoverage, DeepNestingDoesNotOverflow) {
  const std::size_t depth = 100000;
  std::string deep(depth, '[');
  deep += R"({"a": 1})";
  deep += std::string(depth, ']');
  const std::vector<std::string> keys{"a"};
  EXPECT_EQ(json_key_coverage(deep, keys), 1);
}

// ---------------------------------------------------------------------------
// keywords

TEST(Keywords, AllRequiredCaseInsensitive) {
  const std::vector<std::string> none;
  EXPECT_TRUE(keywords("anything", none));
  EXPECT_TRUE(keywords("", none));
  const std::vector<std::string> one{"Paris"};
  EXPECT_TRUE(keywords("the capital is PARIS.", one));
  EXPECT_FALSE(keywords("the capital is Lyon.", one));
  const std::vector<std::string> unicode{"ÉTÉ", "москва"};
  EXPECT_TRUE(keywords("L'été à МОСКВА", unicode));
  EXPECT_FALSE(keywords("L'ete a Moskva", unicode));
  // Substring match, as the reference: "cat" is found in "concatenate".
  const std::vector<std::string> cat{"cat"};
  EXPECT_TRUE(keywords("concatenate", cat));
}

// ---------------------------------------------------------------------------
// tokens_per_second

TEST(TokensPerSecond, Throughput) {
  EXPECT_DOUBLE_EQ(tokens_per_second(100, 2000), 50.0);
  EXPECT_DOUBLE_EQ(tokens_per_second(0, 2000), 0.0);
  EXPECT_DOUBLE_EQ(tokens_per_second(10, 0), 0.0);
  EXPECT_DOUBLE_EQ(tokens_per_second(10, -5), 0.0);
  EXPECT_DOUBLE_EQ(tokens_per_second(10, std::nan("")), 0.0);
}

// ---------------------------------------------------------------------------
// Large inputs: a sanity check that the kernels finish and stay in range, not
// a timing assertion (performance lives in bench/).

TEST(LargeInput, KernelsCompleteAndStayInRange) {
  std::string a;
  std::string b;
  for (int i = 0; i < 100; ++i) {
    a += "The quick brown fox jumps over the lazy dog number " + std::to_string(i) + ". ";
    b += "A quick brown fox jumped over a lazy dog, number " + std::to_string(i * 7 % 100) + ". ";
  }
  ASSERT_GT(a.size(), 5000u);
  for (const double score : {levenshtein(a, b), rouge_l(a, b), bleu(a, b)}) {
    EXPECT_GE(score, 0.0);
    EXPECT_LE(score, 1.0);
  }
  EXPECT_DOUBLE_EQ(levenshtein(a, a), 1.0);
  EXPECT_DOUBLE_EQ(rouge_l(a, a), 1.0);
  EXPECT_DOUBLE_EQ(bleu(a, a), 1.0);
  EXPECT_EQ(response_length(a), 1101u);  // 11 spaces per sentence
  EXPECT_TRUE(std::isfinite(flesch_reading_ease(a)));
}

}  // namespace
}  // namespace arbiter::plugins::builtin
