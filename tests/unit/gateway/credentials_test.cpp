#include "gateway/credentials.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http/field.hpp>
#include <string>

namespace arbiter::gateway {
namespace {

TEST(CredentialsTest, CredentialHeadersAreRecognisedInAnyCaseAndLength) {
  for (const char* name : {"Authorization", "authorization", "AUTHORIZATION", "x-api-key", "X-Api-Key", "api-key",
                           "Cookie", "Set-Cookie", "X-Goog-Api-Key", "X-Amz-Security-Token", "Proxy-Authorization",
                           "X-Client-Secret", "X-PASSWORD"}) {
    EXPECT_TRUE(Credentials::is_credential_header(name)) << name;
  }
  for (const char* name : {"Content-Type", "Accept-Encoding", "X-Stainless-Package-Version", "Host", "",
                           "Helicone-Property-Api-Key", "helicone-property-token", "Helicone-Session-Key",
                           "HELICONE-USER-ID", "Helicone-Request-Id", "Helicone-Upstream", "Helicone-Omit-Request"}) {
    EXPECT_FALSE(Credentials::is_credential_header(name)) << name;
  }
  // Names past the 64-byte buffer the check lowers on the stack.
  const std::string padding(70, 'X');
  EXPECT_TRUE(Credentials::is_credential_header(padding + "-Api-Key"));
  EXPECT_TRUE(Credentials::is_credential_header("X-" + padding + "-TOKEN"));
  EXPECT_FALSE(Credentials::is_credential_header(padding + "-Version"));
  EXPECT_FALSE(Credentials::is_credential_header("Helicone-Property-" + padding + "-Key"));
  // Exactly 64 bytes, the buffer's size.
  EXPECT_TRUE(Credentials::is_credential_header(std::string(61, 'y') + "KEY"));
  EXPECT_FALSE(Credentials::is_credential_header(std::string(64, 'y')));
}

TEST(CredentialsTest, KnownFieldsGetTheAnswerTheirNamesGet) {
  namespace http = boost::beast::http;
  int credentials = 0;
  for (unsigned i = 1; i <= static_cast<unsigned>(http::field::xref); ++i) {
    const auto f = static_cast<http::field>(i);
    const auto name = http::to_string(f);
    const std::string spelled(name.data(), name.size());
    // The name passed along is not looked at for a known field.
    EXPECT_EQ(Credentials::is_credential_header(f, "x-api-key"),
              Credentials::is_credential_header(spelled))
        << spelled;
    credentials += Credentials::is_credential_header(f, {}) ? 1 : 0;
  }
  EXPECT_TRUE(Credentials::is_credential_header(http::field::authorization, {}));
  EXPECT_TRUE(Credentials::is_credential_header(http::field::proxy_authorization, {}));
  EXPECT_TRUE(Credentials::is_credential_header(http::field::cookie, {}));
  EXPECT_FALSE(Credentials::is_credential_header(http::field::content_type, "x-api-key"));
  EXPECT_FALSE(Credentials::is_credential_header(http::field::host, "Authorization"));
  EXPECT_GE(credentials, 5);
  EXPECT_LE(credentials, 30);
  // An unknown field is judged by its name.
  EXPECT_TRUE(Credentials::is_credential_header(http::field::unknown, "X-Api-Key"));
  EXPECT_FALSE(Credentials::is_credential_header(http::field::unknown, "X-Stainless-Os"));
  EXPECT_FALSE(Credentials::is_credential_header(http::field::unknown, "Helicone-Property-Token"));

  Credentials c;
  c.consider(http::field::authorization, "Authorization", "BEARER sk-provider-0123456789");
  c.consider(http::field::content_type, "Content-Type", "text/plain; sk-not-a-secret-header");
  c.consider(http::field::unknown, "X-Goog-Api-Key", "goog-0123456789");
  c.finish();
  std::string text = "sk-provider-0123456789 sk-not-a-secret-header goog-0123456789";
  c.redact(text);
  EXPECT_EQ(text, "[REDACTED] sk-not-a-secret-header [REDACTED]");
}

TEST(CredentialsTest, ConsideredValuesAreRedactedWithAndWithoutTheirScheme) {
  Credentials c;
  c.consider("Authorization", "Bearer sk-provider-0123456789");
  c.consider("Content-Type", "application/json; sk-not-a-secret-header");
  c.consider("x-api-key", "  sk-ant-0123456789  ");
  c.finish();
  std::string text =
      "echo: Bearer sk-provider-0123456789 and sk-provider-0123456789, sk-ant-0123456789, "
      "sk-not-a-secret-header";
  c.redact(text);
  EXPECT_EQ(text, "echo: [REDACTED] and [REDACTED], [REDACTED], sk-not-a-secret-header");
}

}  // namespace
}  // namespace arbiter::gateway
