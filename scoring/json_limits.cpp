#include "scoring/json_limits.hpp"

#include <nlohmann/json.hpp>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace arbiter::scoring {

namespace {

// The first byte at or after i that ends a run of plain string content: a
// quote, a backslash or a control byte (< 0x20); t.size() when there is none.
// Message contents make up most of an LLM call's bodies, so the storage
// thread's scans spend their time here: with SSE2 (every x86-64) it tests 16
// bytes per step.
std::size_t next_string_special(std::string_view t, std::size_t i) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i control_max = _mm_set1_epi8(0x1F);
  for (; i + 16 <= t.size(); i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.data() + i));
    // Unsigned v <= 0x1F exactly when max(v, 0x1F) == 0x1F.
    const __m128i control = _mm_cmpeq_epi8(_mm_max_epu8(v, control_max), control_max);
    const __m128i hit =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)), control);
    if (const int mask = _mm_movemask_epi8(hit); mask != 0) {
      return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    }
  }
#endif
  for (; i < t.size(); ++i) {
    const auto c = static_cast<unsigned char>(t[i]);
    if (c == '"' || c == '\\' || c < 0x20) return i;
  }
  return t.size();
}

}  // namespace

bool json_too_deep(std::string_view text, std::size_t max_depth) {
  std::size_t depth = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      // Through the string: its contents do not nest. A control byte inside
      // it is the parser's to refuse, not this count's.
      for (i = next_string_special(text, i + 1); i < text.size() && text[i] != '"';
           i = next_string_special(text, i + 1)) {
        if (text[i] == '\\') ++i;
      }
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return true;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return false;
}

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void skip_ws(std::string_view t, std::size_t& i) {
  while (i < t.size() && is_ws(t[i])) ++i;
}

// At an opening quote: moves past the closing one. False when unterminated
// or a control byte appears (JSON forbids them raw in strings; the byte after
// a backslash is not checked here).
bool skip_string(std::string_view t, std::size_t& i, bool& escaped) {
  escaped = false;
  ++i;
  for (;;) {
    i = next_string_special(t, i);
    if (i >= t.size()) return false;
    const char c = t[i];
    if (c == '"') {
      ++i;
      return true;
    }
    if (c != '\\') return false;  // a control byte
    escaped = true;
    if (++i == t.size()) return false;
    ++i;  // the escaped byte
  }
}

// At the first byte of a value: moves past it. Nested values are checked for
// balanced brackets and strings only.
bool skip_value(std::string_view t, std::size_t& i, std::size_t depth, std::size_t max_depth) {
  bool escaped = false;
  const char c = t[i];
  if (c == '"') return skip_string(t, i, escaped);
  if (c == '{' || c == '[') {
    std::vector<char> closers;
    closers.push_back(c == '{' ? '}' : ']');
    if (depth + 1 > max_depth) return false;
    ++i;
    while (i < t.size()) {
      const char d = t[i];
      if (d == '"') {
        if (!skip_string(t, i, escaped)) return false;
        continue;
      }
      if (d == '{' || d == '[') {
        if (depth + closers.size() + 1 > max_depth) return false;
        closers.push_back(d == '{' ? '}' : ']');
      } else if (d == '}' || d == ']') {
        if (d != closers.back()) return false;
        closers.pop_back();
        if (closers.empty()) {
          ++i;
          return true;
        }
      }
      ++i;
    }
    return false;
  }
  // A number or a literal: its bytes up to the next delimiter.
  const std::size_t start = i;
  while (i < t.size() && !is_ws(t[i]) && t[i] != ',' && t[i] != '}' && t[i] != ']') {
    const char d = t[i];
    const bool ok = (d >= '0' && d <= '9') || d == '-' || d == '+' || d == '.' || d == 'e' || d == 'E' ||
                    (d >= 'a' && d <= 'z');
    if (!ok) return false;
    ++i;
  }
  return i > start;
}

}  // namespace

std::optional<std::vector<std::string_view>> top_level_members(std::string_view t,
                                                                std::span<const std::string_view> names,
                                                                std::size_t max_depth) {
  std::vector<std::string_view> found(names.size());
  std::size_t i = 0;
  skip_ws(t, i);
  if (i == t.size() || t[i] != '{' || max_depth == 0) return std::nullopt;
  ++i;
  skip_ws(t, i);
  bool first = true;
  for (;;) {
    if (i == t.size()) return std::nullopt;
    if (t[i] == '}') {
      ++i;
      break;
    }
    if (!first) {
      if (t[i] != ',') return std::nullopt;
      ++i;
      skip_ws(t, i);
    }
    first = false;
    if (i == t.size() || t[i] != '"') return std::nullopt;
    const std::size_t key_start = i;
    bool escaped = false;
    if (!skip_string(t, i, escaped)) return std::nullopt;
    std::string_view key = t.substr(key_start + 1, i - key_start - 2);
    std::string decoded;
    if (escaped) {
      // Rare: let the parser unescape the key (and check its escapes).
      const auto k = nlohmann::json::parse(t.substr(key_start, i - key_start), nullptr, false);
      if (!k.is_string()) return std::nullopt;
      decoded = k.get<std::string>();
      key = decoded;
    }
    skip_ws(t, i);
    if (i == t.size() || t[i] != ':') return std::nullopt;
    ++i;
    skip_ws(t, i);
    if (i == t.size()) return std::nullopt;
    const std::size_t value_start = i;
    if (!skip_value(t, i, 1, max_depth)) return std::nullopt;
    for (std::size_t n = 0; n < names.size(); ++n) {
      if (names[n] == key) found[n] = t.substr(value_start, i - value_start);
    }
    skip_ws(t, i);
  }
  skip_ws(t, i);
  if (i != t.size()) return std::nullopt;
  return found;
}

nlohmann::json parse_json_bounded(std::string_view text, std::size_t max_depth) {
  if (json_too_deep(text, max_depth)) return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

}  // namespace arbiter::scoring
