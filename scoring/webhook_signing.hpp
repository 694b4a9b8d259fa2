#pragma once
// Webhook signatures (DESIGN.md §7), computed over the exact bytes sent.
//
//   webhook-signature   Standard Webhooks v1: "v1," + base64(HMAC-SHA256(key,
//                       "<webhook-id>.<webhook-timestamp>.<body>")), where key
//                       is the base64-decoded part of the "whsec_..." secret.
//   Helicone-Signature  hex(HMAC-SHA256(key, body)). Helicone's receivers run
//                       createHmac("sha256", HELICONE_WEBHOOK_SECRET) over the
//                       body, i.e. they key the HMAC with the secret *string*
//                       they were given; so this is keyed with the configured
//                       secret text ("whsec_..."), letting a Helicone receiver
//                       verify by setting its secret to that same string.
//
// Thread-safety: pure functions (the OpenSSL MAC implementation is fetched
// once and shared read-only). Secrets passed in are never logged or copied
// into error messages.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "scoring/expected.hpp"

struct evp_mac_ctx_st;  // OpenSSL's EVP_MAC_CTX

namespace arbiter::scoring {

// Standard base64 (RFC 4648 §4) with padding.
std::string base64_encode(std::string_view bytes);
// Standard alphabet; padding optional; no whitespace. nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view text);

std::string hex_encode(std::string_view bytes);

// Standard Webhooks' recommended key sizes: 24 to 64 bytes.
inline constexpr std::size_t kMinWebhookKeyBytes = 24;
inline constexpr std::size_t kMaxWebhookKeyBytes = 64;

// "whsec_<base64>" → the key bytes. kInvalidArgument with a message that never
// contains the secret (missing prefix, bad base64, key too short / long).
Expected<std::string> decode_webhook_secret(std::string_view secret);

// HMAC-SHA256 with one key, set up once (the digest lookup and the key
// schedule) and reused for every message: each digest starts from a copy of
// the keyed state. Not thread-safe: one per thread.
class HmacSha256 {
 public:
  explicit HmacSha256(std::string_view key);
  ~HmacSha256();
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;

  // 32 raw bytes over the concatenation of `parts`.
  std::string digest(std::initializer_list<std::string_view> parts);

 private:
  evp_mac_ctx_st* keyed_ = nullptr;
};

// 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

// "v1,<base64>" for the webhook-signature header.
std::string standard_webhook_signature(std::string_view key, std::string_view id,
                                       std::int64_t timestamp_s, std::string_view body);
std::string standard_webhook_signature(HmacSha256& key, std::string_view id,
                                       std::int64_t timestamp_s, std::string_view body);

// Lower-case hex for the Helicone-Signature header (see above for the key).
std::string helicone_signature(std::string_view key, std::string_view body);
std::string helicone_signature(HmacSha256& key, std::string_view body);

}  // namespace arbiter::scoring
