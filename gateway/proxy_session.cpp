// One client connection on the proxy listener: a coroutine that reads a
// request header, authorises it, forwards the request to the upstream while
// streaming its body, and relays the response back chunk by chunk — then
// loops while keep-alive holds. Bodies are never buffered whole: both
// directions go through one fixed relay buffer. Beast's buffer_body parser
// reads; the writes are framed by hand (gateway/http_wire.hpp), one gathered
// write per piece.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <nlohmann/json.hpp>

#include "gateway/auth.hpp"
#include "gateway/http_wire.hpp"
#include "gateway/lingering_close.hpp"
#include "gateway/log.hpp"
#include "gateway/proxy_request.hpp"
#include "gateway/sse_tap.hpp"
#include "gateway/worker.hpp"

namespace arbiter::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

constexpr std::size_t kRelayBufferSize = 16 * 1024;
constexpr std::size_t kUpstreamHeaderLimit = 64 * 1024;

void append_tee(BodyTee& tee, std::size_t limit, const char* data, std::size_t n) {
  tee.size += n;
  if (tee.bytes.size() < limit) {
    const std::size_t take = std::min(n, limit - tee.bytes.size());
    tee.bytes.append(data, take);
    if (take < n) tee.truncated = true;
  } else if (n > 0) {
    tee.truncated = true;
  }
}

// Parses body bytes that `in` already holds into the parser's buffer_body,
// without I/O, until the body buffer is full, the input runs out or ends in
// a partial element, or the message is done. http::async_read_some parses
// buffered bytes the same way but then posts its completion: a trip through
// the scheduler, and an epoll poll, for data that was already here (a chat
// response usually arrives with its header, a stream's chunks several to a
// read). Returns whether body bytes were produced or the message ended;
// `ec` is a parse error, reported as a read's would be.
template <bool isRequest>
bool parse_buffered(http::parser<isRequest, http::buffer_body>& p, beast::flat_buffer& in,
                    error_code& ec) {
  const std::size_t room = p.get().body().size;
  while (in.size() > 0 && !p.is_done()) {
    const std::size_t used = p.put(in.data(), ec);
    in.consume(used);
    if (ec == http::error::need_buffer || ec == http::error::need_more) {
      ec = {};
      break;
    }
    if (ec || used == 0 || p.get().body().size == 0) break;
  }
  return p.is_done() || p.get().body().size != room;
}

// The few things one call needs across its phases.
struct Call;
void tee(Call& call, SseTap& tap, bool tee_response, const char* buf, std::size_t n);
void finish_stream(Call& call, SseTap& tap, bool tee_response);

struct Call {
  RequestContext ctx;
  ExchangeResult result;
  std::size_t upstream_index = 0;
  bool tee_bodies = false;
  std::size_t tee_limit = 0;
  bool reused_connection = false;
  bool finished = false;  // on_request_end was called
  bool request_has_body = false;
  // The body bytes that arrived with the header, parsed into the relay buffer
  // before the first upstream write (see relay): taken once, resent as they
  // are if a stale pooled connection forces a retry.
  bool body_prefetched = false;
  std::size_t prefetched = 0;
  bool whole_body_prefetched = false;
  std::size_t tap_fed = 0;  // response bytes the SSE tap has read (see tee)
};

// failed: arbiter answers the client itself (ProxySession::Exchange::failure).
enum class Relay { done, retry_on_fresh_connection, failed };

struct Failure {
  Outcome outcome;
  http::status status;
  std::string_view code;
  bool client_can_continue;
};

// Feeds a relayed response piece to the body tee and the SSE tap, after the
// client already has it. The tap parses a stream's events here only until the
// first token, whose time is measured here; the rest of the completion is
// rebuilt on the storage thread from the raw copy (reassemble_pending), so an
// I/O thread does not parse every event of every stream. Only when the copy
// is cut at the cap does the tap catch up on what the copy holds and read the
// rest here (finish_stream then rebuilds the completion here, as before).
void tee(Call& call, SseTap& tap, bool tee_response, const char* buf, std::size_t n) {
  if (n == 0) return;
  BodyTee& raw = call.result.response_body;
  if (tee_response) {
    append_tee(raw, call.tee_limit, buf, n);
  } else {
    raw.size += n;
  }
  if (!call.result.is_stream) return;
  if (tap.has_first_token() && !(tee_response && raw.truncated)) return;
  const std::size_t piece_start = raw.size - n;
  if (call.tap_fed < piece_start) {
    tap.feed(std::string_view(raw.bytes).substr(call.tap_fed, piece_start - call.tap_fed));
  }
  const bool had_token = tap.has_first_token();
  tap.feed(std::string_view(buf, n));
  call.tap_fed = raw.size;
  if (!had_token && tap.has_first_token()) {
    call.result.time_to_first_token =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - call.ctx.started);
  }
}

