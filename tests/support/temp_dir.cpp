#include "tests/support/temp_dir.hpp"

#include <stdlib.h>  // mkdtemp (POSIX, not in <cstdlib>)

#include <cerrno>
#include <string>
#include <system_error>

namespace arbiter::testing {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "arbiter-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::filesystem::filesystem_error("mkdtemp", pattern,
                                            std::error_code(errno, std::generic_category()));
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  // A destructor must not throw; a directory left behind in the temp dir is harmless.
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace arbiter::testing
