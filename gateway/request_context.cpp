#include "gateway/request_context.hpp"

#include <openssl/rand.h>
#include <pthread.h>

#include <chrono>
#include <cstring>

#include <array>
#include <atomic>
#include <cctype>
#include <utility>

#include "scoring/request_record.hpp"

namespace arbiter::gateway {
namespace http = boost::beast::http;

namespace {

bool is_hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

bool iequals_prefix(std::string_view s, std::string_view lower_prefix) {
  if (s.size() < lower_prefix.size()) return false;
  for (std::size_t i = 0; i < lower_prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != lower_prefix[i]) return false;
  }
  return true;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_true(std::string_view v) { return v == "true" || v == "True" || v == "TRUE" || v == "1"; }

// "Bearer <token>" → token; the scheme is case-insensitive, surrounding blanks ignored.
std::optional<std::string> bearer_token(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  if (!iequals_prefix(value, "bearer ")) return std::nullopt;
  value.remove_prefix(7);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  return std::string(value);
}

}  // namespace

bool is_valid_request_id(std::string_view id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (id[i] != '-') return false;
    } else if (!is_hex(id[i])) {
      return false;
    }
  }
  const char version = id[14];
  if (version < '1' || version > '5') return false;
  const char variant = static_cast<char>(std::tolower(static_cast<unsigned char>(id[19])));
  return variant == '8' || variant == '9' || variant == 'a' || variant == 'b';
}

namespace {

// Bumped in the child after fork(), so a forked process never reuses the
// parent's reserve of random bytes (and so never repeats its ids).
std::atomic<unsigned> g_fork_generation{0};

unsigned fork_generation() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  return g_fork_generation.load(std::memory_order_relaxed);
}

}  // namespace

std::string new_request_id() {
  // One RAND_bytes call per 512 ids instead of one per id: each call costs a
  // fork check (a getpid syscall) and DRBG bookkeeping (~8k instructions,
  // bench/README). The bytes are the same CSPRNG output, taken from a
  // per-thread reserve.
  struct Reserve {
    std::array<unsigned char, 16 * 256> bytes{};
    std::size_t used = 16 * 256;
    unsigned generation = 0;
  };
  thread_local Reserve reserve;
  const unsigned generation = fork_generation();
  if (reserve.used == reserve.bytes.size() || reserve.generation != generation) {
    if (RAND_bytes(reserve.bytes.data(), static_cast<int>(reserve.bytes.size())) != 1) {
      // The DRBG cannot fail once seeded; if it ever does, an id must still be unique.
      throw std::runtime_error("RAND_bytes failed");
    }
    reserve.used = 0;
    reserve.generation = generation;
  }
  std::array<unsigned char, 16> b{};
  std::memcpy(b.data() + 8, reserve.bytes.data() + reserve.used, 8);
  reserve.used += 8;
  // Time first, in the manner of COMB GUIDs (and of RFC 9562's version 7,
  // whose layout this is): 48 bits of Unix milliseconds, the version nibble,
  // then 12 bits of the millisecond's fraction. Records, bodies, run markers
  // and scores are keyed by request id, so ids that sort by time are appended
  // to RocksDB's memtables and level-0 files instead of scattered over them
  // (bench/README.md, session 19). The version stays 4, as DESIGN.md promises
  // for generated ids; the other 62 bits are the CSPRNG's.
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  const auto ms = static_cast<std::uint64_t>(us / 1000);
  const auto fraction = static_cast<unsigned>((us % 1000) * 4096 / 1000);  // 0..4095
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  b[6] = static_cast<unsigned char>(0x40 | (fraction >> 8));
  b[7] = static_cast<unsigned char>(fraction & 0xff);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0x0f]);
  }
  return out;
}

HeliconeHeaders read_helicone_headers(const http::fields& fields) {
  HeliconeHeaders h;
  for (const auto& f : fields) {
    const std::string_view name = f.name_string();
    const std::string_view value = f.value();
    if (f.name() == http::field::authorization) {
      h.has_authorization = true;
      ++h.authorization_headers;
      if (!h.bearer_key) h.bearer_key = bearer_token(value);
      continue;
    }
    if ((name.size() == 7 && iequals_prefix(name, "api-key")) ||
        (name.size() == 9 && iequals_prefix(name, "x-api-key"))) {
      h.has_api_key_header = true;
      continue;
    }
    if (!iequals_prefix(name, "helicone-")) continue;
    const std::string rest = to_lower(name.substr(9));
    if (rest.rfind("property-", 0) == 0 && rest.size() > 9) {
      h.properties[rest.substr(9)] = std::string(value);
    } else if (rest == "auth") {
      h.auth_key = bearer_token(value);
      if (!h.auth_key && !value.empty()) h.auth_key = std::string(value);  // bare key
    } else if (rest == "request-id") {
      h.request_id = std::string(value);
    } else if (rest == "upstream") {
      h.upstream = std::string(value);
    } else if (rest == "user-id") {
      h.user_id = std::string(value);
    } else if (rest == "session-id") {
      h.session_id = std::string(value);
    } else if (rest == "session-path") {
      h.session_path = std::string(value);
    } else if (rest == "session-name") {
      h.session_name = std::string(value);
    } else if (rest == "omit-request") {
      h.omit_request = is_true(value);
    } else if (rest == "omit-response") {
      h.omit_response = is_true(value);
    }
  }
  return h;
}

namespace {

// nullopt when `value` is storable, else why not.
std::optional<std::string> value_problem(std::string_view value) {
  if (value.size() > kMaxHeliconeValueBytes) {
    return "value longer than " + std::to_string(kMaxHeliconeValueBytes) + " bytes";
  }
  for (std::size_t i = 0; i < value.size();) {
    const auto c = static_cast<unsigned char>(value[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return std::string("value contains a control character");
    const std::size_t n = scoring::utf8_sequence_length(value, i);
    if (n == 0) return std::string("value is not valid UTF-8");
    i += n;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> check_helicone_headers(const HeliconeHeaders& h) {
  if (h.properties.size() > kMaxProperties) {
    return "too many Helicone-Property-* headers (at most " + std::to_string(kMaxProperties) + ")";
  }
  for (const auto& [name, value] : h.properties) {
    // The name is a header token already (the HTTP parser saw to that); only its length is ours.
    if (name.size() > kMaxPropertyNameBytes) {
      return "Helicone-Property-" + name.substr(0, 64) + "...: name longer than " +
             std::to_string(kMaxPropertyNameBytes) + " bytes";
    }
    if (auto p = value_problem(value)) return "Helicone-Property-" + name + ": " + *p;
  }
  const std::pair<const char*, const std::string*> fields[] = {{"Helicone-User-Id", &h.user_id},
                                                               {"Helicone-Session-Id", &h.session_id},
                                                               {"Helicone-Session-Path", &h.session_path},
                                                               {"Helicone-Session-Name", &h.session_name}};
  for (const auto& [header, value] : fields) {
    if (auto p = value_problem(*value)) return std::string(header) + ": " + *p;
  }
  return std::nullopt;
}

}  // namespace arbiter::gateway
