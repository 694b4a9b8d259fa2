// Microbenchmarks of the proxy's hot kernels (issue #7, DESIGN.md §9), with Google Benchmark.
// Every benchmark calls the real functions the gateway runs per request:
//
//   header parse + rewrite  Beast's request parser on a typical SDK request header, then what
//                           ProxySession::handle does with it: prepare_proxy_request
//                           (read_helicone_headers, find_project_by_key: SHA-256 + constant-time
//                           compare, new_request_id, the upstream head rendered from the fields)
//   SSE tee                 SseTap::feed of a 40-event chat stream, one event per feed as the
//                           proxy relays them, then finish() and reassembled()
//   record encode           build_record (deferred) → derive_fields (JSON parse of both bodies,
//                           on the storage thread) → encode_metadata, for a typical chat call
//   record decode           decode_metadata of that record's stored metadata, without and with
//                           posted feedback: what every API read, webhook and evaluator pays
//   score encode / decode   encode_score / decode_score of an evaluator score (its metadata
//                           names the evaluator and run) and of a Helicone API score (no
//                           metadata, no comment): the score writer and every score read
//   body parse              parse_json_bounded of a response and of a 10 KiB request, and
//                           nlohmann::json::parse of the same (the reader it replaced)
//   batch write             Store::write of N records (metadata, bodies, indexes) into RocksDB
//                           in a temp dir, WAL on, no fsync: what the storage thread commits
//
//   build/release/bench/micro_bench [--benchmark_filter=REGEX] [--benchmark_min_time=0.5]
//
// Figures: ns per operation, and bytes/s (or items/s) where an operation has a natural size.
// Run it from a Release build on a quiet machine; a Debug build only proves it runs.

#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gateway/auth.hpp"
#include "gateway/config.hpp"
#include "gateway/http_wire.hpp"
#include "gateway/proxy_request.hpp"
#include "gateway/request_context.hpp"
#include "gateway/request_logger.hpp"
#include "gateway/sse_tap.hpp"
#include "scoring/json_limits.hpp"
#include "scoring/request_record.hpp"
#include "scoring/score.hpp"
#include "scoring/store.hpp"

namespace {

namespace http = boost::beast::http;
using namespace arbiter;

// A request header as the OpenAI Python SDK sends it through the gateway (the x-stainless-*
// headers are the SDK's), with the Helicone-* headers a team typically adds.
const std::string& request_header() {
  static const std::string h =
      "POST /v1/chat/completions HTTP/1.1\r\n"
      "Host: 127.0.0.1:8080\r\n"
      "Accept-Encoding: gzip, deflate\r\n"
      "Connection: keep-alive\r\n"
      "Accept: application/json\r\n"
      "Content-Type: application/json\r\n"
      "User-Agent: OpenAI/Python 1.40.6\r\n"
      "X-Stainless-Lang: python\r\n"
      "X-Stainless-Package-Version: 1.40.6\r\n"
      "X-Stainless-OS: Linux\r\n"
      "X-Stainless-Arch: x64\r\n"
      "X-Stainless-Runtime: CPython\r\n"
      "X-Stainless-Runtime-Version: 3.11.9\r\n"
      "Authorization: Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ\r\n"
      "X-Stainless-Async: false\r\n"
      "Helicone-Auth: Bearer bench-key\r\n"
      "Helicone-User-Id: user-4711\r\n"
      "Helicone-Session-Id: 7d1f5f0e-3a0b-4c47-9d77-5b1c2c9e0a11\r\n"
      "Helicone-Property-Env: prod\r\n"
      "Helicone-Property-Feature: summarise\r\n"
      "Content-Length: 174\r\n"
      "\r\n";
  return h;
}

const std::string& request_body() {
  static const std::string b =
      R"({"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},)"
      R"({"role":"user","content":"Summarise the plot of Hamlet in two sentences."}],"temperature":0.2})";
  return b;
}

const std::string& response_body() {
  static const std::string b =
      R"({"id":"chatcmpl-9x2AbCdEfGhIjKlMnOpQrStUv","object":"chat.completion","created":1732270000,)"
      R"("model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":)"
      R"("Prince Hamlet feigns madness while seeking to avenge his father's murder by his uncle Claudius, )"
      R"(who has married Hamlet's mother. His hesitation and the deaths it causes end in a duel that kills )"
      R"(nearly the whole court, Hamlet included."},"logprobs":null,"finish_reason":"stop"}],)"
      R"("usage":{"prompt_tokens":31,"completion_tokens":52,"total_tokens":83},"system_fingerprint":"fp_0ba0d124f1"})";
  return b;
}

