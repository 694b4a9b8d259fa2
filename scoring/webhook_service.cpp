#include "scoring/webhook_service.hpp"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <charconv>
#include <climits>
#include <map>

#include "scoring/background_thread.hpp"
#include "scoring/keys.hpp"
#include "scoring/webhook_signing.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

constexpr std::size_t kPruneBatch = 1000;
constexpr std::size_t kErrorBodySnippet = 200;
// The dispatcher re-checks at least this often even with nothing due (a
// cheap guard against a missed wake-up; never needed for correctness).
constexpr std::chrono::seconds kMaxSleep{30};
// After this many completions, the next time the dispatcher runs out of due
// work it hands freed heap back to the OS (see run()).
constexpr std::uint64_t kTrimAfterCompletions = 1000;
// How long a score or evaluation delivery whose request is still pending
// waits before it looks for the record again (not counted as an attempt).
constexpr std::chrono::microseconds kRecordWait{std::chrono::milliseconds(100)};
// Hand-off bounds (webhook_service.hpp): the records' bytes and the number
// of deliveries held (one record's cap: record_handoff.hpp). A dispatcher
// keeping up holds a few milliseconds' worth; one behind reads its backlog
// back anyway, so the bounds are small (memory held by a backlog shows in RSS).
constexpr std::size_t kHandoffBudgetBytes = 1u << 20;
constexpr std::size_t kMaxHanded = 1024;
// A handed-over delivery not taken within this long is dropped (its attempt
// reads it back). Besides bounding a backlog, this is what frees the rare
// entry whose delivery the dispatcher read back and sent before
// records_written handed it over (the storage thread commits, then calls
// records_written; the dispatcher may pass in between).
constexpr std::chrono::seconds kHandedMaxAge{5};
// Passes over the queues are at least this far apart while no webhook has
// all its slots taken: under a steady flow every completion and every
// committed batch woke the dispatcher for a pass of its own (a seek per
// webhook, a write per completion). Delivery is that much later, at most.
constexpr std::chrono::milliseconds kPassInterval{2};

rocksdb::Slice slice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}
std::string_view view(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

// Deliveries the listener calls added, per webhook, until a *_written()
// reports their batch committed. A listener call and its *_written() run on
// the same thread (write_listener.hpp), but a writer may offer one batch
// several times before committing it (the score store's group commit calls
// on_scores once per write in the group, then scores_written once per
// write): so listener calls accumulate here and the first *_written() after
// them takes everything. After a failed commit of scores or an evaluation
// (no *_written) the entries are counted with the next batch — only the
// enqueued counter and the dispatcher's seek position (lowered, so never
// skipping) are affected. The request log makes one on_records call per
// write, so on_records starts afresh.
struct EnqueuedStash {
  const void* owner = nullptr;
  std::vector<std::uint64_t> per_hook;
  std::vector<std::int64_t> earliest_due;  // per hook, of the entries added
  bool any = false;
};

void lower_to(std::atomic<std::int64_t>& a, std::int64_t v) {
  std::int64_t cur = a.load();
  while (v < cur && !a.compare_exchange_weak(cur, v)) {
  }
}
thread_local EnqueuedStash t_stash;

std::string be64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xFF);
  return out;
}

// What went wrong with an attempt, for the attempt log.
std::string attempt_error(const OutboundResponse& r) {
  if (!r.error.empty()) return r.error;
  if (r.ok()) return "";
  std::string e;
  if (r.status >= 300 && r.status < 400) {
    e = "HTTP " + std::to_string(r.status) + " (redirects are not followed)";
  } else {
    e = "HTTP " + std::to_string(r.status);
  }
  if (!r.body.empty()) e += ": " + sanitize_utf8(r.body.substr(0, kErrorBodySnippet));
  return e;
}

// Retry-After in seconds (the HTTP-date form is ignored).
std::optional<std::int64_t> retry_after_us(const OutboundResponse& r) {
  std::optional<std::string_view> v;
  for (const auto& [name, value] : r.headers) {
    if (name == "retry-after") v = value;  // names are lower-cased by the client
  }
  if (!v) return std::nullopt;
  std::int64_t seconds = 0;
  const auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), seconds);
  if (ec != std::errc() || ptr != v->data() + v->size() || seconds < 0) return std::nullopt;
  return seconds * 1'000'000;
}

json score_list(std::span<const Score* const> scores) {
  json out = json::array();
  for (const Score* s : scores) out.push_back(to_json(*s));
  return out;
}

RequestRecord sample_record(std::string_view project, std::int64_t now) {
  RequestRecord r;
  r.request_id = random_uuid();
  r.project = std::string(project);
  r.created_at_us = now;
  r.response_at_us = now;
  r.latency_ms = 123;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = "gpt-4o-mini";
  r.response_model = "gpt-4o-mini";
  r.properties = {{"example", "true"}};
  r.prompt_tokens = 9;
  r.completion_tokens = 5;
  r.total_tokens = 14;
  r.request_body =
      R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"This is a test event from arbiter."}]})";
  r.response_body =
      R"({"id":"chatcmpl-test","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}})";
  return r;
}

}  // namespace

