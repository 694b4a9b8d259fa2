// Tests of the fake OpenAI upstream itself (tests/support/fake_upstream.hpp), the self-signed
// certificate generator and TempDir: everything the other integration tests, the e2e tests and the
// benchmark lean on.

#include "tests/support/fake_upstream.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "tests/support/temp_dir.hpp"
#include "tests/support/test_cert.hpp"

namespace arbiter::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using Headers = std::initializer_list<std::pair<std::string, std::string>>;

http::request<http::string_body> make_request(http::verb method, std::string target,
                                              std::string body = {}, Headers headers = {}) {
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = std::move(body);
  req.prepare_payload();
  return req;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xF]);
  }
  return out;
}

// A synchronous HTTP/1.1 client over TCP or TLS: one connection, kept alive across requests.
template <class Stream>
class BasicClient {
 public:
  template <class... Args>
  explicit BasicClient(Args&&... args) : stream_(ioc_, std::forward<Args>(args)...) {}

  Stream& stream() { return stream_; }
  tcp::socket& socket() {
    if constexpr (std::is_same_v<Stream, tcp::socket>)
      return stream_;
    else
      return stream_.next_layer();
  }
  beast::flat_buffer& buffer() { return buffer_; }

  http::response<http::string_body> request(const http::request<http::string_body>& req) {
    send(req);
    return read_response();
  }
  void send(const http::request<http::string_body>& req) { http::write(stream_, req); }
  http::response<http::string_body> read_response() {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream_, buffer_, parser);
    return parser.release();
  }

 protected:
  asio::io_context ioc_;
  Stream stream_;
  beast::flat_buffer buffer_;
};

class Client : public BasicClient<tcp::socket> {
 public:
  explicit Client(uint16_t port) {
    stream_.connect({asio::ip::make_address("127.0.0.1"), port});
    stream_.set_option(tcp::no_delay(true));
  }
};

class TlsClient : public BasicClient<ssl::stream<tcp::socket>> {
 public:
  // Verifies the server against `ca_pem`, sending SNI "localhost" and checking that name.
  TlsClient(uint16_t port, ssl::context& ctx) : BasicClient(ctx) {
    SSL_set_tlsext_host_name(stream_.native_handle(), "localhost");
    stream_.set_verify_mode(ssl::verify_peer);
    stream_.set_verify_callback(ssl::host_name_verification("localhost"));
    stream_.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    stream_.handshake(ssl::stream_base::client);
  }
};

ssl::context client_context(const std::string& ca_pem) {
  ssl::context ctx(ssl::context::tls_client);
  ctx.add_certificate_authority(asio::buffer(ca_pem));
  return ctx;
}

struct SseResponse {
  http::response<http::string_body> message;
  std::vector<std::string> events;             // payloads after "data: "
  std::vector<Clock::time_point> chunk_times;  // when each chunk header was parsed
};

template <class Stream>
SseResponse read_sse(Stream& stream, beast::flat_buffer& buffer) {
  SseResponse out;
  http::response_parser<http::string_body> parser;
  auto on_chunk = [&](std::uint64_t size, std::string_view, boost::system::error_code&) {
    if (size > 0) out.chunk_times.push_back(Clock::now());
  };
  parser.on_chunk_header(on_chunk);
  http::read(stream, buffer, parser);
  out.message = parser.release();
  std::string_view body = out.message.body();
  for (std::size_t pos; (pos = body.find("\n\n")) != std::string_view::npos;
       body.remove_prefix(pos + 2)) {
    std::string_view event = body.substr(0, pos);
    EXPECT_EQ(event.substr(0, 6), "data: ");
    out.events.emplace_back(event.substr(6));
  }
  EXPECT_TRUE(body.empty()) << "trailing bytes after the last event: " << body;
  return out;
}

std::string chat_body(bool stream, bool include_usage = false, std::string model = "gpt-test") {
  Json j{{"model", model},
         {"messages", Json::array({Json{{"role", "user"}, {"content", "Say hello please"}}})}};
  if (stream) j["stream"] = true;
  if (include_usage) j["stream_options"] = {{"include_usage", true}};
  return j.dump();
}

// Reads until the server closes the connection; true when it did.
bool server_closed(tcp::socket& socket) {
  boost::system::error_code ec;
  char byte = 0;
  socket.read_some(asio::buffer(&byte, 1), ec);
  return ec == asio::error::eof || ec == asio::error::connection_reset;
}

// ---------------------------------------------------------------------------------------------

