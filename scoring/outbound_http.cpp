#include "scoring/outbound_http.hpp"

#include <sys/socket.h>

#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "scoring/background_thread.hpp"

namespace arbiter::scoring {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

std::optional<std::string_view> OutboundResponse::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return std::string_view(v);
  }
  return std::nullopt;
}

std::optional<ParsedUrl> parse_url(std::string_view url, std::string* error) {
  auto fail = [&](std::string message) -> std::optional<ParsedUrl> {
    if (error != nullptr) *error = std::move(message);
    return std::nullopt;
  };
  ParsedUrl out;
  std::string_view rest;
  if (url.substr(0, 8) == "https://") {
    out.tls = true;
    rest = url.substr(8);
  } else if (url.substr(0, 7) == "http://") {
    out.tls = false;
    rest = url.substr(7);
  } else {
    return fail("URL must start with http:// or https://");
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return fail("URL contains a space or control character");
  }
  if (auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  const std::size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  std::string_view target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) return fail("URL must not contain user information");
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return fail("URL has an unterminated IPv6 address");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail("URL has junk after the IPv6 address");
      port = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return fail("URL has no host");
  if (!port.empty() || authority.find(':') != std::string_view::npos) {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return fail("URL has an invalid port");
    }
    out.port = std::to_string(value);
  } else {
    out.port = out.tls ? "443" : "80";
  }
  out.target = target.front() == '?' ? "/" + std::string(target) : std::string(target);
  return out;
}

namespace {

bool private_v4(const asio::ip::address_v4& a) {
  const auto b = a.to_bytes();
  return b[0] == 0 || b[0] == 10 || b[0] == 127 ||                    // this network, RFC 1918, loopback
         (b[0] == 100 && (b[1] & 0xC0) == 64) ||                      // CGNAT 100.64/10
         (b[0] == 169 && b[1] == 254) ||                              // link-local
         (b[0] == 172 && (b[1] & 0xF0) == 16) ||                      // RFC 1918
         (b[0] == 192 && b[1] == 168) ||                              // RFC 1918
         (b[0] == 192 && b[1] == 0 && b[2] == 0) ||                   // IETF protocol assignments
         (b[0] == 198 && (b[1] & 0xFE) == 18) ||                      // benchmarking 198.18/15
         b[0] >= 224;                                                 // multicast, reserved, broadcast
}

bool private_address(const asio::ip::address& addr) {
  if (addr.is_v4()) return private_v4(addr.to_v4());
  const auto v6 = addr.to_v6();
  if (v6.is_v4_mapped()) return private_v4(asio::ip::make_address_v4(asio::ip::v4_mapped, v6));
  const auto b = v6.to_bytes();
  // NAT64 64:ff9b::/96 embeds an IPv4 address.
  static constexpr std::array<unsigned char, 12> kNat64{0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::equal(kNat64.begin(), kNat64.end(), b.begin())) {
    return private_v4(asio::ip::address_v4({b[12], b[13], b[14], b[15]}));
  }
  return v6.is_unspecified() || v6.is_loopback() || v6.is_link_local() || v6.is_site_local() ||
         v6.is_multicast() || (b[0] & 0xFE) == 0xFC;  // unique local fc00::/7
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

bool is_private_address(std::string_view ip_literal) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(std::string(ip_literal), ec);
  return !ec && private_address(addr);
}

// --- the client ------------------------------------------------------------

namespace {

struct Connection {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

  // A pooled connection the peer has closed (or sent stray bytes on) is not reused.
  bool looks_alive() {
    if (buffer.size() != 0) return false;
    auto& sock = lowest().socket();
    if (!sock.is_open()) return false;
    char byte;
    const auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
};

}  // namespace

struct OutboundHttp::Impl {
  OutboundOptions options;
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  std::vector<std::thread> threads;

  std::mutex mu;  // guards everything below
  std::map<std::pair<std::string, bool>, std::unique_ptr<ssl::context>> tls_contexts;  // (ca_file, verify)
  std::unordered_map<std::string, std::deque<std::unique_ptr<Connection>>> idle;
  std::set<Connection*> active;
  bool stopping = false;

  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> opened{0};
  std::atomic<std::uint64_t> errors{0};

  ssl::context* tls_context(const OutboundRequest& req, std::string* error) {
    std::lock_guard lk(mu);
    auto& slot = tls_contexts[{req.ca_file, req.verify_tls}];
    if (!slot) {
      auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
      SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
      ctx->set_default_verify_paths();
      if (!req.ca_file.empty()) {
        boost::system::error_code ec;
        ctx->load_verify_file(req.ca_file, ec);
        if (ec) {
          *error = "cannot load ca_file " + req.ca_file + ": " + ec.message();
          tls_contexts.erase({req.ca_file, req.verify_tls});
          return nullptr;
        }
      }
      ctx->set_verify_mode(req.verify_tls ? ssl::verify_peer : ssl::verify_none);
      SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_CLIENT);
      slot = std::move(ctx);
    }
    return slot.get();
  }

