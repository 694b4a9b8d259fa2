// One client connection on the API listener. Requests are small JSON, read
// whole (bounded by server.limits.max_body_bytes); the router runs on the
// blocking pool because its handlers may read storage.

#include <atomic>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "gateway/api_router.hpp"
#include "gateway/lingering_close.hpp"
#include "gateway/log.hpp"
#include "gateway/worker.hpp"

namespace arbiter::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

template <class Stream>
Task<void> serve(Worker& worker, Stream& s) {
  auto& shared = worker.shared;
  const auto& limits = shared.config->server.limits;
  auto& cl = beast::get_lowest_layer(s);
  beast::flat_buffer buf;
  error_code ec;
  bool unread_input = false;  // refused a request not read to its end: drain before closing
  bool first = true;
  for (;;) {
    if (buf.size() == 0) {
      if (shared.stopping.load(std::memory_order_relaxed)) break;
      IdleMark mark(worker, cl);
      cl.expires_after(first ? limits.header_timeout : limits.idle_timeout);
      const std::size_t n =
          co_await s.async_read_some(buf.prepare(4096), asio::redirect_error(use_task, ec));
      buf.commit(n);
      if (ec) break;
    }
    first = false;
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
    parser.body_limit(limits.max_body_bytes);
    cl.expires_after(limits.header_timeout);
    co_await http::async_read(s, buf, parser, asio::redirect_error(use_task, ec));
    ApiResponse res;
    bool keep_alive = false;
    if (ec == http::error::header_limit) {
      res = ApiRouter::error(431, "request header exceeds server.limits.max_header_bytes");
      unread_input = true;
    } else if (ec == http::error::body_limit) {
      res = ApiRouter::error(413, "request body exceeds server.limits.max_body_bytes");
      unread_input = true;
    } else if (ec == beast::error::timeout) {
      break;  // TimedStream closed the socket on the deadline; nothing can be sent
    } else if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset) {
      break;
    } else if (ec) {
      res = ApiRouter::error(400, "malformed HTTP request: " + ec.message());
      unread_input = true;
    } else {
      shared.metrics.api_requests_total.fetch_add(1, std::memory_order_relaxed);
      auto req = std::make_shared<const ApiRequest>(parser.release());
      keep_alive = req->keep_alive();
      // Handlers may block (storage reads); they start on the blocking pool,
      // never on this I/O thread. An async handler (a durable score write)
      // frees its pool thread at once and answers from the writer thread; the
      // answer is posted back to this session's executor.
      // The initiation is a named object, not a temporary inside the
      // co_await expression: GCC 12 destroys such temporaries (and their
      // captures) twice.
      auto initiate = [&shared, req](auto handler) {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            auto respond = [h](ApiResponse r) {
              auto ex = asio::get_associated_executor(*h);
              asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
            };
            asio::post(*shared.blocking, [&shared, req, respond = std::move(respond)]() mutable {
              // respond must run exactly once, even when the handler throws
              // after answering (the guard then does nothing).
              auto once = std::make_shared<std::atomic<bool>>(false);
              auto answer = [once, respond](ApiResponse r) {
                if (!once->exchange(true)) respond(std::move(r));
              };
              try {
                shared.api->handle_async(*req, answer);
              } catch (const std::exception& e) {
                answer(ApiRouter::internal_error("api handler failed", e.what()));
              } catch (...) {
                answer(ApiRouter::internal_error("api handler failed", "unknown exception"));
              }
            });
          };
      res = co_await asio::async_initiate<decltype(use_task), void(ApiResponse)>(
          std::move(initiate), use_task);
    }
    keep_alive = keep_alive && !shared.stopping.load(std::memory_order_relaxed);
    res.keep_alive(keep_alive);
    cl.expires_after(limits.idle_timeout);
    co_await http::async_write(s, res, asio::redirect_error(use_task, ec));
    if (ec || !keep_alive) break;
  }
  if constexpr (!std::is_same_v<Stream, TimedStream>) {
    cl.expires_after(std::chrono::seconds(2));
    co_await s.async_shutdown(asio::redirect_error(use_task, ec));
  }
  cl.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (unread_input) co_await drain_before_close(cl);
  cl.close();
}

struct ApiSessionCount {
  explicit ApiSessionCount(ServerShared& s) : s_(s) {
    s_.sessions.fetch_add(1, std::memory_order_relaxed);
    s_.metrics.api_connections_open.fetch_add(1, std::memory_order_relaxed);
  }
  ~ApiSessionCount() {
    s_.metrics.api_connections_open.fetch_sub(1, std::memory_order_relaxed);
    s_.sessions.fetch_sub(1, std::memory_order_relaxed);
  }
  ServerShared& s_;
};

}  // namespace

Task<void> run_api_session(Worker& worker, TimedStream stream) {
  ApiSessionCount count(worker.shared);
  try {
    co_await serve(worker, stream);
  } catch (const std::exception& e) {
    log::error("api session failed", {{"error", e.what()}});
  }
}

Task<void> run_api_session_tls(Worker& worker, TimedStream stream,
                               std::shared_ptr<asio::ssl::context> tls) {
  ApiSessionCount count(worker.shared);
  try {
    beast::ssl_stream<TimedStream> s(std::move(stream), *tls);
    error_code ec;
    beast::get_lowest_layer(s).expires_after(worker.shared.config->server.limits.header_timeout);
    co_await s.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(use_task, ec));
    if (ec) co_return;
    co_await serve(worker, s);
  } catch (const std::exception& e) {
    log::error("api session failed", {{"error", e.what()}});
  }
}

}  // namespace arbiter::gateway