TEST(FakeUpstream, ChatCompletionJson) {
  FakeUpstream upstream;
  EXPECT_EQ(upstream.base_url(), "http://127.0.0.1:" + std::to_string(upstream.port()));
  Client client(upstream.port());
  const std::string body = chat_body(false);
  auto res = client.request(make_request(http::verb::post, "/v1/chat/completions", body,
                                         {{"Authorization", "Bearer sk-test"}}));
  ASSERT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_TRUE(res.has_content_length());
  const Json j = Json::parse(res.body());
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_TRUE(j["id"].is_string());
  EXPECT_TRUE(j["created"].is_number_integer());
  EXPECT_EQ(j["model"], "gpt-test");
  ASSERT_EQ(j["choices"].size(), 1U);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hello from the fake upstream.");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  const Json& usage = j["usage"];
  EXPECT_GT(usage["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(usage["completion_tokens"], 5);
  EXPECT_EQ(usage["total_tokens"].get<int>(),
            usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());

  const auto seen = upstream.requests();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/v1/chat/completions");
  EXPECT_EQ(seen[0].header("authorization"), "Bearer sk-test");
  EXPECT_EQ(seen[0].header("x-missing"), std::nullopt);
  EXPECT_EQ(seen[0].body_size, body.size());
  EXPECT_EQ(seen[0].body_prefix, body);
  EXPECT_EQ(seen[0].body_sha256_hex, sha256_hex(body));
  EXPECT_FALSE(seen[0].body_was_chunked);
  EXPECT_EQ(upstream.request_count(), 1U);
  EXPECT_EQ(upstream.connections_accepted(), 1U);
}

TEST(FakeUpstream, ChatUnderPathPrefixWithContentOverride) {
  FakeUpstream upstream;
  Client client(upstream.port());
  auto res = client.request(make_request(http::verb::post, "/openai/v1/chat/completions?x=1",
                                         chat_body(false, false, "m2"),
                                         {{"x-fake-content", "Custom answer"}}));
  ASSERT_EQ(res.result(), http::status::ok);
  const Json j = Json::parse(res.body());
  EXPECT_EQ(j["model"], "m2");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Custom answer");
  EXPECT_EQ(j["usage"]["completion_tokens"], 2);
}

TEST(FakeUpstream, ModelFoundInBodyLargerThanKeptPrefix) {
  // Only the first 64 KiB are parsed and the last 64 KiB scanned: `model` and `stream` are found
  // whether they come before the big `messages` or after them (nlohmann::json sorts keys, so
  // there they come after; ordered_json keeps them first).
  FakeUpstream upstream;
  Client client(upstream.port());
  const std::string big(1 << 20, 'x');
  nlohmann::ordered_json first{{"model", "model-first"}, {"stream", true}};
  first["messages"] = Json::array({Json{{"role", "user"}, {"content", big}}});
  const Json last{{"model", "model-last"},
                  {"stream", true},
                  {"messages", Json::array({Json{{"role", "user"}, {"content", big}}})}};
  const std::vector<std::pair<std::string, std::string>> cases = {{first.dump(), "model-first"},
                                                                  {last.dump(), "model-last"}};
  for (const auto& [body, model] : cases) {
    client.send(make_request(http::verb::post, "/v1/chat/completions", body));
    const SseResponse sse = read_sse(client.stream(), client.buffer());
    ASSERT_EQ(sse.events.size(), 7U);
    EXPECT_EQ(Json::parse(sse.events.front())["model"], model);
  }
  const auto seen = upstream.requests();
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(seen[1].body_prefix.size(), 64U * 1024);
  EXPECT_EQ(seen[1].body_size, cases[1].first.size());
}

TEST(FakeUpstream, ChatStreamEventsInOrderWithUsage) {
  FakeUpstream upstream;
  Client client(upstream.port());
  client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(true, true)));
  const SseResponse sse = read_sse(client.stream(), client.buffer());
  ASSERT_EQ(sse.message.result(), http::status::ok);
  EXPECT_TRUE(sse.message[http::field::content_type].starts_with("text/event-stream"));
  EXPECT_TRUE(sse.message.chunked());
  // 5 content chunks, the finish chunk, the usage chunk, [DONE]; one HTTP chunk per event.
  ASSERT_EQ(sse.events.size(), 8U);
  EXPECT_EQ(sse.chunk_times.size(), 8U);
  std::string content;
  for (std::size_t i = 0; i < 5; ++i) {
    const Json c = Json::parse(sse.events[i]);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["model"], "gpt-test");
    EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
    const Json& delta = c["choices"][0]["delta"];
    if (i == 0)
      EXPECT_EQ(delta["role"], "assistant");
    else
      EXPECT_FALSE(delta.contains("role"));
    ASSERT_TRUE(delta["content"].is_string());
    EXPECT_FALSE(delta["content"].get<std::string>().empty());
    content += delta["content"].get<std::string>();
  }
  EXPECT_EQ(content, "Hello from the fake upstream.");
  const Json finish = Json::parse(sse.events[5]);
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "stop");
  const Json usage = Json::parse(sse.events[6]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 5);
  EXPECT_EQ(sse.events[7], "[DONE]");

  // The connection is kept alive after a stream.
  auto res = client.request(make_request(http::verb::get, "/v1/models"));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(upstream.connections_accepted(), 1U);
}

