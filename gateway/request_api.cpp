#include "gateway/request_api.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "gateway/log_ingest.hpp"
#include "gateway/request_logger.hpp"

namespace arbiter::gateway {
namespace http = boost::beast::http;

namespace {

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ApiResponse ingest(const ApiCall& call, scoring::RequestLog& log, const Config& config, std::string_view kind) {
  ApiResponse bad;
  auto body = call.json_body(bad);
  if (!body) return bad;
  if (!body->is_object()) return ApiRouter::error(400, "request body must be a JSON object");
  auto record = parse_manual_log(*body, call.request, call.project->name, kind, now_us());
  if (!record) return ApiRouter::from_error(record.error());
  // The client's own cost wins; otherwise the same price table as proxied calls.
  if (!record->cost_usd) record->cost_usd = cost_for(config, *record);
  const std::string id = record->request_id;
  // Durable before the answer: a client that was told "logged" may rely on it.
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<bool> ok;
  };
  auto done = std::make_shared<Done>();
  const bool queued = log.submit(std::move(*record), [done](bool ok) {
    std::lock_guard lock(done->mu);
    done->ok = ok;
    done->cv.notify_all();
  });
  if (!queued) return ApiRouter::error(503, "request log is full or closed; retry later");
  std::unique_lock lock(done->mu);
  if (!done->cv.wait_for(lock, std::chrono::seconds(30), [&] { return done->ok.has_value(); })) {
    return ApiRouter::error(503, "request log did not confirm the write in time");
  }
  if (!*done->ok) return ApiRouter::error(500, "storage write failed");
  return ApiRouter::ok({{"request_id", id}});
}

}  // namespace

void register_request_routes(ApiRouter& router, scoring::RequestLog& log, std::shared_ptr<const Config> config) {
  router.add(http::verb::get, "/v1/request/{}", true, [&log](const ApiCall& call) {
    const auto include = call.query("includeBody");
    if (include && *include != "true" && *include != "false") {
      return ApiRouter::error(400, "includeBody must be true or false");
    }
    auto rec = log.get_json(call.project->name, call.params.at(0), include && *include == "true");
    if (!rec) return ApiRouter::from_error(rec.error());
    if (rec->is_null()) return ApiRouter::error(404, "request " + std::string(call.params.at(0)) + " not found");
    return ApiRouter::ok(*rec);
  });
  router.add(http::verb::post, "/v1/request/query", true, [&log](const ApiCall& call) {
    ApiResponse bad;
    auto body = call.json_body(bad);
    if (!body) return bad;
    auto data = log.query_json(call.project->name, *body);
    if (!data) return ApiRouter::from_error(data.error());
    return ApiRouter::ok(*data);
  });
  // HeliconeManualLogger picks the route from its `provider` argument.
  for (const char* kind : {"custom", "oai", "anthropic", "googleapis"}) {
    router.add(http::verb::post, std::string("/") + kind + "/v1/log", true,
               [&log, config, kind](const ApiCall& call) { return ingest(call, log, *config, kind); });
  }
}

}  // namespace arbiter::gateway
