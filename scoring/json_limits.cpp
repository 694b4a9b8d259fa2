#include "scoring/json_limits.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "plugins/builtin/text.hpp"

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

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  if (b1 < lo || b1 > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < 0x80 || b > 0xBF) return 0;
  }
  return len;
}

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

namespace {

// True when the run holds only whole, valid UTF-8 sequences. A run of string
// content never splits a sequence: it ends at an ASCII byte.
bool valid_utf8(std::string_view t) {
  std::size_t i = 0;
  while (i < t.size()) {
#if defined(__SSE2__)
    for (; i + 16 <= t.size(); i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.data() + i));
      if (_mm_movemask_epi8(v) != 0) break;  // a byte >= 0x80 in these 16
    }
#endif
    while (i < t.size() && static_cast<unsigned char>(t[i]) < 0x80) ++i;
    if (i == t.size()) return true;
    const std::size_t len = utf8_sequence_length(t, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A recursive-descent reader that builds the same document as
// nlohmann::json::parse (RFC 8259, strict: the same number types, the last of
// repeated keys, a leading UTF-8 BOM skipped, a NUL after the document taken
// for its end, invalid UTF-8 and lone surrogates refused, non-finite numbers
// refused), and refuses nesting past max_depth as it goes. It exists for
// speed: nlohmann's lexer handles every byte several times, and every body an
// evaluator sees is parsed here. Runs of plain string content are found 16
// bytes at a time and appended whole.
class Reader {
 public:
  Reader(std::string_view t, std::size_t max_depth) : t_(t), max_depth_(max_depth) {}

  bool document(nlohmann::json& out) {
    if (t_.size() >= 3 && t_.substr(0, 3) == "\xEF\xBB\xBF") i_ = 3;
    skip_ws(t_, i_);
    if (!value(out, 0)) return false;
    skip_ws(t_, i_);
    if (i_ == t_.size()) return true;
    // nlohmann takes a NUL byte where a token may start for the end of the
    // input (for C strings) and ignores what follows it. So does this reader;
    // what follows still counts for the depth bound, as the old pre-scan of
    // the whole text counted it.
    return t_[i_] == '\0' && !json_too_deep(t_.substr(i_), max_depth_);
  }

 private:
  bool value(nlohmann::json& out, std::size_t depth) {
    if (i_ >= t_.size()) return false;
    switch (t_[i_]) {
      case '{':
        return object(out, depth + 1);
      case '[':
        return array(out, depth + 1);
      case '"': {
        std::string s;
        if (!string(s)) return false;
        out = std::move(s);
        return true;
      }
      case 't':
        return literal("true", out, true);
      case 'f':
        return literal("false", out, false);
      case 'n':
        return literal("null", out, nullptr);
      default:
        return number(out);
    }
  }

  bool object(nlohmann::json& out, std::size_t depth) {
    if (depth > max_depth_) return false;
    ++i_;
    out = nlohmann::json::object();
    auto& members = *out.get_ptr<nlohmann::json::object_t*>();
    skip_ws(t_, i_);
    if (i_ < t_.size() && t_[i_] == '}') {
      ++i_;
      return true;
    }
    for (;;) {
      if (i_ >= t_.size() || t_[i_] != '"') return false;
      std::string key;
      if (!string(key)) return false;
      skip_ws(t_, i_);
      if (i_ >= t_.size() || t_[i_] != ':') return false;
      ++i_;
      skip_ws(t_, i_);
      // A repeated key: the later value replaces the earlier, as in nlohmann.
      if (!value(members[std::move(key)], depth)) return false;
      skip_ws(t_, i_);
      if (i_ >= t_.size()) return false;
      if (t_[i_] == '}') {
        ++i_;
        return true;
      }
      if (t_[i_] != ',') return false;
      ++i_;
      skip_ws(t_, i_);
    }
  }

  bool array(nlohmann::json& out, std::size_t depth) {
    if (depth > max_depth_) return false;
    ++i_;
    out = nlohmann::json::array();
    auto& items = *out.get_ptr<nlohmann::json::array_t*>();
    skip_ws(t_, i_);
    if (i_ < t_.size() && t_[i_] == ']') {
      ++i_;
      return true;
    }
    for (;;) {
      if (!value(items.emplace_back(), depth)) return false;
      skip_ws(t_, i_);
      if (i_ >= t_.size()) return false;
      if (t_[i_] == ']') {
        ++i_;
        return true;
      }
      if (t_[i_] != ',') return false;
      ++i_;
      skip_ws(t_, i_);
    }
  }

  // At the opening quote.
  bool string(std::string& out) {
    ++i_;
    for (;;) {
      const std::size_t end = next_string_special(t_, i_);
      if (end >= t_.size()) return false;
      const std::string_view run = t_.substr(i_, end - i_);
      if (!valid_utf8(run)) return false;
      out.append(run);
      i_ = end;
      const char c = t_[i_++];
      if (c == '"') return true;
      if (c != '\\') return false;  // a raw control byte
      if (i_ >= t_.size()) return false;
      switch (t_[i_++]) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          std::uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            // A high surrogate must be followed by an escaped low one.
            std::uint32_t low;
            if (t_.size() - i_ < 2 || t_[i_] != '\\' || t_[i_ + 1] != 'u') return false;
            i_ += 2;
            if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          plugins::builtin::append_utf8(out, static_cast<char32_t>(cp));
          break;
        }
        default:
          return false;
      }
    }
  }