struct WebhookService::Hook {
  explicit Hook(const WebhookOptions& w) : standard_key(w.key), helicone_key(w.secret_text) {}
  // Deliveries with an attempt under way (or an unsent one being recorded):
  // id → the entry as stored when it was taken, which finish() updates.
  std::unordered_map<std::string, Delivery> in_flight;  // dispatcher thread only
  HmacSha256 standard_key;                       // dispatcher thread only
  HmacSha256 helicone_key;                       // dispatcher thread only
  // Where the dispatcher seeks this webhook's queue from. Queue entries are
  // deleted as they complete, and an LSM tree keeps the deletions around
  // until compaction: seeking from the start of the range would step over
  // every one of them on every pass. No queue entry is older than
  // min(scan_from, fresh_due): scan_from is the oldest entry the last pass
  // saw (dispatcher thread only); fresh_due the oldest one committed since
  // (lowered by writers after their commit, taken by the next pass).
  std::int64_t scan_from = INT64_MIN;
  std::atomic<std::int64_t> fresh_due{INT64_MAX};
  std::atomic<std::uint64_t> enqueued{0};
  std::atomic<std::uint64_t> attempts{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> dead{0};
  std::atomic<std::uint64_t> skipped{0};
  std::atomic<std::uint64_t> handed{0};
  std::atomic<std::uint64_t> in_flight_n{0};
};

namespace {

OutboundRequest signed_request(const WebhookOptions& hook, std::string_view id, std::int64_t timestamp_s,
                               std::string body, std::string standard, std::string helicone) {
  OutboundRequest r;
  r.method = "POST";
  r.url = hook.url;
  r.timeout = hook.timeout;
  r.allow_private = hook.allow_insecure;
  r.ca_file = hook.ca_file;
  r.headers.reserve(5 + hook.headers.size());
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back("webhook-id", std::string(id));
  r.headers.emplace_back("webhook-timestamp", std::to_string(timestamp_s));
  r.headers.emplace_back("webhook-signature", std::move(standard));
  r.headers.emplace_back("Helicone-Signature", std::move(helicone));
  for (const auto& h : hook.headers) r.headers.push_back(h);
  r.body = std::move(body);
  return r;
}

}  // namespace

OutboundRequest webhook_request(const WebhookOptions& hook, std::string_view id,
                                std::int64_t timestamp_s, std::string body) {
  std::string standard = standard_webhook_signature(hook.key, id, timestamp_s, body);
  std::string helicone = helicone_signature(hook.secret_text, body);
  return signed_request(hook, id, timestamp_s, std::move(body), std::move(standard), std::move(helicone));
}

WebhookService::WebhookService(RequestLog& log, WebhookServiceOptions options,
                               std::unique_ptr<WebhookTransport> transport)
    : log_(log),
      options_(std::move(options)),
      transport_(std::move(transport)),
      handoff_(kHandoffBudgetBytes) {
  for (auto& w : options_.webhooks) {
    if (w.max_in_flight == 0) w.max_in_flight = 1;
    if (w.retry.max_attempts == 0) w.retry.max_attempts = 1;
    hooks_.push_back(std::make_unique<Hook>(w));
  }
  rng_.seed(options_.jitter_seed != 0 ? options_.jitter_seed : std::random_device{}());
}

WebhookService::~WebhookService() {
  stop();
}

std::int64_t WebhookService::now_us() const {
  if (options_.now_us) return options_.now_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void WebhookService::start() {
  std::lock_guard lk(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { run(); });
}

void WebhookService::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Cancels the calls in flight; their callbacks only queue completions that
  // nobody records, so those deliveries stay queued for the next start.
  std::unique_lock tl(transport_mu_);
  transport_.reset();
}

void WebhookService::kick() {
  bool wake = false;
  {
    std::lock_guard lk(mu_);
    kick_ = true;
    wake = waiting_for_work_;
  }
  if (wake) cv_.notify_one();
}

void WebhookService::set_error(std::string message) {
  std::lock_guard lk(error_mu_);
  last_error_ = std::move(message);
}

std::string WebhookService::last_error() const {
  std::lock_guard lk(error_mu_);
  return last_error_;
}

// ---- writing (listener)

void WebhookService::enqueue(const Store::Lease& db, rocksdb::WriteBatch& batch, Delivery& d) {
  d.id = new_delivery_id();
  d.state = DeliveryState::kPending;
  d.created_at_us = now_us();
  d.next_attempt_at_us = d.created_at_us;
  outbox::append(db, batch, d);
  const auto it = std::find_if(options_.webhooks.begin(), options_.webhooks.end(),
                               [&](const WebhookOptions& w) { return w.name == d.webhook; });
  if (t_stash.owner == this && it != options_.webhooks.end()) {
    const auto i = static_cast<std::size_t>(it - options_.webhooks.begin());
    ++t_stash.per_hook[i];
    t_stash.earliest_due[i] = std::min(t_stash.earliest_due[i], d.next_attempt_at_us);
    t_stash.any = true;
  }
}

namespace {
void begin_stash(const void* owner, std::size_t hooks) {
  if (t_stash.owner == owner) return;  // still accumulating for an uncommitted batch
  t_stash.owner = owner;
  t_stash.per_hook.assign(hooks, 0);
  t_stash.earliest_due.assign(hooks, INT64_MAX);
  t_stash.any = false;
}
}  // namespace

void WebhookService::on_records(const Store::Lease& db, std::span<const RequestRecord* const> records,
                                rocksdb::WriteBatch& batch) {
  // One on_records per write of the log's (its storage thread makes no other
  // listener calls): anything still staged is from an attempt whose commit
  // failed, and was never written.
  t_stash.owner = nullptr;
  handing_.clear();
  begin_stash(this, hooks_.size());
  for (const RequestRecord* r : records) {
    std::shared_ptr<const RequestRecord> shared;  // taken for the record's first delivery
    bool tried = false;
    for (const auto& w : options_.webhooks) {
      if (!w.wants(WebhookEvent::kRequestLogged)) continue;
      if (!w.applies_to(r->project) || !sampled(w.sample_rate, r->request_id) ||
          !properties_match(w.property_filters, r->properties)) {
        continue;
      }
      Delivery d;
      d.webhook = w.name;
      d.project = r->project;
      d.event = WebhookEvent::kRequestLogged;
      d.request_id = r->request_id;
      enqueue(db, batch, d);
      if (!tried) {
        tried = true;
        if (handed_count_.load(std::memory_order_relaxed) + handing_.size() < kMaxHanded) {
          shared = handoff_.take(*r);
        }
      }
      if (shared) handing_.push_back({std::move(d), shared});
    }
  }
}

void WebhookService::records_written(std::span<const RequestRecord* const>) {
  if (!handing_.empty()) {
    const auto at = std::chrono::steady_clock::now();
    std::lock_guard lk(handed_mu_);
    handed_count_.fetch_add(handing_.size(), std::memory_order_relaxed);
    for (auto& h : handing_) {
      h.at = at;
      std::string id = h.delivery.id;
      handed_.emplace(std::move(id), std::move(h));
    }
    handing_.clear();
  }
  committed();
}

void WebhookService::committed() {
  if (t_stash.owner != this) return;
  for (std::size_t i = 0; i < hooks_.size(); ++i) {
    hooks_[i]->enqueued += t_stash.per_hook[i];
    if (t_stash.per_hook[i] != 0) lower_to(hooks_[i]->fresh_due, t_stash.earliest_due[i]);
  }
  const bool any = t_stash.any;
  t_stash.owner = nullptr;
  if (any) kick();
}

void WebhookService::on_scores(const Store::Lease& db, std::string_view project,
                               std::span<const Score> scores, rocksdb::WriteBatch& batch) {
  begin_stash(this, hooks_.size());
  bool wanted = false;
  for (const auto& w : options_.webhooks) {
    wanted = wanted || (w.wants(WebhookEvent::kScoreCreated) && w.applies_to(project));
  }
  if (!wanted) return;

  // One delivery per target (request or session) and webhook.
  std::map<std::pair<std::string, std::string>, std::vector<const Score*>> groups;
  for (const Score& s : scores) {
    if (!s.request_id.empty()) {
      groups[{s.request_id, ""}].push_back(&s);
    } else {
      groups[{"", s.session_id}].push_back(&s);
    }
  }
  for (const auto& [target, members] : groups) {
    const auto& [request_id, session_id] = target;
    std::optional<std::optional<RequestRecord>> record;  // read once, when a filter needs it
    const json data = {{"scores", score_list(members)}};
    for (const auto& w : options_.webhooks) {
      if (!w.wants(WebhookEvent::kScoreCreated) || !w.applies_to(project)) continue;
      if (!sampled(w.sample_rate, request_id.empty() ? session_id : request_id)) continue;
      bool deferred = false;
      if (!w.property_filters.empty()) {
        if (request_id.empty()) continue;  // a session has no properties to match
        if (!record) {
          auto got = Store::get(db, project, request_id, /*include_bodies=*/false);
          // A failed read is treated like a record not stored yet: decided at send time.
          record.emplace(got.ok() ? std::move(*got) : std::optional<RequestRecord>());
        }
        if (!*record) {
          deferred = true;  // a call still in flight: decide at send time
        } else if (!properties_match(w.property_filters, (*record)->properties)) {
          continue;
        }
      }
      Delivery d;
      d.webhook = w.name;
      d.project = std::string(project);
      d.event = WebhookEvent::kScoreCreated;
      d.request_id = request_id;
      d.session_id = session_id;
      d.filter_deferred = deferred;
      d.data = data;
      enqueue(db, batch, d);
    }
  }
}

void WebhookService::scores_written(std::string_view, std::span<const Score>) {
  committed();
}

void WebhookService::on_evaluation(const Store::Lease& db, const EvaluationEvent& event,
                                   rocksdb::WriteBatch& batch) {
  begin_stash(this, hooks_.size());
  std::optional<std::optional<RequestRecord>> record;
  json data;
  for (const auto& w : options_.webhooks) {
    if (!w.wants(WebhookEvent::kEvaluationCompleted) || !w.applies_to(event.project)) continue;
    if (!sampled(w.sample_rate, event.request_id)) continue;
    bool deferred = false;
    if (!w.property_filters.empty()) {
      if (!record) {
        auto got = Store::get(db, event.project, event.request_id, /*include_bodies=*/false);
        record.emplace(got.ok() ? std::move(*got) : std::optional<RequestRecord>());
      }
      if (!*record) {
        deferred = true;
      } else if (!properties_match(w.property_filters, (*record)->properties)) {
        continue;
      }
    }
    if (data.is_null()) {
      std::vector<const Score*> members;
      for (const auto& s : event.scores) members.push_back(&s);
      data = {{"evaluation",
               {{"evaluator", sanitize_utf8(event.evaluator)},
                {"run_id", sanitize_utf8(event.run_id)},
                {"state", sanitize_utf8(event.state)},
                {"attempts", event.attempts},
                {"duration_ms", static_cast<double>(event.duration_us) / 1000.0},
                {"error", event.error.empty() ? json(nullptr) : json(sanitize_utf8(event.error))}}},
              {"scores", score_list(members)}};
    }
    Delivery d;
    d.webhook = w.name;
    d.project = event.project;
    d.event = WebhookEvent::kEvaluationCompleted;
    d.request_id = event.request_id;
    d.filter_deferred = deferred;
    d.data = data;
    enqueue(db, batch, d);
  }
}

void WebhookService::evaluation_written(const EvaluationEvent&) {
  committed();
}

// ---- sending (dispatcher thread)

void WebhookService::collect_handed() {
  {
    std::lock_guard lk(handed_mu_);
    if (handed_taken_.empty()) {
      handed_taken_.swap(handed_);
    } else {
      handed_taken_.merge(handed_);  // delivery ids are unique: takes every node
    }
  }
  const auto now = std::chrono::steady_clock::now();
  if (now < next_handed_sweep_) return;
  next_handed_sweep_ = now + std::chrono::seconds(1);
  std::erase_if(handed_taken_, [&](const auto& entry) {
    if (now - entry.second.at < kHandedMaxAge) return false;
    handed_count_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  });
}

std::int64_t WebhookService::backoff_us(const WebhookOptions& hook, std::uint32_t failures,
                                        const OutboundResponse& response) {
  const std::int64_t cap = std::chrono::duration_cast<std::chrono::microseconds>(hook.retry.max_backoff).count();
  std::int64_t ceiling =
      std::chrono::duration_cast<std::chrono::microseconds>(hook.retry.initial_backoff).count();
  for (std::uint32_t i = 1; i < failures && ceiling < cap; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap);
  std::int64_t delay =
      ceiling > 0 ? std::uniform_int_distribution<std::int64_t>(0, ceiling)(rng_) : 0;
  if (const auto after = retry_after_us(response)) delay = std::max(delay, std::min(*after, cap));
  return delay;
}

std::int64_t WebhookService::dispatch(std::vector<Completion>& unsent) {
  struct Ready {
    std::size_t hook;
    std::string id;
    std::string body;
  };
  std::vector<Ready> ready;
  const std::int64_t now = now_us();
  std::int64_t next_due = INT64_MAX;
  saturated_ = false;
  collect_handed();

  auto scanned = log_.with_store([&](Store& store) -> Expected<void> {
    auto lease = store.lease();
    if (!lease.ok()) return std::move(lease).error();
    const Store::Lease& db = *lease;
    std::vector<Delivery> skipped;
    std::vector<std::string> stale;  // queue keys whose delivery moved on or vanished
    for (std::size_t i = 0; i < hooks_.size(); ++i) {
      Hook& h = *hooks_[i];
      const WebhookOptions& w = options_.webhooks[i];
      if (h.in_flight.size() >= w.max_in_flight) {
        saturated_ = true;
        continue;
      }
      const std::string prefix = outbox::queue_prefix(w.name);
      const std::string end = keys::prefix_end(prefix);
      rocksdb::Slice upper(end);
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper;
      // Taken before the iterator exists, so the iterator's implicit snapshot
      // holds every entry whose due time this takes; whatever is committed
      // after it lowers fresh_due again for the next pass. (Taken after,
      // an entry committed in between was neither seen nor kept: lost until
      // some later write lowered the seek position below it.)
      const std::int64_t from = std::min(h.scan_from, h.fresh_due.exchange(INT64_MAX));
      h.scan_from = INT64_MIN;  // until this pass completes: an early return rescans everything
      std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(ro, db.cf(ColumnFamily::kOutbox)));
      std::string seek_key = prefix;
      if (from != INT64_MIN) keys::append_ts(seek_key, from);
      std::int64_t oldest_seen = INT64_MAX;
      for (it->Seek(slice(seek_key)); it->Valid(); it->Next()) {
        const std::string_view key = view(it->key());
        const std::string_view rest = key.substr(prefix.size());
        if (rest.size() < 8) {
          stale.emplace_back(key);
          continue;
        }
        const std::int64_t due = keys::decode_ts(rest.substr(0, 8));
        oldest_seen = std::min(oldest_seen, due);
        if (h.in_flight.size() >= w.max_in_flight) {
          saturated_ = true;
          break;
        }
        if (due > now) {
          next_due = std::min(next_due, due);
          break;
        }
        std::string id(rest.substr(8));
        if (h.in_flight.count(id) != 0) continue;
        std::shared_ptr<const RequestRecord> handed_record;
        std::optional<Delivery> taken;
        if (auto node = handed_taken_.extract(id); !node.empty()) {
          handed_count_.fetch_sub(1, std::memory_order_relaxed);
          taken.emplace(std::move(node.mapped().delivery));
          handed_record = std::move(node.mapped().record);
          ++h.handed;
        } else {
          auto loaded = outbox::load(store, id);
          if (!loaded.ok()) return std::move(loaded).error();
          if (!*loaded || !(*loaded)->queued()) {
            stale.emplace_back(key);
            continue;
          }
          taken.emplace(std::move(**loaded));
        }
        Delivery& d = h.in_flight.emplace(id, std::move(*taken)).first->second;
        auto fail = [&](std::string error, bool waiting_for_record = false) {
          Completion c;
          c.hook = i;
          c.id = id;
          c.response.error = std::move(error);
          c.started_us = now;
          c.sent = false;
          c.waiting_for_record = waiting_for_record;
          unsent.push_back(std::move(c));
        };

        std::optional<RequestRecord> record;
        if (handed_record) {
          // As committed with this delivery (request.logged): nothing to read.
        } else if (!d.request_id.empty()) {
          // Asked before the read: a request leaves "pending" only once it is
          // stored, so a read after a "no" is final.
          const bool pending = d.event != WebhookEvent::kRequestLogged && log_.pending(d.project, d.request_id);
          auto got = store.get(d.project, d.request_id, w.include_bodies);
          if (!got.ok()) {
            fail("cannot read request " + d.request_id + ": " + got.error().message);
            continue;
          }
          record = std::move(*got);
          if (!record && d.event == WebhookEvent::kRequestLogged) {
            fail("request " + d.request_id + " is no longer stored");
            continue;
          }
          if (!record && pending) {
            // Not an attempt: nothing went to the receiver, and a request can
            // be pending for as long as its stream lasts, or behind a storage
            // backlog. Counting these waits made deliveries go dead under load.
            fail("request " + d.request_id + " is not stored yet", /*waiting_for_record=*/true);
            continue;
          }
          // A score or evaluation event whose request will never be stored
          // (relaxed durability lost it at a crash, or retention deleted it)
          // is sent without the record rather than retried until dead; one
          // whose webhook filters on properties cannot be matched and is
          // skipped.
          if (d.filter_deferred && (!record || !properties_match(w.property_filters, record->properties))) {
            skipped.push_back(std::move(d));
            h.in_flight.erase(id);
            continue;
          }
        }
        WebhookEventData ev;
        ev.event = d.event;
        ev.record = handed_record ? handed_record.get() : record ? &*record : nullptr;
        if (ev.record == nullptr) ev.request_id = d.request_id;
        ev.session_id = d.session_id;
        ev.data = &d.data;
        ready.push_back({i, std::move(id), serialize_payload(webhook_payload(ev, w.include_bodies))});
      }
      if (!it->status().ok()) return status_error("read webhook queue", it->status());
      h.scan_from = oldest_seen;
    }
    if (skipped.empty() && stale.empty()) return {};
    std::lock_guard tl(transition_mu_);
    rocksdb::WriteBatch batch;
    for (const auto& k : stale) (void)batch.Delete(db.cf(ColumnFamily::kOutbox), slice(k));
    for (const auto& d : skipped) {
      // Re-read under the lock: only remove what is still queued.
      auto cur = outbox::load(store, d.id);
      if (cur.ok() && *cur && (*cur)->queued()) outbox::remove(db, batch, **cur);
    }
    if (auto w = store.commit(db, batch, /*sync=*/false); !w.ok()) {
      return Error{w.error().code, "update webhook queue: " + w.error().message};
    }
    for (const auto& d : skipped) {
      for (std::size_t i = 0; i < hooks_.size(); ++i) {
        if (options_.webhooks[i].name == d.webhook) ++hooks_[i]->skipped;
      }
    }
    return {};
  });
  if (!scanned.ok()) set_error(scanned.error().message);

