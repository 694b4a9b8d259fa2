#include "scoring/score.hpp"

#include <cmath>
#include <cstdio>
#include <random>
#include <set>

#include "scoring/binary_codec.hpp"
#include "scoring/request_record.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

// A score value's first byte. Version 1 (CBOR of a short-keyed object) is
// still read, never written; version 2's layout is above encode_score.
constexpr std::uint8_t kScoreFormat1 = 1;
constexpr std::uint8_t kScoreFormat = 2;
constexpr std::uint8_t kConfigFormat = 1;
// Integers beyond this lose precision as doubles.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

std::string label_of(std::string_view name) {
  return "'" + sanitize_utf8(name) + "'";
}

std::string with_version(std::uint8_t version, const json& j) {
  std::string out(1, static_cast<char>(version));
  json::to_cbor(j, out);
  return out;
}

Expected<json> without_version(std::uint8_t version, std::string_view bytes, const char* what) {
  if (bytes.empty() || static_cast<std::uint8_t>(bytes[0]) != version) {
    return storage_error(std::string("corrupt ") + what + ": unknown format");
  }
  json j = binary::parse_cbor_bounded(bytes.substr(1));
  if (j.is_discarded()) return storage_error(std::string("corrupt ") + what + ": bad CBOR");
  if (!j.is_object()) return storage_error(std::string("corrupt ") + what + ": not an object");
  return j;
}

// "%g"-like text of a double without trailing noise, for messages.
std::string number_text(double v) {
  if (std::isfinite(v) && std::floor(v) == v && std::fabs(v) < kMaxExactInteger) {
    return std::to_string(static_cast<std::int64_t>(v));
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Prefer the shortest representation that round-trips.
  for (int precision = 1; precision <= 17; ++precision) {
    char shorter[64];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

std::optional<std::string> optional_string(const json& body, const char* key, Error& err) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    err = invalid_argument(std::string("'") + key + "' must be a string, got " + it->type_name());
    return std::nullopt;
  }
  return it->get<std::string>();
}

}  // namespace

std::string_view to_string(ScoreDataType t) {
  switch (t) {
    case ScoreDataType::kNumeric:
      return "NUMERIC";
    case ScoreDataType::kBoolean:
      return "BOOLEAN";
    case ScoreDataType::kCategorical:
      return "CATEGORICAL";
  }
  return "NUMERIC";
}

std::string_view to_string(ScoreSource s) {
  switch (s) {
    case ScoreSource::kApi:
      return "API";
    case ScoreSource::kAnnotation:
      return "ANNOTATION";
    case ScoreSource::kEval:
      return "EVAL";
  }
  return "API";
}

std::optional<ScoreDataType> parse_data_type(std::string_view s) {
  if (s == "NUMERIC") return ScoreDataType::kNumeric;
  if (s == "BOOLEAN") return ScoreDataType::kBoolean;
  if (s == "CATEGORICAL") return ScoreDataType::kCategorical;
  return std::nullopt;
}

std::optional<ScoreSource> parse_source(std::string_view s) {
  if (s == "API") return ScoreSource::kApi;
  if (s == "ANNOTATION") return ScoreSource::kAnnotation;
  if (s == "EVAL") return ScoreSource::kEval;
  return std::nullopt;
}

json score_value_json(const Score& s) {
  switch (s.data_type) {
    case ScoreDataType::kBoolean:
      return s.value.value_or(0) != 0;
    case ScoreDataType::kCategorical:
      return sanitize_utf8(s.label);
    case ScoreDataType::kNumeric: {
      const double v = s.value.value_or(0);
      // Integral values print as integers (92, not 92.0).
      if (std::floor(v) == v && std::fabs(v) <= kMaxExactInteger) {
        return static_cast<std::int64_t>(v);
      }
      return v;
    }
  }
  return nullptr;
}

