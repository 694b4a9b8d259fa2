// The webhook outbox and delivery workers over a real RocksDB in a temp dir,
// with a scripted transport in place of the network: deliveries written with
// the data they report, signed, retried with backoff, dead-lettered and
// re-queued, resumed after a restart, filtered and sampled, isolated per
// project and per receiver.

#include "scoring/webhook_service.hpp"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>

#include "scoring/score_store.hpp"
#include "scoring/webhook_signing.hpp"
#include "tests/support/fake_upstream.hpp"
#include "tests/support/scripted_transport.hpp"
#include "tests/support/temp_dir.hpp"

namespace arbiter::scoring {
namespace {

using arbiter::testing::ScriptedTransport;
using arbiter::testing::TempDir;
using arbiter::testing::wait_until;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

OutboundResponse answer(int status, std::string body = {},
                        std::vector<std::pair<std::string, std::string>> headers = {}) {
  OutboundResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

std::optional<std::string> header(const OutboundRequest& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

WebhookOptions hook(std::string name, std::uint8_t events = static_cast<std::uint8_t>(
                                          WebhookEvent::kRequestLogged)) {
  WebhookOptions w;
  w.name = name;
  w.url = "https://receiver.example/" + name;
  w.secret_text = kSecret;
  w.key = *decode_webhook_secret(kSecret);
  w.events = events;
  w.retry.max_attempts = 3;
  w.retry.initial_backoff = 10ms;
  w.retry.max_backoff = 40ms;
  return w;
}

std::string id_of(int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", i);
  return buf;
}

RequestRecord record(const std::string& project, int i,
                     std::map<std::string, std::string> props = {}) {
  RequestRecord r;
  r.project = project;
  r.request_id = id_of(i);
  r.created_at_us = 1714564800000000 + i;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = "gpt-4o-mini";
  r.properties = std::move(props);
  r.request_body = R"({"model":"gpt-4o-mini","messages":[]})";
  r.response_body = R"({"id":"x","choices":[]})";
  return r;
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<RequestLog> log;
  std::unique_ptr<WebhookService> service;
  ScriptedTransport* transport = nullptr;  // owned by service

  void open(std::vector<WebhookOptions> hooks, ScriptedTransport::Handler handler,
            std::function<void(WebhookServiceOptions&)> tweak = {}) {
    RequestLogOptions o;
    o.path = (dir.path() / "data").string();
    log = std::make_unique<RequestLog>(std::move(o));
    WebhookServiceOptions so;
    so.webhooks = std::move(hooks);
    so.jitter_seed = 42;
    if (tweak) tweak(so);
    auto t = std::make_unique<ScriptedTransport>(std::move(handler));
    transport = t.get();
    service = std::make_unique<WebhookService>(*log, std::move(so), std::move(t));
    log->add_listener(service.get());
  }
  void close() {
    service->stop();
    transport = nullptr;
    ASSERT_TRUE(log->close().ok());
    service.reset();
    log.reset();
  }
  ~Fixture() {
    if (service) close();
  }

  void submit(RequestRecord r) {
    ASSERT_TRUE(log->submit(std::move(r)));
    ASSERT_TRUE(log->flush());
  }
  std::vector<Delivery> list(const std::string& project, std::function<void(outbox::ListQuery&)> set = {}) {
    outbox::ListQuery q;
    q.limit = 100;
    if (set) set(q);
    auto page = service->deliveries(project, q);
    EXPECT_TRUE(page.ok()) << (page.ok() ? "" : page.error().message);
    return page.ok() ? page->deliveries : std::vector<Delivery>{};
  }
  bool all_in(const std::string& project, DeliveryState state, std::size_t n) {
    const auto got = list(project);
    return got.size() == n && std::all_of(got.begin(), got.end(),
                                          [&](const Delivery& d) { return d.state == state; });
  }
};

TEST(WebhookService, RequestLoggedIsQueuedWithTheRecordThenDeliveredSigned) {
  Fixture f;
  f.open({hook("a")}, [](const OutboundRequest&) { return answer(200, "ok"); });
  f.submit(record("alpha", 1));

  // Written with the record, before any worker ran.
  auto queued = f.list("alpha");
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].state, DeliveryState::kPending);
  EXPECT_EQ(queued[0].request_id, id_of(1));
  EXPECT_EQ(queued[0].event, WebhookEvent::kRequestLogged);
  auto counts = f.service->counts("alpha", "a");
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->pending, 1u);
  EXPECT_TRUE(f.transport->requests().empty());

  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 1); }, 10s));
  const auto sent = f.transport->requests();
  ASSERT_EQ(sent.size(), 1u);
  const OutboundRequest& req = sent[0];
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, "https://receiver.example/a");
  EXPECT_FALSE(req.allow_private);
  EXPECT_EQ(header(req, "Content-Type"), "application/json");
  EXPECT_EQ(header(req, "webhook-id"), queued[0].id);
  const std::int64_t ts = std::stoll(header(req, "webhook-timestamp").value_or("0"));
  const std::string key = *decode_webhook_secret(kSecret);
  EXPECT_EQ(header(req, "webhook-signature"), standard_webhook_signature(key, queued[0].id, ts, req.body));
  EXPECT_EQ(header(req, "Helicone-Signature"), helicone_signature(kSecret, req.body));
  const json body = json::parse(req.body);
  EXPECT_EQ(body.at("event"), "request.logged");
  EXPECT_EQ(body.at("request_id"), id_of(1));
  EXPECT_TRUE(body.at("request_body").is_object());

  const auto done = f.list("alpha");
  ASSERT_EQ(done[0].attempts.size(), 1u);
  EXPECT_EQ(done[0].attempts[0].status, 200);
  EXPECT_TRUE(done[0].attempts[0].error.empty());
  counts = f.service->counts("alpha", "a");
  EXPECT_EQ(counts->pending, 0u);
  EXPECT_EQ(counts->delivered, 1u);
  const auto stats = f.service->stats();
  EXPECT_EQ(stats.at(0).second.enqueued, 1u);
  EXPECT_EQ(stats.at(0).second.delivered, 1u);
}

