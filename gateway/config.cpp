#include "gateway/config.hpp"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "plugins/event_path.hpp"
#include "scoring/request_record.hpp"
#include "scoring/webhook_signing.hpp"

namespace arbiter::gateway {
namespace {

// Upper bound for every *_ms setting: large enough for any sane timeout, small
// enough that `now() + timeout` can never overflow a clock.
constexpr std::uint64_t kMaxMillis = 24ull * 60 * 60 * 1000;
constexpr std::uint64_t kMaxThreads = 1024;
constexpr std::size_t kMaxNameLength = 64;

// A scalar after ${VAR} expansion. Values that came from the environment may
// be secrets, so error messages never echo them.
struct Text {
  std::string value;
  bool from_env = false;
};

// A value together with the key path and line used in messages. The line is
// the key's line: yaml-cpp marks an empty value at the *next* token, which
// would point at the wrong line.
struct Entry {
  std::string path;
  int line = 0;  // 1-based; 0 = no line (the key is absent from the file)
  YAML::Node value;
};

int line_of(const YAML::Mark& mark, int fallback) {
  return mark.is_null() ? fallback : mark.line + 1;
}

std::string child_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string item_path(const std::string& parent, std::size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

bool has_space_or_control(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool is_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool is_env_name(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Names end up in logs, metric labels and storage keys, so keep them plain.
bool is_plain_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::optional<std::uint16_t> parse_port(std::string_view s, std::uint16_t min) {
  if (!is_digits(s) || s.size() > 5) return std::nullopt;
  unsigned value = 0;
  std::from_chars(s.data(), s.data() + s.size(), value);
  if (value < min || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

bool is_ipv4(const std::string& s) {
  in_addr addr{};
  return ::inet_pton(AF_INET, s.c_str(), &addr) == 1;
}

bool is_ipv6(const std::string& s) {
  in6_addr addr{};
  return ::inet_pton(AF_INET6, s.c_str(), &addr) == 1;
}

bool is_hostname(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// RFC 9110 token characters (header names).
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  }
  return false;
}

// "" on success, otherwise why `text` is not a listen address.
std::string parse_listen(const std::string& text, ListenerConfig& out) {
  std::string host;
  std::string_view port;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return "expected [IPv6]:port";
    }
    host = text.substr(1, close - 1);
    if (!is_ipv6(host)) return "invalid IPv6 address";
    port = std::string_view(text).substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) return "expected host:port";
    host = text.substr(0, colon);
    if (host.find(':') != std::string::npos) return "IPv6 addresses must be written as [addr]:port";
    if (!is_ipv4(host)) return "expected an IPv4 address or [IPv6] before the port";
    port = std::string_view(text).substr(colon + 1);
  }
  const auto parsed = parse_port(port, 0);
  if (!parsed) return "invalid port (expected 0-65535)";
  out.host = std::move(host);
  out.port = *parsed;
  return "";
}

// "" on success, otherwise why `url` is not a usable base_url. Never includes
// the URL itself: it may come from the environment or carry credentials.
std::string parse_base_url(const std::string& url, UpstreamConfig& out) {
  std::string_view rest = url;
  const auto scheme_end = rest.find("://");
  if (scheme_end == std::string_view::npos) return "expected an http:// or https:// URL";
  std::string scheme(rest.substr(0, scheme_end));
  for (char& c : scheme) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (scheme != "http" && scheme != "https") return "expected an http:// or https:// URL";
  rest.remove_prefix(scheme_end + 3);

  if (rest.find('#') != std::string_view::npos) return "fragments are not allowed";
  if (rest.find('?') != std::string_view::npos) return "query strings are not allowed";

  const auto authority_end = rest.find('/');
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view path =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return "credentials in the URL are not allowed (use api_key)";
  }

  std::string host;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority[0] == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return "invalid IPv6 address";
    host = std::string(authority.substr(1, close - 1));
    if (!is_ipv6(host)) return "invalid IPv6 address";
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return "invalid host";
      has_port = true;
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      has_port = true;
      port = authority.substr(colon + 1);
    }
    if (host.empty()) return "missing host";
    if (!is_hostname(host)) return "invalid host";
  }
  if (has_port && !parse_port(port, 1)) return "invalid port (expected 1-65535)";

  for (unsigned char c : path) {
    if (c <= 0x20 || c >= 0x7f) return "invalid character in path";
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);

  out.tls = scheme == "https";
  out.host = std::move(host);
  out.port = has_port ? std::string(port) : (out.tls ? "443" : "80");
  out.base_path = std::string(path);
  return "";
}

std::optional<KeyHash> parse_hex_digest(std::string_view hex) {
  KeyHash out{};
  if (hex.size() != out.size() * 2) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return out;
}

// "" if `path` can be opened and read, otherwise the reason.
std::string unreadable_reason(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return std::generic_category().message(errno);
  std::string reason;
  // fopen succeeds on a directory; the first read is what fails.
  if (std::fgetc(file) == EOF && std::ferror(file)) reason = std::generic_category().message(errno);
  std::fclose(file);
  return reason;
}

using SeenNames = std::map<std::string, int, std::less<>>;  // name → line first seen

class Loader;

// The keys of one YAML mapping. Rejects unknown and duplicated keys up front,
// so a typo fails even when the misspelt setting has a default.
class MapReader {
 public:
  MapReader(const Loader& loader, const Entry& map, std::initializer_list<std::string_view> known);

  std::optional<Entry> find(std::string_view key) const;
  Entry require(std::string_view key) const;

 private:
  const Loader& loader_;
  Entry map_;
  std::map<std::string, Entry, std::less<>> entries_;
};

class Loader {
 public:
  explicit Loader(std::string source) : source_(std::move(source)) {}

  Config load(const std::string& yaml) const;

  [[noreturn]] void fail(int line, const std::string& path, std::string_view message) const {
    std::string what = source_;
    if (line > 0) what += ":" + std::to_string(line);
    what += ": ";
    if (!path.empty()) what += path + ": ";
    what += message;
    throw ConfigError(what);
  }
  [[noreturn]] void fail(const Entry& at, std::string_view message) const {
    fail(at.line, at.path, message);
  }