json to_json(const Score& s) {
  auto opt = [](const std::string& v) {
    return v.empty() ? json(nullptr) : json(sanitize_utf8(v));
  };
  json j = json::object();
  j["id"] = sanitize_utf8(s.id);
  j["request_id"] = opt(s.request_id);
  j["observation_id"] = opt(s.observation_id);
  j["session_id"] = opt(s.session_id);
  j["name"] = sanitize_utf8(s.name);
  j["value"] = score_value_json(s);
  j["numeric_value"] = s.value ? json(*s.value) : json(nullptr);
  j["data_type"] = to_string(s.data_type);
  j["comment"] = opt(s.comment);
  j["metadata"] = s.metadata;
  j["source"] = to_string(s.source);
  j["author"] = opt(s.author);
  j["config_id"] = opt(s.config_id);
  j["timestamp"] = format_iso8601_ms(s.timestamp_us);
  j["created_at"] = format_iso8601_ms(s.created_at_us);
  j["updated_at"] = format_iso8601_ms(s.updated_at_us);
  return j;
}

// Version 2 layout (binary_codec.hpp primitives), in this order:
//
//   u8      version (2)
//   u8      bits: kScoreHasValue, kScoreHasMetadata
//   u8      data_type (ScoreDataType), u8 source (ScoreSource)
//   str     id, project, request_id, observation_id, session_id, name,
//           label, comment, author, config_id
//   f64     value                                  if kScoreHasValue
//   svarint timestamp_us, created_at_us, updated_at_us
//   varint  length + CBOR: metadata                if kScoreHasMetadata
//
// and nothing after it. Metadata is left out when it is an empty object
// (the default, and every Helicone score), so that the common score costs
// no CBOR at all; any other value, null included, round-trips.
namespace {
constexpr std::uint8_t kScoreHasValue = 1u << 0;
constexpr std::uint8_t kScoreHasMetadata = 1u << 1;
}  // namespace

std::string encode_score(const Score& s) {
  const bool has_metadata = !(s.metadata.is_object() && s.metadata.empty());
  std::string out;
  out.reserve(64 + s.id.size() + s.project.size() + s.request_id.size() +
              s.observation_id.size() + s.session_id.size() + s.name.size() + s.label.size() +
              s.comment.size() + s.author.size() + s.config_id.size() +
              (has_metadata ? 128 : 0));
  binary::Writer w(out);
  w.u8(kScoreFormat);
  w.u8(static_cast<std::uint8_t>((s.value ? kScoreHasValue : 0) |
                                 (has_metadata ? kScoreHasMetadata : 0)));
  w.u8(static_cast<std::uint8_t>(s.data_type));
  w.u8(static_cast<std::uint8_t>(s.source));
  w.str(s.id);
  w.str(s.project);
  w.str(s.request_id);
  w.str(s.observation_id);
  w.str(s.session_id);
  w.str(s.name);
  w.str(s.label);
  w.str(s.comment);
  w.str(s.author);
  w.str(s.config_id);
  if (s.value) w.f64(*s.value);
  w.svarint(s.timestamp_us);
  w.svarint(s.created_at_us);
  w.svarint(s.updated_at_us);
  if (has_metadata) w.cbor(s.metadata);
  return out;
}

