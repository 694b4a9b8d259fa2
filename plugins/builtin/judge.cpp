#include "plugins/builtin/judge.hpp"

#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <vector>

#include "plugins/event_path.hpp"

namespace arbiter::plugins::builtin {

namespace {

constexpr std::string_view kOpen = "{{";
constexpr std::string_view kClose = "}}";
constexpr std::size_t kQuoteBytes = 80;

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}
bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s, bool (*pred)(char)) {
  while (!s.empty() && pred(s.front())) s.remove_prefix(1);
  while (!s.empty() && pred(s.back())) s.remove_suffix(1);
  return s;
}

std::size_t line_of(std::string_view text, std::size_t pos) {
  std::size_t line = 1;
  for (std::size_t i = 0; i < pos && i < text.size(); ++i) line += text[i] == '\n' ? 1 : 0;
  return line;
}

bool continuation_byte(char c) {
  return (static_cast<unsigned char>(c) & 0xC0u) == 0x80u;
}

// The first kQuoteBytes of `s`, cut on a UTF-8 boundary.
std::string head(std::string_view s) {
  if (s.size() <= kQuoteBytes) return std::string(s);
  std::size_t cut = kQuoteBytes;
  while (cut > 0 && continuation_byte(s[cut])) --cut;
  return std::string(s.substr(0, cut)) + "...";
}

// The last kQuoteBytes of `s`, cut on a UTF-8 boundary.
std::string tail(std::string_view s) {
  if (s.size() <= kQuoteBytes) return std::string(s);
  std::size_t from = s.size() - kQuoteBytes;
  while (from < s.size() && continuation_byte(s[from])) ++from;
  return "..." + std::string(s.substr(from));
}

std::string format_number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// Why `path` may not appear in a template, or "".
std::string check_field(std::string_view path) {
  for (char c : path) {
    if (is_ascii_space(c) || c == '{' || c == '}') {
      return "template placeholder \"" + head(path) + "\" is not an event path";
    }
  }
  if (!valid_event_path(path))
    return "template placeholder \"" + head(path) + "\" is not an event path";
  const std::size_t dot = path.find('.');
  const std::string_view root = path.substr(0, dot);
  const bool has_member = dot != std::string_view::npos;
  if (root == "inputs" || root == "outputs" || root == "feedback" || root == "properties" ||
      root == "metadata") {
    if (has_member) return {};
  } else if ((root == "request_id" || root == "user_id" || root == "session_id") && !has_member) {
    return {};
  }
  return "template field \"" + head(path) +
         "\" is not allowed (use a field under inputs., outputs., feedback., properties. or "
         "metadata., or "
         "request_id, user_id, session_id)";
}

// Walks the template: on_text(literal) and on_field(path) in order. Returns
// "" or the first syntax error; stops at the first error from on_field.
template <class OnText, class OnField>
std::string scan(std::string_view tmpl, OnText&& on_text, OnField&& on_field) {
  std::size_t at = 0;
  while (at <= tmpl.size()) {
    const std::size_t open = tmpl.find(kOpen, at);
    if (open == std::string_view::npos) {
      on_text(tmpl.substr(at));
      return {};
    }
    on_text(tmpl.substr(at, open - at));
    const std::size_t close = tmpl.find(kClose, open + kOpen.size());
    if (close == std::string_view::npos) {
      return "unterminated \"{{\" on line " + std::to_string(line_of(tmpl, open)) +
             " of the template";
    }
    const std::string_view path =
        trim(tmpl.substr(open + kOpen.size(), close - open - kOpen.size()), is_blank);
    if (path.empty())
      return "empty placeholder on line " + std::to_string(line_of(tmpl, open)) +
             " of the template";
    if (auto error = check_field(path); !error.empty()) return error;
    if (auto error = on_field(path); !error.empty()) return error;
    at = close + kClose.size();
  }
  return {};
}

struct Marker {
  std::size_t begin = 0;
  std::size_t end = 0;
  double value = 0;
};

// A decimal number: optional '-', digits, optionally '.' and digits.
std::optional<double> parse_rating_number(std::string_view s) {
  std::size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  const std::size_t int_start = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == int_start) return std::nullopt;
  if (i < s.size() && s[i] == '.') {
    const std::size_t frac_start = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == frac_start) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<Marker> find_markers(std::string_view text) {
  std::vector<Marker> out;
  std::size_t at = 0;
  // The first "]]" after an opening is shared by every later opening before
  // it: remember it, so that a run of "[[[[..." costs one scan, not one per
  // bracket (quadratic on a long judge answer).
  std::size_t close = std::string_view::npos;
  for (;;) {
    const std::size_t open = text.find("[[", at);
    if (open == std::string_view::npos) break;
    if (close == std::string_view::npos || close < open + 2) close = text.find("]]", open + 2);
    if (close == std::string_view::npos) break;
    const std::string_view inner = trim(text.substr(open + 2, close - open - 2), is_blank);
    if (auto v = parse_rating_number(inner)) out.push_back({open, close + 2, *v});
    // "[[[4]]]": the marker may start at the next bracket.
    at = open + 1;
  }
  return out;
}

}  // namespace

Rendered render_judge_template(std::string_view tmpl, const nlohmann::json& event) {
  Rendered out;
  out.text.reserve(tmpl.size() + 256);
  out.error = scan(
      tmpl, [&](std::string_view literal) { out.text.append(literal); },
      [&](std::string_view path) -> std::string {
        const nlohmann::json* v = find_event_path(event, path);
        if (v == nullptr) return "template field " + std::string(path) + " is missing";
        if (v->is_null()) return "template field " + std::string(path) + " is null";
        out.text += event_value_text(*v);
        return {};
      });
  out.ok = out.error.empty();
  if (!out.ok) out.text.clear();
  return out;
}

std::string check_judge_template(std::string_view tmpl) {
  return scan(
      tmpl, [](std::string_view) {}, [](std::string_view) { return std::string(); });
}

Rating parse_judge_rating(std::string_view judge_output, double min, double max) {
  Rating out;
  const std::vector<Marker> markers = find_markers(judge_output);
  if (markers.empty()) {
    out.error = "judge output has no [[rating]] marker: \"" + tail(judge_output) + "\"";
    return out;
  }
  const Marker& last = markers.back();
  const std::string_view last_text = judge_output.substr(last.begin, last.end - last.begin);
  for (const Marker& m : markers) {
    if (m.value != last.value) {
      out.error = "judge output has conflicting ratings " +
                  std::string(judge_output.substr(m.begin, m.end - m.begin)) + " and " +
                  std::string(last_text);
      return out;
    }
  }
  if (!(last.value >= min && last.value <= max)) {
    out.error = "judge rating " + std::string(last_text) + " is outside [" + format_number(min) +
                ", " + format_number(max) + "]";
    return out;
  }
  std::string explanation(judge_output.substr(0, last.begin));
  explanation.append(judge_output.substr(last.end));
  out.explanation = std::string(trim(explanation, is_ascii_space));
  out.value = last.value;
  out.ok = true;
  return out;
}

}  // namespace arbiter::plugins::builtin