 private:
  Config load_root(const YAML::Node& root) const;
  ServerConfig server(const Entry& at, int& anonymous_line) const;
  void limits(const Entry& at, LimitsConfig& out) const;
  ListenerConfig listener(const Entry& at, ListenerConfig defaults) const;
  TlsConfig tls(const Entry& at) const;
  StorageConfig storage(const Entry& at) const;
  std::vector<UpstreamConfig> upstreams(const std::optional<Entry>& at) const;
  UpstreamConfig upstream(const Entry& at, SeenNames& seen) const;
  std::vector<ProjectConfig> projects(const std::optional<Entry>& at) const;
  std::vector<ModelPrice> pricing(const Entry& at) const;
  std::vector<EvaluatorConfig> evaluators(const Entry& at) const;
  EvaluatorConfig evaluator(const Entry& at, SeenNames& seen) const;
  EvaluatorFilterConfig evaluator_filter(const Entry& at) const;
  EvaluatorRetryConfig evaluator_retry(const Entry& at) const;
  nlohmann::json json_value(const Entry& at, int depth) const;
  double number(const Entry& at, double min, double max) const;
  std::string unique_name(const Entry& at, std::string_view kind, SeenNames& seen) const;
  std::vector<WebhookConfig> webhooks(const Entry& at, const std::vector<ProjectConfig>& projects) const;
  WebhookConfig webhook(const Entry& at, SeenNames& seen, const std::vector<ProjectConfig>& projects) const;
  // The entries of a mapping whose keys are data (filters, headers), with
  // each key's own line.
  std::vector<std::pair<Entry, Entry>> pairs(const Entry& at) const;

  std::vector<Entry> items(const Entry& at) const;
  Text expand(const Entry& at, const std::string& raw) const;
  Text text(const Entry& at) const;
  std::string name(const Entry& at) const;
  std::string readable_file(const Entry& at) const;
  std::uint64_t integer(const Entry& at, std::uint64_t min, std::uint64_t max) const;
  std::chrono::milliseconds millis(const Entry& at, bool allow_zero) const;
  bool boolean(const Entry& at) const;

  std::string source_;
};

MapReader::MapReader(const Loader& loader, const Entry& map,
                     std::initializer_list<std::string_view> known)
    : loader_(loader), map_(map) {
  // An empty value (`server:` with everything commented out) means "all defaults".
  if (map.value.IsNull()) return;
  if (!map.value.IsMap()) loader_.fail(map, "expected a mapping");
  const std::string where = map.path.empty() ? "" : " in " + map.path;
  for (const auto& kv : map.value) {
    const int line = line_of(kv.first.Mark(), map.line);
    if (!kv.first.IsScalar()) loader_.fail(line, "", "keys must be plain strings" + where);
    const std::string& key = kv.first.Scalar();
    bool is_known = false;
    for (std::string_view k : known) is_known = is_known || k == key;
    if (!is_known) loader_.fail(line, "", "unknown key '" + key + "'" + where);
    Entry entry{child_path(map.path, key), line, kv.second};
    if (!entries_.emplace(key, std::move(entry)).second) {
      loader_.fail(line, "", "duplicate key '" + key + "'" + where);
    }
  }
}

std::optional<Entry> MapReader::find(std::string_view key) const {
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

Entry MapReader::require(std::string_view key) const {
  auto entry = find(key);
  if (!entry) loader_.fail(map_, "missing required key '" + std::string(key) + "'");
  return *entry;
}

// yaml-cpp 0.7 never returns from LoadAll (it allocates until it dies) on
// many documents where a ',' starts a token outside a flow collection. Found
// by the config_loader fuzz target: ",q", "&q,", "!!str a\n,", "- a\n,q",
// "[1],q", "\"a\",q". Such a ',' is not valid YAML there (except as the first
// character of a plain scalar's continuation line, which must then be
// quoted), so it is refused before yaml-cpp sees it. A line-based scan:
// quoted scalars, comments, flow collections and block scalars are skipped;
// a ',' counts when it begins a line's content or follows a property, a
// closed flow collection or a quoted scalar. Returns its 1-based line, or 0.
int stray_flow_entry_line(std::string_view y) {
  int first_stray = 0;
  int line = 1;
  int flow_depth = 0;
  int block_scalar_indent = -1;  // > -1: skipping a block scalar's content lines
  std::size_t i = 0;
  while (i < y.size()) {
    // Start of a line: indentation, then maybe still inside a block scalar.
    int indent = 0;
    while (i < y.size() && y[i] == ' ') {
      ++i;
      ++indent;
    }
    const bool blank = i >= y.size() || y[i] == '\n' || y[i] == '\r';
    if (block_scalar_indent >= 0 && (blank || indent > block_scalar_indent)) {
      while (i < y.size() && y[i] != '\n') ++i;
    } else {
      block_scalar_indent = -1;
      bool token_start = true;
      while (i < y.size() && y[i] != '\n') {
        const char c = y[i];
        if (c == ' ' || c == '\t' || c == '\r') {
          ++i;
          continue;
        }
        if (c == '#' && (token_start || y[i - 1] == ' ' || y[i - 1] == '\t')) {
          while (i < y.size() && y[i] != '\n') ++i;
          break;
        }
        if (token_start && (c == '&' || c == '!')) {
          while (i < y.size() && y[i] != ' ' && y[i] != '\t' && y[i] != '\n' && y[i] != ',' && y[i] != '[' &&
                 y[i] != ']' && y[i] != '{' && y[i] != '}')
            ++i;
          continue;  // still at a token start
        }
        if (token_start && (c == '"' || c == '\'')) {
          for (++i; i < y.size(); ++i) {
            if (y[i] == '\n') ++line;
            if (c == '"' && y[i] == '\\') {
              if (i + 1 < y.size() && y[i + 1] == '\n') ++line;
              ++i;
            } else if (y[i] == c) {
              if (c == '\'' && i + 1 < y.size() && y[i + 1] == '\'') {
                ++i;
              } else {
                break;
              }
            }
          }
          ++i;
          continue;  // a ',' right after a quoted scalar starts a token
        }
        if ((c == '[' || c == '{') && (token_start || flow_depth > 0)) {
          ++flow_depth;
        } else if ((c == ']' || c == '}') && flow_depth > 0) {
          --flow_depth;
          ++i;
          token_start = true;  // so does one after a closed flow collection
          continue;
        } else if (c == ',' && token_start && flow_depth == 0) {
          if (first_stray == 0) first_stray = line;
        } else if (token_start && flow_depth == 0 && (c == '|' || c == '>')) {
          std::size_t j = i + 1;
          while (j < y.size() && (y[j] == '+' || y[j] == '-' || (y[j] >= '0' && y[j] <= '9'))) ++j;
          while (j < y.size() && (y[j] == ' ' || y[j] == '\t' || y[j] == '\r')) ++j;
          if (j >= y.size() || y[j] == '\n' || y[j] == '#') block_scalar_indent = indent;
        }
        token_start = (c == '-' || c == '?' || c == ':') && (i + 1 >= y.size() || y[i + 1] == ' ' || y[i + 1] == '\n');
        if (c == '[' || c == '{' || c == ',') token_start = flow_depth > 0;
        ++i;
      }
    }
    if (i < y.size()) {
      ++i;  // '\n'
      ++line;
    }
  }
  return first_stray;
}

// A configuration is text: control bytes (other than tab, CR, LF) and invalid
// UTF-8 have no place in it, and yaml-cpp 0.7 can loop forever on some of
// them (an anchor name holding control bytes before nested brackets, found by
// the config_loader fuzz target). Returns the 1-based line of the first, or 0.
int bad_byte_line(std::string_view y) {
  int line = 1;
  for (std::size_t i = 0; i < y.size();) {
    const auto c = static_cast<unsigned char>(y[i]);
    if (c == '\n') ++line;
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return line;
      ++i;
      continue;
    }
    const std::size_t n = scoring::utf8_sequence_length(y, i);
    if (n == 0) return line;
    i += n;
  }
  return 0;
}

