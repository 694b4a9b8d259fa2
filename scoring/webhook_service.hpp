#pragma once
// Webhook delivery (DESIGN.md §7): the outbox writer and the delivery workers.
//
// Writing. WebhookService is a WriteListener on the RequestLog. For every
// records batch (storage thread), score write and finished evaluator run it
// appends one outbox entry per matching (event, webhook) to the batch being
// committed — so an event and its deliveries are durable together or not at
// all. Matching = the webhook wants the event, applies to the project, the
// request id is sampled in, and the property filters match. on_records stays
// cheap because it stores a *reference* (project, request id) and a few
// flags, not the payload: building the payload means parsing and
// re-serialising bodies of up to storage.max_logged_body_bytes, which would
// put that cost (and a second copy of every body) on the one thread that
// writes every proxied call. The payload is built from the record at send
// time instead; the record does not change after it is written (a re-logged
// id writes a new record *and* a new delivery), so every attempt of a
// delivery sends the same bytes. Score and evaluation events store their
// small event data (the scores, the run) inline, since those can change later.
//
// Hand-off. A request.logged delivery is usually sent milliseconds after its
// record was committed, and reading both back (the outbox entry, then the
// record with its bodies, by then often flushed and compressed) was a third
// of the dispatcher's CPU. So records_written also hands the committed
// deliveries and their records to the dispatcher in memory, within a byte
// budget (record_handoff.hpp) and a count; the first attempt of such a
// delivery uses them, and anything over the bounds (a backlog) is read back
// as before. What the dispatcher holds is what the batch committed: only the
// dispatcher changes a queued delivery (retry() takes dead ones only, and
// pruning runs on the dispatcher's thread and drops what it removes).
//
// Sending. One dispatcher thread takes due entries from each webhook's queue
// (seek to the webhook's 'Q' prefix), builds and signs the payload, and hands
// the request to the transport (OutboundHttp: async, its own thread, kept-
// alive connections), never the proxy's I/O threads. Each webhook has at
// most max_in_flight attempts outstanding, so a slow or hanging receiver
// uses up its own slots only; its backlog waits in its own queue range while
// the other webhooks' entries keep flowing. Completions come back through a
// queue bounded by the in-flight limits and are written in batches (state,
// attempt, next attempt) by the dispatcher, from the entry it holds for each
// delivery in flight (nothing else changes a delivery in flight). Passes are
// at least kPassInterval apart unless a webhook's slots are all taken, so
// that under a steady flow the completions and new deliveries of those
// milliseconds share one write and one seek.
//
// Retries: non-2xx (3xx included: redirects are never followed) and network
// errors are retried after min(max_backoff, initial_backoff * 2^(n-1)) with
// full jitter (uniform in [0, that]), or the receiver's Retry-After if longer
// (still capped); after max_attempts the delivery is dead. A dead delivery can
// be re-queued (retry()), which grants it a fresh run of max_attempts.
//
// At least once: an entry leaves the queue only in the same write that marks
// it delivered or dead, and only after the attempt's answer arrived. A hard
// kill between sending and recording loses the record of the attempt, not
// the delivery: it is sent again after the restart (same webhook-id, which
// receivers use to drop the duplicate).
//
// SSRF: requests set allow_private only for webhooks with allow_insecure.
//
// Thread-safety: every public member may be called from any thread. The
// WriteListener overrides follow write_listener.hpp. Lifetime: register with
// RequestLog::add_listener before the first submit; start() after that;
// stop() before RequestLog::close() (it joins the dispatcher and cancels
// calls in flight: their deliveries stay queued and are re-sent after the
// next start); destroy after the log's storage thread has stopped.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <unordered_map>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "scoring/expected.hpp"
#include "scoring/record_handoff.hpp"
#include "scoring/request_log.hpp"
#include "scoring/webhook_outbox.hpp"
#include "scoring/webhook_payload.hpp"
#include "scoring/webhook_transport.hpp"
#include "scoring/write_listener.hpp"

