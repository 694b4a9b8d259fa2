#pragma once
// Credentials seen in a call, kept out of everything the gateway stores.
//
// The proxy collects the credential header values it sends upstream (the
// client's provider key, or the upstream's configured key it injected) and
// the gateway key; the manual logger collects those of the logged call. The
// values travel with the record to the storage thread, which removes every
// occurrence from the stored text (an upstream may echo a key back in its
// body) before anything is written. Query parameters that carry credentials
// (`?key=`, `?api_key=`, signatures) are masked in stored paths.
//
// A plain value type; not thread-safe for concurrent mutation.

#include <string>
#include <string_view>
#include <vector>

namespace boost::beast::http {
enum class field : unsigned short;
}

namespace arbiter::gateway {

inline constexpr std::string_view kRedacted = "[REDACTED]";

class Credentials {
 public:
  // Whether a header of this name carries a credential (Authorization,
  // api-key, x-api-key, cookies, tokens, ...). Helicone's data headers
  // (properties, session, user, request id) are stored on purpose and never count.
  static bool is_credential_header(std::string_view name);
  // The same answer for a header Beast's parser named: for a field it knows
  // (anything but field::unknown) from a table made once from the names it
  // spells, so the proxy's common headers cost one lookup.
  static bool is_credential_header(boost::beast::http::field known, std::string_view name);

  // Remembers `value` when `name` is a credential header: the whole value,
  // and the credential without each "Bearer "/"Basic " scheme that leads it.
  void consider(std::string_view name, std::string_view value);
  void consider(boost::beast::http::field known, std::string_view name, std::string_view value);
  // Remembers a value known to be a credential. Values shorter than 8 bytes
  // ("true", "1") are not secrets, and replacing them would mangle text.
  void add(std::string_view value);
  // Orders the values longest first (a key that contains another is removed
  // whole) and drops duplicates. Call once after the last consider/add.
  void finish();

  // Replaces every occurrence of every remembered value with kRedacted.
  void redact(std::string& text) const;

  bool empty() const { return values_.empty(); }
  const std::vector<std::string>& values() const { return values_; }

 private:
  // A credential header's value: whole, and without each leading scheme.
  void remember(std::string_view value);

  std::vector<std::string> values_;
};

// `path` with the values of credential query parameters replaced by kRedacted.
std::string redact_query(std::string path);

}  // namespace arbiter::gateway
