// Floods against the real binary: 10,000 idle client connections held at
// once, and 1,000 streams from a slow upstream that must not starve other
// proxied calls or the API. Client sockets are raw (non-blocking, polled), so
// the test holds thousands of them from one thread. Each test prints the
// gateway's resident memory under the flood (figures in docs/reliability.md).
//
// Both raise RLIMIT_NOFILE to its hard limit (the child arbiter inherits it)
// and skip, saying why, only where the hard limit itself is too low.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "scoring/request_record.hpp"
#include "scoring/score.hpp"
#include "tests/support/gateway_harness.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;

// Raises the soft fd limit to `want` (or the hard limit); false if the hard limit is lower.
bool raise_fd_limit(rlim_t want) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < want) return false;
  if (lim.rlim_cur < want) {
    lim.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  }
  return true;
}

// Kilobytes of resident memory of a process (VmRSS), -1 if unknown.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// A non-blocking TCP connection to 127.0.0.1:port; closes on destruction.
class RawConn {
 public:
  explicit RawConn(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Blocking connect: on loopback it returns as soon as the kernel queued
    // the connection; the gateway accepts it afterwards.
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(RawConn&& o) noexcept : fd_(std::exchange(o.fd_, -1)), in_(std::move(o.in_)) {}
  RawConn& operator=(RawConn&&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  bool send_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads what is there. False on EOF or error (the peer closed or reset).
  bool read_available() {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      return false;
    }
  }
  const std::string& received() const { return in_; }

 private:
  int fd_ = -1;
  std::string in_;
};

// Polls every connection without waiting; returns the indexes that are
// readable or closed (for idle connections: an answer nobody asked for, or a
// close — both count as an error).
std::vector<std::size_t> disturbed(const std::vector<RawConn>& conns) {
  std::vector<pollfd> fds;
  fds.reserve(conns.size());
  for (const auto& c : conns) fds.push_back({c.fd(), POLLIN, 0});
  std::vector<std::size_t> out;
  if (::poll(fds.data(), fds.size(), 0) <= 0) return out;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents != 0) out.push_back(i);
  }
  return out;
}

std::string raw_request(const std::string& method, const std::string& target, const Headers& headers,
                        const std::string& body = {}) {
  std::string out = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST") out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "\r\n" + body;
  return out;
}

std::string chat(GatewayHarness& h) {
  auto c = h.proxy_client();
  auto res = c.request("POST", "/v1/chat/completions",
                       GatewayHarness::auth({{"Content-Type", "application/json"}}), GatewayHarness::chat_body());
  EXPECT_EQ(res.status, 200) << res.body;
  return res.header("helicone-id").value_or("");
}

