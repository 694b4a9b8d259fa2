// Raw bytes on the proxy listener → the real Beast request parser with the
// gateway's limits → the proxy's header processing (prepare_proxy_request:
// gateway key, Helicone-* headers, request id, upstream choice, header
// rewrite) → the bytes that would go upstream, or the gateway's own error
// response. Requests are parsed one after another while the bytes last
// (keep-alive / pipelining), each body relayed through a fixed buffer as the
// session does.
//
// Input: byte 0 picks the configuration (bit 0: keyed projects with an
// injected provider key vs. anonymous access with small limits; bit 1: the
// observer tees bodies); the rest is what the client sends.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/write.hpp>

#include "gateway/auth.hpp"
#include "gateway/config.hpp"
#include "gateway/proxy_request.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {
namespace http = boost::beast::http;
using arbiter::fuzz::check;
using namespace arbiter::gateway;

// Keys are fuzz-visible on purpose (see the dictionary): the fuzzer should
// reach the authorised path.
constexpr const char* kKeyedYaml = R"(
upstreams:
  - name: openai
    base_url: https://api.openai.example/v1
    api_key: sk-provider-secret
  - name: local
    base_url: http://127.0.0.1:9
projects:
  - name: alpha
    api_keys: [ "ak-alpha-1", "ak-alpha-2" ]
  - name: beta
    api_keys: [ "ak-beta" ]
)";

constexpr const char* kAnonymousYaml = R"(
server:
  allow_anonymous: true
  limits: { max_header_bytes: 2048, max_body_bytes: 4096 }
upstreams:
  - name: openai
    base_url: http://[::1]:8080/base/
  - name: other
    base_url: http://upstream.example
projects:
  - name: open
    api_keys: [ "ak-open" ]
)";

struct Setup {
  std::shared_ptr<const Config> config;
  const std::vector<UpstreamConfig>* upstreams = nullptr;  // what the session passes: Config::upstreams
};

const Setup& setup(bool anonymous) {
  static const std::array<Setup, 2> kSetups = [] {
    std::array<Setup, 2> s;
    s[0].config = load_config_from_string(kKeyedYaml, "proxy_request_fuzz.yaml");
    s[0].upstreams = &s[0].config->upstreams;
    s[1].config = load_config_from_string(kAnonymousYaml, "proxy_request_fuzz.yaml");
    s[1].upstreams = &s[1].config->upstreams;
    return s;
  }();
  return kSetups[anonymous ? 1 : 0];
}

bool starts_with_helicone(std::string_view name) {
  if (name.size() < 9) return false;
  for (std::size_t i = 0; i < 9; ++i) {
    if (std::tolower(static_cast<unsigned char>(name[i])) != "helicone-"[i]) return false;
  }
  return true;
}

void check_prepared(const Setup& s, const ProxyRequest& req, const PreparedProxyRequest& p, bool wants_bodies) {
  check(p.project != nullptr, "accepted without a project");
  check(p.upstream_index < s.upstreams->size(), "upstream index out of range");
  check(is_valid_request_id(p.ctx.request_id), "request id is not a UUID");
  for (char c : p.ctx.request_id) check(!std::isupper(static_cast<unsigned char>(c)), "request id not lower-case");
  // The head as the upstream parses it: one well-formed request head, the
  // whole string, with the method and the target after the base path.
  http::request_parser<http::empty_body> head_parser;
  head_parser.eager(false);
  head_parser.header_limit(1 << 20);
  boost::system::error_code ec;
  const std::size_t used = head_parser.put(boost::asio::buffer(p.upstream_head), ec);
  check(!ec, "the upstream head does not parse back");
  check(head_parser.is_header_done() && used == p.upstream_head.size(), "the upstream head is not one whole head");
  const auto& up = head_parser.get();
  check(up.method_string() == req.method_string(), "method changed on the way upstream");
  const UpstreamConfig& ucfg = (*s.upstreams)[p.upstream_index];
  check(up.target() == ucfg.base_path + std::string(req.target()), "target is not base path + client target");
  check(up.chunked() == req.chunked() && p.upstream_chunked == req.chunked(), "body framing changed");
  std::size_t hosts = 0;
  for (const auto& f : up) {
    check(!starts_with_helicone(f.name_string()), "helicone-* header forwarded upstream");
    if (f.name() == http::field::transfer_encoding) {
      // Only the gateway's own framing: the client's body was chunked.
      check(req.chunked() && f.value() == "chunked", "client Transfer-Encoding forwarded upstream");
    } else {
      check(!is_hop_by_hop(f.name()), "hop-by-hop header forwarded upstream");
    }
    check(f.name() != http::field::expect, "Expect forwarded upstream");
    if (f.name() == http::field::host) ++hosts;
    // An arbiter key never leaves the gateway.
    if (f.name() == http::field::authorization) {
      std::string_view v = f.value();
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      // The form the gateway reads keys in: "Bearer <key>".
      if (v.size() < 7 || !boost::beast::iequals(v.substr(0, 7), "bearer ")) continue;
      v.remove_prefix(7);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      check(find_project_by_key(*s.config, v) == nullptr, "arbiter key forwarded upstream in Authorization");
    }
  }
  check(hosts == 1, "upstream request must carry exactly one Host");
  if (wants_bodies) check(up[http::field::accept_encoding] == "identity", "identity encoding not requested");
}