// At the end of a relayed stream: the completion is left to the log when the
// raw copy holds the whole stream, else rebuilt from the tap, which then has
// read all of it.
void finish_stream(Call& call, SseTap& tap, bool tee_response) {
  if (!call.result.is_stream || !tee_response) return;
  if (!call.result.response_body.truncated) {
    call.result.stream_reassembly_deferred = true;
    return;
  }
  tap.finish();
  call.result.stream_reassembled = tap.reassembled().dump();
}

template <class Stream>
class ProxySession {
 public:
  ProxySession(Worker& worker, Stream& stream)
      : w_(worker), shared_(worker.shared), cfg_(*worker.shared.config), s_(stream),
        relay_(new char[kRelayBufferSize]) {
    head_.reserve(1024);
  }

  Task<void> run();

 private:
  TimedStream& client_lowest() { return beast::get_lowest_layer(s_); }

  Task<bool> handle(http::request_parser<http::buffer_body>& parser);
  template <class Up>
  Task<Relay> relay(Up& up, UpstreamConnection& conn,
                    http::request_parser<http::buffer_body>& parser, Call& call, bool retry_allowed,
                    bool& keep_alive, bool& upstream_reusable);
  Task<bool> send_error(http::status status, std::string_view code, std::string_view message,
                        bool keep_alive, const std::string* request_id = nullptr);
  void finish(Call& call, Outcome outcome, int status, std::string error = {},
              ExchangeObserver::DurableCallback on_durable = {});
  void count(const ProxyRejection& rejection) {
    switch (rejection.counter) {
      case ProxyRejection::Counter::kUnauthorized: inc(shared_.metrics.proxy_rejected_unauthorized); break;
      case ProxyRejection::Counter::kBadRequest: inc(shared_.metrics.proxy_rejected_bad_request); break;
      case ProxyRejection::Counter::kTooLarge: inc(shared_.metrics.proxy_rejected_too_large); break;
    }
  }
  // storage.durability: strict — finish, then wait (bounded) until the
  // observer reports the record durable, before the client sees the end.
  Task<void> finish_durably(Call& call);

  // One proxied exchange: what handle() prepares and relays. A member, so
  // that the coroutine frames of handle() and relay() stay under 1 KiB (GCC
  // gives every local and every temporary alive across a co_await its own
  // slot). Frames over 1 KiB (they were 1.9 and 2.7 KiB) are neither recycled
  // by Asio's per-thread frame cache nor kept in glibc's tcache, and glibc
  // consolidates its fast bins on every allocation of that size: malloc was
  // 18 % of an I/O thread's samples at 64 connections, 11 % after. Emplaced
  // when handle() starts, reset when it ends.
  struct Exchange {
    template <class Prepare>
    explicit Exchange(Prepare&& prepare) : prep(prepare()) {}
    PreparedProxyRequest prep;
    Call call;
    // relay()'s, fresh for each attempt (a retry on a fresh connection).
    std::optional<http::response_parser<http::buffer_body>> upstream_response;
    std::optional<SseTap> tap;
    std::optional<WirePiece> piece;  // the piece being written upstream or to the client
    std::optional<Failure> failure;  // Relay::failed: the answer to send
    std::string why;                 // its message, or a failure's for the record
  };
  struct ExchangeReset {
    std::optional<Exchange>& exchange;
    ~ExchangeReset() { exchange.reset(); }
  };
  std::optional<Exchange> exchange_;

  Worker& w_;
  ServerShared& shared_;
  const Config& cfg_;
  Stream& s_;
  beast::flat_buffer buf_;
  std::unique_ptr<char[]> relay_;
  std::string head_;  // the client's response head being written
  // A request was answered before it was read to its end (its header or body
  // over a limit, malformed, or any early answer of handle()): drain before
  // closing (lingering_close.hpp).
  bool unread_input_ = false;
};

