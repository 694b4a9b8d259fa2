#pragma once
// Helpers shared by the security tests (security_*_test.cpp): API calls with
// a chosen Authorization header, proxied calls, and a HeliconeManualLogger
// body. Header-only because only these test files use it.

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>

#include "tests/support/gateway_harness.hpp"
#include "tests/support/manual_log_body.hpp"

namespace arbiter::testing::security {

using nlohmann::json;

// An API call; `authorization` is the whole header value, or nullopt to send none.
inline HttpResponse api_raw(const GatewayHarness& h, const std::string& method, const std::string& target,
                            const std::optional<std::string>& authorization, std::string body = {},
                            Headers extra = {}) {
  Headers headers = std::move(extra);
  if (authorization) headers.emplace_back("Authorization", *authorization);
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  return h.api_client().request(method, target, headers, std::move(body));
}

inline std::string bearer(const char* key) { return std::string("Bearer ") + key; }

// An API call with a project key; the body parsed (discarded when not JSON).
inline std::pair<int, json> api(const GatewayHarness& h, const std::string& method, const std::string& target,
                                const char* key = kKeyA, std::string body = {}) {
  auto res = api_raw(h, method, target, bearer(key), std::move(body));
  return {res.status, json::parse(res.body, nullptr, false)};
}

// A proxied chat call with the project's gateway key; returns the response.
inline HttpResponse proxy_call(const GatewayHarness& h, Headers extra = {}, const char* key = kKeyA,
                               std::string body = GatewayHarness::chat_body()) {
  extra.emplace_back("Content-Type", "application/json");
  return h.proxy_client().request("POST", "/v1/chat/completions", GatewayHarness::auth(std::move(extra), key),
                                  std::move(body));
}

}  // namespace arbiter::testing::security