TEST(FakeUpstream, ChatStreamChunkCountWithoutUsage) {
  FakeUpstream upstream;
  Client client(upstream.port());
  client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(true),
                           {{"x-fake-chunks", "3"}, {"x-fake-content", "one two three four"}}));
  const SseResponse sse = read_sse(client.stream(), client.buffer());
  ASSERT_EQ(sse.events.size(), 5U);  // 3 content chunks, finish, [DONE]
  std::string content;
  for (std::size_t i = 0; i < 3; ++i)
    content += Json::parse(sse.events[i])["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_EQ(content, "one two three four");
  EXPECT_EQ(Json::parse(sse.events[3])["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(Json::parse(sse.events[3]).contains("usage"));
  EXPECT_EQ(sse.events[4], "[DONE]");
}

TEST(FakeUpstream, ChatStreamMoreChunksThanWords) {
  FakeUpstream upstream;
  Client client(upstream.port());
  for (const auto& [chunks, expected] : std::vector<std::pair<std::string, std::size_t>>{
           {"12", 12}, {"500", 29}}) {  // the default content has 5 words and 29 characters
    client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(true),
                             {{"x-fake-chunks", chunks}}));
    const SseResponse sse = read_sse(client.stream(), client.buffer());
    ASSERT_EQ(sse.events.size(), expected + 2);  // + finish, [DONE]
    std::string content;
    for (std::size_t i = 0; i < expected; ++i) {
      const auto piece =
          Json::parse(sse.events[i])["choices"][0]["delta"]["content"].get<std::string>();
      EXPECT_FALSE(piece.empty());
      content += piece;
    }
    EXPECT_EQ(content, "Hello from the fake upstream.");
  }
}

TEST(FakeUpstream, ChatStreamIsPaced) {
  FakeUpstream upstream;
  Client client(upstream.port());
  const auto start = Clock::now();
  client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(true),
                           {{"x-fake-chunk-interval-ms", "100"}}));
  const SseResponse sse = read_sse(client.stream(), client.buffer());
  ASSERT_EQ(sse.events.size(), 7U);
  ASSERT_EQ(sse.chunk_times.size(), 7U);
  // The fake waits 100 ms between events; timers never fire early, so the spread is a lower bound.
  EXPECT_GE(sse.chunk_times.back() - sse.chunk_times.front(), 300ms);
  EXPECT_GE(Clock::now() - start, 300ms);
}

