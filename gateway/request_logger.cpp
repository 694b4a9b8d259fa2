#include "gateway/request_logger.hpp"

#include <charconv>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "gateway/credentials.hpp"
#include "gateway/sse_tap.hpp"
#include "scoring/json_limits.hpp"

namespace arbiter::gateway {
namespace {

std::int64_t unix_us(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// A member's raw value (top_level_members) read as a JSON integer, as a parse
// would type it: no fraction or exponent, within 64 bits (nlohmann keeps
// values past INT64_MAX up to UINT64_MAX as unsigned, and get<std::int64_t>()
// wraps them; this does the same). nullopt for anything else.
std::optional<std::int64_t> integer_value(std::string_view raw) {
  const bool negative = !raw.empty() && raw.front() == '-';
  if (negative) raw.remove_prefix(1);
  // JSON has no leading zeros; from_chars into an unsigned takes no sign.
  if (raw.size() > 1 && raw.front() == '0') return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), v);
  if (ec != std::errc() || end != raw.data() + raw.size()) return std::nullopt;
  if (negative && v > std::uint64_t{1} << 63) return std::nullopt;  // a parse makes a double
  return static_cast<std::int64_t>(negative ? std::uint64_t{0} - v : v);
}

// A member's raw value (top_level_members) when it is a string; else "".
std::string string_value(std::string_view raw) {
  if (raw.size() < 2 || raw.front() != '"') return {};
  if (raw.find('\\') == std::string_view::npos) {
    // No escapes: the text between the quotes, if it is valid UTF-8 (a
    // parse would refuse the document otherwise).
    std::string_view inner = raw.substr(1, raw.size() - 2);
    if (scoring::sanitize_utf8(inner) != inner) return {};
    return std::string(inner);
  }
  const auto v = scoring::parse_json_bounded(raw);
  return v.is_string() ? v.get<std::string>() : std::string();
}

// `usage` is the member's raw text: its counts are scanned, not parsed into a
// document (on the storage thread, for every call).
void take_usage(std::string_view usage, scoring::RequestRecord& rec) {
  // Chat/completions name them prompt/completion; the Responses API and
  // Anthropic-style providers say input/output.
  static constexpr std::string_view kCounts[] = {"prompt_tokens", "input_tokens", "completion_tokens",
                                                 "output_tokens", "total_tokens"};
  const auto m = scoring::top_level_members(usage, kCounts);
  if (!m) return;
  rec.prompt_tokens = integer_value((*m)[0]);
  if (!rec.prompt_tokens) rec.prompt_tokens = integer_value((*m)[1]);
  rec.completion_tokens = integer_value((*m)[2]);
  if (!rec.completion_tokens) rec.completion_tokens = integer_value((*m)[3]);
  rec.total_tokens = integer_value((*m)[4]);
  std::int64_t sum = 0;
  if (!rec.total_tokens && rec.prompt_tokens && rec.completion_tokens &&
      !__builtin_add_overflow(*rec.prompt_tokens, *rec.completion_tokens, &sum)) {
    rec.total_tokens = sum;
  }
}

int record_status(const ExchangeResult& r) {
  switch (r.outcome) {
    case Outcome::upstream_unreachable: return -1;
    case Outcome::upstream_timeout: return -2;
    case Outcome::client_cancelled: return -3;
    default: return r.status;
  }
}

}  // namespace

void derive_fields(scoring::RequestRecord& rec, const Config& config) {
  rec.derive_pending = false;
  if (rec.reassemble_pending) {
    rec.reassemble_pending = false;
    rec.response_body = reassemble_stream(rec.stream_raw);
  }
  // Only a few top-level members are read, so only they are parsed: the
  // bodies (a request holds the whole conversation) are scanned, not built
  // into documents (scoring::top_level_members).
  static constexpr std::string_view kRequestMembers[] = {"model", "user"};
  static constexpr std::string_view kResponseMembers[] = {"model", "usage"};
  if (!rec.request_truncated && !rec.request_body.empty()) {
    if (auto m = scoring::top_level_members(rec.request_body, kRequestMembers)) {
      rec.request_model = string_value((*m)[0]);
      if (rec.user_id.empty()) rec.user_id = string_value((*m)[1]);
    }
  }
  // A stream's response body is the reassembled completion, whole even when
  // the raw SSE copy was cut at the cap.
  if ((!rec.response_truncated || rec.is_stream) && !rec.response_body.empty()) {
    if (auto m = scoring::top_level_members(rec.response_body, kResponseMembers)) {
      rec.response_model = string_value((*m)[0]);
      if (!(*m)[1].empty()) take_usage((*m)[1], rec);
    }
  }
  rec.cost_usd = cost_for(config, rec);
}