namespace {

// Version 1, as written before version 2 existed (bytes[0] == 1).
Expected<Score> decode_score_v1(std::string_view bytes) {
  auto parsed = without_version(kScoreFormat1, bytes, "score");
  if (!parsed.ok()) return std::move(parsed).error();
  const json& j = *parsed;
  try {
    Score s;
    s.id = j.at("i").get<std::string>();
    s.project = j.at("p").get<std::string>();
    s.request_id = j.at("r").get<std::string>();
    s.observation_id = j.at("o").get<std::string>();
    s.session_id = j.at("s").get<std::string>();
    s.name = j.at("n").get<std::string>();
    const int t = j.at("t").get<int>();
    if (t < 0 || t > 2) return storage_error("corrupt score: data type");
    s.data_type = static_cast<ScoreDataType>(t);
    if (const auto v = j.find("v"); v != j.end()) s.value = v->get<double>();
    s.label = j.at("l").get<std::string>();
    s.comment = j.at("c").get<std::string>();
    s.metadata = j.at("m");
    const int src = j.at("src").get<int>();
    if (src < 0 || src > 2) return storage_error("corrupt score: source");
    s.source = static_cast<ScoreSource>(src);
    s.author = j.at("a").get<std::string>();
    s.config_id = j.at("cfg").get<std::string>();
    s.timestamp_us = j.at("ts").get<std::int64_t>();
    s.created_at_us = j.at("ca").get<std::int64_t>();
    s.updated_at_us = j.at("ua").get<std::int64_t>();
    return s;
  } catch (const json::exception& e) {
    return storage_error(std::string("corrupt score: ") + e.what());
  }
}

Expected<Score> decode_score_v2(std::string_view bytes) {
  binary::Reader in(bytes.substr(1));
  Score s;
  const std::uint8_t bits = in.u8();
  const std::uint8_t type = in.u8();
  const std::uint8_t source = in.u8();
  if (!in.ok()) return storage_error(std::string("corrupt score: ") + in.error());
  if ((bits & ~(kScoreHasValue | kScoreHasMetadata)) != 0) {
    return storage_error("corrupt score: unknown flag bits");
  }
  if (type > 2) return storage_error("corrupt score: data type");
  if (source > 2) return storage_error("corrupt score: source");
  s.data_type = static_cast<ScoreDataType>(type);
  s.source = static_cast<ScoreSource>(source);
  in.str(s.id);
  in.str(s.project);
  in.str(s.request_id);
  in.str(s.observation_id);
  in.str(s.session_id);
  in.str(s.name);
  in.str(s.label);
  in.str(s.comment);
  in.str(s.author);
  in.str(s.config_id);
  if ((bits & kScoreHasValue) != 0) s.value = in.f64();
  s.timestamp_us = in.svarint();
  s.created_at_us = in.svarint();
  s.updated_at_us = in.svarint();
  if ((bits & kScoreHasMetadata) != 0) in.cbor(s.metadata);
  if (!in.ok()) return storage_error(std::string("corrupt score: ") + in.error());
  if (!in.at_end()) return storage_error("corrupt score: trailing bytes");
  return s;
}

}  // namespace

Expected<Score> decode_score(std::string_view bytes) {
  if (bytes.empty()) return storage_error("corrupt score: empty value");
  switch (static_cast<std::uint8_t>(bytes[0])) {
    case kScoreFormat:
      return decode_score_v2(bytes);
    case kScoreFormat1:
      return decode_score_v1(bytes);
    default:
      return storage_error("corrupt score: unknown format version " +
                           std::to_string(static_cast<unsigned char>(bytes[0])));
  }
}

json to_json(const ScoreConfig& c) {
  json cats = json::array();
  for (const auto& cat : c.categories) cats.push_back({{"label", cat.label}, {"value", cat.value}});
  json j = {{"id", c.id},
            {"name", c.name},
            {"data_type", to_string(c.data_type)},
            {"min_value", c.min_value ? json(*c.min_value) : json(nullptr)},
            {"max_value", c.max_value ? json(*c.max_value) : json(nullptr)},
            {"categories", c.data_type == ScoreDataType::kCategorical ? cats : json(nullptr)},
            {"description", c.description.empty() ? json(nullptr) : json(c.description)},
            {"created_at", format_iso8601_ms(c.created_at_us)}};
  return j;
}

std::string encode_config(const ScoreConfig& c) {
  json cats = json::array();
  for (const auto& cat : c.categories) cats.push_back({cat.label, cat.value});
  json j = {{"i", c.id}, {"n", c.name},        {"t", static_cast<int>(c.data_type)},
            {"c", cats}, {"d", c.description}, {"ca", c.created_at_us}};
  if (c.min_value) j["lo"] = *c.min_value;
  if (c.max_value) j["hi"] = *c.max_value;
  return with_version(kConfigFormat, j);
}

Expected<ScoreConfig> decode_config(std::string_view bytes) {
  auto parsed = without_version(kConfigFormat, bytes, "score config");
  if (!parsed.ok()) return std::move(parsed).error();
  const json& j = *parsed;
  try {
    ScoreConfig c;
    c.id = j.at("i").get<std::string>();
    c.name = j.at("n").get<std::string>();
    const int t = j.at("t").get<int>();
    if (t < 0 || t > 2) return storage_error("corrupt score config: data type");
    c.data_type = static_cast<ScoreDataType>(t);
    for (const auto& cat : j.at("c")) {
      c.categories.push_back({cat.at(0).get<std::string>(), cat.at(1).get<double>()});
    }
    c.description = j.at("d").get<std::string>();
    c.created_at_us = j.at("ca").get<std::int64_t>();
    if (const auto lo = j.find("lo"); lo != j.end()) c.min_value = lo->get<double>();
    if (const auto hi = j.find("hi"); hi != j.end()) c.max_value = hi->get<double>();
    return c;
  } catch (const json::exception& e) {
    return storage_error(std::string("corrupt score config: ") + e.what());
  }
}