// Where a second YAML document starts, if there is one. Not YAML::LoadAll:
// yaml-cpp 0.7's LoadAll never returns on some invalid input (its parser keeps
// reporting a new, empty document without consuming the token it stopped at,
// and LoadAll collects them until memory runs out; fixed upstream in
// jbeder/yaml-cpp#1319). Found by the config_loader fuzz target
// (tests/fuzz/corpus/config_loader/regress_loadall_empty_documents). Asking
// the parser for at most two documents through an event handler that builds
// nothing cannot loop; YAML::Load then parses the first document alone.
std::optional<YAML::Mark> second_document_mark(const std::string& yaml) {
  struct DocumentStarts final : YAML::EventHandler {
    std::vector<YAML::Mark> starts;
    void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  } handler;
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  for (int i = 0; i < 2 && parser.HandleNextDocument(handler); ++i) {
  }
  if (handler.starts.size() < 2) return std::nullopt;
  return handler.starts[1];
}

Config Loader::load(const std::string& yaml) const {
  if (const int line = bad_byte_line(yaml)) {
    fail(line, "", "invalid text: a control character or invalid UTF-8 (a config file is UTF-8 text)");
  }
  if (const int line = stray_flow_entry_line(yaml)) {
    fail(line, "", "invalid YAML: ',' outside a flow collection ([...] or {...}); quote the value if it is text");
  }
  YAML::Node root;
  try {
    if (const auto second = second_document_mark(yaml)) {
      fail(line_of(*second, 0), "", "only one YAML document is allowed");
    }
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    fail(line_of(e.mark, 0), "", "invalid YAML: " + e.msg);
  }
  return load_root(root);
}

Config Loader::load_root(const YAML::Node& root) const {
  const Entry top_entry{"", line_of(root.Mark(), 0), root};
  if (!root.IsNull() && !root.IsMap()) fail(top_entry, "expected a mapping at the top level");
  const MapReader top(*this, top_entry,
                      {"server", "storage", "upstreams", "projects", "pricing", "evaluators", "webhooks"});

  Config config;
  config.source_file = source_;
  int anonymous_line = 0;
  if (auto at = top.find("server")) config.server = server(*at, anonymous_line);
  if (auto at = top.find("storage")) config.storage = storage(*at);
  config.upstreams = upstreams(top.find("upstreams"));
  config.projects = projects(top.find("projects"));
  if (auto at = top.find("pricing")) config.pricing = pricing(*at);
  if (auto at = top.find("evaluators")) config.evaluators = evaluators(*at);
  if (auto at = top.find("webhooks")) config.webhooks = webhooks(*at, config.projects);

  // The injected key must only ever serve callers who proved they are ours.
  if (config.server.allow_anonymous) {
    for (const auto& u : config.upstreams) {
      if (!u.api_key.empty()) {
        fail(anonymous_line, "server.allow_anonymous",
             "cannot be true while upstream '" + u.name +
                 "' has an api_key (anonymous calls would be sent with the provider key)");
      }
    }
  }
  return config;
}

