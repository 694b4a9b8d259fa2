#pragma once
// The gateway server: the proxy and API listeners, N I/O threads (one
// io_context each, with its own upstream pool), and graceful shutdown.
//
// Lifetime: construct, register extra API routes, start(), then shutdown()
// and wait() (the destructor does both). shutdown() may be called from any
// thread, once or many times.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>

#include "gateway/config.hpp"
#include "gateway/request_context.hpp"

namespace arbiter::gateway {

class ApiRouter;
struct Metrics;
struct ServerShared;
class Worker;

class Server {
 public:
  // `observer` receives every proxied call (may be null); it must outlive the Server.
  Server(std::shared_ptr<const Config> config, ExchangeObserver* observer = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  ApiRouter& api();

  // Binds both listeners and starts the I/O threads. Throws std::runtime_error
  // (naming the listener and address) when a listener cannot be bound or a
  // TLS certificate cannot be loaded.
  void start();

  boost::asio::ip::tcp::endpoint proxy_endpoint() const;
  boost::asio::ip::tcp::endpoint api_endpoint() const;

  // Stops accepting, closes idle connections, lets in-flight calls finish for
  // up to server.drain_timeout_ms, then stops the I/O threads. Blocks until done.
  void shutdown();

  const Metrics& metrics() const;

  // Loads every TLS listener's certificate and key again from the configured
  // files (SIGHUP). New connections get the new certificate; connections
  // already open keep the one they were accepted with. A listener whose new
  // files do not load keeps its current certificate. Thread-safe; call after
  // start().
  struct TlsReload {
    std::size_t reloaded = 0;           // listeners now serving the new files
    std::vector<std::string> failures;  // one message per listener that kept its old certificate
  };
  TlsReload reload_tls();

 private:
  struct Listener;
  boost::asio::awaitable<void> accept_loop(Listener& l);
  void join();

  std::unique_ptr<ServerShared> shared_;
  std::unique_ptr<ApiRouter> api_;
  std::unique_ptr<boost::asio::thread_pool> blocking_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<Listener> proxy_, apil_;
  std::vector<std::thread> threads_;
  bool started_ = false;
  bool joined_ = false;
};

}  // namespace arbiter::gateway
