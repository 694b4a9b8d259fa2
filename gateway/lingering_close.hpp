#pragma once
// Closing a connection after answering a request that was not read to its end
// (413 body too large, 431 header too large, 400 malformed; on the proxy also
// 401, 502 and any other answer of arbiter's own given before the body was
// read): the client may still be sending. Closing a socket with unread bytes makes the kernel reset
// the connection, and a reset can destroy the answer before the client has
// read it — the client then sees "connection reset" or a broken pipe instead
// of the 413. So, like nginx's lingering_close, the session first reads and
// discards what keeps coming, until the client closes, for at most
// kLingerTime and kLingerBytes. Call after shutdown(send).

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>

#include "gateway/timed_stream.hpp"

namespace arbiter::gateway {

inline constexpr std::chrono::seconds kLingerTime{2};
inline constexpr std::size_t kLingerBytes = 8u << 20;

Task<void> drain_before_close(TimedStream& client);

}  // namespace arbiter::gateway