  static std::string pool_key(const ParsedUrl& u, const OutboundRequest& req) {
    return (u.tls ? "s|" : "p|") + u.host + "|" + u.port + "|" + req.ca_file + "|" + (req.verify_tls ? "v" : "n") +
           (req.allow_private ? "|a" : "|g");
  }

  std::unique_ptr<Connection> take_idle(const std::string& key) {
    std::lock_guard lk(mu);
    auto it = idle.find(key);
    if (it == idle.end()) return nullptr;
    const auto now = std::chrono::steady_clock::now();
    while (!it->second.empty()) {
      auto conn = std::move(it->second.back());
      it->second.pop_back();
      if (now - conn->idle_since < options.idle_timeout && conn->looks_alive()) return conn;
    }
    return nullptr;
  }

  void give_back(const std::string& key, std::unique_ptr<Connection> conn) {
    std::lock_guard lk(mu);
    if (stopping) return;
    auto& q = idle[key];
    conn->idle_since = std::chrono::steady_clock::now();
    q.push_back(std::move(conn));
    while (q.size() > options.max_idle_per_host) q.pop_front();
  }

  bool track(Connection* c) {
    std::lock_guard lk(mu);
    if (stopping) return false;
    active.insert(c);
    return true;
  }
  void untrack(Connection* c) {
    std::lock_guard lk(mu);
    active.erase(c);
  }

  asio::awaitable<OutboundResponse> run(OutboundRequest req);
  asio::awaitable<std::unique_ptr<Connection>> connect(const ParsedUrl& url, const OutboundRequest& req,
                                                       std::chrono::steady_clock::time_point deadline,
                                                       std::string& error);
};

asio::awaitable<std::unique_ptr<Connection>> OutboundHttp::Impl::connect(
    const ParsedUrl& url, const OutboundRequest& req, std::chrono::steady_clock::time_point deadline,
    std::string& error) {
  boost::system::error_code ec;
  tcp::resolver resolver(ioc);
  // The resolver has no timeout of its own; getaddrinfo runs on Asio's
  // internal resolver thread, so a slow DNS server delays only this call.
  auto results = co_await resolver.async_resolve(url.host, url.port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    error = "cannot resolve " + url.host + ": " + ec.message();
    co_return nullptr;
  }
  std::vector<tcp::endpoint> endpoints;
  std::string refused;
  for (const auto& entry : results) {
    const auto ep = entry.endpoint();
    if (!req.allow_private && private_address(ep.address())) {
      if (refused.empty()) refused = ep.address().to_string();
      continue;
    }
    endpoints.push_back(ep);
  }
  if (endpoints.empty()) {
    error = refused.empty() ? "no address for " + url.host
                            : "destination " + url.host + " resolves to private address " + refused +
                                  " (not allowed without allow_insecure)";
    co_return nullptr;
  }

  auto conn = std::make_unique<Connection>();
  ssl::context* ctx = nullptr;
  if (url.tls) {
    ctx = tls_context(req, &error);
    if (ctx == nullptr) co_return nullptr;
    conn->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc, *ctx);
  } else {
    conn->plain = std::make_unique<beast::tcp_stream>(ioc);
  }
  // Tracked while connecting too, so that shutting down aborts a slow connect.
  if (!track(conn.get())) {
    error = "client shut down";
    co_return nullptr;
  }
  struct Untrack {
    Impl* impl;
    Connection* c;
    ~Untrack() { impl->untrack(c); }
  } untrack{this, conn.get()};
  auto& lowest = conn->lowest();
  lowest.expires_at(deadline);
  co_await lowest.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    error = "cannot connect to " + url.host + ":" + url.port + ": " + ec.message();
    co_return nullptr;
  }
  lowest.socket().set_option(tcp::no_delay(true), ec);
  opened.fetch_add(1, std::memory_order_relaxed);
  if (conn->tls) {
    boost::system::error_code not_ip;
    (void)asio::ip::make_address(url.host, not_ip);
    if (not_ip && !SSL_set_tlsext_host_name(conn->tls->native_handle(), url.host.c_str())) {
      error = "cannot set TLS server name " + url.host;
      co_return nullptr;
    }
    if (req.verify_tls) conn->tls->set_verify_callback(ssl::host_name_verification(url.host));
    co_await conn->tls->async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      error = "TLS handshake with " + url.host + " failed: " + ec.message();
      co_return nullptr;
    }
  }
  co_return conn;
}

