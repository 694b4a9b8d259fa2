#include "gateway/log_ingest.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gateway/credentials.hpp"
#include "gateway/request_context.hpp"
#include "scoring/json_limits.hpp"

namespace arbiter::gateway {
namespace http = boost::beast::http;
using nlohmann::json;
using scoring::Expected;
using scoring::RequestRecord;

namespace {

constexpr std::string_view kDefaultPath = "/v1/chat/completions";
constexpr std::string_view kAnthropicDefaultPath = "/v1/messages";
constexpr std::size_t kMaxPathBytes = 8192;
// beast::http::fields refuses names/values near 64 KiB; meta entries are
// header-sized anyway.
constexpr std::size_t kMaxMetaNameBytes = 256;
constexpr std::size_t kMaxMetaValueBytes = 16384;
// 9999-12-31T23:59:59Z. Keeps seconds * 1e6 far from int64 overflow.
constexpr long double kMaxUnixSeconds = 253402300799.0L;
constexpr double kMaxDurationMs = 1e12;

scoring::Error field_error(std::string_view field, std::string_view what) {
  std::string message(field);
  message += ": ";
  message += what;
  return scoring::invalid_argument(std::move(message));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())) != 0) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.remove_suffix(1);
  return s;
}

// An optional member: nullptr when absent or JSON null (JavaScript clients
// write null and undefined interchangeably).
const json* member(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// --- timing ----------------------------------------------------------------------

// {seconds, milliseconds} → unix µs. Both parts may be fractional: the
// package computes `t % 1e3` of a value that can carry a fractional latency.
Expected<std::int64_t> parse_instant(const json& timing, const char* key) {
  const std::string name = std::string("timing.") + key;
  const json* instant = member(timing, key);
  if (instant == nullptr) return field_error(name, "missing");
  if (!instant->is_object()) return field_error(name, "expected an object");
  long double parts[2] = {0, 0};
  const char* part_names[2] = {"seconds", "milliseconds"};
  for (int i = 0; i < 2; ++i) {
    const json* part = member(*instant, part_names[i]);
    const std::string part_name = name + "." + part_names[i];
    if (part == nullptr) return field_error(part_name, "missing");
    if (!part->is_number()) return field_error(part_name, "expected a number");
    parts[i] = part->get<long double>();
    if (!std::isfinite(parts[i])) return field_error(part_name, "expected a finite number");
    if (parts[i] < 0) return field_error(name, "negative time");
  }
  if (parts[0] > kMaxUnixSeconds || parts[1] > kMaxUnixSeconds * 1000) {
    return field_error(name, "out of range");
  }
  return static_cast<std::int64_t>(std::llround(parts[0] * 1e6L + parts[1] * 1e3L));
}

// --- the request's path --------------------------------------------------------

bool is_scheme(std::string_view s) {
  if (s.empty() || std::isalpha(static_cast<unsigned char>(s.front())) == 0) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '.';
  });
}

// Path and query of providerRequest.url. The package always sends the
// placeholder "custom-model-nopath"; anything that is neither a URL nor an
// absolute path gets the route's default.
Expected<std::string> request_path(const json* url, std::string_view default_path) {
  if (url == nullptr) return std::string(default_path);
  if (!url->is_string()) return field_error("providerRequest.url", "expected a string");
  const std::string_view u = trim(url->get_ref<const std::string&>());
  std::string path;
  const std::size_t scheme_end = u.find("://");
  if (scheme_end != std::string_view::npos && is_scheme(u.substr(0, scheme_end))) {
    const std::string_view rest = u.substr(scheme_end + 3);
    const std::size_t start = rest.find_first_of("/?#");  // userinfo and host are dropped
    if (start == std::string_view::npos || rest[start] == '#') {
      path = "/";
    } else {
      path = rest[start] == '/' ? std::string(rest.substr(start))
                                : "/" + std::string(rest.substr(start));
    }
  } else if (!u.empty() && u.front() == '/') {
    path = std::string(u);
  } else {
    return std::string(default_path);
  }
  if (const std::size_t hash = path.find('#'); hash != std::string::npos) path.resize(hash);
  if (path.size() > kMaxPathBytes)
    return field_error("providerRequest.url", "path longer than 8192 bytes");
  for (const char c : path) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f)
      return field_error("providerRequest.url", "contains control characters");
  }
  return redact_query(std::move(path));
}

// --- model and usage -------------------------------------------------------------

struct Extracted {
  std::string model;
  std::optional<std::int64_t> prompt_tokens, completion_tokens, total_tokens;
};

