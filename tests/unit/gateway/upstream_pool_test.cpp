// UpstreamPool::take_idle: which idle connections it hands out, and when it
// asks the kernel whether the upstream has closed one.

#include "gateway/upstream_pool.hpp"

#include <poll.h>

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>

#include "gateway/config.hpp"

namespace arbiter::gateway {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// One plain upstream at the acceptor's address; the pool is never asked to
// connect, only to keep and hand back connections made here.
class UpstreamPoolTest : public ::testing::Test {
 protected:
  UpstreamPoolTest()
      : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        config_(load_config_from_string("upstreams:\n"
                                        "  - name: local\n"
                                        "    base_url: http://127.0.0.1:" +
                                            std::to_string(acceptor_.local_endpoint().port()) +
                                            "\n"
                                            "projects:\n"
                                            "  - name: p\n"
                                            "    api_keys: [\"k\"]\n",
                                        "upstream_pool_test.yaml")),
        upstreams_(*config_),
        pool_(ioc_, upstreams_) {}

  // Connects to the acceptor and returns the pool's side; `server` gets the other.
  std::unique_ptr<UpstreamConnection> connect(tcp::socket& server) {
    TcpSocket client(ioc_);
    client.connect(acceptor_.local_endpoint());
    acceptor_.accept(server);
    return std::make_unique<UpstreamConnection>(0, TimedStream(std::move(client)));
  }

  // Pools a connection whose upstream then closes it, and waits (up to 5 s)
  // until its socket has seen the FIN. Returns the pooled connection.
  UpstreamConnection* pool_a_connection_the_upstream_closed() {
    tcp::socket server(ioc_);
    auto conn = connect(server);
    UpstreamConnection* pooled = conn.get();
    pool_.release(std::move(conn));
    server.close();
    pollfd p{pooled->lowest_layer().socket().native_handle(), POLLRDHUP, 0};
    if (::poll(&p, 1, 5000) != 1 || (p.revents & POLLRDHUP) == 0) return nullptr;
    return pooled;
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::shared_ptr<const Config> config_;
  UpstreamSet upstreams_;
  UpstreamPool pool_;
};

TEST_F(UpstreamPoolTest, HandsBackAReleasedConnection) {
  tcp::socket server(ioc_);
  auto conn = connect(server);
  auto* raw = conn.get();
  pool_.release(std::move(conn));
  EXPECT_EQ(pool_.idle_count(), 1u);
  EXPECT_EQ(pool_.take_idle(0).get(), raw);
  EXPECT_EQ(pool_.idle_count(), 0u);
  EXPECT_EQ(pool_.take_idle(0), nullptr);
}

// Past the trusted window, a connection the upstream closed while it sat in
// the pool is noticed (its FIN) and dropped instead of being handed out.
TEST_F(UpstreamPoolTest, DropsAConnectionTheUpstreamClosedWhileItWasIdle) {
  ASSERT_NE(pool_a_connection_the_upstream_closed(), nullptr);
  const auto later = std::chrono::steady_clock::now() + UpstreamPool::kTrustedIdle + 1ms;
  EXPECT_EQ(pool_.take_idle(0, later), nullptr);
  EXPECT_EQ(pool_.idle_count(), 0u);
}

// Within the trusted window the pool does not ask the kernel: a connection
// released a moment ago is handed out as it is (the proxy resends the
// request on a fresh connection if it turns out dead).
TEST_F(UpstreamPoolTest, TrustsAConnectionReleasedAMomentAgoWithoutAskingTheKernel) {
  UpstreamConnection* pooled = pool_a_connection_the_upstream_closed();
  ASSERT_NE(pooled, nullptr);
  EXPECT_EQ(pool_.take_idle(0).get(), pooled);
}

TEST_F(UpstreamPoolTest, DropsAConnectionIdleLongerThanThePoolIdleTimeout) {
  tcp::socket server(ioc_);
  pool_.release(connect(server));
  const auto later = std::chrono::steady_clock::now() + upstreams_.at(0).pool_idle_timeout;
  EXPECT_EQ(pool_.take_idle(0, later), nullptr);
}

}  // namespace
}  // namespace arbiter::gateway
