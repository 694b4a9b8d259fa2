// The evaluator runtime's scheduling logic over a real RequestLog and
// ScoreStore in a temp dir, with test kinds injected through
// EvaluatorRuntimeOptions::make_kind: filters, deterministic sampling, the
// event, waiting for fields, retries and backoff, per-evaluator concurrency,
// the bounded queue, resuming unfinished runs, listeners, and typed scores.
// (Integration tests run the real kinds against the real binary.)

#include "scoring/evaluator_runtime.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "scoring/eval_event.hpp"
#include "scoring/eval_runs.hpp"
#include "scoring/request_log.hpp"
#include "scoring/score_store.hpp"
#include "scoring/store.hpp"
#include "tests/support/temp_dir.hpp"

namespace arbiter::scoring {
namespace {

using arbiter::testing::TempDir;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::int64_t kNow = 1714564800000000;  // 2024-05-01T12:00:00Z

std::string id_of(int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", i);
  return buf;
}

RequestRecord chat_record(int i, std::string content = "The capital of France is Paris.") {
  RequestRecord r;
  r.project = "alpha";
  r.request_id = id_of(i);
  r.created_at_us = kNow + i;
  r.response_at_us = kNow + i + 1000;
  r.latency_ms = 250;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.upstream = "openai";
  r.status = 200;
  r.request_model = "gpt-4o-mini";
  r.response_model = "gpt-4o-mini-2024-07-18";
  r.properties = {{"env", "prod"}};
  r.prompt_tokens = 12;
  r.completion_tokens = 7;
  r.request_body =
      json{{"model", "gpt-4o-mini"}, {"messages", {{{"role", "user"}, {"content", "Capital of France?"}}}}}
          .dump();
  r.response_body = json{{"id", "chatcmpl-1"},
                         {"object", "chat.completion"},
                         {"model", r.response_model},
                         {"choices",
                          {{{"index", 0},
                            {"message", {{"role", "assistant"}, {"content", std::move(content)}}},
                            {"finish_reason", "stop"}}}}}
                        .dump();
  return r;
}

// A kind whose behaviour the test supplies.
class TestKind final : public EvaluatorKind {
 public:
  using Fn = std::function<plugins::EvalResult(const json& event)>;
  explicit TestKind(Fn fn, bool own_names = false) : fn_(std::move(fn)), own_names_(own_names) {}
  plugins::EvalResult evaluate(const json& event, const std::string&, std::chrono::milliseconds) const override {
    return fn_(event);
  }
  bool names_own_scores() const override { return own_names_; }

 private:
  Fn fn_;
  bool own_names_;
};

plugins::EvalResult ok_score(std::string name, json value, std::string comment = "") {
  plugins::EvalResult r;
  r.ok = true;
  r.scores.push_back({std::move(name), std::move(value), std::move(comment)});
  return r;
}

plugins::EvalResult failed(std::string error, bool retryable) {
  plugins::EvalResult r;
  r.error = std::move(error);
  r.retryable = retryable;
  return r;
}

// Content length, the simplest real evaluation.
plugins::EvalResult length_of_content(const json& event) {
  return ok_score("length", static_cast<double>(event["outputs"]["content"].get<std::string>().size()));
}

// Holds evaluations until released: a test kind waits on `cv` under `mu`
// for `open`, and may record what it saw under the same mutex.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    {
      std::lock_guard lk(mu);
      open = true;
    }
    cv.notify_all();
  }
};

// Feedback posting a ground truth.
Feedback ground_truth(std::string value) {
  Feedback f;
  f.fields = {{"ground_truth", std::move(value)}};
  return f;
}

EvaluatorOptions evaluator(std::string name, std::string kind = "test") {
  EvaluatorOptions o;
  o.name = std::move(name);
  o.kind = std::move(kind);
  o.retry.initial_backoff = 1ms;
  o.retry.max_backoff = 4ms;
  return o;
}

// Records what listeners are told about finished runs.
struct RecordingListener : WriteListener {
  std::mutex mu;
  std::vector<EvaluationEvent> offered, written;
  std::vector<Score> scores_offered;
  void on_scores(const Store::Lease&, std::string_view, std::span<const Score> s, rocksdb::WriteBatch&) override {
    std::lock_guard lk(mu);
    scores_offered.insert(scores_offered.end(), s.begin(), s.end());
  }
  void on_evaluation(const Store::Lease&, const EvaluationEvent& e, rocksdb::WriteBatch&) override {
    std::lock_guard lk(mu);
    offered.push_back(e);
  }
  void evaluation_written(const EvaluationEvent& e) override {
    std::lock_guard lk(mu);
    written.push_back(e);
  }
};

struct Fixture {
  TempDir dir;
  std::unique_ptr<RequestLog> log;
  std::unique_ptr<ScoreStore> scores;
  std::unique_ptr<EvaluatorRuntime> runtime;
  RecordingListener listener;
  std::map<std::string, TestKind::Fn> kinds;  // by evaluator name

