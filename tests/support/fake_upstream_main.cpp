// fake_upstream: the fake OpenAI upstream as a program, for e2e tests and bench/.
//
//   fake_upstream [--host 127.0.0.1] [--port 0] [--threads N] [--tls-cert FILE --tls-key FILE]
//
// Prints one line, {"event":"listening","address":"HOST:PORT"}, once it accepts connections, then
// serves until SIGTERM or SIGINT and exits 0. Requests are not recorded (memory stays flat under
// load) and nothing is logged per request.

#include <sys/resource.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "tests/support/fake_upstream.hpp"

namespace {

constexpr std::string_view kUsage =
    "usage: fake_upstream [--host 127.0.0.1] [--port 0] [--threads N] "
    "[--tls-cert FILE --tls-key FILE]\n";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

unsigned long parse_number(std::string_view flag, const std::string& value, unsigned long max) {
  std::size_t used = 0;
  const unsigned long n = std::stoul(value, &used);
  if (used != value.size() || n > max)
    throw std::runtime_error(std::string(flag) + ": bad value '" + value + "'");
  return n;
}

// Benchmarks open thousands of connections; the default soft limit (often 1024) is too low.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

int main(int argc, char** argv) {
  arbiter::testing::FakeUpstreamOptions opts;
  opts.record_requests = false;
  std::optional<std::string> cert_file, key_file;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view flag = argv[i];
      if (flag == "--help" || flag == "-h") {
        std::cout << kUsage;
        return 0;
      }
      if (flag != "--host" && flag != "--port" && flag != "--threads" && flag != "--tls-cert" &&
          flag != "--tls-key")
        throw std::runtime_error("unknown option " + std::string(flag));
      if (i + 1 >= argc) throw std::runtime_error(std::string(flag) + " needs a value");
      const std::string value = argv[++i];
      if (flag == "--host") {
        opts.host = value;
      } else if (flag == "--port") {
        opts.port = static_cast<uint16_t>(parse_number(flag, value, 65535));
      } else if (flag == "--threads") {
        opts.threads = static_cast<unsigned>(parse_number(flag, value, 1024));
      } else if (flag == "--tls-cert") {
        cert_file = value;
      } else {
        key_file = value;
      }
    }
    if (cert_file.has_value() != key_file.has_value())
      throw std::runtime_error("--tls-cert and --tls-key go together");
    if (cert_file) {
      opts.tls = true;
      opts.cert_pem = read_file(*cert_file);
      opts.key_pem = read_file(*key_file);
    }
  } catch (const std::exception& e) {
    std::cerr << "fake_upstream: " << e.what() << "\n" << kUsage;
    return 2;
  }

  try {
    raise_fd_limit();
    std::signal(SIGPIPE, SIG_IGN);
    // Registered before the server threads start, so no thread sees the default disposition.
    boost::asio::io_context signals_ioc;
    boost::asio::signal_set signals(signals_ioc, SIGINT, SIGTERM);
    signals.async_wait([](const boost::system::error_code&, int) {});

    arbiter::testing::FakeUpstream upstream(opts);
    const bool v6 = opts.host.find(':') != std::string::npos;
    const std::string address =
        (v6 ? "[" + opts.host + "]" : opts.host) + ":" + std::to_string(upstream.port());
    std::cout << R"({"event":"listening","address":")" << address << "\"}" << std::endl;

    signals_ioc.run();  // returns once the signal handler has run
  } catch (const std::exception& e) {
    std::cerr << "fake_upstream: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