std::shared_ptr<const gateway::Config> bench_config() {
  static const auto config = gateway::load_config_from_string(R"(
upstreams:
  - name: openai
    base_url: http://127.0.0.1:9
projects:
  - name: bench
    api_keys: [ bench-key, second-key ]
  - name: other
    api_keys: [ other-key ]
pricing:
  - model: gpt-4o-mini*
    input_per_million: 0.15
    output_per_million: 0.6
)",
                                                               "micro_bench.yaml");
  return config;
}

// Parses the header the way the proxy does (request_parser<buffer_body>, header first).
void parse_header(http::request_parser<http::buffer_body>& parser, const std::string& bytes) {
  boost::system::error_code ec;
  parser.header_limit(16 * 1024);
  parser.put(boost::asio::buffer(bytes), ec);
  if (ec || !parser.is_header_done()) throw std::runtime_error("request header did not parse: " + ec.message());
}

void BM_HeaderParse(benchmark::State& state) {
  const std::string& bytes = request_header();
  for (auto _ : state) {
    http::request_parser<http::buffer_body> parser;
    parse_header(parser, bytes);
    benchmark::DoNotOptimize(parser.get().target().data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_HeaderParse);

void BM_ReadHeliconeHeaders(benchmark::State& state) {
  http::request_parser<http::buffer_body> parser;
  parse_header(parser, request_header());
  const auto& fields = parser.get().base();
  for (auto _ : state) {
    auto hh = gateway::read_helicone_headers(fields);
    benchmark::DoNotOptimize(hh);
  }
}
BENCHMARK(BM_ReadHeliconeHeaders);

void BM_FindProjectByKey(benchmark::State& state) {
  const auto config = bench_config();
  for (auto _ : state) {
    const auto* project = gateway::find_project_by_key(*config, "bench-key");
    if (project == nullptr) state.SkipWithError("key not found");
    benchmark::DoNotOptimize(project);
  }
}
BENCHMARK(BM_FindProjectByKey);

void BM_NewRequestId(benchmark::State& state) {
  for (auto _ : state) {
    auto id = gateway::new_request_id();
    benchmark::DoNotOptimize(id);
  }
}
BENCHMARK(BM_NewRequestId);


// The per-request header work end to end: parse, then prepare_proxy_request (read,
// authenticate, id, the upstream head), as ProxySession::handle runs it.
void BM_HeaderParseAndRewrite(benchmark::State& state) {
  const auto config = bench_config();
  const std::string& bytes = request_header();
  for (auto _ : state) {
    http::request_parser<http::buffer_body> parser;
    parse_header(parser, bytes);
    auto prep = gateway::prepare_proxy_request(*config, config->upstreams, parser.get(), /*wants_bodies=*/true);
    if (prep.rejection) state.SkipWithError("request rejected");
    benchmark::DoNotOptimize(prep.upstream_head.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_HeaderParseAndRewrite);

// A provider's response header, as OpenAI sends one for a chat completion.
const std::string& response_header() {
  static const std::string h =
      "HTTP/1.1 200 OK\r\n"
      "Date: Tue, 24 Nov 2026 20:00:00 GMT\r\n"
      "Content-Type: application/json\r\n"
      "Content-Length: 572\r\n"
      "Connection: keep-alive\r\n"
      "access-control-expose-headers: X-Request-ID\r\n"
      "openai-organization: user-abc123\r\n"
      "openai-processing-ms: 412\r\n"
      "openai-version: 2020-10-01\r\n"
      "x-ratelimit-limit-requests: 10000\r\n"
      "x-ratelimit-limit-tokens: 2000000\r\n"
      "x-ratelimit-remaining-requests: 9999\r\n"
      "x-ratelimit-remaining-tokens: 1999967\r\n"
      "x-ratelimit-reset-requests: 6ms\r\n"
      "x-ratelimit-reset-tokens: 0s\r\n"
      "x-request-id: req_0123456789abcdef0123456789abcdef\r\n"
      "strict-transport-security: max-age=31536000; includeSubDomains; preload\r\n"
      "cf-cache-status: DYNAMIC\r\n"
      "Server: cloudflare\r\n"
      "\r\n";
  return h;
}

// The response side of the header work: parse the provider's header as the proxy does, then
// render the client's head from it (append_relayed_response_head).
void BM_ResponseHeadRelay(benchmark::State& state) {
  const std::string& bytes = response_header();
  const std::string id = "0192f1b2-0000-4000-8000-000000000001";
  std::string head;
  head.reserve(1024);
  for (auto _ : state) {
    http::response_parser<http::buffer_body> parser;
    boost::system::error_code ec;
    parser.put(boost::asio::buffer(bytes), ec);
    if (ec || !parser.is_header_done()) state.SkipWithError("response header did not parse");
    head.clear();
    gateway::append_relayed_response_head(head, parser.get().result_int(), parser.get().reason(), parser.get(),
                                          false, id, true);
    benchmark::DoNotOptimize(head.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_ResponseHeadRelay);

// A chat stream as the fake upstream (and OpenAI) sends it: role, 38 content deltas, finish,
// usage, [DONE]; one string per event, as the proxy relays them.
const std::vector<std::string>& sse_events() {
  static const std::vector<std::string> events = [] {
    std::vector<std::string> out;
    const std::string head =
        R"(data: {"id":"chatcmpl-9x2AbCdEfGhIjKlMnOpQrStUv","object":"chat.completion.chunk","created":1732270000,)"
        R"("model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":)";
    out.push_back(head + R"({"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null})" +
                  "\n\n");
    for (int i = 0; i < 38; ++i) {
      out.push_back(head + R"({"content":" word)" + std::to_string(i) +
                    R"("},"logprobs":null,"finish_reason":null}],"usage":null})" + "\n\n");
    }
    out.push_back(head + R"({},"logprobs":null,"finish_reason":"stop"}],"usage":null})" + "\n\n");
    out.push_back(
        R"(data: {"id":"chatcmpl-9x2AbCdEfGhIjKlMnOpQrStUv","object":"chat.completion.chunk","created":1732270000,)"
        R"("model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":31,"completion_tokens":39,)"
        R"("total_tokens":70}})"
        "\n\n");
    out.push_back("data: [DONE]\n\n");
    return out;
  }();
  return events;
}

