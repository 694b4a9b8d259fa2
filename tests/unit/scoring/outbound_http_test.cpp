#include "scoring/outbound_http.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>
#include <nlohmann/json.hpp>

#include "tests/support/fake_upstream.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_cert.hpp"

namespace arbiter::scoring {
namespace {

using testing::FakeUpstream;
using testing::FakeUpstreamOptions;

std::string base(const FakeUpstream& up, bool tls = false) {
  return std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(up.port());
}

OutboundRequest post(std::string url, std::string body = R"({"x":1})") {
  OutboundRequest r;
  r.url = std::move(url);
  r.body = std::move(body);
  r.headers = {{"Content-Type", "application/json"}};
  r.allow_private = true;  // the fake upstream is on loopback
  return r;
}

TEST(ParseUrl, SplitsSchemeHostPortTarget) {
  auto u = parse_url("https://hooks.example.com/a/b?c=d#frag");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "hooks.example.com");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->target, "/a/b?c=d");
  u = parse_url("http://[::1]:8080");
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "8080");
  EXPECT_EQ(u->target, "/");
  u = parse_url("http://h?q=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->target, "/?q=1");
}

TEST(ParseUrl, RejectsMalformed) {
  for (const char* bad : {"ftp://x/", "hooks.example.com", "http://", "http://:80/", "http://h:0/", "http://h:99999/",
                          "http://h:x/", "http://user@h/", "http://h/a b", "http://[::1/"}) {
    std::string error;
    EXPECT_FALSE(parse_url(bad, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

TEST(SsrfGuard, ClassifiesAddresses) {
  for (const char* p : {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
                        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00::1",
                        "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1"}) {
    EXPECT_TRUE(is_private_address(p)) << p;
  }
  for (const char* p : {"8.8.8.8", "172.32.0.1", "192.169.0.1", "100.128.0.1", "2606:4700::1111",
                        "::ffff:8.8.8.8", "64:ff9b::808:808"}) {
    EXPECT_FALSE(is_private_address(p)) << p;
  }
  EXPECT_FALSE(is_private_address("not an ip"));
}

TEST(OutboundHttp, PostsAndReusesTheConnection) {
  FakeUpstream up;
  OutboundHttp client;
  for (int i = 0; i < 3; ++i) {
    auto res = client.send_sync(post(base(up) + "/hook", R"({"n":)" + std::to_string(i) + "}"));
    ASSERT_TRUE(res.ok()) << res.error << " " << res.status;
    const auto echo = nlohmann::json::parse(res.body);
    EXPECT_EQ(echo["method"], "POST");
    EXPECT_EQ(echo["target"], "/hook");
  }
  ASSERT_EQ(up.requests().size(), 3u);
  EXPECT_EQ(up.requests()[0].header("content-type").value_or(""), "application/json");
  EXPECT_EQ(up.requests()[2].body_prefix, R"({"n":2})");
  EXPECT_EQ(client.counters().connections_opened, 1u);
  EXPECT_EQ(up.connections_accepted(), 1u);
}

TEST(OutboundHttp, ReturnsErrorStatusesAndRedirectsAsIs) {
  FakeUpstream up;
  OutboundHttp client;
  auto req = post(base(up) + "/hook");
  req.headers.emplace_back("x-fake-status", "503");
  auto res = client.send_sync(req);
  EXPECT_EQ(res.status, 503);
  EXPECT_TRUE(res.error.empty());
  EXPECT_FALSE(res.ok());
  req = post(base(up) + "/hook");
  req.headers.emplace_back("x-fake-status", "302");
  res = client.send_sync(req);
  EXPECT_EQ(res.status, 302);  // not followed
  EXPECT_EQ(up.request_count(), 2u);
}

TEST(OutboundHttp, RefusesLoopbackUnlessAllowed) {
  FakeUpstream up;
  OutboundHttp client;
  auto req = post(base(up) + "/hook");
  req.allow_private = false;
  auto res = client.send_sync(req);
  EXPECT_EQ(res.status, 0);
  EXPECT_NE(res.error.find("private address 127.0.0.1"), std::string::npos) << res.error;
  req.url = "http://localhost:" + std::to_string(up.port()) + "/hook";  // names are checked after resolving
  res = client.send_sync(req);
  EXPECT_NE(res.error.find("private address"), std::string::npos) << res.error;
  EXPECT_EQ(up.request_count(), 0u);
}

TEST(OutboundHttp, VerifiesTlsAgainstTheGivenCa) {
  const auto cert = testing::make_self_signed_cert();
  FakeUpstreamOptions opts;
  opts.tls = true;
  opts.cert_pem = cert.cert_pem;
  opts.key_pem = cert.key_pem;
  FakeUpstream up(opts);
  testing::TempDir dir;
  const auto ca = dir.path() / "ca.pem";
  testing::write_file(ca, cert.cert_pem);
  OutboundHttp client;

  auto req = post(base(up, true) + "/hook");
  auto res = client.send_sync(req);  // system store only: the self-signed cert is refused
  EXPECT_EQ(res.status, 0);
  EXPECT_NE(res.error.find("TLS handshake"), std::string::npos) << res.error;

  req.ca_file = ca.string();
  res = client.send_sync(req);
  EXPECT_TRUE(res.ok()) << res.error;

  req.url = "https://localhost:" + std::to_string(up.port()) + "/hook";  // SAN localhost
  res = client.send_sync(req);
  EXPECT_TRUE(res.ok()) << res.error;
}

TEST(OutboundHttp, TimesOutAHangingReceiver) {
  FakeUpstream up;
  OutboundHttp client;
  auto req = post(base(up) + "/hook");
  req.headers.emplace_back("x-fake-hang", "1");
  req.timeout = std::chrono::milliseconds(200);
  auto res = client.send_sync(req);
  EXPECT_TRUE(res.timed_out);
  EXPECT_EQ(res.status, 0);
  EXPECT_FALSE(res.error.empty());
}

TEST(OutboundHttp, RefusesHeaderInjectionAndBadUrls) {
  OutboundHttp client;
  auto req = post("http://127.0.0.1:1/hook");
  req.headers.emplace_back("X-Evil", "a\r\nInjected: 1");
  auto res = client.send_sync(req);
  EXPECT_NE(res.error.find("invalid header"), std::string::npos) << res.error;
  res = client.send_sync(post("gopher://x/"));
  EXPECT_NE(res.error.find("invalid url"), std::string::npos) << res.error;
}

TEST(OutboundHttp, ResponseLargerThanTheLimitIsAnError) {
  FakeUpstream up;
  OutboundHttp client;
  auto req = post(base(up) + "/v1/chat/completions", R"({"model":"m","messages":[]})");
  req.max_response_bytes = 16;
  auto res = client.send_sync(req);
  EXPECT_NE(res.error.find("larger than 16 bytes"), std::string::npos) << res.error;
}

TEST(OutboundHttp, ShutdownCompletesCallsInFlight) {
  FakeUpstream up;
  std::promise<OutboundResponse> done;
  auto fut = done.get_future();
  {
    OutboundHttp client;
    auto req = post(base(up) + "/hook");
    req.headers.emplace_back("x-fake-hang", "1");
    req.timeout = std::chrono::minutes(5);
    client.send(req, [&done](OutboundResponse r) { done.set_value(std::move(r)); });
    // Wait until the receiver has the request, then destroy the client.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (up.request_count() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(up.request_count(), 1u);
  }
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(fut.get().error, "client shut down");
}

}  // namespace
}  // namespace arbiter::scoring
