#include "gateway/client_watch.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace arbiter::gateway {

ClientWatch::ClientWatch(ClientWatches& watches, TimedStream& client, TimedStream& upstream)
    : watches_(watches), state_(std::make_shared<State>()) {
  state_->client = &client;
  state_->upstream = &upstream;
  watches_.add(*state_);
}

void ClientWatch::stop() {
  State& s = *state_;
  if (s.upstream == nullptr) return;
  s.upstream = nullptr;
  if (!s.armed) {
    watches_.remove(s);
    return;
  }
  boost::system::error_code ec;
  s.client->socket().cancel(ec);  // only the wait is pending on the client here
}

void ClientWatches::start(boost::asio::io_context& ioc) {
  timer_ = std::make_unique<boost::asio::steady_timer>(ioc);
}

void ClientWatches::stop_ticking() {
  timer_.reset();  // a pending tick's handler is dropped with the io_context
  ticking_ = false;
}

void ClientWatches::add(ClientWatch::State& s) {
  s.prev = tail_;
  s.next = nullptr;
  (tail_ != nullptr ? tail_->next : head_) = &s;
  tail_ = &s;
  ++waiting_;
  if (ticking_ || timer_ == nullptr) return;
  ticking_ = true;
  timer_->expires_after(period_);
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // stop_ticking(): `this` may be going away
    tick();
  });
}

void ClientWatches::remove(ClientWatch::State& s) {
  (s.prev != nullptr ? s.prev->next : head_) = s.next;
  (s.next != nullptr ? s.next->prev : tail_) = s.prev;
  s.prev = s.next = nullptr;
  --waiting_;
}

void ClientWatches::tick() {
  ticking_ = false;
  while (head_ != nullptr) {
    ClientWatch::State& s = *head_;
    remove(s);
    arm(s);
  }
}

void ClientWatches::arm(ClientWatch::State& s) {
  s.armed = true;
  ++armed_;
  const int fd = s.client->socket().native_handle();
  s.client->socket().async_wait(boost::asio::ip::tcp::socket::wait_read,
                                [state = s.shared_from_this(), fd](const boost::system::error_code& ec) {
                                  if (ec || state->upstream == nullptr) return;
                                  char byte;
                                  const auto n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
                                  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                                    state->gone = true;
                                    state->upstream->cancel();
                                  }
                                });
}

}  // namespace arbiter::gateway
