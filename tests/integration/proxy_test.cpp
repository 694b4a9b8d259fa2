// The proxy path end to end: the real arbiter binary between a test client
// and the fake OpenAI upstream, over real sockets on port 0.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "gateway/request_context.hpp"
#include "tests/support/fake_upstream.hpp"
#include "tests/support/gateway_harness.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/process.hpp"
#include "tests/support/sanitizer.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_cert.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::uint16_t closed_port() {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();  // closed again when `a` goes away
}

class ProxyTest : public ::testing::Test {
 protected:
  void start(GatewayOptions opts = {}) {
    h_ = std::make_unique<GatewayHarness>(std::move(opts));
    upstream_ = &h_->upstream();
    arbiter_.proxy_port = h_->proxy_port();
    arbiter_.api_port = h_->api_port();
    arbiter_.process = &h_->process();
  }
  HttpClient client() { return h_->proxy_client(); }
  static Headers auth(Headers more = {}) { return GatewayHarness::auth(std::move(more)); }
  static std::string chat_body(bool stream = false, bool usage = false) {
    return GatewayHarness::chat_body(stream, usage);
  }
  std::string stderr_text() const { return h_->stderr_text(); }

  struct {
    std::uint16_t proxy_port = 0, api_port = 0;
    ChildProcess* process = nullptr;
  } arbiter_;
  std::unique_ptr<GatewayHarness> h_;
  FakeUpstream* upstream_ = nullptr;
  TempDir dir_;  // for files a test writes before start()
};

TEST_F(ProxyTest, ForwardsChatCompletionAndReturnsRequestId) {
  start();
  auto c = client();
  auto res = c.request("POST", "/v1/chat/completions",
                       auth({{"Authorization", "Bearer sk-provider-1"}, {"Content-Type", "application/json"}}),
                       chat_body());
  ASSERT_EQ(res.status, 200) << res.body;
  const auto body = json::parse(res.body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["model"], "gpt-4o-mini");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "Hello from the fake upstream.");
  ASSERT_TRUE(res.header("helicone-id"));
  EXPECT_TRUE(gateway::is_valid_request_id(*res.header("helicone-id")));
  EXPECT_EQ(res.header("helicone-id")->at(14), '4');
  EXPECT_EQ(res.header("helicone-status"), "success");

  ASSERT_EQ(upstream_->request_count(), 1u);
  const auto seen = upstream_->requests().front();
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.target, "/v1/chat/completions");
  EXPECT_EQ(seen.header("authorization"), "Bearer sk-provider-1");
  EXPECT_EQ(seen.body_sha256_hex, sha256_hex(chat_body()));
}

TEST_F(ProxyTest, StripsEveryHeliconeHeaderAndKeepsTheRest) {
  start();
  auto c = client();
  auto res = c.request("GET", "/v1/echo?a=1&b=two%20words",
                       auth({{"Authorization", "Bearer sk-provider-2"},
                             {"Helicone-Property-Env", "prod"},
                             {"Helicone-User-Id", "user-7"},
                             {"helicone-session-id", "s-1"},
                             {"HELICONE-CACHE-ENABLED", "true"},
                             {"X-Custom", "kept"},
                             {"OpenAI-Organization", "org-1"}}));
  ASSERT_EQ(res.status, 200) << res.body;
  const auto seen = upstream_->requests().front();
  EXPECT_EQ(seen.target, "/v1/echo?a=1&b=two%20words");
  for (const auto& [name, value] : seen.headers) {
    EXPECT_NE(name.rfind("helicone-", 0), 0u) << "forwarded " << name;
  }
  EXPECT_EQ(seen.header("x-custom"), "kept");
  EXPECT_EQ(seen.header("openai-organization"), "org-1");
  EXPECT_EQ(seen.header("authorization"), "Bearer sk-provider-2");
  EXPECT_EQ(seen.header("host"), "127.0.0.1:" + std::to_string(upstream_->port()));
}