ServerConfig Loader::server(const Entry& at, int& anonymous_line) const {
  const MapReader m(*this, at,
                    {"proxy_listen", "api_listen", "tls", "proxy_tls", "api_tls", "threads", "api_workers",
                     "evaluator_workers", "evaluator_queue_capacity", "evaluator_nice", "evaluator_sched_idle",
                     "background_nice", "malloc_arenas", "log_level",
                     "allow_anonymous",
                     "drain_timeout_ms", "limits"});
  ServerConfig s;
  if (auto e = m.find("proxy_listen")) s.proxy = listener(*e, s.proxy);
  if (auto e = m.find("api_listen")) s.api = listener(*e, s.api);
  // `tls` (DESIGN.md §5) applies to both listeners; proxy_tls / api_tls override it.
  std::optional<TlsConfig> shared_tls;
  if (auto e = m.find("tls")) shared_tls = tls(*e);
  s.proxy.tls = shared_tls;
  s.api.tls = shared_tls;
  if (auto e = m.find("proxy_tls")) s.proxy.tls = tls(*e);
  if (auto e = m.find("api_tls")) s.api.tls = tls(*e);

  if (s.proxy.port != 0 && s.proxy.host == s.api.host && s.proxy.port == s.api.port) {
    const auto api = m.find("api_listen");
    fail(api ? *api : m.require("proxy_listen"), "proxy_listen and api_listen must differ");
  }

  if (auto e = m.find("threads")) s.threads = static_cast<unsigned>(integer(*e, 0, kMaxThreads));
  if (auto e = m.find("api_workers")) s.api_workers = static_cast<unsigned>(integer(*e, 1, kMaxThreads));
  if (auto e = m.find("evaluator_workers")) {
    s.evaluator_workers = static_cast<unsigned>(integer(*e, 1, kMaxThreads));
  }
  if (auto e = m.find("evaluator_queue_capacity")) s.evaluator_queue_capacity = integer(*e, 1, 1u << 24);
  if (auto e = m.find("evaluator_nice")) s.evaluator_nice = static_cast<unsigned>(integer(*e, 0, 19));
  if (auto e = m.find("evaluator_sched_idle")) s.evaluator_sched_idle = boolean(*e);
  if (auto e = m.find("background_nice")) s.background_nice = static_cast<unsigned>(integer(*e, 0, 19));
  if (auto e = m.find("malloc_arenas")) s.malloc_arenas = static_cast<unsigned>(integer(*e, 0, 1024));
  if (auto e = m.find("log_level")) {
    static const std::map<std::string, LogLevel, std::less<>> kLevels = {
        {"debug", LogLevel::debug},
        {"info", LogLevel::info},
        {"warn", LogLevel::warn},
        {"error", LogLevel::error}};
    const Text t = text(*e);
    const auto it = kLevels.find(t.value);
    if (it == kLevels.end()) {
      fail(*e, "invalid value" + (t.from_env ? std::string() : " '" + t.value + "'") +
                   " (expected debug, info, warn or error)");
    }
    s.log_level = it->second;
  }
  if (auto e = m.find("allow_anonymous")) {
    s.allow_anonymous = boolean(*e);
    anonymous_line = e->line;
  }
  if (auto e = m.find("drain_timeout_ms")) s.drain_timeout = millis(*e, true);
  if (auto e = m.find("limits")) limits(*e, s.limits);
  return s;
}

void Loader::limits(const Entry& at, LimitsConfig& out) const {
  const MapReader m(*this, at,
                    {"max_header_bytes", "max_body_bytes", "header_timeout_ms", "idle_timeout_ms",
                     "body_timeout_ms", "max_connections"});
  // Beast's header limit is a uint32_t.
  if (auto e = m.find("max_header_bytes")) {
    out.max_header_bytes = integer(*e, 1, std::numeric_limits<std::uint32_t>::max());
  }
  if (auto e = m.find("max_body_bytes")) {
    out.max_body_bytes = integer(*e, 1, std::numeric_limits<std::uint64_t>::max());
  }
  if (auto e = m.find("header_timeout_ms")) out.header_timeout = millis(*e, false);
  if (auto e = m.find("idle_timeout_ms")) out.idle_timeout = millis(*e, false);
  if (auto e = m.find("body_timeout_ms")) out.body_timeout = millis(*e, false);
  if (auto e = m.find("max_connections")) {
    out.max_connections = integer(*e, 1, std::numeric_limits<std::size_t>::max());
  }
}

ListenerConfig Loader::listener(const Entry& at, ListenerConfig defaults) const {
  const Text t = text(at);
  const std::string error = parse_listen(t.value, defaults);
  if (!error.empty()) fail(at, error);
  return defaults;
}

TlsConfig Loader::tls(const Entry& at) const {
  const MapReader m(*this, at, {"cert_file", "key_file"});
  TlsConfig t;
  t.cert_file = readable_file(m.require("cert_file"));
  t.key_file = readable_file(m.require("key_file"));
  return t;
}

StorageConfig Loader::storage(const Entry& at) const {
  const MapReader m(*this, at,
                    {"path", "durability", "retention_days", "queue_capacity", "batch_window_ms",
                     "max_logged_body_bytes", "log_requests"});
  StorageConfig s;
  if (auto e = m.find("path")) {
    s.path = text(*e).value;
    if (s.path.empty()) fail(*e, "must not be empty");
  }
  if (auto e = m.find("durability")) {
    const Text t = text(*e);
    if (t.value == "relaxed") {
      s.durability = Durability::relaxed;
    } else if (t.value == "strict") {
      s.durability = Durability::strict;
    } else {
      fail(*e, "invalid value" + (t.from_env ? std::string() : " '" + t.value + "'") +
                   " (expected relaxed or strict)");
    }
  }
  if (auto e = m.find("retention_days")) {
    s.retention_days = static_cast<unsigned>(integer(*e, 0, std::numeric_limits<unsigned>::max()));
  }
  if (auto e = m.find("queue_capacity")) s.queue_capacity = integer(*e, 1, 1u << 24);
  if (auto e = m.find("batch_window_ms")) s.batch_window = millis(*e, false);
  if (auto e = m.find("max_logged_body_bytes")) s.max_logged_body_bytes = integer(*e, 0, 64u << 20);
  if (auto e = m.find("log_requests")) s.log_requests = boolean(*e);
  return s;
}

std::vector<ModelPrice> Loader::pricing(const Entry& at) const {
  std::vector<ModelPrice> out;
  std::set<std::string> seen;
  for (const Entry& item : items(at)) {
    const MapReader m(*this, item, {"model", "input_per_million", "output_per_million"});
    ModelPrice p;
    const Entry model = m.require("model");
    p.model = text(model).value;
    if (p.model.empty()) fail(model, "must not be empty");
    if (p.model.find('*') != std::string::npos && p.model.find('*') != p.model.size() - 1) {
      fail(model, "'*' is only allowed at the end");
    }
    if (!seen.insert(p.model).second) fail(model, "duplicate model '" + p.model + "'");
    p.input_per_million = number(m.require("input_per_million"), 0, 1e6);
    p.output_per_million = number(m.require("output_per_million"), 0, 1e6);
    out.push_back(std::move(p));
  }
  return out;
}