  unsigned retention_days = 0;
  std::size_t backlog_chunk = 256;
  std::size_t log_backlog_limit = 0;
  bool real_kinds = false;  // the kinds named in the options (built-ins), not `kinds`
  // The request log's clock (retention cutoffs): 30 days after the records
  // by default. A test that runs retention itself starts it at kNow, so that
  // the background pass at start-up finds nothing to delete whenever it runs.
  std::atomic<std::int64_t> log_clock{kNow + 30LL * 86'400'000'000LL};

  void open(std::vector<EvaluatorOptions> evaluators, std::size_t capacity = 100, unsigned workers = 4,
            bool start = true) {
    RequestLogOptions lo;
    lo.path = (dir.path() / "data").string();
    lo.retention_days = retention_days;
    lo.now_us = [this] { return log_clock.load(); };
    log = std::make_unique<RequestLog>(std::move(lo));
    log->add_listener(&listener);
    scores = std::make_unique<ScoreStore>(*log);
    EvaluatorRuntimeOptions o;
    o.evaluators = std::move(evaluators);
    o.workers = workers;
    o.queue_capacity = capacity;
    o.backlog_chunk = backlog_chunk;
    o.log_backlog_limit = log_backlog_limit;
    if (!real_kinds) {
      o.make_kind = [this](const KindSpec& spec) -> std::unique_ptr<EvaluatorKind> {
        auto it = kinds.find(spec.evaluator);
        if (it == kinds.end()) throw EvaluatorSetupError("params: no test kind");
        return std::make_unique<TestKind>(it->second);
      };
    }
    runtime = std::make_unique<EvaluatorRuntime>(*log, *scores, std::move(o));
    if (start) runtime->start();
  }

  void close() {
    if (runtime) runtime->stop();
    if (log) {
      ASSERT_TRUE(log->close().ok());
    }
    runtime.reset();
    scores.reset();
    log.reset();
  }

  ~Fixture() {
    if (runtime) runtime->stop();
    if (log) (void)log->close();
  }

  void submit(RequestRecord r) {
    ASSERT_TRUE(log->submit(std::move(r)));
    ASSERT_TRUE(log->flush());
  }

  // A request's scores in "alpha", by name.
  std::map<std::string, Score> scores_by_name(const std::string& request_id) {
    ScoreListQuery q;
    q.request_id = request_id;
    auto list = scores->list("alpha", q);
    EXPECT_TRUE(list.ok());
    std::map<std::string, Score> out;
    if (list.ok()) {
      for (auto& s : list->scores) out[s.name] = s;
    }
    return out;
  }

  std::optional<EvalRun> run(const std::string& request_id, const std::string& evaluator) {
    auto r = log->with_store([&](Store& s) { return read_run(s, "alpha", request_id, evaluator); });
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : std::nullopt;
  }

  bool await_state(const std::string& request_id, const std::string& evaluator, RunState state,
                   std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = run(request_id, evaluator);
      if (r && r->state == state) return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }
};

// ---- pure functions ----

TEST(EvaluatorFilter, GlobMatching) {
  EXPECT_TRUE(glob_match("gpt-4o*", "gpt-4o-mini"));
  EXPECT_TRUE(glob_match("gpt-4o*", "gpt-4o"));
  EXPECT_FALSE(glob_match("gpt-4o*", "gpt-4"));
  EXPECT_TRUE(glob_match("*/completions", "/v1/chat/completions"));
  EXPECT_TRUE(glob_match("/v1/*/completions", "/v1/chat/completions"));
  EXPECT_TRUE(glob_match("a?c", "abc"));
  EXPECT_FALSE(glob_match("a?c", "ac"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("a*b*c", "a-x-b-y-b-c"));
  EXPECT_FALSE(glob_match("a*b*c", "a-x-c-b"));
  EXPECT_FALSE(glob_match("abc", "abcd"));
}

TEST(EvaluatorFilter, MatchesPathModelPropertiesAndStatus) {
  const RequestRecord r = [] {
    auto x = chat_record(1);
    x.path = "/v1/chat/completions?x=1";
    return x;
  }();
  EXPECT_TRUE(filter_matches({}, r));
  EXPECT_TRUE(filter_matches({"/v1/chat/completions", "", {}, ""}, r));  // the query is not part of it
  EXPECT_FALSE(filter_matches({"/v1/embeddings", "", {}, ""}, r));
  EXPECT_TRUE(filter_matches({"", "gpt-4o-mini", {}, ""}, r));             // the requested model
  EXPECT_TRUE(filter_matches({"", "gpt-4o-mini-2024-*", {}, ""}, r));      // or the response's
  EXPECT_FALSE(filter_matches({"", "gpt-3.5*", {}, ""}, r));
  EXPECT_TRUE(filter_matches({"", "", {{"env", "prod"}}, ""}, r));
  EXPECT_FALSE(filter_matches({"", "", {{"env", "dev"}}, ""}, r));
  EXPECT_FALSE(filter_matches({"", "", {{"tier", "1"}}, ""}, r));
  EXPECT_TRUE(filter_matches({"", "", {}, "2xx"}, r));
  EXPECT_TRUE(filter_matches({"", "", {}, "200"}, r));
  EXPECT_FALSE(filter_matches({"", "", {}, "4xx"}, r));
  EXPECT_FALSE(filter_matches({"", "", {}, "201"}, r));
  auto failed_call = r;
  failed_call.status = kStatusUpstreamUnreachable;
  EXPECT_FALSE(filter_matches({"", "", {}, "2xx"}, failed_call));
}

TEST(EvaluatorSampling, DeterministicAndNearTheConfiguredShare) {
  EXPECT_EQ(sampling_bucket(id_of(7), "judge"), sampling_bucket(id_of(7), "judge"));
  // Pinned across versions: which calls an evaluator samples must not change
  // with an upgrade (FNV-1a of id \0 evaluator, then splitmix64's finaliser;
  // values from an independent implementation).
  EXPECT_EQ(sampling_bucket("00000000-0000-4000-8000-000000000007", "judge"), 39u);
  EXPECT_EQ(sampling_bucket("00000000-0000-4000-8000-000000000007", "other"), 98u);
  int in = 0;
  int differs = 0;
  constexpr int kN = 20'000;
  for (int i = 0; i < kN; ++i) {
    const unsigned b = sampling_bucket(id_of(i), "judge");
    ASSERT_LT(b, 100u);
    if (b < 25) ++in;
    if (b != sampling_bucket(id_of(i), "other")) ++differs;
  }
  // 25% of 20,000 = 5,000; the binomial standard deviation is ~61.
  EXPECT_NEAR(in, 5000, 400);
  // Evaluators are sampled independently of each other.
  EXPECT_GT(differs, kN * 9 / 10);
}

TEST(EvaluatorRetry, BackoffDoublesUpToTheCapWithJitter) {
  const RetryPolicy p{5, 100ms, 1000ms};
  EXPECT_EQ(retry_backoff(p, 1, 1.0), 100ms);
  EXPECT_EQ(retry_backoff(p, 2, 1.0), 200ms);
  EXPECT_EQ(retry_backoff(p, 3, 1.0), 400ms);
  EXPECT_EQ(retry_backoff(p, 5, 1.0), 1000ms);
  EXPECT_EQ(retry_backoff(p, 40, 1.0), 1000ms);
  EXPECT_EQ(retry_backoff(p, 2, 0.5), 100ms);
  EXPECT_EQ(retry_backoff(p, 2, 0.0), 100ms);  // jitter is clamped to [0.5, 1]
}

TEST(EvalRuns, EncodeDecodeRoundTripAndStableIds) {
  EvalRun r;
  r.id = derived_id({"alpha", id_of(1), "judge"});
  r.project = "alpha";
  r.request_id = id_of(1);
  r.evaluator = "judge";
  r.state = RunState::kWaiting;
  r.attempts = 2;
  r.created_us = kNow;
  r.started_us = kNow + 1;
  r.duration_us = 5;
  r.next_attempt_us = kNow + 9;
  r.error = "x";
  r.missing = {"feedback.ground_truth"};
  r.scores = json::array({{{"name", "s"}, {"value", 1}}});
  r.manual = true;
  auto back = decode_run(encode_run(r));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(encode_run(*back), encode_run(r));
  EXPECT_EQ(back->state, RunState::kWaiting);
  EXPECT_EQ(back->missing, r.missing);
  EXPECT_FALSE(decode_run("garbage").ok());

  EXPECT_EQ(r.id, derived_id({"alpha", id_of(1), "judge"}));
  EXPECT_NE(r.id, derived_id({"alpha", id_of(1), "judge2"}));
  EXPECT_NE(derived_id({"ab", "c"}), derived_id({"a", "bc"}));
  // Stored runs and scores carry these ids, and a re-run must find its own
  // again after an upgrade: the text of an id never changes.
  EXPECT_EQ(derived_id({"alpha", "0192f1b2-0000-4000-8000-000000000001", "judge"}),
            "14e3b2ff-9338-834c-b765-c662bbd14ebc");
  EXPECT_EQ(derived_id({"p", "r", "e", "s"}), "ff3e7eff-f55f-8829-90cc-aac5fca72678");
  EXPECT_EQ(derived_id({}), "cbf29ce4-8422-8325-aca9-fbe32b66adc1");
  EXPECT_EQ(r.id.size(), 36u);
  EXPECT_TRUE(valid_request_id(r.id));
  for (auto s : {"pending", "waiting-for-fields", "running", "completed", "error"}) {
    ASSERT_TRUE(parse_run_state(s));
    EXPECT_EQ(to_string(*parse_run_state(s)), s);
  }

  // Version 2 is binary; every cut of it is an error, never a crash.
  const std::string bytes = encode_run(r);
  EXPECT_EQ(bytes[0], '\x02');
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_FALSE(decode_run(std::string_view(bytes).substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(decode_run(bytes + "x").ok());
  std::string bad_state = bytes;
  bad_state[1 + 1 + r.id.size() + 1 + r.project.size() + 1 + r.request_id.size() + 1 + r.evaluator.size()] = 99;
  EXPECT_FALSE(decode_run(bad_state).ok());
  // A minimal run (no optionals) round-trips too.
  const EvalRun pending = pending_run("alpha", id_of(2), "judge", kNow);
  auto p = decode_run(encode_run(pending));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(encode_run(*p), encode_run(pending));
  EXPECT_EQ(p->state, RunState::kPending);
  EXPECT_TRUE(p->scores.is_array() && p->scores.empty());
  EXPECT_FALSE(p->manual);
}

// Runs written by the version-1 code (a CBOR map with "v": 1) still read.
TEST(EvalRuns, VersionOneValuesStillDecode) {
  const json v1 = {{"v", 1},          {"id", "run-1"},   {"pj", "alpha"}, {"rq", id_of(1)},
                   {"ev", "judge"},   {"st", 3},         {"at", 2},       {"ca", kNow},
                   {"sa", kNow + 1},  {"fa", kNow + 2},  {"du", 7},       {"er", "boom"},
                   {"mi", {"feedback.x"}}, {"sc", json::array({{{"name", "s"}, {"value", 0.5}}})},
                   {"mn", true}};
  std::string bytes;
  json::to_cbor(v1, bytes);
  auto r = decode_run(bytes);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->id, "run-1");
  EXPECT_EQ(r->project, "alpha");
  EXPECT_EQ(r->request_id, id_of(1));
  EXPECT_EQ(r->evaluator, "judge");
  EXPECT_EQ(static_cast<int>(r->state), 3);
  EXPECT_EQ(r->attempts, 2u);
  EXPECT_EQ(r->created_us, kNow);
  EXPECT_EQ(r->started_us, kNow + 1);
  EXPECT_EQ(r->finished_us, kNow + 2);
  EXPECT_EQ(r->duration_us, 7);
  EXPECT_EQ(r->next_attempt_us, 0);
  EXPECT_EQ(r->error, "boom");
  EXPECT_EQ(r->missing, std::vector<std::string>{"feedback.x"});
  EXPECT_EQ(r->scores, v1["sc"]);
  EXPECT_TRUE(r->manual);
  // Re-encoded, it is version 2 with the same content.
  auto again = decode_run(encode_run(*r));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(encode_run(*again), encode_run(*r));
  std::string wrong_version;
  json::to_cbor(json{{"v", 9}, {"id", "x"}}, wrong_version);
  EXPECT_FALSE(decode_run(wrong_version).ok());
}

TEST(EvalRuns, ScheduledOnlyRunsReadAsPendingAndRescheduleAfterFinishing) {
  TempDir dir;
  auto store = Store::open((dir.path() / "db").string());
  const auto db = *store->lease();
  auto write = [&](const std::function<Expected<void>(rocksdb::WriteBatch&)>& fill) {
    rocksdb::WriteBatch batch;
    ASSERT_TRUE(fill(batch).ok());
    ASSERT_TRUE(store->commit(db, batch, /*sync=*/false).ok());
  };
  auto read = [&](const std::string& ev) {
    auto r = read_run(*store, "alpha", id_of(1), ev);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : std::nullopt;
  };
  EXPECT_FALSE(read("a"));
  write([&](rocksdb::WriteBatch& b) { return put_pending(db, b, "alpha", id_of(1), "a", kNow); });
  write([&](rocksdb::WriteBatch& b) { return put_pending(db, b, "alpha", id_of(1), "b", kNow + 1); });
  auto a = read("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->state, RunState::kPending);
  EXPECT_EQ(a->created_us, kNow);
  EXPECT_EQ(a->id, derived_id({"alpha", id_of(1), "a"}));

  // Finished: the marker goes, the run stays.
  EvalRun done = *a;
  done.state = RunState::kCompleted;
  done.attempts = 1;
  write([&](rocksdb::WriteBatch& b) { return put_run(db, b, done); });
  EXPECT_EQ(read("a")->state, RunState::kCompleted);
  std::string cursor;
  auto active = scan_active(*store, cursor, 10);
  ASSERT_TRUE(active.ok());
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0].evaluator, "b");
  EXPECT_TRUE(cursor.empty());

  auto listed = runs_for_request(*store, "alpha", id_of(1));
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].state, RunState::kCompleted);
  EXPECT_EQ((*listed)[1].state, RunState::kPending);
  EXPECT_TRUE(runs_for_request(*store, "beta", id_of(1))->empty());