TEST_F(ProxyTest, HonorsAValidRequestIdAndReplacesAnInvalidOne) {
  start();
  auto c = client();
  const std::string mine = "0C8F2D3E-1B2A-4C5D-9E8F-0A1B2C3D4E5F";
  auto res = c.request("GET", "/v1/models", auth({{"Helicone-Request-Id", mine}}));
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.header("helicone-id"), "0c8f2d3e-1b2a-4c5d-9e8f-0a1b2c3d4e5f");

  for (std::string bad : {"not-a-uuid", "0c8f2d3e-1b2a-6c5d-9e8f-0a1b2c3d4e5f", "0c8f2d3e-1b2a-4c5d-7e8f-0a1b2c3d4e5f",
                          "../../etc/passwd", "0c8f2d3e1b2a4c5d9e8f0a1b2c3d4e5f"}) {
    res = c.request("GET", "/v1/models", auth({{"Helicone-Request-Id", bad}}));
    ASSERT_EQ(res.status, 200);
    ASSERT_TRUE(res.header("helicone-id"));
    EXPECT_NE(*res.header("helicone-id"), bad);
    EXPECT_TRUE(gateway::is_valid_request_id(*res.header("helicone-id"))) << bad;
  }
}

TEST_F(ProxyTest, RejectsMissingAndWrongGatewayKeysWith401) {
  start();
  auto c = client();
  auto res = c.request("GET", "/v1/models");
  EXPECT_EQ(res.status, 401);
  auto err = json::parse(res.body);
  EXPECT_EQ(err["error"]["type"], "gateway_error");
  EXPECT_EQ(err["error"]["code"], "unauthorized");
  EXPECT_NE(err["error"]["message"].get<std::string>().find("Helicone-Auth"), std::string::npos);

  res = c.request("GET", "/v1/models", {{"Helicone-Auth", "Bearer wrong-key"}});
  EXPECT_EQ(res.status, 401);
  // A provider key alone is not a gateway key.
  res = c.request("GET", "/v1/models", {{"Authorization", "Bearer sk-provider"}});
  EXPECT_EQ(res.status, 401);
  EXPECT_EQ(upstream_->request_count(), 0u);

  // The second project's key is configured as a digest only.
  res = c.request("GET", "/v1/models", {{"Helicone-Auth", std::string("Bearer ") + kKeyB}});
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(upstream_->request_count(), 1u);
  EXPECT_EQ(stderr_text().find(kKeyA), std::string::npos);
}

TEST_F(ProxyTest, InjectsTheUpstreamKeyOnlyWhenTheClientSentNone) {
  start({.upstream_extra = "    api_key: sk-injected-by-gateway\n"});
  auto c = client();
  // Arbiter key in Authorization: consumed by the gateway, provider key injected.
  auto res = c.request("GET", "/v1/echo", {{"Authorization", std::string("Bearer ") + kKeyA}});
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(upstream_->requests().back().header("authorization"), "Bearer sk-injected-by-gateway");

  // The client's own provider key wins.
  res = c.request("GET", "/v1/echo", auth({{"Authorization", "Bearer sk-client"}}));
  EXPECT_EQ(upstream_->requests().back().header("authorization"), "Bearer sk-client");

  // An Azure/Anthropic-style key header counts as a provider key too.
  res = c.request("GET", "/v1/echo", auth({{"api-key", "azure-key"}}));
  EXPECT_FALSE(upstream_->requests().back().header("authorization"));
  EXPECT_EQ(upstream_->requests().back().header("api-key"), "azure-key");
  EXPECT_EQ(stderr_text().find("sk-injected-by-gateway"), std::string::npos);
}

TEST_F(ProxyTest, PrefixesTheUpstreamBasePath) {
  start({.base_path = "/openai/"});
  auto c = client();
  auto res = c.request("GET", "/v1/echo?q=1", auth());
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(upstream_->requests().front().target, "/openai/v1/echo?q=1");
}

