// Streaming benchmark (DESIGN.md §9: added time to first token p99 <= 200 µs;
// <= 32 KiB resident per open streaming request).
//
//   stream_bench ttft --target NAME=HOST:PORT ... [--requests N] [--key K]
//                     [--connections new|keepalive|both] [--header NAME=Header: value ...]
//       Sends N streaming chat completions, one at a time, to each target in
//       turn (interleaved, so drift affects all alike) and measures the time
//       from the request's last byte to the first SSE `data:` byte. The first
//       target is the baseline (the direct path): the others are reported
//       with their added p50/p99 against it.
//       --connections new (default): a new TCP connection per stream, closed
//       after it. keepalive: one connection per target, reused for every stream
//       (as the OpenAI SDKs do; a new one only when the server closed it).
//       both: each round does one of each, and both are reported, labelled.
//   stream_bench hold --target HOST:PORT --pid PID [--streams N] [--key K]
//                     [--chunks C] [--interval-ms I]
//       Opens N streams through the target in two halves, each stream paced by
//       the fake upstream (C chunks, I ms apart): the first half, then, once
//       every one of them has its first chunk, the second while the first is
//       still open. Samples the resident memory of PID (VmRSS) with each half
//       open, reads them to the end, and reports KiB per open stream: the
//       second half's growth per stream (per_stream_kib), and the first's
//       (first_streams_kib), which includes what a process grows once. The
//       streams must outlast both halves' opening (C x I well over a second).
//
//   --header NAME=Header: value   adds a request header for target NAME only
//       (repeatable), e.g. Portkey's x-portkey-provider / x-portkey-custom-host.
//
// Output: one line per figure, `STREAM key=value ...`, for bench/run.sh.
// Exit status 1 when any stream failed.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Target {
  std::string name;
  std::string host;
  std::string port;
  std::vector<std::string> headers;  // extra "Name: value" lines for this target only
};

Target parse_target(const std::string& spec) {
  Target t;
  std::string addr = spec;
  if (auto eq = spec.find('='); eq != std::string::npos) {
    t.name = spec.substr(0, eq);
    addr = spec.substr(eq + 1);
  }
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "stream_bench: target '%s' is not HOST:PORT\n", spec.c_str());
    std::exit(2);
  }
  t.host = addr.substr(0, colon);
  t.port = addr.substr(colon + 1);
  if (t.name.empty()) t.name = addr;
  return t;
}

std::string stream_request(const Target& t, const std::string& key, int chunks, int interval_ms) {
  const std::string body =
      R"({"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello."}]})";
  std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: " + t.host + ":" + t.port +
                    "\r\nContent-Type: application/json\r\nHelicone-Auth: Bearer " + key +
                    "\r\nx-fake-chunks: " + std::to_string(chunks) + "\r\n";
  if (interval_ms > 0) req += "x-fake-chunk-interval-ms: " + std::to_string(interval_ms) + "\r\n";
  for (const auto& h : t.headers) req += h + "\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return req;
}

// One streaming call: the TTFT (request written → first "data:" byte of the
// de-chunked body) and whether the stream ended properly (200, [DONE] seen,
// message complete).
struct StreamResult {
  bool ok = false;
  bool reusable = false;  // the server keeps the connection open
  double ttft_us = 0;
};