template <class Stream>
Task<void> ProxySession<Stream>::run() {
  error_code ec;
  auto& cl = client_lowest();
  const auto& limits = cfg_.server.limits;
  bool first = true;
  for (;;) {
    // Wait for the first byte of the next request. Only this wait counts as
    // idle: shutdown may close the connection here without losing anything.
    if (buf_.size() == 0) {
      if (shared_.stopping.load(std::memory_order_relaxed)) break;
      IdleMark mark(w_, cl);
      cl.expires_after(first ? limits.header_timeout : limits.idle_timeout);
      const std::size_t n =
          co_await s_.async_read_some(buf_.prepare(4096), asio::redirect_error(use_task, ec));
      buf_.commit(n);
      if (ec) break;
    }
    first = false;

    http::request_parser<http::buffer_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
    parser.body_limit(limits.max_body_bytes);
    cl.expires_after(limits.header_timeout);
    co_await http::async_read_header(s_, buf_, parser, asio::redirect_error(use_task, ec));
    if (ec) {
      if (auto rejection = rejection_for_read_error(ec, limits)) {
        count(*rejection);
        co_await send_error(rejection->status, rejection->code, rejection->message, false);
        unread_input_ = true;
      }
      break;
    }
    inc(shared_.metrics.proxy_requests_total);
    const bool keep_alive = co_await handle(parser);
    if (!keep_alive) {
      // An answer given before the request's body was read to its end (a
      // refusal such as 401, an unreachable upstream, a failed relay): drain
      // what the client still sends, so that it reads the answer instead of
      // a reset (lingering_close.hpp).
      if (!parser.is_done()) unread_input_ = true;
      break;
    }
  }

  // Close politely; errors here change nothing for anyone.
  if constexpr (!std::is_same_v<Stream, TimedStream>) {
    cl.expires_after(std::chrono::seconds(2));
    co_await s_.async_shutdown(asio::redirect_error(use_task, ec));
  }
  cl.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (unread_input_) co_await drain_before_close(cl);
  cl.close();
}

template <class Stream>
void ProxySession<Stream>::finish(Call& call, Outcome outcome, int status, std::string error,
                                  ExchangeObserver::DurableCallback on_durable) {
  if (call.finished) return;
  call.finished = true;
  auto& m = shared_.metrics;
  switch (outcome) {
    case Outcome::completed: inc(m.proxy_responses_completed); break;
    case Outcome::upstream_unreachable: inc(m.proxy_upstream_unreachable); break;
    case Outcome::upstream_timeout: inc(m.proxy_upstream_timeout); break;
    case Outcome::upstream_broken: inc(m.proxy_upstream_broken); break;
    case Outcome::client_cancelled: inc(m.proxy_client_cancelled); break;
    case Outcome::rejected: break;
  }
  call.result.outcome = outcome;
  if (status != 0) call.result.status = status;
  call.result.error = std::move(error);
  call.result.response_at = std::chrono::system_clock::now();
  call.result.latency =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - call.ctx.started);
  if (outcome != Outcome::completed) {
    log::debug("proxy call failed", {{"request_id", call.ctx.request_id},
                                     {"upstream", call.ctx.upstream},
                                     {"status", call.result.status},
                                     {"error", call.result.error}});
  }
  shared_.metrics.proxy_requests_in_flight.fetch_sub(1, std::memory_order_relaxed);
  shared_.observer->on_request_end(call.ctx, std::move(call.result), std::move(on_durable));
}

template <class Stream>
Task<void> ProxySession<Stream>::finish_durably(Call& call) {
  // The callback may run on the storage thread after this coroutine has given
  // up waiting, so everything it touches is shared.
  struct Wait {
    explicit Wait(const IoExecutor& ex) : timer(ex) {}
    SteadyTimer timer;
  };
  auto wait = std::make_shared<Wait>(s_.get_executor());
  wait->timer.expires_after(std::chrono::seconds(30));
  finish(call, Outcome::completed, 0, {}, [wait](bool) {
    asio::post(wait->timer.get_executor(), [wait] { wait->timer.cancel(); });
  });
  error_code ec;
  co_await wait->timer.async_wait(asio::redirect_error(use_task, ec));
}

