#include "scoring/request_record.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <vector>

#include "scoring/binary_codec.hpp"
#include "scoring/json_limits.hpp"

namespace arbiter::scoring {

namespace {

// The first byte of every stored metadata value. Bumped when the layout
// changes; decode refuses versions it does not know instead of misreading
// them. Version 1 (CBOR with short keys) is still read, never written.
constexpr char kMetadataVersion1 = 1;
constexpr char kMetadataVersion = 2;

// Version 2 layout (binary_codec.hpp primitives), in this order:
//
//   u8      version (2)
//   varint  bits: the kFlag* booleans, then which optionals follow (kHas*)
//   str     request_id, project
//   svarint created_at_us, response_at_us
//   f64     latency_ms
//   f64     time_to_first_token_ms                      if kHasTtft
//   str     method, path, upstream
//   svarint status
//   str     request_model, response_model, user_id, session_id,
//           session_path, session_name
//   varint  property count, then per property (ascending keys): str key, str value
//   svarint prompt_tokens, completion_tokens, total_tokens  each if its kHas* bit
//   f64     cost_usd                                    if kHasCost
//   svarint request_size, response_size
//   str     error_message
//   varint  length + CBOR object: feedback              if kHasFeedback
//
// and nothing after it. Fixed order instead of keys: the storage thread
// encodes every record and every read decodes one, so this is per-request
// CPU (bench/README.md, "Storage codecs").

// Version 1: short CBOR keys. Keep this table in sync with decode_metadata_v1.
constexpr const char* kKeyId = "id";
constexpr const char* kKeyProject = "pj";
constexpr const char* kKeyCreated = "ca";
constexpr const char* kKeyResponded = "ra";
constexpr const char* kKeyLatency = "la";
constexpr const char* kKeyTtft = "tf";
constexpr const char* kKeyMethod = "me";
constexpr const char* kKeyPath = "pa";
constexpr const char* kKeyUpstream = "up";
constexpr const char* kKeyStatus = "st";
constexpr const char* kKeyRequestModel = "rqm";
constexpr const char* kKeyResponseModel = "rsm";
constexpr const char* kKeyUser = "u";
constexpr const char* kKeySession = "si";
constexpr const char* kKeySessionPath = "sp";
constexpr const char* kKeySessionName = "sn";
constexpr const char* kKeyProperties = "pr";
constexpr const char* kKeyPromptTokens = "tp";
constexpr const char* kKeyCompletionTokens = "tc";
constexpr const char* kKeyTotalTokens = "tt";
constexpr const char* kKeyCost = "co";
constexpr const char* kKeyRequestSize = "rs";
constexpr const char* kKeyResponseSize = "ss";
constexpr const char* kKeyFlags = "f";
constexpr const char* kKeyError = "em";
constexpr const char* kKeyFeedback = "fb";

// The booleans, with the same bits in both versions (v1's "f").
enum Flag : std::uint32_t {
  kFlagStream = 1u << 0,
  kFlagRequestTruncated = 1u << 1,
  kFlagResponseTruncated = 1u << 2,
  kFlagRequestOmitted = 1u << 3,
  kFlagResponseOmitted = 1u << 4,
};

// Version 2: which optional fields are present.
enum Presence : std::uint32_t {
  kHasTtft = 1u << 5,
  kHasPromptTokens = 1u << 6,
  kHasCompletionTokens = 1u << 7,
  kHasTotalTokens = 1u << 8,
  kHasCost = 1u << 9,
  kHasFeedback = 1u << 10,
};
constexpr std::uint64_t kKnownBits = (1u << 11) - 1;

// Decoding helpers: a field of the wrong type means the bytes are not ours.
bool get_string(const nlohmann::json& j, const char* key, std::string& out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_string()) return false;
  out = it->get_ref<const std::string&>();
  return true;
}

bool get_int(const nlohmann::json& j, const char* key, std::int64_t& out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_number_integer()) return false;
  out = it->get<std::int64_t>();
  return true;
}

bool get_opt_int(const nlohmann::json& j, const char* key, std::optional<std::int64_t>& out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_number_integer()) return false;
  out = it->get<std::int64_t>();
  return true;
}

bool get_double(const nlohmann::json& j, const char* key, double& out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_number()) return false;
  out = it->get<double>();
  return true;
}