TEST(FakeUpstream, LegacyCompletions) {
  FakeUpstream upstream;
  Client client(upstream.port());
  auto res = client.request(make_request(http::verb::post, "/v1/completions",
                                         R"({"model":"davinci","prompt":"Say this"})"));
  ASSERT_EQ(res.result(), http::status::ok);
  Json j = Json::parse(res.body());
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "davinci");
  EXPECT_EQ(j["choices"][0]["text"], "Hello from the fake upstream.");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);

  client.send(make_request(
      http::verb::post, "/v1/completions",
      R"({"model":"davinci","prompt":"Say this","stream":true,"stream_options":{"include_usage":true}})"));
  const SseResponse sse = read_sse(client.stream(), client.buffer());
  ASSERT_EQ(sse.events.size(), 8U);
  std::string text;
  for (std::size_t i = 0; i < 5; ++i)
    text += Json::parse(sse.events[i])["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, "Hello from the fake upstream.");
  EXPECT_EQ(Json::parse(sse.events[5])["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(Json::parse(sse.events[6])["usage"]["completion_tokens"], 5);
  EXPECT_EQ(sse.events[7], "[DONE]");
}

TEST(FakeUpstream, EmbeddingsAreDeterministic) {
  FakeUpstream upstream;
  Client client(upstream.port());
  auto res = client.request(make_request(
      http::verb::post, "/v1/embeddings",
      R"({"model":"text-embedding-3-small","input":["the cat sat","the cat sat","stock prices"]})"));
  ASSERT_EQ(res.result(), http::status::ok);
  const Json j = Json::parse(res.body());
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], "text-embedding-3-small");
  ASSERT_EQ(j["data"].size(), 3U);
  std::vector<std::vector<float>> vectors;
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(j["data"][i]["object"], "embedding");
    EXPECT_EQ(j["data"][i]["index"], i);
    vectors.push_back(j["data"][i]["embedding"].get<std::vector<float>>());
    EXPECT_EQ(vectors.back().size(), 8U);
  }
  EXPECT_EQ(vectors[0], fake_embedding("the cat sat"));
  EXPECT_EQ(vectors[0], vectors[1]);
  EXPECT_EQ(vectors[2], fake_embedding("stock prices"));
  double norm = 0;
  for (float v : vectors[0]) norm += double(v) * double(v);
  EXPECT_NEAR(norm, 1.0, 1e-5);

  auto res16 = client.request(make_request(http::verb::post, "/v1/embeddings",
                                           R"({"model":"e","input":"hello"})",
                                           {{"x-fake-embedding-dim", "16"}}));
  const Json j16 = Json::parse(res16.body());
  ASSERT_EQ(j16["data"].size(), 1U);
  EXPECT_EQ(j16["data"][0]["embedding"].get<std::vector<float>>(), fake_embedding("hello", 16));

  // What the openai SDKs ask for by default: little-endian float32, base64.
  auto res64 =
      client.request(make_request(http::verb::post, "/v1/embeddings",
                                  R"({"model":"e","input":"hello","encoding_format":"base64"})"));
  const std::string b64 = Json::parse(res64.body())["data"][0]["embedding"].get<std::string>();
  std::vector<unsigned char> raw(b64.size());
  const int n = EVP_DecodeBlock(raw.data(), reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  ASSERT_EQ(n, 33);  // EVP_DecodeBlock reports whole 3-byte groups, padding included
  std::vector<float> decoded(8);
  std::memcpy(decoded.data(), raw.data(), 32);
  EXPECT_EQ(decoded, fake_embedding("hello"));
}

