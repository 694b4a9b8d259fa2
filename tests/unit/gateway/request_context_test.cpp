#include "gateway/request_context.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http/fields.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace arbiter::gateway {
namespace {

namespace http = boost::beast::http;

// A header list built in order, as a client would send it.
http::fields headers(const std::vector<std::pair<std::string, std::string>>& items) {
  http::fields f;
  for (const auto& [name, value] : items) f.insert(name, value);
  return f;
}

// --- is_valid_request_id ------------------------------------------------------

TEST(RequestIdTest, AcceptsEveryVersionFromOneToFive) {
  EXPECT_TRUE(is_valid_request_id("c232ab00-9414-11ec-b3c8-9f6bdeced846"));  // v1
  EXPECT_TRUE(is_valid_request_id("000003e8-2363-21ef-b200-325096b39f47"));  // v2
  EXPECT_TRUE(is_valid_request_id("5df41881-3aed-3515-88a7-2f4a814cf09e"));  // v3
  EXPECT_TRUE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148a8"));  // v4
  EXPECT_TRUE(is_valid_request_id("2ed6657d-e927-568b-95e1-2665a8aea6a2"));  // v5
}

TEST(RequestIdTest, AcceptsUpperAndMixedCase) {
  EXPECT_TRUE(is_valid_request_id("919108F7-52D1-4320-9BAC-F847DB4148A8"));
  EXPECT_TRUE(is_valid_request_id("919108f7-52D1-4320-9Bac-F847db4148A8"));
  EXPECT_TRUE(is_valid_request_id("2ED6657D-E927-568B-B5E1-2665A8AEA6A2"));
}

TEST(RequestIdTest, AcceptsEveryRfc4122VariantNibble) {
  for (const char variant : std::string("89abAB")) {
    std::string id = "919108f7-52d1-4320-9bac-f847db4148a8";
    id[19] = variant;
    EXPECT_TRUE(is_valid_request_id(id)) << id;
  }
}

TEST(RequestIdTest, RejectsVersionZeroAndSixToF) {
  for (const char version : std::string("06789abcdefABCDEF")) {
    std::string id = "919108f7-52d1-4320-9bac-f847db4148a8";
    id[14] = version;
    EXPECT_FALSE(is_valid_request_id(id)) << id;
  }
  EXPECT_FALSE(is_valid_request_id("00000000-0000-0000-0000-000000000000"));  // nil
  EXPECT_FALSE(is_valid_request_id("ffffffff-ffff-ffff-ffff-ffffffffffff"));  // max
}

TEST(RequestIdTest, RejectsNonRfc4122Variants) {
  // 0-7: NCS, c-d: Microsoft, e-f: reserved.
  for (const char variant : std::string("01234567cdefCDEF")) {
    std::string id = "919108f7-52d1-4320-9bac-f847db4148a8";
    id[19] = variant;
    EXPECT_FALSE(is_valid_request_id(id)) << id;
  }
}

TEST(RequestIdTest, RejectsWrongLength) {
  EXPECT_FALSE(is_valid_request_id(""));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148a"));    // 35
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148a8a"));  // 37
  EXPECT_FALSE(is_valid_request_id("919108f752d143209bacf847db4148a8"));       // no dashes, 32
  EXPECT_FALSE(is_valid_request_id("{919108f7-52d1-4320-9bac-f847db4148a8}"));  // braces
  EXPECT_FALSE(is_valid_request_id("urn:uuid:919108f7-52d1-4320-9bac-f847db4148a8"));
}

TEST(RequestIdTest, RejectsMissingOrMisplacedDashes) {
  // Right length, dashes in the wrong places.
  EXPECT_FALSE(is_valid_request_id("919108f752-d1-4320-9bac-f847db4148a8"));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d14-320-9bac-f847db4148a8"));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-43209-bac-f847db4148a8"));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bacf-847db4148a8"));
  // Each dash replaced by a hex digit (right length, one dash missing).
  for (const std::size_t pos : {8u, 13u, 18u, 23u}) {
    std::string id = "919108f7-52d1-4320-9bac-f847db4148a8";
    id[pos] = 'a';
    EXPECT_FALSE(is_valid_request_id(id)) << id;
  }
  // A dash where a hex digit belongs.
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148-8"));
  EXPECT_FALSE(is_valid_request_id("-19108f7-52d1-4320-9bac-f847db4148a8"));
  // Other separators.
  EXPECT_FALSE(is_valid_request_id("919108f7_52d1_4320_9bac_f847db4148a8"));
}

