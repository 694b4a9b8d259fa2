#include "scoring/free_space.hpp"

#include <rocksdb/env.h>

namespace arbiter::scoring {

Expected<void> ensure_free_space(rocksdb::Env& env, const std::string& path) {
  std::uint64_t free_bytes = 0;
  const rocksdb::Status s = env.GetFreeSpace(path, &free_bytes);
  if (!s.ok()) return {};  // unknown: let the write try
  if (free_bytes >= kMinFreeBytes) return {};
  return unavailable("no space left on device: " + std::to_string(free_bytes >> 20) +
                     " MiB free on storage.path, writes resume at " + std::to_string(kMinFreeBytes >> 20) +
                     " MiB");
}

}  // namespace arbiter::scoring