bool get_opt_double(const nlohmann::json& j, const char* key, std::optional<double>& out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_number()) return false;
  out = it->get<double>();
  return true;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when invalid
// (overlong forms, surrogates and code points above U+10FFFF are invalid).

nlohmann::json opt_json(const std::optional<std::int64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}
nlohmann::json opt_json(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}


bool parse_digits(std::string_view s, std::size_t& pos, std::size_t count, int& out) {
  if (pos + count > s.size()) return false;
  int v = 0;
  for (std::size_t k = 0; k < count; ++k) {
    const char c = s[pos + k];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  pos += count;
  out = v;
  return true;
}

}  // namespace

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7F;
  });
}

namespace {

Error corrupt_record(const char* why) {
  return storage_error(std::string("corrupt record: ") + why);
}

// Version 1, as written before version 2 existed (bytes[0] == 1).
Expected<RequestRecord> decode_metadata_v1(std::string_view bytes) {
  auto j = binary::parse_cbor_bounded(bytes.substr(1));
  if (j.is_discarded() || !j.is_object()) return storage_error("corrupt record: bad CBOR");

  RequestRecord r;
  std::int64_t status = 0;
  std::int64_t flags = 0;
  bool ok =
      get_string(j, kKeyId, r.request_id) && get_string(j, kKeyProject, r.project) &&
      get_int(j, kKeyCreated, r.created_at_us) && get_int(j, kKeyResponded, r.response_at_us) &&
      get_double(j, kKeyLatency, r.latency_ms) &&
      get_opt_double(j, kKeyTtft, r.time_to_first_token_ms) &&
      get_string(j, kKeyMethod, r.method) && get_string(j, kKeyPath, r.path) &&
      get_string(j, kKeyUpstream, r.upstream) && get_int(j, kKeyStatus, status) &&
      get_string(j, kKeyRequestModel, r.request_model) &&
      get_string(j, kKeyResponseModel, r.response_model) && get_string(j, kKeyUser, r.user_id) &&
      get_string(j, kKeySession, r.session_id) && get_string(j, kKeySessionPath, r.session_path) &&
      get_string(j, kKeySessionName, r.session_name) &&
      get_opt_int(j, kKeyPromptTokens, r.prompt_tokens) &&
      get_opt_int(j, kKeyCompletionTokens, r.completion_tokens) &&
      get_opt_int(j, kKeyTotalTokens, r.total_tokens) && get_opt_double(j, kKeyCost, r.cost_usd) &&
      get_int(j, kKeyRequestSize, r.request_size) &&
      get_int(j, kKeyResponseSize, r.response_size) && get_int(j, kKeyFlags, flags) &&
      get_string(j, kKeyError, r.error_message);
  if (!ok) return storage_error("corrupt record: field of the wrong type");
  if (status < std::numeric_limits<int>::min() || status > std::numeric_limits<int>::max()) {
    return storage_error("corrupt record: status out of range");
  }
  r.status = static_cast<int>(status);
  r.is_stream = (flags & kFlagStream) != 0;
  r.request_truncated = (flags & kFlagRequestTruncated) != 0;
  r.response_truncated = (flags & kFlagResponseTruncated) != 0;
  r.request_omitted = (flags & kFlagRequestOmitted) != 0;
  r.response_omitted = (flags & kFlagResponseOmitted) != 0;

  if (auto it = j.find(kKeyProperties); it != j.end()) {
    if (!it->is_object()) return storage_error("corrupt record: properties not a map");
    for (auto& [k, v] : it->items()) {
      if (!v.is_string()) return storage_error("corrupt record: property value not a string");
      r.properties.emplace(k, v.get<std::string>());
    }
  }
  if (auto it = j.find(kKeyFeedback); it != j.end()) {
    if (!it->is_object()) return storage_error("corrupt record: feedback not an object");
    r.feedback = std::move(*it);
  }
  return r;
}

Expected<RequestRecord> decode_metadata_v2(std::string_view bytes) {
  binary::Reader in(bytes.substr(1));
  RequestRecord r;
  const std::uint64_t bits = in.varint();
  if ((bits & ~kKnownBits) != 0) return corrupt_record("unknown flag bits");
  in.str(r.request_id);
  in.str(r.project);
  r.created_at_us = in.svarint();
  r.response_at_us = in.svarint();
  r.latency_ms = in.f64();
  if ((bits & kHasTtft) != 0) r.time_to_first_token_ms = in.f64();
  in.str(r.method);
  in.str(r.path);
  in.str(r.upstream);
  const std::int64_t status = in.svarint();
  if (status < std::numeric_limits<int>::min() || status > std::numeric_limits<int>::max()) {
    return corrupt_record("status out of range");
  }
  r.status = static_cast<int>(status);
  in.str(r.request_model);
  in.str(r.response_model);
  in.str(r.user_id);
  in.str(r.session_id);
  in.str(r.session_path);
  in.str(r.session_name);
  const std::uint64_t properties = in.varint();
  // Each property takes at least two bytes: a huge count is corruption,
  // not a reason to loop.
  if (properties > in.remaining() / 2) in.fail("property count beyond the value");
  std::string_view previous;
  for (std::uint64_t i = 0; i < properties && in.ok(); ++i) {
    const std::string_view key = in.str_view();
    const std::string_view value = in.str_view();
    if (i > 0 && !(previous < key)) {
      in.fail("property keys out of order");
      break;
    }
    r.properties.emplace_hint(r.properties.end(), std::string(key), std::string(value));
    previous = key;
  }
  if ((bits & kHasPromptTokens) != 0) r.prompt_tokens = in.svarint();
  if ((bits & kHasCompletionTokens) != 0) r.completion_tokens = in.svarint();
  if ((bits & kHasTotalTokens) != 0) r.total_tokens = in.svarint();
  if ((bits & kHasCost) != 0) r.cost_usd = in.f64();
  r.request_size = in.svarint();
  r.response_size = in.svarint();
  in.str(r.error_message);
  if ((bits & kHasFeedback) != 0) {
    in.cbor(r.feedback);
    if (in.ok() && !r.feedback.is_object()) return corrupt_record("feedback not an object");
  }
  if (!in.ok()) return corrupt_record(in.error());
  if (!in.at_end()) return corrupt_record("trailing bytes");
  r.is_stream = (bits & kFlagStream) != 0;
  r.request_truncated = (bits & kFlagRequestTruncated) != 0;
  r.response_truncated = (bits & kFlagResponseTruncated) != 0;
  r.request_omitted = (bits & kFlagRequestOmitted) != 0;
  r.response_omitted = (bits & kFlagResponseOmitted) != 0;
  return r;
}

}  // namespace