TEST(RequestIdTest, RejectsNonHexCharacters) {
  EXPECT_FALSE(is_valid_request_id("919108g7-52d1-4320-9bac-f847db4148a8"));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148az"));
  EXPECT_FALSE(is_valid_request_id("z19108f7-52d1-4320-9bac-f847db4148a8"));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148a\xff"));
  EXPECT_FALSE(is_valid_request_id(std::string("919108f7-52d1-4320-9bac-f847db4148a\0", 36)));
}

TEST(RequestIdTest, RejectsWhitespace) {
  EXPECT_FALSE(is_valid_request_id(" 919108f7-52d1-4320-9bac-f847db4148a8"));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148a8 "));
  EXPECT_FALSE(is_valid_request_id(" 19108f7-52d1-4320-9bac-f847db4148a8"));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148a\t"));
  EXPECT_FALSE(is_valid_request_id("919108f7 52d1 4320 9bac f847db4148a8"));
}

TEST(RequestIdTest, RejectsHeaderInjection) {
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148a8\r\nX-Evil: 1"));
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148\r\n"));  // 36 chars
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4148\n\n"));
}

TEST(RequestIdTest, RejectsPathTraversal) {
  EXPECT_FALSE(is_valid_request_id("../../etc/passwd"));
  EXPECT_FALSE(is_valid_request_id("../../../../../../../../etc/passwd..")); // 36 chars
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-f847db4/../a"));    // 36 chars
  EXPECT_FALSE(is_valid_request_id("919108f7-52d1-4320-9bac-..%2f..%2fa8"));     // 36 chars
}

// --- new_request_id -----------------------------------------------------------

TEST(NewRequestIdTest, IsValidLowerCaseVersion4) {
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_request_id();
    ASSERT_EQ(id.size(), 36u);
    ASSERT_TRUE(is_valid_request_id(id)) << id;
    EXPECT_EQ(id[14], '4') << id;
    EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b') << id;
    for (const char c : id) {
      EXPECT_TRUE(c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << id;
    }
  }
}

// The first 60 bits are the creation time (Unix ms, then a 12-bit fraction
// of the millisecond around the version nibble), so ids sort by time: the
// request log's id-keyed column families append instead of scattering.
TEST(NewRequestIdTest, LeadsWithItsCreationTimeSoIdsSortByTime) {
  auto now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  auto time_of = [](const std::string& id) { return std::stoll(id.substr(0, 8) + id.substr(9, 4), nullptr, 16); };
  auto order_part = [](const std::string& id) { return id.substr(0, 18); };  // ms, version, fraction
  std::string previous;
  for (int i = 0; i < 2000; ++i) {
    const auto before = now_ms();
    const std::string id = new_request_id();
    const auto after = now_ms();
    ASSERT_GE(time_of(id), before) << id;
    ASSERT_LE(time_of(id), after) << id;
    if (!previous.empty()) {
      ASSERT_LE(order_part(previous), order_part(id)) << previous << " then " << id;
    }
    previous = id;
  }
}