  std::shared_lock tl(transport_mu_);
  for (auto& r : ready) {
    Hook& h = *hooks_[r.hook];
    if (!transport_) {
      h.in_flight.erase(r.id);
      continue;
    }
    const std::int64_t started = now_us();
    const std::int64_t ts = started / 1'000'000;
    std::string standard = standard_webhook_signature(h.standard_key, r.id, ts, r.body);
    std::string helicone = helicone_signature(h.helicone_key, r.body);
    OutboundRequest req = signed_request(options_.webhooks[r.hook], r.id, ts, std::move(r.body),
                                         std::move(standard), std::move(helicone));
    req.max_response_bytes = options_.max_response_bytes;
    ++h.attempts;
    ++h.in_flight_n;
    const auto t0 = std::chrono::steady_clock::now();
    transport_->send(std::move(req), [this, hook = r.hook, id = r.id, started, t0](OutboundResponse res) {
      Completion c;
      c.hook = hook;
      c.id = id;
      c.response = std::move(res);
      c.started_us = started;
      c.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - t0)
                          .count();
      bool wake = false;
      {
        std::lock_guard lk(mu_);
        completions_.push_back(std::move(c));
        wake = waiting_for_work_;
      }
      if (wake) cv_.notify_one();
    });
  }
  return next_due;
}