Expected<void> validate_score_name(std::string_view name) {
  if (name.empty()) return invalid_argument("score name must not be empty");
  if (name.size() > kMaxScoreNameBytes) {
    return invalid_argument("score name " + label_of(name.substr(0, 40)) + "... is longer than " +
                            std::to_string(kMaxScoreNameBytes) + " bytes");
  }
  if (sanitize_utf8(name) != name) {
    return invalid_argument("score name " + label_of(name) + " is not valid UTF-8");
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      return invalid_argument("score name " + label_of(name) + " contains a control character");
    }
  }
  return {};
}

Expected<ScoreConfig> parse_score_config(const json& body) {
  if (!body.is_object()) return invalid_argument("request body must be a JSON object");
  ScoreConfig c;
  bool has_type = false;
  for (const auto& [key, v] : body.items()) {
    if (key == "id") {
      if (!v.is_string() || !valid_request_id(v.get<std::string>())) {
        return invalid_argument("'id' must be a string of 1-128 printable ASCII characters");
      }
      c.id = v.get<std::string>();
    } else if (key == "name") {
      if (!v.is_string()) return invalid_argument("'name' must be a string");
      c.name = v.get<std::string>();
    } else if (key == "data_type") {
      const auto t = v.is_string() ? parse_data_type(v.get<std::string>()) : std::nullopt;
      if (!t) return invalid_argument("'data_type' must be NUMERIC, BOOLEAN or CATEGORICAL");
      c.data_type = *t;
      has_type = true;
    } else if (key == "min_value" || key == "max_value") {
      if (v.is_null()) continue;
      if (!v.is_number() || !std::isfinite(v.get<double>())) {
        return invalid_argument("'" + key + "' must be a finite number");
      }
      (key == "min_value" ? c.min_value : c.max_value) = v.get<double>();
    } else if (key == "categories") {
      if (v.is_null()) continue;
      if (!v.is_array()) return invalid_argument("'categories' must be an array of {label, value}");
      std::set<std::string> labels;
      std::set<double> values;
      for (const auto& cat : v) {
        if (!cat.is_object() || cat.size() != 2 || !cat.contains("label") ||
            !cat.contains("value") || !cat["label"].is_string() || !cat["value"].is_number()) {
          return invalid_argument("each category must be {\"label\": string, \"value\": number}");
        }
        const auto label = cat["label"].get<std::string>();
        const double value = cat["value"].get<double>();
        if (label.empty()) return invalid_argument("category labels must not be empty");
        if (!std::isfinite(value)) return invalid_argument("category values must be finite");
        if (!labels.insert(label).second) {
          return invalid_argument("category label " + label_of(label) + " appears twice");
        }
        if (!values.insert(value).second) {
          return invalid_argument("category value " + number_text(value) + " appears twice");
        }
        c.categories.push_back({label, value});
      }
    } else if (key == "description") {
      if (v.is_null()) continue;
      if (!v.is_string()) return invalid_argument("'description' must be a string");
      c.description = v.get<std::string>();
      if (c.description.size() > kMaxScoreTextBytes) {
        return invalid_argument("'description' is longer than " + std::to_string(kMaxScoreTextBytes) + " bytes");
      }
    } else {
      return invalid_argument("unknown field " + label_of(key) + " in score config");
    }
  }
  if (c.name.empty() && !body.contains("name")) return invalid_argument("'name' is required");
  if (auto ok = validate_score_name(c.name); !ok) return std::move(ok).error();
  if (!has_type) return invalid_argument("'data_type' is required");
  switch (c.data_type) {
    case ScoreDataType::kNumeric:
      if (!c.categories.empty()) return invalid_argument("a NUMERIC config takes no categories");
      if (c.min_value && c.max_value && *c.min_value > *c.max_value) {
        return invalid_argument("min_value " + number_text(*c.min_value) +
                                " is greater than max_value " + number_text(*c.max_value));
      }
      break;
    case ScoreDataType::kBoolean:
      if (!c.categories.empty() || c.min_value || c.max_value) {
        return invalid_argument("a BOOLEAN config takes no min_value, max_value or categories");
      }
      break;
    case ScoreDataType::kCategorical:
      if (c.min_value || c.max_value) {
        return invalid_argument("a CATEGORICAL config takes no min_value or max_value");
      }
      if (c.categories.empty()) {
        return invalid_argument("a CATEGORICAL config needs at least one category");
      }
      break;
  }
  return c;
}