TEST(WebhookService, AReceiverFailingTwiceGetsTheSameBytesUntilItSucceeds) {
  Fixture f;
  std::atomic<int> calls{0};
  f.open({hook("a")}, [&](const OutboundRequest&) {
    return ++calls <= 2 ? answer(500, "boom") : answer(204);
  });
  f.submit(record("alpha", 1));
  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 1); }, 10s));
  const Delivery d = f.list("alpha").at(0);
  EXPECT_EQ(d.attempt_count, 3u);
  ASSERT_EQ(d.attempts.size(), 3u);
  EXPECT_EQ(d.attempts[0].status, 500);
  EXPECT_NE(d.attempts[0].error.find("HTTP 500: boom"), std::string::npos) << d.attempts[0].error;
  EXPECT_EQ(d.attempts[1].status, 500);
  EXPECT_EQ(d.attempts[2].status, 204);
  EXPECT_TRUE(d.attempts[2].error.empty());
  const auto sent = f.transport->requests();
  ASSERT_EQ(sent.size(), 3u);
  for (const auto& r : sent) {
    EXPECT_EQ(header(r, "webhook-id"), d.id);  // receivers dedupe on it
    EXPECT_EQ(r.body, sent[0].body);
  }
  EXPECT_EQ(f.service->stats().at(0).second.failed_attempts, 2u);
  // The first attempt was sent from the record in memory, the retries from
  // the record read back: the same bytes either way.
  EXPECT_EQ(f.service->stats().at(0).second.handed, 1u);
}

// Records with everything a payload shows, and what makes encoding hard:
// a stream whose body is only the raw SSE, truncation, invalid UTF-8,
// unknown tokens and cost.
std::vector<RequestRecord> varied_records(const std::string& project) {
  std::vector<RequestRecord> out;
  for (int i = 0; i < 6; ++i) {
    RequestRecord r = record(project, 100 + i, {{"env", i % 2 == 0 ? "prod" : "dev"}, {"team", "a\xff" "b"}});
    r.user_id = i == 0 ? "" : "user-" + std::to_string(i);
    r.session_id = i % 3 == 0 ? "sess\x80ion" : "";
    r.latency_ms = 123.456 + i;
    r.response_model = i % 2 == 0 ? "gpt-4o-mini-2024-07-18" : "";
    if (i != 1) {
      r.prompt_tokens = 10 + i;
      r.completion_tokens = 5;
      r.total_tokens = 15 + i;
      r.cost_usd = 0.000045 * (i + 1);
    }
    if (i == 2) {
      r.is_stream = true;
      r.response_body.clear();
      r.stream_raw = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
    }
    if (i == 3) {
      r.request_body = R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"cut)";
      r.request_truncated = true;
      r.status = 429;
    }
    if (i == 4) r.response_body = "not json \xfe";
    out.push_back(std::move(r));
  }
  return out;
}

