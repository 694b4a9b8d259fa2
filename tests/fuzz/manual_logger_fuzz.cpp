// HeliconeManualLogger bodies (POST /custom/v1/log, /oai/v1/log) → the API's
// JSON parsing (depth-limited) → parse_manual_log (gateway/log_ingest.*) →
// the record the log stores (encode_metadata) and the API shows (to_json).
//
// Oracle besides the sanitizers: an accepted record has a valid request id
// and the route's project, and no credential from the call's headers
// (Authorization, *-key, ...) appears in anything stored.
//
// Input: byte 0 picks the route kind; then header lines ("Name: value\n")
// up to a blank line; then the body.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/fields.hpp>

#include "gateway/log_ingest.hpp"
#include "scoring/request_record.hpp"
#include "scoring/json_limits.hpp"
#include "tests/fuzz/fuzz_json_depth.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {
using arbiter::fuzz::check;
using namespace arbiter;

constexpr std::array<std::string_view, 5> kKinds = {"custom", "oai", "anthropic", "googleapis", "bogus"};

bool credential_name(std::string_view name) {
  std::string n(name);
  for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n.rfind("helicone-", 0) == 0) return false;  // Helicone's data headers are stored on purpose
  for (const char* word : {"auth", "key", "secret", "token", "cookie", "password"}) {
    if (n.find(word) != std::string::npos) return true;
  }
  return false;
}

void check_no_secret(const scoring::RequestRecord& r, std::string_view secret) {
  // A secret that is part of the marker itself cannot be told apart from it.
  if (std::string_view("[REDACTED]").find(secret) != std::string_view::npos) return;
  auto clean = [&](const std::string& s) {
    check(s.find(secret) == std::string::npos, "a credential header value was stored");
  };
  clean(r.request_body);
  clean(r.response_body);
  clean(r.stream_raw);
  clean(r.path);
  clean(r.request_id);
  clean(r.user_id);
  clean(r.session_id);
  clean(r.session_path);
  clean(r.session_name);
  clean(r.request_model);
  clean(r.response_model);
  for (const auto& [k, v] : r.properties) {
    clean(k);
    clean(v);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view kind = kKinds[data[0] % kKinds.size()];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  boost::beast::http::fields headers;
  std::vector<std::string> secrets;
  while (!in.empty()) {
    const auto nl = in.find('\n');
    const std::string_view line = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
    if (line.empty()) break;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    const std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    // What Beast's parser would accept as a field: a token name, no CR/NUL in the value.
    bool token = true;
    for (char c : name) token = token && c > 0x20 && c < 0x7f && c != ':';
    if (!token || value.find_first_of(std::string_view("\r\0", 2)) != std::string_view::npos) continue;
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    headers.insert(name, value);
    if (credential_name(name)) {
      std::string_view bare = value;
      for (std::string_view scheme : {"bearer ", "basic "}) {
        if (bare.size() > scheme.size()) {
          std::string head(bare.substr(0, scheme.size()));
          for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          if (head == scheme) {
            bare.remove_prefix(scheme.size());
            while (!bare.empty() && (bare.front() == ' ' || bare.front() == '\t')) bare.remove_prefix(1);
          }
        }
      }
      if (bare.size() >= 8) secrets.emplace_back(bare);
    }
  }

  auto body = arbiter::fuzz::api_json_body(in);
  if (!body) return 0;
  if (!body->is_object()) return 0;  // the route answers 400 before parsing (request_api.cpp)
  auto record = gateway::parse_manual_log(*body, headers, "fuzz-project", kind, 1'700'000'000'000'000);
  if (!record) {
    check(record.error().code == scoring::ErrorCode::kInvalidArgument, "manual log refused without a 400");
    check(!record.error().message.empty(), "manual log refused without a message");
    return 0;
  }
  check(record->project == "fuzz-project", "record stored under another project");
  check(scoring::valid_request_id(record->request_id), "record without a valid request id");
  for (const auto& s : secrets) check_no_secret(*record, s);
  const std::string stored = scoring::encode_metadata(*record);
  auto back = scoring::decode_metadata(stored);
  check(back.ok(), "a stored record does not decode");
  // Bodies live in their own column; the API reads them back with the record.
  back->request_body = record->request_body;
  back->response_body = record->response_body;
  back->stream_raw = record->stream_raw;
  // GET /v1/request/{id} shows the stored bodies as JSON: what it serialises
  // must stay shallow (dump() recurses once per level).
  const nlohmann::json shown = scoring::to_json(*back, true);
  check(arbiter::fuzz::json_depth(shown) <= arbiter::scoring::kMaxJsonDepth + 8, "stored record shows as JSON nested too deep to serialise safely");
  arbiter::fuzz::dump_like_api(shown);
  return 0;
}