Expected<void> apply_config(Score& s, const ScoreConfig& c) {
  const std::string who = "score " + label_of(s.name);
  if (s.data_type != c.data_type) {
    // A number sent for a CATEGORICAL config may name a category by value.
    if (!(c.data_type == ScoreDataType::kCategorical && s.data_type == ScoreDataType::kNumeric)) {
      return invalid_argument(who + " has data_type " + std::string(to_string(s.data_type)) +
                              " but its config " + label_of(c.id) + " requires " +
                              std::string(to_string(c.data_type)));
    }
  }
  switch (c.data_type) {
    case ScoreDataType::kNumeric: {
      const double v = s.value.value_or(0);
      if (c.min_value && v < *c.min_value) {
        return invalid_argument(who + " = " + number_text(v) + " is below the config's min_value " +
                                number_text(*c.min_value));
      }
      if (c.max_value && v > *c.max_value) {
        return invalid_argument(who + " = " + number_text(v) + " is above the config's max_value " +
                                number_text(*c.max_value));
      }
      break;
    }
    case ScoreDataType::kBoolean:
      break;
    case ScoreDataType::kCategorical: {
      const ScoreCategory* hit = nullptr;
      for (const auto& cat : c.categories) {
        const bool by_label = s.data_type == ScoreDataType::kCategorical && !s.label.empty();
        if (by_label ? cat.label == s.label : cat.value == s.value.value_or(NAN)) {
          hit = &cat;
        }
      }
      if (hit == nullptr) {
        std::string allowed;
        for (const auto& cat : c.categories) {
          allowed += (allowed.empty() ? "" : ", ") + cat.label + "=" + number_text(cat.value);
        }
        const std::string got =
            !s.label.empty() ? label_of(s.label) : number_text(s.value.value_or(0));
        return invalid_argument(who + " = " + got + " is not a category of its config (" + allowed +
                                ")");
      }
      s.data_type = ScoreDataType::kCategorical;
      s.label = hit->label;
      s.value = hit->value;
      break;
    }
  }
  s.config_id = c.id;
  return {};
}

Expected<std::vector<HeliconeScore>> parse_helicone_scores(const json& body) {
  if (!body.is_object()) return invalid_argument("request body must be a JSON object");
  for (const auto& [key, v] : body.items()) {
    if (key != "scores") {
      return invalid_argument("unknown field " + label_of(key) + " (only \"scores\" is accepted)");
    }
  }
  const auto it = body.find("scores");
  if (it == body.end()) return invalid_argument("missing \"scores\"");
  if (it->is_object() && it->size() > kMaxScoresPerSubmission) {
    return invalid_argument("\"scores\" holds " + std::to_string(it->size()) + " names; at most " +
                            std::to_string(kMaxScoresPerSubmission) + " per submission");
  }
  if (!it->is_object()) {
    return invalid_argument("\"scores\" must be an object of name: integer or boolean");
  }
  if (it->empty()) return invalid_argument("\"scores\" is empty");
  std::vector<HeliconeScore> out;
  for (const auto& [name, v] : it->items()) {
    if (auto ok = validate_score_name(name); !ok) return std::move(ok).error();
    const std::string who = "score " + label_of(name);
    if (v.is_boolean()) {
      out.push_back({name, ScoreDataType::kBoolean, v.get<bool>() ? 1.0 : 0.0});
    } else if (v.is_number_integer()) {
      if (v.is_number_unsigned()
              ? v.get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxExactInteger)
              : std::fabs(v.get<double>()) > kMaxExactInteger) {
        return invalid_argument(who + " is out of range (|value| must be at most 2^53)");
      }
      out.push_back({name, ScoreDataType::kNumeric, v.get<double>()});
    } else if (v.is_number_float()) {
      const double d = v.get<double>();
      std::string hint;
      if (std::isfinite(d)) {
        const double scaled = std::fabs(d) <= 1 ? std::round(d * 100) : std::round(d);
        hint = " (send " + number_text(scaled) + ", not " + number_text(d) + ")";
      }
      return invalid_argument(who + " must be an integer or a boolean, got the float " +
                              number_text(d) + ": scale it to an integer" + hint);
    } else {
      return invalid_argument(who + " must be an integer or a boolean, got " + v.type_name());
    }
  }
  return out;
}

