#pragma once
// A cheap guard against deeply nested JSON. nlohmann parses and destroys
// iteratively, but copies, compares and dump() recurse once per level: a
// megabyte of "[" is half a million frames, enough to overflow any thread's
// stack. Text that nests deeper than a limit is refused (API bodies → 400) or
// kept as text (stored bodies), never turned into a value.
//
// Thread-safety: a pure function.

#include <cstddef>
#include <string_view>

namespace arbiter::scoring {

// Deep enough for any real request, response or event (OpenAI tool schemas
// rarely pass 10 levels); shallow enough that recursion over it is harmless.
inline constexpr std::size_t kMaxJsonDepth = 64;

// True when `text` opens more than `max_depth` arrays/objects at once. A
// lexical scan that skips strings; it does not validate the JSON.
bool json_nesting_exceeds(std::string_view text, std::size_t max_depth = kMaxJsonDepth);

}  // namespace arbiter::scoring