asio::awaitable<OutboundResponse> OutboundHttp::Impl::run(OutboundRequest req) {
  OutboundResponse out;
  std::string url_error;
  const auto url = parse_url(req.url, &url_error);
  if (!url) {
    out.error = "invalid url: " + url_error;
    co_return out;
  }
  http::request<http::string_body> msg;
  {
    http::verb verb = http::string_to_verb(req.method);
    if (verb == http::verb::unknown) {
      out.error = "invalid method " + req.method;
      co_return out;
    }
    msg.method(verb);
  }
  msg.target(url->target);
  msg.version(11);
  const bool default_port = url->port == (url->tls ? "443" : "80");
  const std::string host_field = (url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host) +
                                 (default_port ? "" : ":" + url->port);
  msg.set(http::field::host, host_field);
  msg.set(http::field::user_agent, options.user_agent);
  for (const auto& [name, value] : req.headers) {
    const auto bad = [](const std::string& s) {
      return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
    };
    if (name.empty() || bad(name) || bad(value) || name.find(':') != std::string::npos) {
      out.error = "invalid header " + (bad(name) ? std::string("name") : name);
      co_return out;
    }
    const std::string ln = lower(name);
    if (ln == "host" || ln == "content-length" || ln == "transfer-encoding" || ln == "connection") continue;
    msg.insert(name, value);
  }
  msg.body() = std::move(req.body);
  msg.keep_alive(true);
  msg.prepare_payload();

  const auto deadline = std::chrono::steady_clock::now() + req.timeout;
  const std::string key = pool_key(*url, req);
  // A reused connection may have been closed by the peer an instant ago: one
  // retry on a fresh connection when the reused one fails before a response.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Connection> conn = attempt == 0 ? take_idle(key) : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) {
      std::string error;
      conn = co_await connect(*url, req, deadline, error);
      if (!conn) {
        out.error = std::move(error);
        out.timed_out = std::chrono::steady_clock::now() >= deadline;
        if (out.timed_out) out.error = "timed out: " + out.error;
        co_return out;
      }
    }
    if (!track(conn.get())) {
      out.error = "client shut down";
      co_return out;
    }
    struct Untrack {
      Impl* impl;
      Connection* c;
      ~Untrack() { impl->untrack(c); }
    } untrack{this, conn.get()};

    boost::system::error_code ec;
    conn->lowest().expires_at(deadline);
    if (conn->tls) {
      co_await http::async_write(*conn->tls, msg, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await http::async_write(*conn->plain, msg, asio::redirect_error(asio::use_awaitable, ec));
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(req.max_response_bytes);
    parser.header_limit(64 * 1024);
    if (!ec) {
      if (conn->tls) {
        co_await http::async_read(*conn->tls, conn->buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      } else {
        co_await http::async_read(*conn->plain, conn->buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    if (ec) {
      bool shut_down;
      {
        std::lock_guard lk(mu);
        shut_down = stopping;
      }
      if (shut_down) {
        out.error = "client shut down";
        co_return out;
      }
      if (ec == beast::error::timeout) {
        out.error = "timed out after " + std::to_string(req.timeout.count()) + " ms";
        out.timed_out = true;
        co_return out;
      }
      if (reused && !parser.got_some() && attempt == 0) continue;
      if (ec == http::error::body_limit) {
        out.error = "response larger than " + std::to_string(req.max_response_bytes) + " bytes";
      } else {
        out.error = "request to " + url->host + " failed: " + ec.message();
      }
      co_return out;
    }
    auto res = parser.release();
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      out.headers.emplace_back(lower(field.name_string()), std::string(field.value()));
    }
    out.body = std::move(res.body());
    if (res.keep_alive()) {
      conn->lowest().expires_never();
      give_back(key, std::move(conn));
    }
    co_return out;
  }
  out.error = "request failed";
  co_return out;
}

OutboundHttp::OutboundHttp(OutboundOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  const unsigned n = std::max(1u, impl_->options.threads);
  for (unsigned i = 0; i < n; ++i) {
    impl_->threads.emplace_back([this] {
      enter_background_thread("arb-outbound");
      impl_->ioc.run();
    });
  }
}

OutboundHttp::~OutboundHttp() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
    impl_->idle.clear();
  }
  // Abort calls in flight: closing their sockets (on the client's threads)
  // completes every pending operation with an error.
  asio::post(impl_->ioc, [impl = impl_.get()] {
    std::lock_guard lk(impl->mu);
    for (Connection* c : impl->active) {
      boost::system::error_code ignored;
      c->lowest().socket().close(ignored);
    }
  });
  impl_->work.reset();
  for (auto& t : impl_->threads) t.join();
}

void OutboundHttp::send(OutboundRequest request, Callback done) {
  impl_->requests.fetch_add(1, std::memory_order_relaxed);
  asio::co_spawn(impl_->ioc, impl_->run(std::move(request)),
                 [impl = impl_.get(), done = std::move(done)](std::exception_ptr e, OutboundResponse res) {
                   if (e) {
                     res = OutboundResponse{};
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       res.error = std::string("internal error: ") + ex.what();
                     } catch (...) {
                       res.error = "internal error";
                     }
                   }
                   if (!res.error.empty()) impl->errors.fetch_add(1, std::memory_order_relaxed);
                   done(std::move(res));
                 });
}

OutboundResponse OutboundHttp::send_sync(OutboundRequest request) {
  std::promise<OutboundResponse> promise;
  auto future = promise.get_future();
  send(std::move(request), [&promise](OutboundResponse res) { promise.set_value(std::move(res)); });
  return future.get();
}

OutboundHttp::Counters OutboundHttp::counters() const {
  return {impl_->requests.load(), impl_->opened.load(), impl_->errors.load()};
}

}  // namespace arbiter::scoring