// The first of `keys` holding a non-negative integer. Anything else (Helicone's
// -1 placeholders, strings, floats) leaves the count unknown.
std::optional<std::int64_t> token_count(const json& usage,
                                        std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    auto it = usage.find(key);
    if (it == usage.end()) continue;
    if (it->is_number_unsigned()) {
      const auto v = it->get<std::uint64_t>();
      if (v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return static_cast<std::int64_t>(v);
      }
    } else if (it->is_number_integer()) {
      const auto v = it->get<std::int64_t>();
      if (v >= 0) return v;
    }
  }
  return std::nullopt;
}

template <class T>
void set_if(std::optional<T>& out, const std::optional<T>& v) {
  if (v) out = v;
}

// OpenAI (prompt/completion/total_tokens), Anthropic (input/output_tokens),
// Vercel AI SDK (inputTokens/outputTokens). Later events override earlier ones
// field by field, which is how Anthropic streams report (message_start has
// the input, message_delta the final output).
void absorb_usage(const json& usage, Extracted& out) {
  if (!usage.is_object()) return;
  set_if(out.prompt_tokens, token_count(usage, {"prompt_tokens", "input_tokens", "inputTokens"}));
  set_if(out.completion_tokens,
         token_count(usage, {"completion_tokens", "output_tokens", "outputTokens"}));
  set_if(out.total_tokens, token_count(usage, {"total_tokens", "totalTokens"}));
}

void absorb_model(const json& event, const char* key, Extracted& out) {
  auto it = event.find(key);
  if (it != event.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
    out.model = it->get<std::string>();
  }
}

// One response object or one stream event. Content of provider bodies is
// taken when it has the expected type and ignored otherwise: the call already
// happened, and a log should not be refused over an unusual provider field.
void absorb_event(const json& event, Extracted& out) {
  if (!event.is_object()) return;
  absorb_model(event, "model", out);
  absorb_model(event, "modelVersion", out);  // Google
  if (auto it = event.find("message");
      it != event.end() && it->is_object()) {  // Anthropic message_start
    absorb_model(*it, "model", out);
    if (auto u = it->find("usage"); u != it->end()) absorb_usage(*u, out);
  }
  if (auto it = event.find("usage"); it != event.end()) absorb_usage(*it, out);
  if (auto it = event.find("usageMetadata"); it != event.end() && it->is_object()) {  // Google
    set_if(out.prompt_tokens, token_count(*it, {"promptTokenCount"}));
    auto candidates = token_count(*it, {"candidatesTokenCount"});
    if (candidates) {
      if (auto thoughts = token_count(*it, {"thoughtsTokenCount"})) *candidates += *thoughts;
    }
    set_if(out.completion_tokens, candidates);
    set_if(out.total_tokens, token_count(*it, {"totalTokenCount"}));
  }
}

// A textBody: one JSON document (logSingleRequest with a serialized body), or
// a stream as JSON lines (openai's toReadableStream, HeliconeLogBuilder) or
// SSE `data:` lines.
void absorb_text(std::string_view text, Extracted& out) {
  const std::string_view t = trim(text);
  if (t.empty()) return;
  if (t.front() == '{' || t.front() == '[') {
    const json whole = scoring::parse_json_bounded(t);
    if (whole.is_object()) {
      absorb_event(whole, out);
      return;
    }
    if (whole.is_array()) {
      for (const auto& e : whole) absorb_event(e, out);
      return;
    }
  }
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (starts_with(line, "data:")) line = trim(line.substr(5));
    if (line.empty() || line.front() != '{') continue;
    const json event = scoring::parse_json_bounded(line);
    absorb_event(event, out);
  }
}

// --- bodies ------------------------------------------------------------------------

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Largest length ≤ cap that does not split a UTF-8 sequence.
std::size_t utf8_floor(const std::string& s, std::size_t cap) {
  if (cap >= s.size()) return s.size();
  std::size_t n = cap;
  for (int back = 0; back < 3 && n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80; ++back)
    --n;
  return n;
}

struct BodySlot {
  std::string& body;
  std::int64_t& size;
  bool& truncated;
  bool& omitted;
};

void store_body(std::string full, bool omit, const Credentials& secrets, BodySlot slot) {
  slot.size = static_cast<std::int64_t>(full.size());
  if (omit) {
    slot.omitted = true;
    return;
  }
  secrets.redact(full);
  if (full.size() > kManualLogBodyCap) {
    full.resize(utf8_floor(full, kManualLogBodyCap));
    slot.truncated = true;
  }
  slot.body = std::move(full);
}

}  // namespace

