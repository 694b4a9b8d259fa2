#include "gateway/proxy_request.hpp"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/core/error.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>


namespace arbiter::gateway {
namespace {

namespace http = boost::beast::http;

// Two projects; the default upstream injects a provider key and has a base
// path, the second one neither.
constexpr const char* kYaml = R"(
upstreams:
  - name: openai
    base_url: https://api.openai.example/v1
    api_key: sk-provider-secret
  - name: local
    base_url: http://127.0.0.1:9000
projects:
  - name: alpha
    api_keys: [ "ak-alpha" ]
  - name: beta
    api_keys: [ "ak-beta" ]
)";

constexpr const char* kAnonymousYaml = R"(
server:
  allow_anonymous: true
upstreams:
  - name: openai
    base_url: http://127.0.0.1:9000
projects:
  - name: open
    api_keys: [ "ak-open" ]
)";

class ProxyRequestTest : public ::testing::Test {
 protected:
  void use(const char* yaml) {
    config_ = load_config_from_string(yaml, "proxy_request_test.yaml");
  }

  PreparedProxyRequest prepare(const std::vector<std::pair<std::string, std::string>>& headers,
                               bool wants_bodies = false, http::verb method = http::verb::post,
                               std::string target = "/chat/completions") {
    ProxyRequest req{method, target, 11};
    for (const auto& [name, value] : headers) req.insert(name, value);
    return prepare_proxy_request(*config_, config_->upstreams, req, wants_bodies);
  }

  // The upstream head parsed back, as the upstream reads it. Fails the test
  // when it is not one well-formed HTTP/1.1 request head.
  static http::request<http::empty_body> upstream(const PreparedProxyRequest& p) {
    http::request_parser<http::empty_body> parser;
    parser.eager(false);
    boost::system::error_code ec;
    const std::size_t used = parser.put(boost::asio::buffer(p.upstream_head), ec);
    EXPECT_FALSE(ec) << ec.message() << " in:\n" << p.upstream_head;
    EXPECT_TRUE(parser.is_header_done()) << p.upstream_head;
    EXPECT_EQ(used, p.upstream_head.size()) << "bytes after the head:\n" << p.upstream_head;
    return parser.release();
  }

  static std::vector<std::string> names(const http::fields& r) {
    std::vector<std::string> out;
    for (const auto& f : r) out.emplace_back(f.name_string());
    return out;
  }

  std::shared_ptr<const Config> config_;
};

TEST_F(ProxyRequestTest, MissingOrWrongKeyIsRejectedWith401) {
  use(kYaml);
  auto p = prepare({{"Host", "x"}});
  ASSERT_TRUE(p.rejection);
  EXPECT_EQ(p.rejection->status, http::status::unauthorized);
  EXPECT_EQ(p.rejection->counter, ProxyRejection::Counter::kUnauthorized);
  EXPECT_NE(p.rejection->message.find("Helicone-Auth"), std::string::npos);

  p = prepare({{"Helicone-Auth", "Bearer ak-wrong"}});
  ASSERT_TRUE(p.rejection);
  EXPECT_EQ(p.rejection->message, "invalid gateway key in Helicone-Auth");
  EXPECT_EQ(p.rejection->message.find("ak-wrong"), std::string::npos);  // the key is never echoed
}

TEST_F(ProxyRequestTest, UnknownUpstreamIsA400) {
  use(kYaml);
  auto p = prepare({{"Helicone-Auth", "Bearer ak-alpha"}, {"Helicone-Upstream", "nope"}});
  ASSERT_TRUE(p.rejection);
  EXPECT_EQ(p.rejection->status, http::status::bad_request);
  EXPECT_EQ(p.rejection->code, "unknown_upstream");
}