  // Scheduled again (the record was logged anew): pending wins over the old result.
  write([&](rocksdb::WriteBatch& b) { return put_pending(db, b, "alpha", id_of(1), "a", kNow + 5); });
  EXPECT_EQ(read("a")->state, RunState::kPending);
  EXPECT_EQ(read("a")->created_us, kNow + 5);
  EXPECT_EQ(runs_for_request(*store, "alpha", id_of(1))->at(0).state, RunState::kPending);

  // scan_active pages with its cursor.
  cursor.clear();
  auto first = scan_active(*store, cursor, 1);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  EXPECT_FALSE(cursor.empty());
  auto second = scan_active(*store, cursor, 1);
  ASSERT_EQ(second->size(), 1u);
  EXPECT_NE((*first)[0].evaluator, (*second)[0].evaluator);
  EXPECT_TRUE(cursor.empty());  // the end was reached
}

// ---- the event ----

TEST(EvalEvent, ChatRecord) {
  auto r = chat_record(1);
  r.feedback = {{"ground_truth", "Paris"}};
  r.user_id = "u1";
  r.session_id = "s1";
  r.time_to_first_token_ms = 12.5;
  const json e = build_eval_event(r);
  EXPECT_EQ(e["inputs"]["messages"][0]["content"], "Capital of France?");
  EXPECT_EQ(e["outputs"]["content"], "The capital of France is Paris.");
  EXPECT_EQ(e["outputs"]["tool_calls"], json::array());
  EXPECT_EQ(e["outputs"]["raw"]["id"], "chatcmpl-1");
  EXPECT_EQ(e["feedback"]["ground_truth"], "Paris");
  EXPECT_EQ(e["properties"], json({{"env", "prod"}}));
  EXPECT_EQ(e["metadata"], json::parse(R"({"model": "gpt-4o-mini-2024-07-18", "status": 200,
      "latency_ms": 250.0, "time_to_first_token_ms": 12.5, "prompt_tokens": 12, "completion_tokens": 7})"));
  EXPECT_EQ(e["user_id"], "u1");
  EXPECT_EQ(e["session_id"], "s1");
  EXPECT_EQ(e["request_id"], id_of(1));
  EXPECT_EQ(missing_fields(e, {"feedback.ground_truth", "feedback.context", "outputs.content"}),
            std::vector<std::string>{"feedback.context"});
}