TEST(FakeUpstream, FakeEmbeddingSimilarityFollowsSharedWords) {
  auto cosine = [](const std::vector<float>& a, const std::vector<float>& b) {
    double dot = 0;
    for (std::size_t i = 0; i < a.size(); ++i) dot += double(a[i]) * double(b[i]);
    return dot;  // unit vectors
  };
  const auto a = fake_embedding("The Cat sat on the mat");
  EXPECT_EQ(a, fake_embedding("the cat sat on the mat!"));  // case and punctuation ignored
  EXPECT_NEAR(cosine(a, a), 1.0, 1e-6);
  EXPECT_EQ(fake_embedding(""), (std::vector<float>{1, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(FakeUpstream, ModelsAndModerations) {
  FakeUpstream upstream;
  Client client(upstream.port());
  auto models = client.request(make_request(http::verb::get, "/v1/models"));
  const Json m = Json::parse(models.body());
  EXPECT_EQ(m["object"], "list");
  EXPECT_EQ(m["data"].size(), 2U);
  EXPECT_EQ(m["data"][0]["object"], "model");

  auto flagged = client.request(
      make_request(http::verb::post, "/v1/moderations", R"({"input":"I will kill the process"})"));
  Json f = Json::parse(flagged.body());
  ASSERT_EQ(f["results"].size(), 1U);
  EXPECT_EQ(f["results"][0]["flagged"], true);
  EXPECT_EQ(f["results"][0]["categories"]["violence"], true);
  EXPECT_TRUE(f["results"][0]["category_scores"]["violence"].is_number());

  auto clean = client.request(
      make_request(http::verb::post, "/v1/moderations", R"({"input":["hello","world"]})"));
  Json c = Json::parse(clean.body());
  ASSERT_EQ(c["results"].size(), 2U);
  EXPECT_EQ(c["results"][0]["flagged"], false);

  auto forced = client.request(make_request(http::verb::post, "/v1/moderations",
                                            R"({"input":"hello"})", {{"x-fake-flagged", "true"}}));
  EXPECT_EQ(Json::parse(forced.body())["results"][0]["flagged"], true);
}

TEST(FakeUpstream, EchoesHeadersAndBody) {
  FakeUpstream upstream;
  Client client(upstream.port());
  auto res = client.request(make_request(http::verb::put, "/anything/else?q=1", "payload",
                                         {{"X-Custom-Thing", "abc"}, {"api-key", "k1"}}));
  ASSERT_EQ(res.result(), http::status::ok);
  const Json j = Json::parse(res.body());
  EXPECT_EQ(j["method"], "PUT");
  EXPECT_EQ(j["target"], "/anything/else?q=1");
  EXPECT_EQ(j["headers"]["x-custom-thing"], "abc");
  EXPECT_EQ(j["headers"]["api-key"], "k1");
  EXPECT_EQ(j["body_size"], 7);
  EXPECT_EQ(j["body_sha256"], sha256_hex("payload"));

  const auto seen = upstream.requests();
  ASSERT_EQ(seen.size(), 1U);
  // Names lower-cased, in the order they were sent.
  std::vector<std::string> names;
  for (const auto& h : seen[0].headers) names.push_back(h.first);
  const std::vector<std::string> expected = {"host", "x-custom-thing", "api-key", "content-type",
                                             "content-length"};
  EXPECT_EQ(names, expected);
}

TEST(FakeUpstream, LargeChunkedBodyIsCountedAndHashed) {
  FakeUpstream upstream;
  Client client(upstream.port());
  std::string data(5 * 1024 * 1024, '\0');
  std::uint32_t x = 12345;
  for (char& c : data) {
    x = x * 1664525U + 1013904223U;
    c = static_cast<char>(x >> 24);
  }
  http::request<http::empty_body> req{http::verb::post, "/upload", 11};
  req.set(http::field::host, "127.0.0.1");
  req.chunked(true);
  http::request_serializer<http::empty_body> sr{req};
  http::write_header(client.stream(), sr);
  for (std::size_t off = 0; off < data.size(); off += 100000) {
    const std::size_t len = std::min<std::size_t>(100000, data.size() - off);
    asio::write(client.stream(), http::make_chunk(asio::buffer(data.data() + off, len)));
  }
  asio::write(client.stream(), http::make_chunk_last());
  auto res = client.read_response();
  ASSERT_EQ(res.result(), http::status::ok);
  const Json j = Json::parse(res.body());
  EXPECT_EQ(j["body_size"], data.size());
  EXPECT_EQ(j["body_sha256"], sha256_hex(data));

  const auto seen = upstream.requests();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_TRUE(seen[0].body_was_chunked);
  EXPECT_EQ(seen[0].body_size, data.size());
  EXPECT_EQ(seen[0].body_sha256_hex, sha256_hex(data));
  EXPECT_EQ(seen[0].body_prefix, data.substr(0, 64 * 1024));
}

TEST(FakeUpstream, BodyOverLimitIsRejected) {
  FakeUpstream upstream;
  Client client(upstream.port());
  http::request<http::empty_body> req{http::verb::post, "/upload", 11};
  req.set(http::field::host, "127.0.0.1");
  req.content_length(64ULL * 1024 * 1024 + 1);
  http::request_serializer<http::empty_body> sr{req};
  http::write_header(client.stream(), sr);
  auto res = client.read_response();
  EXPECT_EQ(res.result(), http::status::payload_too_large);
}

TEST(FakeUpstream, ExpectContinueIsAnswered) {
  FakeUpstream upstream;
  Client client(upstream.port());
  auto req = make_request(http::verb::post, "/echo", "abc");
  req.set(http::field::expect, "100-continue");
  http::request_serializer<http::string_body> sr{req};
  http::write_header(client.stream(), sr);
  http::response<http::empty_body> cont;
  http::read(client.stream(), client.buffer(), cont);
  EXPECT_EQ(cont.result(), http::status::continue_);
  asio::write(client.stream(), asio::buffer(req.body()));
  auto res = client.read_response();
  EXPECT_EQ(Json::parse(res.body())["body_size"], 3);
}

TEST(FakeUpstream, StatusOverrideWithRetryAfterKeepsConnection) {
  FakeUpstream upstream;
  Client client(upstream.port());
  auto res = client.request(make_request(http::verb::post, "/v1/chat/completions", chat_body(true),
                                         {{"x-fake-status", "429"}, {"x-fake-retry-after", "7"}}));
  EXPECT_EQ(res.result_int(), 429U);
  EXPECT_EQ(res[http::field::retry_after], "7");
  const Json j = Json::parse(res.body());
  EXPECT_EQ(j["error"]["message"], "fake error 429");
  EXPECT_EQ(j["error"]["type"], "fake_error");
  EXPECT_EQ(j["error"]["code"], 429);

  auto res500 =
      client.request(make_request(http::verb::get, "/v1/models", {}, {{"x-fake-status", "503"}}));
  EXPECT_EQ(res500.result_int(), 503U);
  EXPECT_EQ(upstream.connections_accepted(), 1U);
}

TEST(FakeUpstream, DelayPostponesTheResponse) {
  FakeUpstream upstream;
  Client client(upstream.port());
  const auto start = Clock::now();
  auto res =
      client.request(make_request(http::verb::get, "/v1/models", {}, {{"x-fake-delay-ms", "150"}}));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_GE(Clock::now() - start, 150ms);  // a lower bound: timers never fire early
}

TEST(FakeUpstream, CloseImmediately) {
  FakeUpstream upstream;
  Client client(upstream.port());
  client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(false),
                           {{"x-fake-close", "immediately"}}));
  http::response<http::string_body> res;
  boost::system::error_code ec;
  http::read(client.stream(), client.buffer(), res, ec);
  EXPECT_TRUE(ec == http::error::end_of_stream || ec == asio::error::connection_reset)
      << ec.message();
  EXPECT_EQ(upstream.request_count(), 1U);
  EXPECT_EQ(upstream.aborted_responses(), 0U);  // the fake closed on purpose
}

TEST(FakeUpstream, CloseAfterHeaders) {
  FakeUpstream upstream;
  Client client(upstream.port());
  client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(false),
                           {{"x-fake-close", "after-headers"}}));
  http::response_parser<http::string_body> parser;
  http::read_header(client.stream(), client.buffer(), parser);
  EXPECT_EQ(parser.get().result(), http::status::ok);
  ASSERT_TRUE(parser.content_length().has_value());
  EXPECT_GT(*parser.content_length(), 0U);
  boost::system::error_code ec;
  http::read(client.stream(), client.buffer(), parser, ec);
  EXPECT_TRUE(ec == http::error::partial_message || ec == asio::error::connection_reset)
      << ec.message();
  EXPECT_EQ(upstream.aborted_responses(), 0U);
}

