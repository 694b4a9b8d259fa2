// arbiter: wiring only. Parse arguments, load the config, start the server,
// print one "listening" line per listener, wait for a signal, drain, exit.

#include <signal.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "gateway/config.hpp"
#include "gateway/log.hpp"
#include "gateway/server.hpp"

namespace {

constexpr const char* kUsage =
    "usage: arbiter --config FILE [--check]\n"
    "  --config FILE   the YAML configuration (see conf/arbiter.yaml)\n"
    "  --check         validate the configuration and exit (0 = valid)\n"
    "  --version       print the version and exit\n";

void print_listening(const char* listener, const boost::asio::ip::tcp::endpoint& ep) {
  const auto addr = ep.address();
  std::string address = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
  address += ":" + std::to_string(ep.port());
  nlohmann::json line = {{"event", "listening"}, {"listener", listener}, {"address", address}};
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace arbiter::gateway;
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else if (arg == "--check") {
      check_only = true;
    } else if (arg == "--version") {
      std::printf("arbiter 0.1.0\n");
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "arbiter: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }

  std::shared_ptr<const Config> config;
  try {
    config = load_config(config_path);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  if (check_only) {
    std::fprintf(stderr, "%s: ok\n", config_path.c_str());
    return 0;
  }
  log::set_level(config->server.log_level);

  // Signals are taken synchronously by this thread; every other thread
  // inherits the blocked mask and never sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  try {
    Server server(config);
    server.start();
    print_listening("proxy", server.proxy_endpoint());
    print_listening("api", server.api_endpoint());
    log::info("arbiter started", {{"config", config_path}, {"threads", config->server.threads}});

    int sig = 0;
    sigwait(&signals, &sig);
    log::info("signal received, draining", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    server.shutdown();
  } catch (const std::exception& e) {
    log::error("fatal", {{"error", e.what()}});
    return 1;
  }
  log::info("arbiter stopped");
  return 0;
}