void BM_SseTee(benchmark::State& state) {
  const auto& events = sse_events();
  std::size_t bytes = 0;
  for (const auto& e : events) bytes += e.size();
  for (auto _ : state) {
    gateway::SseTap tap;
    for (const auto& e : events) tap.feed(e);
    tap.finish();
    if (!tap.saw_done()) state.SkipWithError("stream not reassembled");
    auto completion = tap.reassembled();
    benchmark::DoNotOptimize(completion);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["events"] = static_cast<double>(events.size());
}
BENCHMARK(BM_SseTee);

// What a relayed stream costs its I/O thread in the tee, per stream: the raw
// copy of every event, plus (0) parsing every event and rebuilding the
// completion there, as before session 8, or (1) parsing events only until the
// first token, the completion being rebuilt on the storage thread.
void BM_StreamTeeOnIoThread(benchmark::State& state) {
  const auto& events = sse_events();
  const bool deferred = state.range(0) == 1;
  for (auto _ : state) {
    gateway::SseTap tap;
    std::string raw;
    std::string completion;
    for (const auto& e : events) {
      raw.append(e);
      if (!deferred || !tap.has_first_token()) tap.feed(e);
    }
    if (!deferred) {
      tap.finish();
      completion = tap.reassembled().dump();
    }
    benchmark::DoNotOptimize(raw);
    benchmark::DoNotOptimize(completion);
  }
  state.counters["events"] = static_cast<double>(events.size());
}
BENCHMARK(BM_StreamTeeOnIoThread)->ArgName("deferred")->Arg(0)->Arg(1);

gateway::RequestContext chat_context() {
  gateway::RequestContext ctx;
  ctx.request_id = "7d1f5f0e-3a0b-4c47-9d77-5b1c2c9e0a11";
  ctx.project = "bench";
  ctx.upstream = "openai";
  ctx.method = "POST";
  ctx.target = "/v1/chat/completions";
  ctx.properties = {{"env", "prod"}, {"feature", "summarise"}};
  ctx.user_id = "user-4711";
  ctx.created_at = std::chrono::system_clock::now();
  ctx.started = std::chrono::steady_clock::now();
  return ctx;
}

gateway::ExchangeResult chat_exchange() {
  gateway::ExchangeResult r;
  r.status = 200;
  r.response_at = std::chrono::system_clock::now();
  r.latency = std::chrono::microseconds(350'000);
  r.response_content_type = "application/json";
  r.request_body.bytes = request_body();
  r.request_body.size = r.request_body.bytes.size();
  r.response_body.bytes = response_body();
  r.response_body.size = r.response_body.bytes.size();
  return r;
}

// What the proxy does at the end of a call (build_record, deferred), then what the storage
// thread does before writing (derive_fields, encode_metadata).
void BM_RecordEncode(benchmark::State& state) {
  const auto config = bench_config();
  const auto ctx = chat_context();
  const auto exchange = chat_exchange();
  std::size_t encoded = 0;
  for (auto _ : state) {
    auto rec = gateway::build_record(ctx, gateway::ExchangeResult(exchange), *config, /*defer_derivation=*/true);
    gateway::derive_fields(rec, *config);
    auto bytes = scoring::encode_metadata(rec);
    encoded = bytes.size();
    benchmark::DoNotOptimize(bytes);
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * (request_body().size() + response_body().size())));
  state.counters["metadata_bytes"] = static_cast<double>(encoded);
}
BENCHMARK(BM_RecordEncode);

void BM_EncodeMetadata(benchmark::State& state) {
  const auto config = bench_config();
  auto rec = gateway::build_record(chat_context(), chat_exchange(), *config);
  std::size_t encoded = 0;
  for (auto _ : state) {
    auto bytes = scoring::encode_metadata(rec);
    encoded = bytes.size();
    benchmark::DoNotOptimize(bytes);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * encoded));
}
BENCHMARK(BM_EncodeMetadata);

