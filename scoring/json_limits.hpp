#pragma once
// Depth-bounded JSON parsing, shared by every place that parses bytes from
// outside: API bodies, proxied bodies the request log reads, SSE events,
// manual-log text bodies, bodies shown back by the API and to evaluators.
//
// nlohmann's dump(), comparisons and the code that walks a parsed document
// recurse once per nesting level, so a document of 100k '[' would exhaust a
// thread's stack long after parsing succeeded. parse_json_bounded's reader
// counts the nesting as it reads; json_too_deep is the same bound as a cheap
// scan, for code that parses with nlohmann itself. Thread-safe (pure
// functions).

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace arbiter::scoring {

// Deep enough for any real request (OpenAI's structured-output schemas stop
// far below), shallow enough for every recursive walk on any thread's stack.
inline constexpr std::size_t kMaxJsonDepth = 128;

// The length of the valid UTF-8 sequence starting at bytes[i] (1-4), or 0
// when the bytes there are not valid UTF-8 (overlong, surrogate, truncated):
// RFC 3629's table, which nlohmann's lexer and parse_json_bounded apply.
std::size_t utf8_sequence_length(std::string_view bytes, std::size_t i);

// True when `text` nests arrays/objects deeper than max_depth. Brackets inside
// strings do not count; the text need not be valid JSON.
bool json_too_deep(std::string_view text, std::size_t max_depth = kMaxJsonDepth);

// The parsed document, or a discarded value (is_discarded()) when `text` is
// not JSON or nests deeper than max_depth. Never throws. The document is the
// one nlohmann::json::parse builds (same types, same refusals: see the
// reader in json_limits.cpp and ParseJsonBoundedTest), read 3-7x faster.
nlohmann::json parse_json_bounded(std::string_view text, std::size_t max_depth = kMaxJsonDepth);

// For reading a few members of a large body (the model, the usage) without
// building its document: one scan that parses nothing but the top-level
// object's keys. Returns, for each of `names`, the raw text of that member's
// value (empty when absent; the last one when a key repeats, as a parse
// keeps), to be parsed on its own (parse_json_bounded). nullopt when `text`
// is not an object or its structure is broken — unbalanced brackets or
// strings, a missing ':' or ',' between top-level members, trailing bytes —
// or it nests deeper than max_depth. Inside member values only brackets and
// strings are checked: a body malformed deep inside a member still yields
// the other members (a full parse would refuse it whole).
std::optional<std::vector<std::string_view>> top_level_members(std::string_view text,
                                                                std::span<const std::string_view> names,
                                                                std::size_t max_depth = kMaxJsonDepth);

}  // namespace arbiter::scoring