void WebhookService::finish(std::vector<Completion>& done) {
  const std::int64_t now = now_us();
  struct Outcome {
    std::size_t hook;
    DeliveryState state;
    std::int64_t next_due;
    bool waited = false;  // waiting for its record: requeued, not an attempt
  };
  std::vector<Outcome> outcomes;
  auto written = log_.with_store([&](Store& store) -> Expected<void> {
    auto lease = store.lease();
    if (!lease.ok()) return std::move(lease).error();
    const Store::Lease& db = *lease;
    std::lock_guard tl(transition_mu_);
    rocksdb::WriteBatch batch;
    std::map<std::pair<std::string, std::string>, std::uint64_t> delivered;
    for (auto& c : done) {
      const WebhookOptions& w = options_.webhooks[c.hook];
      // The entry as the dispatcher took it: nothing else changes a delivery
      // in flight (retry() takes dead ones only; pruning skips these).
      const auto held = hooks_[c.hook]->in_flight.find(c.id);
      if (held == hooks_[c.hook]->in_flight.end() || !held->second.queued()) continue;
      const Delivery& before = held->second;
      Delivery after = before;
      if (c.waiting_for_record) {
        after.next_attempt_at_us = now + kRecordWait.count();
        outbox::update(db, batch, before, after);
        outcomes.push_back({c.hook, after.state, after.next_attempt_at_us, /*waited=*/true});
        continue;
      }
      ++after.attempt_count;
      after.attempts.push_back(
          {c.started_us, c.response.status, attempt_error(c.response), c.duration_us});
      if (after.attempts.size() > kMaxStoredAttempts) {
        after.attempts.erase(after.attempts.begin(),
                             after.attempts.end() - static_cast<std::ptrdiff_t>(kMaxStoredAttempts));
      }
      if (c.response.ok()) {
        after.state = DeliveryState::kDelivered;
        after.next_attempt_at_us = 0;
        ++delivered[{after.project, after.webhook}];
      } else if (after.attempt_count - after.run_start >= w.retry.max_attempts) {
        after.state = DeliveryState::kDead;
        after.next_attempt_at_us = 0;
      } else {
        after.state = DeliveryState::kRetrying;
        after.next_attempt_at_us = now + backoff_us(w, after.attempt_count - after.run_start, c.response);
      }
      outbox::update(db, batch, before, after);
      outcomes.push_back({c.hook, after.state, after.next_attempt_at_us});
    }
    for (const auto& [key, n] : delivered) {
      auto total = outbox::delivered_total(store, key.first, key.second);
      if (!total.ok()) return std::move(total).error();
      (void)batch.Put(db.cf(ColumnFamily::kOutbox), outbox::counter_key(key.first, key.second),
                      be64(*total + n));
    }
    // Not fsynced: losing this write on power loss means re-sending, which
    // at-least-once allows; an fsync per completion batch would not be worth it.
    if (auto w = store.commit(db, batch, /*sync=*/false); !w.ok()) {
      return Error{w.error().code, "record webhook attempts: " + w.error().message};
    }
    return {};
  });
  if (!written.ok()) {
    set_error(written.error().message);
    outcomes.clear();
  }
  for (const auto& o : outcomes) {
    Hook& h = *hooks_[o.hook];
    if (o.state == DeliveryState::kRetrying || o.waited) h.scan_from = std::min(h.scan_from, o.next_due);
    if (o.waited) continue;
    if (o.state == DeliveryState::kDelivered) {
      ++h.delivered;
    } else {
      ++h.failed;
      if (o.state == DeliveryState::kDead) ++h.dead;
    }
  }
  for (const auto& c : done) {
    Hook& h = *hooks_[c.hook];
    h.in_flight.erase(c.id);
    if (c.sent) --h.in_flight_n;
  }
}