  bool hex4(std::uint32_t& cp) {
    if (t_.size() - i_ < 4) return false;
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      const int d = hex_digit(t_[i_++]);
      if (d < 0) return false;
      cp = (cp << 4) | static_cast<std::uint32_t>(d);
    }
    return true;
  }

  template <typename V>
  bool literal(std::string_view word, nlohmann::json& out, V v) {
    if (t_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    out = v;
    return true;
  }

  // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?  An integer is an unsigned
  // (or, negative, a signed) 64-bit number when it fits, else a double, as
  // nlohmann decides; a double that overflows is refused, as nlohmann does.
  bool number(nlohmann::json& out) {
    const std::size_t start = i_;
    auto digits = [&] {
      const std::size_t from = i_;
      while (i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9') ++i_;
      return i_ > from;
    };
    if (i_ < t_.size() && t_[i_] == '-') ++i_;
    if (i_ >= t_.size()) return false;
    if (t_[i_] == '0') {
      ++i_;
    } else if (!digits()) {
      return false;
    }
    bool integral = true;
    if (i_ < t_.size() && t_[i_] == '.') {
      ++i_;
      if (!digits()) return false;
      integral = false;
    }
    if (i_ < t_.size() && (t_[i_] == 'e' || t_[i_] == 'E')) {
      ++i_;
      if (i_ < t_.size() && (t_[i_] == '+' || t_[i_] == '-')) ++i_;
      if (!digits()) return false;
      integral = false;
    }
    const char* first = t_.data() + start;
    const char* last = t_.data() + i_;
    if (integral) {
      if (*first == '-') {
        std::int64_t v;
        if (auto r = std::from_chars(first, last, v); r.ec == std::errc() && r.ptr == last) {
          out = v;
          return true;
        }
      } else {
        std::uint64_t v;
        if (auto r = std::from_chars(first, last, v); r.ec == std::errc() && r.ptr == last) {
          out = v;
          return true;
        }
      }
    }
    double d;
    const auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc::result_out_of_range) {
      // from_chars leaves d unset out of range; strtod gives what nlohmann
      // gets: infinity (refused below) or the underflowed value.
      const std::string token(first, last);
      d = std::strtod(token.c_str(), nullptr);
    } else if (r.ec != std::errc() || r.ptr != last) {
      return false;
    }
    if (!std::isfinite(d)) return false;
    out = d;
    return true;
  }

  std::string_view t_;
  std::size_t i_ = 0;
  std::size_t max_depth_;
};

}  // namespace

nlohmann::json parse_json_bounded(std::string_view text, std::size_t max_depth) {
  nlohmann::json out;
  if (!Reader(text, max_depth).document(out))
    return nlohmann::json(nlohmann::json::value_t::discarded);
  return out;
}

}  // namespace arbiter::scoring
