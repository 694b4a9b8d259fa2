#include "tests/support/sanitizer.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <iterator>

namespace arbiter::testing {

std::string find_sanitizer_report(std::string_view text, std::size_t max_bytes) {
  // Each report starts with one of these (compiler-rt's report headers), so
  // the earliest one is where the first report begins. "runtime error:" is
  // UBSan's, in "file:line:col: runtime error: ...".
  static constexpr std::array<std::string_view, 6> kMarkers = {
      "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",  "WARNING: ThreadSanitizer",
      "FATAL: ThreadSanitizer",  "runtime error:",         "ERROR: UndefinedBehaviorSanitizer"};
  std::size_t first = std::string_view::npos;
  for (std::string_view marker : kMarkers) {
    first = std::min(first, text.find(marker));
  }
  if (first == std::string_view::npos) return {};
  const std::size_t line_start = text.rfind('\n', first);
  const std::size_t begin = line_start == std::string_view::npos ? 0 : line_start + 1;
  return std::string(text.substr(begin, max_bytes));
}

std::string sanitizer_report_in(const std::filesystem::path& file, std::size_t max_bytes) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return find_sanitizer_report(text, max_bytes);
}

}  // namespace arbiter::testing