namespace arbiter::scoring {

struct WebhookServiceOptions {
  std::vector<WebhookOptions> webhooks;
  // Deliveries created more than this many days ago are removed (in any
  // state), like the records they report. 0 = keep forever.
  unsigned retention_days = 0;
  std::chrono::milliseconds prune_interval{std::chrono::hours(1)};
  // A receiver's answer larger than this is an error (and retried).
  std::size_t max_response_bytes = 1u << 20;
  std::function<std::int64_t()> now_us;  // unix µs; tests inject their own
  std::uint64_t jitter_seed = 0;         // 0 = from std::random_device
};

// The signed POST for one attempt: Content-Type, webhook-id,
// webhook-timestamp, webhook-signature, Helicone-Signature and the webhook's
// static headers, over exactly `body`.
OutboundRequest webhook_request(const WebhookOptions& hook, std::string_view id,
                                std::int64_t timestamp_s, std::string body);

class WebhookService final : public WriteListener {
 public:
  WebhookService(RequestLog& log, WebhookServiceOptions options,
                 std::unique_ptr<WebhookTransport> transport);
  ~WebhookService() override;
  WebhookService(const WebhookService&) = delete;
  WebhookService& operator=(const WebhookService&) = delete;

  // Starts the dispatcher: deliveries left pending or retrying by a previous
  // run (or a crash) are resumed from the outbox.
  void start();
  // Idempotent. See the header comment.
  void stop();

  // --- WriteListener
  void on_records(const Store::Lease& db, std::span<const RequestRecord* const> records,
                  rocksdb::WriteBatch& batch) override;
  void records_written(std::span<const RequestRecord* const> records) override;
  void on_scores(const Store::Lease& db, std::string_view project, std::span<const Score> scores,
                 rocksdb::WriteBatch& batch) override;
  void scores_written(std::string_view project, std::span<const Score> scores) override;
  void on_evaluation(const Store::Lease& db, const EvaluationEvent& event,
                     rocksdb::WriteBatch& batch) override;
  void evaluation_written(const EvaluationEvent& event) override;

  // --- API (blocking RocksDB reads: call from a worker, not an I/O thread)

  const std::vector<WebhookOptions>& webhooks() const { return options_.webhooks; }
  // The webhook, if it exists and applies to the project; else nullptr.
  const WebhookOptions* find(std::string_view project, std::string_view name) const;

  struct Counts {
    std::uint64_t pending = 0;    // never attempted yet
    std::uint64_t retrying = 0;   // failed at least once, next attempt scheduled
    std::uint64_t delivered = 0;  // ever delivered (kept across restarts and pruning)
    std::uint64_t dead = 0;       // gave up; re-queue with retry()
  };
  Expected<Counts> counts(std::string_view project, std::string_view webhook) const;

  Expected<outbox::ListPage> deliveries(std::string_view project,
                                        const outbox::ListQuery& query) const;

  // Re-queues a dead delivery of this project for an attempt now, with a
  // fresh run of max_attempts. kNotFound (unknown id, another project's, or
  // a webhook no longer configured), kConflict (not dead). Durable on return.
  Expected<Delivery> retry(std::string_view project, std::string_view id);

  // Sends a sample request.logged event (with "test": true) to the webhook
  // now, signed like any delivery, on the calling thread; nothing is stored.
  struct TestResult {
    std::string webhook_id;
    int status = 0;
    bool ok = false;
    std::string body;   // the first kTestBodySnippet bytes of the answer
    std::string error;  // "" when an answer arrived
    std::int64_t duration_us = 0;
  };
  static constexpr std::size_t kTestBodySnippet = 1024;
  Expected<TestResult> send_test(std::string_view project, std::string_view webhook);

