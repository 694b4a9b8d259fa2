// Webhook signatures against published vectors (Standard Webhooks' reference
// libraries, RFC 4231 for the plain HMAC behind Helicone-Signature), and the
// secret / base64 parsing around them.

#include "scoring/webhook_signing.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

namespace arbiter::scoring {
namespace {

using nlohmann::json;

json vectors() {
  std::ifstream in(std::string(ARBITER_SOURCE_DIR) +
                   "/tests/unit/scoring/data/webhook_signature_vectors.json");
  EXPECT_TRUE(in.good()) << "missing vector file";
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

std::string from_hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

TEST(WebhookSigning, MatchesTheStandardWebhooksVector) {
  const json all = vectors().at("standard_webhooks");
  ASSERT_FALSE(all.empty());
  for (const auto& v : all) {
    auto key = decode_webhook_secret(v.at("secret").get<std::string>());
    ASSERT_TRUE(key.ok()) << key.error().message;
    EXPECT_EQ(standard_webhook_signature(*key, v.at("id").get<std::string>(),
                                         v.at("timestamp").get<std::int64_t>(),
                                         v.at("payload").get<std::string>()),
              v.at("signature").get<std::string>())
        << v.at("source");
  }
}

TEST(WebhookSigning, SignatureCoversIdTimestampAndEveryByteOfTheBody) {
  const json v = vectors().at("standard_webhooks").at(0);
  auto key = decode_webhook_secret(v.at("secret").get<std::string>());
  ASSERT_TRUE(key.ok());
  const std::string id = v.at("id");
  const std::int64_t ts = v.at("timestamp");
  const std::string body = v.at("payload");
  const std::string expected = v.at("signature");
  EXPECT_NE(standard_webhook_signature(*key, id + "x", ts, body), expected);
  EXPECT_NE(standard_webhook_signature(*key, id, ts + 1, body), expected);
  EXPECT_NE(standard_webhook_signature(*key, id, ts, body + " "), expected);
  std::string other_key = *key;
  other_key[0] = static_cast<char>(other_key[0] ^ 1);
  EXPECT_NE(standard_webhook_signature(other_key, id, ts, body), expected);
}

TEST(WebhookSigning, HeliconeSignatureIsHexHmacOfTheBody) {
  // A named copy: a range-for over a member of a temporary would iterate a
  // destroyed object (found by AddressSanitizer: heap-use-after-free).
  const json hex_vectors = vectors().at("hmac_sha256_hex");
  for (const auto& v : hex_vectors) {
    const std::string key =
        v.contains("key") ? v.at("key").get<std::string>() : from_hex(v.at("key_hex").get<std::string>());
    EXPECT_EQ(helicone_signature(key, v.at("data").get<std::string>()), v.at("hex").get<std::string>())
        << v.at("source");
  }
}

TEST(WebhookSigning, Base64RoundTripsAndRejectsMalformedInput) {
  const std::vector<std::string> samples = {"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)};
  for (const std::string& s : samples) {
    const std::string enc = base64_encode(s);
    EXPECT_EQ(enc.size() % 4, 0u);
    auto dec = base64_decode(enc);
    ASSERT_TRUE(dec) << enc;
    EXPECT_EQ(*dec, s);
  }
  EXPECT_EQ(base64_decode("YWI").value_or("?"), "ab");  // padding optional
  EXPECT_EQ(base64_decode("YWI=").value_or("?"), "ab");
  EXPECT_FALSE(base64_decode("YWI=="));    // wrong padding
  EXPECT_FALSE(base64_decode("Y"));        // impossible length
  EXPECT_FALSE(base64_decode("YW I="));    // whitespace
  EXPECT_FALSE(base64_decode("YW-_"));     // URL-safe alphabet is not Standard Webhooks'
  EXPECT_FALSE(base64_decode("YWI=YWI=")); // padding in the middle
}

TEST(WebhookSigning, SecretsNeedThePrefixValidBase64AndASaneKeySize) {
  const std::string secret_body = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  EXPECT_TRUE(decode_webhook_secret("whsec_" + secret_body).ok());
  auto no_prefix = decode_webhook_secret(secret_body);
  ASSERT_FALSE(no_prefix.ok());
  EXPECT_EQ(no_prefix.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(no_prefix.error().message.find(secret_body), std::string::npos) << "secret echoed";

  auto bad = decode_webhook_secret("whsec_not base64!");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("base64"), std::string::npos);

  auto short_key = decode_webhook_secret("whsec_" + base64_encode("0123456789"));
  ASSERT_FALSE(short_key.ok());
  EXPECT_NE(short_key.error().message.find("24 to 64 bytes"), std::string::npos);
  EXPECT_FALSE(decode_webhook_secret("whsec_" + base64_encode(std::string(65, 'k'))).ok());
  EXPECT_TRUE(decode_webhook_secret("whsec_" + base64_encode(std::string(64, 'k'))).ok());
}

}  // namespace
}  // namespace arbiter::scoring
