#include "gateway/api_routes.hpp"

#include <string>

#include "gateway/api_router.hpp"
#include "gateway/evaluator_api.hpp"
#include "gateway/request_api.hpp"
#include "gateway/score_api.hpp"
#include "gateway/webhook_api.hpp"
#include "scoring/request_log.hpp"
#include "scoring/webhook_service.hpp"

namespace arbiter::gateway {

namespace {

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
  add("arbiter_log_records_failed_total", "counter", "Records in failed storage writes.", c.failed_records);
  add("arbiter_log_batches_total", "counter", "Storage write batches.", c.batches);
  add("arbiter_log_queue_depth", "gauge", "Records waiting for the storage thread.", c.queue_depth);
  add("arbiter_log_retention_deleted_total", "counter", "Records removed by retention.", c.retention_deleted);
  return out;
}

}  // namespace

void register_api_routes(ApiRouter& router, const ApiServices& s) {
  register_request_routes(router, s.log, s.config);
  register_score_routes(router, s.log, s.scores);
  register_evaluator_routes(router, s.evaluators);
  register_webhook_routes(router, s.webhooks);
  router.add_metrics_source([&log = s.log] { return log_metrics(log); });
  router.add_metrics_source([&w = s.webhooks] { return webhook_metrics(w); });
}

}  // namespace arbiter::gateway
