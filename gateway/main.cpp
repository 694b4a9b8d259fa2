// arbiter: wiring only. Parse arguments, load the config, start the server,
// print one "listening" line per listener, wait for a signal, drain, exit.

#include <malloc.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "gateway/api_router.hpp"
#include "gateway/api_routes.hpp"
#include "gateway/config.hpp"
#include "gateway/log.hpp"
#include "gateway/request_logger.hpp"
#include "gateway/server.hpp"
#include "gateway/webhook_api.hpp"
#include "scoring/background_thread.hpp"
#include "scoring/evaluator_runtime.hpp"
#include "scoring/request_log.hpp"
#include "scoring/score_store.hpp"
#include "scoring/store.hpp"
#include "scoring/webhook_service.hpp"

namespace {

constexpr const char* kUsage =
    "usage: arbiter --config FILE [--check]\n"
    "  --config FILE   the YAML configuration (see conf/arbiter.yaml)\n"
    "  --check         validate the configuration and exit (0 = valid)\n"
    "  --version       print the version and exit\n";

// The evaluator runtime takes plain options (scoring/ does not know the
// gateway's Config).
arbiter::scoring::EvaluatorRuntimeOptions evaluator_options(const arbiter::gateway::Config& config) {
  namespace sc = arbiter::scoring;
  sc::EvaluatorRuntimeOptions o;
  o.workers = config.server.evaluator_workers;
  o.queue_capacity = config.server.evaluator_queue_capacity;
  o.worker_nice = static_cast<int>(config.server.evaluator_nice);
  o.worker_sched_idle = config.server.evaluator_sched_idle;
  for (const auto& u : config.upstreams) {
    o.upstreams.push_back(sc::EvalUpstream{u.name, u.base_url, u.api_key, u.ca_file, u.verify_tls});
  }
  for (const auto& e : config.evaluators) {
    sc::EvaluatorOptions ev;
    ev.name = e.name;
    ev.kind = e.kind;
    ev.filter = sc::EvaluatorFilter{e.filter.path, e.filter.model, e.filter.properties, e.filter.status};
    ev.sampling = e.sampling;
    ev.needs = e.needs;
    ev.score_name = e.score_name;
    if (!e.score_data_type.empty()) ev.data_type = sc::parse_data_type(e.score_data_type);
    ev.timeout = e.timeout;
    ev.concurrency = e.concurrency;
    ev.retry = sc::RetryPolicy{e.retry.max_attempts, e.retry.initial_backoff, e.retry.max_backoff};
    if (e.params) ev.params = *e.params;
    o.evaluators.push_back(std::move(ev));
  }
  return o;
}

// "file:line: evaluators[i]: <message>" for an evaluator that cannot be built.
std::string evaluator_error(const arbiter::gateway::Config& config, const std::string& message) {
  for (std::size_t i = 0; i < config.evaluators.size(); ++i) {
    const auto& e = config.evaluators[i];
    if (message.rfind("evaluator '" + e.name + "' ", 0) == 0) {
      return config.source_file + ":" + std::to_string(e.line) + ": evaluators[" + std::to_string(i) +
             "]: " + message;
    }
  }
  return config.source_file + ": " + message;
}

// server.malloc_arenas: caps glibc's arenas before the first thread starts.
// An operator's MALLOC_ARENA_MAX (or glibc.malloc.arena_max in GLIBC_TUNABLES)
// wins: glibc has read it already, and mallopt would override it.
void limit_malloc_arenas(unsigned arenas) {
  if (arenas == 0 || std::getenv("MALLOC_ARENA_MAX") != nullptr) return;
  if (const char* tunables = std::getenv("GLIBC_TUNABLES");
      tunables != nullptr && std::strstr(tunables, "glibc.malloc.arena_max") != nullptr) {
    return;
  }
  ::mallopt(M_ARENA_MAX, static_cast<int>(arenas));
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
    // Evaluators are built too (plugins loaded, templates read) so that
    // --check catches what a start would refuse.
    try {
      arbiter::scoring::EvaluatorRuntime::validate(evaluator_options(*config));
    } catch (const arbiter::scoring::EvaluatorConfigError& e) {
      std::fprintf(stderr, "%s\n", evaluator_error(*config, e.what()).c_str());
      return 1;
    }
    std::fprintf(stderr, "%s: ok\n", config_path.c_str());
    return 0;
  }
  limit_malloc_arenas(config->server.malloc_arenas);
  log::set_level(config->server.log_level);
  arbiter::scoring::set_background_nice(static_cast<int>(config->server.background_nice));

  // Signals are taken synchronously by this thread; every other thread
  // inherits the blocked mask and never sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // reload TLS certificates
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
    options.prepare = [config](arbiter::scoring::RequestRecord& rec) { prepare_record(rec, *config); };
    request_log = std::make_unique<arbiter::scoring::RequestLog>(std::move(options));
  } catch (const std::exception& e) {
    // Locked, corrupt or unreadable data directory: say which and stop.
    log::error("cannot open storage", {{"path", config->storage.path}, {"error", e.what()}});
    std::fprintf(stderr, "arbiter: cannot open storage at %s: %s\n", config->storage.path.c_str(), e.what());
    return 1;
  }

  // One score store for the API and the evaluators (its writer and
  // aggregates must see every score).
  auto score_store = std::make_unique<arbiter::scoring::ScoreStore>(*request_log);
  // Built before anything is submitted, so its listener sees every record;
  // a bad evaluator (params, template, plugin library) stops the start here.
  std::unique_ptr<arbiter::scoring::EvaluatorRuntime> evaluators;
  try {
    evaluators = std::make_unique<arbiter::scoring::EvaluatorRuntime>(*request_log, *score_store,
                                                                      evaluator_options(*config));
  } catch (const arbiter::scoring::EvaluatorConfigError& e) {
    const std::string message = evaluator_error(*config, e.what());
    log::error("cannot start evaluators", {{"error", message}});
    std::fprintf(stderr, "arbiter: %s\n", message.c_str());
    score_store->stop();
    (void)request_log->close();
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
    register_api_routes(server.api(), ApiServices{*request_log, *score_store, *evaluators, *webhooks, config});
    webhooks->start();  // resumes deliveries left queued by the previous run
    evaluators->start();  // resumes runs left unfinished by the previous run
    server.start();
    print_listening("proxy", server.proxy_endpoint());
    print_listening("api", server.api_endpoint());
    log::info("arbiter started", {{"config", config_path}, {"threads", config->server.threads}});

    int sig = 0;
    for (;;) {
      sigwait(&signals, &sig);
      if (sig != SIGHUP) break;
      // Certificate rotation without a restart: new connections get the new
      // files; a listener whose new files do not load keeps the old ones.
      const auto reload = server.reload_tls();
      for (const auto& f : reload.failures) {
        log::error("SIGHUP: TLS reload failed, keeping the current certificate", {{"error", f}});
      }
      if (reload.reloaded > 0) {
        log::info("SIGHUP: TLS certificates reloaded", {{"listeners", reload.reloaded}});
      } else if (reload.failures.empty()) {
        log::info("SIGHUP: no TLS listener, nothing to reload");
      }
    }
    log::info("signal received, draining", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    server.shutdown();
  } catch (const std::exception& e) {
    log::error("fatal", {{"error", e.what()}});
    code = 1;
  }
  // Runs not finished stay pending in storage and resume at the next start;
  // the workers are stopped before the score store they write through.
  evaluators->stop();
  score_store->stop();
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
