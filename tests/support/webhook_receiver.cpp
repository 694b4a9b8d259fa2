#include "tests/support/webhook_receiver.hpp"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "tests/support/fake_upstream.hpp"

namespace arbiter::testing {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

void close_socket(tcp::socket& s) {
  boost::system::error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}

}  // namespace

std::optional<std::string> ReceivedRequest::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return std::nullopt;
}

struct WebhookReceiver::Impl {
  WebhookReceiverOptions opts;
  std::optional<ssl::context> ssl_ctx;  // outlives every stream: destroyed after ioc
  std::unique_ptr<asio::io_context> ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::uint16_t port = 0;

  mutable std::mutex mu;
  Responder responder;
  std::vector<ReceivedRequest> seen;
  std::size_t count = 0;
  struct Live {
    std::weak_ptr<tcp::socket> socket;
    asio::any_io_executor executor;
  };
  std::unordered_map<std::uint64_t, Live> live;
  std::uint64_t next_id = 0;
  bool stopping = false;
  std::atomic<std::size_t> open{0};

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto executor = asio::make_strand(*ioc);
      auto [ec, socket] = co_await acceptor->async_accept(executor, kNoThrow);
      if (ec) co_return;
      open.fetch_add(1);
      asio::co_spawn(executor, session(std::move(socket)), [](std::exception_ptr) {});
    }
  }

  bool enroll(std::uint64_t& id, const std::shared_ptr<tcp::socket>& s) {
    std::lock_guard lk(mu);
    if (stopping) return false;
    id = ++next_id;
    live.emplace(id, Live{s, s->get_executor()});
    return true;
  }

  asio::awaitable<void> session(tcp::socket socket) {
    std::uint64_t id = 0;
    struct Guard {
      Impl& impl;
      std::uint64_t& id;
      ~Guard() {
        {
          std::lock_guard lk(impl.mu);
          impl.live.erase(id);
        }
        impl.open.fetch_sub(1);
      }
    } guard{*this, id};
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    if (ssl_ctx) {
      auto stream = std::make_shared<ssl::stream<tcp::socket>>(std::move(socket), *ssl_ctx);
      if (!enroll(id, std::shared_ptr<tcp::socket>(stream, &stream->next_layer()))) co_return;
      auto [ec] = co_await stream->async_handshake(ssl::stream_base::server, kNoThrow);
      if (ec) co_return;
      co_await serve(*stream);
    } else {
      auto stream = std::make_shared<tcp::socket>(std::move(socket));
      if (!enroll(id, stream)) co_return;
      co_await serve(*stream);
    }
  }

  template <class Stream>
  asio::awaitable<void> serve(Stream& stream) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(64u << 20);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
      if (ec) co_return;
      const auto& req = parser.get();
      ReceivedRequest got;
      got.method = std::string(req.method_string());
      got.target = std::string(req.target());
      for (const auto& f : req) got.headers.emplace_back(lower(f.name_string()), std::string(f.value()));
      got.body = req.body();
      Responder respond;
      std::size_t index = 0;
      {
        std::lock_guard lk(mu);
        index = count++;
        respond = responder;
        if (opts.record_requests) seen.push_back(got);
      }
      ReceiverReply reply = respond ? respond(got, index) : ReceiverReply{};
      if (reply.hang) {
        // Keep the connection open, reading, until the peer or stop() closes it.
        char sink[256];
        for (;;) {
          auto [rec, rn] = co_await stream.async_read_some(asio::buffer(sink), kNoThrow);
          if (rec) co_return;
        }
      }
      http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
      res.set(http::field::content_type, "text/plain");
      for (const auto& [k, v] : reply.headers) res.set(k, v);
      res.body() = std::move(reply.body);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, res, kNoThrow);
      if (wec || !res.keep_alive()) co_return;
    }
  }

  void stop() {
    if (!ioc) return;
    std::vector<Live> to_close;
    {
      std::lock_guard lk(mu);
      stopping = true;
      for (auto& [id, l] : live) to_close.push_back(l);
    }
    asio::post(acceptor->get_executor(), [this] {
      boost::system::error_code ignored;
      acceptor->close(ignored);
    });
    for (auto& l : to_close) {
      asio::post(l.executor, [w = l.socket] {
        if (auto s = w.lock()) close_socket(*s);
      });
    }
    to_close.clear();
    wait_until([this] { return open.load() == 0; }, std::chrono::seconds(5));
    ioc->stop();
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    threads.clear();
    acceptor.reset();
    ioc.reset();
  }
};

WebhookReceiver::WebhookReceiver(Responder responder, WebhookReceiverOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(options);
  impl_->responder = std::move(responder);
  if (impl_->opts.tls) {
    impl_->ssl_ctx.emplace(ssl::context::tls_server);
    impl_->ssl_ctx->use_certificate_chain(asio::buffer(impl_->opts.cert_pem));
    impl_->ssl_ctx->use_private_key(asio::buffer(impl_->opts.key_pem), ssl::context::pem);
  }
  const unsigned n = std::max(1u, impl_->opts.threads);
  impl_->ioc = std::make_unique<asio::io_context>(static_cast<int>(n));
  impl_->acceptor = std::make_unique<tcp::acceptor>(asio::make_strand(*impl_->ioc));
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor->open(endpoint.protocol());
  impl_->acceptor->set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor->bind(endpoint);
  impl_->acceptor->listen(asio::socket_base::max_listen_connections);
  impl_->port = impl_->acceptor->local_endpoint().port();
  asio::co_spawn(impl_->acceptor->get_executor(), impl_->accept_loop(), [](std::exception_ptr) {});
  for (unsigned i = 0; i < n; ++i) impl_->threads.emplace_back([this] { impl_->ioc->run(); });
}

WebhookReceiver::~WebhookReceiver() {
  impl_->stop();
}

std::uint16_t WebhookReceiver::port() const {
  return impl_->port;
}

std::string WebhookReceiver::url(std::string_view path) const {
  return std::string(impl_->opts.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(impl_->port) +
         std::string(path);
}

std::vector<ReceivedRequest> WebhookReceiver::requests() const {
  std::lock_guard lk(impl_->mu);
  return impl_->seen;
}

std::size_t WebhookReceiver::request_count() const {
  std::lock_guard lk(impl_->mu);
  return impl_->count;
}

void WebhookReceiver::set_responder(Responder responder) {
  std::lock_guard lk(impl_->mu);
  impl_->responder = std::move(responder);
}

}  // namespace arbiter::testing