double Loader::number(const Entry& at, double min, double max) const {
  if (!at.value.IsScalar() || at.value.Tag() != "?") fail(at, "expected a number");
  const Text t = expand(at, at.value.Scalar());
  const std::string& v = t.value;
  char* end = nullptr;
  errno = 0;
  const double d = v.empty() ? 0 : std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno != 0 || !std::isfinite(d)) fail(at, "expected a number");
  if (d < min || d > max) {
    fail(at, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return d;
}

std::vector<UpstreamConfig> Loader::upstreams(const std::optional<Entry>& at) const {
  if (!at) fail(0, "upstreams", "at least one upstream is required");
  std::vector<UpstreamConfig> out;
  SeenNames seen;
  for (const Entry& item : items(*at)) out.push_back(upstream(item, seen));
  if (out.empty()) fail(*at, "at least one upstream is required");
  return out;
}

UpstreamConfig Loader::upstream(const Entry& at, SeenNames& seen) const {
  const MapReader m(
      *this, at,
      {"name", "base_url", "api_key", "ca_file", "verify_tls", "connect_timeout_ms", "timeout_ms",
       "idle_timeout_ms", "max_idle_connections", "pool_idle_timeout_ms"});
  UpstreamConfig u;
  u.name = unique_name(m.require("name"), "upstream", seen);
  const Entry url = m.require("base_url");
  u.base_url = text(url).value;
  const std::string error = parse_base_url(u.base_url, u);
  if (!error.empty()) fail(url, "invalid URL: " + error);
  if (auto e = m.find("api_key")) {
    u.api_key = text(*e).value;
    // It goes into a header verbatim; whitespace or CR/LF would corrupt the request.
    if (has_space_or_control(u.api_key)) fail(*e, "invalid value");
  }
  if (auto e = m.find("ca_file")) {
    // Empty is allowed so `${CA_FILE:-}` can mean "system store only".
    if (!text(*e).value.empty()) u.ca_file = readable_file(*e);
  }
  if (auto e = m.find("verify_tls")) u.verify_tls = boolean(*e);
  if (auto e = m.find("connect_timeout_ms")) u.connect_timeout = millis(*e, false);
  if (auto e = m.find("timeout_ms")) u.timeout = millis(*e, false);
  if (auto e = m.find("idle_timeout_ms")) u.idle_timeout = millis(*e, false);
  if (auto e = m.find("max_idle_connections")) {
    u.max_idle_connections = integer(*e, 0, std::numeric_limits<std::size_t>::max());
  }
  if (auto e = m.find("pool_idle_timeout_ms")) u.pool_idle_timeout = millis(*e, false);
  return u;
}

std::vector<ProjectConfig> Loader::projects(const std::optional<Entry>& at) const {
  if (!at) fail(0, "projects", "at least one project is required");
  std::vector<ProjectConfig> out;
  SeenNames seen;
  std::map<KeyHash, std::string> key_owner;  // a key must select exactly one project
  for (const Entry& item : items(*at)) {
    const MapReader m(*this, item, {"name", "api_keys"});
    ProjectConfig p;
    p.name = unique_name(m.require("name"), "project", seen);
    if (auto keys = m.find("api_keys")) {
      for (const Entry& key : items(*keys)) {
        KeyHash hash{};
        if (key.value.IsMap()) {
          const MapReader km(*this, key, {"sha256"});
          const Entry hex = km.require("sha256");
          const auto parsed = parse_hex_digest(text(hex).value);
          if (!parsed) fail(hex, "expected 64 hex characters");
          hash = *parsed;
        } else if (key.value.IsScalar()) {
          const Text plain = expand(key, key.value.Scalar());
          if (plain.value.empty()) fail(key, "empty key");
          if (has_space_or_control(plain.value)) {
            fail(key, "key contains whitespace or control characters");
          }
          hash = sha256_key(plain.value);
        } else {
          fail(key, "expected a key string or {sha256: <hex>}");
        }
        const auto [owner, fresh] = key_owner.emplace(hash, p.name);
        if (!fresh) {
          fail(key, owner->second == p.name
                        ? "duplicate key"
                        : "key is already used by project '" + owner->second + "'");
        }
        p.key_hashes.push_back(hash);
      }
    }
    out.push_back(std::move(p));
  }
  if (out.empty()) fail(*at, "at least one project is required");
  return out;
}

std::vector<EvaluatorConfig> Loader::evaluators(const Entry& at) const {
  std::vector<EvaluatorConfig> out;
  SeenNames seen;
  for (const Entry& item : items(at)) out.push_back(evaluator(item, seen));
  return out;
}

EvaluatorConfig Loader::evaluator(const Entry& at, SeenNames& seen) const {
  const MapReader m(*this, at,
                    {"name", "kind", "filter", "sampling", "needs", "score", "timeout_ms",
                     "concurrency", "retry", "params"});
  EvaluatorConfig e;
  e.line = at.line;
  e.name = unique_name(m.require("name"), "evaluator", seen);
  const Entry kind = m.require("kind");
  e.kind = text(kind).value;
  if (!is_plain_name(e.kind)) fail(kind, "expected a kind name such as response_length, llm_judge, http or plugin");
  if (auto f = m.find("filter")) e.filter = evaluator_filter(*f);
  if (auto f = m.find("sampling")) e.sampling = static_cast<unsigned>(integer(*f, 0, 100));
  if (auto f = m.find("needs")) {
    for (const Entry& need : items(*f)) {
      std::string path = text(need).value;
      if (!plugins::valid_event_path(path)) {
        fail(need, "expected an event path such as feedback.ground_truth (dot-separated, no empty segment)");
      }
      e.needs.push_back(std::move(path));
    }
  }
  e.score_name = e.name;
  if (auto f = m.find("score")) {
    const MapReader sm(*this, *f, {"name", "data_type"});
    if (auto n = sm.find("name")) {
      e.score_name = text(*n).value;
      // Same rule as the score API (scoring::validate_score_name), minus the
      // UTF-8 check yaml-cpp has already done.
      if (e.score_name.empty() || e.score_name.size() > 255) fail(*n, "expected 1-255 bytes");
      for (unsigned char c : e.score_name) {
        if (c < 0x20 || c == 0x7f) fail(*n, "control characters are not allowed");
      }
    }
    if (auto t = sm.find("data_type")) {
      e.score_data_type = text(*t).value;
      if (e.score_data_type != "NUMERIC" && e.score_data_type != "BOOLEAN" &&
          e.score_data_type != "CATEGORICAL") {
        fail(*t, "expected NUMERIC, BOOLEAN or CATEGORICAL");
      }
    }
  }
  if (auto f = m.find("timeout_ms")) e.timeout = millis(*f, false);
  if (auto f = m.find("concurrency")) e.concurrency = static_cast<unsigned>(integer(*f, 1, kMaxThreads));
  if (auto f = m.find("retry")) e.retry = evaluator_retry(*f);
  if (auto f = m.find("params")) {
    if (!f->value.IsNull() && !f->value.IsMap()) fail(*f, "expected a mapping");
    e.params = std::make_shared<const nlohmann::json>(json_value(*f, 0));
  } else {
    e.params = std::make_shared<const nlohmann::json>(nlohmann::json::object());
  }
  return e;
}

EvaluatorFilterConfig Loader::evaluator_filter(const Entry& at) const {
  const MapReader m(*this, at, {"path", "model", "properties", "status"});
  EvaluatorFilterConfig f;
  if (auto e = m.find("path")) f.path = text(*e).value;
  if (auto e = m.find("model")) f.model = text(*e).value;
  if (auto e = m.find("properties")) {
    if (!e->value.IsNull() && !e->value.IsMap()) fail(*e, "expected a mapping of property names to values");
    if (e->value.IsMap()) {
      for (const auto& kv : e->value) {
        const int line = line_of(kv.first.Mark(), e->line);
        if (!kv.first.IsScalar()) fail(line, e->path, "property names must be plain strings");
        std::string key = kv.first.Scalar();
        for (char& c : key) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        const Entry value{child_path(e->path, key), line_of(kv.second.Mark(), line), kv.second};
        if (key.empty()) fail(value, "empty property name");
        if (!f.properties.emplace(key, text(value).value).second) {
          fail(value, "duplicate property (names are case-insensitive)");
        }
      }
    }
  }
  if (auto e = m.find("status")) {
    // `status: 200` arrives as a plain scalar, `status: 2xx` too.
    const std::string v = text(*e).value;
    const bool is_class = v.size() == 3 && v[0] >= '1' && v[0] <= '5' && (v[1] == 'x' || v[1] == 'X') &&
                          (v[2] == 'x' || v[2] == 'X');
    const bool is_code = v.size() == 3 && is_digits(v) && v[0] >= '1' && v[0] <= '5';
    if (!is_class && !is_code) fail(*e, "expected a status class such as 2xx or a code such as 200");
    f.status = is_class ? std::string{v[0], 'x', 'x'} : v;
  }
  return f;
}

EvaluatorRetryConfig Loader::evaluator_retry(const Entry& at) const {
  const MapReader m(*this, at, {"max_attempts", "initial_backoff_ms", "max_backoff_ms"});
  EvaluatorRetryConfig r;
  if (auto e = m.find("max_attempts")) r.max_attempts = static_cast<unsigned>(integer(*e, 1, 100));
  if (auto e = m.find("initial_backoff_ms")) r.initial_backoff = millis(*e, true);
  if (auto e = m.find("max_backoff_ms")) r.max_backoff = millis(*e, true);
  if (r.max_backoff < r.initial_backoff) {
    fail(m.find("max_backoff_ms") ? *m.find("max_backoff_ms") : at,
         "max_backoff_ms must not be smaller than initial_backoff_ms");
  }
  return r;
}

// A YAML node as JSON, for kind-specific params: mappings → objects (string
// keys), sequences → arrays, plain scalars → null / bool / integer / number /
// string as YAML 1.2's core schema reads them, quoted scalars → strings.
// ${VAR} is expanded in every scalar (params may carry header secrets).
nlohmann::json Loader::json_value(const Entry& at, int depth) const {
  constexpr int kMaxDepth = 32;
  if (depth > kMaxDepth) fail(at, "nested deeper than " + std::to_string(kMaxDepth) + " levels");
  const YAML::Node& n = at.value;
  if (n.IsNull()) return depth == 0 ? nlohmann::json::object() : nlohmann::json(nullptr);
  if (n.IsMap()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& kv : n) {
      const int line = line_of(kv.first.Mark(), at.line);
      if (!kv.first.IsScalar()) fail(line, at.path, "keys must be plain strings");
      const std::string& key = kv.first.Scalar();
      if (out.contains(key)) fail(line, at.path, "duplicate key '" + key + "'");
      out[key] = json_value(Entry{child_path(at.path, key), line, kv.second}, depth + 1);
    }
    return out;
  }
  if (n.IsSequence()) {
    nlohmann::json out = nlohmann::json::array();
    std::size_t index = 0;
    for (const YAML::Node& item : n) {
      out.push_back(json_value(Entry{item_path(at.path, index), line_of(item.Mark(), at.line), item},
                               depth + 1));
      ++index;
    }
    return out;
  }
  if (!n.IsScalar()) fail(at, "unsupported YAML value");
  const Text t = expand(at, n.Scalar());
  if (n.Tag() != "?") return t.value;  // quoted: always a string
  const std::string& v = t.value;
  if (v == "null" || v == "~" || v.empty()) return nullptr;
  if (v == "true") return true;
  if (v == "false") return false;
  const bool negative = !v.empty() && v[0] == '-';
  if (is_digits(negative ? std::string_view(v).substr(1) : std::string_view(v))) {
    std::int64_t i = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), i);
    if (ec == std::errc() && end == v.data() + v.size()) return i;
  }
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(v.c_str(), &end);
  const bool numeric_start = (v[0] >= '0' && v[0] <= '9') || v[0] == '-' || v[0] == '+' || v[0] == '.';
  if (numeric_start && end == v.c_str() + v.size() && errno == 0 && std::isfinite(d)) return d;
  return v;
}

