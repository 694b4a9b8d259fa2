#include "plugins/builtin/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "plugins/builtin/text.hpp"

namespace arbiter::plugins::builtin {
namespace {

constexpr std::size_t kBleuMaxOrder = 4;
constexpr double kFleschBase = 206.835;
constexpr double kFleschSentenceWeight = 1.015;
constexpr double kFleschSyllableWeight = 84.6;

// Length of the longest common subsequence, two rows of the usual table.
template <class T>
std::size_t lcs_length(const std::vector<T>& a, const std::vector<T>& b) {
  const std::vector<T>& shorter = a.size() < b.size() ? a : b;
  const std::vector<T>& longer = a.size() < b.size() ? b : a;
  std::vector<std::size_t> prev(shorter.size() + 1, 0);
  std::vector<std::size_t> cur(shorter.size() + 1, 0);
  for (const T& x : longer) {
    for (std::size_t j = 0; j < shorter.size(); ++j) {
      cur[j + 1] = x == shorter[j] ? prev[j] + 1 : std::max(prev[j + 1], cur[j]);
    }
    std::swap(prev, cur);
  }
  return prev[shorter.size()];
}

// Lower-cased word tokens of each sentence that has any.
std::vector<std::vector<std::string>> sentence_tokens(std::string_view text) {
  std::vector<std::vector<std::string>> out;
  for (const std::string_view sentence : split_sentences(text)) {
    auto tokens = to_lower(word_tokens(sentence));
    if (!tokens.empty()) out.push_back(std::move(tokens));
  }
  return out;
}

// n-gram counts keyed by the tokens joined with ' ' (a whitespace token never
// contains a space, so the key is unambiguous).
std::unordered_map<std::string, std::size_t> ngram_counts(const std::vector<std::string>& tokens,
                                                          std::size_t n) {
  std::unordered_map<std::string, std::size_t> counts;
  if (tokens.size() < n) return counts;
  for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (std::size_t k = 1; k < n; ++k) {
      key += ' ';
      key += tokens[i + k];
    }
    ++counts[key];
  }
  return counts;
}

bool is_ascii_vowel(char c) {
  return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

std::size_t syllables(const std::string& lower_word) {
  std::size_t groups = 0;
  bool in_group = false;
  for (const char c : lower_word) {
    const bool vowel = is_ascii_vowel(c);
    if (vowel && !in_group) ++groups;
    in_group = vowel;
  }
  return std::max<std::size_t>(groups, 1);
}

}  // namespace

std::size_t response_length(std::string_view output) {
  return static_cast<std::size_t>(std::count(output.begin(), output.end(), ' ')) + 1;
}

double levenshtein(std::string_view output, std::string_view reference) {
  const std::u32string a = to_lower(decode_utf8(output));
  const std::u32string b = to_lower(decode_utf8(reference));
  const std::u32string& shorter = a.size() < b.size() ? a : b;
  const std::u32string& longer = a.size() < b.size() ? b : a;
  if (longer.empty()) return 1.0;

  // One row over the shorter string; `diag` carries the previous row's
  // value at j - 1 before it is overwritten.
  std::vector<std::size_t> row(shorter.size() + 1);
  for (std::size_t j = 0; j <= shorter.size(); ++j) row[j] = j;
  for (std::size_t i = 0; i < longer.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i + 1;
    for (std::size_t j = 0; j < shorter.size(); ++j) {
      const std::size_t above = row[j + 1];
      const std::size_t substitute = diag + (longer[i] == shorter[j] ? 0 : 1);
      row[j + 1] = std::min({above + 1, row[j] + 1, substitute});
      diag = above;
    }
  }
  const double distance = static_cast<double>(row[shorter.size()]);
  return 1.0 - distance / static_cast<double>(longer.size());
}

double rouge_l(std::string_view output, std::string_view reference) {
  const auto candidate = sentence_tokens(output);
  const auto ref = sentence_tokens(reference);
  std::size_t candidate_len = 0;
  for (const auto& s : candidate) candidate_len += s.size();
  std::size_t reference_len = 0;
  for (const auto& s : ref) reference_len += s.size();
  if (candidate_len == 0 || reference_len == 0) return 0.0;

  std::size_t hits = 0;
  for (const auto& r : ref) {
    std::size_t best = 0;
    for (const auto& c : candidate) best = std::max(best, lcs_length(r, c));
    hits += best;
  }
  // Several reference sentences may each pick the same output sentence as
  // their best match, which alone could push P above 1 (e.g. a one-sentence
  // answer against a reference that repeats it). No more tokens can match than
  // either side has, so cap there; the reference vectors never reach the cap.
  hits = std::min({hits, candidate_len, reference_len});
  if (hits == 0) return 0.0;

  const double precision = static_cast<double>(hits) / static_cast<double>(candidate_len);
  const double recall = static_cast<double>(hits) / static_cast<double>(reference_len);
  const double beta2 = kRougeBeta * kRougeBeta;
  return (1.0 + beta2) * precision * recall / (recall + beta2 * precision);
}

double bleu(std::string_view output, std::string_view reference) {
  const auto candidate = to_lower(whitespace_tokens(output));
  const auto ref = to_lower(whitespace_tokens(reference));
  if (candidate.empty()) return 0.0;

  double log_sum = 0.0;
  for (std::size_t n = 1; n <= kBleuMaxOrder; ++n) {
    if (candidate.size() < n) return 0.0;
    const auto candidate_counts = ngram_counts(candidate, n);
    const auto reference_counts = ngram_counts(ref, n);
    std::size_t clipped = 0;
    for (const auto& [gram, count] : candidate_counts) {
      const auto it = reference_counts.find(gram);
      if (it != reference_counts.end()) clipped += std::min(count, it->second);
    }
    if (clipped == 0) return 0.0;  // no smoothing: one empty order zeroes the score
    const std::size_t total = candidate.size() - n + 1;
    log_sum += std::log(static_cast<double>(clipped) / static_cast<double>(total));
  }

  const double c = static_cast<double>(candidate.size());
  const double r = static_cast<double>(ref.size());
  const double brevity_penalty = c > r ? 1.0 : std::exp(1.0 - r / c);
  return brevity_penalty * std::exp(log_sum / static_cast<double>(kBleuMaxOrder));
}

double flesch_reading_ease(std::string_view output) {
  const auto words = to_lower(word_tokens(output));
  if (words.empty()) return 0.0;
  std::size_t sentences = 0;
  for (const std::string_view sentence : split_sentences(output)) {
    if (!word_tokens(sentence).empty()) ++sentences;
  }
  std::size_t syllable_count = 0;
  for (const auto& word : words) syllable_count += syllables(word);

  const double w = static_cast<double>(words.size());
  const double s = static_cast<double>(sentences);
  return kFleschBase - kFleschSentenceWeight * (w / s) -
         kFleschSyllableWeight * (static_cast<double>(syllable_count) / w);
}

std::int64_t json_key_coverage(std::string_view output,
                               std::span<const std::string> required_keys) {
  const auto doc = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return -1;

  const std::unordered_set<std::string> wanted(required_keys.begin(), required_keys.end());
  std::unordered_set<std::string> found;
  // Explicit stack: model output can nest deeper than the thread stack allows.
  std::vector<const nlohmann::json*> pending{&doc};
  while (!pending.empty() && found.size() < wanted.size()) {
    const nlohmann::json* node = pending.back();
    pending.pop_back();
    if (node->is_object()) {
      for (const auto& [key, value] : node->items()) {
        if (wanted.contains(key)) found.insert(key);
        if (value.is_structured()) pending.push_back(&value);
      }
    } else if (node->is_array()) {
      for (const auto& value : *node) {
        if (value.is_structured()) pending.push_back(&value);
      }
    }
  }
  return static_cast<std::int64_t>(found.size());
}

bool keywords(std::string_view output, std::span<const std::string> required) {
  const std::string haystack = to_lower(output);
  return std::all_of(required.begin(), required.end(), [&](const std::string& keyword) {
    // UTF-8 is self-synchronising, so a byte match of two lower-cased UTF-8
    // strings is a code point match.
    return haystack.find(to_lower(std::string_view(keyword))) != std::string::npos;
  });
}

double tokens_per_second(double completion_tokens, double latency_ms) {
  if (!(latency_ms > 0.0)) return 0.0;
  return completion_tokens / (latency_ms / 1000.0);
}

}  // namespace arbiter::plugins::builtin
