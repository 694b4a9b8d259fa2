#pragma once
// TimedStream: a TCP socket whose reads and writes time out, in the manner
// of beast::tcp_stream (expires_after / expires_at / expires_never; an
// operation still pending at the deadline closes the socket and completes
// with beast::error::timeout), with a timer that is armed lazily.
//
// beast::tcp_stream arms its timer when every operation starts and cancels
// it when the operation completes: per proxied call that is six or so timer
// insertions into the reactor's heap, six cancellations, and six cancelled
// timeout handlers dispatched through the scheduler (about 7 % of an I/O
// thread's instructions, bench/README "Results, session 22"). Here setting
// an expiry only stores a time point. The timer is armed when an operation
// starts and none is armed for an earlier or equal time, and it is never
// cancelled on completion: when it fires, it re-arms for the current
// deadline if that moved later and an operation is pending, disarms if
// none is (the next operation arms it again), and times the stream out if
// the deadline has passed with an operation pending. A connection that is
// busy all the time then costs one timer wait per deadline period instead
// of two per operation.
//
// Differences from beast::tcp_stream: one deadline for both directions (the
// proxy sets one before each read or write anyway); no rate policy; connect
// is not offered (connect with beast::tcp_stream and move its socket in).
//
// Thread-safety: like a socket: one thread (strand) at a time. The shared
// state keeps the socket and timer alive for handlers still queued when the
// stream is destroyed.

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/handler_continuation_hook.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "gateway/io.hpp"

namespace arbiter::gateway {

namespace detail {
struct TimedStreamState;
template <class Handler>
class TimedCompletion;
}  // namespace detail

class TimedStream {
 public:
  using executor_type = IoExecutor;
  using socket_type = TcpSocket;
  using lowest_layer_type = socket_type;  // asio::ssl::stream asks for it
  using clock = std::chrono::steady_clock;

  explicit TimedStream(socket_type socket);
  // Not connected: open and connect socket() before any read or write.
  explicit TimedStream(const executor_type& ex);
  TimedStream(TimedStream&&) noexcept = default;
  TimedStream& operator=(TimedStream&& other) noexcept;
  TimedStream(const TimedStream&) = delete;
  TimedStream& operator=(const TimedStream&) = delete;
  // Closes the socket (as beast::tcp_stream does).
  ~TimedStream();

  executor_type get_executor() noexcept;
  socket_type& socket() noexcept;
  const socket_type& socket() const noexcept;
  socket_type& lowest_layer() noexcept { return socket(); }

  // Operations pending at, or started after, the deadline complete with
  // beast::error::timeout, and the socket is closed. Setting an expiry
  // clears an earlier timeout.
  void expires_after(clock::duration d) { expires_at(clock::now() + d); }
  void expires_at(clock::time_point t);
  void expires_never();

  // Pending reads and writes complete with operation_aborted.
  void cancel();
  // Closes the socket; pending operations complete with operation_aborted.
  void close();

  // Timer waits started so far (tests: the timer is armed lazily).
  std::uint64_t timer_arms() const noexcept;

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token);
  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token);

 private:
  template <bool Write, class Buffers, class Token>
  auto async_some(const Buffers& buffers, Token&& token);
  // Counts an operation in and arms the timer when needed; returns the
  // state the operation's completion holds on to.
  std::shared_ptr<detail::TimedStreamState> op_started();

  std::shared_ptr<detail::TimedStreamState> state_;
};

namespace detail {

struct TimedStreamState : std::enable_shared_from_this<TimedStreamState> {
  using clock = std::chrono::steady_clock;

  explicit TimedStreamState(TcpSocket s) : socket(std::move(s)), timer(socket.get_executor()) {}

  void arm();
  void on_timer(const boost::system::error_code& ec, unsigned generation);

  TcpSocket socket;
  SteadyTimer timer;
  clock::time_point deadline = clock::time_point::max();
  clock::time_point armed_at{};  // the armed timer's expiry, when `armed`
  unsigned pending = 0;          // reads and writes started, not completed
  unsigned generation = 0;       // of the current wait; older ones are ignored
  std::uint64_t arms = 0;
  bool armed = false;
  bool timed_out = false;
};

// The completion of one read or write: uncounts it and reports a timeout as
// beast::error::timeout. Forwards the handler's executor, allocator and
// cancellation slot (the associator below) and its continuation hook.
template <class Handler>
class TimedCompletion {
 public:
  TimedCompletion(std::shared_ptr<TimedStreamState> state, Handler&& handler)
      : state_(std::move(state)), handler_(std::move(handler)) {}

  void operator()(boost::system::error_code ec, std::size_t n) {
    --state_->pending;
    if (ec && state_->timed_out) ec = boost::beast::error::timeout;
    state_.reset();
    std::move(handler_)(ec, n);
  }

  friend bool asio_handler_is_continuation(TimedCompletion* self) {
    return boost_asio_handler_cont_helpers::is_continuation(self->handler_);
  }

  std::shared_ptr<TimedStreamState> state_;
  Handler handler_;
};

}  // namespace detail

template <class MutableBufferSequence, class Token>
auto TimedStream::async_read_some(const MutableBufferSequence& buffers, Token&& token) {
  return async_some<false>(buffers, std::forward<Token>(token));
}

template <class ConstBufferSequence, class Token>
auto TimedStream::async_write_some(const ConstBufferSequence& buffers, Token&& token) {
  return async_some<true>(buffers, std::forward<Token>(token));
}

template <bool Write, class Buffers, class Token>
auto TimedStream::async_some(const Buffers& buffers, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
      [this](auto&& handler, const Buffers& b) {
        using H = std::decay_t<decltype(handler)>;
        auto state = op_started();
        auto& socket = state->socket;  // kept alive by the completion
        detail::TimedCompletion<H> done(std::move(state), std::move(handler));
        if constexpr (Write) {
          socket.async_write_some(b, std::move(done));
        } else {
          socket.async_read_some(b, std::move(done));
        }
      },
      token, buffers);
}

}  // namespace arbiter::gateway

namespace boost::asio {

template <template <typename, typename> class Associator, typename Handler,
          typename DefaultCandidate>
struct associator<Associator, arbiter::gateway::detail::TimedCompletion<Handler>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const arbiter::gateway::detail::TimedCompletion<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler_);
  }
  static auto get(const arbiter::gateway::detail::TimedCompletion<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler_, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler_, c);
  }
};

}  // namespace boost::asio