std::string encode_metadata(const RequestRecord& r) {
  const bool has_feedback = r.feedback.is_object() && !r.feedback.empty();
  std::uint64_t bits = 0;
  if (r.is_stream) bits |= kFlagStream;
  if (r.request_truncated) bits |= kFlagRequestTruncated;
  if (r.response_truncated) bits |= kFlagResponseTruncated;
  if (r.request_omitted) bits |= kFlagRequestOmitted;
  if (r.response_omitted) bits |= kFlagResponseOmitted;
  if (r.time_to_first_token_ms) bits |= kHasTtft;
  if (r.prompt_tokens) bits |= kHasPromptTokens;
  if (r.completion_tokens) bits |= kHasCompletionTokens;
  if (r.total_tokens) bits |= kHasTotalTokens;
  if (r.cost_usd) bits |= kHasCost;
  if (has_feedback) bits |= kHasFeedback;

  // One allocation in the common case: the strings, plus at most 10 bytes
  // per number and length prefix.
  std::size_t size = 160 + r.request_id.size() + r.project.size() + r.method.size() +
                     r.path.size() + r.upstream.size() + r.request_model.size() +
                     r.response_model.size() + r.user_id.size() + r.session_id.size() +
                     r.session_path.size() + r.session_name.size() + r.error_message.size();
  for (const auto& [k, v] : r.properties) size += k.size() + v.size() + 20;
  std::string out;
  out.reserve(size);
  binary::Writer w(out);
  w.u8(static_cast<std::uint8_t>(kMetadataVersion));
  w.varint(bits);
  w.str(r.request_id);
  w.str(r.project);
  w.svarint(r.created_at_us);
  w.svarint(r.response_at_us);
  w.f64(r.latency_ms);
  if (r.time_to_first_token_ms) w.f64(*r.time_to_first_token_ms);
  w.str(r.method);
  w.str(r.path);
  w.str(r.upstream);
  w.svarint(r.status);
  w.str(r.request_model);
  w.str(r.response_model);
  w.str(r.user_id);
  w.str(r.session_id);
  w.str(r.session_path);
  w.str(r.session_name);
  w.varint(r.properties.size());
  for (const auto& [k, v] : r.properties) {
    w.str(k);
    w.str(v);
  }
  if (r.prompt_tokens) w.svarint(*r.prompt_tokens);
  if (r.completion_tokens) w.svarint(*r.completion_tokens);
  if (r.total_tokens) w.svarint(*r.total_tokens);
  if (r.cost_usd) w.f64(*r.cost_usd);
  w.svarint(r.request_size);
  w.svarint(r.response_size);
  w.str(r.error_message);
  if (has_feedback) w.cbor(r.feedback);
  return out;
}

