#pragma once
// Turns proxied calls into request-log records (DESIGN.md §2): the bridge
// between the proxy's ExchangeObserver interface and scoring::RequestLog.
//
// Called on I/O threads; never blocks: building a record parses the (bounded)
// bodies once, after the response has been sent, then hands the record to
// the log's bounded queue.

#include <memory>

#include "gateway/config.hpp"
#include "gateway/request_context.hpp"
#include "scoring/request_log.hpp"
#include "scoring/request_record.hpp"

namespace arbiter::gateway {

// Pure: the record for one finished call (bodies, model, user, tokens, cost,
// status code). Unit-tested without sockets.
scoring::RequestRecord build_record(const RequestContext& ctx, ExchangeResult&& result, const Config& config);

// USD cost of a record from the pricing table: unknown (nullopt) when the
// model has no price or a token count is unknown.
std::optional<double> cost_for(const Config& config, const scoring::RequestRecord& rec);

class RequestLogger final : public ExchangeObserver {
 public:
  // `log` must outlive the logger and every server using it.
  RequestLogger(scoring::RequestLog& log, std::shared_ptr<const Config> config);

  bool wants_bodies() const override { return true; }
  std::size_t body_tee_limit() const override { return config_->storage.max_logged_body_bytes; }
  bool wants_durable_ack() const override { return config_->storage.durability == Durability::strict; }
  void on_request_start(const RequestContext& ctx) override;
  void on_request_end(const RequestContext& ctx, ExchangeResult&& result, DurableCallback on_durable) override;

 private:
  scoring::RequestLog& log_;
  std::shared_ptr<const Config> config_;
};

}  // namespace arbiter::gateway
