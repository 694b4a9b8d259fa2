#include "gateway/webhook_api.hpp"

#include <charconv>

#include "scoring/webhook_service.hpp"

namespace arbiter::gateway {
namespace http = boost::beast::http;

namespace {

using nlohmann::json;

// The query string may hold a receiver's token: show that there is one, not what.
std::string shown_url(const std::string& url) {
  const auto q = url.find('?');
  return q == std::string::npos ? url : url.substr(0, q) + "?<redacted>";
}

json hook_json(const scoring::WebhookOptions& w, const scoring::WebhookService::Counts& c) {
  json events = json::array();
  for (auto e : {scoring::WebhookEvent::kRequestLogged, scoring::WebhookEvent::kScoreCreated,
                 scoring::WebhookEvent::kEvaluationCompleted}) {
    if (w.wants(e)) events.push_back(scoring::to_string(e));
  }
  json headers = json::array();
  for (const auto& h : w.headers) headers.push_back(h.first);  // names only: values may be credentials
  return {{"name", w.name},
          {"url", shown_url(w.url)},
          {"events", std::move(events)},
          {"sample_rate", w.sample_rate},
          {"property_filters", w.property_filters},
          {"include_bodies", w.include_bodies},
          {"retry",
           {{"max_attempts", w.retry.max_attempts},
            {"initial_backoff_ms", w.retry.initial_backoff.count()},
            {"max_backoff_ms", w.retry.max_backoff.count()}}},
          {"timeout_ms", w.timeout.count()},
          {"headers", std::move(headers)},
          {"allow_insecure", w.allow_insecure},
          {"max_in_flight", w.max_in_flight},
          {"counters",
           {{"pending", c.pending},
            {"retrying", c.retrying},
            {"delivered", c.delivered},
            {"dead", c.dead}}}};
}

}  // namespace

scoring::WebhookServiceOptions webhook_service_options(const Config& config) {
  scoring::WebhookServiceOptions out;
  out.retention_days = config.storage.retention_days;
  for (const auto& w : config.webhooks) {
    scoring::WebhookOptions o;
    o.name = w.name;
    o.url = w.url;
    o.key = w.secret_key;
    o.secret_text = w.secret_text;
    o.events = 0;
    for (const auto& e : w.events) {
      if (auto parsed = scoring::parse_webhook_event(e)) o.events |= static_cast<std::uint8_t>(*parsed);
    }
    o.sample_rate = w.sample_rate;
    o.property_filters = w.property_filters;
    o.include_bodies = w.include_bodies;
    o.retry.max_attempts = w.retry.max_attempts;
    o.retry.initial_backoff = w.retry.initial_backoff;
    o.retry.max_backoff = w.retry.max_backoff;
    o.timeout = w.timeout;
    o.headers = w.headers;
    o.allow_insecure = w.allow_insecure;
    o.ca_file = w.ca_file;
    o.max_in_flight = w.max_in_flight;
    o.projects = w.projects;
    out.webhooks.push_back(std::move(o));
  }
  return out;
}

void register_webhook_routes(ApiRouter& router, scoring::WebhookService& service) {
  router.add(http::verb::get, "/v1/webhooks", true, [&service](const ApiCall& call) {
    json items = json::array();
    for (const auto& w : service.webhooks()) {
      if (!w.applies_to(call.project->name)) continue;
      auto counts = service.counts(call.project->name, w.name);
      if (!counts) return ApiRouter::from_error(counts.error());
      items.push_back(hook_json(w, *counts));
    }
    return ApiRouter::ok(items);
  });

  router.add(http::verb::get, "/v1/webhooks/deliveries", true, [&service](const ApiCall& call) {
    scoring::outbox::ListQuery q;
    if (const auto s = call.query("status")) {
      q.state = scoring::parse_delivery_state(*s);
      if (!q.state) return ApiRouter::error(400, "status must be pending, retrying, delivered or dead");
    }
    if (const auto w = call.query("webhook")) {
      if (service.find(call.project->name, *w) == nullptr) {
        return ApiRouter::error(400, "webhook: no webhook named '" + scoring::sanitize_utf8(*w) + "'");
      }
      q.webhook = *w;
    }
    if (const auto r = call.query("request_id")) {
      if (!scoring::valid_request_id(*r)) return ApiRouter::error(400, "request_id is not a valid request id");
      q.request_id = *r;
    }
    if (const auto l = call.query("limit")) {
      unsigned n = 0;
      const auto [ptr, ec] = std::from_chars(l->data(), l->data() + l->size(), n);
      if (l->empty() || ec != std::errc() || ptr != l->data() + l->size() || n < 1 || n > 100) {
        return ApiRouter::error(400, "limit must be an integer between 1 and 100");
      }
      q.limit = n;
    }
    q.cursor = call.query("cursor").value_or("");
    auto page = service.deliveries(call.project->name, q);
    if (!page) return ApiRouter::from_error(page.error());
    json items = json::array();
    for (const auto& d : page->deliveries) items.push_back(scoring::to_json(d));
    return ApiRouter::ok(
        {{"deliveries", std::move(items)},
         {"next_cursor", page->next_cursor.empty() ? json(nullptr) : json(page->next_cursor)}});
  });

  router.add(http::verb::post, "/v1/webhooks/{}/test", true, [&service](const ApiCall& call) {
    auto result = service.send_test(call.project->name, call.params.at(0));
    if (!result) return ApiRouter::from_error(result.error());
    return ApiRouter::ok({{"webhook_id", result->webhook_id},
                          {"ok", result->ok},
                          {"status_code", result->status != 0 ? json(result->status) : json(nullptr)},
                          {"body", result->body},
                          {"error", result->error.empty() ? json(nullptr) : json(result->error)},
                          {"duration_ms", static_cast<double>(result->duration_us) / 1000.0}});
  });

  router.add(http::verb::post, "/v1/webhooks/deliveries/{}/retry", true,
             [&service](const ApiCall& call) {
               auto d = service.retry(call.project->name, call.params.at(0));
               if (!d) return ApiRouter::from_error(d.error());
               return ApiRouter::ok(scoring::to_json(*d));
             });
}

std::string webhook_metrics(const scoring::WebhookService& service) {
  const auto stats = service.stats();
  if (stats.empty()) return {};
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help, auto field) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    for (const auto& [hook, s] : stats) {
      out += std::string(name) + "{webhook=\"" + hook + "\"} " + std::to_string(s.*field) + "\n";
    }
  };
  using S = scoring::WebhookService::Stats;
  family("arbiter_webhook_enqueued_total", "counter", "Deliveries written to the outbox.", &S::enqueued);
  family("arbiter_webhook_attempts_total", "counter", "Delivery attempts sent.", &S::attempts);
  family("arbiter_webhook_delivered_total", "counter", "Deliveries answered with a 2xx.", &S::delivered);
  family("arbiter_webhook_failed_attempts_total", "counter",
         "Attempts that failed (non-2xx, network error, payload not buildable).", &S::failed_attempts);
  family("arbiter_webhook_dead_total", "counter", "Deliveries dead-lettered after max_attempts.", &S::dead);
  family("arbiter_webhook_skipped_total", "counter",
         "Deliveries dropped because property filters checked at send time did not match.", &S::skipped);
  family("arbiter_webhook_handed_total", "counter",
         "First attempts sent from the committed record in memory, without reading it back.", &S::handed);
  family("arbiter_webhook_in_flight", "gauge", "Attempts waiting for the receiver's answer.", &S::in_flight);
  return out;
}

}  // namespace arbiter::gateway
