#include "gateway/credentials.hpp"

#include <string>

#include <gtest/gtest.h>

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
