#pragma once
// The body HeliconeManualLogger sends (POST /custom/v1/log) for one chat call
// answering `output`: fixed model, prompt, token counts and timing, so tests
// know exactly what the logged record holds. Header-only (test code).

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace arbiter::testing {

inline nlohmann::json manual_log_body(const std::string& output, std::int64_t completion_tokens = 5,
                                      std::int64_t latency_ms = 1000) {
  using nlohmann::json;
  const std::int64_t start_ms = 1'714'564'800'000;
  const std::int64_t end_ms = start_ms + latency_ms;
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
              {"usage", {{"prompt_tokens", 3}, {"completion_tokens", completion_tokens}}}}}}},
          {"timing",
           {{"startTime", {{"seconds", start_ms / 1000}, {"milliseconds", start_ms % 1000}}},
            {"endTime", {{"seconds", end_ms / 1000}, {"milliseconds", end_ms % 1000}}}}}};
}

}  // namespace arbiter::testing