Expected<RequestRecord> decode_metadata(std::string_view bytes) {
  if (bytes.empty()) return corrupt_record("empty value");
  switch (bytes[0]) {
    case kMetadataVersion:
      return decode_metadata_v2(bytes);
    case kMetadataVersion1:
      return decode_metadata_v1(bytes);
    default:
      return storage_error("corrupt record: unknown format version " +
                           std::to_string(static_cast<unsigned char>(bytes[0])));
  }
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t len = utf8_sequence_length(s, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

std::string format_iso8601_ms(std::int64_t unix_us) {
  using namespace std::chrono;
  // Years outside 0001..9999 cannot be written in this format.
  constexpr std::int64_t kMin = -62135596800LL * 1'000'000;  // 0001-01-01T00:00:00Z
  constexpr std::int64_t kMax =
      253402300799LL * 1'000'000 + 999'999;  // 9999-12-31T23:59:59.999999Z
  unix_us = std::clamp(unix_us, kMin, kMax);
  const sys_time<microseconds> tp{microseconds{unix_us}};
  const auto day = floor<days>(tp);
  const year_month_day ymd{day};
  const auto ms_of_day = floor<milliseconds>(tp - day).count();
  const auto h = ms_of_day / 3'600'000;
  const auto m = (ms_of_day / 60'000) % 60;
  const auto s = (ms_of_day / 1000) % 60;
  const auto ms = ms_of_day % 1000;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(h), static_cast<int>(m),
                static_cast<int>(s), static_cast<int>(ms));
  return buf;
}

std::optional<std::int64_t> parse_iso8601(std::string_view s) {
  using namespace std::chrono;
  std::size_t pos = 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  std::int64_t frac_us = 0;
  if (!parse_digits(s, pos, 4, y) || pos >= s.size() || s[pos++] != '-' ||
      !parse_digits(s, pos, 2, mo) || pos >= s.size() || s[pos++] != '-' ||
      !parse_digits(s, pos, 2, d)) {
    return std::nullopt;
  }
  if (pos < s.size() && (s[pos] == 'T' || s[pos] == 't' || s[pos] == ' ')) {
    ++pos;
    if (!parse_digits(s, pos, 2, h) || pos >= s.size() || s[pos++] != ':' ||
        !parse_digits(s, pos, 2, mi)) {
      return std::nullopt;
    }
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!parse_digits(s, pos, 2, sec)) return std::nullopt;
      if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
        ++pos;
        std::size_t digits = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          if (digits < 6) frac_us = frac_us * 10 + (s[pos] - '0');
          ++digits;
          ++pos;
        }
        if (digits == 0) return std::nullopt;
        for (std::size_t k = digits; k < 6; ++k) frac_us *= 10;
      }
    }
  }
  std::int64_t offset_s = 0;
  if (pos < s.size()) {
    if (s[pos] == 'Z' || s[pos] == 'z') {
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      const int sign = s[pos] == '-' ? -1 : 1;
      ++pos;
      int oh = 0, om = 0;
      if (!parse_digits(s, pos, 2, oh)) return std::nullopt;
      if (pos < s.size() && s[pos] == ':') ++pos;
      if (pos < s.size() && !parse_digits(s, pos, 2, om)) return std::nullopt;
      if (oh > 23 || om > 59) return std::nullopt;
      offset_s = sign * (oh * 3600 + om * 60);
    } else {
      return std::nullopt;
    }
  }
  if (pos != s.size()) return std::nullopt;
  if (h > 23 || mi > 59 || sec > 59) return std::nullopt;
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                           day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  const std::int64_t days_since_epoch = sys_days{ymd}.time_since_epoch().count();
  const std::int64_t secs = days_since_epoch * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  return secs * 1'000'000 + frac_us;
}