TEST(EvalEvent, ToolCallsLegacyCompletionsResponsesApiAndOddBodies) {
  auto r = chat_record(1);
  r.response_body = R"({"choices": [{"message": {"role": "assistant", "content": null,
      "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]})";
  json e = build_eval_event(r);
  EXPECT_EQ(e["outputs"]["content"], "");
  EXPECT_EQ(e["outputs"]["tool_calls"][0]["function"]["name"], "f");

  r.response_body = R"({"object": "text_completion", "choices": [{"text": "legacy text"}]})";
  EXPECT_EQ(build_eval_event(r)["outputs"]["content"], "legacy text");

  r.response_body = R"({"output": [{"type": "message", "content": [{"type": "output_text", "text": "a"},
      {"type": "output_text", "text": "b"}]}]})";
  EXPECT_EQ(build_eval_event(r)["outputs"]["content"], "ab");

  r.response_body = R"({"choices": [{"message": {"content": [{"type": "text", "text": "part"}]}}]})";
  EXPECT_EQ(build_eval_event(r)["outputs"]["content"], "part");

  // An error answer has no content: a comparison kind sees it as missing.
  r.status = 500;
  r.response_body = R"({"error": {"message": "boom"}})";
  e = build_eval_event(r);
  EXPECT_FALSE(e["outputs"].contains("content"));
  EXPECT_EQ(e["outputs"]["raw"]["error"]["message"], "boom");

  // Omitted / non-JSON bodies; unknown token counts are left out.
  r.request_body.clear();
  r.response_body = "not json \xff";
  r.prompt_tokens.reset();
  r.completion_tokens.reset();
  e = build_eval_event(r);
  EXPECT_EQ(e["inputs"], json::object());
  EXPECT_EQ(e["outputs"]["raw"], "not json \xEF\xBF\xBD");
  EXPECT_FALSE(e["metadata"].contains("prompt_tokens"));
  EXPECT_FALSE(e["metadata"].contains("time_to_first_token_ms"));
  EXPECT_NO_THROW((void)e.dump());
}

// ---- the runtime ----

TEST(EvaluatorRuntime, ScoresMatchingRecordsWithTypedEvalScores) {
  Fixture f;
  auto length = evaluator("length");
  length.filter.path = "/v1/chat/*";
  auto embeddings_only = evaluator("embeddings_only");
  embeddings_only.filter.path = "/v1/embeddings";
  auto flags = evaluator("flags");
  f.kinds["length"] = length_of_content;
  f.kinds["embeddings_only"] = length_of_content;
  f.kinds["flags"] = [](const json&) {
    plugins::EvalResult r = ok_score("is_french", true, "mentions Paris");
    r.scores.push_back({"tone", "neutral", ""});
    return r;
  };
  f.open({length, embeddings_only, flags});
  f.submit(chat_record(1));
  ASSERT_TRUE(f.runtime->wait_idle(10s));

  auto run = f.run(id_of(1), "length");
  ASSERT_TRUE(run);
  EXPECT_EQ(run->state, RunState::kCompleted);
  EXPECT_EQ(run->attempts, 1u);
  EXPECT_EQ(run->id, derived_id({"alpha", id_of(1), "length"}));
  EXPECT_FALSE(f.run(id_of(1), "embeddings_only"));

  std::map<std::string, Score> by_name = f.scores_by_name(id_of(1));
  ASSERT_EQ(by_name.size(), 3u);
  const Score& len = by_name["length"];
  EXPECT_EQ(len.source, ScoreSource::kEval);
  EXPECT_EQ(len.data_type, ScoreDataType::kNumeric);
  EXPECT_EQ(len.value, 31.0);
  EXPECT_EQ(len.author, "length");
  EXPECT_EQ(len.id, derived_id({"alpha", id_of(1), "length", "length"}));
  EXPECT_EQ(len.metadata["run_id"], run->id);
  EXPECT_EQ(by_name["is_french"].data_type, ScoreDataType::kBoolean);
  EXPECT_EQ(by_name["is_french"].value, 1.0);
  EXPECT_EQ(by_name["is_french"].comment, "mentions Paris");
  EXPECT_EQ(by_name["tone"].data_type, ScoreDataType::kCategorical);
  EXPECT_EQ(by_name["tone"].label, "neutral");

  const auto c = f.runtime->counters("length");
  EXPECT_EQ(c.matched, 1u);
  EXPECT_EQ(c.completed, 1u);
  EXPECT_EQ(c.errors, 0u);
  EXPECT_EQ(f.runtime->counters("embeddings_only").matched, 0u);

  // Listeners saw the scores and both finished runs, before and after commit.
  std::lock_guard lk(f.listener.mu);
  EXPECT_EQ(f.listener.scores_offered.size(), 3u);
  ASSERT_EQ(f.listener.written.size(), 2u);
  EXPECT_EQ(f.listener.offered.size(), 2u);
  for (const auto& e : f.listener.written) {
    EXPECT_EQ(e.state, "completed");
    EXPECT_EQ(e.project, "alpha");
    EXPECT_FALSE(e.scores.empty());
  }
}

TEST(EvaluatorRuntime, ARerunOverwritesInsteadOfDuplicating) {
  Fixture f;
  std::atomic<int> calls{0};
  f.kinds["length"] = [&](const json& e) {
    ++calls;
    return length_of_content(e);
  };
  f.open({evaluator("length")});
  f.submit(chat_record(1, "short"));
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  // The same request logged again (a replaced record) is evaluated again.
  f.submit(chat_record(1, "a longer answer"));
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  EXPECT_EQ(calls.load(), 2);
  auto list = f.scores->list("alpha", [] {
    ScoreListQuery q;
    q.request_id = id_of(1);
    return q;
  }());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->scores.size(), 1u);
  EXPECT_EQ(list->scores[0].value, 15.0);
}

TEST(EvaluatorRuntime, SamplingIsDeterministicPerRequest) {
  Fixture f;
  auto sampled = evaluator("sampled");
  sampled.sampling = 30;
  f.kinds["sampled"] = length_of_content;
  f.open({sampled});
  constexpr int kN = 300;
  int expected_in = 0;
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(f.log->submit(chat_record(i)));
    if (sampling_bucket(id_of(i), "sampled") < 30) ++expected_in;
  }
  ASSERT_TRUE(f.log->flush());
  ASSERT_TRUE(f.runtime->wait_idle(20s));
  int have = 0;
  for (int i = 0; i < kN; ++i) {
    auto r = f.run(id_of(i), "sampled");
    EXPECT_EQ(r.has_value(), sampling_bucket(id_of(i), "sampled") < 30) << i;
    if (r) ++have;
  }
  EXPECT_EQ(have, expected_in);
  const auto c = f.runtime->counters("sampled");
  EXPECT_EQ(c.matched, static_cast<std::uint64_t>(kN));
  EXPECT_EQ(c.sampled_out, static_cast<std::uint64_t>(kN - expected_in));
  EXPECT_EQ(c.completed, static_cast<std::uint64_t>(expected_in));
}

