#include "gateway/lingering_close.hpp"

#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/redirect_error.hpp>

namespace arbiter::gateway {

Task<void> drain_before_close(TimedStream& client) {
  namespace asio = boost::asio;
  client.expires_after(kLingerTime);
  std::array<char, 16384> sink;
  boost::system::error_code ec;
  for (std::size_t drained = 0; drained < kLingerBytes;) {
    drained +=
        co_await client.async_read_some(asio::buffer(sink), asio::redirect_error(use_task, ec));
    if (ec) break;  // the client closed, the deadline passed, or the socket failed
  }
}

}  // namespace arbiter::gateway
