#include "gateway/config.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <stdlib.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace arbiter::gateway {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSource = "test.yaml";

// Joins lines with '\n': line N of the text is element N-1, which keeps the
// expected line numbers in messages easy to check.
std::string lines(std::initializer_list<std::string> items) {
  std::string out;
  for (const std::string& line : items) out += line + "\n";
  return out;
}

// The sections every config needs (6 lines); appended after a test's own
// lines so those keep their line numbers.
const std::string kRequired = lines({
    "upstreams:",
    "  - name: openai",
    "    base_url: https://api.openai.com",
    "projects:",
    "  - name: default",
    "    api_keys: [ \"k1\" ]",
});

// A one-line upstreams section for tests about projects.
const std::string kUpstream = "upstreams: [ { name: u, base_url: https://x } ]\n";

std::shared_ptr<const Config> load(const std::string& yaml) {
  return load_config_from_string(yaml, kSource);
}

// what() of the ConfigError the text raises, or a marker if it loads.
std::string error_of(const std::string& yaml) {
  try {
    load(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<loaded without error>";
}

std::string hex(const KeyHash& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : hash) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

// A directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "arbiter-config-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

  std::string write(const std::string& name, const std::string& content) const {
    const fs::path file = path_ / name;
    std::ofstream(file) << content;
    return file.string();
  }

 private:
  fs::path path_;
};

// Sets (or unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = ::getenv(name_.c_str())) old_ = old;
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// ---------------------------------------------------------------- valid input

TEST(ConfigTest, MinimalConfigGetsDefaults) {
  const auto config = load(kRequired);
  EXPECT_EQ(config->source_file, kSource);

  const ServerConfig& s = config->server;
  EXPECT_EQ(s.proxy.host, "127.0.0.1");
  EXPECT_EQ(s.proxy.port, 8787);
  EXPECT_FALSE(s.proxy.tls);
  EXPECT_EQ(s.api.host, "127.0.0.1");
  EXPECT_EQ(s.api.port, 8585);
  EXPECT_FALSE(s.api.tls);
  EXPECT_EQ(s.threads, 0u);
  EXPECT_EQ(s.log_level, LogLevel::info);
  EXPECT_FALSE(s.allow_anonymous);
  EXPECT_EQ(s.drain_timeout, std::chrono::milliseconds(10'000));
  EXPECT_EQ(s.limits.max_header_bytes, 64u * 1024);
  EXPECT_EQ(s.limits.max_body_bytes, 32ull * 1024 * 1024);
  EXPECT_EQ(s.limits.header_timeout, std::chrono::milliseconds(10'000));
  EXPECT_EQ(s.limits.idle_timeout, std::chrono::milliseconds(60'000));
  EXPECT_EQ(s.limits.body_timeout, std::chrono::milliseconds(60'000));
  EXPECT_EQ(s.limits.max_connections, 10'000u);

  EXPECT_EQ(config->storage.path, "./data");
  EXPECT_EQ(config->storage.durability, Durability::relaxed);
  EXPECT_EQ(config->storage.retention_days, 0u);

  ASSERT_EQ(config->upstreams.size(), 1u);
  const UpstreamConfig& u = config->upstreams[0];
  EXPECT_EQ(u.name, "openai");
  EXPECT_EQ(u.base_url, "https://api.openai.com");
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.host, "api.openai.com");
  EXPECT_EQ(u.port, "443");
  EXPECT_EQ(u.base_path, "");
  EXPECT_EQ(u.api_key, "");
  EXPECT_EQ(u.ca_file, "");
  EXPECT_TRUE(u.verify_tls);
  EXPECT_EQ(u.connect_timeout, std::chrono::milliseconds(10'000));
  EXPECT_EQ(u.timeout, std::chrono::milliseconds(600'000));
  EXPECT_EQ(u.idle_timeout, std::chrono::milliseconds(300'000));
  EXPECT_EQ(u.max_idle_connections, 64u);
  EXPECT_EQ(u.pool_idle_timeout, std::chrono::milliseconds(30'000));

  ASSERT_EQ(config->projects.size(), 1u);
  EXPECT_EQ(config->projects[0].name, "default");
  EXPECT_EQ(config->projects[0].key_hashes, std::vector<KeyHash>{sha256_key("k1")});
}

TEST(ConfigTest, EmptySectionsMeanDefaults) {
  const auto config =
      load(lines({"server:", "storage:", "evaluators:", "webhooks: []"}) + kRequired);
  EXPECT_EQ(config->server.proxy.port, 8787);
  EXPECT_EQ(config->storage.path, "./data");
}

TEST(ConfigTest, ParsesEveryKey) {
  TempDir dir;
  const std::string cert = dir.write("cert.pem", "cert");
  const std::string key = dir.write("key.pem", "key");
  const std::string api_cert = dir.write("api-cert.pem", "cert");
  const std::string api_key = dir.write("api-key.pem", "key");
  const std::string ca = dir.write("ca.pem", "ca");

  const auto config = load(lines({
      "server:",
      "  proxy_listen: 0.0.0.0:0",
      "  api_listen: \"[::1]:9585\"",
      "  proxy_tls: { cert_file: " + cert + ", key_file: " + key + " }",
      "  api_tls:",
      "    cert_file: " + api_cert,
      "    key_file: " + api_key,
      "  threads: 8",
      "  log_level: debug",
      "  allow_anonymous: true",
      "  drain_timeout_ms: 0",
      "  limits:",
      "    max_header_bytes: 1000",
      "    max_body_bytes: 2000",
      "    header_timeout_ms: 3000",
      "    idle_timeout_ms: 4000",
      "    body_timeout_ms: 5000",
      "    max_connections: 6000",
      "storage:",
      "  path: /var/lib/arbiter",
      "  durability: strict",
      "  retention_days: 30",
      "upstreams:",
      "  - name: local",
      "    base_url: http://127.0.0.1:9000/v1/",
      "    ca_file: " + ca,
      "    verify_tls: false",
      "    connect_timeout_ms: 1",
      "    timeout_ms: 2",
      "    idle_timeout_ms: 3",
      "    max_idle_connections: 0",
      "    pool_idle_timeout_ms: 4",
      "  - name: second.up_stream-2",
      "    base_url: https://example.com",
      "projects:",
      "  - name: a",
      "    api_keys:",
      "      - k1",
      "      - { sha256: " + hex(sha256_key("k2")) + " }",
      "  - name: b",
      "    api_keys: []",
      "  - name: c",
      "evaluators: []",
      "webhooks: []",
  }));

  const ServerConfig& s = config->server;
  EXPECT_EQ(s.proxy.host, "0.0.0.0");
  EXPECT_EQ(s.proxy.port, 0);
  ASSERT_TRUE(s.proxy.tls);
  EXPECT_EQ(s.proxy.tls->cert_file, cert);
  EXPECT_EQ(s.proxy.tls->key_file, key);
  EXPECT_EQ(s.api.host, "::1");
  EXPECT_EQ(s.api.port, 9585);
  ASSERT_TRUE(s.api.tls);
  EXPECT_EQ(s.api.tls->cert_file, api_cert);
  EXPECT_EQ(s.api.tls->key_file, api_key);
  EXPECT_EQ(s.threads, 8u);
  EXPECT_EQ(s.log_level, LogLevel::debug);
  EXPECT_TRUE(s.allow_anonymous);
  EXPECT_EQ(s.drain_timeout, std::chrono::milliseconds(0));
  EXPECT_EQ(s.limits.max_header_bytes, 1000u);
  EXPECT_EQ(s.limits.max_body_bytes, 2000u);
  EXPECT_EQ(s.limits.header_timeout, std::chrono::milliseconds(3000));
  EXPECT_EQ(s.limits.idle_timeout, std::chrono::milliseconds(4000));
  EXPECT_EQ(s.limits.body_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(s.limits.max_connections, 6000u);

  EXPECT_EQ(config->storage.path, "/var/lib/arbiter");
  EXPECT_EQ(config->storage.durability, Durability::strict);
  EXPECT_EQ(config->storage.retention_days, 30u);

  ASSERT_EQ(config->upstreams.size(), 2u);
  const UpstreamConfig& u = config->upstreams[0];
  EXPECT_EQ(u.name, "local");
  EXPECT_EQ(u.base_url, "http://127.0.0.1:9000/v1/");
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, "9000");
  EXPECT_EQ(u.base_path, "/v1");
  EXPECT_EQ(u.ca_file, ca);
  EXPECT_FALSE(u.verify_tls);
  EXPECT_EQ(u.connect_timeout, std::chrono::milliseconds(1));
  EXPECT_EQ(u.timeout, std::chrono::milliseconds(2));
  EXPECT_EQ(u.idle_timeout, std::chrono::milliseconds(3));
  EXPECT_EQ(u.max_idle_connections, 0u);
  EXPECT_EQ(u.pool_idle_timeout, std::chrono::milliseconds(4));
  EXPECT_EQ(config->upstreams[1].name, "second.up_stream-2");

  ASSERT_EQ(config->projects.size(), 3u);
  EXPECT_EQ(config->projects[0].name, "a");
  EXPECT_EQ(config->projects[0].key_hashes,
            (std::vector<KeyHash>{sha256_key("k1"), sha256_key("k2")}));
  EXPECT_TRUE(config->projects[1].key_hashes.empty());
  EXPECT_TRUE(config->projects[2].key_hashes.empty());
}

TEST(ConfigTest, SharedTlsAppliesToBothListenersAndPerListenerOverrides) {
  TempDir dir;
  const std::string cert = dir.write("cert.pem", "c");
  const std::string key = dir.write("key.pem", "k");
  const std::string other = dir.write("other.pem", "o");
  const auto config = load(lines({
                               "server:",
                               "  tls: { cert_file: " + cert + ", key_file: " + key + " }",
                               "  api_tls: { cert_file: " + other + ", key_file: " + other + " }",
                           }) +
                           kRequired);
  ASSERT_TRUE(config->server.proxy.tls);
  EXPECT_EQ(config->server.proxy.tls->cert_file, cert);
  ASSERT_TRUE(config->server.api.tls);
  EXPECT_EQ(config->server.api.tls->cert_file, other);
}

TEST(ConfigTest, ParsesBaseUrls) {
  struct Case {
    std::string url;
    bool tls;
    std::string host, port, base_path;
  };
  const std::vector<Case> cases = {
      {"https://api.openai.com", true, "api.openai.com", "443", ""},
      {"https://api.openai.com/", true, "api.openai.com", "443", ""},
      {"http://localhost", false, "localhost", "80", ""},
      {"HTTPS://Example.com:8443/v1", true, "Example.com", "8443", "/v1"},
      {"http://10.0.0.1:9000/openai/v1//", false, "10.0.0.1", "9000", "/openai/v1"},
      {"http://[::1]:9000/v1", false, "::1", "9000", "/v1"},
      {"https://[2001:db8::1]", true, "2001:db8::1", "443", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    const auto config = load(lines({
        "upstreams:",
        "  - name: u",
        "    base_url: \"" + c.url + "\"",
        "projects:",
        "  - name: p",
    }));
    const UpstreamConfig& u = config->upstreams[0];
    EXPECT_EQ(u.base_url, c.url);
    EXPECT_EQ(u.tls, c.tls);
    EXPECT_EQ(u.host, c.host);
    EXPECT_EQ(u.port, c.port);
    EXPECT_EQ(u.base_path, c.base_path);
  }
}

TEST(ConfigTest, ParsesListenAddresses) {
  const auto config = load(lines({
                               "server:",
                               "  proxy_listen: \"[::]:65535\"",
                               "  api_listen: 192.168.1.20:0",
                           }) +
                           kRequired);
  EXPECT_EQ(config->server.proxy.host, "::");
  EXPECT_EQ(config->server.proxy.port, 65535);
  EXPECT_EQ(config->server.api.host, "192.168.1.20");
  EXPECT_EQ(config->server.api.port, 0);
}

TEST(ConfigTest, FindUpstream) {
  const auto config = load(lines({
      "upstreams:",
      "  - { name: a, base_url: https://a.example }",
      "  - { name: b, base_url: https://b.example }",
      "projects: [ { name: p } ]",
  }));
  ASSERT_NE(config->find_upstream("b"), nullptr);
  EXPECT_EQ(config->find_upstream("b")->host, "b.example");
  EXPECT_EQ(config->find_upstream("a"), &config->upstreams[0]);
  EXPECT_EQ(config->find_upstream("c"), nullptr);
  EXPECT_EQ(config->find_upstream(""), nullptr);
}

TEST(ConfigTest, Sha256KeyMatchesKnownVectors) {
  EXPECT_EQ(hex(sha256_key("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(sha256_key("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(ConfigTest, Sha256EntryAcceptsUpperCaseHex) {
  std::string upper = hex(sha256_key("k9"));
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const auto config = load(kUpstream + lines({
                                           "projects:",
                                           "  - name: p",
                                           "    api_keys: [ { sha256: " + upper + " } ]",
                                       }));
  EXPECT_EQ(config->projects[0].key_hashes, std::vector<KeyHash>{sha256_key("k9")});
}

TEST(ConfigTest, ShortKeysAreAccepted) {
  const auto config = load(kUpstream + "projects: [ { name: p, api_keys: [ a ] } ]\n");
  EXPECT_EQ(config->projects[0].key_hashes, std::vector<KeyHash>{sha256_key("a")});
}

// ------------------------------------------------------------- interpolation

TEST(ConfigTest, ExpandsEnvironmentVariables) {
  ScopedEnv host("ARBITER_TEST_HOST", "h.example");
  ScopedEnv port("ARBITER_TEST_PORT", "8443");
  ScopedEnv threads("ARBITER_TEST_THREADS", "3");
  ScopedEnv key("ARBITER_TEST_KEY", "sk-from-env");
  ScopedEnv anon("ARBITER_TEST_ANON", "false");
  const auto config = load(lines({
      "server:",
      "  threads: ${ARBITER_TEST_THREADS}",
      "  allow_anonymous: ${ARBITER_TEST_ANON}",
      "upstreams:",
      "  - name: u",
      "    base_url: https://${ARBITER_TEST_HOST}:${ARBITER_TEST_PORT}/v1",
      "    api_key: ${ARBITER_TEST_KEY}",
      "projects:",
      "  - name: p",
      "    api_keys: [ \"pre-${ARBITER_TEST_KEY}-post\" ]",
  }));
  EXPECT_EQ(config->server.threads, 3u);
  EXPECT_FALSE(config->server.allow_anonymous);
  EXPECT_EQ(config->upstreams[0].host, "h.example");
  EXPECT_EQ(config->upstreams[0].port, "8443");
  EXPECT_EQ(config->upstreams[0].base_url, "https://h.example:8443/v1");
  EXPECT_EQ(config->upstreams[0].api_key, "sk-from-env");
  EXPECT_EQ(config->projects[0].key_hashes,
            std::vector<KeyHash>{sha256_key("pre-sk-from-env-post")});
}

TEST(ConfigTest, DefaultIsUsedWhenVariableIsUnsetOrEmpty) {
  ScopedEnv unset("ARBITER_TEST_UNSET", std::nullopt);
  ScopedEnv empty("ARBITER_TEST_EMPTY", "");
  ScopedEnv set("ARBITER_TEST_SET", "value");
  const auto config = load(lines({
      "storage:",
      "  path: ${ARBITER_TEST_UNSET:-/srv/a}|${ARBITER_TEST_EMPTY:-b}|${ARBITER_TEST_SET:-c}",
      "upstreams:",
      "  - name: u",
      "    base_url: https://x",
      "    api_key: ${ARBITER_TEST_UNSET:-}",
      "projects: [ { name: p } ]",
  }));
  EXPECT_EQ(config->storage.path, "/srv/a|b|value");
  EXPECT_EQ(config->upstreams[0].api_key, "");
}

TEST(ConfigTest, SetButEmptyVariableWithoutDefaultIsEmpty) {
  ScopedEnv empty("ARBITER_TEST_EMPTY", "");
  const auto config = load(lines({
      "upstreams:",
      "  - { name: u, base_url: https://x, api_key: \"${ARBITER_TEST_EMPTY}\" }",
      "projects: [ { name: p } ]",
  }));
  EXPECT_EQ(config->upstreams[0].api_key, "");
}

TEST(ConfigTest, DoubleDollarEscapesInterpolation) {
  ScopedEnv var("ARBITER_TEST_VAR", "x");
  const auto config = load(lines({
                               "storage:",
                               "  path: \"$${ARBITER_TEST_VAR}/${ARBITER_TEST_VAR}/$$/$x\"",
                           }) +
                           kRequired);
  EXPECT_EQ(config->storage.path, "${ARBITER_TEST_VAR}/x/$$/$x");
}

TEST(ConfigTest, UnsetVariableIsAnError) {
  ScopedEnv unset("ARBITER_TEST_UNSET", std::nullopt);
  EXPECT_EQ(error_of(lines({"storage:", "  path: /a/${ARBITER_TEST_UNSET}"}) + kRequired),
            "test.yaml:2: storage.path: environment variable ARBITER_TEST_UNSET is not set");
  EXPECT_EQ(error_of(kUpstream + lines({
                                     "projects:",
                                     "  - name: p",
                                     "    api_keys:",
                                     "      - ok",
                                     "      - \"${ARBITER_TEST_UNSET}\"",
                                 })),
            "test.yaml:6: projects[0].api_keys[1]: environment variable ARBITER_TEST_UNSET is "
            "not set");
}

TEST(ConfigTest, MalformedReferencesAreErrors) {
  EXPECT_EQ(error_of(lines({"storage:", "  path: /a/${NOT CLOSED"}) + kRequired),
            "test.yaml:2: storage.path: unterminated ${ (write $${ for a literal ${)");
  EXPECT_EQ(error_of(lines({"storage:", "  path: /a/${1BAD}"}) + kRequired),
            "test.yaml:2: storage.path: invalid environment variable reference");
  EXPECT_EQ(error_of(lines({"storage:", "  path: /a/${}"}) + kRequired),
            "test.yaml:2: storage.path: invalid environment variable reference");
}

// -------------------------------------------------------------------- errors

TEST(ConfigTest, UnknownTopLevelKey) {
  EXPECT_EQ(error_of(kRequired + "evaluator: []\n"), "test.yaml:7: unknown key 'evaluator'");
}

TEST(ConfigTest, UnknownNestedKeys) {
  EXPECT_EQ(error_of(lines({"server:", "  treads: 4"}) + kRequired),
            "test.yaml:2: unknown key 'treads' in server");
  EXPECT_EQ(error_of(lines({"server:", "  limits:", "", "    max_body: 1"}) + kRequired),
            "test.yaml:4: unknown key 'max_body' in server.limits");
  EXPECT_EQ(error_of(lines({"storage:", "  durabilty: strict"}) + kRequired),
            "test.yaml:2: unknown key 'durabilty' in storage");
  EXPECT_EQ(error_of(lines({
                "upstreams:",
                "  - name: a",
                "    base_url: https://x",
                "  - name: b",
                "    base_url: https://y",
                "    apikey: z",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:6: unknown key 'apikey' in upstreams[1]");
  EXPECT_EQ(error_of(lines({"server:", "  proxy_tls: { cert: a, key_file: b }"}) + kRequired),
            "test.yaml:2: unknown key 'cert' in server.proxy_tls");
  EXPECT_EQ(error_of(kUpstream + lines({
                                     "projects:",
                                     "  - name: p",
                                     "    api_keys: [ { sha512: ab } ]",
                                 })),
            "test.yaml:4: unknown key 'sha512' in projects[0].api_keys[0]");
}

TEST(ConfigTest, DuplicateMappingKey) {
  EXPECT_EQ(error_of(lines({"server:", "  threads: 1", "  threads: 2"}) + kRequired),
            "test.yaml:3: duplicate key 'threads' in server");
  EXPECT_EQ(error_of(kRequired + lines({"server: {}", "server: {}"})),
            "test.yaml:8: duplicate key 'server'");
}

TEST(ConfigTest, WrongTypes) {
  struct Case {
    std::vector<std::string> lines;  // followed by kRequired
    std::string error;
  };
  const std::vector<Case> cases = {
      {{"server: 5"}, "test.yaml:1: server: expected a mapping"},
      {{"server:", "  - a"}, "test.yaml:1: server: expected a mapping"},
      {{"server:", "  limits: []"}, "test.yaml:2: server.limits: expected a mapping"},
      {{"server:", "  threads: \"4\""},
       "test.yaml:2: server.threads: expected a non-negative integer"},
      {{"server:", "  threads: -1"},
       "test.yaml:2: server.threads: expected a non-negative integer"},
      {{"server:", "  threads: 1.5"},
       "test.yaml:2: server.threads: expected a non-negative integer"},
      {{"server:", "  threads: four"},
       "test.yaml:2: server.threads: expected a non-negative integer"},
      {{"server:", "  threads: 0x10"},
       "test.yaml:2: server.threads: expected a non-negative integer"},
      {{"server:", "  threads: +2"},
       "test.yaml:2: server.threads: expected a non-negative integer"},
      {{"server:", "  threads:"}, "test.yaml:2: server.threads: expected a non-negative integer"},
      {{"server:", "  threads: [1]"},
       "test.yaml:2: server.threads: expected a non-negative integer"},
      {{"server:", "  threads: 5000"}, "test.yaml:2: server.threads: out of range (at most 1024)"},
      {{"server:", "  background_nice: 20"}, "test.yaml:2: server.background_nice: out of range (at most 19)"},
      {{"server:", "  limits:", "    max_body_bytes: 0"},
       "test.yaml:3: server.limits.max_body_bytes: expected a positive integer"},
      {{"server:", "  limits:", "    max_body_bytes: -5"},
       "test.yaml:3: server.limits.max_body_bytes: expected a positive integer"},
      {{"server:", "  limits:", "    max_body_bytes: 99999999999999999999999"},
       "test.yaml:3: server.limits.max_body_bytes: out of range (at most 18446744073709551615)"},
      {{"server:", "  limits:", "    max_header_bytes: 4294967296"},
       "test.yaml:3: server.limits.max_header_bytes: out of range (at most 4294967295)"},
      {{"server:", "  limits:", "    idle_timeout_ms: 86400001"},
       "test.yaml:3: server.limits.idle_timeout_ms: out of range (at most 86400000)"},
      {{"server:", "  limits:", "    header_timeout_ms: 0"},
       "test.yaml:3: server.limits.header_timeout_ms: expected a positive integer"},
      {{"server:", "  allow_anonymous: yes"},
       "test.yaml:2: server.allow_anonymous: expected true or false"},
      {{"server:", "  allow_anonymous: \"true\""},
       "test.yaml:2: server.allow_anonymous: expected true or false"},
      {{"server:", "  allow_anonymous: 1"},
       "test.yaml:2: server.allow_anonymous: expected true or false"},
      {{"server:", "  log_level: verbose"},
       "test.yaml:2: server.log_level: invalid value 'verbose' (expected debug, info, warn or "
       "error)"},
      {{"storage:", "  durability: fast"},
       "test.yaml:2: storage.durability: invalid value 'fast' (expected relaxed or strict)"},
      {{"storage:", "  path: \"\""}, "test.yaml:2: storage.path: must not be empty"},
      {{"storage:", "  path: { a: b }"}, "test.yaml:2: storage.path: expected a string"},
      {{"storage:", "  retention_days: 1e3"},
       "test.yaml:2: storage.retention_days: expected a non-negative integer"},
  };
  for (const Case& c : cases) {
    std::string yaml;
    for (const std::string& line : c.lines) yaml += line + "\n";
    SCOPED_TRACE(yaml);
    EXPECT_EQ(error_of(yaml + kRequired), c.error);
  }
}

TEST(ConfigTest, WrongTypesInSequences) {
  EXPECT_EQ(error_of("upstreams: { name: u }\nprojects: [ { name: p } ]\n"),
            "test.yaml:1: upstreams: expected a sequence");
  EXPECT_EQ(error_of("upstreams: [ u ]\nprojects: [ { name: p } ]\n"),
            "test.yaml:1: upstreams[0]: expected a mapping");
  EXPECT_EQ(error_of(lines({
                "upstreams:",
                "  - name: [ u ]",
                "    base_url: https://x",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:2: upstreams[0].name: expected a string");
  EXPECT_EQ(error_of(lines({
                "upstreams:",
                "  - name: u",
                "    base_url: https://x",
                "    verify_tls: no",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:4: upstreams[0].verify_tls: expected true or false");
  EXPECT_EQ(error_of(kUpstream + lines({"projects:", "  - name: p", "    api_keys: k"})),
            "test.yaml:4: projects[0].api_keys: expected a sequence");
  EXPECT_EQ(error_of(kUpstream + lines({"projects:", "  - name: p", "    api_keys: [ [ k ] ]"})),
            "test.yaml:4: projects[0].api_keys[0]: expected a key string or {sha256: <hex>}");
  EXPECT_EQ(error_of("- a\n- b\n"), "test.yaml:1: expected a mapping at the top level");
}

TEST(ConfigTest, MissingRequiredKeys) {
  EXPECT_EQ(error_of("projects: [ { name: p } ]\n"),
            "test.yaml: upstreams: at least one upstream is required");
  EXPECT_EQ(error_of("upstreams: []\nprojects: [ { name: p } ]\n"),
            "test.yaml:1: upstreams: at least one upstream is required");
  EXPECT_EQ(error_of(kUpstream), "test.yaml: projects: at least one project is required");
  EXPECT_EQ(error_of(kUpstream + "projects:\n"),
            "test.yaml:2: projects: at least one project is required");
  EXPECT_EQ(error_of(""), "test.yaml: upstreams: at least one upstream is required");
  EXPECT_EQ(error_of("# only a comment\n"),
            "test.yaml: upstreams: at least one upstream is required");
  EXPECT_EQ(error_of(lines({
                "upstreams:",
                "  - name: u",
                "  - base_url: https://x",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:2: upstreams[0]: missing required key 'base_url'");
  EXPECT_EQ(error_of(lines({
                "upstreams:",
                "  - name: u",
                "    base_url: https://x",
                "  - base_url: https://x",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:4: upstreams[1]: missing required key 'name'");
  EXPECT_EQ(error_of(kUpstream + lines({"projects:", "  - api_keys: [ k ]"})),
            "test.yaml:3: projects[0]: missing required key 'name'");
}

TEST(ConfigTest, InvalidNames) {
  EXPECT_EQ(error_of(lines({
                "upstreams: [ { name: \"open ai\", base_url: https://x } ]",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:1: upstreams[0].name: expected 1-64 characters from A-Z a-z 0-9 . _ -");
  EXPECT_EQ(error_of(kUpstream + "projects: [ { name: \"\" } ]\n"),
            "test.yaml:2: projects[0].name: expected 1-64 characters from A-Z a-z 0-9 . _ -");
}

TEST(ConfigTest, BadListenAddresses) {
  struct Case {
    std::string value;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"127.0.0.1", "expected host:port"},
      {"localhost:8787", "expected an IPv4 address or [IPv6] before the port"},
      {"256.0.0.1:80", "expected an IPv4 address or [IPv6] before the port"},
      {":8787", "expected an IPv4 address or [IPv6] before the port"},
      {"127.0.0.1:65536", "invalid port (expected 0-65535)"},
      {"127.0.0.1:", "invalid port (expected 0-65535)"},
      {"127.0.0.1:-1", "invalid port (expected 0-65535)"},
      {"127.0.0.1:80a", "invalid port (expected 0-65535)"},
      {"127.0.0.1:000080", "invalid port (expected 0-65535)"},
      {"::1:8787", "IPv6 addresses must be written as [addr]:port"},
      {"[::1]", "expected [IPv6]:port"},
      {"[::1]8787", "expected [IPv6]:port"},
      {"[::g]:8787", "invalid IPv6 address"},
      {"[127.0.0.1]:8787", "invalid IPv6 address"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    EXPECT_EQ(error_of(lines({"server:", "  threads: 1", "  api_listen: \"" + c.value + "\""}) +
                       kRequired),
              "test.yaml:3: server.api_listen: " + c.message);
  }
}

TEST(ConfigTest, ListenersMustDiffer) {
  EXPECT_EQ(error_of(lines({
                         "server:",
                         "  proxy_listen: 127.0.0.1:9000",
                         "  api_listen: 127.0.0.1:9000",
                     }) +
                     kRequired),
            "test.yaml:3: server.api_listen: proxy_listen and api_listen must differ");
  EXPECT_EQ(error_of(lines({"server:", "  proxy_listen: 127.0.0.1:8585"}) + kRequired),
            "test.yaml:2: server.proxy_listen: proxy_listen and api_listen must differ");
  // Port 0 lets the OS pick two different ports.
  EXPECT_NO_THROW(load(lines({
                           "server:",
                           "  proxy_listen: 127.0.0.1:0",
                           "  api_listen: 127.0.0.1:0",
                       }) +
                       kRequired));
}

TEST(ConfigTest, BadBaseUrls) {
  struct Case {
    std::string url;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"api.openai.com", "expected an http:// or https:// URL"},
      {"ftp://api.openai.com", "expected an http:// or https:// URL"},
      {"https//api.openai.com", "expected an http:// or https:// URL"},
      {"https://", "missing host"},
      {"https:///v1", "missing host"},
      {"https://:443", "missing host"},
      {"https://api.openai.com/v1?x=1", "query strings are not allowed"},
      {"https://api.openai.com/v1#frag", "fragments are not allowed"},
      {"https://user:pass@api.openai.com", "credentials in the URL are not allowed (use api_key)"},
      {"https://api.openai.com:0", "invalid port (expected 1-65535)"},
      {"https://api.openai.com:65536", "invalid port (expected 1-65535)"},
      {"https://api.openai.com:", "invalid port (expected 1-65535)"},
      {"https://api.openai.com:x", "invalid port (expected 1-65535)"},
      {"https://api open.com", "invalid host"},
      {"https://[::1", "invalid IPv6 address"},
      {"https://[zz::1]", "invalid IPv6 address"},
      {"https://[::1]x", "invalid host"},
      {"https://api.openai.com/v 1", "invalid character in path"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    EXPECT_EQ(error_of(lines({
                  "upstreams:",
                  "  - name: u",
                  "    base_url: \"" + c.url + "\"",
                  "projects: [ { name: p } ]",
              })),
              "test.yaml:3: upstreams[0].base_url: invalid URL: " + c.message);
  }
}

TEST(ConfigTest, DuplicateNames) {
  EXPECT_EQ(error_of(lines({
                "upstreams:",
                "  - name: openai",
                "    base_url: https://a",
                "  - base_url: https://b",
                "    name: openai",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:5: upstreams[1].name: duplicate upstream name (first used at line 2)");
  EXPECT_EQ(error_of(kUpstream + lines({
                                     "projects:",
                                     "  - name: p",
                                     "  - name: q",
                                     "  - name: p",
                                 })),
            "test.yaml:5: projects[2].name: duplicate project name (first used at line 3)");
}

TEST(ConfigTest, KeyErrors) {
  EXPECT_EQ(error_of(kUpstream + lines({
                                     "projects:",
                                     "  - name: a",
                                     "    api_keys: [ shared-key ]",
                                     "  - name: b",
                                     "    api_keys:",
                                     "      - other",
                                     "      - shared-key",
                                 })),
            "test.yaml:8: projects[1].api_keys[1]: key is already used by project 'a'");
  EXPECT_EQ(error_of(kUpstream + lines({"projects:", "  - name: a", "    api_keys: [ k, k ]"})),
            "test.yaml:4: projects[0].api_keys[1]: duplicate key");
  // A plaintext key and the digest of the same key are the same key.
  EXPECT_EQ(error_of(kUpstream + lines({
                                     "projects:",
                                     "  - name: a",
                                     "    api_keys: [ k ]",
                                     "  - name: b",
                                     "    api_keys: [ { sha256: " + hex(sha256_key("k")) + " } ]",
                                 })),
            "test.yaml:6: projects[1].api_keys[0]: key is already used by project 'a'");
  EXPECT_EQ(error_of(kUpstream + lines({"projects:", "  - name: a", "    api_keys: [ ok, \"\" ]"})),
            "test.yaml:4: projects[0].api_keys[1]: empty key");
  EXPECT_EQ(
      error_of(kUpstream + lines({"projects:", "  - name: a", "    api_keys: [ \"has space\" ]"})),
      "test.yaml:4: projects[0].api_keys[0]: key contains whitespace or control characters");
  EXPECT_EQ(
      error_of(kUpstream + lines({"projects:", "  - name: a", "    api_keys: [ \"tab\\there\" ]"})),
      "test.yaml:4: projects[0].api_keys[0]: key contains whitespace or control characters");
  EXPECT_EQ(error_of(kUpstream + lines({
                                     "projects:",
                                     "  - name: a",
                                     "    api_keys:",
                                     "      - sha256: abcd",
                                 })),
            "test.yaml:5: projects[0].api_keys[0].sha256: expected 64 hex characters");
  EXPECT_EQ(error_of(kUpstream + lines({
                                     "projects:",
                                     "  - name: a",
                                     "    api_keys:",
                                     "      - sha256: " + std::string(63, 'a') + "g",
                                 })),
            "test.yaml:5: projects[0].api_keys[0].sha256: expected 64 hex characters");
  EXPECT_EQ(error_of(kUpstream + lines({
                                     "projects:",
                                     "  - name: a",
                                     "    api_keys:",
                                     "      - {}",
                                 })),
            "test.yaml:5: projects[0].api_keys[0]: missing required key 'sha256'");
}

TEST(ConfigTest, AnonymousAccessIsRefusedWhileAnUpstreamInjectsAKey) {
  EXPECT_EQ(error_of(lines({
                "server:",
                "  threads: 2",
                "  allow_anonymous: true",
                "upstreams:",
                "  - name: a",
                "    base_url: https://a",
                "  - name: b",
                "    base_url: https://b",
                "    api_key: sk-secret-value",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:3: server.allow_anonymous: cannot be true while upstream 'b' has an "
            "api_key (anonymous calls would be sent with the provider key)");
  // Without injected keys anonymous access is a plain choice.
  ScopedEnv unset("ARBITER_TEST_UNSET", std::nullopt);
  EXPECT_TRUE(load(lines({
                       "server:",
                       "  allow_anonymous: true",
                       "upstreams:",
                       "  - name: a",
                       "    base_url: https://a",
                       "    api_key: ${ARBITER_TEST_UNSET:-}",
                       "projects: [ { name: p } ]",
                   }))
                  ->server.allow_anonymous);
}

TEST(ConfigTest, UpstreamApiKeyMustBeAHeaderSafeToken) {
  EXPECT_EQ(error_of(lines({
                "upstreams:",
                "  - name: u",
                "    base_url: https://x",
                "    api_key: \"sk-abc\\r\\nX-Evil: 1\"",
                "projects: [ { name: p } ]",
            })),
            "test.yaml:4: upstreams[0].api_key: invalid value");
}

TEST(ConfigTest, TlsFilesMustBeReadable) {
  TempDir dir;
  const std::string cert = dir.write("cert.pem", "c");
  const std::string missing = (dir.path() / "missing.pem").string();
  const std::string directory = dir.path().string();
  EXPECT_EQ(error_of(lines({
                         "server:",
                         "  proxy_tls:",
                         "    cert_file: " + cert,
                         "    key_file: " + missing,
                     }) +
                     kRequired),
            "test.yaml:4: server.proxy_tls.key_file: cannot read '" + missing +
                "': No such file or directory");
  EXPECT_EQ(
      error_of(lines({
                   "server:",
                   "  api_tls:",
                   "    cert_file: " + directory,
                   "    key_file: " + cert,
               }) +
               kRequired),
      "test.yaml:3: server.api_tls.cert_file: cannot read '" + directory + "': Is a directory");
  EXPECT_EQ(error_of(lines({"server:", "  api_tls:", "    cert_file: " + cert}) + kRequired),
            "test.yaml:2: server.api_tls: missing required key 'key_file'");
  EXPECT_EQ(error_of(lines({"server:", "  tls: { cert_file: \"\", key_file: " + cert + " }"}) +
                     kRequired),
            "test.yaml:2: server.tls.cert_file: expected a file path");
  EXPECT_EQ(error_of(lines({
                "upstreams:",
                "  - name: u",
                "    base_url: https://x",
                "    ca_file: " + missing,
                "projects: [ { name: p } ]",
            })),
            "test.yaml:4: upstreams[0].ca_file: cannot read '" + missing +
                "': No such file or directory");
}

TEST(ConfigTest, EvaluatorsAndWebhooksAreSequences) {
  // Both are parsed (evaluators below, webhooks in webhook_config_test.cpp).
  EXPECT_EQ(error_of(kRequired + "evaluators: { a: b }\n"),
            "test.yaml:7: evaluators: expected a sequence");
  EXPECT_EQ(error_of(kRequired + "webhooks: none\n"), "test.yaml:7: webhooks: expected a sequence");
  EXPECT_NO_THROW(load(kRequired + "evaluators: []\nwebhooks:\n"));
}

TEST(ConfigTest, EvaluatorSchedIdleDefaultsToTrueAndIsRead) {
  EXPECT_TRUE(load(kRequired)->server.evaluator_sched_idle);
  EXPECT_FALSE(load(kRequired + lines({"server:", "  evaluator_sched_idle: false"}))->server.evaluator_sched_idle);
  EXPECT_EQ(error_of(kRequired + lines({"server:", "  evaluator_sched_idle: sometimes"})),
            "test.yaml:8: server.evaluator_sched_idle: expected true or false");
}

TEST(ConfigTest, BackgroundNiceDefaultsToFiveAndIsRead) {
  EXPECT_EQ(load(kRequired)->server.background_nice, 5u);
  EXPECT_EQ(load(kRequired + lines({"server:", "  background_nice: 12"}))->server.background_nice, 12u);
}

TEST(ConfigTest, MallocArenasDefaultsToTwoAndIsRead) {
  EXPECT_EQ(load(kRequired)->server.malloc_arenas, 2u);
  EXPECT_EQ(load(kRequired + lines({"server:", "  malloc_arenas: 0"}))->server.malloc_arenas, 0u);
  EXPECT_EQ(load(kRequired + lines({"server:", "  malloc_arenas: 8"}))->server.malloc_arenas, 8u);
  EXPECT_EQ(error_of(kRequired + lines({"server:", "  malloc_arenas: -1"})),
            "test.yaml:8: server.malloc_arenas: expected a non-negative integer");
}

TEST(ConfigTest, ParsesEvaluators) {
  const auto config = load(kRequired + lines({
                                           "server:",
                                           "  evaluator_workers: 3",
                                           "  evaluator_queue_capacity: 50",
                                           "  evaluator_nice: 5",
                                           "evaluators:",
                                           "  - name: answer_length",
                                           "    kind: response_length",
                                           "  - name: judge.v2",
                                           "    kind: llm_judge",
                                           "    filter:",
                                           "      path: /v1/chat/*",
                                           "      model: \"gpt-4o*\"",
                                           "      properties: { Env: prod, tier: \"2\" }",
                                           "      status: 2XX",
                                           "    sampling: 25",
                                           "    needs: [ feedback.ground_truth, inputs.messages.-1.content ]",
                                           "    score: { name: faithfulness, data_type: NUMERIC }",
                                           "    timeout_ms: 1500",
                                           "    concurrency: 2",
                                           "    retry: { max_attempts: 5, initial_backoff_ms: 10, max_backoff_ms: 20 }",
                                           "    params:",
                                           "      model: gpt-4o-mini",
                                           "      temperature: 0.5",
                                           "      max_tokens: 100",
                                           "      quoted: \"42\"",
                                           "      flag: true",
                                           "      nothing: ~",
                                           "      list: [ a, 1, -2, 3.5, { k: v } ]",
                                       }));
  EXPECT_EQ(config->server.evaluator_workers, 3u);
  EXPECT_EQ(config->server.evaluator_queue_capacity, 50u);
  EXPECT_EQ(config->server.evaluator_nice, 5u);
  ASSERT_EQ(config->evaluators.size(), 2u);

  const EvaluatorConfig& a = config->evaluators[0];
  EXPECT_EQ(a.name, "answer_length");
  EXPECT_EQ(a.line, 12);
  EXPECT_EQ(a.kind, "response_length");
  EXPECT_EQ(a.score_name, "answer_length");  // the name unless score.name is set
  EXPECT_EQ(a.sampling, 100u);
  EXPECT_TRUE(a.needs.empty());
  EXPECT_EQ(a.timeout, std::chrono::milliseconds(30'000));
  EXPECT_EQ(a.concurrency, 4u);
  EXPECT_EQ(a.retry.max_attempts, 3u);
  ASSERT_TRUE(a.params);
  EXPECT_EQ(*a.params, nlohmann::json::object());

  const EvaluatorConfig& b = config->evaluators[1];
  EXPECT_EQ(b.name, "judge.v2");
  EXPECT_EQ(b.filter.path, "/v1/chat/*");
  EXPECT_EQ(b.filter.model, "gpt-4o*");
  EXPECT_EQ(b.filter.properties, (std::map<std::string, std::string>{{"env", "prod"}, {"tier", "2"}}));
  EXPECT_EQ(b.filter.status, "2xx");
  EXPECT_EQ(b.sampling, 25u);
  EXPECT_EQ(b.needs, (std::vector<std::string>{"feedback.ground_truth", "inputs.messages.-1.content"}));
  EXPECT_EQ(b.score_name, "faithfulness");
  EXPECT_EQ(b.score_data_type, "NUMERIC");
  EXPECT_EQ(b.timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(b.concurrency, 2u);
  EXPECT_EQ(b.retry.max_attempts, 5u);
  EXPECT_EQ(b.retry.initial_backoff, std::chrono::milliseconds(10));
  EXPECT_EQ(b.retry.max_backoff, std::chrono::milliseconds(20));
  EXPECT_EQ(*b.params, nlohmann::json::parse(R"({"model": "gpt-4o-mini", "temperature": 0.5,
      "max_tokens": 100, "quoted": "42", "flag": true, "nothing": null,
      "list": ["a", 1, -2, 3.5, {"k": "v"}]})"));
}

TEST(ConfigTest, EvaluatorParamsExpandEnvironmentVariables) {
  ScopedEnv token("ARBITER_TEST_TOKEN", "tok-123");
  const auto config = load(kRequired + lines({
                                           "evaluators:",
                                           "  - name: hook",
                                           "    kind: http",
                                           "    params:",
                                           "      url: https://hooks.example/eval",
                                           "      headers: { Authorization: \"Bearer ${ARBITER_TEST_TOKEN}\" }",
                                       }));
  EXPECT_EQ((*config->evaluators[0].params)["headers"]["Authorization"], "Bearer tok-123");
}

TEST(ConfigTest, EvaluatorErrorsNameTheField) {
  const std::string head = kRequired + "evaluators:\n";  // line 7
  struct Case {
    std::string body;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"  - kind: keywords\n", "test.yaml:8: evaluators[0]: missing required key 'name'"},
      {"  - name: a\n", "test.yaml:8: evaluators[0]: missing required key 'kind'"},
      {"  - { name: a, kind: keywords, colour: red }\n",
       "test.yaml:8: unknown key 'colour' in evaluators[0]"},
      {"  - { name: a, kind: keywords }\n  - { name: a, kind: bleu }\n",
       "test.yaml:9: evaluators[1].name: duplicate evaluator name (first used at line 8)"},
      {"  - { name: \"a b\", kind: keywords }\n",
       "test.yaml:8: evaluators[0].name: expected 1-64 characters from A-Z a-z 0-9 . _ -"},
      {"  - { name: a, kind: \"x y\" }\n",
       "test.yaml:8: evaluators[0].kind: expected a kind name such as response_length, llm_judge, "
       "http or plugin"},
      {"  - { name: a, kind: keywords, sampling: 101 }\n",
       "test.yaml:8: evaluators[0].sampling: out of range (at most 100)"},
      {"  - { name: a, kind: keywords, sampling: -1 }\n",
       "test.yaml:8: evaluators[0].sampling: expected a non-negative integer"},
      {"  - { name: a, kind: keywords, needs: [ \"feedback..x\" ] }\n",
       "test.yaml:8: evaluators[0].needs[0]: expected an event path such as feedback.ground_truth "
       "(dot-separated, no empty segment)"},
      {"  - { name: a, kind: keywords, needs: feedback.x }\n",
       "test.yaml:8: evaluators[0].needs: expected a sequence"},
      {"  - { name: a, kind: keywords, filter: { status: 2yy } }\n",
       "test.yaml:8: evaluators[0].filter.status: expected a status class such as 2xx or a code "
       "such as 200"},
      {"  - { name: a, kind: keywords, filter: { host: x } }\n",
       "test.yaml:8: unknown key 'host' in evaluators[0].filter"},
      {"  - { name: a, kind: keywords, filter: { properties: [ a ] } }\n",
       "test.yaml:8: evaluators[0].filter.properties: expected a mapping of property names to values"},
      {"  - { name: a, kind: keywords, score: { data_type: TEXT } }\n",
       "test.yaml:8: evaluators[0].score.data_type: expected NUMERIC, BOOLEAN or CATEGORICAL"},
      {"  - { name: a, kind: keywords, score: { name: \"\" } }\n",
       "test.yaml:8: evaluators[0].score.name: expected 1-255 bytes"},
      {"  - { name: a, kind: keywords, timeout_ms: 0 }\n",
       "test.yaml:8: evaluators[0].timeout_ms: expected a positive integer"},
      {"  - { name: a, kind: keywords, concurrency: 0 }\n",
       "test.yaml:8: evaluators[0].concurrency: expected a positive integer"},
      {"  - { name: a, kind: keywords, retry: { max_attempts: 0 } }\n",
       "test.yaml:8: evaluators[0].retry.max_attempts: expected a positive integer"},
      {"  - { name: a, kind: keywords, retry: { initial_backoff_ms: 50, max_backoff_ms: 10 } }\n",
       "test.yaml:8: evaluators[0].retry.max_backoff_ms: max_backoff_ms must not be smaller than "
       "initial_backoff_ms"},
      {"  - { name: a, kind: keywords, params: [ 1 ] }\n",
       "test.yaml:8: evaluators[0].params: expected a mapping"},
      {"  - name: a\n    kind: keywords\n    params:\n      keywords: [ \"${ARBITER_TEST_UNSET}\" ]\n",
       "test.yaml:11: evaluators[0].params.keywords[0]: environment variable ARBITER_TEST_UNSET is "
       "not set"},
  };
  ScopedEnv unset("ARBITER_TEST_UNSET", std::nullopt);
  for (const auto& c : cases) EXPECT_EQ(error_of(head + c.body), c.error) << c.body;
}

TEST(ConfigTest, YamlSyntaxErrors) {
  EXPECT_EQ(error_of(lines({"server:", "  threads: [1", "storage: {}"})),
            "test.yaml:3: invalid YAML: end of sequence flow not found");
  // An unquoted IPv6 listen address is a flow sequence to YAML.
  EXPECT_EQ(error_of(lines({"server:", "  api_listen: [::1]:8585"})),
            "test.yaml:2: invalid YAML: end of map not found");
  const std::string error = error_of(kRequired + "storage: a: b\n");
  EXPECT_EQ(error.rfind("test.yaml:7: invalid YAML: ", 0), 0u) << error;
}

TEST(ConfigTest, OnlyOneDocument) {
  // The line of the '---' that starts the second document.
  EXPECT_EQ(error_of(kRequired + lines({"---", "server: {}"})),
            "test.yaml:7: only one YAML document is allowed");
}

TEST(ConfigTest, ErrorMessagesNeverContainSecrets) {
  const std::string secret = "sk-SECRET-4f2a9";
  ScopedEnv env_secret("ARBITER_TEST_SECRET", secret);
  ScopedEnv env_spaced("ARBITER_TEST_SPACED", secret + " tail");
  ScopedEnv env_url("ARBITER_TEST_URL", "https://u:" + secret + "@x");
  TempDir dir;
  const std::string cert = dir.write("cert.pem", "c");

  const std::vector<std::string> configs = {
      // Bad values that came from the environment.
      lines({"server:", "  log_level: ${ARBITER_TEST_SECRET}"}) + kRequired,
      lines({"server:", "  threads: ${ARBITER_TEST_SECRET}"}) + kRequired,
      lines({"server:", "  allow_anonymous: ${ARBITER_TEST_SECRET}"}) + kRequired,
      lines({"server:", "  proxy_listen: ${ARBITER_TEST_SECRET}"}) + kRequired,
      lines({"server:", "  tls: { cert_file: " + cert + ", key_file: ${ARBITER_TEST_SECRET} }"}) +
          kRequired,
      lines({"storage:", "  durability: ${ARBITER_TEST_SECRET}"}) + kRequired,
      lines({
          "upstreams: [ { name: \"${ARBITER_TEST_SPACED}\", base_url: https://x } ]",
          "projects: [ { name: p } ]",
      }),
      lines({
          "upstreams: [ { name: u, base_url: \"${ARBITER_TEST_URL}\" } ]",
          "projects: [ { name: p } ]",
      }),
      lines({
          "upstreams: [ { name: u, base_url: https://x, api_key: \"${ARBITER_TEST_SPACED}\" } ]",
          "projects: [ { name: p } ]",
      }),
      kUpstream + "projects: [ { name: p, api_keys: [ \"${ARBITER_TEST_SPACED}\" ] } ]\n",
      kUpstream +
          "projects: [ { name: p, api_keys: [ { sha256: \"${ARBITER_TEST_SECRET}\" } ] } ]\n",
      kUpstream + lines({
                      "projects:",
                      "  - { name: p, api_keys: [ \"${ARBITER_TEST_SECRET}\" ] }",
                      "  - { name: q, api_keys: [ \"${ARBITER_TEST_SECRET}\" ] }",
                  }),
      // Secrets written literally in the file.
      lines({
          "upstreams: [ { name: u, base_url: \"https://u:" + secret + "@x\" } ]",
          "projects: [ { name: p } ]",
      }),
      lines({
          "upstreams: [ { name: u, base_url: https://x, api_key: \"" + secret + " x\" } ]",
          "projects: [ { name: p } ]",
      }),
      lines({
          "server: { allow_anonymous: true }",
          "upstreams: [ { name: u, base_url: https://x, api_key: " + secret + " } ]",
          "projects: [ { name: p } ]",
      }),
      kUpstream + lines({
                      "projects:",
                      "  - { name: p, api_keys: [ " + secret + " ] }",
                      "  - { name: q, api_keys: [ " + secret + " ] }",
                  }),
      kUpstream + "projects: [ { name: p, api_keys: [ \"" + secret + " \" ] } ]\n",
      kUpstream + "projects: [ { name: p, api_keys: [ { sha256: " + secret + " } ] } ]\n",
  };
  for (const std::string& yaml : configs) {
    SCOPED_TRACE(yaml);
    const std::string error = error_of(yaml);
    EXPECT_EQ(error.rfind("test.yaml:", 0), 0u) << error;
    EXPECT_EQ(error.find("SECRET"), std::string::npos) << error;
  }
}

// -------------------------------------------------------------------- files

TEST(ConfigTest, LoadsFromAFileAndNamesItInErrors) {
  TempDir dir;
  const std::string good = dir.write("good.yaml", kRequired);
  const auto config = load_config(good);
  EXPECT_EQ(config->source_file, good);
  EXPECT_EQ(config->upstreams[0].name, "openai");

  const std::string bad = dir.write("bad.yaml", kRequired + "extra: 1\n");
  try {
    load_config(bad);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), bad + ":7: unknown key 'extra'");
  }
}

TEST(ConfigTest, UnreadableFile) {
  TempDir dir;
  const std::string missing = (dir.path() / "nope.yaml").string();
  try {
    load_config(missing);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), missing + ": cannot read: No such file or directory");
  }
  try {
    load_config(dir.path().string());
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), dir.path().string() + ": cannot read: Is a directory");
  }
}

TEST(ConfigTest, DefaultConfigLoads) {
  ScopedEnv key("ARBITER_API_KEY", "test-arbiter-key");
  ScopedEnv openai("OPENAI_API_KEY", std::nullopt);
  const auto config = load_config(ARBITER_SOURCE_DIR "/conf/arbiter.yaml");
  EXPECT_EQ(config->server.proxy.host, "127.0.0.1");
  EXPECT_EQ(config->server.proxy.port, 8787);
  EXPECT_EQ(config->server.api.port, 8585);
  EXPECT_EQ(config->server.threads, 0u);
  EXPECT_EQ(config->storage.path, "./data");
  EXPECT_EQ(config->storage.durability, Durability::relaxed);
  ASSERT_EQ(config->upstreams.size(), 1u);
  EXPECT_EQ(config->upstreams[0].name, "openai");
  EXPECT_EQ(config->upstreams[0].host, "api.openai.com");
  EXPECT_TRUE(config->upstreams[0].tls);
  EXPECT_EQ(config->upstreams[0].api_key, "");
  ASSERT_EQ(config->projects.size(), 1u);
  EXPECT_EQ(config->projects[0].name, "default");
  EXPECT_EQ(config->projects[0].key_hashes, std::vector<KeyHash>{sha256_key("test-arbiter-key")});
}

TEST(ConfigTest, DefaultConfigInjectsOpenAiKeyWhenSet) {
  ScopedEnv key("ARBITER_API_KEY", "test-arbiter-key");
  ScopedEnv openai("OPENAI_API_KEY", "sk-test");
  EXPECT_EQ(load_config(ARBITER_SOURCE_DIR "/conf/arbiter.yaml")->upstreams[0].api_key, "sk-test");
}

TEST(ConfigTest, DefaultConfigNeedsArbiterApiKey) {
  ScopedEnv key("ARBITER_API_KEY", std::nullopt);
  const std::string path = ARBITER_SOURCE_DIR "/conf/arbiter.yaml";
  try {
    load_config(path);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(path + ":", 0), 0u) << what;
    EXPECT_NE(what.find("environment variable ARBITER_API_KEY is not set"), std::string::npos)
        << what;
  }
}

TEST(ConfigTest, FullExampleLoads) {
  TempDir dir;
  ScopedEnv cert("ARBITER_TLS_CERT", dir.write("cert.pem", "c"));
  ScopedEnv key("ARBITER_TLS_KEY", dir.write("key.pem", "k"));
  ScopedEnv api_cert("ARBITER_API_TLS_CERT", dir.write("api-cert.pem", "c"));
  ScopedEnv api_key("ARBITER_API_TLS_KEY", dir.write("api-key.pem", "k"));
  ScopedEnv ca("ARBITER_UPSTREAM_CA", dir.write("ca.pem", "ca"));
  ScopedEnv openai("OPENAI_API_KEY", "sk-test");
  ScopedEnv arbiter("ARBITER_API_KEY", "test-arbiter-key");
  ScopedEnv token("POLICY_CHECK_TOKEN", std::nullopt);
  ScopedEnv webhook("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");

  const auto config = load_config(ARBITER_SOURCE_DIR "/conf/examples/full.yaml");
  EXPECT_EQ(config->server.proxy.host, "0.0.0.0");
  EXPECT_EQ(config->server.api.host, "::1");
  ASSERT_TRUE(config->server.proxy.tls);
  ASSERT_TRUE(config->server.api.tls);
  EXPECT_NE(config->server.proxy.tls->cert_file, config->server.api.tls->cert_file);
  EXPECT_EQ(config->server.threads, 4u);
  EXPECT_EQ(config->storage.durability, Durability::strict);
  ASSERT_EQ(config->upstreams.size(), 2u);
  EXPECT_EQ(config->upstreams[0].api_key, "sk-test");
  EXPECT_FALSE(config->upstreams[0].ca_file.empty());
  EXPECT_EQ(config->upstreams[1].host, "::1");
  EXPECT_EQ(config->upstreams[1].base_path, "/v1");
  ASSERT_EQ(config->projects.size(), 2u);
  EXPECT_EQ(config->projects[0].key_hashes,
            (std::vector<KeyHash>{sha256_key("test-arbiter-key"), sha256_key("replace-me")}));
  EXPECT_EQ(config->projects[1].key_hashes, std::vector<KeyHash>{sha256_key("replace-me-too")});
  EXPECT_EQ(config->server.evaluator_workers, 4u);
  ASSERT_EQ(config->evaluators.size(), 9u);
  EXPECT_EQ(config->evaluators[0].filter.status, "2xx");
  EXPECT_EQ(config->evaluators[1].score_name, "rouge_l_vs_truth");
  EXPECT_EQ(config->evaluators[4].kind, "llm_judge");
  EXPECT_EQ((*config->evaluators[4].params)["upstream"], "openai");
  ASSERT_EQ(config->webhooks.size(), 2u);
  EXPECT_EQ(config->webhooks[0].events.size(), 3u);
  EXPECT_EQ(config->webhooks[0].projects, std::vector<std::string>{"default"});
  EXPECT_TRUE(config->webhooks[1].allow_insecure);
}

}  // namespace
}  // namespace arbiter::gateway

namespace arbiter::gateway {
namespace {

TEST(ConfigTest, DockerConfigLoads) {
  ScopedEnv key("ARBITER_API_KEY", "test-arbiter-key");
  ScopedEnv openai("OPENAI_API_KEY", std::nullopt);
  const auto config = load_config(ARBITER_SOURCE_DIR "/conf/docker.yaml");
  EXPECT_EQ(config->server.proxy.host, "0.0.0.0");
  EXPECT_EQ(config->storage.path, "/var/lib/arbiter");
}

TEST(ConfigTest, PricingTableMatchesExactThenLongestPrefix) {
  const auto config = load_config_from_string(
      "upstreams:\n  - name: u\n    base_url: http://127.0.0.1:1\nprojects:\n  - name: p\n    api_keys: [k]\n"
      "pricing:\n"
      "  - { model: gpt-4o*, input_per_million: 2.5, output_per_million: 10 }\n"
      "  - { model: gpt-4o-mini*, input_per_million: 0.15, output_per_million: 0.6 }\n"
      "  - { model: gpt-4o-mini-2024-07-18, input_per_million: 1, output_per_million: 2 }\n",
      "p.yaml");
  ASSERT_EQ(config->pricing.size(), 3u);
  EXPECT_DOUBLE_EQ(config->price_for("gpt-4o-mini-2024-07-18")->input_per_million, 1);
  EXPECT_DOUBLE_EQ(config->price_for("gpt-4o-mini-2025")->input_per_million, 0.15);
  EXPECT_DOUBLE_EQ(config->price_for("gpt-4o")->output_per_million, 10);
  EXPECT_EQ(config->price_for("o1"), nullptr);
}

TEST(ConfigTest, PricingErrorsNameTheLine) {
  const std::string head =
      "upstreams:\n  - name: u\n    base_url: http://127.0.0.1:1\nprojects:\n  - name: p\n    api_keys: [k]\n"
      "pricing:\n";
  auto expect_error = [&](const std::string& tail, const std::string& fragment) {
    try {
      load_config_from_string(head + tail, "p.yaml");
      ADD_FAILURE() << "expected an error for " << tail;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error("  - { model: a, input_per_million: -1, output_per_million: 1 }\n", "p.yaml:8:");
  expect_error("  - { model: a, input_per_million: cheap, output_per_million: 1 }\n", "expected a number");
  expect_error("  - { model: 'a*b', input_per_million: 1, output_per_million: 1 }\n", "only allowed at the end");
  expect_error("  - { model: a, input_per_million: 1 }\n", "output_per_million");
  expect_error("  - { model: a, input_per_million: 1, output_per_million: 1, currency: eur }\n", "currency");
}

TEST(ConfigTest, StorageTuningKeys) {
  const auto config = load_config_from_string(
      "storage:\n  queue_capacity: 100\n  batch_window_ms: 20\n  max_logged_body_bytes: 4096\n  log_requests: false\n"
      "upstreams:\n  - name: u\n    base_url: http://127.0.0.1:1\nprojects:\n  - name: p\n    api_keys: [k]\n",
      "s.yaml");
  EXPECT_EQ(config->storage.queue_capacity, 100u);
  EXPECT_EQ(config->storage.batch_window.count(), 20);
  EXPECT_EQ(config->storage.max_logged_body_bytes, 4096u);
  EXPECT_FALSE(config->storage.log_requests);
  EXPECT_EQ(config->server.api_workers, 32u);  // default
  EXPECT_THROW(load_config_from_string("server:\n  api_workers: 0\n", "w.yaml"), ConfigError);
}

// Found by the config_loader fuzz target: yaml-cpp 0.7 never returns on many
// documents where a ',' starts a token outside a flow collection. The loader
// refuses such a ',' first, with the line.
TEST(ConfigYaml, StrayCommaIsAnErrorNotAHang) {
  for (const char* yaml : {"&q,", "!q,", "&q ,", "&q,x", "# c\n\n&a !t ,", "!!str a\n,", "- &q a\n,", "&q [1],",
                           "&q {a: 1},", "!!str &qserver:\n  proxy_listen: x\n,  allow_anonymous: false\n"}) {
    EXPECT_NE(error_of(yaml).find("',' outside a flow collection"), std::string::npos) << yaml;
  }
  EXPECT_EQ(error_of("server: {}\n--- &q\n,"),
            "test.yaml:3: invalid YAML: ',' outside a flow collection ([...] or {...}); quote the value if it is "
            "text");
  for (const char* yaml : {",", ",q", ", q", "- a\n,q", "[1]\n,q", "[1],q", "\"a\",q", "a: 1\n,"}) {
    EXPECT_NE(error_of(yaml).find("',' outside a flow collection"), std::string::npos) << yaml;
  }
}

// Also from the fuzz target: an anchor name holding control bytes and invalid
// UTF-8 before nested brackets sends yaml-cpp into an endless loop. Control
// characters and invalid UTF-8 are refused, with the line, before it sees them.
TEST(ConfigYaml, ControlBytesAndInvalidUtf8AreAnErrorNotAHang) {
  const std::string hang = std::string("&\0\0\xcc\t&\0\xff\xff\0![[[[ttp") + std::string(60, '\x97') + ",\0\0N4YAML";
  EXPECT_NE(error_of(hang).find("control character or invalid UTF-8"), std::string::npos);
  EXPECT_EQ(error_of("server: {}\nprojects: [ a\x01 ]\n"),
            "test.yaml:2: invalid text: a control character or invalid UTF-8 (a config file is UTF-8 text)");
  EXPECT_NE(error_of("a: \"\xc3\x28\"\n").find("invalid UTF-8"), std::string::npos);
  // Tabs, CR LF line ends and real UTF-8 are text.
  const auto config = load(kUpstream + "# caf\xc3\xa9 \xe2\x9c\x93\r\nprojects: [ { name: p,\tapi_keys: [ k ] } ]\r\n");
  EXPECT_EQ(config->projects.at(0).name, "p");
}

// The cause behind those hangs: yaml-cpp 0.7's LoadAll collects empty
// documents forever when its parser stops at a token it cannot place
// (jbeder/yaml-cpp#1319). The loader no longer calls LoadAll. This input (from
// the fuzz target) gets past the stray-comma scan, which takes the '"' for a
// quoted scalar running to the end, and used to hang.
TEST(ConfigYaml, AParserThatStopsMakingProgressIsAnErrorNotAHang) {
  const std::string hang =
      ">#############filter:er@vers: { max_header_bytes: 10m4,2a x_bo\rTR_FUZZ_POVL}\"\n"
      "  api_listen: 127.0.0.1:0timeout_ms:\n"
      ",  allax_header_bytes: 1024,n: 127.0.0.1:0\n"
      ",  millio#n: 10 }\n";
  EXPECT_EQ(error_of(hang), "test.yaml:3: only one YAML document is allowed");
}

TEST(ConfigYaml, CommasInScalarsFlowCollectionsCommentsAndBlockScalarsAreFine) {
  const auto config = load(kUpstream + lines({
      "projects:",
      "  - name: &n p1  # a comment, with a comma",
      "    api_keys: [ \"k,1\", 'it''s,2', k3 ]  # quoted commas",
  }));
  ASSERT_EQ(config->projects.size(), 1u);
  EXPECT_EQ(config->projects[0].name, "p1");
  EXPECT_EQ(config->projects[0].key_hashes.size(), 3u);
  // A block scalar's lines are text, commas included (the key is unknown: that is the error).
  EXPECT_EQ(error_of("x: &a |\n  , hello\n  ,\n"), "test.yaml:1: unknown key 'x'");
  EXPECT_EQ(error_of("x: !t b, c\n"), "test.yaml:1: unknown key 'x'");
}

}  // namespace
}  // namespace arbiter::gateway
