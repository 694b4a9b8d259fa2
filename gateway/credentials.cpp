#include "gateway/credentials.hpp"

#include <algorithm>
#include <array>
#include <boost/beast/http/field.hpp>
#include <cctype>

namespace arbiter::gateway {

namespace {

constexpr std::size_t kMinSecretBytes = 8;

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = ascii_lower(c);
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// Whether s starts with `lowered` (lower-case ASCII), ignoring ASCII case.
bool starts_with_lowered(std::string_view s, std::string_view lowered) {
  if (s.size() < lowered.size()) return false;
  for (std::size_t i = 0; i < lowered.size(); ++i) {
    if (ascii_lower(s[i]) != lowered[i]) return false;
  }
  return true;
}

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())) != 0) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.remove_suffix(1);
  return s;
}

// Query parameters that carry credentials (Google's `?key=`, signed URLs).
bool is_credential_param(std::string_view name) {
  const std::string n = lower(name);
  return n == "key" || n == "api_key" || n == "api-key" || n == "apikey" || n == "access_token" ||
         n == "token" || n == "secret" || n == "client_secret" || n == "password" || n == "sig" ||
         n == "signature";
}

}  // namespace

bool Credentials::is_credential_header(std::string_view header) {
  // Called for every header that goes upstream: lowered on the stack (an
  // SDK's x-stainless-* names are past std::string's inline capacity).
  char buf[64];
  std::string long_name;
  std::string_view name;
  if (header.size() <= sizeof buf) {
    for (std::size_t i = 0; i < header.size(); ++i) buf[i] = ascii_lower(header[i]);
    name = std::string_view(buf, header.size());
  } else {
    long_name = lower(header);
    name = long_name;
  }
  // Helicone's data headers are stored on purpose, whatever their name says.
  if (starts_with(name, "helicone-property-") || starts_with(name, "helicone-session-") ||
      starts_with(name, "helicone-omit-") || name == "helicone-user-id" || name == "helicone-request-id" ||
      name == "helicone-upstream") {
    return false;
  }
  return contains(name, "auth") || contains(name, "key") || contains(name, "secret") || contains(name, "token") ||
         contains(name, "cookie") || contains(name, "password");
}

bool Credentials::is_credential_header(boost::beast::http::field known, std::string_view name) {
  using boost::beast::http::field;
  constexpr std::size_t kKnown = static_cast<std::size_t>(field::xref) + 1;
  static const std::array<bool, kKnown> kTable = [] {
    std::array<bool, kKnown> t{};
    for (std::size_t i = 1; i < kKnown; ++i)
      t[i] = is_credential_header(to_string(static_cast<field>(i)));
    return t;
  }();
  const auto i = static_cast<std::size_t>(known);
  if (i == 0 || i >= kKnown) return is_credential_header(name);
  return kTable[i];
}

void Credentials::consider(boost::beast::http::field known, std::string_view name,
                           std::string_view value) {
  if (is_credential_header(known, name)) remember(value);
}

void Credentials::consider(std::string_view name, std::string_view value) {
  if (is_credential_header(name)) remember(value);
}

void Credentials::remember(std::string_view value) {
  value = trim(value);
  add(value);
  // The credential without its scheme, as it would appear elsewhere; peeled
  // for as long as one leads ("Bearer Basic dXNlcjpwYXNz" is remembered
  // whole, without "Bearer " and without both).
  for (bool peeled = true; peeled;) {
    peeled = false;
    for (const std::string_view scheme : {"bearer ", "basic "}) {
      if (value.size() > scheme.size() && starts_with_lowered(value, scheme)) {
        value = trim(value.substr(scheme.size()));
        add(value);
        peeled = true;
      }
    }
  }
}

void Credentials::add(std::string_view value) {
  if (value.size() >= kMinSecretBytes) values_.emplace_back(value);
}

void Credentials::finish() {
  std::sort(values_.begin(), values_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size() || (a.size() == b.size() && a < b); });
  values_.erase(std::unique(values_.begin(), values_.end()), values_.end());
}

void Credentials::redact(std::string& s) const {
  for (const auto& secret : values_) {
    for (std::size_t pos = s.find(secret); pos != std::string::npos; pos = s.find(secret, pos + kRedacted.size())) {
      s.replace(pos, secret.size(), kRedacted);
    }
  }
}

std::string redact_query(std::string path) {
  const std::size_t q = path.find('?');
  if (q == std::string::npos) return path;
  std::string out = path.substr(0, q + 1);
  std::string_view query = std::string_view(path).substr(q + 1);
  bool first = true;
  while (true) {
    const std::size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    if (!first) out += '&';
    first = false;
    const std::size_t eq = param.find('=');
    if (eq != std::string_view::npos && is_credential_param(param.substr(0, eq))) {
      out.append(param.substr(0, eq + 1));
      out.append(kRedacted);
    } else {
      out.append(param);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace arbiter::gateway
