#include "gateway/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <mutex>
#include <optional>

#include "gateway/api_router.hpp"
#include "gateway/log.hpp"
#include "gateway/worker.hpp"
#include "scoring/background_thread.hpp"

namespace arbiter::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

class NullObserver final : public ExchangeObserver {};
NullObserver g_null_observer;

std::shared_ptr<ssl::context> make_server_tls(const TlsConfig& tls, std::string_view listener) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression | ssl::context::single_dh_use);
  // TLS 1.2: forward-secret AEAD suites only. TLS 1.3 suites are all modern.
  SSL_CTX_set_cipher_list(ctx->native_handle(),
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  // No renegotiation (a client-driven CPU sink and an old attack surface).
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  error_code ec;
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (!ec) ctx->use_private_key_file(tls.key_file, ssl::context::pem, ec);
  // A certificate that does not belong to the key would fail every handshake.
  if (!ec && SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    ec = error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    if (!ec) ec = asio::error::invalid_argument;
  }
  if (ec) {
    throw std::runtime_error(std::string(listener) + " listener: cannot load TLS certificate/key (" + tls.cert_file +
                             ", " + tls.key_file + "): " + ec.message());
  }
  return ctx;
}

}  // namespace

struct Server::Listener {
  enum class Kind { proxy, api };
  Listener(Kind k, asio::io_context& ioc) : kind(k), acceptor(ioc) {}
  const char* name() const { return kind == Kind::proxy ? "proxy" : "api"; }
  // The context new connections get; replaced by reload_tls() from another thread.
  std::shared_ptr<ssl::context> current_tls() const {
    std::lock_guard lk(tls_mu);
    return tls;
  }
  Kind kind;
  tcp::acceptor acceptor;
  std::optional<TlsConfig> tls_config;
  mutable std::mutex tls_mu;
  std::shared_ptr<ssl::context> tls;  // guarded by tls_mu; null for plain listeners
  tcp::endpoint endpoint;
  std::size_t next_worker = 0;
};

Server::Server(std::shared_ptr<const Config> config, ExchangeObserver* observer)
    : shared_(std::make_unique<ServerShared>()) {
  shared_->config = std::move(config);
  shared_->upstreams = std::make_unique<UpstreamSet>(*shared_->config);
  shared_->observer = observer ? observer : &g_null_observer;
  api_ = std::make_unique<ApiRouter>(shared_->config, shared_->metrics);
  shared_->api = api_.get();
}

Server::~Server() {
  if (started_) shutdown();
}

ApiRouter& Server::api() { return *api_; }
const Metrics& Server::metrics() const { return shared_->metrics; }
tcp::endpoint Server::proxy_endpoint() const { return proxy_->endpoint; }
tcp::endpoint Server::api_endpoint() const { return apil_->endpoint; }

namespace {

Task<void> reject_connection(TcpSocket sock) {
  // Over max_connections: say so, briefly, and close.
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
      "Content-Length: 113\r\n\r\n"
      R"json({"error":{"message":"too many connections (server.limits.max_connections)","type":"gateway_error","code":"busy"}})json";
  static_assert(kBusy.size() - kBusy.find("\r\n\r\n") - 4 == 113);
  error_code ec;
  co_await asio::async_write(sock, asio::buffer(kBusy), asio::redirect_error(use_task, ec));
  sock.shutdown(tcp::socket::shutdown_both, ec);
  sock.close(ec);
}

}  // namespace

void Server::start() {
  const auto& cfg = *shared_->config;
  unsigned n = cfg.server.threads;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(*shared_));
  blocking_ = std::make_unique<asio::thread_pool>(cfg.server.api_workers);
  shared_->blocking = blocking_.get();

  auto& acceptor_ioc = workers_.front()->ioc;
  auto open = [&](Listener::Kind kind, const ListenerConfig& lc) {
    const char* name = kind == Listener::Kind::proxy ? "proxy" : "api";
    auto l = std::make_unique<Listener>(kind, acceptor_ioc);
    if (lc.tls) {
      l->tls_config = *lc.tls;
      l->tls = make_server_tls(*lc.tls, name);
    }
    error_code ec;
    const auto addr = asio::ip::make_address(lc.host, ec);
    if (ec) throw std::runtime_error(std::string(name) + " listener: bad address " + lc.host);
    tcp::endpoint ep(addr, lc.port);
    l->acceptor.open(ep.protocol(), ec);
    if (!ec) l->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) l->acceptor.bind(ep, ec);
    if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw std::runtime_error(std::string(name) + " listener: cannot listen on " + lc.host + ":" +
                               std::to_string(lc.port) + ": " + ec.message());
    }
    l->endpoint = l->acceptor.local_endpoint();
    return l;
  };
  proxy_ = open(Listener::Kind::proxy, cfg.server.proxy);
  apil_ = open(Listener::Kind::api, cfg.server.api);

  asio::co_spawn(acceptor_ioc, accept_loop(*proxy_), asio::detached);
  asio::co_spawn(acceptor_ioc, accept_loop(*apil_), asio::detached);

  for (auto& w : workers_) {
    threads_.emplace_back([&ioc = w->ioc] {
      scoring::name_thread("arb-io");
      auto guard = asio::make_work_guard(ioc);
      for (;;) {
        try {
          ioc.run();
          return;
        } catch (const std::exception& e) {
          // A handler threw past its coroutine's boundary: log it, keep serving.
          log::error("I/O thread caught an exception", {{"error", e.what()}});
        }
      }
    });
  }
  started_ = true;
}

