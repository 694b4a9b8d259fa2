// arbiter: wiring only. Parse arguments, load the config, start the server,
// print one "listening" line per listener, wait for a signal, drain, exit.

#include <signal.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "gateway/api_router.hpp"
#include "gateway/config.hpp"
#include "gateway/log.hpp"
#include "gateway/request_api.hpp"
#include "gateway/request_logger.hpp"
#include "gateway/score_api.hpp"
#include "gateway/server.hpp"
#include "gateway/webhook_api.hpp"
#include "scoring/request_log.hpp"
#include "scoring/store.hpp"
#include "scoring/webhook_service.hpp"

namespace {

constexpr const char* kUsage =
    "usage: arbiter --config FILE [--check]\n"
    "  --config FILE   the YAML configuration (see conf/arbiter.yaml)\n"
    "  --check         validate the configuration and exit (0 = valid)\n"
    "  --version       print the version and exit\n";

std::string log_metrics(const arbiter::scoring::RequestLog& log) {
  const auto c = log.counters();
  std::string out;
  auto add = [&out](const char* name, const char* type, const char* help, std::uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
           std::to_string(v) + "\n";
  };
  add("arbiter_log_records_submitted_total", "counter", "Records accepted into the storage queue.", c.submitted);
  add("arbiter_log_records_written_total", "counter", "Records written to RocksDB.", c.written);
  add("arbiter_log_records_dropped_total", "counter", "Records dropped because the storage queue was full.", c.dropped);
  add("arbiter_log_write_errors_total", "counter", "Failed storage writes or WAL syncs.", c.write_errors);
  add("arbiter_log_records_failed_total", "counter", "Records in failed storage writes.", c.failed_records);
  add("arbiter_log_batches_total", "counter", "Storage write batches.", c.batches);
  add("arbiter_log_queue_depth", "gauge", "Records waiting for the storage thread.", c.queue_depth);
  add("arbiter_log_retention_deleted_total", "counter", "Records removed by retention.", c.retention_deleted);
  return out;
}

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

  std::unique_ptr<arbiter::scoring::RequestLog> request_log;
  try {
    arbiter::scoring::RequestLogOptions options;
    options.path = config->storage.path;
    options.durability = config->storage.durability == Durability::strict ? arbiter::scoring::Durability::kStrict
                                                                           : arbiter::scoring::Durability::kRelaxed;
    options.queue_capacity = config->storage.queue_capacity;
    options.batch_window = config->storage.batch_window;
    options.retention_days = config->storage.retention_days;
    options.prepare = [config](arbiter::scoring::RequestRecord& rec) {
      if (rec.derive_pending) derive_fields(rec, *config);
    };
    request_log = std::make_unique<arbiter::scoring::RequestLog>(std::move(options));
  } catch (const std::exception& e) {
    // Locked, corrupt or unreadable data directory: say which and stop.
    log::error("cannot open storage", {{"path", config->storage.path}, {"error", e.what()}});
    std::fprintf(stderr, "arbiter: cannot open storage at %s: %s\n", config->storage.path.c_str(), e.what());
    return 1;
  }

  // Webhook deliveries: a write listener on the log (registered before the
  // first record) with its own dispatcher thread and outbound client.
  std::unique_ptr<arbiter::scoring::WebhookService> webhooks;
  try {
    webhooks = std::make_unique<arbiter::scoring::WebhookService>(
        *request_log, webhook_service_options(*config), arbiter::scoring::make_outbound_transport());
    request_log->add_listener(webhooks.get());
  } catch (const std::exception& e) {
    log::error("cannot start webhook delivery", {{"error", e.what()}});
    return 1;
  }

  int code = 0;
  try {
    RequestLogger logger(*request_log, config);
    Server server(config, config->storage.log_requests ? &logger : nullptr);
    register_request_routes(server.api(), *request_log, config);
    register_score_routes(server.api(), *request_log);
    register_webhook_routes(server.api(), *webhooks);
    server.api().add_metrics_source([&log = *request_log] { return log_metrics(log); });
    server.api().add_metrics_source([&w = *webhooks] { return webhook_metrics(w); });
    webhooks->start();  // resumes deliveries left queued by the previous run
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
    code = 1;
  }
  // Stops sending (calls in flight stay queued in the outbox for the next
  // start) before the log closes; records drained by close() still get their
  // deliveries written.
  webhooks->stop();
  // Every record handed over so far is written and synced before exit.
  if (auto closed = request_log->close(); !closed) {
    log::error("storage close failed", {{"error", closed.error().message}});
    code = 1;
  }
  if (code != 0) return code;
  log::info("arbiter stopped");
  return 0;
}