void BM_DeriveFields(benchmark::State& state) {
  const auto config = bench_config();
  const auto pending = gateway::build_record(chat_context(), chat_exchange(), *config, /*defer_derivation=*/true);
  for (auto _ : state) {
    auto rec = pending;  // derive_fields works on a record it then owns
    gateway::derive_fields(rec, *config);
    benchmark::DoNotOptimize(rec);
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * (request_body().size() + response_body().size())));
}
BENCHMARK(BM_DeriveFields);

// A request of 20 turns of ~500 characters each (a 10 KiB body), as chat clients send. Each
// turn's content has escaped quotes in it, as real text does.
const std::string& long_conversation() {
  static const std::string body = [] {
    std::string b = R"({"messages":[)";
    for (int turn = 0; turn < 20; ++turn) {
      if (turn > 0) b += ',';
      b += R"({"role":")";
      b += turn % 2 == 0 ? "user" : "assistant";
      b += R"(","content":")";
      for (int i = 0; i < 10; ++i)
        b += R"(The quick brown fox jumps over the lazy dog, again and \"again\". )";
      b += R"("})";
    }
    b += R"(],"model":"gpt-4o-mini","temperature":0.2})";
    return b;
  }();
  return body;
}

// The same with a conversation of 20 turns of ~500 characters (a 10 KiB
// request), as chat clients send: the scan for "model" and "user" walks the
// whole body.
void BM_DeriveFieldsLongConversation(benchmark::State& state) {
  const auto config = bench_config();
  auto exchange = chat_exchange();
  const std::string& body = long_conversation();
  exchange.request_body.bytes = body;
  exchange.request_body.size = body.size();
  const auto pending =
      gateway::build_record(chat_context(), std::move(exchange), *config, /*defer_derivation=*/true);
  for (auto _ : state) {
    auto rec = pending;
    gateway::derive_fields(rec, *config);
    benchmark::DoNotOptimize(rec);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (body.size() + response_body().size())));
  state.counters["request_bytes"] = static_cast<double>(body.size());
}
BENCHMARK(BM_DeriveFieldsLongConversation);

// Parsing a body into a document, as the evaluator's event, the API's bodies and the SSE tap do:
// parse_json_bounded (arbiter's reader, with the depth bound) against nlohmann::json::parse with
// the depth pre-scan it replaced. range(0): 0 = the chat call's response, 1 = a 10 KiB request of
// 20 turns.
const std::string& body_to_parse(std::int64_t which) {
  return which == 0 ? response_body() : long_conversation();
}