TEST(Floods, TenThousandIdleConnectionsAreHeldWithoutErrors) {
  constexpr std::size_t kIdle = 10'000;
  if (!raise_fd_limit(kIdle + 1'000)) {
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit is below " << kIdle + 1'000 << " on this machine";
  }
  // Header and idle timeouts far beyond the test, so any close or answer on
  // an idle connection is an error, not a timeout doing its job.
  GatewayHarness h({.server_extra = "  limits:\n    max_connections: 10100\n    header_timeout_ms: 600000\n"
                                    "    idle_timeout_ms: 600000\n"});
  const long rss_before = rss_kib(h.process().pid());

  std::vector<RawConn> idle;
  idle.reserve(kIdle);
  for (std::size_t i = 0; i < kIdle; ++i) {
    RawConn c(h.proxy_port());
    ASSERT_TRUE(c.ok()) << "connect #" << i << ": " << std::strerror(errno);
    idle.push_back(std::move(c));
  }
  // Accepted by the gateway, not only queued by the kernel.
  ASSERT_TRUE(wait_until([&] { return h.metric("arbiter_proxy_connections_open") >= kIdle; }, 120s))
      << "open: " << h.metric("arbiter_proxy_connections_open");
  const long rss_idle = rss_kib(h.process().pid());

  // A normal call still succeeds next to them.
  const std::string id = chat(h);
  EXPECT_TRUE(scoring::valid_request_id(id));
  EXPECT_EQ(h.metric("arbiter_proxy_connections_rejected_total"), 0);

  // None of the idle ones was answered or closed.
  const auto bad = disturbed(idle);
  EXPECT_TRUE(bad.empty()) << bad.size() << " idle connections were answered or closed, first #" << bad.front();

  // And they are live sessions: a request on every 500th is served.
  const Headers hdrs = GatewayHarness::auth();
  for (std::size_t i = 0; i < kIdle; i += 500) {
    ASSERT_TRUE(idle[i].send_all(raw_request("GET", "/v1/models", hdrs))) << i;
  }
  for (std::size_t i = 0; i < kIdle; i += 500) {
    ASSERT_TRUE(wait_until(
        [&] {
          idle[i].read_available();
          return idle[i].received().find("\r\n\r\n") != std::string::npos;
        },
        30s))
        << "no answer on idle connection #" << i;
    EXPECT_EQ(idle[i].received().rfind("HTTP/1.1 200", 0), 0u) << idle[i].received().substr(0, 200);
  }
  std::printf("[floods] %zu idle connections: arbiter RSS %ld KiB before, %ld KiB held (%.1f KiB each)\n", kIdle,
              rss_before, rss_idle, static_cast<double>(rss_idle - rss_before) / static_cast<double>(kIdle));
  RecordProperty("idle_connections", static_cast<int>(kIdle));
  RecordProperty("rss_idle_kib", static_cast<int>(rss_idle));

  idle.clear();
  EXPECT_TRUE(wait_until([&] { return h.metric("arbiter_proxy_connections_open") <= 1; }, 60s));
  EXPECT_EQ(h.terminate(), 0);
}

TEST(Floods, AThousandSlowStreamsDoNotStarveOtherRequests) {
  constexpr std::size_t kStreams = 1'000;
  if (!raise_fd_limit(4 * kStreams + 1'000)) {
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit is below " << 4 * kStreams + 1'000 << " on this machine";
  }
  GatewayHarness h({.upstream = {.threads = 2}});
  const long rss_before = rss_kib(h.process().pid());

  // Each stream sends its first event at once and the next one only after ten
  // minutes: all of them are mid-stream for the whole test, by construction.
  const std::string body = GatewayHarness::chat_body(/*stream=*/true);
  std::vector<RawConn> streams;
  std::vector<std::string> ids;
  streams.reserve(kStreams);
  for (std::size_t i = 0; i < kStreams; ++i) {
    RawConn c(h.proxy_port());
    ASSERT_TRUE(c.ok()) << "connect #" << i << ": " << std::strerror(errno);
    ids.push_back(scoring::random_uuid());
    const Headers hdrs = GatewayHarness::auth({{"Content-Type", "application/json"},
                                               {"Helicone-Request-Id", ids.back()},
                                               {"x-fake-chunks", "3"},
                                               {"x-fake-chunk-interval-ms", "600000"}});
    ASSERT_TRUE(c.send_all(raw_request("POST", "/v1/chat/completions", hdrs, body)));
    streams.push_back(std::move(c));
  }
  // Every stream got its header and first event.
  std::size_t started = 0;
  std::vector<bool> seen(kStreams, false);
  ASSERT_TRUE(wait_until(
      [&] {
        for (std::size_t i = 0; i < kStreams; ++i) {
          if (seen[i]) continue;
          if (!streams[i].read_available()) return true;  // closed: reported below
          if (streams[i].received().find("data: ") != std::string::npos) {
            seen[i] = true;
            ++started;
          }
        }
        return started == kStreams;
      },
      120s));
  ASSERT_EQ(started, kStreams) << "streams closed before their first event";
  for (std::size_t i = 0; i < kStreams; i += 97) {
    EXPECT_EQ(streams[i].received().rfind("HTTP/1.1 200", 0), 0u) << streams[i].received().substr(0, 200);
  }
  const long rss_streams = rss_kib(h.process().pid());

  // While all of them are open: non-streaming calls, the API, a score on a
  // call still streaming.
  for (int i = 0; i < 20; ++i) chat(h);
  auto api = h.api_client();
  auto health = api.request("GET", "/healthz");
  EXPECT_EQ(health.status, 200) << health.body;
  const std::string score_body = R"({"scores": {"during_flood": 1}})";
  auto score = api.request("POST", "/v1/request/" + ids[kStreams / 2] + "/score",
                           {{"Authorization", std::string("Bearer ") + kKeyA}, {"Content-Type", "application/json"}},
                           score_body);
  EXPECT_EQ(score.status, 201) << score.body;
  EXPECT_GE(h.metric("arbiter_proxy_requests_in_flight"), kStreams);

  // The streams were not disturbed: none closed, none ended.
  for (std::size_t i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(streams[i].read_available()) << "stream #" << i << " was closed";
    EXPECT_EQ(streams[i].received().find("[DONE]"), std::string::npos) << "stream #" << i << " ended early";
  }
  std::printf("[floods] %zu open streams: arbiter RSS %ld KiB before, %ld KiB with them (%.1f KiB each)\n", kStreams,
              rss_before, rss_streams,
              static_cast<double>(rss_streams - rss_before) / static_cast<double>(kStreams));
  RecordProperty("rss_streams_kib", static_cast<int>(rss_streams));

  // Client aborts end them; the gateway cancels the upstream calls.
  streams.clear();
  EXPECT_TRUE(wait_until([&] { return h.metric("arbiter_proxy_requests_in_flight") == 0; }, 60s));
  EXPECT_TRUE(wait_until([&] { return h.upstream().aborted_responses() >= kStreams; }, 60s));
  EXPECT_EQ(h.terminate(), 0);
}

}  // namespace
}  // namespace arbiter::testing