TEST(FakeUpstream, HangThenClientCloseCountsAbortedResponse) {
  FakeUpstream upstream;
  Client client(upstream.port());
  client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(false),
                           {{"x-fake-hang", "1"}}));
  ASSERT_TRUE(wait_until([&] { return upstream.request_count() == 1; }, 10s));
  EXPECT_EQ(upstream.open_connections(), 1U);
  EXPECT_EQ(upstream.aborted_responses(), 0U);
  client.socket().close();
  EXPECT_TRUE(wait_until([&] { return upstream.aborted_responses() == 1; }, 10s));
  EXPECT_TRUE(wait_until([&] { return upstream.open_connections() == 0; }, 10s));
}

TEST(FakeUpstream, ClientCloseDuringDelayCountsAbortedResponse) {
  FakeUpstream upstream;
  Client client(upstream.port());
  client.send(make_request(http::verb::get, "/v1/models", {}, {{"x-fake-delay-ms", "60000"}}));
  ASSERT_TRUE(wait_until([&] { return upstream.request_count() == 1; }, 10s));
  client.socket().close();
  EXPECT_TRUE(wait_until([&] { return upstream.aborted_responses() == 1; }, 10s));
}

TEST(FakeUpstream, ClientCloseMidStreamCountsAbortedResponse) {
  FakeUpstream upstream;
  Client client(upstream.port());
  client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(true),
                           {{"x-fake-chunk-interval-ms", "60000"}}));
  http::response_parser<http::string_body> parser;
  http::read_header(client.stream(), client.buffer(), parser);
  EXPECT_EQ(parser.get().result(), http::status::ok);
  client.socket().close();
  EXPECT_TRUE(wait_until([&] { return upstream.aborted_responses() == 1; }, 10s));
  EXPECT_TRUE(wait_until([&] { return upstream.open_connections() == 0; }, 10s));
}

TEST(FakeUpstream, ClientCloseMidUploadCountsAbortedResponse) {
  FakeUpstream upstream;
  Client client(upstream.port());
  http::request<http::empty_body> req{http::verb::post, "/upload", 11};
  req.set(http::field::host, "127.0.0.1");
  req.content_length(1000000);
  http::request_serializer<http::empty_body> sr{req};
  http::write_header(client.stream(), sr);
  asio::write(client.stream(), asio::buffer(std::string(1000, 'a')));
  ASSERT_TRUE(wait_until([&] { return upstream.open_connections() == 1; }, 10s));
  client.socket().close();
  EXPECT_TRUE(wait_until([&] { return upstream.aborted_responses() == 1; }, 10s));
  EXPECT_EQ(upstream.request_count(), 0U);  // never completed
}

