// ClientWatch / ClientWatches: a client hanging up during a long upstream
// wait cancels the upstream operation, and a call that ends before the next
// tick never touches the client socket.

#include "gateway/client_watch.hpp"

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

namespace arbiter::gateway {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

class ClientWatchTest : public ::testing::Test {
 protected:
  ClientWatchTest() : watches_(10ms) {
    watches_.start(ioc_);
    connect(client_, client_peer_);
    connect(upstream_, upstream_peer_);
  }
  ~ClientWatchTest() override { watches_.stop_ticking(); }

  void connect(TimedStream& ours, tcp::socket& theirs) {
    tcp::acceptor acceptor(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    ours.socket().connect(acceptor.local_endpoint());
    acceptor.accept(theirs);
  }

  ClientWatches watches_;  // outlives ioc_, as in Worker
  asio::io_context ioc_;
  TimedStream client_{ioc_.get_executor()};
  tcp::socket client_peer_{ioc_};
  TimedStream upstream_{ioc_.get_executor()};
  tcp::socket upstream_peer_{ioc_};
};

TEST_F(ClientWatchTest, AWatchEndedBeforeTheTickNeverReachesTheSocket) {
  {
    ClientWatch watch(watches_, client_, upstream_);
    EXPECT_EQ(watches_.waiting(), 1u);
  }
  EXPECT_EQ(watches_.waiting(), 0u);
  // The ticker fires once, finds nothing and stops, so run() returns.
  ioc_.run();
  EXPECT_EQ(watches_.armed(), 0u);
}

TEST_F(ClientWatchTest, AClientHangingUpDuringALongWaitCancelsTheUpstreamOperation) {
  ClientWatch watch(watches_, client_, upstream_);
  bool upstream_done = false;
  boost::system::error_code upstream_ec;
  char byte;
  upstream_.async_read_some(asio::buffer(&byte, 1), [&](const boost::system::error_code& ec, std::size_t) {
    upstream_ec = ec;
    upstream_done = true;
  });
  client_peer_.close();
  // The upstream never answers: only the watch can end this read.
  for (auto deadline = std::chrono::steady_clock::now() + 5s; !upstream_done && std::chrono::steady_clock::now() < deadline;) {
    ioc_.run_one_for(100ms);
  }
  ASSERT_TRUE(upstream_done);
  EXPECT_EQ(upstream_ec, asio::error::operation_aborted);
  EXPECT_TRUE(watch.client_gone());
  EXPECT_EQ(watches_.armed(), 1u);
  EXPECT_EQ(watches_.waiting(), 0u);
}

TEST_F(ClientWatchTest, BytesFromTheClientAreNotAHangUp) {
  ClientWatch watch(watches_, client_, upstream_);
  asio::write(client_peer_, asio::buffer("GET / HTTP/1.1\r\n", 16));  // a pipelined request
  // Run until the armed wait has seen the bytes and finished: then only the
  // ticker could be left, and it stopped with nothing waiting.
  ioc_.run();
  EXPECT_EQ(watches_.armed(), 1u);
  EXPECT_FALSE(watch.client_gone());
  char buf[16];
  EXPECT_EQ(client_.socket().read_some(asio::buffer(buf)), 16u);  // still there for the next request
}

}  // namespace
}  // namespace arbiter::gateway