TEST_F(ProxyTest, StreamsEachChunkAsSoonAsItArrives) {
  start();
  auto c = client();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::chrono::steady_clock::duration> arrivals;
  std::string all;
  auto res = c.request_streaming("POST", "/v1/chat/completions",
                                 auth({{"Content-Type", "application/json"},
                                       {"x-fake-chunks", "6"},
                                       {"x-fake-chunk-interval-ms", "150"}}),
                                 chat_body(true), [&](std::string_view piece) {
                                   arrivals.push_back(std::chrono::steady_clock::now() - t0);
                                   all.append(piece);
                                   return true;
                                 });
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.header("content-type")->rfind("text/event-stream", 0), 0u);
  ASSERT_GE(arrivals.size(), 6u);
  // With chunks paced 150 ms apart, the first one must reach the client long
  // before the last is produced: a proxy that buffers would deliver all at once.
  EXPECT_LT(arrivals.front() + 500ms, arrivals.back());
  EXPECT_NE(all.find("data: [DONE]"), std::string::npos);
  std::string content;
  std::size_t pos = 0;
  while ((pos = all.find("data: {", pos)) != std::string::npos) {
    const auto end = all.find('\n', pos);
    auto ev = json::parse(all.substr(pos + 6, end - pos - 6));
    if (!ev["choices"].empty() && ev["choices"][0]["delta"].contains("content")) {
      content += ev["choices"][0]["delta"]["content"].get<std::string>();
    }
    pos = end;
  }
  EXPECT_EQ(content, "Hello from the fake upstream.");
}

// An upstream that answers each request on a connection with the next of
// `answers`, each in one write (its header and whole body in one segment).
class CannedUpstream {
 public:
  explicit CannedUpstream(std::vector<std::string> answers)
      : answers_(std::move(answers)),
        acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { serve(); });
  }
  ~CannedUpstream() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    if (conn_) conn_->shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void serve() {
    boost::system::error_code ec;
    std::size_t next = 0;
    while (next < answers_.size()) {
      conn_.emplace(ioc_);
      acceptor_.accept(*conn_, ec);
      if (ec) return;
      std::string in;
      char chunk[4096];
      while (next < answers_.size()) {
        // One request: its head, then Content-Length bytes of body.
        std::size_t head_end;
        while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
          const std::size_t n = conn_->read_some(boost::asio::buffer(chunk), ec);
          if (ec) break;
          in.append(chunk, n);
        }
        if (ec) break;
        std::string head = in.substr(0, head_end);
        for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        std::size_t length = 0;
        if (auto at = head.find("content-length:"); at != std::string::npos) {
          length = std::stoul(head.substr(at + 15));
        }
        while (in.size() < head_end + 4 + length) {
          const std::size_t n = conn_->read_some(boost::asio::buffer(chunk), ec);
          if (ec) break;
          in.append(chunk, n);
        }
        if (ec) break;
        in.erase(0, head_end + 4 + length);
        boost::asio::write(*conn_, boost::asio::buffer(answers_[next++]), ec);
        if (ec) break;
      }
    }
  }

  std::vector<std::string> answers_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::optional<boost::asio::ip::tcp::socket> conn_;
  std::thread thread_;
};

