#include "scoring/eval_event.hpp"

#include <optional>

#include "plugins/event_path.hpp"
#include "scoring/json_limits.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;

// A body as an evaluator reads it: JSON when it parses, else its (UTF-8
// sanitised) text; `empty` when there is none.
json parse_body(const std::string& body, json empty) {
  if (body.empty()) return empty;
  json parsed = parse_json_bounded(body);
  if (!parsed.is_discarded()) return parsed;
  return sanitize_utf8(body);
}

// Text of a content value: a string as is; OpenAI's array of parts
// ([{"type": "text", "text": ...}]) joined; null as "".
std::optional<std::string> content_text(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return std::string();
  if (content.is_array()) {
    std::string out;
    for (const auto& part : content) {
      if (part.is_string()) {
        out += part.get<std::string>();
      } else if (part.is_object()) {
        auto t = part.find("text");
        if (t != part.end() && t->is_string()) out += t->get<std::string>();
      }
    }
    return out;
  }
  return std::nullopt;
}

void fill_outputs(const json& raw, json& outputs) {
  outputs["tool_calls"] = json::array();
  if (!raw.is_object()) return;
  if (auto choices = raw.find("choices"); choices != raw.end() && choices->is_array() &&
                                          !choices->empty() && (*choices)[0].is_object()) {
    const json& choice = (*choices)[0];
    if (auto msg = choice.find("message"); msg != choice.end() && msg->is_object()) {
      if (auto c = msg->find("content"); c != msg->end()) {
        if (auto text = content_text(*c)) outputs["content"] = std::move(*text);
      } else {
        outputs["content"] = "";
      }
      if (auto calls = msg->find("tool_calls"); calls != msg->end() && calls->is_array()) {
        outputs["tool_calls"] = *calls;
      }
      return;
    }
    if (auto text = choice.find("text"); text != choice.end() && text->is_string()) {
      outputs["content"] = *text;
    }
    return;
  }
  // The Responses API: output[] items of type "message" with output_text parts.
  if (auto text = raw.find("output_text"); text != raw.end() && text->is_string()) {
    outputs["content"] = *text;
    return;
  }
  if (auto output = raw.find("output"); output != raw.end() && output->is_array()) {
    std::string text;
    bool found = false;
    json calls = json::array();
    for (const auto& item : *output) {
      if (!item.is_object()) continue;
      const auto type = item.value("type", std::string());
      if (type == "function_call") calls.push_back(item);
      auto content = item.find("content");
      if (type != "message" || content == item.end() || !content->is_array()) continue;
      for (const auto& part : *content) {
        if (part.is_object() && part.value("type", std::string()) == "output_text") {
          if (auto t = part.find("text"); t != part.end() && t->is_string()) {
            text += t->get<std::string>();
            found = true;
          }
        }
      }
    }
    if (found) outputs["content"] = std::move(text);
    outputs["tool_calls"] = std::move(calls);
  }
}

}  // namespace

json build_eval_event(const RequestRecord& r, bool with_inputs) {
  json event = json::object();
  event["inputs"] = with_inputs ? parse_body(r.request_body, json::object()) : json::object();
  json outputs = json::object();
  json raw = parse_body(r.response_body, nullptr);
  fill_outputs(raw, outputs);
  outputs["raw"] = std::move(raw);  // not a copy: the parsed response is the event's largest part
  event["outputs"] = std::move(outputs);
  event["feedback"] = r.feedback.is_object() ? r.feedback : json::object();
  json props = json::object();
  for (const auto& [k, v] : r.properties) props[sanitize_utf8(k)] = sanitize_utf8(v);
  event["properties"] = std::move(props);
  json meta = {{"model", sanitize_utf8(r.model())},
               {"status", r.status},
               {"latency_ms", r.latency_ms}};
  if (r.time_to_first_token_ms) meta["time_to_first_token_ms"] = *r.time_to_first_token_ms;
  if (r.prompt_tokens) meta["prompt_tokens"] = *r.prompt_tokens;
  if (r.completion_tokens) meta["completion_tokens"] = *r.completion_tokens;
  event["metadata"] = std::move(meta);
  event["user_id"] = sanitize_utf8(r.user_id);
  event["session_id"] = sanitize_utf8(r.session_id);
  event["request_id"] = sanitize_utf8(r.request_id);
  return event;
}

std::vector<std::string> missing_fields(const json& event, const std::vector<std::string>& needs) {
  std::vector<std::string> out;
  for (const auto& path : needs) {
    const json* v = plugins::find_event_path(event, path);
    if (v == nullptr || v->is_null()) out.push_back(path);
  }
  return out;
}

}  // namespace arbiter::scoring