asio::awaitable<void> Server::accept_loop(Listener& l) {
  const auto max_conn = shared_->config->server.limits.max_connections;
  for (;;) {
    Worker& target = *workers_[l.next_worker++ % workers_.size()];
    TcpSocket sock(target.ioc);
    error_code ec;
    co_await l.acceptor.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (!l.acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      // Out of file descriptors or similar: back off briefly instead of spinning.
      log::warn("accept failed", {{"listener", l.kind == Listener::Kind::proxy ? "proxy" : "api"},
                                  {"error", ec.message()}});
      asio::steady_timer t(l.acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    auto& m = shared_->metrics;
    if (l.kind == Listener::Kind::proxy) {
      inc(m.proxy_connections_total);
      if (static_cast<std::size_t>(m.proxy_connections_open.load(std::memory_order_relaxed)) >= max_conn) {
        inc(m.proxy_connections_rejected);
        asio::co_spawn(target.ioc, reject_connection(std::move(sock)), asio::detached);
        continue;
      }
      TimedStream stream(std::move(sock));
      if (auto tls = l.current_tls()) {
        asio::co_spawn(target.ioc, run_proxy_session_tls(target, std::move(stream), std::move(tls)), asio::detached);
      } else {
        asio::co_spawn(target.ioc, run_proxy_session(target, std::move(stream)), asio::detached);
      }
    } else {
      if (static_cast<std::size_t>(m.api_connections_open.load(std::memory_order_relaxed)) >= max_conn) {
        asio::co_spawn(target.ioc, reject_connection(std::move(sock)), asio::detached);
        continue;
      }
      TimedStream stream(std::move(sock));
      if (auto tls = l.current_tls()) {
        asio::co_spawn(target.ioc, run_api_session_tls(target, std::move(stream), std::move(tls)), asio::detached);
      } else {
        asio::co_spawn(target.ioc, run_api_session(target, std::move(stream)), asio::detached);
      }
    }
  }
}

Server::TlsReload Server::reload_tls() {
  TlsReload out;
  for (Listener* l : {proxy_.get(), apil_.get()}) {
    if (l == nullptr || !l->tls_config) continue;
    try {
      auto fresh = make_server_tls(*l->tls_config, l->name());
      std::lock_guard lk(l->tls_mu);
      l->tls = std::move(fresh);
      ++out.reloaded;
    } catch (const std::exception& e) {
      out.failures.emplace_back(e.what());
    }
  }
  return out;
}

void Server::shutdown() {
  if (joined_ || !started_) return;
  if (!shared_->stopping.exchange(true)) {
    log::info("shutting down", {{"in_flight", shared_->metrics.proxy_requests_in_flight.load()}});
    asio::post(workers_.front()->ioc, [this] {
      error_code ec;
      proxy_->acceptor.close(ec);
      apil_->acceptor.close(ec);
    });
    for (auto& w : workers_) {
      asio::post(w->ioc, [&w = *w] {
        for (auto* s : w.idle) s->cancel();
      });
    }
    // In-flight calls finish (bounded); their sessions then close because
    // `stopping` turns keep-alive off.
    const auto deadline = std::chrono::steady_clock::now() + shared_->config->server.drain_timeout;
    while (shared_->sessions.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (shared_->sessions.load() > 0) {
      log::warn("drain timeout: closing remaining connections", {{"sessions", shared_->sessions.load()}});
    }
  }
  join();
}

void Server::join() {
  if (joined_) return;
  for (auto& w : workers_) {
    asio::post(w->ioc, [&w = *w] { w.pool.clear(); });
    w->ioc.stop();
  }
  for (auto& t : threads_) t.join();
  if (blocking_) blocking_->join();
  joined_ = true;
}

}  // namespace arbiter::gateway
