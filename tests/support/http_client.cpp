#include "tests/support/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <cctype>

namespace arbiter::testing {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::optional<std::string> HttpResponse::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return std::nullopt;
}

struct HttpClient::Impl {
  std::string host;
  std::uint16_t port;
  std::optional<std::string> ca_pem;
  std::string sni;
  asio::io_context ioc;
  std::unique_ptr<ssl::context> tls_ctx;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;

  bool connected() const { return plain || tls; }

  void connect() {
    tcp::resolver resolver(ioc);
    auto results = resolver.resolve(host, std::to_string(port));
    if (!ca_pem) {
      plain = std::make_unique<beast::tcp_stream>(ioc);
      plain->connect(results);
      plain->socket().set_option(tcp::no_delay(true));
      return;
    }
    if (!tls_ctx) {
      tls_ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
      tls_ctx->add_certificate_authority(asio::buffer(*ca_pem));
      tls_ctx->set_verify_mode(ssl::verify_peer);
    }
    tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc, *tls_ctx);
    SSL_set_tlsext_host_name(tls->native_handle(), sni.c_str());
    tls->set_verify_callback(ssl::host_name_verification(sni));
    beast::get_lowest_layer(*tls).connect(results);
    tls->handshake(ssl::stream_base::client);
  }

  void close() {
    boost::system::error_code ec;
    if (plain) plain->socket().close(ec);
    if (tls) beast::get_lowest_layer(*tls).socket().close(ec);
    plain.reset();
    tls.reset();
    buffer.clear();
  }

  template <class F>
  auto with_stream(F&& f) {
    if (!connected()) connect();
    if (tls) return f(*tls);
    return f(*plain);
  }

  http::request<http::string_body> make(std::string_view method, std::string_view target, const Headers& headers,
                                        std::string body) {
    http::request<http::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(http::field::host, host + ":" + std::to_string(port));
    for (const auto& [k, v] : headers) req.insert(k, v);
    req.body() = std::move(body);
    if (!req.body().empty() || method == "POST" || method == "PUT" || method == "PATCH") req.prepare_payload();
    return req;
  }

  template <class Stream>
  HttpResponse read_response(Stream& s, const std::function<bool(std::string_view)>* on_data) {
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    http::read_header(s, buffer, parser);
    HttpResponse out;
    out.status = static_cast<int>(parser.get().result_int());
    for (const auto& f : parser.get()) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    char buf[16384];
    while (!parser.is_done()) {
      parser.get().body().data = buf;
      parser.get().body().size = sizeof buf;
      boost::system::error_code ec;
      http::read_some(s, buffer, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) throw boost::system::system_error(ec);
      const std::size_t n = sizeof buf - parser.get().body().size;
      if (n == 0) continue;
      if (on_data) {
        if (!(*on_data)(std::string_view(buf, n))) {
          close();
          return out;
        }
      } else {
        out.body.append(buf, n);
      }
    }
    if (!parser.keep_alive()) close();
    return out;
  }
};

HttpClient::HttpClient(std::string host, std::uint16_t port, std::optional<std::string> ca_pem, std::string sni)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->ca_pem = std::move(ca_pem);
  impl_->sni = std::move(sni);
}

HttpClient::~HttpClient() { impl_->close(); }

void HttpClient::close() { impl_->close(); }

HttpResponse HttpClient::request(std::string_view method, std::string_view target, const Headers& headers,
                                 std::string body) {
  auto req = impl_->make(method, target, headers, std::move(body));
  return impl_->with_stream([&](auto& s) {
    http::write(s, req);
    return impl_->read_response(s, nullptr);
  });
}

HttpResponse HttpClient::request_streaming(std::string_view method, std::string_view target, const Headers& headers,
                                           std::string body, const std::function<bool(std::string_view)>& on_data) {
  auto req = impl_->make(method, target, headers, std::move(body));
  return impl_->with_stream([&](auto& s) {
    http::write(s, req);
    return impl_->read_response(s, &on_data);
  });
}

HttpResponse HttpClient::request_chunked_upload(std::string_view method, std::string_view target,
                                                const Headers& headers,
                                                const std::function<std::optional<std::string>()>& next_piece) {
  http::request<http::empty_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, impl_->host + ":" + std::to_string(impl_->port));
  for (const auto& [k, v] : headers) req.insert(k, v);
  req.chunked(true);
  return impl_->with_stream([&](auto& s) {
    http::request_serializer<http::empty_body> sr{req};
    http::write_header(s, sr);
    while (auto piece = next_piece()) {
      if (piece->empty()) continue;
      asio::write(s, http::make_chunk(asio::buffer(*piece)));
    }
    asio::write(s, http::make_chunk_last());
    return impl_->read_response(s, nullptr);
  });
}

std::string raw_exchange(const std::string& host, std::uint16_t port, std::string_view raw,
                         std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  tcp::resolver resolver(ioc);
  stream.connect(resolver.resolve(host, std::to_string(port)));
  std::string out;
  stream.expires_after(timeout);
  // Write errors are expected (the server may close early on bad input); what
  // it answered before closing is what the test wants.
  asio::async_write(stream, asio::buffer(raw.data(), raw.size()), [](boost::system::error_code, std::size_t) {});
  ioc.run();
  ioc.restart();
  char buf[4096];
  std::function<void(boost::system::error_code, std::size_t)> on_read = [&](boost::system::error_code ec,
                                                                             std::size_t n) {
    out.append(buf, n);
    if (ec) return;
    stream.async_read_some(asio::buffer(buf), on_read);
  };
  stream.expires_after(timeout);
  stream.async_read_some(asio::buffer(buf), on_read);
  ioc.run();
  return out;
}

}  // namespace arbiter::testing
