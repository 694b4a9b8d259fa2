#pragma once
// Scoring kernels of the built-in evaluator kinds (DESIGN.md §6, issue 5):
// pure functions of strings and numbers, with no I/O, config or event parsing.
// The evaluator runtime extracts `output` / `reference` from the event and
// calls these; each definition below is the one that reproduces every vector in
// ../shared/reference/evaluators.json within 1e-9 (tests/unit/plugins).
//
// Text is UTF-8 (ill-formed bytes count as U+FFFD); "lower-cased" means
// text.hpp's Unicode full lower-casing; "word tokens" are text.hpp's `\w+`
// runs and "whitespace tokens" its str.split() pieces.
//
// Thread-safety: every function is pure and may be called concurrently.
// Cost: levenshtein and rouge_l are O(n·m) time in code points / tokens and
// O(min(n, m)) extra memory; the runtime bounds input size, not these kernels.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace arbiter::plugins::builtin {

// Number of fields when the output is split on the ASCII space U+0020 (Python
// `len(text.split(" "))`): spaces + 1. So "" is 1, "a  b" is 3, and a newline
// does not separate words. The reference's "" -> 1 fixes this form.
std::size_t response_length(std::string_view output);

// Normalised Levenshtein similarity of the lower-cased strings over Unicode
// code points: 1 - distance / max(len_a, len_b), unit costs for insert, delete
// and substitute. Two empty strings are identical: 1.0. Range [0, 1].
double levenshtein(std::string_view output, std::string_view reference);

inline constexpr double kRougeBeta = 1.2;

// Summary-level ROUGE-L F-measure, beta 1.2 (recall weighted), over sentences:
//   both texts are split with split_sentences; each sentence becomes its
//   lower-cased word tokens (sentences without tokens are dropped);
//   L = sum over reference sentences r of max over output sentences c of
//       LCS(r, c)   (the best-matching output sentence per reference sentence,
//                    not Lin's union-LCS: the vectors require the max form);
//   L is capped at min(|output tokens|, |reference tokens|) (our addition:
//       the max form can otherwise exceed 1 when several reference sentences
//       pick the same output sentence; no reference vector reaches the cap);
//   P = L / |output tokens|, R = L / |reference tokens|,
//   F = (1 + b^2) P R / (R + b^2 P).
// 0.0 when either side has no tokens or L is 0. Range [0, 1].
double rouge_l(std::string_view output, std::string_view reference);

// Sentence-level BLEU-4 of the output against one reference, no smoothing:
//   lower-cased whitespace tokens (punctuation stays attached: "france." is not
//   "france"); p_n = clipped n-gram matches / output n-grams for n = 1..4;
//   if any p_n is 0 (including an output shorter than 4 tokens) the score is 0;
//   otherwise BP * exp(sum(log p_n) / 4) with the brevity penalty
//   BP = 1 if c > r else exp(1 - r / c), c and r the output and reference token
//   counts. Range [0, 1].
double bleu(std::string_view output, std::string_view reference);

// Flesch reading ease:
//   206.835 - 1.015 * (words / sentences) - 84.6 * (syllables / words)
// words: word tokens of the whole text; sentences: split_sentences pieces that
// contain at least one word token; syllables per word: maximal runs of the
// ASCII vowels a e i o u in the lower-cased word ('y' is not a vowel; no
// silent-e rule), at least 1. 0.0 for text with no words. Not clamped: short,
// simple text scores above 100 and dense text below 0, as in the reference.
double flesch_reading_ease(std::string_view output);

// Number of distinct `required_keys` that occur as a member name of at least
// one JSON object anywhere in the output parsed as JSON (at any depth, in any
// array; the value does not matter, null included). -1 when the output is not
// a JSON document. A count, not a fraction: the reference scores 4 of 4 keys
// as 4.
std::int64_t json_key_coverage(std::string_view output, std::span<const std::string> required_keys);

// True when every keyword occurs in the output as a substring, both sides
// lower-cased. An empty keyword list is vacuously true; an empty keyword
// always matches.
bool keywords(std::string_view output, std::span<const std::string> required);

// completion_tokens / (latency_ms / 1000): throughput over the whole request
// latency. Time to first token is not subtracted: the reference vectors carry
// no TTFT, so they cannot tell the two forms apart, and total latency is what
// every record has (streamed or not). 0.0 when latency_ms is not positive.
double tokens_per_second(double completion_tokens, double latency_ms);

}  // namespace arbiter::plugins::builtin
