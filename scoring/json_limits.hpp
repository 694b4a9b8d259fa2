#pragma once
// Depth-bounded JSON parsing, shared by every place that parses bytes from
// outside: API bodies, proxied bodies the request log reads, SSE events,
// manual-log text bodies, bodies shown back by the API and to evaluators.
//
// nlohmann's dump(), comparisons and the code that walks a parsed document
// recurse once per nesting level, so a document of 100k '[' would exhaust a
// thread's stack long after parsing succeeded. The nesting is measured with a
// cheap pre-scan before anything is parsed. Thread-safe (pure functions).

#include <cstddef>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace arbiter::scoring {

// Deep enough for any real request (OpenAI's structured-output schemas stop
// far below), shallow enough for every recursive walk on any thread's stack.
inline constexpr std::size_t kMaxJsonDepth = 128;

// True when `text` nests arrays/objects deeper than max_depth. Brackets inside
// strings do not count; the text need not be valid JSON.
bool json_too_deep(std::string_view text, std::size_t max_depth = kMaxJsonDepth);

// The parsed document, or a discarded value (is_discarded()) when `text` is
// not JSON or nests deeper than max_depth. Never throws.
nlohmann::json parse_json_bounded(std::string_view text, std::size_t max_depth = kMaxJsonDepth);

}  // namespace arbiter::scoring
