#pragma once
// Sanitizer builds (the `asan` and `tsan` presets, docs/reliability.md
// "Sanitizers"): whether this is one, and the check that makes a sanitizer
// report in a child process (the real `arbiter`, `fake_upstream`) fail the test
// that started it. A child's report only reaches its stderr; its exit status is
// often not looked at (a test that expects a failed start accepts any non-zero
// code, and LeakSanitizer's 23 is non-zero too), so tests scan that stderr.

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace arbiter::testing {

// tests/CMakeLists.txt defines ARBITER_SANITIZED ("address" or "thread") when
// CMAKE_CXX_FLAGS hold -fsanitize=address or -fsanitize=thread.
#ifdef ARBITER_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// The first sanitizer report in `text`: from the start of the line holding the
// first marker (AddressSanitizer, LeakSanitizer and ThreadSanitizer error
// headers, UBSan's "runtime error:"), at most `max_bytes`. Empty when there is
// none. Thread-safe (pure function).
std::string find_sanitizer_report(std::string_view text, std::size_t max_bytes = 16 * 1024);

// find_sanitizer_report() over a file's contents; empty when the file is
// missing or unreadable (a child that never wrote to stderr has no report).
std::string sanitizer_report_in(const std::filesystem::path& file, std::size_t max_bytes = 16 * 1024);

}  // namespace arbiter::testing