void WebhookService::prune() {
  const std::int64_t cutoff =
      now_us() - static_cast<std::int64_t>(options_.retention_days) * 86'400'000'000LL;
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
    }
    std::size_t removed = 0;
    bool more = false;
    auto r = log_.with_store([&](Store& store) -> Expected<void> {
      auto lease = store.lease();
      if (!lease.ok()) return std::move(lease).error();
      const Store::Lease& db = *lease;
      std::string upper_key(1, outbox::kPruneTag);
      keys::append_ts(upper_key, cutoff);
      const std::string lower_key(1, outbox::kPruneTag);
      rocksdb::Slice upper(upper_key);
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper;
      std::unique_ptr<rocksdb::Iterator> it(db.db().NewIterator(ro, db.cf(ColumnFamily::kOutbox)));
      std::vector<std::string> ids;
      for (it->Seek(slice(lower_key)); it->Valid() && ids.size() < kPruneBatch; it->Next()) {
        const std::string_view rest = view(it->key()).substr(1);
        if (rest.size() < 8) continue;
        ids.emplace_back(rest.substr(8));
      }
      if (!it->status().ok()) return status_error("scan outbox for pruning", it->status());
      more = ids.size() == kPruneBatch;
      std::lock_guard tl(transition_mu_);
      rocksdb::WriteBatch batch;
      for (const auto& id : ids) {
        bool busy = false;
        for (const auto& h : hooks_) busy = busy || h->in_flight.count(id) != 0;
        if (busy) continue;
        auto d = outbox::load(store, id);
        if (!d.ok()) return std::move(d).error();
        if (!*d) continue;
        outbox::remove(db, batch, **d);
        ++removed;
      }
      if (auto w = store.commit(db, batch, /*sync=*/false); !w.ok()) {
        return Error{w.error().code, "prune outbox: " + w.error().message};
      }
      return {};
    });
    if (!r.ok()) {
      if (r.error().code != ErrorCode::kUnavailable) set_error(r.error().message);
      return;
    }
    if (!more || removed == 0) return;
  }
}