TEST(FakeUpstream, ConnectionCloseRequestEndsConnection) {
  FakeUpstream upstream;
  Client client(upstream.port());
  auto req = make_request(http::verb::get, "/v1/models");
  req.keep_alive(false);
  auto res = client.request(req);
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(server_closed(client.socket()));
  EXPECT_EQ(upstream.aborted_responses(), 0U);
}

TEST(FakeUpstream, DestructorStopsWithHangingConnections) {
  auto upstream = std::make_unique<FakeUpstream>(FakeUpstreamOptions{.threads = 2});
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<Client>(upstream->port()));
    clients.back()->send(make_request(http::verb::get, "/x", {}, {{"x-fake-hang", "1"}}));
  }
  // One more that is mid-delay and one that is idle.
  clients.push_back(std::make_unique<Client>(upstream->port()));
  clients.back()->send(make_request(http::verb::get, "/x", {}, {{"x-fake-delay-ms", "60000"}}));
  clients.push_back(std::make_unique<Client>(upstream->port()));
  ASSERT_TRUE(wait_until([&] { return upstream->request_count() == 4; }, 10s));
  ASSERT_TRUE(wait_until([&] { return upstream->open_connections() == 5; }, 10s));
  const auto start = Clock::now();
  upstream.reset();
  // Generous: a stop that waits for its 5 s fallback would mean the sockets were not closed.
  EXPECT_LT(Clock::now() - start, 4s);
  for (auto& c : clients) EXPECT_TRUE(server_closed(c->socket()));
}

TEST(FakeUpstream, ResetStats) {
  FakeUpstream upstream;
  Client client(upstream.port());
  client.request(make_request(http::verb::get, "/v1/models"));
  EXPECT_EQ(upstream.request_count(), 1U);
  upstream.reset_stats();
  EXPECT_EQ(upstream.request_count(), 0U);
  EXPECT_EQ(upstream.connections_accepted(), 0U);
  EXPECT_TRUE(upstream.requests().empty());
  EXPECT_EQ(upstream.open_connections(), 1U);  // a gauge, not reset
  client.request(make_request(http::verb::get, "/v1/models"));
  EXPECT_EQ(upstream.request_count(), 1U);
}

TEST(FakeUpstream, ManyConcurrentClientsOnSeveralThreads) {
  FakeUpstream upstream(FakeUpstreamOptions{.threads = 4});
  constexpr int kClients = 32, kRequests = 20;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&] {
      Client client(upstream.port());
      for (int r = 0; r < kRequests; ++r) {
        const bool stream = r % 2 == 1;
        client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(stream)));
        if (stream) {
          if (read_sse(client.stream(), client.buffer()).events.size() == 7) ++ok;
        } else if (client.read_response().result() == http::status::ok) {
          ++ok;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients * kRequests);
  EXPECT_EQ(upstream.request_count(), std::size_t{kClients * kRequests});
  EXPECT_EQ(upstream.connections_accepted(), std::size_t{kClients});
  EXPECT_EQ(upstream.aborted_responses(), 0U);
}

TEST(FakeUpstream, NotRecordingStillCounts) {
  FakeUpstream upstream(FakeUpstreamOptions{.record_requests = false});
  Client client(upstream.port());
  auto res = client.request(make_request(http::verb::post, "/echo", "abc"));
  EXPECT_EQ(Json::parse(res.body())["body_sha256"], sha256_hex("abc"));
  EXPECT_EQ(upstream.request_count(), 1U);
  EXPECT_TRUE(upstream.requests().empty());
}

TEST(FakeUpstream, BindFailureThrows) {
  FakeUpstream first;
  FakeUpstreamOptions opts;
  opts.port = first.port();
  // reuse_address does not allow two listeners on one port.
  EXPECT_ANY_THROW(FakeUpstream second(opts));
}

// ---------------------------------------------------------------------------------------------
// TLS