  // Since start, per webhook (GET /metrics).
  struct Stats {
    std::uint64_t enqueued = 0;         // deliveries written to the outbox
    std::uint64_t attempts = 0;
    std::uint64_t delivered = 0;
    std::uint64_t failed_attempts = 0;  // non-2xx, network errors, unbuildable payloads
    std::uint64_t dead = 0;
    std::uint64_t skipped = 0;          // property filters checked at send time did not match
    // First attempts sent from the committed delivery and record in memory,
    // without reading them back (see "Hand-off" above).
    std::uint64_t handed = 0;
    std::uint64_t in_flight = 0;
  };
  std::vector<std::pair<std::string, Stats>> stats() const;
  // Deliveries handed over by records_written and not taken yet (see
  // "Hand-off"): at most a few thousand, gone within seconds.
  std::size_t handed_held() const { return handed_count_.load(std::memory_order_relaxed); }
  std::string last_error() const;

 private:
  struct Hook;
  struct Completion {
    std::size_t hook = 0;
    std::string id;
    OutboundResponse response;
    std::int64_t started_us = 0;
    std::int64_t duration_us = 0;
    bool sent = true;  // false: failed before sending (payload could not be built)
    // Not sent because its request is still pending (in flight or queued for
    // storage): looked at again kRecordWait later, and not an attempt.
    bool waiting_for_record = false;
  };

  std::int64_t now_us() const;
  void run();
  // One pass over every webhook's due entries; returns the earliest future
  // due time of a webhook with free slots (INT64_MAX if none). Sets
  // saturated_ when a webhook's slots are all taken.
  std::int64_t dispatch(std::vector<Completion>& unsent);
  void finish(std::vector<Completion>& done);
  void prune();
  void kick();
  void set_error(std::string message);
  std::int64_t backoff_us(const WebhookOptions& hook, std::uint32_t failures,
                          const OutboundResponse& response);
  // Fills in the delivery's id, state and times, and adds it to the batch.
  void enqueue(const Store::Lease& db, rocksdb::WriteBatch& batch, Delivery& d);
  // A delivery committed by records_written, with its record, for its first
  // attempt (see "Hand-off" above).
  struct Handed {
    Delivery delivery;
    std::shared_ptr<const RequestRecord> record;
    std::chrono::steady_clock::time_point at{};  // when records_written handed it over
  };
  // Moves what records_written handed over into handed_taken_, and drops
  // entries held longer than kHandedMaxAge (dispatcher thread).
  void collect_handed();
  // After any commit with deliveries: counts them and wakes the dispatcher.
  void committed();

  RequestLog& log_;
  WebhookServiceOptions options_;
  std::vector<std::unique_ptr<Hook>> hooks_;

  std::shared_mutex transport_mu_;  // stop() resets the transport exclusively
  std::unique_ptr<WebhookTransport> transport_;

  std::mutex mu_;  // guards completions_, kick_, stopping_, waiting_for_work_
  std::condition_variable cv_;
  std::vector<Completion> completions_;
  bool kick_ = false;
  bool waiting_for_work_ = false;  // the dispatcher sleeps until kick_ or a completion
  bool stopping_ = false;
  bool started_ = false;
  std::thread thread_;

  // Serialises changes to existing deliveries: the dispatcher's results and
  // pruning, the API's retry().
  std::mutex transition_mu_;
  std::mt19937_64 rng_;  // dispatcher thread only
  std::chrono::steady_clock::time_point next_prune_{};

  RecordHandoff handoff_;
  std::vector<Handed> handing_;  // on_records → records_written (storage thread)
  std::mutex handed_mu_;
  std::unordered_map<std::string, Handed> handed_;  // by delivery id; guarded by handed_mu_
  std::unordered_map<std::string, Handed> handed_taken_;  // dispatcher thread only
  std::chrono::steady_clock::time_point next_handed_sweep_{};  // dispatcher thread only
  // The last pass left a webhook with every slot in use (and maybe more
  // due): its completions are recorded at once, to free the slots.
  bool saturated_ = false;  // dispatcher thread only
  std::atomic<std::size_t> handed_count_{0};               // both maps together

  mutable std::mutex error_mu_;
  std::string last_error_;
};

}  // namespace arbiter::scoring
