#pragma once
// HTTP/1.1 wire framing for the proxy's two legs, without Beast's serializer.
//
// The proxy holds each parsed message head as Beast fields and each body
// piece in its relay buffer. Beast's buffer_body serializer wraps every write
// in several layers of buffer-sequence views (about 30 % of the proxy's
// instructions per request in the callgrind profile, bench/README.md); here a
// head is rendered once into a flat string, straight from the parsed fields
// (the request's by prepare_proxy_request, the response's below), and each
// body piece is framed by hand, so one write is one gathered `sendmsg` of at
// most five buffers:
//
//   [head] [chunk size line] [data] [CRLF] [last chunk]
//
// Only the proxy (proxy_session.cpp, proxy_request.cpp) and the micro
// benchmarks include this header.

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/fields.hpp>

namespace arbiter::gateway {

// "name: value\r\n", appended to `out`: one field of a head being rendered.
void append_field(std::string& out, std::string_view name, std::string_view value);

// The client's head for a relayed response: "HTTP/1.1 code reason\r\n" (the
// standard reason when the upstream sent none), the upstream's end-to-end
// fields in its order and spelling, minus hop-by-hop ones and any
// Helicone-Id / Helicone-Status of its own; then Transfer-Encoding: chunked
// when `chunked`, Helicone-Id: `request_id`, Helicone-Status: success (the
// call was relayed and handed to the log, DESIGN.md §3), and Connection:
// close when the connection will not be kept alive; "\r\n". Appended to
// `out`, straight from the parsed upstream fields.
void append_relayed_response_head(std::string& out, unsigned code, std::string_view reason,
                                  const boost::beast::http::fields& upstream, bool chunked,
                                  std::string_view request_id, bool keep_alive);

// One write's worth of wire bytes: an optional head, then a body piece in
// either framing. The views point into the caller's storage (and the
// object's own chunk-size line), which must outlive the write.
class WirePiece {
 public:
  // `head` may be empty (already sent). In chunked framing an empty piece
  // writes no chunk (an empty chunk would end the body); `last` appends the
  // terminating chunk. In identity framing the data is written as is.
  WirePiece(std::string_view head, bool chunked, const char* data, std::size_t n, bool last);
  WirePiece(const WirePiece&) = delete;  // the buffers point into the object
  WirePiece& operator=(const WirePiece&) = delete;

  // The buffer sequence to write; valid while this object lives.
  std::span<const boost::asio::const_buffer> buffers() const { return {bufs_.data(), count_}; }
  std::size_t buffer_count() const { return count_; }
  std::size_t size() const;
  bool empty() const { return count_ == 0; }

 private:
  void add(const void* p, std::size_t n) {
    if (n > 0) bufs_[count_++] = boost::asio::const_buffer(p, n);
  }
  std::array<boost::asio::const_buffer, 5> bufs_{};
  std::size_t count_ = 0;
  char size_line_[20];  // hex size + CRLF
};

}  // namespace arbiter::gateway