TEST_F(ProxyTest, RelaysABodyThatArrivesWithItsHeaderAndRefusesAMalformedOne) {
  // The relay parses body bytes that came with the upstream's header without
  // another read: whole SSE chunks, and a malformed chunk size, which must
  // still fail the call as a read's parse error would.
  const std::string events = "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
  auto chunk = [](std::string_view data) {
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return std::string(size) + std::string(data) + "\r\n";
  };
  const std::string sse_head =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  CannedUpstream up(
      {sse_head + chunk(events.substr(0, 15)) + chunk(events.substr(15)) + "0\r\n\r\n",
       "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
       "11\r\n\r\n{\"ok\":true}",
       sse_head + "zz\r\ndata: {}\r\n"});
  start({.base_url = "http://127.0.0.1:" + std::to_string(up.port())});
  auto c = client();
  auto res = c.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}),
                       chat_body(true));
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.body, events);
  res = c.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}),
                  chat_body());
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.body, "{\"ok\":true}");
  res = c.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}),
                  chat_body(true));
  EXPECT_EQ(res.status, 502) << res.body;
  EXPECT_EQ(json::parse(res.body)["error"]["code"], "upstream_broken");
}

TEST_F(ProxyTest, RelaysA5MiBBodyBothWaysIntact) {
  start();
  std::string body(5 * 1024 * 1024, '\0');
  std::mt19937 rng(42);
  for (auto& ch : body) ch = static_cast<char>('a' + rng() % 26);
  auto c = client();
  auto res = c.request("POST", "/v1/upload", auth({{"Content-Type", "application/octet-stream"}}), body);
  ASSERT_EQ(res.status, 200) << res.body;
  const auto echo = json::parse(res.body);
  EXPECT_EQ(echo["body_size"], body.size());
  EXPECT_EQ(echo["body_sha256"], sha256_hex(body));

  // The same body with chunked framing, sent in 64 KiB pieces.
  std::size_t off = 0;
  res = c.request_chunked_upload("POST", "/v1/upload", auth(), [&]() -> std::optional<std::string> {
    if (off >= body.size()) return std::nullopt;
    auto piece = body.substr(off, 64 * 1024);
    off += piece.size();
    return piece;
  });
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(json::parse(res.body)["body_size"], body.size());
  EXPECT_EQ(json::parse(res.body)["body_sha256"], sha256_hex(body));
  EXPECT_TRUE(upstream_->requests().back().body_was_chunked);
}

TEST_F(ProxyTest, AnswersUnreachableUpstreamWith502) {
  start({.base_url = "http://127.0.0.1:" + std::to_string(closed_port())});
  auto c = client();
  auto res = c.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}), chat_body());
  EXPECT_EQ(res.status, 502);
  auto err = json::parse(res.body);
  EXPECT_EQ(err["error"]["type"], "gateway_error");
  EXPECT_EQ(err["error"]["code"], "upstream_unreachable");
  EXPECT_TRUE(res.header("helicone-id"));
  EXPECT_EQ(res.header("helicone-status"), "failed");
  // The connection stays usable.
  res = c.request("GET", "/v1/models", auth());
  EXPECT_EQ(res.status, 502);
}

TEST_F(ProxyTest, AnswersAHangingUpstreamWith504AndClosesIt) {
  start({.upstream_extra = "    timeout_ms: 300\n"});
  auto c = client();
  auto res = c.request("POST", "/v1/chat/completions",
                       auth({{"Content-Type", "application/json"}, {"x-fake-hang", "1"}}), chat_body());
  EXPECT_EQ(res.status, 504);
  EXPECT_EQ(json::parse(res.body)["error"]["code"], "upstream_timeout");
  EXPECT_TRUE(wait_until([&] { return upstream_->aborted_responses() >= 1; }, 5s));
}

TEST_F(ProxyTest, PassesUpstreamErrorsThroughUnchanged) {
  start();
  auto c = client();
  auto res = c.request("POST", "/v1/chat/completions",
                       auth({{"Content-Type", "application/json"}, {"x-fake-status", "429"}, {"x-fake-retry-after", "7"}}),
                       chat_body());
  EXPECT_EQ(res.status, 429);
  EXPECT_EQ(res.header("retry-after"), "7");
  EXPECT_EQ(json::parse(res.body)["error"]["type"], "fake_error");
  res = c.request("POST", "/v1/chat/completions",
                  auth({{"Content-Type", "application/json"}, {"x-fake-status", "500"}}), chat_body());
  EXPECT_EQ(res.status, 500);
  EXPECT_EQ(json::parse(res.body)["error"]["code"], 500);
}