TEST(EvaluatorRuntime, WaitsForNeededFieldsThenRuns) {
  Fixture f;
  auto exact = evaluator("exact");
  exact.needs = {"feedback.ground_truth"};
  f.kinds["exact"] = [](const json& e) {
    return ok_score("exact", e["outputs"]["content"] == e["feedback"]["ground_truth"]);
  };
  f.open({exact});
  f.submit(chat_record(1, "Paris"));
  ASSERT_TRUE(f.await_state(id_of(1), "exact", RunState::kWaiting));
  auto run = f.run(id_of(1), "exact");
  EXPECT_EQ(run->missing, std::vector<std::string>{"feedback.ground_truth"});
  EXPECT_EQ(run->attempts, 0u);
  EXPECT_EQ(f.runtime->counters("exact").waiting, 1u);

  // Feedback without the field: still waiting. With it: completed.
  Feedback other;
  other.rating = true;
  other.fields = {{"note", "x"}};
  ASSERT_TRUE(f.scores->submit_feedback("alpha", id_of(1), other).ok());
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  EXPECT_EQ(f.run(id_of(1), "exact")->state, RunState::kWaiting);
  Feedback truth = ground_truth("Paris");
  truth.rating = true;
  ASSERT_TRUE(f.scores->submit_feedback("alpha", id_of(1), truth).ok());
  ASSERT_TRUE(f.await_state(id_of(1), "exact", RunState::kCompleted));
  EXPECT_EQ(f.run(id_of(1), "exact")->scores[0]["value"], true);
}

// A run scheduled by a record write gets the record it was scheduled with
// (no read back) but still sees feedback posted before it ran; a record too
// large to hand off is read back. Both must give the kind the same event a
// read-back gives.
TEST(EvaluatorRuntime, HandedOffRecordsSeePostedFeedbackAndLargeOnesAreReadBack) {
  Fixture f;
  auto ev = evaluator("see");
  ev.concurrency = 1;
  Gate gate;
  std::map<std::string, json> events;  // by request id
  f.kinds["see"] = [&](const json& e) {
    std::unique_lock lk(gate.mu);
    events[e["request_id"].get<std::string>()] = e;
    gate.cv.notify_all();
    gate.cv.wait(lk, [&] { return gate.open; });  // the first run holds the only slot
    return ok_score("see", 1);
  };
  f.open({ev}, /*capacity=*/100, /*workers=*/1);
  f.submit(chat_record(1));
  {
    std::unique_lock lk(gate.mu);
    ASSERT_TRUE(gate.cv.wait_for(lk, 10s, [&] { return events.count(id_of(1)) == 1; }));
  }
  // Queued behind it, with their records: one ordinary, one past the cap.
  f.submit(chat_record(2, "Lyon"));
  f.submit(chat_record(3, std::string(300 * 1024, 'x')));
  Feedback truth = ground_truth("Paris");
  truth.rating = true;
  ASSERT_TRUE(f.scores->submit_feedback("alpha", id_of(2), truth).ok());
  ASSERT_TRUE(f.scores->submit_feedback("alpha", id_of(3), truth).ok());
  gate.release();
  ASSERT_TRUE(f.runtime->wait_idle(10s));

  std::lock_guard lk(gate.mu);
  ASSERT_EQ(events.size(), 3u);
  for (int i : {2, 3}) {
    const json& e = events[id_of(i)];
    EXPECT_EQ(e["feedback"]["ground_truth"], "Paris") << i;
    // The same event a read-back builds.
    auto stored = f.log->get("alpha", id_of(i), /*include_bodies=*/true, /*with_scores=*/false);
    ASSERT_TRUE(stored.ok() && *stored);
    EXPECT_EQ(e, build_eval_event(**stored, /*with_inputs=*/!e["inputs"].empty())) << i;
  }
  EXPECT_EQ(events[id_of(2)]["outputs"]["content"], "Lyon");
  EXPECT_EQ(events[id_of(3)]["outputs"]["content"].get<std::string>().size(), 300u * 1024);
  EXPECT_EQ(f.runtime->counters("see").completed, 3u);
}

// A run of an id the gateway made skips reading its run entry on its first
// look (it can only be pending). A manual run stored while it waits in the
// queue must still count as the run; posted feedback must still reach it.
TEST(EvaluatorRuntime, FreshRunsOfGatewayIdsSeeStoredManualRunsAndPostedFeedback) {
  Fixture f;
  auto ev = evaluator("count");
  ev.concurrency = 1;
  Gate gate;
  std::map<std::string, int> calls;    // evaluations, by request id
  std::map<std::string, json> events;  // the last event, by request id
  f.kinds["count"] = [&](const json& e) {
    const std::string id = e["request_id"].get<std::string>();
    std::unique_lock lk(gate.mu);
    const int n = ++calls[id];
    events[id] = e;
    gate.cv.notify_all();
    if (id == id_of(1)) gate.cv.wait(lk, [&] { return gate.open; });  // holds the only slot
    return ok_score("count", n);
  };
  f.open({ev}, /*capacity=*/100, /*workers=*/1);
  f.submit(chat_record(1));
  {
    std::unique_lock lk(gate.mu);
    ASSERT_TRUE(gate.cv.wait_for(lk, 10s, [&] { return calls[id_of(1)] == 1; }));
  }
  // Queued behind it with their records, ids made by the gateway.
  for (int i : {2, 3}) {
    RequestRecord r = chat_record(i);
    r.new_id = true;
    f.submit(std::move(r));
  }
  auto manual = f.runtime->run_now("alpha", "count", id_of(2), /*store=*/true);
  ASSERT_TRUE(manual.ok()) << manual.error().message;
  EXPECT_EQ((*manual)["stored"], true);
  ASSERT_TRUE(f.scores->submit_feedback("alpha", id_of(3), ground_truth("Paris")).ok());
  gate.release();
  ASSERT_TRUE(f.runtime->wait_idle(10s));

  std::lock_guard lk(gate.mu);
  EXPECT_EQ(calls[id_of(2)], 1);  // the manual run only: the queued run found it finished
  EXPECT_EQ(calls[id_of(3)], 1);
  EXPECT_EQ(events[id_of(3)]["feedback"]["ground_truth"], "Paris");
  auto run2 = f.run(id_of(2), "count");
  ASSERT_TRUE(run2);
  EXPECT_TRUE(run2->manual);
  EXPECT_EQ(run2->state, RunState::kCompleted);
  auto run3 = f.run(id_of(3), "count");
  ASSERT_TRUE(run3);
  EXPECT_FALSE(run3->manual);
  EXPECT_EQ(run3->state, RunState::kCompleted);
  EXPECT_EQ(run3->attempts, 1u);
  EXPECT_EQ(f.scores_by_name(id_of(2))["count"].value, 1.0);
  EXPECT_EQ(f.runtime->counters("count").completed, 2u);  // 1 and 3; manual runs are not counted
}

