#pragma once
// Structured JSON logs, one object per line on stderr.
//
// Thread-safe: any thread may log; each line is written with a single
// write(2) so lines from different threads never interleave. Logging is for
// operators, not for the hot path: per-request lines are debug level.
// Never pass a secret (provider key, arbiter key, webhook secret) as a field.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "gateway/config.hpp"

namespace arbiter::gateway::log {

void set_level(LogLevel level);
bool enabled(LogLevel level);

// A field value: text, integer, number or boolean. Kept small so that this
// header stays light (no JSON library here).
class Value {
 public:
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const std::string& s) : v_(s) {}
  Value(const char* s) : v_(std::string(s ? s : "")) {}
  Value(bool b) : v_(b) {}
  Value(double d) : v_(d) {}
  template <class T, class = std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>>
  Value(T i) : v_(static_cast<std::int64_t>(i)) {}
  const std::variant<std::string, std::int64_t, double, bool>& get() const { return v_; }

 private:
  std::variant<std::string, std::int64_t, double, bool> v_;
};

using Field = std::pair<std::string_view, Value>;

// {"ts":"2026-11-22T05:42:00.123Z","level":"info","msg":"...",<fields>}
void write(LogLevel level, std::string_view msg, std::initializer_list<Field> fields = {});

inline void debug(std::string_view m, std::initializer_list<Field> f = {}) { if (enabled(LogLevel::debug)) write(LogLevel::debug, m, f); }
inline void info(std::string_view m, std::initializer_list<Field> f = {}) { write(LogLevel::info, m, f); }
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) { write(LogLevel::warn, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { write(LogLevel::error, m, f); }

}  // namespace arbiter::gateway::log
