#pragma once

#include <filesystem>

namespace arbiter::testing {

// A fresh directory under std::filesystem::temp_directory_path() (mkdtemp, so unique even across
// concurrently running test processes), removed with everything in it by the destructor.
// Not copyable or movable: the path it hands out stays valid for its whole lifetime.
class TempDir {
 public:
  TempDir();  // throws std::filesystem::filesystem_error on failure
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace arbiter::testing