Expected<Feedback> parse_feedback(const json& body) {
  if (!body.is_object()) return invalid_argument("request body must be a JSON object");
  const auto it = body.find("rating");
  if (it == body.end()) return invalid_argument("missing \"rating\" (true or false)");
  if (!it->is_boolean())
    return invalid_argument("\"rating\" must be true or false, got " +
                            std::string(it->type_name()));
  if (body.size() > kMaxFeedbackFields + 1) {
    return invalid_argument("feedback has " + std::to_string(body.size() - 1) + " fields; at most " +
                            std::to_string(kMaxFeedbackFields));
  }
  Feedback f;
  f.rating = it->get<bool>();
  for (const auto& [key, v] : body.items()) {
    if (key == "rating") continue;
    if (key.empty()) return invalid_argument("feedback field names must not be empty");
    if (key.size() > kMaxScoreNameBytes) {
      return invalid_argument("feedback field " + label_of(std::string_view(key).substr(0, 40)) +
                              "... has a name longer than " + std::to_string(kMaxScoreNameBytes) + " bytes");
    }
    if (v.dump().size() > kMaxScoreTextBytes) {
      return invalid_argument("feedback field " + label_of(key) + " is longer than " +
                              std::to_string(kMaxScoreTextBytes) + " bytes");
    }
    f.fields[key] = v;
  }
  return f;
}

