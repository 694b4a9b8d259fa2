#include "gateway/sse_tap.hpp"

#include "scoring/json_limits.hpp"

namespace arbiter::gateway {

void SseTap::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    const auto nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      if (skipping_line_) return;
      if (line_.size() + bytes.size() > kMaxLine) {
        // A line this long is not an LLM delta; drop it rather than grow without bound.
        overflowed_ = true;
        skipping_line_ = true;
        line_.clear();
        return;
      }
      line_.append(bytes);
      return;
    }
    std::string_view piece = bytes.substr(0, nl);
    bytes.remove_prefix(nl + 1);
    if (skipping_line_) {
      skipping_line_ = false;
      continue;
    }
    if (line_.size() + piece.size() > kMaxLine) {
      // Same limit whether the line arrived in one piece or many.
      overflowed_ = true;
      line_.clear();
      continue;
    }
    if (line_.empty()) {
      on_line(piece);
    } else {
      line_.append(piece);
      on_line(line_);
      line_.clear();
    }
  }
}

void SseTap::finish() {
  if (!line_.empty() && !skipping_line_) on_line(line_);
  line_.clear();
  if (!data_.empty()) on_event(data_);
  data_.clear();
}

void SseTap::on_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {  // blank line: dispatch the event
    if (!data_.empty()) on_event(data_);
    data_.clear();
    return;
  }
  if (line.rfind("data:", 0) != 0) return;  // event:, id:, retry:, comments
  line.remove_prefix(5);
  if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (!data_.empty()) data_.push_back('\n');
  if (data_.size() + line.size() > kMaxLine) {
    overflowed_ = true;
    data_.clear();
    return;
  }
  data_.append(line);
}

SseTap::Choice& SseTap::choice_at(std::size_t index) {
  // Providers send small indexes; cap to keep a hostile stream from allocating.
  if (index > 64) index = 64;
  if (choices_.size() <= index) choices_.resize(index + 1);
  return choices_[index];
}

const SseTap::Choice& SseTap::choice(std::size_t index) const {
  static const Choice kEmpty;
  return index < choices_.size() ? choices_[index] : kEmpty;
}

void SseTap::on_event(std::string_view data) {
  ++events_;
  if (data == "[DONE]") {
    done_ = true;
    return;
  }
  auto j = scoring::parse_json_bounded(data);
  if (!j.is_object()) return;

  auto str = [](const nlohmann::json& o, const char* key) -> const std::string* {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
  };
  if (const auto* v = str(j, "id"); v && id_.empty()) id_ = *v;
  if (const auto* v = str(j, "model"); v && model_.empty()) model_ = *v;
  if (const auto* v = str(j, "object"); v && object_.empty()) object_ = *v;
  if (auto it = j.find("usage"); it != j.end() && it->is_object()) usage_ = *it;

  // The Responses API streams typed events instead of choices.
  if (const auto* type = str(j, "type")) {
    if (auto r = j.find("response"); r != j.end() && r->is_object()) {
      if (const auto* v = str(*r, "id"); v && id_.empty()) id_ = *v;
      if (const auto* m = str(*r, "model"); m && model_.empty()) model_ = *m;
    }
    if (*type == "response.output_text.delta") {
      if (const auto* d = str(j, "delta")) {
        if (!first_token_event_) first_token_event_ = events_ - 1;
        choice_at(0).content.append(*d);
      }
    } else if (*type == "response.completed") {
      if (auto r = j.find("response"); r != j.end() && r->is_object()) {
        if (auto u = r->find("usage"); u != r->end() && u->is_object()) usage_ = *u;
      }
    }
    return;
  }

  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array()) return;
  for (const auto& c : *choices) {
    if (!c.is_object()) continue;
    std::size_t index = 0;
    if (auto it = c.find("index"); it != c.end() && it->is_number_unsigned()) index = it->get<std::size_t>();
    Choice& ch = choice_at(index);
    if (const auto* f = str(c, "finish_reason")) ch.finish_reason = *f;
    if (const auto* t = str(c, "text")) {  // legacy completions
      if (!t->empty() && !first_token_event_) first_token_event_ = events_ - 1;
      ch.content.append(*t);
    }
    auto delta = c.find("delta");
    if (delta == c.end() || !delta->is_object()) continue;
    if (const auto* r = str(*delta, "role")) ch.role = *r;
    if (const auto* t = str(*delta, "content")) {
      if (!t->empty() && !first_token_event_) first_token_event_ = events_ - 1;
      ch.content.append(*t);
    }
    auto calls = delta->find("tool_calls");
    if (calls == delta->end() || !calls->is_array()) continue;
    if (!first_token_event_) first_token_event_ = events_ - 1;
    for (const auto& call : *calls) {
      if (!call.is_object()) continue;
      std::size_t ti = 0;
      if (auto it = call.find("index"); it != call.end() && it->is_number_unsigned()) ti = it->get<std::size_t>();
      if (ti > 64) continue;
      if (ch.tool_calls.size() <= ti) ch.tool_calls.resize(ti + 1);
      ToolCall& tc = ch.tool_calls[ti];
      if (const auto* v = str(call, "id")) tc.id = *v;
      if (const auto* v = str(call, "type")) tc.type = *v;
      if (auto fn = call.find("function"); fn != call.end() && fn->is_object()) {
        // The name arrives once, in the first delta of the call; providers
        // that repeat it must not produce "get_weatherget_weather".
        if (const auto* v = str(*fn, "name"); v && tc.name.empty()) tc.name = *v;
        if (const auto* v = str(*fn, "arguments")) tc.arguments += *v;
      }
    }
  }
}

nlohmann::json SseTap::reassembled() const {
  nlohmann::json out = nlohmann::json::object();
  const bool legacy = object_ == "text_completion";
  out["id"] = id_;
  out["object"] = legacy ? "text_completion" : "chat.completion";
  out["model"] = model_;
  nlohmann::json choices = nlohmann::json::array();
  for (std::size_t i = 0; i < choices_.size(); ++i) {
    const Choice& ch = choices_[i];
    nlohmann::json c = {{"index", i}};
    if (legacy) {
      c["text"] = ch.content;
    } else {
      nlohmann::json msg = {{"role", ch.role.empty() ? "assistant" : ch.role}, {"content", ch.content}};
      if (!ch.tool_calls.empty()) {
        nlohmann::json calls = nlohmann::json::array();
        for (const auto& tc : ch.tool_calls) {
          calls.push_back({{"id", tc.id},
                           {"type", tc.type.empty() ? "function" : tc.type},
                           {"function", {{"name", tc.name}, {"arguments", tc.arguments}}}});
        }
        msg["tool_calls"] = std::move(calls);
      }
      c["message"] = std::move(msg);
    }
    c["finish_reason"] = ch.finish_reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(ch.finish_reason);
    choices.push_back(std::move(c));
  }
  out["choices"] = std::move(choices);
  if (usage_) out["usage"] = *usage_;
  return out;
}

std::string reassemble_stream(std::string_view raw) {
  SseTap tap;
  tap.feed(raw);
  tap.finish();
  return tap.reassembled().dump();
}

}  // namespace arbiter::gateway
