#pragma once
// A small blocking HTTP/1.1 client for tests (Beast, plain or TLS), with
// keep-alive, streamed response bodies and raw-bytes exchanges for feeding
// malformed input. Not thread-safe: one client per thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace arbiter::testing {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;
  Headers headers;  // names lower-cased
  std::string body;
  std::optional<std::string> header(std::string_view lower_name) const;
};

class HttpClient {
 public:
  // TLS when ca_pem is set: the server certificate is verified against it, with SNI `sni`.
  HttpClient(std::string host, std::uint16_t port, std::optional<std::string> ca_pem = std::nullopt,
             std::string sni = "localhost");
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request on the kept-alive connection (connecting if needed) and
  // reads the whole response. Throws boost::system::system_error on I/O errors.
  HttpResponse request(std::string_view method, std::string_view target, const Headers& headers = {},
                       std::string body = {});

  // Like request(), but hands each piece of the response body to on_data as it
  // arrives; on_data returning false closes the connection at once (a client abort).
  HttpResponse request_streaming(std::string_view method, std::string_view target, const Headers& headers,
                                 std::string body, const std::function<bool(std::string_view)>& on_data);

  // Sends a request whose body is produced piece by piece by next_piece (which
  // returns nullopt at the end), with chunked transfer encoding.
  HttpResponse request_chunked_upload(std::string_view method, std::string_view target, const Headers& headers,
                                      const std::function<std::optional<std::string>()>& next_piece);

  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Connects, writes `raw` as is, and reads until the peer closes or `timeout`
// passes; returns whatever came back.
std::string raw_exchange(const std::string& host, std::uint16_t port, std::string_view raw,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace arbiter::testing
