// The `webhooks:` section: every key, its defaults, and errors with
// file:line that never echo a secret, a header value or a URL's query.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <initializer_list>
#include <string>

#include "gateway/config.hpp"

namespace arbiter::gateway {
namespace {

constexpr const char* kSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

std::string lines(std::initializer_list<std::string> items) {
  std::string out;
  for (const std::string& line : items) out += line + "\n";
  return out;
}

// Appended after each test's webhooks: block so that its line numbers hold.
const std::string kRest = lines({
    "upstreams: [ { name: u, base_url: https://x } ]",
    "projects: [ { name: alpha }, { name: beta } ]",
});

std::shared_ptr<const Config> load(const std::string& yaml) {
  return load_config_from_string(yaml, "test.yaml");
}

std::string error_of(const std::string& yaml) {
  try {
    load(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<loaded without error>";
}

// A minimal valid webhook with one extra line (indented under the item).
std::string hook_with(const std::string& extra) {
  return lines({"webhooks:", "  - name: w", "    url: https://hooks.example.com/in",
                std::string("    secret: ") + kSecret, extra}) +
         kRest;
}

TEST(WebhookConfig, EveryKeyParses) {
  const auto c = load(lines({
                          "webhooks:",
                          "  - name: evals",
                          "    url: https://hooks.example.com/arbiter?token=abc",
                          std::string("    secret: ") + kSecret,
                          "    events: [ request.logged, score.created, evaluation.completed ]",
                          "    sample_rate: 12.5",
                          "    property_filters: { Env: prod, team: search }",
                          "    include_bodies: false",
                          "    retry: { max_attempts: 3, initial_backoff_ms: 10, max_backoff_ms: 50 }",
                          "    timeout_ms: 2500",
                          "    headers: { X-Api-Key: s3cret, X-Team: evals }",
                          "    allow_insecure: false",
                          "    max_in_flight: 7",
                          "    projects: [ beta ]",
                          "  - name: local",
                          "    url: http://127.0.0.1:9000/hook",
                          std::string("    secret: ") + kSecret,
                          "    allow_insecure: true",
                      }) +
                      kRest);
  ASSERT_EQ(c->webhooks.size(), 2u);
  const WebhookConfig& w = c->webhooks[0];
  EXPECT_EQ(w.name, "evals");
  EXPECT_EQ(w.url, "https://hooks.example.com/arbiter?token=abc");
  EXPECT_TRUE(w.tls);
  EXPECT_EQ(w.host, "hooks.example.com");
  EXPECT_EQ(w.secret_text, kSecret);
  EXPECT_EQ(w.secret_key.size(), 24u);  // decoded at load
  EXPECT_EQ(w.events, (std::vector<std::string>{"request.logged", "score.created", "evaluation.completed"}));
  EXPECT_DOUBLE_EQ(w.sample_rate, 12.5);
  EXPECT_EQ(w.property_filters, (std::map<std::string, std::string>{{"env", "prod"}, {"team", "search"}}));
  EXPECT_FALSE(w.include_bodies);
  EXPECT_EQ(w.retry.max_attempts, 3u);
  EXPECT_EQ(w.retry.initial_backoff.count(), 10);
  EXPECT_EQ(w.retry.max_backoff.count(), 50);
  EXPECT_EQ(w.timeout.count(), 2500);
  ASSERT_EQ(w.headers.size(), 2u);
  EXPECT_EQ(w.headers[0], (std::pair<std::string, std::string>{"X-Api-Key", "s3cret"}));
  EXPECT_EQ(w.max_in_flight, 7u);
  EXPECT_EQ(w.projects, (std::vector<std::string>{"beta"}));
  EXPECT_FALSE(c->webhooks[1].tls);
  EXPECT_TRUE(c->webhooks[1].allow_insecure);
}

TEST(WebhookConfig, Defaults) {
  const auto c = load(hook_with(""));
  ASSERT_EQ(c->webhooks.size(), 1u);
  const WebhookConfig& w = c->webhooks[0];
  EXPECT_EQ(w.events, (std::vector<std::string>{"request.logged"}));
  EXPECT_DOUBLE_EQ(w.sample_rate, 100);
  EXPECT_TRUE(w.property_filters.empty());
  EXPECT_TRUE(w.include_bodies);
  EXPECT_EQ(w.retry.max_attempts, 8u);
  EXPECT_EQ(w.retry.initial_backoff.count(), 5000);
  EXPECT_EQ(w.retry.max_backoff.count(), 3600000);
  EXPECT_EQ(w.timeout.count(), 15000);
  EXPECT_FALSE(w.allow_insecure);
  EXPECT_EQ(w.max_in_flight, 4u);
  EXPECT_TRUE(w.projects.empty());
  EXPECT_TRUE(load(kRest)->webhooks.empty());
}

TEST(WebhookConfig, RequiredKeysAndUniqueNames) {
  EXPECT_EQ(error_of(lines({"webhooks:", "  - url: https://x"}) + kRest),
            "test.yaml:2: webhooks[0]: missing required key 'name'");
  EXPECT_EQ(error_of(lines({"webhooks:", "  - name: w", "    url: https://x"}) + kRest),
            "test.yaml:2: webhooks[0]: missing required key 'secret'");
  EXPECT_EQ(error_of(lines({"webhooks:", "  - name: w", std::string("    secret: ") + kSecret}) + kRest),
            "test.yaml:2: webhooks[0]: missing required key 'url'");
  const std::string one = std::string("{ name: w, url: https://x, secret: ") + kSecret + " }";
  EXPECT_EQ(error_of(lines({"webhooks:", "  - " + one, "  - " + one}) + kRest),
            "test.yaml:3: webhooks[1].name: duplicate webhook name (first used at line 2)");
  EXPECT_EQ(error_of(hook_with("    colour: blue")), "test.yaml:5: unknown key 'colour' in webhooks[0]");
  EXPECT_EQ(error_of(lines({"webhooks: { a: b }"}) + kRest), "test.yaml:1: webhooks: expected a sequence");
}

TEST(WebhookConfig, UrlsMustBeHttpsUnlessInsecureIsAllowed) {
  const std::string secret = std::string("    secret: ") + kSecret;
  EXPECT_EQ(error_of(lines({"webhooks:", "  - name: w", "    url: http://hooks.example.com/in", secret}) + kRest),
            "test.yaml:3: webhooks[0].url: plain http:// is refused unless allow_insecure: true (use https://)");
  EXPECT_NO_THROW(load(lines({"webhooks:", "  - name: w", "    url: http://hooks.example.com/in", secret,
                              "    allow_insecure: true"}) +
                       kRest));
  EXPECT_EQ(error_of(lines({"webhooks:", "  - name: w", "    url: ftp://x/in", secret}) + kRest),
            "test.yaml:3: webhooks[0].url: invalid URL: expected an http:// or https:// URL");
  EXPECT_EQ(error_of(lines({"webhooks:", "  - name: w", "    url: https://user:pw@x/in", secret}) + kRest),
            "test.yaml:3: webhooks[0].url: invalid URL: credentials in the URL are not allowed (use api_key)");
  EXPECT_EQ(error_of(lines({"webhooks:", "  - name: w", "    url: https://x/in#frag", secret}) + kRest),
            "test.yaml:3: webhooks[0].url: invalid URL: fragments are not allowed");
  const std::string bad_query =
      error_of(lines({"webhooks:", "  - name: w", "    url: \"https://x/in?token=se cret\"", secret}) + kRest);
  EXPECT_EQ(bad_query, "test.yaml:3: webhooks[0].url: invalid URL: invalid character in the query");
  EXPECT_EQ(bad_query.find("se cret"), std::string::npos);
}

TEST(WebhookConfig, SecretsAreCheckedButNeverEchoed) {
  EXPECT_EQ(error_of(lines({"webhooks:", "  - name: w", "    url: https://x", "    secret: hunter2hunter2"}) + kRest),
            "test.yaml:4: webhooks[0].secret: invalid secret: expected whsec_ followed by the "
            "base64-encoded key");
  EXPECT_EQ(error_of(lines({"webhooks:", "  - name: w", "    url: https://x", "    secret: whsec_c2hvcnQ="}) + kRest),
            "test.yaml:4: webhooks[0].secret: invalid secret: the decoded key must be 24 to 64 bytes (it is 5)");
  ::setenv("ARBITER_TEST_WEBHOOK_SECRET", "whsec_not*base64*at*all*here", 1);
  const std::string from_env = error_of(
      lines({"webhooks:", "  - name: w", "    url: https://x", "    secret: ${ARBITER_TEST_WEBHOOK_SECRET}"}) +
      kRest);
  ::unsetenv("ARBITER_TEST_WEBHOOK_SECRET");
  EXPECT_EQ(from_env, "test.yaml:4: webhooks[0].secret: invalid secret: the part after whsec_ is not valid base64");
  EXPECT_EQ(from_env.find("not*base64"), std::string::npos);
}

TEST(WebhookConfig, EventsSamplingFiltersAndRetry) {
  EXPECT_EQ(error_of(hook_with("    events: [ request.logged, request.created ]")),
            "test.yaml:5: webhooks[0].events[1]: unknown event 'request.created' (expected request.logged, "
            "score.created or evaluation.completed)");
  EXPECT_EQ(error_of(hook_with("    events: [ score.created, score.created ]")),
            "test.yaml:5: webhooks[0].events[1]: duplicate event 'score.created'");
  EXPECT_EQ(error_of(hook_with("    events: []")), "test.yaml:5: webhooks[0].events: at least one event is required");
  EXPECT_EQ(error_of(hook_with("    sample_rate: 101")),
            "test.yaml:5: webhooks[0].sample_rate: must be between 0.000000 and 100.000000");
  EXPECT_EQ(error_of(hook_with("    sample_rate: \"50\"")), "test.yaml:5: webhooks[0].sample_rate: expected a number");
  EXPECT_EQ(error_of(hook_with("    property_filters: [ env ]")),
            "test.yaml:5: webhooks[0].property_filters: expected a mapping");
  EXPECT_EQ(error_of(hook_with("    property_filters: { env: [ a, b ] }")),
            "test.yaml:5: webhooks[0].property_filters.env: expected a string");
  EXPECT_EQ(error_of(hook_with("    property_filters: { Env: a, env: b }")),
            "test.yaml:5: webhooks[0].property_filters.env: duplicate property (names are case-insensitive)");
  EXPECT_EQ(error_of(hook_with("    retry: { max_attempts: 0 }")),
            "test.yaml:5: webhooks[0].retry.max_attempts: expected a positive integer");
  EXPECT_EQ(error_of(hook_with("    retry: { max_attempts: 101 }")),
            "test.yaml:5: webhooks[0].retry.max_attempts: out of range (at most 100)");
  EXPECT_EQ(error_of(hook_with("    retry: { initial_backoff_ms: 5000, max_backoff_ms: 100 }")),
            "test.yaml:5: webhooks[0].retry.initial_backoff_ms: initial_backoff_ms must not exceed "
            "max_backoff_ms (100)");
  EXPECT_EQ(error_of(hook_with("    retry: { attempts: 3 }")),
            "test.yaml:5: unknown key 'attempts' in webhooks[0].retry");
  EXPECT_EQ(error_of(hook_with("    timeout_ms: 0")), "test.yaml:5: webhooks[0].timeout_ms: expected a positive integer");
  EXPECT_EQ(error_of(hook_with("    max_in_flight: 0")),
            "test.yaml:5: webhooks[0].max_in_flight: expected a positive integer");
  EXPECT_EQ(error_of(hook_with("    include_bodies: yes")),
            "test.yaml:5: webhooks[0].include_bodies: expected true or false");
}

TEST(WebhookConfig, HeadersAndProjects) {
  EXPECT_EQ(error_of(hook_with("    headers: { webhook-signature: x }")),
            "test.yaml:5: webhooks[0].headers.webhook-signature: header 'webhook-signature' is set by arbiter "
            "and cannot be configured");
  EXPECT_EQ(error_of(hook_with("    headers: { Content-Type: text/plain }")),
            "test.yaml:5: webhooks[0].headers.Content-Type: header 'Content-Type' is set by arbiter and cannot "
            "be configured");
  EXPECT_EQ(error_of(hook_with("    headers: { \"bad name\": x }")),
            "test.yaml:5: webhooks[0].headers.bad name: invalid header name");
  EXPECT_EQ(error_of(hook_with("    headers: { X-A: a, x-a: b }")),
            "test.yaml:5: webhooks[0].headers.x-a: duplicate header 'x-a'");
  const std::string control = error_of(hook_with("    headers: { X-Key: \"tok\\r\\nen\" }"));
  EXPECT_EQ(control, "test.yaml:5: webhooks[0].headers.X-Key: header value contains control characters");
  EXPECT_EQ(control.find("tok"), std::string::npos);
  EXPECT_EQ(error_of(hook_with("    projects: [ gamma ]")),
            "test.yaml:5: webhooks[0].projects[0]: unknown project 'gamma'");
}

}  // namespace
}  // namespace arbiter::gateway