TEST(WebhookService, FirstAttemptsSendTheCommittedRecordFromMemoryAsReadBack) {
  Fixture f;
  auto bare = hook("bare");
  bare.include_bodies = false;
  f.open({hook("full"), bare}, [](const OutboundRequest&) { return answer(200); });
  f.service->start();
  const auto records = varied_records("alpha");
  for (const auto& r : records) ASSERT_TRUE(f.log->submit(RequestRecord(r)));
  ASSERT_TRUE(f.log->flush());
  const auto n = records.size();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 2 * n); }, 10s));

  const auto stats = f.service->stats();
  for (const auto& [name, st] : stats) {
    EXPECT_EQ(st.delivered, n) << name;
    EXPECT_EQ(st.handed, n) << name;  // none read back
  }
  EXPECT_EQ(f.service->handed_held(), 0u);
  // Byte for byte what the dispatcher builds from the stored record.
  const auto sent = f.transport->requests();
  ASSERT_EQ(sent.size(), 2 * n);
  for (const auto& req : sent) {
    const bool full = req.url.ends_with("/full");
    const std::string id = json::parse(req.body).at("request_id");
    auto stored = f.log->get("alpha", id, /*include_bodies=*/true);
    ASSERT_TRUE(stored.ok() && stored->has_value()) << id;
    WebhookEventData ev;
    ev.record = &**stored;
    EXPECT_EQ(req.body, serialize_payload(webhook_payload(ev, full))) << id << (full ? " full" : " bare");
  }
}

TEST(WebhookService, RecordsOverTheHandoffCapAreReadBack) {
  Fixture f;
  f.open({hook("a")}, [](const OutboundRequest&) { return answer(200); });
  f.service->start();
  RequestRecord big = record("alpha", 1);
  big.response_body = R"({"id":"x","text":")" + std::string(300 << 10, 'y') + R"("})";
  ASSERT_TRUE(f.log->submit(RequestRecord(big)));
  ASSERT_TRUE(f.log->submit(record("alpha", 2)));
  ASSERT_TRUE(f.log->flush());
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 2); }, 10s));
  // The small one is handed over, unless the dispatcher passed between the
  // storage thread's commit and its hand-off and read it back (the race
  // webhook_service.cpp describes at kHandedMaxAge); the big one never is.
  EXPECT_LE(f.service->stats().at(0).second.handed, 1u);
  bool saw_big = false;
  for (const auto& req : f.transport->requests()) {
    const json body = json::parse(req.body);
    if (body.at("request_id") != id_of(1)) continue;
    saw_big = true;
    EXPECT_EQ(body.at("response_body").at("text").get<std::string>().size(), std::size_t{300 << 10});
  }
  EXPECT_TRUE(saw_big);
}

TEST(WebhookService, NetworkErrorsAndRedirectsAreFailures) {
  Fixture f;
  std::atomic<int> calls{0};
  f.open({hook("a")}, [&](const OutboundRequest&) {
    const int n = ++calls;
    if (n == 1) {
      OutboundResponse r;
      r.error = "connect 203.0.113.9:443: connection refused";
      return r;
    }
    if (n == 2) return answer(302, "", {{"location", "https://elsewhere.example/"}});
    return answer(200);
  });
  f.submit(record("alpha", 1));
  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 1); }, 10s));
  const Delivery d = f.list("alpha").at(0);
  ASSERT_EQ(d.attempts.size(), 3u);
  EXPECT_EQ(d.attempts[0].status, 0);
  EXPECT_NE(d.attempts[0].error.find("connection refused"), std::string::npos);
  EXPECT_EQ(d.attempts[1].status, 302);
  EXPECT_NE(d.attempts[1].error.find("redirects are not followed"), std::string::npos);
}

TEST(WebhookService, NeverSucceedingIsDeadThenRetryRequeuesIt) {
  Fixture f;
  std::atomic<bool> healthy{false};
  f.open({hook("a")}, [&](const OutboundRequest&) { return healthy ? answer(200) : answer(503); });
  f.submit(record("alpha", 1));
  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDead, 1); }, 10s));
  Delivery d = f.list("alpha").at(0);
  EXPECT_EQ(d.attempt_count, 3u);  // max_attempts
  EXPECT_EQ(f.transport->requests().size(), 3u);
  EXPECT_EQ(f.service->counts("alpha", "a")->dead, 1u);
  EXPECT_EQ(f.list("alpha", [](auto& q) { q.state = DeliveryState::kDead; }).size(), 1u);

  // Only the owning project may re-queue it, only a dead one, only a real id.
  auto other = f.service->retry("beta", d.id);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kNotFound);
  auto unknown = f.service->retry("alpha", "msg_00000000000000000000000000000000");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);

  healthy = true;
  auto requeued = f.service->retry("alpha", d.id);
  ASSERT_TRUE(requeued.ok()) << requeued.error().message;
  EXPECT_TRUE(requeued->state == DeliveryState::kPending);
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 1); }, 10s));
  d = f.list("alpha").at(0);
  EXPECT_EQ(d.attempt_count, 4u);
  EXPECT_EQ(d.attempts.back().status, 200);
  EXPECT_EQ(f.service->counts("alpha", "a")->dead, 0u);

  auto again = f.service->retry("alpha", d.id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
}