template <class Stream>
Task<bool> ProxySession<Stream>::handle(http::request_parser<http::buffer_body>& parser) {
  auto& req = parser.get();
  const bool body_pending = !parser.is_done();
  // Until the request body has been consumed, an early answer must close the
  // connection: the unread body would otherwise be parsed as the next request.
  const bool can_keep_alive_early = !body_pending && req.keep_alive();

  // The exchange's state lives in the session, not in this frame: see Exchange.
  Exchange& x = exchange_.emplace(
      [&] { return prepare_proxy_request(cfg_, cfg_.upstreams, req, shared_.observer->wants_bodies()); });
  const ExchangeReset reset{exchange_};
  PreparedProxyRequest& prep = x.prep;
  if (prep.rejection) {
    count(*prep.rejection);
    co_return co_await send_error(prep.rejection->status, prep.rejection->code, prep.rejection->message,
                                  can_keep_alive_early);
  }
  const std::size_t upstream_index = prep.upstream_index;
  const UpstreamConfig& up = shared_.upstreams->at(upstream_index);
  const bool expect_continue = prep.expect_continue;

  Call& call = x.call;
  call.upstream_index = upstream_index;
  call.request_has_body = body_pending;
  call.ctx = std::move(prep.ctx);
  call.ctx.created_at = std::chrono::system_clock::now();
  call.ctx.started = std::chrono::steady_clock::now();
  call.tee_bodies = shared_.observer->wants_bodies();
  call.tee_limit = shared_.observer->body_tee_limit();

  shared_.metrics.proxy_requests_in_flight.fetch_add(1, std::memory_order_relaxed);
  shared_.observer->on_request_start(call.ctx);

  if (expect_continue && body_pending) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    error_code ec;
    client_lowest().expires_after(cfg_.server.limits.idle_timeout);
    co_await asio::async_write(s_, asio::buffer(kContinue), asio::redirect_error(use_task, ec));
    if (ec) {
      finish(call, Outcome::client_cancelled, -3, "client went away before sending the body");
      co_return false;
    }
  }

  // A pooled connection may have been closed by the provider while idle; if it
  // fails before anything of the request body was consumed, retry once on a
  // fresh connection.
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<UpstreamConnection> conn = w_.pool.take_idle(upstream_index);
    call.reused_connection = conn != nullptr;
    if (conn) {
      inc(shared_.metrics.upstream_connections_reused);
    } else {
      ConnectError cerr;
      conn = co_await w_.pool.connect(upstream_index, cerr);
      if (!conn) {
        const bool timeout = cerr.timeout;
        finish(call, timeout ? Outcome::upstream_timeout : Outcome::upstream_unreachable, timeout ? 504 : 502,
               cerr.message);
        co_return co_await send_error(timeout ? http::status::gateway_timeout : http::status::bad_gateway,
                                      timeout ? "upstream_timeout" : "upstream_unreachable",
                                      "upstream '" + up.name + "' " +
                                          (timeout ? "did not accept a connection in time" : "is unreachable"),
                                      can_keep_alive_early, &call.ctx.request_id);
      }
      inc(shared_.metrics.upstream_connections_opened);
    }
    const bool retry_allowed = call.reused_connection && attempt == 0;
    bool keep_alive = false;
    bool upstream_reusable = false;
    Relay r = conn->is_tls()
                  ? co_await relay(conn->tls(), *conn, parser, call, retry_allowed, keep_alive, upstream_reusable)
                  : co_await relay(conn->plain(), *conn, parser, call, retry_allowed, keep_alive, upstream_reusable);
    if (r == Relay::retry_on_fresh_connection) continue;
    if (r == Relay::failed) {
      // The upstream connection is not reused: dropping it after the answer
      // closes it, which also cancels the provider's work.
      const Failure& f = *x.failure;
      finish(call, f.outcome, static_cast<int>(f.status), x.why);
      co_return co_await send_error(f.status, f.code, x.why, f.client_can_continue, &call.ctx.request_id);
    }
    // Only a complete exchange that the upstream keeps alive goes back to the
    // pool; anything else is closed here, which also cancels the upstream call.
    if (upstream_reusable) {
      ++conn->uses;
      w_.pool.release(std::move(conn));
    }
    co_return keep_alive;
  }
}