Expected<RequestRecord> parse_manual_log(const json& body, const http::fields& headers,
                                         std::string_view project, std::string_view path_kind,
                                         std::int64_t now_us) {
  if (project.empty()) return field_error("project", "empty");
  std::string_view default_path;
  if (path_kind == "custom" || path_kind == "oai" || path_kind == "googleapis") {
    default_path = kDefaultPath;
  } else if (path_kind == "anthropic") {
    default_path = kAnthropicDefaultPath;
  } else {
    return field_error("path_kind", "unknown log route");
  }

  if (!body.is_object()) return field_error("body", "expected a JSON object");

  // --- shape checks, before anything is built -----------------------------------------
  const json* request = member(body, "providerRequest");
  if (request == nullptr) return field_error("providerRequest", "missing");
  if (!request->is_object()) return field_error("providerRequest", "expected an object");
  const json* request_json = member(*request, "json");
  if (request_json == nullptr) return field_error("providerRequest.json", "missing");
  if (!request_json->is_object()) return field_error("providerRequest.json", "expected an object");

  const json* response = member(body, "providerResponse");
  if (response == nullptr) return field_error("providerResponse", "missing");
  if (!response->is_object()) return field_error("providerResponse", "expected an object");
  const json* response_json = member(*response, "json");
  if (response_json != nullptr && !response_json->is_object()) {
    return field_error("providerResponse.json", "expected an object");
  }
  const json* text_body = member(*response, "textBody");
  if (text_body != nullptr && !text_body->is_string()) {
    return field_error("providerResponse.textBody", "expected a string");
  }
  if (const json* provider = member(body, "provider");
      provider != nullptr && !provider->is_string()) {
    return field_error("provider", "expected a string");
  }

  Credentials secrets;
  for (const auto& field : headers) secrets.consider(field.name_string(), field.value());
  if (const json* response_headers = member(*response, "headers")) {
    if (!response_headers->is_object())
      return field_error("providerResponse.headers", "expected an object");
    for (const auto& [name, value] : response_headers->items()) {
      if (value.is_string()) secrets.consider(name, value.get_ref<const std::string&>());
    }
  }

  // meta: extra Helicone-* headers (what Helicone's own worker reads there).
  http::fields meta_fields;
  if (const json* meta = member(*request, "meta")) {
    if (!meta->is_object()) return field_error("providerRequest.meta", "expected an object");
    for (const auto& [name, value] : meta->items()) {
      const std::string field = "providerRequest.meta." + name.substr(0, 100);
      if (!value.is_string()) return field_error(field, "expected a string");
      const auto& text = value.get_ref<const std::string&>();
      secrets.consider(name, text);
      if (!starts_with(lower(name), "helicone-")) continue;
      if (name.size() > kMaxMetaNameBytes || text.size() > kMaxMetaValueBytes) {
        return field_error(field, "too long");
      }
      meta_fields.insert(name, text);
    }
  }
  secrets.finish();

  RequestRecord record;
  record.project = std::string(project);
  record.method = "POST";
  record.upstream = std::string(kManualLogUpstream);

  // --- status ------------------------------------------------------------------------
  record.status = 200;
  if (const json* status = member(*response, "status")) {
    if (!status->is_number_integer())
      return field_error("providerResponse.status", "expected an integer");
    const bool in_range =
        !(status->is_number_unsigned() && status->get<std::uint64_t>() > 599) &&
        ((status->get<std::int64_t>() >= 100 && status->get<std::int64_t>() <= 599) ||
         (status->get<std::int64_t>() >= scoring::kStatusClientCancelled &&
          status->get<std::int64_t>() <= scoring::kStatusUpstreamUnreachable));
    if (!in_range) {
      return field_error("providerResponse.status", "expected an HTTP status (100-599) or -1..-3");
    }
    record.status = static_cast<int>(status->get<std::int64_t>());
  }
  if (const json* cost = member(*response, "cost")) {
    if (!cost->is_number()) return field_error("providerResponse.cost", "expected a number");
    const double usd = cost->get<double>();
    if (!std::isfinite(usd) || usd < 0)
      return field_error("providerResponse.cost", "expected a non-negative number");
    record.cost_usd = usd;
  }

  // --- timing ------------------------------------------------------------------------
  record.created_at_us = now_us;
  record.response_at_us = now_us;
  if (const json* timing = member(body, "timing")) {
    if (!timing->is_object()) return field_error("timing", "expected an object");
    auto start = parse_instant(*timing, "startTime");
    if (!start) return std::move(start).error();
    auto end = parse_instant(*timing, "endTime");
    if (!end) return std::move(end).error();
    if (*end < *start) return field_error("timing.endTime", "before timing.startTime");
    record.created_at_us = *start;
    record.response_at_us = *end;
    if (const json* ttft = member(*timing, "timeToFirstToken")) {
      if (!ttft->is_number()) return field_error("timing.timeToFirstToken", "expected a number");
      const double ms = ttft->get<double>();
      if (!std::isfinite(ms) || ms < 0) return field_error("timing.timeToFirstToken", "negative");
      if (ms > kMaxDurationMs) return field_error("timing.timeToFirstToken", "out of range");
      record.time_to_first_token_ms = ms;
    }
  }
  record.latency_ms = static_cast<double>(record.response_at_us - record.created_at_us) / 1000.0;

  // --- path ----------------------------------------------------------------------------
  auto path = request_path(member(*request, "url"), default_path);
  if (!path) return std::move(path).error();
  record.path = std::move(*path);

  // --- Helicone headers: the call's own headers win over meta ----------------------------
  const HeliconeHeaders from_call = read_helicone_headers(headers);
  const HeliconeHeaders from_meta = read_helicone_headers(meta_fields);
  if (auto problem = check_helicone_headers(from_call)) return scoring::invalid_argument(std::move(*problem));
  if (auto problem = check_helicone_headers(from_meta)) {
    return field_error("providerRequest.meta", *problem);
  }
  if (from_call.request_id && is_valid_request_id(*from_call.request_id)) {
    record.request_id = lower(*from_call.request_id);
  } else if (from_meta.request_id && is_valid_request_id(*from_meta.request_id)) {
    record.request_id = lower(*from_meta.request_id);
  } else {
    record.request_id = new_request_id();
  }
  record.properties = from_meta.properties;
  for (const auto& [name, value] : from_call.properties) record.properties[name] = value;
  const auto pick = [](const std::string& call, const std::string& meta) {
    return call.empty() ? meta : call;
  };
  record.user_id = pick(from_call.user_id, from_meta.user_id);
  record.session_id = pick(from_call.session_id, from_meta.session_id);
  record.session_path = pick(from_call.session_path, from_meta.session_path);
  record.session_name = pick(from_call.session_name, from_meta.session_name);
  const bool omit_request = from_call.omit_request || from_meta.omit_request;
  const bool omit_response = from_call.omit_response || from_meta.omit_response;

  // --- what the bodies say ---------------------------------------------------------------
  if (auto it = request_json->find("model"); it != request_json->end() && it->is_string()) {
    record.request_model = it->get<std::string>();
  }
  if (record.user_id.empty()) {
    if (auto it = request_json->find("user"); it != request_json->end() && it->is_string()) {
      record.user_id = it->get<std::string>();
    } else if (auto meta = request_json->find("metadata");
               meta != request_json->end() && meta->is_object()) {
      if (auto uid = meta->find("user_id"); uid != meta->end() && uid->is_string()) {  // Anthropic
        record.user_id = uid->get<std::string>();
      }
    }
  }
  if (auto it = request_json->find("stream"); it != request_json->end() && it->is_boolean()) {
    record.is_stream = it->get<bool>();
  }

  Extracted extracted;
  if (response_json != nullptr) {
    absorb_event(*response_json, extracted);
    if (auto it = response_json->find("streamed_data");
        it != response_json->end() && it->is_array()) {
      for (const auto& event : *it) absorb_event(event, extracted);
    }
  }
  if (text_body != nullptr) absorb_text(text_body->get_ref<const std::string&>(), extracted);
  record.response_model = std::move(extracted.model);
  record.prompt_tokens = extracted.prompt_tokens;
  record.completion_tokens = extracted.completion_tokens;
  record.total_tokens = extracted.total_tokens;
  if (!record.total_tokens && record.prompt_tokens && record.completion_tokens) {
    record.total_tokens = *record.prompt_tokens + *record.completion_tokens;
  }

  // --- bodies --------------------------------------------------------------------------------
  store_body(
      dump(*request_json), omit_request, secrets,
      {record.request_body, record.request_size, record.request_truncated, record.request_omitted});
  std::string response_text;
  if (text_body != nullptr) {
    response_text = text_body->get<std::string>();
  } else if (response_json != nullptr) {
    response_text = dump(*response_json);
  }
  store_body(std::move(response_text), omit_response, secrets,
             {record.response_body, record.response_size, record.response_truncated,
              record.response_omitted});

  for (std::string* s :
       {&record.path, &record.request_model, &record.response_model, &record.user_id,
        &record.session_id, &record.session_path, &record.session_name}) {
    secrets.redact(*s);
  }
  for (auto& [name, value] : record.properties) secrets.redact(value);
  return record;
}

}  // namespace arbiter::gateway