TEST(WebhookService, BackoffIsJitteredBelowTheCapAndHonoursRetryAfter) {
  Fixture f;
  std::atomic<int> calls{0};
  auto slow = hook("a");
  slow.retry.max_attempts = 5;
  slow.retry.initial_backoff = 60s;
  slow.retry.max_backoff = 120s;
  f.open({slow}, [&](const OutboundRequest&) {
    return ++calls == 1 ? answer(500) : answer(429, "", {{"retry-after", "90"}});
  });
  f.submit(record("alpha", 1));
  f.submit(record("alpha", 2));
  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kRetrying, 2); }, 10s));
  for (const Delivery& d : f.list("alpha")) {
    ASSERT_EQ(d.attempts.size(), 1u);
    const std::int64_t delay = d.next_attempt_at_us - d.attempts[0].at_us;
    if (d.attempts[0].status == 500) {
      // Full jitter: anywhere in [0, initial_backoff] (plus the attempt's own duration).
      EXPECT_GE(delay, 0);
      EXPECT_LE(delay, 60'000'000 + d.attempts[0].duration_us + 1'000'000);
    } else {
      EXPECT_EQ(d.attempts[0].status, 429);
      EXPECT_GE(delay, 90'000'000 - 1'000'000);  // Retry-After wins when longer
      EXPECT_LE(delay, 120'000'000 + d.attempts[0].duration_us + 1'000'000);
    }
  }
}

TEST(WebhookService, NewEntriesBehindAFutureRetryAreStillFound) {
  // The dispatcher seeks each queue from the oldest entry it knows of; an
  // entry committed later with an earlier due time must still be found. Each
  // record is a fresh chance for its commit to land while a pass is starting
  // (the window where the dispatcher once took an entry's due time but read
  // the queue from before its commit, and lost it: 1 in ~100 runs with three
  // records under load); nothing behind the retry rescues a lost one.
  Fixture f;
  auto w = hook("a");
  w.retry.initial_backoff = 60s;
  w.retry.max_backoff = 120s;
  std::atomic<int> calls{0};
  f.open({w}, [&](const OutboundRequest&) {
    return ++calls == 1 ? answer(503, "", {{"retry-after", "60"}}) : answer(200);
  });
  f.service->start();
  f.submit(record("alpha", 1));
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kRetrying, 1); }, 10s));
  constexpr int kRecords = 40;
  for (int i = 2; i <= kRecords; ++i) {
    f.submit(record("alpha", i));
    const auto delivered = static_cast<std::uint64_t>(i - 1);
    ASSERT_TRUE(wait_until([&] { return f.service->counts("alpha", "a")->delivered == delivered; }, 10s))
        << "record " << i;
  }
  EXPECT_EQ(f.list("alpha", [](auto& q) { q.state = DeliveryState::kDelivered; }).size(),
            static_cast<std::size_t>(kRecords - 1));
  EXPECT_EQ(f.list("alpha", [](auto& q) { q.state = DeliveryState::kRetrying; }).size(), 1u);
}

TEST(WebhookService, SamplingPropertyFiltersAndProjectsDecideWhatIsQueued) {
  Fixture f;
  auto prod = hook("prod-only");
  prod.property_filters = {{"env", "prod"}};
  auto half = hook("half");
  half.sample_rate = 50;
  auto none = hook("none");
  none.sample_rate = 0;
  auto beta = hook("beta-only");
  beta.projects = {"beta"};
  f.open({prod, half, none, beta}, [](const OutboundRequest&) { return answer(200); });
  std::size_t expect_half = 0;
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(f.log->submit(record("alpha", i, {{"env", i % 2 == 0 ? "prod" : "dev"}})));
    if (sampled(50, id_of(i))) ++expect_half;
  }
  ASSERT_TRUE(f.log->flush());
  auto of = [&](const char* name) {
    return f.list("alpha", [&](auto& q) { q.webhook = name; });
  };
  const auto prod_list = of("prod-only");
  EXPECT_EQ(prod_list.size(), 20u);
  for (const auto& d : prod_list) {
    const int i = std::stoi(d.request_id.substr(24));
    EXPECT_EQ(i % 2, 0) << d.request_id;
  }
  EXPECT_EQ(of("half").size(), expect_half);
  EXPECT_GT(expect_half, 0u);
  EXPECT_LT(expect_half, 40u);
  EXPECT_TRUE(of("none").empty());
  // A webhook scoped to another project neither receives nor lists alpha's data.
  EXPECT_TRUE(f.list("alpha", [&](auto& q) { q.webhook = "beta-only"; }).empty());
  EXPECT_TRUE(f.list("beta").empty());
}

