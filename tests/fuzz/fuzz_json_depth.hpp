#pragma once
// Nesting depth of a JSON value, walked iteratively (the fuzz targets must
// not overflow the stack themselves while checking that the code does not).

#include <cstddef>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace arbiter::fuzz {

inline std::size_t json_depth(const nlohmann::json& root) {
  std::size_t deepest = 0;
  std::vector<std::pair<const nlohmann::json*, std::size_t>> stack{{&root, 1}};
  while (!stack.empty()) {
    auto [j, d] = stack.back();
    stack.pop_back();
    if (d > deepest) deepest = d;
    if (j->is_structured()) {
      for (const auto& child : *j) stack.emplace_back(&child, d + 1);
    }
  }
  return deepest;
}

}  // namespace arbiter::fuzz
