// TimedStream: beast::tcp_stream's timeouts with a lazily armed timer. Each
// test runs one io_context until its handlers are done; lower bounds on
// elapsed time are checked (a timeout never fires early), never upper ones.

#include "gateway/timed_stream.hpp"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <optional>

namespace arbiter::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class TimedStreamTest : public ::testing::Test {
 protected:
  TimedStreamTest() {
    tcp::acceptor acceptor(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    ours_.socket().connect(acceptor.local_endpoint());
    acceptor.accept(peer_);
  }

  struct Result {
    error_code ec;
    std::size_t n = 0;
    Clock::time_point at;
  };
  // Starts a one-byte read on ours_ that records its completion in `out`.
  void read_one(std::optional<Result>& out) {
    ours_.async_read_some(asio::buffer(byte_), [&out](error_code ec, std::size_t n) {
      out = Result{ec, n, Clock::now()};
    });
  }
  void peer_sends(std::string_view bytes) {
    asio::write(peer_, asio::buffer(bytes.data(), bytes.size()));
  }
  // A one-byte read that the peer answers with `bytes`, run to its completion.
  Result read_answered(std::string_view bytes) {
    std::optional<Result> r;
    read_one(r);
    peer_sends(bytes);
    ioc_.restart();
    while (!r) ioc_.run_one();
    return *r;
  }

  asio::io_context ioc_;
  TimedStream ours_{ioc_.get_executor()};
  tcp::socket peer_{ioc_};
  std::array<char, 1> byte_{};
};

TEST_F(TimedStreamTest, AReadPendingAtTheDeadlineTimesOutAndClosesTheSocket) {
  const auto start = Clock::now();
  ours_.expires_after(50ms);
  std::optional<Result> r;
  read_one(r);
  ioc_.run();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, beast::error::timeout) << r->ec.message();
  EXPECT_GE(r->at - start, 50ms);
  EXPECT_FALSE(ours_.socket().is_open());
}

TEST_F(TimedStreamTest, AReadStartedAfterTheDeadlineTimesOut) {
  ours_.expires_at(Clock::now() - 1ms);
  std::optional<Result> r;
  read_one(r);
  ioc_.run();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, beast::error::timeout) << r->ec.message();
}

TEST_F(TimedStreamTest, ReadsThatFinishInTimeShareOneTimerWait) {
  ours_.expires_after(60s);
  for (int i = 0; i < 50; ++i) {
    const Result r = read_answered("x");
    ASSERT_FALSE(r.ec) << r.ec.message();
    ours_.expires_after(60s);  // later each time: the armed wait still comes first
  }
  // beast::tcp_stream started (and cancelled) a wait per read.
  EXPECT_EQ(ours_.timer_arms(), 1u);
  EXPECT_TRUE(ours_.socket().is_open());
}

TEST_F(TimedStreamTest, AnExpiryThatFiresWithNothingPendingLeavesTheSocketAlone) {
  ours_.expires_after(20ms);
  ASSERT_FALSE(read_answered("x").ec);
  // The wait armed by that read fires with no operation pending.
  ioc_.restart();
  ioc_.run();  // returns once the wait has fired and found nothing pending
  EXPECT_TRUE(ours_.socket().is_open());
  // A new deadline, a new read: it is timed from here, and data arrives in time.
  ours_.expires_after(60s);
  const Result second = read_answered("y");
  EXPECT_FALSE(second.ec) << second.ec.message();
  EXPECT_EQ(byte_[0], 'y');
}

TEST_F(TimedStreamTest, ADeadlineMovedLaterIsKeptByThePendingRead) {
  // Armed for 30 ms; moved to 150 ms while the read is pending: the first
  // wait re-arms instead of timing out.
  const auto start = Clock::now();
  ours_.expires_after(30ms);
  std::optional<Result> r;
  read_one(r);
  ours_.expires_after(150ms);
  ioc_.run();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, beast::error::timeout);
  EXPECT_GE(r->at - start, 150ms);
  EXPECT_EQ(ours_.timer_arms(), 2u);
}

TEST_F(TimedStreamTest, ADeadlineMovedEarlierAppliesToThePendingRead) {
  ours_.expires_after(60s);
  std::optional<Result> r;
  read_one(r);
  const auto start = Clock::now();
  ours_.expires_after(40ms);
  ioc_.run();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, beast::error::timeout);
  EXPECT_GE(r->at - start, 40ms);
}

TEST_F(TimedStreamTest, ExpiresNeverDisarmsAndSettingAnExpiryClearsATimeout) {
  ours_.expires_after(20ms);
  ours_.expires_never();
  std::optional<Result> r;
  read_one(r);
  // Nothing else would end the read: a peer write 100 ms later does.
  asio::steady_timer later(ioc_, 100ms);
  later.async_wait([&](error_code) { peer_sends("z"); });
  ioc_.run();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->ec) << r->ec.message();
  EXPECT_EQ(ours_.timer_arms(), 0u);
}

TEST_F(TimedStreamTest, CancelAbortsAPendingReadWithoutCallingItATimeout) {
  ours_.expires_after(60s);
  std::optional<Result> r;
  read_one(r);
  asio::post(ioc_, [&] { ours_.cancel(); });
  while (!r) ioc_.run_one();  // the 60 s wait stays queued
  EXPECT_EQ(r->ec, asio::error::operation_aborted);
  EXPECT_TRUE(ours_.socket().is_open());
}

TEST_F(TimedStreamTest, DestroyingTheStreamWithAReadPendingAbortsIt) {
  std::optional<Result> r;
  {
    TimedStream local(std::move(ours_));
    local.expires_after(60s);
    local.async_read_some(asio::buffer(byte_), [&r](error_code ec, std::size_t n) {
      r = Result{ec, n, Clock::now()};
    });
  }
  ioc_.run();  // the read's handler and the timer's run after the stream is gone
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, asio::error::operation_aborted);
}

TEST_F(TimedStreamTest, WritesAreTimedToo) {
  // The peer never reads: fill the socket buffers until the write blocks.
  ours_.expires_after(100ms);
  const std::vector<char> chunk(64 << 20, 'w');  // more than any loopback buffer holds
  std::optional<error_code> done;
  asio::async_write(ours_, asio::buffer(chunk), [&](error_code ec, std::size_t) { done = ec; });
  ioc_.run();
  ASSERT_TRUE(done);
  EXPECT_EQ(*done, beast::error::timeout) << done->message();
}

TEST_F(TimedStreamTest, CarriesATlsStream) {
  // asio::ssl::stream over TimedStream compiles and times out its handshake.
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  beast::ssl_stream<TimedStream> tls(std::move(ours_), ctx);
  beast::get_lowest_layer(tls).expires_after(50ms);
  std::optional<error_code> done;
  tls.async_handshake(asio::ssl::stream_base::client, [&](error_code ec) { done = ec; });
  ioc_.run();  // the peer never answers
  ASSERT_TRUE(done);
  EXPECT_EQ(*done, beast::error::timeout) << done->message();
}

}  // namespace
}  // namespace arbiter::gateway
