#include "scoring/webhook_payload.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "scoring/hash_mix.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

json opt_json(const std::optional<std::int64_t>& v) {
  return v ? json(*v) : json(nullptr);
}
json opt_json(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}
json opt_string(const std::string& s) {
  return s.empty() ? json(nullptr) : json(sanitize_utf8(s));
}

// FNV-1a, then a splitmix64 finaliser so that the low digits (which the
// bucket takes) depend on every byte of the id.
std::uint64_t id_hash(std::string_view id) {
  return mix64(fnv1a(kFnv1aBasis, id));
}

}  // namespace

std::string_view to_string(WebhookEvent e) {
  switch (e) {
    case WebhookEvent::kRequestLogged:
      return "request.logged";
    case WebhookEvent::kScoreCreated:
      return "score.created";
    case WebhookEvent::kEvaluationCompleted:
      return "evaluation.completed";
  }
  return "unknown";
}

std::optional<WebhookEvent> parse_webhook_event(std::string_view s) {
  for (auto e : {WebhookEvent::kRequestLogged, WebhookEvent::kScoreCreated,
                 WebhookEvent::kEvaluationCompleted}) {
    if (to_string(e) == s) return e;
  }
  return std::nullopt;
}

bool WebhookOptions::applies_to(std::string_view project) const {
  return projects.empty() || std::find(projects.begin(), projects.end(), project) != projects.end();
}

bool sampled(double sample_rate_percent, std::string_view request_id) {
  if (sample_rate_percent >= 100) return true;
  if (sample_rate_percent <= 0) return false;
  const auto threshold = static_cast<std::uint64_t>(std::llround(sample_rate_percent * 100));
  return id_hash(request_id) % 10'000 < threshold;
}

bool properties_match(const std::map<std::string, std::string>& filters,
                      const std::map<std::string, std::string>& properties) {
  for (const auto& [k, v] : filters) {
    const auto it = properties.find(k);
    if (it == properties.end() || it->second != v) return false;
  }
  return true;
}

json webhook_payload(const WebhookEventData& ev, bool include_bodies) {
  json j = json::object();
  j["event"] = to_string(ev.event);
  if (ev.record != nullptr) {
    const RequestRecord& r = *ev.record;
    json props = json::object();
    for (const auto& [k, v] : r.properties) props[sanitize_utf8(k)] = sanitize_utf8(v);
    j["request_id"] = sanitize_utf8(r.request_id);
    j["user_id"] = opt_string(r.user_id);
    j["model"] = sanitize_utf8(r.model());
    j["provider"] = sanitize_utf8(r.upstream);
    j["properties"] = std::move(props);
    j["metadata"] = {{"cost", opt_json(r.cost_usd)},
                     {"promptTokens", opt_json(r.prompt_tokens)},
                     {"completionTokens", opt_json(r.completion_tokens)},
                     {"totalTokens", opt_json(r.total_tokens)},
                     {"latencyMs", r.latency_ms}};
    j["status"] = r.status;
    j["created_at"] = format_iso8601_ms(r.created_at_us);
    j["session_id"] = opt_string(r.session_id);
    j["path"] = sanitize_utf8(r.path);
    if (include_bodies) {
      j["request_body"] = body_json(r.request_body);
      if (r.response_body.empty() && !r.stream_raw.empty()) {
        j["response_body"] = sanitize_utf8(r.stream_raw);
      } else {
        j["response_body"] = body_json(r.response_body);
      }
      j["request_truncated"] = r.request_truncated;
      j["response_truncated"] = r.response_truncated;
    }
  } else {
    if (!ev.request_id.empty()) j["request_id"] = sanitize_utf8(ev.request_id);
    j["session_id"] = opt_string(ev.session_id);
  }
  if (ev.data != nullptr && ev.data->is_object()) {
    for (const auto& [k, v] : ev.data->items()) j[k] = v;
  }
  return j;
}

namespace {

// ECMAScript Number::toString: the shortest digits that round-trip (which
// std::to_chars also produces), placed as JavaScript places them — plain up
// to 21 integer digits and down to 1e-6, exponent form ("1e-7", "1e+21")
// beyond, no ".0" on integral values, "0" for -0.
void append_js_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  if (v == 0) {
    out += '0';
    return;
  }
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view s(buf, static_cast<std::size_t>(end - buf));
  if (s.front() == '-') {
    out += '-';
    s.remove_prefix(1);
  }
  const auto e = s.find('e');
  std::string digits;
  for (char c : s.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  int exponent = 0;
  const auto exp_text = s.substr(e + 1);
  std::from_chars(exp_text.data() + (exp_text.front() == '+' ? 1 : 0), exp_text.data() + exp_text.size(), exponent);
  const int k = static_cast<int>(digits.size());
  const int n = exponent + 1;  // the decimal point sits after n digits
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<std::size_t>(n));
    out += '.';
    out.append(digits, static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-n), '0');
    out += digits;
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += n - 1 < 0 ? "e-" : "e+";
    out += std::to_string(std::abs(n - 1));
  }
}

// Keys JavaScript orders first, numerically: canonical array indices.
bool is_array_index(const std::string& key, std::uint64_t& value) {
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0')) return false;
  value = 0;
  for (char c : key) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value < 4294967295ULL;
}

// As JSON.stringify escapes: quote, backslash, the short escapes, other
// control characters as \u00xx; everything else (DEL, U+2028, non-ASCII) as
// is. Invalid UTF-8 becomes U+FFFD, byte by byte, as sanitize_utf8 does.
void append_js_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t len = utf8_sequence_length(s, i);
      if (len == 0) {
        out += "\xEF\xBF\xBD";
        ++i;
      } else {
        out.append(s, i, len);
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

void append_js(std::string& out, const json& j) {
  switch (j.type()) {
    case json::value_t::object: {
      using Member = json::object_t::value_type;
      const auto& members = j.get_ref<const json::object_t&>();
      std::vector<std::pair<std::uint64_t, const Member*>> indices;
      std::vector<const Member*> others;
      others.reserve(members.size());
      for (const Member& m : members) {
        std::uint64_t index = 0;
        if (is_array_index(m.first, index)) {
          indices.emplace_back(index, &m);
        } else {
          others.push_back(&m);
        }
      }
      std::sort(indices.begin(), indices.end());
      out += '{';
      bool first = true;
      auto member = [&](const Member& m) {
        if (!first) out += ',';
        first = false;
        append_js_string(out, m.first);
        out += ':';
        append_js(out, m.second);
      };
      for (const auto& [index, m] : indices) member(*m);
      for (const Member* m : others) member(*m);
      out += '}';
      return;
    }
    case json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& v : j) {
        if (!first) out += ',';
        first = false;
        append_js(out, v);
      }
      out += ']';
      return;
    }
    case json::value_t::number_float:
      append_js_number(out, j.get<double>());
      return;
    case json::value_t::string:
      append_js_string(out, j.get_ref<const std::string&>());
      return;
    case json::value_t::binary:
    case json::value_t::discarded:
      out += "null";
      return;
    default:  // integers, booleans, null
      out += j.dump();
      return;
  }
}

}  // namespace

std::string serialize_payload(const json& payload) {
  std::string out;
  append_js(out, payload);
  return out;
}

}  // namespace arbiter::scoring
