#include "gateway/api_routes.hpp"

#include <string>

#include <nlohmann/json.hpp>

#include "gateway/api_router.hpp"
#include "gateway/evaluator_api.hpp"
#include "gateway/request_api.hpp"
#include "gateway/score_api.hpp"
#include "gateway/webhook_api.hpp"
#include "scoring/request_log.hpp"
#include "scoring/webhook_service.hpp"

namespace arbiter::gateway {

namespace {

// /healthz's "storage" section. The RocksDB message names files under
// storage.path, so only its kind is shown (the log has the whole message).
ApiRouter::HealthCheck storage_health(const scoring::RequestLog& log) {
  const auto c = log.counters();
  nlohmann::json detail = {{"ok", c.storage_ok}, {"queue_depth", c.queue_depth}};
  if (!c.storage_ok) {
    const bool no_space = c.last_error.find("No space") != std::string::npos ||
                          c.last_error.find("no space") != std::string::npos ||
                          c.last_error.find("NoSpace") != std::string::npos;
    detail["error"] = no_space ? "no space left on device" : "storage write failed";
  }
  return {c.storage_ok, std::move(detail)};
}

std::string log_metrics(const scoring::RequestLog& log) {
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
  add("arbiter_log_records_failed_total", "counter", "Records given up on: storage still failing at shutdown.",
      c.failed_records);
  add("arbiter_log_write_retries_total", "counter", "Attempts to write a batch again after a storage error.",
      c.write_retries);
  add("arbiter_log_storage_recoveries_total", "counter", "Storage outages ended by a successful write.",
      c.recoveries);
  add("arbiter_storage_reopens_total", "counter",
      "Database reopens: how the log recovers from an I/O error that RocksDB cannot resume from.", c.reopens);
  add("arbiter_storage_healthy", "gauge", "1 while storage writes succeed, 0 from a failed write until one succeeds.",
      c.storage_ok ? 1 : 0);
  add("arbiter_log_batches_total", "counter", "Storage write batches.", c.batches);
  add("arbiter_log_queue_depth", "gauge", "Records waiting for the storage thread.", c.queue_depth);
  add("arbiter_log_retention_deleted_total", "counter", "Records removed by retention.", c.retention_deleted);
  auto memory = log.with_store([](scoring::Store& store) { return store.memory_usage(); });
  if (memory.ok()) {
    add("arbiter_storage_memtable_bytes", "gauge", "RocksDB memtables (active and immutable), all column families.",
        memory->memtables);
    add("arbiter_storage_table_readers_bytes", "gauge",
        "RocksDB's open table files' readers, outside the block cache (bounded by their count).",
        memory->table_readers);
    add("arbiter_storage_block_cache_bytes", "gauge", "RocksDB's block cache in use.", memory->block_cache);
  }
  return out;
}

}  // namespace

void register_api_routes(ApiRouter& router, const ApiServices& s) {
  register_request_routes(router, s.log, s.config);
  register_score_routes(router, s.log, s.scores);
  register_evaluator_routes(router, s.evaluators);
  register_webhook_routes(router, s.webhooks);
  router.add_metrics_source([&log = s.log] { return log_metrics(log); });
  router.add_health_check("storage", [&log = s.log] { return storage_health(log); });
  router.add_metrics_source([&w = s.webhooks] { return webhook_metrics(w); });
}

}  // namespace arbiter::gateway