TEST_F(ProxyTest, ClientAbortMidStreamCancelsTheUpstreamCall) {
  start();
  auto c = client();
  int pieces = 0;
  c.request_streaming("POST", "/v1/chat/completions",
                      auth({{"Content-Type", "application/json"},
                            {"x-fake-chunks", "40"},
                            {"x-fake-chunk-interval-ms", "100"}}),
                      chat_body(true), [&](std::string_view) { return ++pieces < 2; });
  // The gateway notices on its next write and closes the upstream connection;
  // the fake upstream counts the response it could not finish.
  EXPECT_TRUE(wait_until([&] { return upstream_->aborted_responses() >= 1; }, 10s));
}

TEST_F(ProxyTest, ClientHangingUpBeforeTheAnswerCancelsTheUpstreamCall) {
  start();
  // A slow, non-streaming call: the client gives up while the upstream is
  // still thinking. The gateway must notice the FIN and drop the upstream
  // call long before the upstream would have answered.
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket sock(ioc);
  sock.connect({boost::asio::ip::make_address("127.0.0.1"), arbiter_.proxy_port});
  const std::string body = chat_body();
  const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nHelicone-Auth: Bearer " +
                          std::string(kKeyA) + "\r\nx-fake-delay-ms: 30000\r\nContent-Type: application/json\r\n" +
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  boost::asio::write(sock, boost::asio::buffer(req));
  ASSERT_TRUE(wait_until([&] { return upstream_->open_connections() >= 1; }, 5s));
  const auto t0 = std::chrono::steady_clock::now();
  sock.close();
  EXPECT_TRUE(wait_until([&] { return upstream_->aborted_responses() >= 1; }, 10s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST_F(ProxyTest, RejectsMalformedRequestsWith400) {
  start();
  auto out = raw_exchange("127.0.0.1", arbiter_.proxy_port, "GARBAGE\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_NE(out.find("\"gateway_error\""), std::string::npos);
  out = raw_exchange("127.0.0.1", arbiter_.proxy_port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_EQ(upstream_->request_count(), 0u);
}

TEST_F(ProxyTest, RejectsOversizedHeadersWith431AndBodiesWith413) {
  start({.server_extra = "  limits:\n    max_header_bytes: 4096\n    max_body_bytes: 1024\n"});
  std::string big = "GET /v1/models HTTP/1.1\r\nHost: x\r\nHelicone-Auth: Bearer " + std::string(kKeyA) +
                    "\r\nX-Big: " + std::string(8192, 'a') + "\r\n\r\n";
  auto out = raw_exchange("127.0.0.1", arbiter_.proxy_port, big);
  EXPECT_EQ(out.rfind("HTTP/1.1 431", 0), 0u) << out.substr(0, 200);

  auto c = client();
  auto res = c.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}),
                       std::string(2048, 'x'));
  EXPECT_EQ(res.status, 413);
  EXPECT_EQ(json::parse(res.body)["error"]["code"], "body_too_large");

  HttpClient c2("127.0.0.1", arbiter_.proxy_port);
  int sent = 0;
  res = c2.request_chunked_upload("POST", "/v1/upload", auth(), [&]() -> std::optional<std::string> {
    if (sent++ >= 4) return std::nullopt;
    return std::string(512, 'y');
  });
  EXPECT_EQ(res.status, 413);
  EXPECT_EQ(upstream_->requests().size(), 0u);  // the chunked one never completed upstream

  // A body far past the limit and past what the sockets buffer: the gateway
  // answers at the limit and keeps reading what still comes before it closes,
  // so the client gets its 413 rather than a reset or a broken pipe.
  for (int i = 0; i < 3; ++i) {
    HttpClient c3("127.0.0.1", arbiter_.proxy_port);
    res = c3.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}),
                     std::string(6u << 20, 'z'));
    EXPECT_EQ(res.status, 413);
  }
}