TEST(WebhookService, ListingPagesNewestFirstAndFilters) {
  Fixture f;
  f.open({hook("a"), hook("b")}, [](const OutboundRequest&) { return answer(200); });
  for (int i = 0; i < 15; ++i) f.submit(record("alpha", i));
  f.submit(record("beta", 99));
  std::vector<Delivery> all;
  std::string cursor;
  for (int page = 0; page < 20; ++page) {
    outbox::ListQuery q;
    q.limit = 7;
    q.cursor = cursor;
    auto got = f.service->deliveries("alpha", q);
    ASSERT_TRUE(got.ok()) << got.error().message;
    all.insert(all.end(), got->deliveries.begin(), got->deliveries.end());
    cursor = got->next_cursor;
    if (cursor.empty()) break;
  }
  ASSERT_EQ(all.size(), 30u);
  std::set<std::string> ids;
  for (std::size_t i = 0; i < all.size(); ++i) {
    ids.insert(all[i].id);
    EXPECT_EQ(all[i].project, "alpha");
    if (i > 0) {
      EXPECT_TRUE(all[i - 1].created_at_us > all[i].created_at_us ||
                  (all[i - 1].created_at_us == all[i].created_at_us && all[i - 1].id > all[i].id));
    }
  }
  EXPECT_EQ(ids.size(), 30u);
  EXPECT_EQ(f.list("alpha", [](auto& q) { q.request_id = id_of(3); }).size(), 2u);
  EXPECT_EQ(f.list("alpha", [](auto& q) {
               q.request_id = id_of(3);
               q.webhook = "b";
             }).size(),
            1u);
  EXPECT_EQ(f.list("alpha", [](auto& q) { q.state = DeliveryState::kPending; }).size(), 30u);
  EXPECT_TRUE(f.list("alpha", [](auto& q) { q.state = DeliveryState::kDead; }).empty());
  EXPECT_EQ(f.list("beta").size(), 2u);

  outbox::ListQuery bad;
  bad.cursor = "not-a-cursor";
  auto r = f.service->deliveries("alpha", bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TEST(WebhookService, ScoreSubmissionsCreateScoreDeliveries) {
  Fixture f;
  f.open({hook("scores", static_cast<std::uint8_t>(WebhookEvent::kScoreCreated))},
         [](const OutboundRequest&) { return answer(200); });
  ScoreStore scores(*f.log);
  f.submit(record("alpha", 1, {{"env", "prod"}}));
  EXPECT_TRUE(f.list("alpha").empty()) << "request.logged is not subscribed";
  ASSERT_TRUE(scores
                  .submit("alpha", id_of(1),
                          {{"accuracy", ScoreDataType::kNumeric, 90},
                           {"helpful", ScoreDataType::kBoolean, 1}})
                  .ok());
  auto queued = f.list("alpha");
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].event, WebhookEvent::kScoreCreated);

  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 1); }, 10s));
  const json body = json::parse(f.transport->requests().at(0).body);
  EXPECT_EQ(body.at("event"), "score.created");
  EXPECT_EQ(body.at("request_id"), id_of(1));
  EXPECT_EQ(body.at("properties").at("env"), "prod");
  ASSERT_EQ(body.at("scores").size(), 2u);
  std::set<std::string> names;
  for (const auto& s : body.at("scores")) names.insert(s.at("name").get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"accuracy", "helpful"}));
}

TEST(WebhookService, ScoresCommittedAsOneGroupAllGetTheirDeliveries) {
  // The score store offers a group of writes one by one (on_scores per
  // write), commits once, then reports each (scores_written per write).
  Fixture f;
  f.open({hook("scores", static_cast<std::uint8_t>(WebhookEvent::kScoreCreated))},
         [](const OutboundRequest&) { return answer(200); });
  ScoreStore scores(*f.log);
  for (int i = 1; i <= 3; ++i) f.submit(record("alpha", i));
  f.service->start();
  scores.pause_writer_for_testing(true);
  std::atomic<int> done{0};
  for (int i = 1; i <= 3; ++i) {
    scores.submit_async("alpha", id_of(i), {{"accuracy", ScoreDataType::kNumeric, 1.0 * i}},
                        [&](Expected<std::vector<Score>> r) {
                          EXPECT_TRUE(r.ok());
                          ++done;
                        });
  }
  scores.pause_writer_for_testing(false);
  ASSERT_TRUE(wait_until([&] { return done == 3; }, 10s));
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 3); }, 10s));
  EXPECT_EQ(f.service->stats().at(0).second.enqueued, 3u);
  EXPECT_EQ(f.transport->requests().size(), 3u);
}

TEST(WebhookService, AScoreOnACallInFlightChecksTheFiltersAtSendTime) {
  Fixture f;
  auto w = hook("prod-scores", static_cast<std::uint8_t>(WebhookEvent::kScoreCreated));
  w.property_filters = {{"env", "prod"}};
  w.retry.max_attempts = 50;
  f.open({w}, [](const OutboundRequest&) { return answer(200); });
  ScoreStore scores(*f.log);
  {
    auto inflight = f.log->inflight().track("alpha", id_of(1));
    ASSERT_TRUE(scores.submit("alpha", id_of(1), {{"accuracy", ScoreDataType::kNumeric, 1}}).ok());
    ASSERT_TRUE(f.log->submit(record("alpha", 1, {{"env", "dev"}})));
  }
  ASSERT_TRUE(f.log->flush());
  ASSERT_EQ(f.list("alpha").size(), 1u);  // queued: the record was not stored yet
  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.list("alpha").empty(); }, 10s));
  EXPECT_TRUE(f.transport->requests().empty()) << "env=dev does not match env=prod";
  EXPECT_EQ(f.service->stats().at(0).second.skipped, 1u);
}

