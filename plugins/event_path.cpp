#include "plugins/event_path.hpp"

#include <charconv>
#include <optional>
#include <nlohmann/json.hpp>

namespace arbiter::plugins {

namespace {

constexpr std::size_t kMaxPathBytes = 256;

// Calls fn(segment) for each dot-separated segment; false on an empty one.
template <class F>
bool for_each_segment(std::string_view path, F&& fn) {
  if (path.empty() || path.size() > kMaxPathBytes) return false;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = path.find('.', start);
    const std::string_view seg = path.substr(start, dot == std::string_view::npos ? path.npos : dot - start);
    if (seg.empty() || !fn(seg)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::optional<long long> parse_index(std::string_view seg) {
  long long v = 0;
  const char* end = seg.data() + seg.size();
  auto [ptr, ec] = std::from_chars(seg.data(), end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

}  // namespace

bool valid_event_path(std::string_view path) {
  return for_each_segment(path, [](std::string_view) { return true; });
}

const nlohmann::json* find_event_path(const nlohmann::json& event, std::string_view path) {
  const nlohmann::json* at = &event;
  const bool ok = for_each_segment(path, [&](std::string_view seg) {
    if (at->is_object()) {
      auto it = at->find(seg);
      if (it == at->end()) return false;
      at = &*it;
      return true;
    }
    if (at->is_array()) {
      auto index = parse_index(seg);
      if (!index) return false;
      const auto size = static_cast<long long>(at->size());
      const long long i = *index < 0 ? size + *index : *index;
      if (i < 0 || i >= size) return false;
      at = &(*at)[static_cast<std::size_t>(i)];
      return true;
    }
    return false;
  });
  return ok ? at : nullptr;
}

std::string event_value_text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return {};
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace arbiter::plugins