// Any answer given before the request body was read, not only 413: a
// refusal without a gateway key reaches a client still uploading a body past
// the sockets' buffers, instead of a reset or a broken pipe.
TEST_F(ProxyTest, EarlyAnswersReachAClientStillSendingItsBody) {
  start();
  for (int i = 0; i < 3; ++i) {
    HttpClient c("127.0.0.1", arbiter_.proxy_port);
    auto res = c.request("POST", "/v1/chat/completions", {{"Content-Type", "application/json"}},
                         std::string(6u << 20, 'z'));
    EXPECT_EQ(res.status, 401);
  }
  EXPECT_EQ(upstream_->requests().size(), 0u);
}

TEST_F(ProxyTest, ReusesUpstreamConnections) {
  start({.threads = 1});
  auto c = client();
  for (int i = 0; i < 20; ++i) {
    auto res = c.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}), chat_body());
    ASSERT_EQ(res.status, 200);
  }
  EXPECT_EQ(upstream_->connections_accepted(), 1u);
}

TEST_F(ProxyTest, ResendsARequestWithItsBodyWhenAPooledConnectionTurnsOutDead) {
  start({.threads = 1});
  auto c = client();
  const Headers json_type{{"Content-Type", "application/json"}};
  ASSERT_EQ(c.request("POST", "/v1/chat/completions", auth(json_type), chat_body()).status, 200);
  // The pooled connection is taken again; the upstream drops it on reading the request, as a
  // server closing an idle keep-alive connection does. The body arrived whole with the header,
  // so the gateway still has it and resends the request on a fresh connection.
  auto res = c.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"},
                                                                 {"x-fake-close", "if-reused"}}),
                       chat_body());
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(json::parse(res.body)["object"], "chat.completion");
  EXPECT_EQ(upstream_->connections_accepted(), 2u);
  const auto seen = upstream_->requests();
  ASSERT_EQ(seen.size(), 3u);  // the first call, the dropped attempt, the resent one
  EXPECT_EQ(seen[2].body_prefix, chat_body());
  EXPECT_EQ(seen[1].body_prefix, chat_body());
}