// Serialises a message the way the session writes it (the "response out").
template <class Message>
std::size_t serialise(const Message& m) {
  std::ostringstream os;
  os << m;
  return os.str().size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool anonymous = (data[0] & 1) != 0;
  const bool wants_bodies = (data[0] & 2) != 0;
  const Setup& s = setup(anonymous);
  const LimitsConfig& limits = s.config->server.limits;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  std::array<char, 16 * 1024> relay{};
  for (int request = 0; request < 8 && !in.empty(); ++request) {
    http::request_parser<http::buffer_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
    parser.body_limit(limits.max_body_bytes);

    // Header: all remaining bytes are "in the buffer"; running out of them is
    // the client closing (Beast's read reports put_eof's error then).
    boost::system::error_code ec;
    while (!parser.is_header_done()) {
      const std::size_t n = parser.put(boost::asio::buffer(in.data(), in.size()), ec);
      in.remove_prefix(n);
      if (ec == http::error::need_more) {
        if (parser.got_some()) {
          ec = {};
          parser.put_eof(ec);
          if (!ec) ec = http::error::partial_message;
        } else {
          ec = http::error::end_of_stream;
        }
      }
      if (ec) break;
    }
    if (ec) {
      if (auto rejection = rejection_for_read_error(ec, limits)) {
        check(static_cast<int>(rejection->status) >= 400 && static_cast<int>(rejection->status) < 500,
              "read error answered with a non-4xx status");
        serialise(proxy_error_response(rejection->status, rejection->code, rejection->message, false));
      }
      return 0;
    }

    const auto& req = parser.get();
    const bool body_pending = !parser.is_done();
    PreparedProxyRequest prep = prepare_proxy_request(*s.config, *s.upstreams, req, wants_bodies);
    if (prep.rejection) {
      const int status = static_cast<int>(prep.rejection->status);
      check(status == 401 || status == 400, "header rejection is neither 401 nor 400");
      serialise(proxy_error_response(prep.rejection->status, prep.rejection->code, prep.rejection->message,
                                     !body_pending && req.keep_alive()));
      if (body_pending) return 0;  // the session closes: the body is never read
      continue;
    }
    check_prepared(s, req, prep, wants_bodies);

    // Body, relayed through the fixed buffer.
    while (!parser.is_done()) {
      parser.get().body().data = relay.data();
      parser.get().body().size = relay.size();
      const std::size_t n = parser.put(boost::asio::buffer(in.data(), in.size()), ec);
      in.remove_prefix(n);
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::need_more) {
        ec = {};
        parser.put_eof(ec);
        if (!ec) ec = http::error::partial_message;
      }
      if (ec) break;
      const std::size_t got = relay.size() - parser.get().body().size;
      check(got <= relay.size(), "relay buffer overrun");
      if (got == 0 && n == 0 && !parser.is_done()) break;  // no progress: the client would have to send more
    }
    if (ec) {
      if (ec == http::error::body_limit || !is_client_gone(ec)) {
        auto rejection = rejection_for_read_error(ec, limits);
        check(rejection.has_value(), "body error without an answer");
        serialise(proxy_error_response(rejection->status, rejection->code, rejection->message, false,
                                       &prep.ctx.request_id));
      }
      return 0;
    }
    if (!parser.is_done()) return 0;
    if (!req.keep_alive()) return 0;
  }
  return 0;
}