// Field names: Helicone's HeliconeRequest names (request_id,
// request_created_at, response_created_at, response_status, delay_ms,
// request_user_id, request_properties, request_path, request_model,
// response_model, model, provider, time_to_first_token, prompt_tokens,
// completion_tokens, total_tokens, cost, costUSD, properties, scores) plus the
// names the filter tree uses (status, latency, user_id, session_id) and
// arbiter's own (method, session_path, session_name, is_stream, sizes,
// truncation/omission flags, error_message, feedback). `scores` is what the
// score store attached (name → true/false, number or category label).
nlohmann::json to_json(const RequestRecord& r, bool include_body) {
  nlohmann::json props = nlohmann::json::object();
  for (const auto& [k, v] : r.properties) props[sanitize_utf8(k)] = sanitize_utf8(v);
  const std::string model = sanitize_utf8(r.model());
  const std::string user = sanitize_utf8(r.user_id);

  nlohmann::json j = nlohmann::json::object();
  j["request_id"] = sanitize_utf8(r.request_id);
  j["request_created_at"] = format_iso8601_ms(r.created_at_us);
  j["response_created_at"] =
      r.response_at_us != 0 ? nlohmann::json(format_iso8601_ms(r.response_at_us)) : nullptr;
  j["status"] = r.status;
  j["response_status"] = r.status;
  j["latency"] = r.latency_ms;
  j["delay_ms"] = r.latency_ms;
  j["time_to_first_token"] = opt_json(r.time_to_first_token_ms);
  j["model"] = model;
  j["request_model"] = sanitize_utf8(r.request_model);
  j["response_model"] = sanitize_utf8(r.response_model);
  j["provider"] = sanitize_utf8(r.upstream);
  j["request_method"] = sanitize_utf8(r.method);
  j["request_path"] = sanitize_utf8(r.path);
  j["user_id"] = user;
  j["request_user_id"] = user.empty() ? nlohmann::json(nullptr) : nlohmann::json(user);
  j["session_id"] = sanitize_utf8(r.session_id);
  j["session_path"] = sanitize_utf8(r.session_path);
  j["session_name"] = sanitize_utf8(r.session_name);
  j["properties"] = props;
  j["request_properties"] = std::move(props);
  j["is_stream"] = r.is_stream;
  j["prompt_tokens"] = opt_json(r.prompt_tokens);
  j["completion_tokens"] = opt_json(r.completion_tokens);
  j["total_tokens"] = opt_json(r.total_tokens);
  j["cost"] = opt_json(r.cost_usd);
  j["costUSD"] = opt_json(r.cost_usd);
  j["request_size"] = r.request_size;
  j["response_size"] = r.response_size;
  j["request_truncated"] = r.request_truncated;
  j["response_truncated"] = r.response_truncated;
  j["request_omitted"] = r.request_omitted;
  j["response_omitted"] = r.response_omitted;
  j["error_message"] = r.error_message.empty() ? nlohmann::json(nullptr)
                                               : nlohmann::json(sanitize_utf8(r.error_message));
  j["feedback"] = r.feedback.is_object() ? r.feedback : nlohmann::json::object();
  j["scores"] = r.scores.is_object() ? r.scores : nlohmann::json::object();
  if (include_body) {
    j["request_body"] = body_json(r.request_body);
    j["response_body"] = body_json(r.response_body);
    j["stream_raw"] = r.stream_raw.empty() ? nlohmann::json(nullptr)
                                           : nlohmann::json(sanitize_utf8(r.stream_raw));
  }
  return j;
}

// Bodies are almost always JSON, and clients want objects, not escaped strings.
nlohmann::json body_json(const std::string& body) {
  if (body.empty()) return nullptr;
  auto parsed = parse_json_bounded(body);
  if (!parsed.is_discarded()) return parsed;
  return sanitize_utf8(body);
}

}  // namespace arbiter::scoring