TEST(EvaluatorRuntime, RetriesTransientFailuresThenSucceeds) {
  Fixture f;
  std::atomic<int> calls{0};
  f.kinds["flaky"] = [&](const json& e) {
    if (++calls < 3) return failed("upstream answered 503", true);
    return length_of_content(e);
  };
  f.open({evaluator("flaky")});
  f.submit(chat_record(1));
  ASSERT_TRUE(f.await_state(id_of(1), "flaky", RunState::kCompleted));
  auto run = f.run(id_of(1), "flaky");
  EXPECT_EQ(run->attempts, 3u);
  EXPECT_TRUE(run->error.empty());
  EXPECT_EQ(f.runtime->counters("flaky").retries, 2u);
}

TEST(EvaluatorRuntime, GivesUpAfterMaxAttemptsAndDoesNotRetryPermanentErrors) {
  Fixture f;
  std::atomic<int> transient_calls{0}, permanent_calls{0};
  f.kinds["transient"] = [&](const json&) {
    ++transient_calls;
    return failed("timed out", true);
  };
  f.kinds["permanent"] = [&](const json&) {
    ++permanent_calls;
    return failed("event has no feedback.ground_truth", false);
  };
  f.kinds["healthy"] = length_of_content;
  f.open({evaluator("transient"), evaluator("permanent"), evaluator("healthy")});
  f.submit(chat_record(1));
  ASSERT_TRUE(f.await_state(id_of(1), "transient", RunState::kError));
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  auto t = f.run(id_of(1), "transient");
  EXPECT_EQ(t->attempts, 3u);
  EXPECT_EQ(t->error, "after 3 attempts: timed out");
  EXPECT_EQ(transient_calls.load(), 3);
  auto p = f.run(id_of(1), "permanent");
  EXPECT_EQ(p->state, RunState::kError);
  EXPECT_EQ(p->attempts, 1u);
  EXPECT_EQ(p->error, "event has no feedback.ground_truth");
  EXPECT_EQ(permanent_calls.load(), 1);
  // The others are unaffected.
  EXPECT_EQ(f.run(id_of(1), "healthy")->state, RunState::kCompleted);
  const auto c = f.runtime->counters("transient");
  EXPECT_EQ(c.errors, 1u);
  EXPECT_EQ(c.retries, 2u);
  EXPECT_EQ(c.last_error, "after 3 attempts: timed out");
  // The error run reached listeners too (evaluation.completed with state error).
  std::lock_guard lk(f.listener.mu);
  int errors = 0;
  for (const auto& e : f.listener.written) errors += e.state == "error" ? 1 : 0;
  EXPECT_EQ(errors, 2);
}

TEST(EvaluatorRuntime, RespectsPerEvaluatorConcurrency) {
  Fixture f;
  std::mutex mu;
  std::condition_variable cv;
  int now = 0, peak = 0, done = 0;
  auto slow = evaluator("slow");
  slow.concurrency = 2;
  f.kinds["slow"] = [&](const json& e) {
    std::unique_lock lk(mu);
    peak = std::max(peak, ++now);
    cv.notify_all();
    // The first runs meet here, so two run at once for sure; meanwhile two
    // more workers are idle and would take a third run if the limit let them.
    cv.wait_for(lk, 5s, [&] { return peak >= 2; });
    lk.unlock();
    std::this_thread::sleep_for(5ms);
    lk.lock();
    --now;
    ++done;
    return length_of_content(e);
  };
  f.open({slow}, 100, /*workers=*/4);
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(f.log->submit(chat_record(i)));
  ASSERT_TRUE(f.log->flush());
  ASSERT_TRUE(f.runtime->wait_idle(20s));
  std::lock_guard lk(mu);
  EXPECT_EQ(done, 8);
  EXPECT_EQ(peak, 2);
}

TEST(EvaluatorRuntime, AFullQueueDefersRunsToStorageAndTheBacklogFinishesThem) {
  Fixture f;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> started{0};
  f.kinds["blocked"] = [&](const json& e) {
    ++started;
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return release; });
    return length_of_content(e);
  };
  f.open({evaluator("blocked")}, /*capacity=*/2, /*workers=*/1);
  // The worker holds the first run; two more fill the queue; the rest are deferred.
  f.submit(chat_record(0));
  ASSERT_TRUE(f.await_state(id_of(0), "blocked", RunState::kRunning));
  for (int i = 1; i <= 6; ++i) f.submit(chat_record(i));
  EXPECT_EQ(f.runtime->counters("blocked").deferred, 4u);
  EXPECT_EQ(f.runtime->queue_depth(), 2u);
  for (int i = 3; i <= 6; ++i) {
    // Waiting in storage, not an error and not in memory.
    auto r = f.run(id_of(i), "blocked");
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->state, RunState::kPending) << i;
  }
  {
    std::lock_guard lk(mu);
    release = true;
  }
  cv.notify_all();
  // The backlog scan queues the deferred runs once the queue drains.
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  for (int i = 0; i <= 6; ++i) EXPECT_EQ(f.run(id_of(i), "blocked")->state, RunState::kCompleted) << i;
  EXPECT_EQ(started.load(), 7);  // each run evaluated once
  const auto c = f.runtime->counters("blocked");
  EXPECT_EQ(c.errors, 0u);
  EXPECT_EQ(c.completed, 7u);
  std::lock_guard lk(f.listener.mu);
  EXPECT_EQ(f.listener.written.size(), 7u);
}

// The runtime calls built-ins directly and builds the event's inputs only
// for an evaluator that reads them: both kinds of evaluator score right.
TEST(EvaluatorRuntime, BuiltInsScoreOutputsAndInputsThroughTheDirectPath) {
  Fixture f;
  f.real_kinds = true;
  auto out_len = evaluator("out_len", "response_length");
  auto in_len = evaluator("in_len", "response_length");
  in_len.params = json{{"output", "inputs.messages.0.content"}};
  auto in_needs = evaluator("in_needs", "keywords");
  in_needs.params = json{{"keywords", {"France"}}};
  in_needs.needs = {"inputs.messages.0.content"};
  f.open({out_len, in_len, in_needs});
  f.submit(chat_record(1, "Paris is the capital of France."));
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  std::map<std::string, Score> by_name = f.scores_by_name(id_of(1));
  ASSERT_EQ(by_name.size(), 3u);
  EXPECT_EQ(by_name["out_len"].value, 6.0);  // "Paris is the capital of France."
  EXPECT_EQ(by_name["in_len"].value, 3.0);   // "Capital of France?"
  EXPECT_EQ(by_name["in_needs"].value, 1.0);  // keywords over outputs; inputs present for `needs`
  EXPECT_EQ(f.run(id_of(1), "in_needs")->state, RunState::kCompleted);
}

