#pragma once
// Notices a client that hangs up while the gateway waits on the upstream (a
// slow first byte, a long pause in a stream) and cancels the upstream
// operation, so the provider does not keep working for nobody. Only a FIN or
// RST counts: bytes from the client (a pipelined request) end the watch
// without action.
//
// Watching a socket costs a system call (Asio re-arms the descriptor in epoll
// for a wait), which a call answered in a millisecond never needs: a watch
// reaches the client socket only once it has been waiting for up to one
// period (`ClientWatches::kPeriod`) — the I/O thread's ticker arms every
// watch still registered at its next tick. So a fast call costs a list insert
// and removal, and a client leaving a slow call is noticed at most one period
// later than it would be with an immediate watch.
//
// Everything here lives on one I/O thread (the client, the upstream socket,
// the session's coroutine and the ticker), so nothing needs a lock.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>

#include "gateway/timed_stream.hpp"

namespace arbiter::gateway {

class ClientWatches;

class ClientWatch {
 public:
  ClientWatch(ClientWatches& watches, TimedStream& client, TimedStream& upstream);
  ~ClientWatch() { stop(); }
  ClientWatch(const ClientWatch&) = delete;
  ClientWatch& operator=(const ClientWatch&) = delete;

  bool client_gone() const { return state_->gone; }
  // Ends the watch: unregisters it, or cancels its wait on the client socket.
  void stop();

 private:
  friend class ClientWatches;
  struct State : std::enable_shared_from_this<State> {
    bool gone = false;
    bool armed = false;
    TimedStream* client = nullptr;
    TimedStream* upstream = nullptr;                // null once stopped
    State* prev = nullptr;                          // the waiting list, while not armed
    State* next = nullptr;
  };
  ClientWatches& watches_;
  std::shared_ptr<State> state_;  // shared with the armed wait's handler
};

// One per I/O thread (Worker): the watches waiting to be armed, and the
// ticker that arms them. The ticker runs only while watches are registered.
class ClientWatches {
 public:
  static constexpr std::chrono::milliseconds kPeriod{50};

  explicit ClientWatches(std::chrono::milliseconds period = kPeriod) : period_(period) {}
  ClientWatches(const ClientWatches&) = delete;
  ClientWatches& operator=(const ClientWatches&) = delete;

  // The ticker's timer runs on `ioc`. Call once, before the first watch;
  // stop_ticking() before `ioc` is destroyed.
  void start(boost::asio::io_context& ioc);
  void stop_ticking();

  // Watches that reached a client socket; the rest ended before a tick.
  std::uint64_t armed() const { return armed_; }
  std::size_t waiting() const { return waiting_; }

 private:
  friend class ClientWatch;
  void add(ClientWatch::State& s);
  void remove(ClientWatch::State& s);
  void tick();
  void arm(ClientWatch::State& s);

  std::chrono::milliseconds period_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  bool ticking_ = false;
  ClientWatch::State* head_ = nullptr;
  ClientWatch::State* tail_ = nullptr;
  std::size_t waiting_ = 0;
  std::uint64_t armed_ = 0;
};

}  // namespace arbiter::gateway