// A score on project alpha's request `request`, offered to the listeners and
// committed the way the score writer does, without the request's record.
void offer_score(Fixture& f, int request) {
  Score s;
  s.id = "s-" + std::to_string(request);
  s.project = "alpha";
  s.request_id = id_of(request);
  s.name = "accuracy";
  s.value = 1;
  s.data_type = ScoreDataType::kNumeric;
  auto written = f.log->with_store([&](Store& store) -> Expected<void> {
    auto db = store.lease();
    if (!db.ok()) return std::move(db).error();
    rocksdb::WriteBatch batch;
    for (auto* l : f.log->listeners()) l->on_scores(*db, "alpha", std::span<const Score>(&s, 1), batch);
    return store.commit(*db, batch, /*sync=*/false);
  });
  ASSERT_TRUE(written.ok());
}

// A score event whose request will never be stored (relaxed durability lost
// it at a crash) is sent without the record, not retried until dead; while
// the request is still pending (in flight or queued) it waits for it; a
// webhook that filters on properties cannot match it and skips it.
TEST(WebhookService, ScoreEventsForRequestsThatWillNeverBeStoredAreSentWithoutTheRecord) {
  Fixture f;
  WebhookOptions filtered = hook("filtered", static_cast<std::uint8_t>(WebhookEvent::kScoreCreated));
  filtered.property_filters = {{"env", "prod"}};
  f.open({hook("scores", static_cast<std::uint8_t>(WebhookEvent::kScoreCreated)), filtered},
         [](const OutboundRequest&) { return answer(200); });
  offer_score(f, 1);  // request 1 never reaches the log
  {
    auto in_flight = f.log->inflight().track("alpha", id_of(2));
    offer_score(f, 2);  // request 2 is in flight: its delivery waits for the record
    f.service->start();
    ASSERT_TRUE(wait_until([&] { return f.transport->requests().size() == 1; }, 10s));
    ASSERT_TRUE(f.log->submit(record("alpha", 2)));
  }
  ASSERT_TRUE(f.log->flush());
  ASSERT_TRUE(wait_until([&] { return f.transport->requests().size() == 2; }, 10s));
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 2); }, 10s));

  const json lost = json::parse(f.transport->requests().at(0).body);
  EXPECT_EQ(lost.at("event"), "score.created");
  EXPECT_EQ(lost.at("request_id"), id_of(1));
  EXPECT_EQ(lost.at("scores").at(0).at("name"), "accuracy");
  const json stored = json::parse(f.transport->requests().at(1).body);
  EXPECT_EQ(stored.at("request_id"), id_of(2));
  EXPECT_NE(stored.dump().find("gpt-4o-mini"), std::string::npos) << stored.dump();  // with its record
  EXPECT_EQ(lost.dump().find("gpt-4o-mini"), std::string::npos) << lost.dump();      // without one
  // The filtering webhook could not match request 1 and skipped it; request 2
  // has no env=prod property either.
  EXPECT_EQ(f.service->stats().at(1).second.skipped, 2u);
}

// Waiting for a pending request's record is not an attempt. A score arriving
// mid-call (a long stream) or a storage backlog can keep a request pending
// far longer than a webhook's whole retry schedule (here 3 attempts, 10-40 ms
// apart); counting each look as a failed attempt made such deliveries dead
// (seen as a flake of the test above on two loaded cores).
TEST(WebhookService, WaitingForAPendingRecordIsNotAnAttempt) {
  Fixture f;
  f.open({hook("scores", static_cast<std::uint8_t>(WebhookEvent::kScoreCreated))},
         [](const OutboundRequest&) { return answer(200); });
  {
    auto in_flight = f.log->inflight().track("alpha", id_of(1));
    offer_score(f, 1);
    f.service->start();
    // Looked at again and again (its due time moves on each time), never dead.
    std::set<std::int64_t> dues;
    ASSERT_TRUE(wait_until(
        [&] {
          const auto got = f.list("alpha");
          if (got.size() != 1 || !got[0].queued()) return false;
          dues.insert(got[0].next_attempt_at_us);
          return dues.size() >= 5;
        },
        10s))
        << "state " << (f.list("alpha").empty() ? "none" : std::string(to_string(f.list("alpha")[0].state)));
    const Delivery waiting = f.list("alpha").at(0);
    EXPECT_EQ(waiting.state, DeliveryState::kPending);
    EXPECT_EQ(waiting.attempt_count, 0u);
    EXPECT_TRUE(waiting.attempts.empty());
    EXPECT_TRUE(f.transport->requests().empty());
    ASSERT_TRUE(f.log->submit(record("alpha", 1)));
  }
  ASSERT_TRUE(f.log->flush());
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 1); }, 10s));
  EXPECT_EQ(f.list("alpha").at(0).attempt_count, 1u);
  ASSERT_EQ(f.transport->requests().size(), 1u);
  EXPECT_NE(f.transport->requests().at(0).body.find("gpt-4o-mini"), std::string::npos);  // with its record
  EXPECT_EQ(f.service->stats().at(0).second.failed_attempts, 0u);
}