std::vector<WebhookConfig> Loader::webhooks(const Entry& at,
                                           const std::vector<ProjectConfig>& projects) const {
  std::vector<WebhookConfig> out;
  SeenNames seen;
  for (const Entry& item : items(at)) out.push_back(webhook(item, seen, projects));
  return out;
}

WebhookConfig Loader::webhook(const Entry& at, SeenNames& seen,
                              const std::vector<ProjectConfig>& projects) const {
  const MapReader m(*this, at,
                    {"name", "url", "secret", "events", "sample_rate", "property_filters",
                     "include_bodies", "retry", "timeout_ms", "headers", "allow_insecure", "ca_file",
                     "max_in_flight", "projects"});
  WebhookConfig w;
  w.name = unique_name(m.require("name"), "webhook", seen);
  if (auto e = m.find("allow_insecure")) w.allow_insecure = boolean(*e);

  // The URL may carry a token in its query: messages never echo it.
  const Entry url = m.require("url");
  w.url = text(url).value;
  if (w.url.find('#') != std::string::npos) fail(url, "invalid URL: fragments are not allowed");
  const auto query = w.url.find('?');
  for (unsigned char c : std::string_view(w.url).substr(query == std::string::npos ? w.url.size() : query)) {
    if (c <= 0x20 || c >= 0x7f) fail(url, "invalid URL: invalid character in the query");
  }
  UpstreamConfig parsed;
  const std::string error = parse_base_url(w.url.substr(0, query), parsed);
  if (!error.empty()) fail(url, "invalid URL: " + error);
  w.tls = parsed.tls;
  w.host = parsed.host;
  if (!w.tls && !w.allow_insecure) {
    fail(url, "plain http:// is refused unless allow_insecure: true (use https://)");
  }

  const Entry secret = m.require("secret");
  const Text secret_text = text(secret);
  auto key = scoring::decode_webhook_secret(secret_text.value);
  if (!key.ok()) fail(secret, "invalid secret: " + key.error().message);
  w.secret_text = secret_text.value;
  w.secret_key = std::move(*key);

  if (auto e = m.find("events")) {
    std::set<std::string> unique;
    for (const Entry& item : items(*e)) {
      const Text t = text(item);
      if (t.value != "request.logged" && t.value != "score.created" &&
          t.value != "evaluation.completed") {
        fail(item, "unknown event" + (t.from_env ? std::string() : " '" + t.value + "'") +
                       " (expected request.logged, score.created or evaluation.completed)");
      }
      if (!unique.insert(t.value).second) fail(item, "duplicate event '" + t.value + "'");
      w.events.push_back(t.value);
    }
    if (w.events.empty()) fail(*e, "at least one event is required");
  } else {
    w.events = {"request.logged"};
  }
  if (auto e = m.find("sample_rate")) w.sample_rate = number(*e, 0, 100);
  if (auto e = m.find("property_filters")) {
    for (const auto& [k, v] : pairs(*e)) {
      std::string name = lower(text(k).value);
      if (name.empty()) fail(k, "empty property name");
      if (!v.value.IsScalar()) fail(v, "expected a string");
      if (!w.property_filters.emplace(std::move(name), text(v).value).second) {
        fail(k, "duplicate property (names are case-insensitive)");
      }
    }
  }
  if (auto e = m.find("include_bodies")) w.include_bodies = boolean(*e);
  if (auto e = m.find("retry")) {
    const MapReader r(*this, *e, {"max_attempts", "initial_backoff_ms", "max_backoff_ms"});
    if (auto a = r.find("max_attempts")) w.retry.max_attempts = static_cast<std::uint32_t>(integer(*a, 1, 100));
    if (auto a = r.find("initial_backoff_ms")) w.retry.initial_backoff = millis(*a, false);
    if (auto a = r.find("max_backoff_ms")) w.retry.max_backoff = millis(*a, false);
    if (w.retry.initial_backoff > w.retry.max_backoff) {
      const auto a = r.find("initial_backoff_ms");
      fail(a ? *a : *e, "initial_backoff_ms must not exceed max_backoff_ms (" +
                            std::to_string(w.retry.max_backoff.count()) + ")");
    }
  }
  if (auto e = m.find("timeout_ms")) w.timeout = millis(*e, false);
  if (auto e = m.find("headers")) {
    static const std::set<std::string, std::less<>> kReserved = {
        "content-type", "content-length", "host",           "transfer-encoding", "connection",
        "webhook-id",   "webhook-timestamp", "webhook-signature", "helicone-signature"};
    std::set<std::string> names;
    for (const auto& [k, v] : pairs(*e)) {
      const std::string name = text(k).value;
      if (!is_token(name)) fail(k, "invalid header name");
      if (kReserved.count(lower(name)) != 0) {
        fail(k, "header '" + name + "' is set by arbiter and cannot be configured");
      }
      if (!names.insert(lower(name)).second) fail(k, "duplicate header '" + name + "'");
      if (!v.value.IsScalar()) fail(v, "expected a string");
      // Values are often credentials: never echoed.
      const Text value = text(v);
      if (has_control(value.value)) fail(v, "header value contains control characters");
      w.headers.emplace_back(name, value.value);
    }
  }
  if (auto e = m.find("ca_file")) {
    if (!text(*e).value.empty()) w.ca_file = readable_file(*e);
  }
  if (auto e = m.find("max_in_flight")) w.max_in_flight = static_cast<unsigned>(integer(*e, 1, 1024));
  if (auto e = m.find("projects")) {
    for (const Entry& item : items(*e)) {
      const std::string p = text(item).value;
      const bool known = std::any_of(projects.begin(), projects.end(),
                                     [&](const ProjectConfig& c) { return c.name == p; });
      if (!known) fail(item, "unknown project '" + p + "'");
      w.projects.push_back(p);
    }
  }
  return w;
}