Expected<Score> parse_typed_score(const json& body) {
  if (!body.is_object()) return invalid_argument("request body must be a JSON object");
  static const std::set<std::string> kKnown = {
      "id",      "request_id", "observation_id", "session_id", "name",      "value",    "data_type",
      "comment", "metadata",   "source",         "author",     "config_id", "timestamp"};
  for (const auto& [key, v] : body.items()) {
    if (kKnown.count(key) == 0) return invalid_argument("unknown field " + label_of(key));
  }
  Score s;
  Error err;
  auto str = [&](const char* key, std::string& out) -> bool {
    auto v = optional_string(body, key, err);
    if (!err.message.empty()) return false;
    if (v) out = std::move(*v);
    return true;
  };
  if (!str("id", s.id) || !str("request_id", s.request_id) ||
      !str("observation_id", s.observation_id) || !str("session_id", s.session_id) ||
      !str("name", s.name) || !str("comment", s.comment) || !str("author", s.author) ||
      !str("config_id", s.config_id)) {
    return err;
  }
  if (body.contains("id") && !valid_request_id(s.id)) {
    return invalid_argument("'id' must be 1-128 printable ASCII characters");
  }
  if (!body.contains("name")) return invalid_argument("'name' is required");
  if (auto ok = validate_score_name(s.name); !ok) return std::move(ok).error();
  if (s.request_id.empty() == s.session_id.empty()) {
    return invalid_argument("exactly one of 'request_id' and 'session_id' is required");
  }
  if (!s.request_id.empty() && !valid_request_id(s.request_id)) {
    return invalid_argument("'request_id' is not a valid request id");
  }
  if (!s.observation_id.empty() && s.request_id.empty()) {
    return invalid_argument("'observation_id' needs a 'request_id'");
  }
  if (s.session_id.size() > 1024 || s.observation_id.size() > 1024) {
    return invalid_argument("'session_id' and 'observation_id' are limited to 1024 bytes");
  }
  if (s.comment.size() > kMaxScoreTextBytes) {
    return invalid_argument("'comment' is longer than " + std::to_string(kMaxScoreTextBytes) + " bytes");
  }
  if (s.author.size() > kMaxAuthorBytes) {
    return invalid_argument("'author' is longer than " + std::to_string(kMaxAuthorBytes) + " bytes");
  }
  if (!s.config_id.empty() && !valid_request_id(s.config_id)) {
    return invalid_argument("'config_id' must be 1-128 printable ASCII characters");
  }

  std::optional<ScoreDataType> declared;
  if (const auto t = body.find("data_type"); t != body.end() && !t->is_null()) {
    declared = t->is_string() ? parse_data_type(t->get<std::string>()) : std::nullopt;
    if (!declared) return invalid_argument("'data_type' must be NUMERIC, BOOLEAN or CATEGORICAL");
  }
  const auto v = body.find("value");
  if (v == body.end() || v->is_null()) return invalid_argument("'value' is required");
  const std::string who = "score " + label_of(s.name);
  if (v->is_boolean()) {
    if (declared && *declared != ScoreDataType::kBoolean) {
      return invalid_argument(who + ": a boolean value needs data_type BOOLEAN");
    }
    s.data_type = ScoreDataType::kBoolean;
    s.value = v->get<bool>() ? 1.0 : 0.0;
  } else if (v->is_number()) {
    const double d = v->get<double>();
    if (!std::isfinite(d)) return invalid_argument(who + ": value must be finite");
    if (declared == ScoreDataType::kBoolean) {
      if (d != 0 && d != 1)
        return invalid_argument(who + ": a BOOLEAN value must be true/false or 0/1");
      s.data_type = ScoreDataType::kBoolean;
    } else {
      // A number for CATEGORICAL names a category by value (label empty
      // until the config maps it; the store refuses it without a config).
      s.data_type = declared.value_or(ScoreDataType::kNumeric);
    }
    s.value = d;
  } else if (v->is_string()) {
    if (declared && *declared != ScoreDataType::kCategorical) {
      return invalid_argument(who + ": a string value needs data_type CATEGORICAL");
    }
    s.data_type = ScoreDataType::kCategorical;
    s.label = v->get<std::string>();
    if (s.label.empty()) return invalid_argument(who + ": a CATEGORICAL value must not be empty");
    if (s.label.size() > 1024)
      return invalid_argument(who + ": a CATEGORICAL value is limited to 1024 bytes");
  } else {
    return invalid_argument(who + ": value must be a number, boolean or string, got " +
                            std::string(v->type_name()));
  }

  if (const auto src = body.find("source"); src != body.end() && !src->is_null()) {
    const auto parsed = src->is_string() ? parse_source(src->get<std::string>()) : std::nullopt;
    if (!parsed) return invalid_argument("'source' must be API, ANNOTATION or EVAL");
    s.source = *parsed;
  }
  if (const auto m = body.find("metadata"); m != body.end() && !m->is_null()) {
    if (!m->is_object()) return invalid_argument("'metadata' must be a JSON object");
    if (m->dump().size() > kMaxScoreTextBytes) {
      return invalid_argument("'metadata' is longer than " + std::to_string(kMaxScoreTextBytes) + " bytes");
    }
    s.metadata = *m;
  }
  if (const auto ts = body.find("timestamp"); ts != body.end() && !ts->is_null()) {
    const auto parsed = ts->is_string() ? parse_iso8601(ts->get<std::string>()) : std::nullopt;
    if (!parsed) return invalid_argument("'timestamp' must be an ISO-8601 string");
    s.timestamp_us = *parsed;
  }
  return s;
}

std::string random_uuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::uint64_t a = rng();
  const std::uint64_t b = rng();
  unsigned char bytes[16];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(a >> (8 * i));
  for (int i = 0; i < 8; ++i) bytes[8 + i] = static_cast<unsigned char>(b >> (8 * i));
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0F) | 0x40);
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3F) | 0x80);
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
                bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8],
                bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
  return out;
}

}  // namespace arbiter::scoring
