#pragma once
// Helpers shared by the security tests (security_*_test.cpp): API calls with
// a chosen Authorization header, proxied calls, and a HeliconeManualLogger
// body. Header-only because only these test files use it.

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>

#include "tests/support/gateway_harness.hpp"

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

// The body HeliconeManualLogger sends for one chat call answering `output`.
inline json manual_log_body(const std::string& output) {
  const std::int64_t start_ms = 1'714'564'800'000;
  const std::int64_t end_ms = start_ms + 1000;
  return {{"providerRequest",
           {{"url", "/v1/chat/completions"},
            {"json", {{"model", "gpt-4o-mini"}, {"messages", {{{"role", "user"}, {"content", "Question?"}}}}}},
            {"meta", json::object()}}},
          {"providerResponse",
           {{"status", 200},
            {"headers", json::object()},
            {"json",
             {{"model", "gpt-4o-mini"},
              {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", output}}}}}},
              {"usage", {{"prompt_tokens", 3}, {"completion_tokens", 5}}}}}}},
          {"timing",
           {{"startTime", {{"seconds", start_ms / 1000}, {"milliseconds", start_ms % 1000}}},
            {"endTime", {{"seconds", end_ms / 1000}, {"milliseconds", end_ms % 1000}}}}}};
}

}  // namespace arbiter::testing::security
