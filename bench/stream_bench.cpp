// Streaming benchmark (DESIGN.md §9: added time to first token p99 <= 200 µs;
// <= 32 KiB resident per open streaming request).
//
//   stream_bench ttft --target NAME=HOST:PORT ... [--requests N] [--key K]
//       Sends N streaming chat completions, one at a time, to each target in
//       turn (interleaved, so drift affects all alike) and measures the time
//       from the request's last byte to the first SSE `data:` byte. The first
//       target is the baseline (the direct path): the others are reported
//       with their added p50/p99 against it.
//   stream_bench hold --target HOST:PORT --pid PID [--streams N] [--key K]
//                     [--chunks C] [--interval-ms I]
//       Opens N streams at once through the target, each paced by the fake
//       upstream (C chunks, I ms apart), waits until every one has received
//       its first chunk, samples the resident memory of PID (VmRSS) while all
//       are open, reads them to the end, and reports KiB per open stream.
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
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Target {
  std::string name;
  std::string host;
  std::string port;
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
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return req;
}

// One streaming call on its own connection: the TTFT (request written →
// first "data:" byte) and whether the stream ended properly ([DONE] seen).
struct StreamResult {
  bool ok = false;
  double ttft_us = 0;
};

asio::awaitable<StreamResult> one_stream(tcp::endpoint ep, std::string request,
                                         std::function<void()> on_first = {}) {
  StreamResult out;
  auto ex = co_await asio::this_coro::executor;
  tcp::socket sock(ex);
  boost::system::error_code ec;
  co_await sock.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return out;
  sock.set_option(tcp::no_delay(true), ec);
  co_await asio::async_write(sock, asio::buffer(request), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return out;
  const auto sent = Clock::now();
  std::string seen;
  char buf[4096];
  bool first = false;
  for (;;) {
    const std::size_t n =
        co_await sock.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (n > 0) {
      seen.append(buf, n);
      if (!first && seen.find("data:") != std::string::npos) {
        first = true;
        out.ttft_us = std::chrono::duration<double, std::micro>(Clock::now() - sent).count();
        if (on_first) on_first();
      }
      if (seen.find("[DONE]") != std::string::npos) {
        out.ok = first;
        break;
      }
      if (seen.size() > (1u << 20)) break;
    }
    if (ec) break;
  }
  sock.close(ec);
  co_return out;
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

int run_ttft(const std::vector<Target>& targets, int requests, const std::string& key) {
  asio::io_context ioc;
  std::vector<tcp::endpoint> eps;
  for (const auto& t : targets) eps.push_back(resolve(ioc, t));
  std::vector<std::vector<double>> ttft(targets.size());
  int failures = 0;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < requests; ++i) {
          for (std::size_t t = 0; t < targets.size(); ++t) {
            auto r = co_await one_stream(eps[t], stream_request(targets[t], key, 2, 0));
            if (!r.ok) {
              ++failures;
              continue;
            }
            if (i >= requests / 10) ttft[t].push_back(r.ttft_us);  // the first 10% warm up
          }
        }
      },
      asio::detached);
  ioc.run();
  const double base50 = percentile(ttft[0], 50), base99 = percentile(ttft[0], 99);
  for (std::size_t t = 0; t < targets.size(); ++t) {
    const double p50 = percentile(ttft[t], 50), p99 = percentile(ttft[t], 99);
    std::printf("STREAM ttft target=%s samples=%zu p50_us=%.0f p99_us=%.0f added_p50_us=%.0f added_p99_us=%.0f\n",
                targets[t].name.c_str(), ttft[t].size(), p50, p99, p50 - base50, p99 - base99);
  }
  std::printf("STREAM ttft_failures=%d\n", failures);
  return failures == 0 ? 0 : 1;
}

int run_hold(const Target& target, int pid, int streams, const std::string& key, int chunks, int interval_ms) {
  asio::io_context ioc;
  const auto ep = resolve(ioc, target);
  const long before = rss_kib(pid);
  int started = 0, ok = 0;
  long peak = before;
  asio::steady_timer all_open(ioc, Clock::time_point::max());
  for (int i = 0; i < streams; ++i) {
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          auto r = co_await one_stream(ep, stream_request(target, key, chunks, interval_ms), [&] {
            if (++started == streams) all_open.cancel();
          });
          if (r.ok) ++ok;
        },
        asio::detached);
  }
  // Sample while every stream is open (after each got its first chunk).
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        boost::system::error_code ec;
        co_await all_open.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        for (int i = 0; i < 5; ++i) {
          peak = std::max(peak, rss_kib(pid));
          asio::steady_timer t(ioc, std::chrono::milliseconds(interval_ms / 4 + 1));
          co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
      },
      asio::detached);
  ioc.run();
  const long after = rss_kib(pid);
  std::printf(
      "STREAM hold streams=%d completed=%d rss_before_kib=%ld rss_open_kib=%ld rss_after_kib=%ld per_stream_kib=%.1f\n",
      streams, ok, before, peak, after, static_cast<double>(peak - before) / std::max(1, streams));
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
  int requests = 2000, streams = 1000, chunks = 20, interval_ms = 200, pid = 0;
  std::string key = "bench-key";
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--target") targets.push_back(parse_target(value));
    else if (flag == "--requests") requests = std::atoi(value.c_str());
    else if (flag == "--streams") streams = std::atoi(value.c_str());
    else if (flag == "--chunks") chunks = std::atoi(value.c_str());
    else if (flag == "--interval-ms") interval_ms = std::atoi(value.c_str());
    else if (flag == "--pid") pid = std::atoi(value.c_str());
    else if (flag == "--key") key = value;
    else {
      std::fprintf(stderr, "stream_bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (targets.empty()) {
    std::fprintf(stderr, "stream_bench: at least one --target is required\n");
    return 2;
  }
  if (mode == "ttft") return run_ttft(targets, std::max(requests, 10), key);
  if (mode == "hold" && pid > 0) return run_hold(targets[0], pid, streams, key, chunks, interval_ms);
  std::fprintf(stderr, "stream_bench: mode must be ttft, or hold with --pid\n");
  return 2;
}