scoring::RequestRecord build_record(const RequestContext& ctx, ExchangeResult&& result, const Config& config,
                                    bool defer_derivation) {
  scoring::RequestRecord rec;
  rec.request_id = ctx.request_id;
  rec.new_id = !ctx.request_id_from_client;
  rec.project = ctx.project;
  rec.created_at_us = unix_us(ctx.created_at);
  rec.response_at_us = unix_us(result.response_at);
  rec.latency_ms = static_cast<double>(result.latency.count()) / 1000.0;
  if (result.time_to_first_token) {
    rec.time_to_first_token_ms = static_cast<double>(result.time_to_first_token->count()) / 1000.0;
  }
  rec.method = ctx.method;
  rec.path = ctx.target;
  rec.upstream = ctx.upstream;
  rec.status = record_status(result);
  rec.user_id = ctx.user_id;
  rec.session_id = ctx.session_id;
  rec.session_path = ctx.session_path;
  rec.session_name = ctx.session_name;
  rec.properties = ctx.properties;
  rec.redact = ctx.credentials.values();
  rec.is_stream = result.is_stream;
  rec.error_message = std::move(result.error);

  rec.request_size = static_cast<std::int64_t>(result.request_body.size);
  rec.request_omitted = ctx.omit_request;
  rec.request_body = std::move(result.request_body.bytes);
  rec.request_truncated = result.request_body.truncated;

  rec.response_size = static_cast<std::int64_t>(result.response_body.size);
  rec.response_omitted = ctx.omit_response;
  if (result.is_stream) {
    // The reassembled completion is what evaluators and queries read; the raw
    // SSE bytes are kept (up to the cap) for fidelity.
    rec.stream_raw = std::move(result.response_body.bytes);
    if (result.stream_reassembly_deferred) {
      rec.reassemble_pending = true;  // derive_fields rebuilds it from stream_raw
    } else {
      rec.response_body = std::move(result.stream_reassembled);
    }
  } else {
    rec.response_body = std::move(result.response_body.bytes);
  }
  rec.response_truncated = result.response_body.truncated;

  // Omitted bodies are not stored, so what they tell is read now.
  const bool omitted = ctx.omit_request || ctx.omit_response;
  if (defer_derivation && !omitted) {
    rec.derive_pending = true;
  } else {
    derive_fields(rec, config);
  }
  if (ctx.omit_request) {
    rec.request_body.clear();
    rec.request_truncated = false;
  }
  if (ctx.omit_response) {
    rec.response_body.clear();
    rec.stream_raw.clear();
    rec.response_truncated = false;
  }
  return rec;
}

void redact_credentials(scoring::RequestRecord& rec) {
  // Credential query parameters are masked whether or not a header carried them.
  rec.path = redact_query(std::move(rec.path));
  if (rec.redact.empty()) return;
  Credentials credentials;
  for (const auto& v : rec.redact) credentials.add(v);
  credentials.finish();
  for (std::string* s : {&rec.path, &rec.request_body, &rec.response_body, &rec.stream_raw, &rec.error_message,
                         &rec.user_id, &rec.session_id, &rec.session_path, &rec.session_name}) {
    credentials.redact(*s);
  }
  for (auto& [name, value] : rec.properties) credentials.redact(value);
  rec.redact.clear();
}

void prepare_record(scoring::RequestRecord& rec, const Config& config) {
  if (rec.derive_pending) derive_fields(rec, config);
  redact_credentials(rec);
}

std::optional<double> cost_for(const Config& config, const scoring::RequestRecord& rec) {
  if (!rec.prompt_tokens || !rec.completion_tokens) return std::nullopt;
  const ModelPrice* price = config.price_for(rec.model());
  if (price == nullptr) return std::nullopt;
  return (static_cast<double>(*rec.prompt_tokens) * price->input_per_million +
          static_cast<double>(*rec.completion_tokens) * price->output_per_million) /
         1e6;
}

RequestLogger::RequestLogger(scoring::RequestLog& log, std::shared_ptr<const Config> config)
    : log_(log), config_(std::move(config)) {}

void RequestLogger::on_request_start(const RequestContext& ctx) { log_.inflight().add(ctx.project, ctx.request_id); }

void RequestLogger::on_request_end(const RequestContext& ctx, ExchangeResult&& result, DurableCallback on_durable) {
  scoring::RequestRecord rec = build_record(ctx, std::move(result), *config_, /*defer_derivation=*/true);
  const bool queued = log_.submit(std::move(rec), std::move(on_durable));  // kept when not queued
  // Only now: known() must not see a gap between "in flight" and "queued".
  log_.inflight().remove(ctx.project, ctx.request_id);
  if (!queued && on_durable) on_durable(false);
}

}  // namespace arbiter::gateway