TEST(NewRequestIdTest, TenThousandCallsAreUnique) {
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 10'000; ++i) seen.insert(new_request_id());
  EXPECT_EQ(seen.size(), 10'000u);
}

TEST(NewRequestIdTest, VariantNibbleTakesAllFourValues) {
  // The variant's low bits are random: over many ids all of 8, 9, a, b appear.
  std::unordered_set<char> variants;
  for (int i = 0; i < 1000; ++i) variants.insert(new_request_id()[19]);
  EXPECT_EQ(variants, (std::unordered_set<char>{'8', '9', 'a', 'b'}));
}

// --- read_helicone_headers ----------------------------------------------------

TEST(ReadHeliconeHeadersTest, EmptyFieldsGiveDefaults) {
  const HeliconeHeaders h = read_helicone_headers(http::fields{});
  EXPECT_FALSE(h.auth_key.has_value());
  EXPECT_FALSE(h.bearer_key.has_value());
  EXPECT_FALSE(h.request_id.has_value());
  EXPECT_FALSE(h.upstream.has_value());
  EXPECT_TRUE(h.properties.empty());
  EXPECT_EQ(h.user_id, "");
  EXPECT_EQ(h.session_id, "");
  EXPECT_EQ(h.session_path, "");
  EXPECT_EQ(h.session_name, "");
  EXPECT_FALSE(h.omit_request);
  EXPECT_FALSE(h.omit_response);
  EXPECT_FALSE(h.has_authorization);
  EXPECT_FALSE(h.has_api_key_header);
}

TEST(ReadHeliconeHeadersTest, PropertyNameIsLowerCasedValueKeptAsIs) {
  const auto h = read_helicone_headers(headers({{"Helicone-Property-Env", "prod"}}));
  EXPECT_EQ(h.properties, (std::map<std::string, std::string>{{"env", "prod"}}));

  const auto h2 = read_helicone_headers(headers({{"Helicone-Property-Env", "Prod Value / MiXeD"}}));
  EXPECT_EQ(h2.properties, (std::map<std::string, std::string>{{"env", "Prod Value / MiXeD"}}));
}

TEST(ReadHeliconeHeadersTest, SeveralProperties) {
  const auto h = read_helicone_headers(headers({
      {"Helicone-Property-Env", "prod"},
      {"Helicone-Property-App-Name", "Chat UI"},
      {"HELICONE-PROPERTY-TEAM", "Search"},
      {"helicone-property-conversation_id", "c-42"},
      {"Content-Type", "application/json"},
  }));
  EXPECT_EQ(h.properties, (std::map<std::string, std::string>{
                              {"env", "prod"},
                              {"app-name", "Chat UI"},
                              {"team", "Search"},
                              {"conversation_id", "c-42"},
                          }));
}

TEST(ReadHeliconeHeadersTest, PropertyWithEmptyNameIsIgnored) {
  const auto h = read_helicone_headers(headers({{"Helicone-Property-", "x"}}));
  EXPECT_TRUE(h.properties.empty());
}

TEST(ReadHeliconeHeadersTest, PropertyEmptyValueIsKept) {
  const auto h = read_helicone_headers(headers({{"Helicone-Property-Env", ""}}));
  EXPECT_EQ(h.properties, (std::map<std::string, std::string>{{"env", ""}}));
}

TEST(ReadHeliconeHeadersTest, SamePropertyInTwoCasesLastWins) {
  // Names are case-insensitive, so these are the same property.
  const auto h = read_helicone_headers(headers({
      {"Helicone-Property-Env", "first"},
      {"helicone-property-ENV", "second"},
  }));
  EXPECT_EQ(h.properties, (std::map<std::string, std::string>{{"env", "second"}}));
}

TEST(ReadHeliconeHeadersTest, UserAndSession) {
  const auto h = read_helicone_headers(headers({
      {"Helicone-User-Id", "User-123@Example.com"},
      {"Helicone-Session-Id", "5f1a3c1e-0000-4000-8000-000000000001"},
      {"Helicone-Session-Path", "/parent/Child"},
      {"Helicone-Session-Name", "Trip Planner"},
  }));
  EXPECT_EQ(h.user_id, "User-123@Example.com");
  EXPECT_EQ(h.session_id, "5f1a3c1e-0000-4000-8000-000000000001");
  EXPECT_EQ(h.session_path, "/parent/Child");
  EXPECT_EQ(h.session_name, "Trip Planner");
  EXPECT_TRUE(h.properties.empty());
}

TEST(ReadHeliconeHeadersTest, OmitFlags) {
  {
    const auto h = read_helicone_headers(headers({{"Helicone-Omit-Request", "true"}}));
    EXPECT_TRUE(h.omit_request);
    EXPECT_FALSE(h.omit_response);
  }
  {
    const auto h = read_helicone_headers(headers({{"Helicone-Omit-Response", "true"}}));
    EXPECT_FALSE(h.omit_request);
    EXPECT_TRUE(h.omit_response);
  }
  {
    const auto h = read_helicone_headers(
        headers({{"helicone-omit-request", "true"}, {"HELICONE-OMIT-RESPONSE", "true"}}));
    EXPECT_TRUE(h.omit_request);
    EXPECT_TRUE(h.omit_response);
  }
  for (const char* value : {"false", "False", "0", "yes", "no", "", "truee", "t", "on"}) {
    const auto h = read_helicone_headers(
        headers({{"Helicone-Omit-Request", value}, {"Helicone-Omit-Response", value}}));
    EXPECT_FALSE(h.omit_request) << '"' << value << '"';
    EXPECT_FALSE(h.omit_response) << '"' << value << '"';
  }
}

TEST(ReadHeliconeHeadersTest, HeliconeAuthBearer) {
  const auto h = read_helicone_headers(headers({{"Helicone-Auth", "Bearer k"}}));
  ASSERT_TRUE(h.auth_key.has_value());
  EXPECT_EQ(*h.auth_key, "k");
  EXPECT_FALSE(h.bearer_key.has_value());
  EXPECT_FALSE(h.has_authorization);
}

TEST(ReadHeliconeHeadersTest, HeliconeAuthSchemeIsCaseInsensitiveAndBlanksTrimmed) {
  for (const char* value : {"bearer sk-arb-1", "BEARER sk-arb-1", "BeArEr sk-arb-1", "Bearer   sk-arb-1",
                            "  Bearer sk-arb-1  ", "\tBearer sk-arb-1\t"}) {
    const auto h = read_helicone_headers(headers({{"Helicone-Auth", value}}));
    ASSERT_TRUE(h.auth_key.has_value()) << value;
    EXPECT_EQ(*h.auth_key, "sk-arb-1") << '"' << value << '"';
  }
}

TEST(ReadHeliconeHeadersTest, HeliconeAuthTabAfterSchemeIsNotABearerSeparator) {
  // RFC 7235 separates scheme and token with SP only; the value then falls back
  // to being read as a bare key, which matches no project.
  const auto h = read_helicone_headers(headers({{"Helicone-Auth", "Bearer\tsk-arb-1"}}));
  ASSERT_TRUE(h.auth_key.has_value());
  EXPECT_EQ(*h.auth_key, "Bearer\tsk-arb-1");
}

TEST(ReadHeliconeHeadersTest, HeliconeAuthBareKey) {
  const auto h = read_helicone_headers(headers({{"Helicone-Auth", "sk-arb-bare"}}));
  ASSERT_TRUE(h.auth_key.has_value());
  EXPECT_EQ(*h.auth_key, "sk-arb-bare");
}

TEST(ReadHeliconeHeadersTest, HeliconeAuthEmptyGivesNoKey) {
  const auto h = read_helicone_headers(headers({{"Helicone-Auth", ""}}));
  EXPECT_FALSE(h.auth_key.has_value());
}

TEST(ReadHeliconeHeadersTest, HeaderNamesAreCaseInsensitive) {
  const auto h = read_helicone_headers(headers({
      {"HELICONE-AUTH", "Bearer k1"},
      {"helicone-user-id", "u1"},
      {"HeLiCoNe-SeSsIoN-iD", "s1"},
      {"helicone-request-id", "r1"},
      {"HELICONE-UPSTREAM", "azure"},
      {"helicone-omit-response", "true"},
  }));
  ASSERT_TRUE(h.auth_key.has_value());
  EXPECT_EQ(*h.auth_key, "k1");
  EXPECT_EQ(h.user_id, "u1");
  EXPECT_EQ(h.session_id, "s1");
  ASSERT_TRUE(h.request_id.has_value());
  EXPECT_EQ(*h.request_id, "r1");
  ASSERT_TRUE(h.upstream.has_value());
  EXPECT_EQ(*h.upstream, "azure");
  EXPECT_TRUE(h.omit_response);
}

TEST(ReadHeliconeHeadersTest, AuthorizationBearerKey) {
  const auto h = read_helicone_headers(headers({{"Authorization", "Bearer sk-proj-abc123"}}));
  EXPECT_TRUE(h.has_authorization);
  ASSERT_TRUE(h.bearer_key.has_value());
  EXPECT_EQ(*h.bearer_key, "sk-proj-abc123");
  EXPECT_FALSE(h.auth_key.has_value());
  EXPECT_FALSE(h.has_api_key_header);
}

TEST(ReadHeliconeHeadersTest, AuthorizationAnyCase) {
  const auto h = read_helicone_headers(headers({{"authorization", "bearer sk-1"}}));
  EXPECT_TRUE(h.has_authorization);
  ASSERT_TRUE(h.bearer_key.has_value());
  EXPECT_EQ(*h.bearer_key, "sk-1");

  const auto h2 = read_helicone_headers(headers({{"AUTHORIZATION", "BEARER sk-2"}}));
  EXPECT_TRUE(h2.has_authorization);
  ASSERT_TRUE(h2.bearer_key.has_value());
  EXPECT_EQ(*h2.bearer_key, "sk-2");
}

TEST(ReadHeliconeHeadersTest, AuthorizationNonBearerIsPresentWithoutKey) {
  const auto h = read_helicone_headers(headers({{"Authorization", "Basic dXNlcjpwYXNz"}}));
  EXPECT_TRUE(h.has_authorization);
  EXPECT_FALSE(h.bearer_key.has_value());

  const auto h2 = read_helicone_headers(headers({{"Authorization", "Bearer "}}));
  EXPECT_TRUE(h2.has_authorization);
  EXPECT_FALSE(h2.bearer_key.has_value());
}

TEST(ReadHeliconeHeadersTest, FirstAuthorizationBearerWins) {
  const auto h = read_helicone_headers(
      headers({{"Authorization", "Bearer first"}, {"Authorization", "Bearer second"}}));
  ASSERT_TRUE(h.bearer_key.has_value());
  EXPECT_EQ(*h.bearer_key, "first");
}

TEST(ReadHeliconeHeadersTest, ApiKeyHeaders) {
  for (const char* name : {"api-key", "Api-Key", "API-KEY", "x-api-key", "X-Api-Key", "X-API-KEY"}) {
    const auto h = read_helicone_headers(headers({{name, "secret"}}));
    EXPECT_TRUE(h.has_api_key_header) << name;
    EXPECT_FALSE(h.has_authorization) << name;
    EXPECT_FALSE(h.bearer_key.has_value()) << name;
  }
}

TEST(ReadHeliconeHeadersTest, LookalikeApiKeyHeadersDoNotCount) {
  for (const char* name : {"x-api-keys", "api-keys", "x-api-ke", "api-ke", "xx-api-key", "my-api-key",
                           "x-api-key-id", "apikey", "x-apikey"}) {
    const auto h = read_helicone_headers(headers({{name, "secret"}}));
    EXPECT_FALSE(h.has_api_key_header) << name;
  }
}

TEST(ReadHeliconeHeadersTest, RequestIdIsTheRawValue) {
  const auto h = read_helicone_headers(headers({{"Helicone-Request-Id", "919108F7-52D1-4320-9BAC-F847DB4148A8"}}));
  ASSERT_TRUE(h.request_id.has_value());
  EXPECT_EQ(*h.request_id, "919108F7-52D1-4320-9BAC-F847DB4148A8");

  // Invalid ids are passed through too: validation is the caller's job.
  const auto h2 = read_helicone_headers(headers({{"Helicone-Request-Id", "../../etc/passwd"}}));
  ASSERT_TRUE(h2.request_id.has_value());
  EXPECT_EQ(*h2.request_id, "../../etc/passwd");
}

TEST(ReadHeliconeHeadersTest, Upstream) {
  const auto h = read_helicone_headers(headers({{"Helicone-Upstream", "Azure-EU"}}));
  ASSERT_TRUE(h.upstream.has_value());
  EXPECT_EQ(*h.upstream, "Azure-EU");
}

TEST(ReadHeliconeHeadersTest, UnknownHeliconeHeadersAreIgnored) {
  const auto h = read_helicone_headers(headers({
      {"Helicone-Cache-Enabled", "true"},
      {"Helicone-Retry-Enabled", "true"},
      {"Helicone-Auth-Extra", "Bearer nope"},
      {"Helicone-User-Ids", "nope"},
  }));
  EXPECT_FALSE(h.auth_key.has_value());
  EXPECT_EQ(h.user_id, "");
  EXPECT_TRUE(h.properties.empty());
}

TEST(ReadHeliconeHeadersTest, NonHeliconeLookalikesAreIgnored) {
  const auto h = read_helicone_headers(headers({
      {"X-Helicone-Auth", "Bearer nope"},
      {"Helicone", "x"},
      {"HeliconeAuth", "Bearer nope"},
      {"X-Helicone-Property-Env", "prod"},
  }));
  EXPECT_FALSE(h.auth_key.has_value());
  EXPECT_TRUE(h.properties.empty());
}

TEST(ReadHeliconeHeadersTest, EverythingTogether) {
  const auto h = read_helicone_headers(headers({
      {"Host", "localhost:8787"},
      {"Authorization", "Bearer sk-provider"},
      {"Helicone-Auth", "Bearer sk-arbiter"},
      {"Helicone-Property-Env", "prod"},
      {"Helicone-User-Id", "alice"},
      {"Helicone-Request-Id", "919108f7-52d1-4320-9bac-f847db4148a8"},
      {"x-api-key", "anthropic"},
      {"Content-Type", "application/json"},
  }));
  ASSERT_TRUE(h.auth_key.has_value());
  EXPECT_EQ(*h.auth_key, "sk-arbiter");
  ASSERT_TRUE(h.bearer_key.has_value());
  EXPECT_EQ(*h.bearer_key, "sk-provider");
  EXPECT_TRUE(h.has_authorization);
  EXPECT_TRUE(h.has_api_key_header);
  EXPECT_EQ(h.properties, (std::map<std::string, std::string>{{"env", "prod"}}));
  EXPECT_EQ(h.user_id, "alice");
  ASSERT_TRUE(h.request_id.has_value());
  EXPECT_EQ(*h.request_id, "919108f7-52d1-4320-9bac-f847db4148a8");
}

}  // namespace
}  // namespace arbiter::gateway

