#include "gateway/auth.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "gateway/config.hpp"

namespace arbiter::gateway {
namespace {

std::string hex(const KeyHash& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const std::uint8_t b : hash) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

std::string upper(std::string s) {
  for (auto& c : s) {
    if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

// alpha: two plaintext keys; beta: one plaintext key; gamma: a key given only
// as its SHA-256 (upper-case hex); delta: no keys at all.
std::shared_ptr<const Config> make_config() {
  const std::string yaml =
      "upstreams:\n"
      "  - name: openai\n"
      "    base_url: https://api.openai.com\n"
      "projects:\n"
      "  - name: alpha\n"
      "    api_keys: [\"key-a\", \"key-a2\"]\n"
      "  - name: beta\n"
      "    api_keys: [\"key-b\"]\n"
      "  - name: gamma\n"
      "    api_keys:\n"
      "      - { sha256: " + hex(sha256_key("key-g")) + " }\n"
      "      - { sha256: " + upper(hex(sha256_key("key-G2"))) + " }\n"
      "  - name: delta\n";
  return load_config_from_string(yaml, "auth_test.yaml");
}

class AuthTest : public ::testing::Test {
 protected:
  std::string project_of_key(std::string_view key) const {
    const ProjectConfig* p = find_project_by_key(*config_, key);
    return p ? p->name : "<none>";
  }
  std::string project_of_bearer(std::string_view authorization) const {
    const ProjectConfig* p = find_project_by_bearer(*config_, authorization);
    return p ? p->name : "<none>";
  }

  std::shared_ptr<const Config> config_ = make_config();
};

TEST_F(AuthTest, ConfigAsExpected) {
  ASSERT_EQ(config_->projects.size(), 4u);
  EXPECT_EQ(config_->projects[3].name, "delta");
  EXPECT_TRUE(config_->projects[3].key_hashes.empty());
}

TEST_F(AuthTest, KeysMapToTheirProjects) {
  EXPECT_EQ(project_of_key("key-a"), "alpha");
  EXPECT_EQ(project_of_key("key-a2"), "alpha");
  EXPECT_EQ(project_of_key("key-b"), "beta");
}

TEST_F(AuthTest, ReturnsAPointerIntoTheConfig) {
  EXPECT_EQ(find_project_by_key(*config_, "key-a"), &config_->projects[0]);
  EXPECT_EQ(find_project_by_key(*config_, "key-b"), &config_->projects[1]);
  EXPECT_EQ(find_project_by_key(*config_, "key-g"), &config_->projects[2]);
}

TEST_F(AuthTest, Sha256KeysWork) {
  EXPECT_EQ(project_of_key("key-g"), "gamma");
  EXPECT_EQ(project_of_key("key-G2"), "gamma");  // digest written in upper-case hex
  EXPECT_EQ(project_of_bearer("Bearer key-g"), "gamma");
  // The hex digest itself is not a key.
  EXPECT_EQ(project_of_key(hex(sha256_key("key-g"))), "<none>");
}

TEST_F(AuthTest, UnknownAndEmptyKeysGiveNull) {
  EXPECT_EQ(find_project_by_key(*config_, ""), nullptr);
  EXPECT_EQ(find_project_by_key(*config_, "key-c"), nullptr);
  EXPECT_EQ(find_project_by_key(*config_, "nope"), nullptr);
}

TEST_F(AuthTest, KeysAreExactBytes) {
  EXPECT_EQ(project_of_key("KEY-A"), "<none>");
  EXPECT_EQ(project_of_key("key-a "), "<none>");
  EXPECT_EQ(project_of_key(" key-a"), "<none>");
  EXPECT_EQ(project_of_key("key-"), "<none>");
  EXPECT_EQ(project_of_key("key-aa"), "<none>");
  EXPECT_EQ(project_of_key("key-g2"), "<none>");  // the configured key is key-G2
  EXPECT_EQ(project_of_key(std::string_view("key-a\0", 6)), "<none>");
}

TEST_F(AuthTest, ProjectWithoutKeysIsNeverSelected) {
  // No key maps to delta, whatever is tried; in particular not the empty key.
  EXPECT_EQ(find_project_by_key(*config_, ""), nullptr);
  EXPECT_EQ(project_of_bearer("Bearer delta"), "<none>");
}

TEST_F(AuthTest, BearerSelectsProject) {
  EXPECT_EQ(project_of_bearer("Bearer key-a"), "alpha");
  EXPECT_EQ(project_of_bearer("Bearer key-b"), "beta");
  EXPECT_EQ(project_of_bearer("Bearer key-a2"), "alpha");
}

TEST_F(AuthTest, BearerSchemeIsCaseInsensitive) {
  EXPECT_EQ(project_of_bearer("bearer key-a"), "alpha");
  EXPECT_EQ(project_of_bearer("BEARER key-a"), "alpha");
  EXPECT_EQ(project_of_bearer("bEaReR key-b"), "beta");
}

TEST_F(AuthTest, BearerExtraSpaces) {
  EXPECT_EQ(project_of_bearer("Bearer    key-a"), "alpha");
  EXPECT_EQ(project_of_bearer("   Bearer key-a"), "alpha");
  EXPECT_EQ(project_of_bearer("Bearer key-a   "), "alpha");
  EXPECT_EQ(project_of_bearer("  Bearer   key-b  "), "beta");
}

TEST_F(AuthTest, BearerMissingToken) {
  EXPECT_EQ(find_project_by_bearer(*config_, ""), nullptr);
  EXPECT_EQ(find_project_by_bearer(*config_, "Bearer"), nullptr);
  EXPECT_EQ(find_project_by_bearer(*config_, "Bearer "), nullptr);
  EXPECT_EQ(find_project_by_bearer(*config_, "Bearer      "), nullptr);
  EXPECT_EQ(find_project_by_bearer(*config_, "   "), nullptr);
}

TEST_F(AuthTest, NonBearerSchemes) {
  EXPECT_EQ(project_of_bearer("Basic key-a"), "<none>");
  EXPECT_EQ(project_of_bearer("Token key-a"), "<none>");
  EXPECT_EQ(project_of_bearer("Digest key-a"), "<none>");
  EXPECT_EQ(project_of_bearer("key-a"), "<none>");             // bare key is not a bearer header
  EXPECT_EQ(project_of_bearer("Bearerkey-a"), "<none>");       // no separator
  EXPECT_EQ(project_of_bearer("Bearer: key-a"), "<none>");
  EXPECT_EQ(project_of_bearer("Bear key-a"), "<none>");
  EXPECT_EQ(project_of_bearer("Bearers key-a"), "<none>");
}

TEST_F(AuthTest, BearerTokenIsTheWholeRest) {
  // Internal blanks are part of the token, so these are unknown keys.
  EXPECT_EQ(project_of_bearer("Bearer key-a key-b"), "<none>");
  EXPECT_EQ(project_of_bearer("Bearer key -a"), "<none>");
  EXPECT_EQ(project_of_bearer("Bearer Bearer key-a"), "<none>");
  EXPECT_EQ(project_of_bearer("Bearer KEY-A"), "<none>");  // only the scheme is case-insensitive
}

TEST_F(AuthTest, EmptyProjectListFindsNothing) {
  const Config empty;
  EXPECT_EQ(find_project_by_key(empty, "key-a"), nullptr);
  EXPECT_EQ(find_project_by_bearer(empty, "Bearer key-a"), nullptr);
}

}  // namespace
}  // namespace arbiter::gateway