void WebhookService::run() {
  enter_background_thread("arb-webhooks");
  using Clock = std::chrono::steady_clock;
  const bool pruning = options_.retention_days > 0;
  if (pruning) next_prune_ = Clock::now();
  std::vector<Completion> done;
  std::uint64_t since_trim = 0;
  for (;;) {
    const auto pass_start = Clock::now();
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      done.swap(completions_);
      kick_ = false;
    }
    if (!done.empty()) {
      since_trim += done.size();
      finish(done);
      done.clear();
    }
    std::vector<Completion> unsent;
    const std::int64_t next_due = dispatch(unsent);
    if (!unsent.empty()) {
      finish(unsent);
      continue;
    }
    if (pruning && Clock::now() >= next_prune_) {
      prune();
      next_prune_ = Clock::now() + options_.prune_interval;
    }
#if defined(__GLIBC__)
    // glibc gives every allocating thread its own arena, and after a burst
    // this one (payloads, records read back, RocksDB memtable blocks for the
    // attempt writes) and the outbound client's stay fragmented: measured
    // 80 MiB RSS at idle after a 10 s burst of 76k deliveries (51 MiB
    // without webhooks; MALLOC_ARENA_MAX=2 avoids it too). Handing the free
    // pages back once the burst is over brought it to 44 MiB.
    if (since_trim >= kTrimAfterCompletions && next_due == INT64_MAX) {
      bool idle = false;
      {
        std::lock_guard lk(mu_);
        idle = completions_.empty() && !kick_;
      }
      bool none_in_flight = true;
      for (const auto& h : hooks_) none_in_flight = none_in_flight && h->in_flight.empty();
      if (idle && none_in_flight) {
        malloc_trim(0);
        since_trim = 0;
      }
    }
#endif

    auto deadline = Clock::now() + kMaxSleep;
    if (next_due != INT64_MAX) {
      const std::int64_t wait = std::max<std::int64_t>(0, next_due - now_us());
      deadline = std::min(deadline, Clock::now() + std::chrono::microseconds(wait));
    }
    if (pruning) deadline = std::min(deadline, next_prune_);
    std::unique_lock lk(mu_);
    // Wake-ups meanwhile only set kick_ or queue completions (see kick()):
    // the thread is not woken for each.
    if (!saturated_) cv_.wait_until(lk, std::min(deadline, pass_start + kPassInterval), [&] { return stopping_; });
    waiting_for_work_ = true;
    cv_.wait_until(lk, deadline, [&] { return stopping_ || kick_ || !completions_.empty(); });
    waiting_for_work_ = false;
  }
}

