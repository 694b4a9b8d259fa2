#pragma once
// Gateway keys → projects. Keys are compared as SHA-256 digests in constant
// time; plaintext keys are never stored. Thread-safe (reads a const Config).

#include <optional>
#include <string_view>

#include "gateway/config.hpp"

namespace arbiter::gateway {

// The project owning `key`, or nullptr. Every configured digest is compared,
// so the time taken does not depend on which project (if any) matched.
const ProjectConfig* find_project_by_key(const Config& config, std::string_view key);

// The project selected by an "Authorization: Bearer <key>" header value, or nullptr.
const ProjectConfig* find_project_by_bearer(const Config& config, std::string_view authorization);

}  // namespace arbiter::gateway
