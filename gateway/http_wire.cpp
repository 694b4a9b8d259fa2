#include "gateway/http_wire.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/status.hpp>

#include "gateway/proxy_request.hpp"

namespace arbiter::gateway {
namespace http = boost::beast::http;

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ", 2);
  out.append(value);
  out.append("\r\n", 2);
}

void append_relayed_response_head(std::string& out, unsigned code, std::string_view reason,
                                  const http::fields& upstream, bool chunked, std::string_view request_id,
                                  bool keep_alive) {
  char status[4] = {static_cast<char>('0' + code / 100 % 10), static_cast<char>('0' + code / 10 % 10),
                    static_cast<char>('0' + code % 10), ' '};
  out.append("HTTP/1.1 ", 9);
  out.append(status, 4);
  if (reason.empty()) {
    const auto standard = http::obsolete_reason(static_cast<http::status>(code));
    out.append(standard.data(), standard.size());
  } else {
    out.append(reason);
  }
  out.append("\r\n", 2);
  for (const auto& f : upstream) {
    const auto name = f.name();
    if (is_hop_by_hop(name)) continue;
    const auto ns = f.name_string();
    // The gateway's own: an upstream's would contradict them.
    if (name == http::field::unknown &&
        (boost::beast::iequals(ns, "helicone-id") || boost::beast::iequals(ns, "helicone-status"))) {
      continue;
    }
    append_field(out, ns, f.value());
  }
  if (chunked) append_field(out, "Transfer-Encoding", "chunked");
  append_field(out, "Helicone-Id", request_id);
  append_field(out, "Helicone-Status", "success");
  if (!keep_alive) append_field(out, "Connection", "close");
  out.append("\r\n", 2);
}

WirePiece::WirePiece(std::string_view head, bool chunked, const char* data, std::size_t n, bool last) {
  static constexpr std::string_view kCrlf = "\r\n";
  static constexpr std::string_view kLastChunk = "0\r\n\r\n";
  add(head.data(), head.size());
  if (!chunked) {
    add(data, n);
    return;
  }
  if (n > 0) {
    static constexpr char kHex[] = "0123456789abcdef";
    char digits[16];
    std::size_t d = 0;
    for (std::size_t v = n; v != 0; v >>= 4) digits[d++] = kHex[v & 0xf];
    std::size_t i = 0;
    while (d > 0) size_line_[i++] = digits[--d];
    size_line_[i++] = '\r';
    size_line_[i++] = '\n';
    add(size_line_, i);
    add(data, n);
    add(kCrlf.data(), kCrlf.size());
  }
  if (last) add(kLastChunk.data(), kLastChunk.size());
}

std::size_t WirePiece::size() const {
  std::size_t total = 0;
  for (std::size_t i = 0; i < count_; ++i) total += bufs_[i].size();
  return total;
}

}  // namespace arbiter::gateway