namespace arbiter::gateway {
namespace {

// --- check_helicone_headers ---------------------------------------------------

std::optional<std::string> check(const std::vector<std::pair<std::string, std::string>>& items) {
  http::fields f;
  for (const auto& [name, value] : items) f.insert(name, value);
  return check_helicone_headers(read_helicone_headers(f));
}

TEST(CheckHeliconeHeadersTest, AcceptsOrdinaryAndUnicodeValues) {
  EXPECT_EQ(check({}), std::nullopt);
  EXPECT_EQ(check({{"Helicone-Property-Env", "prod"}, {"Helicone-User-Id", "u@example.com"}}), std::nullopt);
  EXPECT_EQ(check({{"Helicone-Property-City", "Z\xc3\xbcrich \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x9a\x80\tx"}}),
            std::nullopt);
  EXPECT_EQ(check({{"Helicone-Session-Path", std::string(kMaxHeliconeValueBytes, 'p')}}), std::nullopt);
  // Not a data header: not ours to check.
  EXPECT_EQ(check({{"X-Other", "\x01"}}), std::nullopt);
}

TEST(CheckHeliconeHeadersTest, RefusesWhatCannotRoundTripNamingTheHeader) {
  const std::vector<std::pair<std::pair<std::string, std::string>, std::string>> cases = {
      {{"Helicone-Property-Env", "a\r\nX-Injected: 1"}, "Helicone-Property-env: value contains a control character"},
      {{"Helicone-Property-Env", std::string("a\0b", 3)}, "Helicone-Property-env: value contains a control character"},
      {{"Helicone-Property-Env", "a\x7f"}, "Helicone-Property-env: value contains a control character"},
      {{"Helicone-Property-Env", "\xc3\x28"}, "Helicone-Property-env: value is not valid UTF-8"},
      {{"Helicone-Property-Env", "\xed\xa0\x80"}, "Helicone-Property-env: value is not valid UTF-8"},
      {{"Helicone-Property-Env", "\xc0\xaf"}, "Helicone-Property-env: value is not valid UTF-8"},
      {{"Helicone-Property-Env", "\xe2\x82"}, "Helicone-Property-env: value is not valid UTF-8"},
      {{"Helicone-User-Id", "\xff"}, "Helicone-User-Id: value is not valid UTF-8"},
      {{"Helicone-Session-Id", "a\nb"}, "Helicone-Session-Id: value contains a control character"},
      {{"Helicone-Session-Name", std::string(kMaxHeliconeValueBytes + 1, 'n')},
       "Helicone-Session-Name: value longer than 8192 bytes"},
  };
  for (const auto& [header, message] : cases) {
    EXPECT_EQ(check({header}), message) << header.first;
  }
  const auto long_name = check({{"Helicone-Property-" + std::string(kMaxPropertyNameBytes + 1, 'n'), "v"}});
  ASSERT_TRUE(long_name);
  EXPECT_NE(long_name->find("name longer than 256 bytes"), std::string::npos) << *long_name;
  std::vector<std::pair<std::string, std::string>> many;
  for (std::size_t i = 0; i <= kMaxProperties; ++i) many.emplace_back("Helicone-Property-P" + std::to_string(i), "v");
  EXPECT_EQ(check(many), "too many Helicone-Property-* headers (at most 128)");
  many.pop_back();
  EXPECT_EQ(check(many), std::nullopt);
}

}  // namespace
}  // namespace arbiter::gateway