template <class Stream>
template <class Up>
Task<Relay> ProxySession<Stream>::relay(Up& up, UpstreamConnection& conn,
                                        http::request_parser<http::buffer_body>& parser, Call& call,
                                        bool retry_allowed, bool& keep_alive,
                                        bool& upstream_reusable) {
  error_code ec;
  const UpstreamConfig& ucfg = shared_.upstreams->at(call.upstream_index);
  const auto& limits = cfg_.server.limits;
  auto& ul = conn.lowest_layer();
  auto& cl = client_lowest();
  char* const buf = relay_.get();
  // An answer of arbiter's own instead of the upstream's: handle() sends it
  // (Relay::failed), with exchange_->why as the message. Sent from there so
  // that this frame holds no awaitable per error path (see Exchange).
  std::string& why = exchange_->why;
  auto fail = [&](Outcome outcome, http::status status, std::string_view code, bool client_can_continue) {
    exchange_->failure = Failure{outcome, status, code, client_can_continue};
    return Relay::failed;
  };
  // A failed read of the request body: the answer, if one is still possible.
  auto body_failed = [&](const error_code& err) {
    if (err == http::error::body_limit) {
      inc(shared_.metrics.proxy_rejected_too_large);
      why = "request body exceeds server.limits.max_body_bytes (" + std::to_string(limits.max_body_bytes) + " bytes)";
      return fail(Outcome::rejected, http::status::payload_too_large, "body_too_large", false);
    }
    if (err == beast::error::timeout) {
      // TimedStream closed the client socket at the deadline; no answer is possible.
      finish(call, Outcome::rejected, 408, "request body stalled longer than server.limits.body_timeout_ms");
      keep_alive = false;
      return Relay::done;
    }
    if (is_client_gone(err)) {
      finish(call, Outcome::client_cancelled, -3, "client went away while sending the body");
      keep_alive = false;
      return Relay::done;
    }
    inc(shared_.metrics.proxy_rejected_bad_request);
    why = "malformed request body: " + err.message();
    return fail(Outcome::rejected, http::status::bad_request, "bad_request", false);
  };
  auto tee_request = [&](std::size_t n) {
    if (call.tee_bodies && !call.ctx.omit_request) append_tee(call.result.request_body, call.tee_limit, buf, n);
    else call.result.request_body.size += n;
  };

  // 1. Request head, together with the body bytes that arrived with the
  // request's header (a chat request usually arrives whole): one write, so
  // the upstream reads the whole request at once. They are parsed from the
  // client buffer without I/O and stay in the relay buffer, so a retry on a
  // fresh connection resends them; with the whole body there, even a request
  // with a body can be retried.
  if (call.request_has_body && !call.body_prefetched) {
    call.body_prefetched = true;
    parser.get().body().data = buf;
    parser.get().body().size = kRelayBufferSize;
    (void)parse_buffered(parser, buf_, ec);
    if (ec) co_return body_failed(ec);
    call.prefetched = kRelayBufferSize - parser.get().body().size;
    call.whole_body_prefetched = parser.is_done();
    tee_request(call.prefetched);
  }
  const bool chunked_up = exchange_->prep.upstream_chunked;
  {
    const WirePiece& piece = exchange_->piece.emplace(exchange_->prep.upstream_head, chunked_up, buf, call.prefetched,
                                                      call.request_has_body && parser.is_done());
    ul.expires_after(ucfg.idle_timeout);
    co_await asio::async_write(up, piece.buffers(), asio::redirect_error(use_task, ec));
  }
  const bool request_resendable = !call.request_has_body || call.whole_body_prefetched;
  if (ec) {
    if (retry_allowed && request_resendable) co_return Relay::retry_on_fresh_connection;
    why = "sending the request to upstream '" + ucfg.name + "' failed: " + ec.message();
    co_return fail(Outcome::upstream_unreachable, http::status::bad_gateway, "upstream_unreachable",
                   !call.request_has_body && parser.get().keep_alive());
  }

  // 2. The rest of the request body, relayed piece by piece.
  while (!parser.is_done()) {
    parser.get().body().data = buf;
    parser.get().body().size = kRelayBufferSize;
    if (!parse_buffered(parser, buf_, ec) && !ec) {
      cl.expires_after(limits.body_timeout);
      co_await http::async_read_some(s_, buf_, parser, asio::redirect_error(use_task, ec));
      if (ec == http::error::need_buffer) ec = {};
    }
    if (ec) co_return body_failed(ec);
    const std::size_t n = kRelayBufferSize - parser.get().body().size;
    if (n == 0 && !parser.is_done()) continue;
    tee_request(n);
    const WirePiece& piece = exchange_->piece.emplace(std::string_view(), chunked_up, buf, n, parser.is_done());
    if (piece.empty()) continue;
    ul.expires_after(ucfg.idle_timeout);
    co_await asio::async_write(up, piece.buffers(), asio::redirect_error(use_task, ec));
    if (ec) {
      why = "upstream '" + ucfg.name + "' closed while receiving the request body: " + ec.message();
      co_return fail(Outcome::upstream_unreachable, http::status::bad_gateway,
                     "upstream_unreachable", false);
    }
  }
  const bool client_keep_alive = parser.get().keep_alive();
  ClientWatch watch(w_.watches, cl, ul);
  auto client_left = [&](std::string_view when) {
    finish(call, Outcome::client_cancelled, -3, "client went away " + std::string(when));
    keep_alive = false;
    return Relay::done;
  };

  // 3. Response header.
  auto& rp = exchange_->upstream_response.emplace();
  rp.header_limit(kUpstreamHeaderLimit);
  rp.body_limit(boost::none);
  if (parser.get().method() == http::verb::head) rp.skip(true);
  ul.expires_after(ucfg.timeout);
  co_await http::async_read_header(up, conn.buffer(), rp, asio::redirect_error(use_task, ec));
  if (ec) {
    if (watch.client_gone()) co_return client_left("while waiting for the upstream");
    if (ec == beast::error::timeout) {
      why = "upstream '" + ucfg.name + "' did not answer within " + std::to_string(ucfg.timeout.count()) + " ms";
      co_return fail(Outcome::upstream_timeout, http::status::gateway_timeout, "upstream_timeout",
                     client_keep_alive);
    }
    if (retry_allowed && request_resendable && (ec == http::error::end_of_stream || ec == asio::error::eof ||
                                               ec == asio::error::connection_reset)) {
      co_return Relay::retry_on_fresh_connection;
    }
    why = "upstream '" + ucfg.name + "' failed before answering: " + ec.message();
    co_return fail(Outcome::upstream_unreachable, http::status::bad_gateway, "upstream_unreachable",
                   client_keep_alive);
  }

  // 4. Client response header: upstream's status and headers, minus
  // hop-by-hop, rendered straight from the parsed response (http_wire.hpp).
  const auto& ur = rp.get();
  // Chunked stays chunked; a close-delimited body becomes chunked so the
  // client connection can stay open.
  const bool chunked_out = rp.chunked() || (!rp.is_done() && !rp.content_length());
  keep_alive = client_keep_alive && !shared_.stopping.load(std::memory_order_relaxed);
  call.result.status = static_cast<int>(ur.result_int());
  call.result.response_content_type = std::string(ur[http::field::content_type]);
  call.result.is_stream = call.result.response_content_type.rfind("text/event-stream", 0) == 0;

  // 5. Response body, relayed as it arrives. Each piece is written to the
  // client before the tee looks at it, so logging never delays a token. The
  // head goes out with the first piece (or alone, when no body byte is here).
  head_.clear();
  append_relayed_response_head(head_, ur.result_int(), ur.reason(), ur, chunked_out, call.ctx.request_id,
                               keep_alive);
  std::string_view pending_head = head_;
  SseTap& tap = exchange_->tap.emplace();
  const bool tee_response = call.tee_bodies && !call.ctx.omit_response;
  bool header_sent = false;
  bool teed_last = false;
  const bool strict = shared_.observer->wants_durable_ack();
  if (rp.is_done() || conn.buffer().size() == 0) {
    // Nothing of the body is here yet (or there is none): send the header now
    // so a slow first token does not hold the status back.
    if (rp.is_done()) {
      upstream_reusable = rp.keep_alive();
      if (strict) co_await finish_durably(call);
    }
    cl.expires_after(limits.idle_timeout);
    // A message without a body (HEAD, 204, 304) is the head alone, even when
    // its header announces chunked framing.
    co_await asio::async_write(s_, asio::buffer(pending_head), asio::redirect_error(use_task, ec));
    pending_head = {};
    if (ec) {
      finish(call, Outcome::client_cancelled, -3, "client went away: " + ec.message());
      keep_alive = false;
      co_return Relay::done;
    }
    header_sent = true;
  }
  while (!rp.is_done()) {
    rp.get().body().data = buf;
    rp.get().body().size = kRelayBufferSize;
    if (!parse_buffered(rp, conn.buffer(), ec) && !ec) {
      ul.expires_after(ucfg.idle_timeout);
      co_await http::async_read_some(up, conn.buffer(), rp, asio::redirect_error(use_task, ec));
      if (ec == http::error::need_buffer) ec = {};
    }
    if (ec) {
      if (watch.client_gone()) co_return client_left("mid-response");
      const bool timeout = ec == beast::error::timeout;
      why = "upstream '" + ucfg.name + "' failed mid-response: " + ec.message();
      if (!header_sent) {
        co_return fail(timeout ? Outcome::upstream_timeout : Outcome::upstream_broken,
                       timeout ? http::status::gateway_timeout : http::status::bad_gateway,
                       timeout ? "upstream_timeout" : "upstream_broken", false);
      }
      // The status is already out; the only honest signal left is to cut the connection.
      finish(call, timeout ? Outcome::upstream_timeout : Outcome::upstream_broken, timeout ? -2 : 0,
             std::move(why));
      keep_alive = false;
      co_return Relay::done;
    }
    const std::size_t n = kRelayBufferSize - rp.get().body().size;
    if (n == 0 && !rp.is_done()) continue;
    if (rp.is_done() && strict) {
      // The last piece: the record must be durable before the client sees the end.
      tee(call, tap, tee_response, buf, n);
      teed_last = true;
      finish_stream(call, tap, tee_response);
      upstream_reusable = rp.keep_alive();
      co_await finish_durably(call);
    }
    const WirePiece& piece = exchange_->piece.emplace(pending_head, chunked_out, buf, n, rp.is_done());
    pending_head = {};
    if (!piece.empty()) {
      cl.expires_after(limits.idle_timeout);
      co_await asio::async_write(s_, piece.buffers(), asio::redirect_error(use_task, ec));
    }
    if (ec) {
      // Dropping `conn` (not returned to the pool) closes the upstream
      // connection, which cancels the provider's work on this call.
      finish(call, Outcome::client_cancelled, -3, "client went away mid-response: " + ec.message());
      keep_alive = false;
      co_return Relay::done;
    }
    header_sent = true;
    if (!teed_last) tee(call, tap, tee_response, buf, n);
  }
  if (call.finished) co_return Relay::done;  // strict: already durable
  finish_stream(call, tap, tee_response);
  upstream_reusable = rp.keep_alive();
  finish(call, Outcome::completed, 0);
  co_return Relay::done;
}

