#pragma once
// Event paths (DESIGN.md §6): dotted references into an evaluator event, as
// used by `needs`, a comparison kind's `output` / `reference` params and an
// LLM judge's `{{ ... }}` placeholders.
//
//   "outputs.content"          member `content` of member `outputs`
//   "inputs.messages.0.content" a segment of digits indexes an array
//   "inputs.messages.-1.role"   a negative index counts from the end
//
// A path has at least one segment and no empty segment. A member name that is
// all digits is still found when the value at that point is an object.
//
// Thread-safety: pure functions.

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace arbiter::plugins {

// Whether `path` is well-formed (non-empty segments, at most 256 bytes).
bool valid_event_path(std::string_view path);

// The value at `path`, or nullptr when any segment is missing (or the path is
// malformed). A JSON null that is present is returned (not nullptr).
const nlohmann::json* find_event_path(const nlohmann::json& event, std::string_view path);

// The value as text for comparison kinds and templates: strings as is,
// null as "", anything else serialised as compact JSON.
std::string event_value_text(const nlohmann::json& value);

}  // namespace arbiter::plugins
