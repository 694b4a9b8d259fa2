#pragma once
// Turns proxied calls into request-log records (DESIGN.md §2): the bridge
// between the proxy's ExchangeObserver interface and scoring::RequestLog.
//
// Called on I/O threads; never blocks and parses no JSON: it moves the
// (bounded) body copies into a record and hands it to the log's bounded
// queue; the storage thread derives the JSON fields (derive_fields).

#include <memory>

#include "gateway/config.hpp"
#include "gateway/request_context.hpp"
#include "scoring/request_log.hpp"
#include "scoring/request_record.hpp"

namespace arbiter::gateway {

// Pure: the record for one finished call (bodies, model, user, tokens, cost,
// status code). Unit-tested without sockets. With defer_derivation the JSON
// bodies are not parsed here: the record is marked derive_pending and
// derive_fields() runs later on the storage thread (RequestLogOptions::
// prepare), keeping JSON parsing off the I/O threads. Records with an
// omitted body are derived at once (the body is not kept).
scoring::RequestRecord build_record(const RequestContext& ctx, ExchangeResult&& result, const Config& config,
                                    bool defer_derivation = false);

// Reads model, user (when the header gave none), tokens and cost from the
// record's bodies, first rebuilding a stream's completion from its raw copy
// when reassemble_pending is set; clears both flags.
void derive_fields(scoring::RequestRecord& rec, const Config& config);

// Removes the call's credentials (rec.redact: the keys that went upstream and
// the gateway key) from every text field of the record, masks credential
// query parameters in its path, and clears rec.redact.
void redact_credentials(scoring::RequestRecord& rec);

// RequestLogOptions::prepare for the gateway's records, on the storage
// thread: derive_fields() when pending, then redact_credentials().
void prepare_record(scoring::RequestRecord& rec, const Config& config);

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
