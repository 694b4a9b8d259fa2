#include "gateway/upstream_pool.hpp"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace arbiter::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

UpstreamSet::UpstreamSet(const Config& config) : upstreams_(config.upstreams) {
  tls_.resize(upstreams_.size());
  for (std::size_t i = 0; i < upstreams_.size(); ++i) {
    const auto& up = upstreams_[i];
    if (!up.tls) continue;
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    ctx->set_default_verify_paths();
    if (!up.ca_file.empty()) {
      boost::system::error_code ec;
      ctx->load_verify_file(up.ca_file, ec);
      if (ec) throw std::runtime_error("upstream " + up.name + ": cannot load ca_file " + up.ca_file + ": " + ec.message());
    }
    ctx->set_verify_mode(up.verify_tls ? ssl::verify_peer : ssl::verify_none);
    // Resumed sessions save a round trip on every new upstream connection.
    SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_CLIENT);
    tls_[i] = std::move(ctx);
  }
}

std::optional<std::size_t> UpstreamSet::index_of(std::string_view name) const {
  for (std::size_t i = 0; i < upstreams_.size(); ++i) {
    if (upstreams_[i].name == name) return i;
  }
  return std::nullopt;
}

UpstreamConnection::UpstreamConnection(std::size_t upstream_index, Plain plain)
    : upstream_index_(upstream_index), plain_(std::move(plain)) {}

UpstreamConnection::UpstreamConnection(std::size_t upstream_index, std::unique_ptr<Tls> tls)
    : upstream_index_(upstream_index), tls_(std::move(tls)) {}

UpstreamConnection::Plain& UpstreamConnection::lowest_layer() {
  return tls_ ? beast::get_lowest_layer(*tls_) : *plain_;
}

bool UpstreamConnection::looks_alive(bool ask_kernel) {
  if (buffer_.size() != 0) return false;  // unsolicited bytes: the stream is out of sync
  auto& sock = lowest_layer().socket();
  if (!sock.is_open()) return false;
  if (!ask_kernel) return true;
  char byte;
  const auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return false;                                    // FIN
  if (n > 0) return false;                                     // unexpected data (TLS alert, junk)
  return errno == EAGAIN || errno == EWOULDBLOCK;              // nothing to read: alive
}

UpstreamPool::UpstreamPool(asio::io_context& ioc, const UpstreamSet& upstreams)
    : ioc_(ioc), upstreams_(upstreams), resolver_(ioc), idle_(upstreams.size()) {}

std::unique_ptr<UpstreamConnection> UpstreamPool::take_idle(std::size_t upstream_index,
                                                            std::chrono::steady_clock::time_point now) {
  auto& q = idle_[upstream_index];
  const auto max_idle = upstreams_.at(upstream_index).pool_idle_timeout;
  while (!q.empty()) {
    auto conn = std::move(q.back());  // most recently used: warmest, least likely closed
    q.pop_back();
    const auto idle = now - conn->idle_since;
    if (idle < max_idle && conn->looks_alive(/*ask_kernel=*/idle >= kTrustedIdle)) return conn;
  }
  return nullptr;
}

Task<std::unique_ptr<UpstreamConnection>> UpstreamPool::connect(std::size_t upstream_index,
                                                                ConnectError& error) {
  const auto& up = upstreams_.at(upstream_index);
  boost::system::error_code ec;
  const auto deadline = std::chrono::steady_clock::now() + up.connect_timeout;

  // The resolver runs getaddrinfo on Asio's internal thread, never on ours.
  auto results =
      co_await resolver_.async_resolve(up.host, up.port, asio::redirect_error(use_task, ec));
  if (ec) {
    error.message = "cannot resolve " + up.host + ": " + ec.message();
    co_return nullptr;
  }
  // Connected with Beast's stream (TimedStream does not connect), then moved
  // in; the deadline carries over to the TLS handshake below.
  beast::basic_stream<tcp, IoExecutor> connecting(ioc_.get_executor());
  connecting.expires_at(deadline);
  co_await connecting.async_connect(results, asio::redirect_error(use_task, ec));
  if (ec) {
    error.timeout = ec == beast::error::timeout;
    error.message = "cannot connect to " + up.host + ":" + up.port + ": " + ec.message();
    co_return nullptr;
  }
  TimedStream stream(connecting.release_socket());
  stream.socket().set_option(tcp::no_delay(true), ec);
  stream.expires_at(deadline);

  if (!up.tls) {
    stream.expires_never();
    auto conn = std::make_unique<UpstreamConnection>(upstream_index, std::move(stream));
    co_return conn;
  }

  auto tls = std::make_unique<UpstreamConnection::Tls>(std::move(stream), *upstreams_.tls_context(upstream_index));
  if (!SSL_set_tlsext_host_name(tls->native_handle(), up.host.c_str())) {
    error.message = "cannot set SNI for " + up.host;
    co_return nullptr;
  }
  if (up.verify_tls) tls->set_verify_callback(ssl::host_name_verification(up.host));
  co_await tls->async_handshake(ssl::stream_base::client, asio::redirect_error(use_task, ec));
  if (ec) {
    error.timeout = ec == beast::error::timeout;
    error.message = "TLS handshake with " + up.host + " failed: " + ec.message();
    co_return nullptr;
  }
  beast::get_lowest_layer(*tls).expires_never();
  co_return std::make_unique<UpstreamConnection>(upstream_index, std::move(tls));
}

void UpstreamPool::release(std::unique_ptr<UpstreamConnection> conn) {
  auto& q = idle_[conn->upstream_index()];
  const auto cap = upstreams_.at(conn->upstream_index()).max_idle_connections;
  if (q.size() >= cap) q.pop_front();  // drop the coldest
  conn->idle_since = std::chrono::steady_clock::now();
  conn->lowest_layer().expires_never();
  q.push_back(std::move(conn));
}

std::size_t UpstreamPool::idle_count() const {
  std::size_t n = 0;
  for (const auto& q : idle_) n += q.size();
  return n;
}

void UpstreamPool::clear() {
  for (auto& q : idle_) q.clear();
}

}  // namespace arbiter::gateway