TEST_F(ProxyTest, SpeaksTlsOnBothLegs) {
  const auto cert = make_self_signed_cert();
  write_file(dir_.path() / "cert.pem", cert.cert_pem);
  write_file(dir_.path() / "key.pem", cert.key_pem);
  FakeUpstreamOptions up;
  up.tls = true;
  up.cert_pem = cert.cert_pem;
  up.key_pem = cert.key_pem;
  const auto d = dir_.path().string();
  start({.server_extra = "  proxy_tls: { cert_file: " + d + "/cert.pem, key_file: " + d + "/key.pem }\n",
         .upstream_extra = "    ca_file: " + d + "/cert.pem\n",
         .upstream = up});
  ASSERT_EQ(upstream_->base_url().rfind("https://", 0), 0u);
  HttpClient c("127.0.0.1", arbiter_.proxy_port, cert.cert_pem, "localhost");
  auto res = c.request("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}), chat_body());
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(json::parse(res.body)["object"], "chat.completion");
  res = c.request_streaming("POST", "/v1/chat/completions", auth({{"Content-Type", "application/json"}}),
                            chat_body(true), [](std::string_view) { return true; });
  EXPECT_EQ(res.status, 200);
}

TEST_F(ProxyTest, RefusesAnUpstreamCertificateItCannotVerify) {
  const auto cert = make_self_signed_cert();
  FakeUpstreamOptions up;
  up.tls = true;
  up.cert_pem = cert.cert_pem;
  up.key_pem = cert.key_pem;
  start({.upstream = up});  // no ca_file: the system store does not know this certificate
  auto c = client();
  auto res = c.request("GET", "/v1/models", auth());
  EXPECT_EQ(res.status, 502);
  EXPECT_EQ(upstream_->request_count(), 0u);
}

TEST_F(ProxyTest, SigtermLetsInFlightCallsFinishThenExitsZero) {
  start();
  std::atomic<int> status{0};
  std::thread t([&] {
    HttpClient c("127.0.0.1", arbiter_.proxy_port);
    auto res = c.request("POST", "/v1/chat/completions",
                         auth({{"Content-Type", "application/json"}, {"x-fake-delay-ms", "700"}}), chat_body());
    status = res.status;
  });
  ASSERT_TRUE(wait_until([&] { return upstream_->open_connections() >= 1; }, 5s));
  arbiter_.process->signal(SIGTERM);
  const auto code = arbiter_.process->wait_exit(15s);
  t.join();
  EXPECT_EQ(status.load(), 200);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
}

TEST_F(ProxyTest, RefusesConnectionsOverTheLimitWith503) {
  start({.server_extra = "  limits:\n    max_connections: 2\n"});
  HttpClient a("127.0.0.1", arbiter_.proxy_port), b("127.0.0.1", arbiter_.proxy_port);
  ASSERT_EQ(a.request("GET", "/v1/models", auth()).status, 200);
  ASSERT_EQ(b.request("GET", "/v1/models", auth()).status, 200);
  auto out = raw_exchange("127.0.0.1", arbiter_.proxy_port, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 503", 0), 0u) << out;
  a.close();
  // Once a slot frees up, new connections are served again.
  EXPECT_TRUE(wait_until(
      [&] {
        HttpClient c("127.0.0.1", arbiter_.proxy_port);
        try {
          return c.request("GET", "/v1/models", auth()).status == 200;
        } catch (...) {
          return false;
        }
      },
      5s));
}

TEST_F(ProxyTest, CutsOffASlowlorisAtTheHeaderTimeout) {
  start({.server_extra = "  limits:\n    header_timeout_ms: 300\n"});
  // Half a header, then silence: the gateway closes the connection at the
  // header deadline (raw_exchange returns when the peer closes).
  const auto t0 = std::chrono::steady_clock::now();
  auto out = raw_exchange("127.0.0.1", arbiter_.proxy_port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: a", 20s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ(out, "");
  EXPECT_EQ(upstream_->request_count(), 0u);
}

TEST_F(ProxyTest, ServesHealthzOnTheApiListener) {
  start();
  HttpClient api("127.0.0.1", arbiter_.api_port);
  auto res = api.request("GET", "/healthz");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(json::parse(res.body)["status"], "ok");
}

TEST(ArbiterCli, CheckValidatesConfigsWithFileAndLine) {
  TempDir dir;
  write_file(dir.path() / "good.yaml",
             "upstreams:\n  - name: openai\n    base_url: https://api.openai.com\nprojects:\n  - name: p\n    api_keys: [ \"k\" ]\n");
  write_file(dir.path() / "bad.yaml",
             "server:\n  treads: 4\nupstreams:\n  - name: openai\n    base_url: https://api.openai.com\n");
  ChildProcess good({arbiter_binary().string(), "--config", (dir.path() / "good.yaml").string(), "--check"});
  EXPECT_EQ(good.wait_exit(10s), 0);
  ChildProcess bad({arbiter_binary().string(), "--config", (dir.path() / "bad.yaml").string(), "--check"}, {},
                   dir.path() / "bad.err");
  auto code = bad.wait_exit(10s);
  ASSERT_TRUE(code);
  EXPECT_NE(*code, 0);
  std::ifstream in(dir.path() / "bad.err");
  std::string err((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(err.find("bad.yaml:2:"), std::string::npos) << err;
  EXPECT_NE(err.find("treads"), std::string::npos) << err;
  EXPECT_EQ(find_sanitizer_report(err), "");
}

}  // namespace
}  // namespace arbiter::testing