TEST(WebhookService, EvaluationCompletedFromTheListenerSeam) {
  Fixture f;
  f.open({hook("evals", static_cast<std::uint8_t>(WebhookEvent::kEvaluationCompleted))},
         [](const OutboundRequest&) { return answer(200); });
  f.submit(record("alpha", 1));
  EvaluationEvent ev;
  ev.project = "alpha";
  ev.request_id = id_of(1);
  ev.evaluator = "answer_length";
  ev.run_id = "run-1";
  ev.state = "completed";
  ev.attempts = 1;
  ev.duration_us = 2500;
  Score s;
  s.id = "s-1";
  s.project = "alpha";
  s.request_id = id_of(1);
  s.name = "answer_length";
  s.value = 17;
  s.source = ScoreSource::kEval;
  ev.scores.push_back(s);
  // What the evaluator runtime does: offer the batch, commit, report.
  auto written = f.log->with_store([&](Store& store) -> Expected<void> {
    auto db = store.lease();
    if (!db.ok()) return std::move(db).error();
    rocksdb::WriteBatch batch;
    for (auto* l : f.log->listeners()) l->on_evaluation(*db, ev, batch);
    return store.commit(*db, batch, /*sync=*/false);
  });
  ASSERT_TRUE(written.ok());
  for (auto* l : f.log->listeners()) l->evaluation_written(ev);
  ASSERT_EQ(f.list("alpha").size(), 1u);

  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 1); }, 10s));
  const json body = json::parse(f.transport->requests().at(0).body);
  EXPECT_EQ(body.at("event"), "evaluation.completed");
  EXPECT_EQ(body.at("request_id"), id_of(1));
  EXPECT_EQ(body.at("evaluation").at("evaluator"), "answer_length");
  EXPECT_EQ(body.at("evaluation").at("state"), "completed");
  EXPECT_DOUBLE_EQ(body.at("evaluation").at("duration_ms").get<double>(), 2.5);
  ASSERT_EQ(body.at("scores").size(), 1u);
  EXPECT_EQ(body.at("scores").at(0).at("value"), 17);
  EXPECT_EQ(body.at("scores").at(0).at("source"), "EVAL");
}

TEST(WebhookService, AHangingReceiverUsesOnlyItsOwnSlots) {
  Fixture f;
  auto slow = hook("slow");
  slow.max_in_flight = 2;
  f.open({slow, hook("fast")}, [](const OutboundRequest& r) -> std::optional<OutboundResponse> {
    if (r.url.find("/slow") != std::string::npos) return std::nullopt;  // never answers
    return answer(200);
  });
  for (int i = 0; i < 10; ++i) f.submit(record("alpha", i));
  f.service->start();
  ASSERT_TRUE(wait_until(
      [&] {
        return f.list("alpha", [](auto& q) {
                  q.webhook = "fast";
                  q.state = DeliveryState::kDelivered;
                }).size() == 10;
      },
      10s));
  std::size_t to_slow = 0;
  for (const auto& r : f.transport->requests()) to_slow += r.url.find("/slow") != std::string::npos;
  EXPECT_EQ(to_slow, 2u);
  const auto stats = f.service->stats();
  EXPECT_EQ(stats.at(0).second.in_flight, 2u);
  EXPECT_EQ(f.service->counts("alpha", "slow")->pending, 10u);
}

TEST(WebhookService, QueuedDeliveriesResumeAfterARestart) {
  Fixture f;
  f.open({hook("a")}, [](const OutboundRequest&) -> std::optional<OutboundResponse> {
    return std::nullopt;  // hang: the attempts never finish before the stop
  });
  for (int i = 0; i < 5; ++i) f.submit(record("alpha", i));
  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.transport->requests().size() == 4; }, 10s));  // max_in_flight
  f.close();  // cancels the calls in flight: nothing recorded as delivered

  f.open({hook("a")}, [](const OutboundRequest&) { return answer(200); });
  EXPECT_EQ(f.list("alpha", [](auto& q) { q.state = DeliveryState::kPending; }).size(), 5u);
  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 5); }, 10s));
  EXPECT_EQ(f.service->counts("alpha", "a")->delivered, 5u);
}