// A run deferred while a backlog pass is under way may sort before the
// pass's cursor: the pass is followed by another, so it is not stranded.
TEST(EvaluatorRuntime, RunsDeferredDuringABacklogPassAreNotStranded) {
  Fixture f;
  std::mutex mu;
  std::condition_variable cv;
  int allowed = 1;  // runs the kind may finish before it blocks
  std::atomic<int> started{0};
  f.kinds["gated"] = [&](const json& e) {
    ++started;
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return allowed > 0; });
    --allowed;
    return length_of_content(e);
  };
  f.backlog_chunk = 1;  // a pass takes many steps: deferrals land in the middle of one
  f.open({evaluator("gated")}, /*capacity=*/1, /*workers=*/1);
  // Waves of records, each submitted while earlier deferred runs are being
  // worked through, with ids that sort before the earlier ones (behind the
  // pass's cursor): every one of them must finish.
  int next = 0;
  for (int wave = 0; wave < 5; ++wave) {
    for (int k = 0; k < 4; ++k, ++next) f.submit(chat_record(1000 - next));
    {
      std::lock_guard lk(mu);
      allowed += 3;
    }
    cv.notify_all();
  }
  {
    std::lock_guard lk(mu);
    allowed = 1 << 20;
  }
  cv.notify_all();
  ASSERT_TRUE(f.runtime->wait_idle(20s));
  for (int i = 0; i < next; ++i) {
    EXPECT_EQ(f.run(id_of(1000 - i), "gated")->state, RunState::kCompleted) << i;
  }
  EXPECT_GT(f.runtime->counters("gated").deferred, 0u);
  EXPECT_EQ(f.runtime->counters("gated").completed, static_cast<std::uint64_t>(next));
}

// Opens `f` with one evaluator, "len", that counts its runs in `evaluated`,
// pauses the score writer, submits records 0..n-1 and waits until every one
// is evaluated: their final writes are then all in flight.
void evaluate_with_the_writer_paused(Fixture& f, std::atomic<int>& evaluated, int n, unsigned workers) {
  f.kinds["len"] = [&evaluated](const json& e) {
    ++evaluated;
    return length_of_content(e);
  };
  f.open({evaluator("len")}, 100, workers);
  f.scores->pause_writer_for_testing(true);
  for (int i = 0; i < n; ++i) f.submit(chat_record(i));
  // Until every run was evaluated and its final write is queued: a worker
  // hands the write over after the kernel returns, so counting the kernel's
  // calls alone let a test unpause the writer before the last write arrived.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((evaluated.load() < n || f.scores->counters().queue_depth < static_cast<std::uint64_t>(n)) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
}

// A worker hands a finished run to the score writer and takes the next one:
// it does not sleep through the group commit. With the writer paused, one
// worker evaluates every queued run; their writes then land as one group.
TEST(EvaluatorRuntime, AWorkerTakesTheNextRunWhileItsLastWriteIsInFlight) {
  std::atomic<int> evaluated{0};  // outlives the fixture's workers
  Fixture f;
  evaluate_with_the_writer_paused(f, evaluated, 5, /*workers=*/1);
  ASSERT_EQ(evaluated.load(), 5);
  const auto groups_before = f.scores->counters().groups;
  // Not idle while the writes are in flight: nothing is written yet.
  EXPECT_FALSE(f.runtime->wait_idle(0ms));
  EXPECT_EQ(f.runtime->counters("len").completed, 0u);
  for (int i = 0; i < 5; ++i) EXPECT_NE(f.run(id_of(i), "len")->state, RunState::kCompleted) << i;

  f.scores->pause_writer_for_testing(false);
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  EXPECT_EQ(f.scores->counters().groups, groups_before + 1);
  EXPECT_EQ(f.runtime->counters("len").completed, 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(f.run(id_of(i), "len")->state, RunState::kCompleted) << i;
    EXPECT_EQ(f.scores_by_name(id_of(i)).count("length"), 1u) << i;
  }
  std::lock_guard lk(f.listener.mu);
  EXPECT_EQ(f.listener.written.size(), 5u);
}

// stop() returns only once the final writes in flight have ended: their
// callbacks never run on a stopped (or destroyed) runtime.
TEST(EvaluatorRuntime, StopWaitsForFinalWritesInFlight) {
  std::atomic<int> evaluated{0};  // outlives the fixture's workers
  Fixture f;
  evaluate_with_the_writer_paused(f, evaluated, 3, /*workers=*/2);
  ASSERT_EQ(evaluated.load(), 3);
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    f.runtime->stop();
    stopped = true;
  });
  // The writer is paused, so the writes cannot have ended: stop() is still waiting.
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(stopped.load());
  f.scores->pause_writer_for_testing(false);
  stopper.join();
  EXPECT_EQ(f.runtime->counters("len").completed, 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(f.run(id_of(i), "len")->state, RunState::kCompleted) << i;
}

// Evaluations wait while the request log's storage thread is behind: the
// workers take no run until the log's queue is down to half the limit.
TEST(EvaluatorRuntime, WorkersTakeNoRunWhileTheRequestLogIsBackedUp) {
  std::atomic<int> evaluated{0};  // outlives the fixture's workers
  Fixture f;
  f.kinds["len"] = [&evaluated](const json& e) {
    ++evaluated;
    return length_of_content(e);
  };
  f.log_backlog_limit = 2;
  f.open({evaluator("len")}, 100, /*workers=*/2, /*start=*/false);
  f.submit(chat_record(0));  // written, its run pending
  // Three records wait for the paused storage thread: over the limit.
  f.log->pause_storage_for_testing(true);
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(f.log->submit(chat_record(i)));
  ASSERT_EQ(f.log->queued(), 3u);
  f.runtime->start();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (f.runtime->log_backlog_pauses() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(f.runtime->log_backlog_pauses(), 1u);
  // The workers keep looking (every 5 ms) and keep leaving run 0 alone.
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(evaluated.load(), 0);
  EXPECT_EQ(f.run(id_of(0), "len")->state, RunState::kPending);
  EXPECT_NE(f.runtime->metrics_text().find("arbiter_evaluator_log_backlog_pauses_total 1\n"), std::string::npos);

  f.log->pause_storage_for_testing(false);
  ASSERT_TRUE(f.log->flush());
  EXPECT_EQ(f.log->queued(), 0u);
  for (int i = 0; i <= 3; ++i) EXPECT_TRUE(f.await_state(id_of(i), "len", RunState::kCompleted)) << i;
  EXPECT_EQ(evaluated.load(), 4);
  EXPECT_EQ(f.runtime->log_backlog_pauses(), 1u);  // one stop, however many looks
}

TEST(EvaluatorRuntime, UnfinishedRunsResumeAfterARestart) {
  Fixture f;
  f.kinds["length"] = length_of_content;
  auto waits = evaluator("waits");
  waits.needs = {"feedback.ground_truth"};
  f.kinds["waits"] = length_of_content;
  // Not started: runs are written pending with their records, nothing runs.
  f.open({evaluator("length"), waits}, 100, 2, /*start=*/false);
  for (int i = 0; i < 5; ++i) f.submit(chat_record(i));
  EXPECT_EQ(f.run(id_of(0), "length")->state, RunState::kPending);
  f.close();

  f.open({evaluator("length"), waits});
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(f.run(id_of(i), "length")->state, RunState::kCompleted) << i;
    EXPECT_EQ(f.run(id_of(i), "waits")->state, RunState::kWaiting) << i;
  }
  // A waiting run resumes too and runs once its field arrives.
  f.close();
  f.open({evaluator("length"), waits});
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  Feedback truth = ground_truth("x");
  truth.rating = false;
  ASSERT_TRUE(f.scores->submit_feedback("alpha", id_of(3), truth).ok());
  ASSERT_TRUE(f.await_state(id_of(3), "waits", RunState::kCompleted));
}

