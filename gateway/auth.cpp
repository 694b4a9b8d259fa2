#include "gateway/auth.hpp"

#include <openssl/crypto.h>

#include <cctype>

namespace arbiter::gateway {

const ProjectConfig* find_project_by_key(const Config& config, std::string_view key) {
  if (key.empty()) return nullptr;
  const KeyHash digest = sha256_key(key);
  const ProjectConfig* found = nullptr;
  for (const auto& project : config.projects) {
    for (const auto& h : project.key_hashes) {
      if (CRYPTO_memcmp(h.data(), digest.data(), h.size()) == 0) found = &project;
    }
  }
  return found;
}

const ProjectConfig* find_project_by_bearer(const Config& config, std::string_view authorization) {
  while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
  if (authorization.size() < 7) return nullptr;
  for (std::size_t i = 0; i < 7; ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != "bearer "[i]) return nullptr;
  }
  authorization.remove_prefix(7);
  while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
  while (!authorization.empty() && authorization.back() == ' ') authorization.remove_suffix(1);
  return find_project_by_key(config, authorization);
}

}  // namespace arbiter::gateway