template <class Stream>
Task<bool> ProxySession<Stream>::send_error(http::status status, std::string_view code,
                                            std::string_view message, bool keep_alive,
                                            const std::string* request_id) {
  keep_alive = keep_alive && !shared_.stopping.load(std::memory_order_relaxed);
  auto res = proxy_error_response(status, code, message, keep_alive, request_id);
  error_code ec;
  client_lowest().expires_after(cfg_.server.limits.idle_timeout);
  co_await http::async_write(s_, res, asio::redirect_error(use_task, ec));
  co_return keep_alive && !ec;
}

}  // namespace

namespace {

template <class Stream>
Task<void> run_session(Worker& worker, Stream& stream) {
  ProxySession<Stream> session(worker, stream);
  co_await session.run();
}

struct SessionCount {
  explicit SessionCount(ServerShared& s) : s_(s) {
    s_.sessions.fetch_add(1, std::memory_order_relaxed);
    s_.metrics.proxy_connections_open.fetch_add(1, std::memory_order_relaxed);
  }
  ~SessionCount() {
    s_.metrics.proxy_connections_open.fetch_sub(1, std::memory_order_relaxed);
    s_.sessions.fetch_sub(1, std::memory_order_relaxed);
  }
  ServerShared& s_;
};

}  // namespace

Task<void> run_proxy_session(Worker& worker, TimedStream stream) {
  SessionCount count(worker.shared);
  try {
    co_await run_session(worker, stream);
  } catch (const std::exception& e) {
    log::error("proxy session failed", {{"error", e.what()}});
  }
}

Task<void> run_proxy_session_tls(Worker& worker, TimedStream stream,
                                 std::shared_ptr<asio::ssl::context> tls) {
  SessionCount count(worker.shared);
  try {
    beast::ssl_stream<TimedStream> s(std::move(stream), *tls);
    error_code ec;
    beast::get_lowest_layer(s).expires_after(worker.shared.config->server.limits.header_timeout);
    co_await s.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(use_task, ec));
    if (ec) {
      log::debug("TLS handshake failed", {{"listener", "proxy"}, {"error", ec.message()}});
      co_return;
    }
    co_await run_session(worker, s);
  } catch (const std::exception& e) {
    log::error("proxy session failed", {{"error", e.what()}});
  }
}

}  // namespace arbiter::gateway