TEST_F(ProxyRequestTest, RewritesTheHeaderForTheUpstream) {
  use(kYaml);
  auto p = prepare({{"Host", "gateway.local"},
                    {"Helicone-Auth", "Bearer ak-beta"},
                    {"Helicone-Property-Env", "prod"},
                    {"helicone-user-id", "alice"},
                    {"Connection", "keep-alive"},
                    {"Keep-Alive", "timeout=5"},
                    {"TE", "trailers"},
                    {"Expect", "100-continue"},
                    {"Content-Type", "application/json"},
                    {"X-Custom", "kept"}},
                   /*wants_bodies=*/true);
  ASSERT_FALSE(p.rejection);
  EXPECT_EQ(p.project->name, "beta");
  EXPECT_EQ(p.ctx.project, "beta");
  EXPECT_EQ(p.ctx.upstream, "openai");
  EXPECT_EQ(p.ctx.properties.at("env"), "prod");
  EXPECT_EQ(p.ctx.user_id, "alice");
  EXPECT_TRUE(p.expect_continue);
  EXPECT_TRUE(is_valid_request_id(p.ctx.request_id));

  const auto up = upstream(p);
  EXPECT_EQ(up.target(), "/v1/chat/completions");
  EXPECT_EQ(up[http::field::host], "api.openai.example");
  EXPECT_EQ(up[http::field::accept_encoding], "identity");
  EXPECT_EQ(up[http::field::authorization], "Bearer sk-provider-secret");  // no client key: injected
  EXPECT_EQ(up["X-Custom"], "kept");
  EXPECT_EQ(names(up), (std::vector<std::string>{"Content-Type", "X-Custom", "Host", "Accept-Encoding",
                                                 "Authorization"}));
}

// The head is written from the client's fields as parsed: their spelling and
// order, one Accept-Encoding when bodies are logged, chunked framing kept,
// and every credential that goes upstream handed to the log's filter.
TEST_F(ProxyRequestTest, TheUpstreamHeadKeepsTheClientsFieldsAsSent) {
  use(kYaml);
  auto p = prepare({{"Helicone-Auth", "Bearer ak-alpha"},
                    {"content-type", "application/json"},
                    {"Accept-Encoding", "gzip, br"},
                    {"x-stainless-package-version", "4.77.0"},
                    {"Transfer-Encoding", "chunked"},
                    {"X-Api-Key", "sk-ant-client-key"},
                    {"accept-encoding", "zstd"}},
                   /*wants_bodies=*/true, http::verb::post, "/chat/completions?stream=true");
  ASSERT_FALSE(p.rejection);
  EXPECT_TRUE(p.upstream_chunked);
  EXPECT_EQ(p.upstream_head,
            "POST /v1/chat/completions?stream=true HTTP/1.1\r\n"
            "content-type: application/json\r\n"
            "x-stainless-package-version: 4.77.0\r\n"
            "X-Api-Key: sk-ant-client-key\r\n"
            "Host: api.openai.example\r\n"
            "Accept-Encoding: identity\r\n"
            "Transfer-Encoding: chunked\r\n"
            "\r\n");
  const auto up = upstream(p);
  EXPECT_TRUE(up.chunked());
  p.ctx.credentials.finish();
  const auto& secrets = p.ctx.credentials.values();
  EXPECT_NE(std::find(secrets.begin(), secrets.end(), "sk-ant-client-key"), secrets.end());
  EXPECT_NE(std::find(secrets.begin(), secrets.end(), "ak-alpha"), secrets.end());

  // Without logged bodies the client's encodings go upstream as sent; the
  // injected provider key is a credential the log must not keep either.
  p = prepare({{"Helicone-Auth", "Bearer ak-alpha"}, {"Accept-Encoding", "gzip"}}, /*wants_bodies=*/false);
  ASSERT_FALSE(p.rejection);
  EXPECT_FALSE(p.upstream_chunked);
  EXPECT_EQ(p.upstream_head,
            "POST /v1/chat/completions HTTP/1.1\r\nAccept-Encoding: gzip\r\nHost: api.openai.example\r\n"
            "Authorization: Bearer sk-provider-secret\r\n\r\n");
  p.ctx.credentials.finish();
  const auto& injected = p.ctx.credentials.values();
  EXPECT_NE(std::find(injected.begin(), injected.end(), "sk-provider-secret"), injected.end());
}