TEST(EvaluatorRuntime, ScoreConfigViolationsAndTypeMismatchesBecomeErrorRuns) {
  Fixture f;
  auto typed = evaluator("typed");
  typed.data_type = ScoreDataType::kBoolean;
  f.kinds["typed"] = length_of_content;  // numeric, but BOOLEAN is configured
  f.kinds["ranged"] = [](const json&) { return ok_score("ranged", 42.0); };
  f.kinds["twice"] = [](const json&) {
    auto r = ok_score("dup", 1.0);
    r.scores.push_back({"dup", 2.0, ""});
    return r;
  };
  f.open({typed, evaluator("ranged"), evaluator("twice")});
  ScoreConfig c;
  c.name = "ranged";
  c.min_value = 0;
  c.max_value = 10;
  ASSERT_TRUE(f.scores->create_config("alpha", c).ok());
  f.submit(chat_record(1));
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  auto typed_run = f.run(id_of(1), "typed");
  EXPECT_EQ(typed_run->state, RunState::kError);
  EXPECT_EQ(typed_run->error, "result rejected: score 'length' is NUMERIC, but score.data_type is BOOLEAN");
  auto ranged_run = f.run(id_of(1), "ranged");
  EXPECT_EQ(ranged_run->state, RunState::kError);
  EXPECT_NE(ranged_run->error.find("max_value"), std::string::npos) << ranged_run->error;
  EXPECT_EQ(f.run(id_of(1), "twice")->error, "result rejected: score 'dup' appears twice in the result");
  auto list = f.scores->list("alpha", [] {
    ScoreListQuery q;
    q.request_id = id_of(1);
    return q;
  }());
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->scores.empty());
}

TEST(EvaluatorRuntime, RetentionDeletesARequestsRuns) {
  Fixture f;
  f.retention_days = 7;
  f.log_clock = kNow;  // records are young while the background pass may run
  f.kinds["length"] = length_of_content;
  auto waits = evaluator("waits");
  waits.needs = {"feedback.ground_truth"};
  f.kinds["waits"] = length_of_content;
  f.open({evaluator("length"), waits});
  f.submit(chat_record(1));
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  ASSERT_TRUE(f.await_state(id_of(1), "waits", RunState::kWaiting));
  ASSERT_EQ(f.run(id_of(1), "length")->state, RunState::kCompleted);
  f.log_clock = kNow + 30LL * 86'400'000'000LL;
  auto stats = f.log->run_retention();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->records_deleted, 1u);
  EXPECT_FALSE(f.run(id_of(1), "length"));
  EXPECT_FALSE(f.run(id_of(1), "waits"));
  std::string cursor;
  auto active = f.log->with_store([&](Store& s) { return scan_active(s, cursor, 10); });
  ASSERT_TRUE(active.ok());
  EXPECT_TRUE(active->empty());
}

TEST(EvaluatorRuntime, ManualRunsAreDryUnlessStored) {
  Fixture f;
  f.kinds["length"] = length_of_content;
  auto length = evaluator("length");
  length.filter.path = "/never";  // not scheduled automatically
  f.open({length});
  f.submit(chat_record(1));
  auto dry = f.runtime->run_now("alpha", "length", id_of(1), false);
  ASSERT_TRUE(dry.ok()) << dry.error().message;
  EXPECT_EQ((*dry)["state"], "completed");
  EXPECT_EQ((*dry)["scores"][0]["value"], 31.0);
  EXPECT_EQ((*dry)["stored"], false);
  EXPECT_FALSE(f.run(id_of(1), "length"));

  auto stored = f.runtime->run_now("alpha", "length", id_of(1), true);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ((*stored)["stored"], true);
  auto run = f.run(id_of(1), "length");
  ASSERT_TRUE(run);
  EXPECT_TRUE(run->manual);
  EXPECT_EQ(run->state, RunState::kCompleted);

  EXPECT_EQ(f.runtime->run_now("alpha", "nope", id_of(1), false).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(f.runtime->run_now("alpha", "length", id_of(99), false).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(f.runtime->run_now("beta", "length", id_of(1), false).error().code, ErrorCode::kNotFound);
}

TEST(EvaluatorRuntime, SetupErrorsNameTheEvaluator) {
  TempDir dir;
  RequestLogOptions lo;
  lo.path = (dir.path() / "data").string();
  RequestLog log(std::move(lo));
  ScoreStore scores(log);
  EvaluatorRuntimeOptions o;
  o.evaluators = {evaluator("broken")};
  o.make_kind = [](const KindSpec&) -> std::unique_ptr<EvaluatorKind> {
    throw EvaluatorSetupError("params.keywords: expected a list of strings");
  };
  try {
    EvaluatorRuntime runtime(log, scores, o);
    FAIL() << "constructed";
  } catch (const EvaluatorConfigError& e) {
    EXPECT_STREQ(e.what(), "evaluator 'broken' (kind test): params.keywords: expected a list of strings");
  }
}

TEST(EvaluatorRuntime, DescribeRedactsSecretsAndShowsCounters) {
  Fixture f;
  auto hook = evaluator("hook");
  hook.params = {{"url", "https://x"},
                 {"headers", {{"X-Trace", "abc"}, {"Authorization", "Bearer s3cret"}}},
                 {"config", {{"api_key", "k"}, {"threshold", 3}}}};
  f.kinds["hook"] = length_of_content;
  f.open({hook});
  f.submit(chat_record(1));
  ASSERT_TRUE(f.runtime->wait_idle(10s));
  const json d = f.runtime->describe("alpha");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0]["params"]["url"], "https://x");
  EXPECT_EQ(d[0]["params"]["headers"]["Authorization"], "<redacted>");
  EXPECT_EQ(d[0]["params"]["headers"]["X-Trace"], "<redacted>");
  EXPECT_EQ(d[0]["params"]["config"]["api_key"], "<redacted>");
  EXPECT_EQ(d[0]["params"]["config"]["threshold"], 3);
  EXPECT_EQ(d.dump().find("s3cret"), std::string::npos);
  EXPECT_EQ(d[0]["counters"]["completed"], 1);
  EXPECT_GE(d[0]["counters"]["duration_ms"]["p99"].get<double>(), 0.0);
  const std::string metrics = f.runtime->metrics_text();
  EXPECT_NE(metrics.find("arbiter_evaluator_completed_total{evaluator=\"hook\"} 1\n"), std::string::npos)
      << metrics;
}

}  // namespace
}  // namespace arbiter::scoring