TEST(FakeUpstreamTls, ServesHttpsVerifiedAgainstSelfSignedCert) {
  const TestCert cert = make_self_signed_cert();
  FakeUpstreamOptions opts;
  opts.tls = true;
  opts.cert_pem = cert.cert_pem;
  opts.key_pem = cert.key_pem;
  FakeUpstream upstream(opts);
  EXPECT_EQ(upstream.base_url(), "https://127.0.0.1:" + std::to_string(upstream.port()));

  ssl::context ctx = client_context(cert.cert_pem);
  TlsClient client(upstream.port(), ctx);
  auto res =
      client.request(make_request(http::verb::post, "/v1/chat/completions", chat_body(false)));
  ASSERT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(Json::parse(res.body())["model"], "gpt-test");

  // Streaming and pacing over TLS, on the same kept-alive connection.
  client.send(make_request(http::verb::post, "/v1/chat/completions", chat_body(true, true),
                           {{"x-fake-chunk-interval-ms", "20"}}));
  const SseResponse sse = read_sse(client.stream(), client.buffer());
  ASSERT_EQ(sse.events.size(), 8U);
  EXPECT_EQ(sse.events.back(), "[DONE]");
  auto res2 = client.request(make_request(http::verb::get, "/v1/models"));
  EXPECT_EQ(res2.result(), http::status::ok);
  EXPECT_EQ(upstream.connections_accepted(), 1U);
}

TEST(FakeUpstreamTls, HangThenClientCloseCountsAbortedResponse) {
  const TestCert cert = make_self_signed_cert();
  FakeUpstreamOptions opts{.tls = true, .cert_pem = cert.cert_pem, .key_pem = cert.key_pem};
  FakeUpstream upstream(opts);
  ssl::context ctx = client_context(cert.cert_pem);
  TlsClient client(upstream.port(), ctx);
  client.send(make_request(http::verb::get, "/v1/models", {}, {{"x-fake-hang", "1"}}));
  ASSERT_TRUE(wait_until([&] { return upstream.request_count() == 1; }, 10s));
  client.socket().close();
  EXPECT_TRUE(wait_until([&] { return upstream.aborted_responses() == 1; }, 10s));
}

TEST(FakeUpstreamTls, ClientRejectsCertFromAnotherCa) {
  const TestCert served = make_self_signed_cert();
  const TestCert other = make_self_signed_cert();
  FakeUpstreamOptions opts{.tls = true, .cert_pem = served.cert_pem, .key_pem = served.key_pem};
  FakeUpstream upstream(opts);
  ssl::context ctx = client_context(other.cert_pem);
  EXPECT_THROW(TlsClient(upstream.port(), ctx), boost::system::system_error);
}

TEST(FakeUpstreamTls, ClientRejectsWrongHostName) {
  const TestCert cert = make_self_signed_cert({"example.test"}, {});
  FakeUpstreamOptions opts{.tls = true, .cert_pem = cert.cert_pem, .key_pem = cert.key_pem};
  FakeUpstream upstream(opts);
  ssl::context ctx = client_context(cert.cert_pem);
  EXPECT_THROW(TlsClient(upstream.port(), ctx), boost::system::system_error);  // wants "localhost"
}

TEST(TestCert, PemShapeAndFileWrite) {
  const TestCert cert = make_self_signed_cert({"localhost", "api.test"}, {"127.0.0.1", "::1"});
  EXPECT_TRUE(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
  EXPECT_TRUE(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
  // The context accepts the pair, as the gateway's TLS listener will.
  ssl::context server(ssl::context::tls_server);
  server.use_certificate_chain(asio::buffer(cert.cert_pem));
  server.use_private_key(asio::buffer(cert.key_pem), ssl::context::pem);

  TempDir dir;
  write_file(dir.path() / "cert.pem", cert.cert_pem);
  std::ifstream in(dir.path() / "cert.pem", std::ios::binary);
  const std::string back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(back, cert.cert_pem);
  EXPECT_THROW(write_file(dir.path() / "missing" / "x.pem", "x"), std::runtime_error);
}

TEST(TempDirTest, CreatedUniqueAndRemoved) {
  std::filesystem::path kept;
  {
    TempDir a, b;
    EXPECT_NE(a.path(), b.path());
    EXPECT_TRUE(std::filesystem::is_directory(a.path()));
    EXPECT_EQ(a.path().parent_path(), std::filesystem::temp_directory_path());
    std::filesystem::create_directories(a.path() / "x" / "y");
    write_file(a.path() / "x" / "y" / "f.txt", "data");
    kept = a.path();
  }
  EXPECT_FALSE(std::filesystem::exists(kept));
}

}  // namespace
}  // namespace arbiter::testing