TEST(WebhookService, RetentionPrunesOldDeliveries) {
  Fixture f;
  std::atomic<std::int64_t> clock{1714564800000000};
  f.open({hook("a")}, [](const OutboundRequest&) { return answer(200); },
         [&](WebhookServiceOptions& o) {
           o.retention_days = 1;
           o.prune_interval = 10ms;
           o.now_us = [&] { return clock.load(); };
         });
  f.submit(record("alpha", 1));
  f.service->start();
  ASSERT_TRUE(wait_until([&] { return f.all_in("alpha", DeliveryState::kDelivered, 1); }, 10s));
  clock += 2 * 86'400'000'000LL;  // two days later
  ASSERT_TRUE(wait_until([&] { return f.list("alpha").empty(); }, 10s));
  EXPECT_EQ(f.service->counts("alpha", "a")->delivered, 1u) << "the total survives pruning";
}

TEST(WebhookService, TestSendReportsTheAnswerAndStoresNothing) {
  Fixture f;
  auto scoped = hook("beta-only");
  scoped.projects = {"beta"};
  f.open({hook("a"), scoped}, [](const OutboundRequest&) { return answer(202, "accepted"); });
  auto r = f.service->send_test("alpha", "a");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->body, "accepted");
  EXPECT_TRUE(valid_delivery_id(r->webhook_id));
  const auto sent = f.transport->requests();
  ASSERT_EQ(sent.size(), 1u);
  const json body = json::parse(sent[0].body);
  EXPECT_TRUE(body.at("test").get<bool>());
  EXPECT_EQ(body.at("event"), "request.logged");
  EXPECT_EQ(header(sent[0], "webhook-id"), r->webhook_id);
  EXPECT_TRUE(f.list("alpha").empty());

  auto unknown = f.service->send_test("alpha", "nope");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  auto other = f.service->send_test("alpha", "beta-only");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kNotFound);
}

TEST(WebhookOutbox, DeliveriesRoundTripThroughTheCodec) {
  Delivery d;
  d.id = new_delivery_id();
  d.webhook = "w";
  d.project = "alpha";
  d.event = WebhookEvent::kEvaluationCompleted;
  d.request_id = id_of(1);
  d.created_at_us = 123;
  d.state = DeliveryState::kRetrying;
  d.next_attempt_at_us = 456;
  d.attempt_count = 2;
  d.run_start = 1;
  d.attempts = {{1, 500, "HTTP 500", 10}, {2, 0, "timed out", 20}};
  d.filter_deferred = true;
  d.data = {{"scores", json::array({1, 2})}};
  auto back = decode_delivery(encode_delivery(d));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(encode_delivery(*back), encode_delivery(d));
  EXPECT_FALSE(decode_delivery("").ok());
  EXPECT_FALSE(decode_delivery(std::string("\x01garbage", 8)).ok());
  EXPECT_TRUE(valid_delivery_id(d.id));
  EXPECT_FALSE(valid_delivery_id("msg_xyz"));
  const json j = to_json(d);
  EXPECT_EQ(j.at("status"), "retrying");
  EXPECT_EQ(j.at("event"), "evaluation.completed");
  EXPECT_EQ(j.at("attempts").at(1).at("error"), "timed out");
  EXPECT_TRUE(j.at("attempts").at(1).at("status_code").is_null());
}

// Delivery ids lead with their creation time, so the outbox's 'D' entries of
// newer deliveries sort after the older ones (appended, not scattered over
// the key range, which made every compaction rewrite them all).
TEST(WebhookOutbox, DeliveryIdsSortByCreationTimeAndStayUnique) {
  const std::int64_t ms = 1795000000123;  // 2026-11-18
  const std::string a = new_delivery_id(ms);
  const std::string b = new_delivery_id(ms + 1);
  const std::string c = new_delivery_id(ms + 86'400'000);
  for (const auto& id : {a, b, c}) EXPECT_TRUE(valid_delivery_id(id)) << id;
  EXPECT_EQ(a.substr(0, 16), "msg_01a1ee565e7b") << a;  // 0x1a1ee565e7b ms
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  std::set<std::string> same_ms;
  for (int i = 0; i < 1000; ++i) same_ms.insert(new_delivery_id(ms));
  EXPECT_EQ(same_ms.size(), 1000u);
  for (const auto& id : same_ms) EXPECT_EQ(id.substr(0, 16), a.substr(0, 16));
  // The clock-reading overload stamps the current time.
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const std::string fresh = new_delivery_id();
  EXPECT_GE(fresh.substr(4, 12), new_delivery_id(now).substr(4, 12));
  EXPECT_LE(fresh.substr(4, 12), new_delivery_id(now + 60'000).substr(4, 12));
}

}  // namespace
}  // namespace arbiter::scoring