// One request/response on an open connection; `buf` carries bytes between
// responses on a kept-alive connection. The socket and buffer are the
// caller's, which awaits this coroutine to its end.
asio::awaitable<StreamResult> exchange(tcp::socket& sock, beast::flat_buffer& buf, std::string request,
                                       std::function<void()> on_first) {
  StreamResult out;
  boost::system::error_code ec;
  co_await asio::async_write(sock, asio::buffer(request), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return out;
  const auto sent = Clock::now();
  http::response_parser<http::string_body> parser;
  parser.body_limit(1u << 20);
  parser.eager(true);
  bool first = false;
  while (!parser.is_done()) {
    co_await http::async_read_some(sock, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return out;
    if (!first && parser.get().body().find("data:") != std::string::npos) {
      first = true;
      out.ttft_us = std::chrono::duration<double, std::micro>(Clock::now() - sent).count();
      if (on_first) on_first();
    }
  }
  const auto& res = parser.get();
  out.ok = first && res.result_int() == 200 && res.body().find("[DONE]") != std::string::npos;
  out.reusable = res.keep_alive();
  co_return out;
}

// A stream on a connection of its own, closed afterwards.
asio::awaitable<StreamResult> one_stream(tcp::endpoint ep, std::string request,
                                         std::function<void()> on_first = {}) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket sock(ex);
  boost::system::error_code ec;
  co_await sock.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return StreamResult{};
  sock.set_option(tcp::no_delay(true), ec);
  beast::flat_buffer buf;
  auto r = co_await exchange(sock, buf, std::move(request), std::move(on_first));
  sock.close(ec);
  co_return r;
}

// A connection kept open across streams (connected lazily, again after the
// server closed it or an exchange failed).
struct KeptConnection {
  explicit KeptConnection(asio::any_io_executor ex) : sock(std::move(ex)) {}
  tcp::socket sock;
  beast::flat_buffer buf;
  bool open = false;
  int connects = 0;
};

// `c` is the caller's, which awaits this coroutine to its end.
asio::awaitable<StreamResult> kept_stream(KeptConnection& c, tcp::endpoint ep, std::string request) {
  boost::system::error_code ec;
  if (!c.open) {
    c.sock = tcp::socket(co_await asio::this_coro::executor);
    c.buf.clear();
    co_await c.sock.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return StreamResult{};
    c.sock.set_option(tcp::no_delay(true), ec);
    c.open = true;
    ++c.connects;
  }
  auto r = co_await exchange(c.sock, c.buf, std::move(request), {});
  if (!r.ok || !r.reusable) {
    c.sock.close(ec);
    c.open = false;
  }
  co_return r;
}

tcp::endpoint resolve(asio::io_context& ioc, const Target& t) {
  tcp::resolver r(ioc);
  return *r.resolve(t.host, t.port).begin();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

long rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

int run_ttft(const std::vector<Target>& targets, int requests, const std::string& key, bool use_new,
             bool use_keepalive) {
  asio::io_context ioc;
  std::vector<tcp::endpoint> eps;
  for (const auto& t : targets) eps.push_back(resolve(ioc, t));
  struct Series {
    std::vector<double> ttft;
    int failures = 0;
  };
  std::vector<Series> fresh(targets.size()), kept(targets.size());
  std::vector<std::unique_ptr<KeptConnection>> conns;
  for (std::size_t t = 0; t < targets.size(); ++t) conns.push_back(std::make_unique<KeptConnection>(ioc.get_executor()));
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < requests; ++i) {
          const bool record = i >= requests / 10;  // the first 10% warm up
          for (std::size_t t = 0; t < targets.size(); ++t) {
            const std::string req = stream_request(targets[t], key, 2, 0);
            if (use_new) {
              auto r = co_await one_stream(eps[t], req);
              if (!r.ok) ++fresh[t].failures;
              else if (record) fresh[t].ttft.push_back(r.ttft_us);
            }
            if (use_keepalive) {
              auto r = co_await kept_stream(*conns[t], eps[t], req);
              if (!r.ok) ++kept[t].failures;
              else if (record) kept[t].ttft.push_back(r.ttft_us);
            }
          }
        }
        boost::system::error_code ec;
        for (auto& c : conns) c->sock.close(ec);
      },
      asio::detached);
  ioc.run();
  int failures = 0;
  auto report = [&](const char* mode, const std::vector<Series>& series) {
    const double base50 = percentile(series[0].ttft, 50), base99 = percentile(series[0].ttft, 99);
    for (std::size_t t = 0; t < targets.size(); ++t) {
      const double p50 = percentile(series[t].ttft, 50), p99 = percentile(series[t].ttft, 99);
      std::printf(
          "STREAM ttft conn=%s target=%s samples=%zu failures=%d connects=%d p50_us=%.0f p99_us=%.0f "
          "added_p50_us=%.0f added_p99_us=%.0f\n",
          mode, targets[t].name.c_str(), series[t].ttft.size(), series[t].failures,
          std::string_view(mode) == "keepalive" ? conns[t]->connects : requests,  // new: one per stream
          p50, p99, p50 - base50, p99 - base99);
      failures += series[t].failures;
    }
  };
  if (use_new) report("new", fresh);
  if (use_keepalive) report("keepalive", kept);
  std::printf("STREAM ttft_failures=%d\n", failures);
  return failures == 0 ? 0 : 1;
}