TEST_F(ProxyRequestTest, ClientProviderKeyIsForwardedAndNotReplaced) {
  use(kYaml);
  auto p = prepare({{"Helicone-Auth", "Bearer ak-alpha"}, {"Authorization", "Bearer sk-client"}});
  ASSERT_FALSE(p.rejection);
  EXPECT_EQ(upstream(p)[http::field::authorization], "Bearer sk-client");

  p = prepare({{"Helicone-Auth", "Bearer ak-alpha"}, {"x-api-key", "anthropic-client"}});
  ASSERT_FALSE(p.rejection);
  EXPECT_EQ(upstream(p)["x-api-key"], "anthropic-client");
  EXPECT_EQ(upstream(p).count(http::field::authorization), 0u);
}

TEST_F(ProxyRequestTest, ArbiterKeyInAuthorizationNeverReachesTheUpstream) {
  use(kYaml);
  // The key as the only credential: it authorises and is dropped.
  auto p = prepare({{"Authorization", "Bearer ak-alpha"}});
  ASSERT_FALSE(p.rejection);
  EXPECT_EQ(p.ctx.project, "alpha");
  EXPECT_EQ(upstream(p)[http::field::authorization], "Bearer sk-provider-secret");

  // Found by the proxy_request fuzzer: with Helicone-Auth present, an arbiter
  // key in Authorization (the same one, or another project's) was forwarded
  // to the provider as if it were a provider key.
  for (const char* key : {"Bearer ak-alpha", "Bearer ak-beta", "bearer  ak-beta "}) {
    p = prepare({{"Helicone-Auth", "Bearer ak-alpha"}, {"Authorization", key}});
    ASSERT_FALSE(p.rejection) << key;
    EXPECT_EQ(p.ctx.project, "alpha") << key;
    EXPECT_EQ(upstream(p)[http::field::authorization], "Bearer sk-provider-secret") << key;
  }
}

// Found by the proxy_request fuzzer in CI: with two Authorization headers
// the gateway read the first and forwarded the second, an arbiter key.
TEST_F(ProxyRequestTest, MoreThanOneAuthorizationHeaderIsA400) {
  use(kYaml);
  for (const auto& headers : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {{"Helicone-Auth", "Bearer ak-alpha"}, {"Authorization", "Bearer sk-client"}, {"Authorization", "Bearer ak-beta"}},
           {{"Authorization", "Bearer ak-alpha"}, {"authorization", "Bearer ak-alpha"}},
           {{"Authorization", "Bearer sk-client"}, {"Authorization", "Bearer ak-alpha"}}}) {
    auto p = prepare(headers);
    ASSERT_TRUE(p.rejection);
    EXPECT_EQ(p.rejection->status, http::status::bad_request);
    EXPECT_EQ(p.rejection->code, "duplicate_header");
    EXPECT_NE(p.rejection->message.find("Authorization"), std::string::npos);
  }
}

TEST_F(ProxyRequestTest, HeliconeUpstreamPicksTheUpstreamAndItsBasePath) {
  use(kYaml);
  auto p = prepare({{"Helicone-Auth", "ak-alpha"}, {"Helicone-Upstream", "local"}}, false, http::verb::get,
                   "/models?limit=2");
  ASSERT_FALSE(p.rejection);
  EXPECT_EQ(p.upstream_index, 1u);
  EXPECT_EQ(upstream(p).target(), "/models?limit=2");
  EXPECT_EQ(upstream(p)[http::field::host], "127.0.0.1:9000");
  EXPECT_EQ(upstream(p).method(), http::verb::get);
  EXPECT_EQ(upstream(p).count(http::field::authorization), 0u);  // nothing to inject
  EXPECT_EQ(p.ctx.method, "GET");
  EXPECT_EQ(p.ctx.target, "/models?limit=2");
}

