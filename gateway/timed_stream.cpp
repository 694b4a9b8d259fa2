#include "gateway/timed_stream.hpp"

namespace arbiter::gateway {

TimedStream::TimedStream(socket_type socket)
    : state_(std::make_shared<detail::TimedStreamState>(std::move(socket))) {}

TimedStream::TimedStream(const executor_type& ex) : TimedStream(socket_type(ex)) {}

TimedStream& TimedStream::operator=(TimedStream&& other) noexcept {
  if (this != &other) {
    if (state_) close();
    state_ = std::move(other.state_);
  }
  return *this;
}

TimedStream::~TimedStream() {
  if (state_) close();
}

TimedStream::executor_type TimedStream::get_executor() noexcept {
  return state_->socket.get_executor();
}

TimedStream::socket_type& TimedStream::socket() noexcept {
  return state_->socket;
}

const TimedStream::socket_type& TimedStream::socket() const noexcept {
  return state_->socket;
}

void TimedStream::expires_at(clock::time_point t) {
  detail::TimedStreamState& s = *state_;
  s.deadline = t;
  s.timed_out = false;
  // A pending operation keeps to the new deadline even if it is earlier
  // than the armed one (otherwise the next operation to start re-arms).
  if (s.pending > 0 && (!s.armed || s.armed_at > t)) s.arm();
}

void TimedStream::expires_never() {
  state_->deadline = clock::time_point::max();
  state_->timed_out = false;
  // An armed timer stays armed; when it fires it finds no deadline.
}

std::uint64_t TimedStream::timer_arms() const noexcept {
  return state_->arms;
}

void TimedStream::cancel() {
  boost::system::error_code ignored;
  state_->socket.cancel(ignored);
}

void TimedStream::close() {
  detail::TimedStreamState& s = *state_;
  ++s.generation;  // a wait still queued finds itself stale
  s.armed = false;
  s.timer.cancel();
  boost::system::error_code ignored;
  s.socket.close(ignored);
}

std::shared_ptr<detail::TimedStreamState> TimedStream::op_started() {
  detail::TimedStreamState& s = *state_;
  ++s.pending;
  if (s.deadline != clock::time_point::max() && (!s.armed || s.armed_at > s.deadline)) s.arm();
  return state_;
}

namespace detail {

void TimedStreamState::arm() {
  armed = true;
  armed_at = deadline;
  ++arms;
  const unsigned g = ++generation;
  timer.expires_at(deadline);  // cancels a wait for another time: that one is now stale
  timer.async_wait([self = shared_from_this(), g](const boost::system::error_code& ec) {
    self->on_timer(ec, g);
  });
}

void TimedStreamState::on_timer(const boost::system::error_code& ec, unsigned g) {
  if (g != generation) return;  // re-armed or closed since
  armed = false;
  if (ec) return;
  if (pending == 0 || deadline == clock::time_point::max()) return;  // the next operation arms
  if (clock::now() < deadline) {
    arm();  // the deadline moved later while this wait ran
    return;
  }
  timed_out = true;
  boost::system::error_code ignored;
  socket.close(ignored);
}

}  // namespace detail
}  // namespace arbiter::gateway
