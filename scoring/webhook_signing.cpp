#include "scoring/webhook_signing.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <memory>
#include <stdexcept>

namespace arbiter::scoring {

namespace {

// Fetched once: an implicit fetch per call costs a provider lookup on OpenSSL 3.
EVP_MAC* hmac_impl() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

struct MacCtxFree {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  if (bytes.empty()) return out;
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  // EVP_DecodeBlock skips whitespace, ignores the meaning of '=' and wants a
  // multiple of four characters, so check the shape here first.
  std::size_t data_len = text.size();
  while (data_len > 0 && text[data_len - 1] == '=') --data_len;
  if (text.size() - data_len > 2) return std::nullopt;
  for (std::size_t i = 0; i < data_len; ++i) {
    if (!is_base64_char(text[i])) return std::nullopt;
  }
  if (data_len % 4 == 1) return std::nullopt;
  std::string padded(text.substr(0, data_len));
  const std::size_t pad = (4 - data_len % 4) % 4;
  if (text.size() != data_len && text.size() != data_len + pad) return std::nullopt;
  padded.append(pad, '=');
  if (padded.empty()) return std::string();
  std::string out(padded.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(padded.data()),
                                static_cast<int>(padded.size()));
  if (n < 0 || static_cast<std::size_t>(n) < pad) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - pad);  // DecodeBlock counts padding as zero bytes
  return out;
}

std::string hex_encode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xF]);
  }
  return out;
}

Expected<std::string> decode_webhook_secret(std::string_view secret) {
  constexpr std::string_view kPrefix = "whsec_";
  if (secret.substr(0, kPrefix.size()) != kPrefix) {
    return invalid_argument("expected whsec_ followed by the base64-encoded key");
  }
  auto key = base64_decode(secret.substr(kPrefix.size()));
  if (!key) return invalid_argument("the part after whsec_ is not valid base64");
  if (key->size() < kMinWebhookKeyBytes || key->size() > kMaxWebhookKeyBytes) {
    return invalid_argument("the decoded key must be " + std::to_string(kMinWebhookKeyBytes) +
                            " to " + std::to_string(kMaxWebhookKeyBytes) + " bytes (it is " +
                            std::to_string(key->size()) + ")");
  }
  return std::move(*key);
}

HmacSha256::HmacSha256(std::string_view key) {
  EVP_MAC* mac = hmac_impl();
  if (mac == nullptr) throw std::runtime_error("HMAC is unavailable in this OpenSSL");
  std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx(EVP_MAC_CTX_new(mac));
  char digest_name[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end()};
  // An empty key is legal for HMAC; OpenSSL wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const auto* key_ptr =
      key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
  if (!ctx || EVP_MAC_init(ctx.get(), key_ptr, key.size(), params) != 1) {
    throw std::runtime_error("HMAC-SHA256 key setup failed");
  }
  keyed_ = ctx.release();
}

HmacSha256::~HmacSha256() {
  EVP_MAC_CTX_free(keyed_);
}

std::string HmacSha256::digest(std::initializer_list<std::string_view> parts) {
  std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx(EVP_MAC_CTX_dup(keyed_));
  if (!ctx) throw std::runtime_error("HMAC-SHA256 failed");
  for (std::string_view p : parts) {
    if (EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(p.data()), p.size()) != 1) {
      throw std::runtime_error("HMAC-SHA256 failed");
    }
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  std::size_t len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  return HmacSha256(key).digest({data});
}

std::string standard_webhook_signature(HmacSha256& key, std::string_view id,
                                       std::int64_t timestamp_s, std::string_view body) {
  const std::string ts = std::to_string(timestamp_s);
  return "v1," + base64_encode(key.digest({id, ".", ts, ".", body}));
}

std::string standard_webhook_signature(std::string_view key, std::string_view id,
                                       std::int64_t timestamp_s, std::string_view body) {
  HmacSha256 hmac(key);
  return standard_webhook_signature(hmac, id, timestamp_s, body);
}

std::string helicone_signature(HmacSha256& key, std::string_view body) {
  return hex_encode(key.digest({body}));
}

std::string helicone_signature(std::string_view key, std::string_view body) {
  return hex_encode(hmac_sha256(key, body));
}

}  // namespace arbiter::scoring
