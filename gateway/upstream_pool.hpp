#pragma once
// Connections to upstream providers, pooled per I/O thread.
//
// Each I/O thread owns one UpstreamPool (no locks: the pool and its
// connections are only touched from that thread's io_context). Connections
// are keyed by upstream and reused while the provider keeps them alive; a
// pooled connection that the peer has closed is detected with a non-blocking
// peek before reuse. TLS contexts (one per upstream) are shared, read-only.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "gateway/config.hpp"
#include "gateway/timed_stream.hpp"

namespace arbiter::gateway {

// Shared, immutable per-upstream state: the parsed config and its TLS context.
class UpstreamSet {
 public:
  // Builds TLS client contexts (system CA store, optional CA file, peer
  // verification unless verify_tls is false). Throws std::runtime_error on a
  // bad CA file. Thread-safe after construction.
  explicit UpstreamSet(const Config& config);
  std::size_t size() const { return upstreams_.size(); }
  const UpstreamConfig& at(std::size_t i) const { return upstreams_[i]; }
  std::optional<std::size_t> index_of(std::string_view name) const;
  boost::asio::ssl::context* tls_context(std::size_t i) const { return tls_[i].get(); }

 private:
  std::vector<UpstreamConfig> upstreams_;
  std::vector<std::unique_ptr<boost::asio::ssl::context>> tls_;
};

// One connection to an upstream: plain TCP or TLS over TCP.
class UpstreamConnection {
 public:
  using Plain = TimedStream;
  using Tls = boost::beast::ssl_stream<TimedStream>;

  UpstreamConnection(std::size_t upstream_index, Plain plain);
  UpstreamConnection(std::size_t upstream_index, std::unique_ptr<Tls> tls);

  std::size_t upstream_index() const { return upstream_index_; }
  bool is_tls() const { return tls_ != nullptr; }
  Plain& plain() { return *plain_; }
  Tls& tls() { return *tls_; }
  Plain& lowest_layer();
  boost::beast::flat_buffer& buffer() { return buffer_; }
  // Requests served on this connection so far (0 = fresh).
  unsigned uses = 0;
  std::chrono::steady_clock::time_point idle_since;

  // True when the socket has neither pending bytes nor a FIN/RST: safe to
  // reuse. Without `ask_kernel`, a FIN or RST not yet read is not looked for
  // (that takes a system call; see UpstreamPool::kTrustedIdle).
  bool looks_alive(bool ask_kernel);

 private:
  std::size_t upstream_index_;
  std::optional<Plain> plain_;
  std::unique_ptr<Tls> tls_;
  boost::beast::flat_buffer buffer_;
};

struct ConnectError {
  bool timeout = false;
  std::string message;
};

class UpstreamPool {
 public:
  UpstreamPool(boost::asio::io_context& ioc, const UpstreamSet& upstreams);

  // A connection released less than this long ago is taken without asking
  // the kernel whether the upstream has closed it (looks_alive, one system
  // call per request otherwise). A server that closes a connection that soon
  // after answering on it without saying `Connection: close` is rare, and the
  // proxy resends a whole request on a fresh connection when a reused one
  // turns out dead (proxy_session.cpp); the check covers the common case, a
  // keep-alive timeout of seconds.
  static constexpr std::chrono::milliseconds kTrustedIdle{250};

  // A live idle connection if there is one, else nullptr. `now` is for tests.
  std::unique_ptr<UpstreamConnection> take_idle(
      std::size_t upstream_index, std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

  // Opens a new connection: resolve, connect (TCP_NODELAY), TLS handshake
  // with SNI and host-name verification. Bounded by connect_timeout.
  Task<std::unique_ptr<UpstreamConnection>> connect(std::size_t upstream_index,
                                                    ConnectError& error);

  // Returns a connection after a complete exchange that both sides keep alive.
  void release(std::unique_ptr<UpstreamConnection> conn);

  std::size_t idle_count() const;
  // Drops every idle connection (shutdown).
  void clear();

 private:
  boost::asio::io_context& ioc_;
  const UpstreamSet& upstreams_;
  boost::asio::ip::basic_resolver<boost::asio::ip::tcp, IoExecutor> resolver_;
  std::vector<std::deque<std::unique_ptr<UpstreamConnection>>> idle_;
};

}  // namespace arbiter::gateway