TEST_F(ProxyRequestTest, ClientRequestIdIsKeptLowerCasedAndABadOneReplaced) {
  use(kYaml);
  auto p = prepare({{"Helicone-Auth", "Bearer ak-alpha"},
                    {"Helicone-Request-Id", "0B6C2F3E-8F1D-4C1A-9A6E-2F4B1C3D5E7F"}});
  ASSERT_FALSE(p.rejection);
  EXPECT_TRUE(p.ctx.request_id_from_client);
  EXPECT_EQ(p.ctx.request_id, "0b6c2f3e-8f1d-4c1a-9a6e-2f4b1c3d5e7f");

  p = prepare({{"Helicone-Auth", "Bearer ak-alpha"}, {"Helicone-Request-Id", "../../etc/passwd"}});
  ASSERT_FALSE(p.rejection);
  EXPECT_FALSE(p.ctx.request_id_from_client);
  EXPECT_TRUE(is_valid_request_id(p.ctx.request_id));
}

TEST_F(ProxyRequestTest, AnonymousAccessUsesTheFirstProjectButNotWithABadKey) {
  use(kAnonymousYaml);
  auto p = prepare({});
  ASSERT_FALSE(p.rejection);
  EXPECT_EQ(p.ctx.project, "open");
  p = prepare({{"Helicone-Auth", "Bearer ak-wrong"}});
  ASSERT_TRUE(p.rejection);
  EXPECT_EQ(p.rejection->status, http::status::unauthorized);
}

TEST(ProxyReadErrorTest, LimitsAndMalformedRequestsGetAnAnswerTimeoutsAndHangUpsDoNot) {
  LimitsConfig limits;
  limits.max_header_bytes = 1024;
  limits.max_body_bytes = 2048;
  auto r = rejection_for_read_error(http::error::header_limit, limits);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, http::status::request_header_fields_too_large);
  EXPECT_NE(r->message.find("max_header_bytes (1024 bytes)"), std::string::npos);
  r = rejection_for_read_error(http::error::body_limit, limits);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, http::status::payload_too_large);
  EXPECT_NE(r->message.find("max_body_bytes (2048 bytes)"), std::string::npos);
  r = rejection_for_read_error(http::error::bad_field, limits);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, http::status::bad_request);
  EXPECT_EQ(r->counter, ProxyRejection::Counter::kBadRequest);
  EXPECT_FALSE(rejection_for_read_error(boost::beast::error::timeout, limits));
  EXPECT_FALSE(rejection_for_read_error(http::error::end_of_stream, limits));
}

TEST(ProxyErrorResponseTest, IsJsonWithTheCallsIdWhenItHasOne) {
  const std::string id = "0b6c2f3e-8f1d-4c1a-9a6e-2f4b1c3d5e7f";
  auto res = proxy_error_response(http::status::bad_gateway, "upstream_unreachable", "it is down", true, &id);
  EXPECT_EQ(res.result(), http::status::bad_gateway);
  EXPECT_EQ(res["Helicone-Id"], id);
  EXPECT_EQ(res["Helicone-Status"], "failed");
  EXPECT_TRUE(res.keep_alive());
  const auto body = nlohmann::json::parse(res.body());
  EXPECT_EQ(body["error"]["code"], "upstream_unreachable");
  EXPECT_EQ(body["error"]["message"], "it is down");
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));

  res = proxy_error_response(http::status::unauthorized, "unauthorized", "no", false);
  EXPECT_EQ(res.count("Helicone-Id"), 0u);
  EXPECT_FALSE(res.keep_alive());
}

}  // namespace
}  // namespace arbiter::gateway