void BM_ParseBody(benchmark::State& state) {
  const std::string& body = body_to_parse(state.range(0));
  for (auto _ : state) {
    auto doc = scoring::parse_json_bounded(body);
    benchmark::DoNotOptimize(doc);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_ParseBody)->ArgName("long")->Arg(0)->Arg(1);

void BM_ParseBodyNlohmann(benchmark::State& state) {
  const std::string& body = body_to_parse(state.range(0));
  for (auto _ : state) {
    auto doc = scoring::json_too_deep(body) ? nlohmann::json(nlohmann::json::value_t::discarded)
                                            : nlohmann::json::parse(body, nullptr, false);
    benchmark::DoNotOptimize(doc);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_ParseBodyNlohmann)->ArgName("long")->Arg(0)->Arg(1);

// The stored metadata of the chat call above; range(0) = 1 adds posted feedback (the one
// free-form JSON member a record carries).
void BM_RecordDecode(benchmark::State& state) {
  const auto config = bench_config();
  auto rec = gateway::build_record(chat_context(), chat_exchange(), *config);
  if (state.range(0) != 0) rec.feedback = {{"ground_truth", "Hamlet avenges his father."}, {"rating", true}};
  const std::string bytes = scoring::encode_metadata(rec);
  for (auto _ : state) {
    auto decoded = scoring::decode_metadata(bytes);
    if (!decoded.ok()) state.SkipWithError("decode_metadata failed");
    benchmark::DoNotOptimize(decoded);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
  state.counters["metadata_bytes"] = static_cast<double>(bytes.size());
}
BENCHMARK(BM_RecordDecode)->ArgName("feedback")->Arg(0)->Arg(1);

// range(0) = 0: what an evaluator writes (source EVAL, metadata naming the evaluator and the
// run, as evaluator_runtime.cpp sets it); 1: a Helicone `POST /v1/request/{id}/score` score.
scoring::Score bench_score(std::int64_t kind) {
  scoring::Score s;
  s.id = "0b6f3c2e-8d4a-4f1b-9c7e-2a5d6e7f8a9b";
  s.project = "bench";
  s.request_id = "7d1f5f0e-3a0b-4c47-9d77-5b1c2c9e0a11";
  s.timestamp_us = 1732270000123456;
  s.created_at_us = s.timestamp_us;
  s.updated_at_us = s.timestamp_us;
  if (kind == 0) {
    s.name = "answer_length";
    s.value = 312;
    s.source = scoring::ScoreSource::kEval;
    s.metadata = {{"evaluator", "answer_length"},
                  {"kind", "response_length"},
                  {"run_id", "3f0c9a57-5d7e-4c1a-8b2f-6e9d0a1b2c3d"}};
  } else {
    s.name = "helpfulness";
    s.value = 92;
  }
  return s;
}

void BM_ScoreEncode(benchmark::State& state) {
  const scoring::Score s = bench_score(state.range(0));
  std::size_t encoded = 0;
  for (auto _ : state) {
    auto bytes = scoring::encode_score(s);
    encoded = bytes.size();
    benchmark::DoNotOptimize(bytes);
  }
  state.counters["score_bytes"] = static_cast<double>(encoded);
}
BENCHMARK(BM_ScoreEncode)->ArgName("api")->Arg(0)->Arg(1);

void BM_ScoreDecode(benchmark::State& state) {
  const std::string bytes = scoring::encode_score(bench_score(state.range(0)));
  for (auto _ : state) {
    auto decoded = scoring::decode_score(bytes);
    if (!decoded.ok()) state.SkipWithError("decode_score failed");
    benchmark::DoNotOptimize(decoded);
  }
  state.counters["score_bytes"] = static_cast<double>(bytes.size());
}
BENCHMARK(BM_ScoreDecode)->ArgName("api")->Arg(0)->Arg(1);

// A RocksDB directory for the life of one benchmark, removed afterwards.
class TempDb {
 public:
  TempDb() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "arbiter-micro.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDb() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDb(const TempDb&) = delete;
  TempDb& operator=(const TempDb&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void BM_StoreWriteBatch(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto config = bench_config();
  TempDb dir;
  std::size_t record_bytes = 0;
  {
    auto store = scoring::Store::open(dir.path() + "/db");
    std::vector<scoring::RequestRecord> records(n, gateway::build_record(chat_context(), chat_exchange(), *config));
    std::vector<const scoring::RequestRecord*> ptrs;
    for (const auto& r : records) ptrs.push_back(&r);
    record_bytes = scoring::encode_metadata(records.front()).size() + request_body().size() + response_body().size();
    std::int64_t created = records.front().created_at_us;
    for (auto _ : state) {
      // Fresh ids (as the proxy's are), so every write inserts instead of replacing.
      for (auto& r : records) {
        r.request_id = scoring::random_uuid();
        r.created_at_us = ++created;
      }
      auto written = store->write(ptrs, /*sync=*/false);
      if (!written) state.SkipWithError("Store::write failed");
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * record_bytes));
}
BENCHMARK(BM_StoreWriteBatch)->Arg(1)->Arg(64)->Arg(512)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