std::vector<std::pair<Entry, Entry>> Loader::pairs(const Entry& at) const {
  std::vector<std::pair<Entry, Entry>> out;
  if (at.value.IsNull()) return out;
  if (!at.value.IsMap()) fail(at, "expected a mapping");
  for (const auto& kv : at.value) {
    const int line = line_of(kv.first.Mark(), at.line);
    if (!kv.first.IsScalar()) fail(line, at.path, "keys must be plain strings");
    const std::string path = child_path(at.path, kv.first.Scalar());
    out.emplace_back(Entry{path, line, kv.first}, Entry{path, line, kv.second});
  }
  return out;
}

std::vector<Entry> Loader::items(const Entry& at) const {
  std::vector<Entry> out;
  if (at.value.IsNull()) return out;  // `key:` with nothing after it
  if (!at.value.IsSequence()) fail(at, "expected a sequence");
  std::size_t index = 0;
  for (const YAML::Node& item : at.value) {
    out.push_back(Entry{item_path(at.path, index), line_of(item.Mark(), at.line), item});
    ++index;
  }
  return out;
}

// ${VAR}, ${VAR:-default} (default when VAR is unset or empty, as in sh) and
// $${ for a literal "${".
Text Loader::expand(const Entry& at, const std::string& raw) const {
  Text out;
  std::size_t i = 0;
  while (i < raw.size()) {
    if (raw.compare(i, 3, "$${") == 0) {
      out.value += "${";
      i += 3;
      continue;
    }
    if (raw.compare(i, 2, "${") != 0) {
      out.value += raw[i++];
      continue;
    }
    const auto close = raw.find('}', i + 2);
    if (close == std::string::npos) fail(at, "unterminated ${ (write $${ for a literal ${)");
    const std::string_view ref = std::string_view(raw).substr(i + 2, close - i - 2);
    const auto separator = ref.find(":-");
    const std::string var(ref.substr(0, separator));
    if (!is_env_name(var)) fail(at, "invalid environment variable reference");
    const char* value = std::getenv(var.c_str());
    if (separator != std::string_view::npos && (value == nullptr || *value == '\0')) {
      out.value += ref.substr(separator + 2);
    } else if (value == nullptr) {
      fail(at, "environment variable " + var + " is not set");
    } else {
      out.value += value;
      out.from_env = true;
    }
    i = close + 1;
  }
  return out;
}