int run_hold(const Target& target, int pid, int streams, const std::string& key, int chunks, int interval_ms) {
  asio::io_context ioc;
  const auto ep = resolve(ioc, target);
  const long before = rss_kib(pid);
  // Two halves: the second opens while the first is still open. What the
  // first streams of a process grow once (arenas, thread caches, the log's
  // memtables) lands in the first half; the second half's growth is what
  // each further open stream costs, and malloc's free pool (a process that
  // served other calls first holds plenty) cannot hide it either.
  const int first_half = streams / 2;
  int settled = 0, ok = 0;
  long half_peak = before, peak = before;
  asio::steady_timer half_open(ioc, Clock::time_point::max()), all_open(ioc, Clock::time_point::max());
  auto open = [&](int n) {
    for (int i = 0; i < n; ++i) {
      asio::co_spawn(
          ioc,
          [&]() -> asio::awaitable<void> {
            bool got_first = false;
            auto settle = [&] {
              ++settled;
              if (settled == first_half) half_open.cancel();
              if (settled == streams) all_open.cancel();
            };
            auto r = co_await one_stream(ep, stream_request(target, key, chunks, interval_ms), [&] {
              got_first = true;
              settle();
            });
            if (r.ok) ++ok;
            // A stream that failed before its first chunk will never open: don't wait for it.
            if (!got_first) settle();
          },
          asio::detached);
    }
  };
  auto sample = [&](long& into) -> asio::awaitable<void> {
    boost::system::error_code ec;
    for (int i = 0; i < 3; ++i) {
      into = std::max(into, rss_kib(pid));
      asio::steady_timer t(ioc, std::chrono::milliseconds(interval_ms / 4 + 1));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  };
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        boost::system::error_code ec;
        if (first_half > 0) {
          open(first_half);
          co_await half_open.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          co_await sample(half_peak);
        }
        open(streams - first_half);
        co_await all_open.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        co_await sample(peak);
      },
      asio::detached);
  ioc.run();
  const long after = rss_kib(pid);
  const int second_half = streams - first_half;
  std::printf(
      "STREAM hold streams=%d completed=%d rss_before_kib=%ld rss_half_open_kib=%ld rss_open_kib=%ld "
      "rss_after_kib=%ld per_stream_kib=%.1f first_streams_kib=%.1f\n",
      streams, ok, before, half_peak, peak, after,
      static_cast<double>(peak - half_peak) / std::max(1, second_half),
      static_cast<double>(half_peak - before) / std::max(1, first_half));
  return ok == streams ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: stream_bench ttft|hold --target [NAME=]HOST:PORT ... (see the source)\n");
    return 2;
  }
  const std::string mode = argv[1];
  std::vector<Target> targets;
  std::vector<std::pair<std::string, std::string>> headers;  // target name → header line
  int requests = 2000, streams = 1000, chunks = 20, interval_ms = 200, pid = 0;
  std::string key = "bench-key", connections = "new";
  for (int i = 2; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "stream_bench: %s needs a value\n", flag.c_str());
      return 2;
    }
    const std::string value = argv[i + 1];
    if (flag == "--target") targets.push_back(parse_target(value));
    else if (flag == "--requests") requests = std::atoi(value.c_str());
    else if (flag == "--streams") streams = std::atoi(value.c_str());
    else if (flag == "--chunks") chunks = std::atoi(value.c_str());
    else if (flag == "--interval-ms") interval_ms = std::atoi(value.c_str());
    else if (flag == "--pid") pid = std::atoi(value.c_str());
    else if (flag == "--key") key = value;
    else if (flag == "--connections") connections = value;
    else if (flag == "--header") {
      const auto eq = value.find('=');
      if (eq == std::string::npos || value.find(':', eq) == std::string::npos) {
        std::fprintf(stderr, "stream_bench: --header takes NAME=Header: value\n");
        return 2;
      }
      headers.emplace_back(value.substr(0, eq), value.substr(eq + 1));
    } else {
      std::fprintf(stderr, "stream_bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (targets.empty()) {
    std::fprintf(stderr, "stream_bench: at least one --target is required\n");
    return 2;
  }
  for (const auto& [name, line] : headers) {
    auto it = std::find_if(targets.begin(), targets.end(), [&](const Target& t) { return t.name == name; });
    if (it == targets.end()) {
      std::fprintf(stderr, "stream_bench: --header names no target '%s'\n", name.c_str());
      return 2;
    }
    it->headers.push_back(line);
  }
  if (connections != "new" && connections != "keepalive" && connections != "both") {
    std::fprintf(stderr, "stream_bench: --connections takes new, keepalive or both\n");
    return 2;
  }
  if (streams < 1 || chunks < 1 || interval_ms < 0) {
    std::fprintf(stderr, "stream_bench: --streams and --chunks must be positive, --interval-ms not negative\n");
    return 2;
  }
  if (mode == "ttft")
    return run_ttft(targets, std::max(requests, 10), key, connections != "keepalive", connections != "new");
  if (mode == "hold" && pid > 0) return run_hold(targets[0], pid, streams, key, chunks, interval_ms);
  std::fprintf(stderr, "stream_bench: mode must be ttft, or hold with --pid\n");
  return 2;
}