// ---- API

const WebhookOptions* WebhookService::find(std::string_view project, std::string_view name) const {
  for (const auto& w : options_.webhooks) {
    if (w.name == name && w.applies_to(project)) return &w;
  }
  return nullptr;
}

Expected<WebhookService::Counts> WebhookService::counts(std::string_view project,
                                                        std::string_view webhook) const {
  return log_.with_store([&](Store& store) -> Expected<Counts> {
    Counts c;
    auto pending = outbox::count(store, outbox::state_prefix(project, DeliveryState::kPending, webhook));
    if (!pending.ok()) return std::move(pending).error();
    auto retrying = outbox::count(store, outbox::state_prefix(project, DeliveryState::kRetrying, webhook));
    if (!retrying.ok()) return std::move(retrying).error();
    auto dead = outbox::count(store, outbox::state_prefix(project, DeliveryState::kDead, webhook));
    if (!dead.ok()) return std::move(dead).error();
    auto delivered = outbox::delivered_total(store, project, webhook);
    if (!delivered.ok()) return std::move(delivered).error();
    c.pending = *pending;
    c.retrying = *retrying;
    c.dead = *dead;
    c.delivered = *delivered;
    return c;
  });
}

Expected<outbox::ListPage> WebhookService::deliveries(std::string_view project,
                                                      const outbox::ListQuery& query) const {
  std::vector<std::string> names;
  for (const auto& w : options_.webhooks) {
    if (w.applies_to(project)) names.push_back(w.name);
  }
  return log_.with_store(
      [&](Store& store) { return outbox::list(store, project, query, names); });
}