Text Loader::text(const Entry& at) const {
  if (!at.value.IsScalar()) fail(at, "expected a string");
  return expand(at, at.value.Scalar());
}

std::string Loader::name(const Entry& at) const {
  Text t = text(at);
  if (!is_plain_name(t.value)) {
    fail(at, "expected 1-" + std::to_string(kMaxNameLength) + " characters from A-Z a-z 0-9 . _ -");
  }
  return std::move(t.value);
}

std::string Loader::unique_name(const Entry& at, std::string_view kind, SeenNames& seen) const {
  std::string n = name(at);
  const auto [it, inserted] = seen.emplace(n, at.line);
  if (!inserted) {
    fail(at, "duplicate " + std::string(kind) + " name (first used at line " +
                 std::to_string(it->second) + ")");
  }
  return n;
}

std::string Loader::readable_file(const Entry& at) const {
  Text t = text(at);
  if (t.value.empty()) fail(at, "expected a file path");
  const std::string reason = unreadable_reason(t.value);
  if (!reason.empty()) {
    fail(at, (t.from_env ? std::string("cannot read file") : "cannot read '" + t.value + "'") +
                 ": " + reason);
  }
  return std::move(t.value);
}

// Numbers must be plain (unquoted) YAML scalars, so `threads: "4"` is a type
// error rather than silently accepted; `threads: ${THREADS}` still works.
std::uint64_t Loader::integer(const Entry& at, std::uint64_t min, std::uint64_t max) const {
  const std::string expected =
      min > 0 ? "expected a positive integer" : "expected a non-negative integer";
  if (!at.value.IsScalar() || at.value.Tag() != "?") fail(at, expected);
  const Text t = expand(at, at.value.Scalar());
  if (!is_digits(t.value)) fail(at, expected);
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(t.value.data(), t.value.data() + t.value.size(), value);
  if (ec == std::errc::result_out_of_range || value > max) {
    fail(at, "out of range (at most " + std::to_string(max) + ")");
  }
  if (ec != std::errc() || end != t.value.data() + t.value.size()) fail(at, expected);
  if (value < min) fail(at, expected);
  return value;
}

std::chrono::milliseconds Loader::millis(const Entry& at, bool allow_zero) const {
  return std::chrono::milliseconds(
      static_cast<std::chrono::milliseconds::rep>(integer(at, allow_zero ? 0 : 1, kMaxMillis)));
}

bool Loader::boolean(const Entry& at) const {
  if (at.value.IsScalar() && at.value.Tag() == "?") {
    const Text t = expand(at, at.value.Scalar());
    if (t.value == "true") return true;
    if (t.value == "false") return false;
  }
  fail(at, "expected true or false");
}

}  // namespace

const ModelPrice* Config::price_for(std::string_view model) const {
  const ModelPrice* best = nullptr;
  std::size_t best_len = 0;
  for (const auto& p : pricing) {
    if (p.model == model) return &p;
    if (!p.model.empty() && p.model.back() == '*') {
      const std::string_view prefix(p.model.data(), p.model.size() - 1);
      if (model.substr(0, prefix.size()) == prefix && prefix.size() >= best_len) {
        best = &p;
        best_len = prefix.size();
      }
    }
  }
  return best;
}

const UpstreamConfig* Config::find_upstream(std::string_view name) const {
  for (const auto& u : upstreams) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

std::shared_ptr<const Config> load_config_from_string(const std::string& yaml,
                                                      const std::string& source_name) {
  return std::make_shared<const Config>(Loader(source_name).load(yaml));
}

std::shared_ptr<const Config> load_config(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    throw ConfigError(path + ": cannot read: " + std::generic_category().message(errno));
  }
  std::string text;
  char buffer[16384];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, n);
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) throw ConfigError(path + ": cannot read: " + std::generic_category().message(error));
  return load_config_from_string(text, path);
}

KeyHash sha256_key(std::string_view key) {
  // Called on every proxied request. EVP_sha256() makes OpenSSL 3 look the
  // implementation up again on each digest (~6k instructions, bench/README);
  // an explicitly fetched one is resolved once and is safe to share. Each
  // thread also keeps its digest context: EVP_Digest() allocates, sets up
  // and frees one per call, about as much work again as hashing a key.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local const std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  const EVP_MD* md = kSha256 ? kSha256 : EVP_sha256();
  KeyHash out{};
  unsigned int size = 0;
  if (!ctx || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), key.data(), key.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &size) != 1 || size != out.size()) {
    throw std::runtime_error("SHA-256 is unavailable");
  }
  return out;
}

}  // namespace arbiter::gateway
