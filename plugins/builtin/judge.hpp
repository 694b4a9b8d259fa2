#pragma once
// LLM-as-judge helpers (DESIGN.md §6, kind llm_judge): rendering a prompt
// template against an evaluator event, and reading the judge's rating from its
// answer. The network call itself is the runtime's (OutboundHttp).
//
// Template syntax: `{{ path }}` with optional spaces or tabs inside the braces,
// where `path` is an event path (event_path.hpp) under one of the roots
// inputs., outputs., feedback., properties., metadata., or exactly one of the
// top-level fields request_id, user_id, session_id. There is no escape for a
// literal "{{"; a lone "}}" is plain text.
//
// Thread-safety: pure functions.

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace arbiter::plugins::builtin {

struct Rendered {
  bool ok = false;
  std::string text;
  std::string error;
};

// Replaces every placeholder with event_value_text(find_event_path(event,
// path)): strings as is, other values as compact JSON. A missing field, or one
// that is JSON null, is an error naming it ("template field feedback.context is
// missing"), never an empty substitution. Malformed templates (unterminated
// "{{", empty placeholder, bad path, a root that is not allowed) are errors too.
Rendered render_judge_template(std::string_view tmpl, const nlohmann::json& event);

// Checks a template at start-up: well-formed and allowed roots only. Returns ""
// or an error message.
std::string check_judge_template(std::string_view tmpl);

struct Rating {
  bool ok = false;
  double value = 0;
  std::string explanation;
  std::string error;
};

// The judge's answer. A marker is "[[" n "]]" where n is an integer or a
// decimal (optional '-', digits, optional '.' and digits), optionally padded
// with spaces inside the brackets ("[[ 4 ]]"); anything else in double
// brackets ("[[rating]]", "[[]]", "[[4/5]]") is not a marker and is ignored.
// The LAST marker is the rating. It must lie within [min, max]. Several
// markers with different values are a conflict (!ok); repeats of one value are
// fine. The explanation is the text with the last marker removed, trimmed of
// surrounding whitespace. No marker, out of range or a conflict → !ok with a
// message quoting (truncated, on a UTF-8 boundary) what was seen.
Rating parse_judge_rating(std::string_view judge_output, double min = 1, double max = 5);

}  // namespace arbiter::plugins::builtin