Expected<Delivery> WebhookService::retry(std::string_view project, std::string_view id) {
  if (!valid_delivery_id(id)) return not_found("delivery " + sanitize_utf8(id) + " not found");
  auto result = log_.with_store([&](Store& store) -> Expected<Delivery> {
    auto lease = store.lease();
    if (!lease.ok()) return std::move(lease).error();
    const Store::Lease& db = *lease;
    std::lock_guard tl(transition_mu_);
    auto loaded = outbox::load(store, id);
    if (!loaded.ok()) return std::move(loaded).error();
    if (!*loaded || (*loaded)->project != project || find(project, (*loaded)->webhook) == nullptr) {
      return not_found("delivery " + std::string(id) + " not found");
    }
    const Delivery& before = **loaded;
    if (before.state != DeliveryState::kDead) {
      return conflict("delivery " + before.id + " is " + std::string(to_string(before.state)) +
                      "; only dead deliveries can be retried");
    }
    Delivery after = before;
    after.state = DeliveryState::kPending;
    after.next_attempt_at_us = now_us();
    after.run_start = after.attempt_count;
    rocksdb::WriteBatch batch;
    outbox::update(db, batch, before, after);
    // Synced: the API answers "re-queued", so make it so.
    if (auto w = store.commit(db, batch, /*sync=*/true); !w.ok()) {
      return Error{w.error().code, "re-queue delivery: " + w.error().message};
    }
    for (std::size_t i = 0; i < hooks_.size(); ++i) {
      if (options_.webhooks[i].name == after.webhook) lower_to(hooks_[i]->fresh_due, after.next_attempt_at_us);
    }
    return after;
  });
  if (result.ok()) kick();
  return result;
}

Expected<WebhookService::TestResult> WebhookService::send_test(std::string_view project,
                                                               std::string_view webhook) {
  const WebhookOptions* w = find(project, webhook);
  if (w == nullptr) return not_found("webhook " + sanitize_utf8(webhook) + " not found");
  const std::int64_t now = now_us();
  const RequestRecord sample = sample_record(project, now);
  WebhookEventData ev;
  ev.event = WebhookEvent::kRequestLogged;
  ev.record = &sample;
  json payload = webhook_payload(ev, w->include_bodies);
  payload["test"] = true;
  TestResult out;
  out.webhook_id = new_delivery_id();
  OutboundRequest req = webhook_request(*w, out.webhook_id, now / 1'000'000, serialize_payload(payload));
  req.max_response_bytes = options_.max_response_bytes;
  std::shared_lock tl(transport_mu_);
  if (!transport_) return unavailable("webhook delivery is shut down");
  const auto t0 = std::chrono::steady_clock::now();
  OutboundResponse res = transport_->send_sync(std::move(req));
  out.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count();
  out.status = res.status;
  out.ok = res.ok();
  out.body = sanitize_utf8(std::string_view(res.body).substr(0, kTestBodySnippet));
  out.error = res.ok() ? std::string() : attempt_error(res);
  return out;
}

std::vector<std::pair<std::string, WebhookService::Stats>> WebhookService::stats() const {
  std::vector<std::pair<std::string, Stats>> out;
  for (std::size_t i = 0; i < hooks_.size(); ++i) {
    const Hook& h = *hooks_[i];
    Stats s;
    s.enqueued = h.enqueued.load();
    s.attempts = h.attempts.load();
    s.delivered = h.delivered.load();
    s.failed_attempts = h.failed.load();
    s.dead = h.dead.load();
    s.skipped = h.skipped.load();
    s.handed = h.handed.load();
    s.in_flight = h.in_flight_n.load();
    out.emplace_back(options_.webhooks[i].name, s);
  }
  return out;
}

}  // namespace arbiter::scoring
