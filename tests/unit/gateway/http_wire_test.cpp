#include "gateway/http_wire.hpp"

#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <gtest/gtest.h>

namespace arbiter::gateway {
namespace {
namespace http = boost::beast::http;

std::string flatten(const WirePiece& p) {
  std::string out;
  for (const auto& b : p.buffers()) out.append(static_cast<const char*>(b.data()), b.size());
  EXPECT_EQ(out.size(), p.size());
  return out;
}

// What the client receives for a relayed response, parsed back by Beast.
TEST(HttpWire, RendersTheRelayedResponseHeadFromTheUpstreamsFields) {
  http::response<http::empty_body> up;
  up.insert("content-type", "application/json");
  up.insert("Connection", "keep-alive");
  up.insert("Keep-Alive", "timeout=5");
  up.insert("x-request-id", "req_123");
  up.insert("helicone-id", "from-the-upstream");
  up.insert("Helicone-Status", "from-the-upstream");
  up.insert("Content-Length", "2");
  std::string head;
  append_relayed_response_head(head, 200, "OK", up, /*chunked=*/false, "0192f1b2-0000-4000-8000-000000000001",
                               /*keep_alive=*/true);
  EXPECT_EQ(head,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_123\r\n"
            "Content-Length: 2\r\nHelicone-Id: 0192f1b2-0000-4000-8000-000000000001\r\n"
            "Helicone-Status: success\r\n\r\n");

  http::response_parser<http::string_body> parser;
  parser.eager(true);
  boost::system::error_code ec;
  const std::string wire = head + "{}";
  parser.put(boost::asio::buffer(wire), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_done());
  EXPECT_EQ(parser.get().result_int(), 200u);
  EXPECT_EQ(parser.get()["Helicone-Id"], "0192f1b2-0000-4000-8000-000000000001");
  EXPECT_EQ(parser.get().count("Helicone-Status"), 1u);
  EXPECT_TRUE(parser.get().keep_alive());
  EXPECT_EQ(parser.get().body(), "{}");

  // Not kept alive: the client is told so.
  head.clear();
  append_relayed_response_head(head, 200, "OK", up, false, "id", /*keep_alive=*/false);
  EXPECT_NE(head.find("\r\nHelicone-Status: success\r\nConnection: close\r\n\r\n"), std::string::npos) << head;
}

TEST(HttpWire, RendersAStatusLineWithTheStandardReasonWhenUpstreamSentNone) {
  http::response<http::empty_body> res;
  std::string head;
  append_relayed_response_head(head, 404, "", res, false, "abc", true);
  EXPECT_EQ(head, "HTTP/1.1 404 Not Found\r\nHelicone-Id: abc\r\nHelicone-Status: success\r\n\r\n");
  head.clear();
  append_relayed_response_head(head, 299, "Custom", res, false, "abc", true);
  EXPECT_EQ(head, "HTTP/1.1 299 Custom\r\nHelicone-Id: abc\r\nHelicone-Status: success\r\n\r\n");
}

TEST(HttpWire, FramesIdentityPiecesAsTheyAre) {
  const std::string data = "hello";
  WirePiece with_head("HEAD\r\n\r\n", false, data.data(), data.size(), true);
  EXPECT_EQ(flatten(with_head), "HEAD\r\n\r\nhello");
  WirePiece bare({}, false, data.data(), data.size(), false);
  EXPECT_EQ(flatten(bare), "hello");
  WirePiece empty({}, false, nullptr, 0, true);
  EXPECT_TRUE(empty.empty());
}

TEST(HttpWire, FramesChunkedPiecesAndTheLastChunk) {
  std::string data(300, 'x');
  WirePiece first("H\r\n\r\n", true, data.data(), data.size(), false);
  EXPECT_EQ(flatten(first), "H\r\n\r\n12c\r\n" + data + "\r\n");
  WirePiece last({}, true, data.data(), 1, true);
  EXPECT_EQ(flatten(last), "1\r\nx\r\n0\r\n\r\n");
  // An empty piece must not write an empty chunk: that would end the body.
  WirePiece nothing({}, true, nullptr, 0, false);
  EXPECT_TRUE(nothing.empty());
  WirePiece only_end({}, true, nullptr, 0, true);
  EXPECT_EQ(flatten(only_end), "0\r\n\r\n");
}

TEST(HttpWire, ChunkedPiecesParseBackToTheBody) {
  http::response<http::empty_body> up;
  up.insert("Transfer-Encoding", "chunked");  // hop-by-hop: replaced by the gateway's own framing
  std::string wire;
  append_relayed_response_head(wire, 200, "OK", up, /*chunked=*/true, "id", true);
  EXPECT_EQ(wire.find("chunked"), wire.rfind("chunked")) << wire;
  const std::string a(70000, 'a');
  const std::string b = "tail";
  const WirePiece first({}, true, a.data(), a.size(), false);
  const WirePiece last({}, true, b.data(), b.size(), true);
  wire += flatten(first) + flatten(last);
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  boost::system::error_code ec;
  std::size_t off = 0;
  while (!parser.is_done() && off < wire.size()) {
    off += parser.put(boost::asio::buffer(wire.data() + off, wire.size() - off), ec);
    if (ec == http::error::need_more) ec = {};
    ASSERT_FALSE(ec) << ec.message();
  }
  ASSERT_TRUE(parser.is_done());
  EXPECT_EQ(parser.get().body(), a + b);
}

}  // namespace
}  // namespace arbiter::gateway
