// POST /v1/request/query bodies → the API's JSON parsing (depth-limited) →
// parse_request_query (the filter tree, sort, limit, offset) → matches()
// against a few records, as execute_query evaluates candidates.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "scoring/query.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {
using namespace arbiter::scoring;
using arbiter::fuzz::check;

std::size_t depth(const FilterNode& n) {
  std::size_t d = 0;
  for (const auto& c : n.children) d = std::max(d, depth(c));
  return d + 1;
}

const std::vector<RequestRecord>& records() {
  static const std::vector<RequestRecord> kRecords = [] {
    std::vector<RequestRecord> out(3);
    out[0].request_id = "0b6c2f3e-8f1d-4c1a-9a6e-2f4b1c3d5e7f";
    out[0].project = "p";
    out[0].created_at_us = 1'700'000'000'000'000;
    out[0].response_at_us = out[0].created_at_us + 250'000;
    out[0].latency_ms = 250;
    out[0].path = "/v1/chat/completions";
    out[0].status = 200;
    out[0].request_model = "gpt-4o-mini";
    out[0].user_id = "alice";
    out[0].session_id = "s-1";
    out[0].properties = {{"env", "prod"}, {"app", "Ünïcode_%\\"}};
    out[0].prompt_tokens = 12;
    out[0].completion_tokens = 30;
    out[0].total_tokens = 42;
    out[0].cost_usd = 0.0001;
    out[0].scores = {{"accuracy", 92}, {"helpful", true}, {"tone", "good"}};
    out[1].request_id = "1b6c2f3e-8f1d-4c1a-9a6e-2f4b1c3d5e7f";
    out[1].project = "p";
    out[1].status = -1;
    out[1].error_message = "upstream unreachable";
    out[2] = out[0];
    out[2].request_id = "2b6c2f3e-8f1d-4c1a-9a6e-2f4b1c3d5e7f";
    out[2].response_model = "gpt-4o-mini-2024-07-18";
    out[2].is_stream = true;
    out[2].time_to_first_token_ms = 80;
    out[2].scores = nlohmann::json::object();
    return out;
  }();
  return kRecords;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto body = arbiter::fuzz::api_json_body(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!body) return 0;
  auto query = parse_request_query(*body);
  if (!query) {
    check(query.error().code == ErrorCode::kInvalidArgument, "query rejected without a 400");
    return 0;
  }
  check(query->limit >= 1 && query->limit <= kMaxLimit, "limit out of range");
  check(query->offset <= kMaxOffset, "offset out of range");
  check(depth(query->filter) <= kMaxFilterDepth + 1, "filter deeper than kMaxFilterDepth");
  for (const auto& r : records()) (void)matches(query->filter, r);
  return 0;
}
