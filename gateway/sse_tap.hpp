#pragma once
// Reassembles an OpenAI-style server-sent-event stream while it is relayed.
//
// The proxy writes each upstream chunk to the client first and only then
// feeds it here, so parsing never delays a token. Memory is bounded: only the
// reassembled text and tool calls are kept, plus a partial line of at most
// kMaxLine bytes. Not thread-safe: one tap belongs to one session.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace arbiter::gateway {

class SseTap {
 public:
  static constexpr std::size_t kMaxLine = 1 << 20;

  // Feed body bytes as they arrive (already de-chunked).
  void feed(std::string_view bytes);
  // Call once at end of stream: flushes an unterminated last event.
  void finish();

  std::size_t events() const { return events_; }
  bool saw_done() const { return done_; }
  bool overflowed() const { return overflowed_; }
  // Index (0-based) of the first event that carried content or a tool call.
  bool has_first_token() const { return first_token_event_.has_value(); }

  // The completion rebuilt as a chat.completion (or text_completion) object:
  // id, model, choices[].message {role, content, tool_calls}, finish_reason,
  // and usage when the stream carried it (absent otherwise: unknown, not zero).
  nlohmann::json reassembled() const;
  const std::string& content() const { return choice(0).content; }
  const std::optional<nlohmann::json>& usage() const { return usage_; }
  const std::string& model() const { return model_; }

 private:
  struct ToolCall {
    std::string id, type, name, arguments;
  };
  struct Choice {
    std::string role, content, finish_reason;
    std::vector<ToolCall> tool_calls;
  };

  void on_line(std::string_view line);
  void on_event(std::string_view data);
  Choice& choice_at(std::size_t index);
  const Choice& choice(std::size_t index) const;

  std::string line_;        // partial line carried between feeds
  std::string data_;        // data: lines of the current event
  bool skipping_line_ = false;
  bool overflowed_ = false;
  bool done_ = false;
  std::size_t events_ = 0;
  std::optional<std::size_t> first_token_event_;
  std::string id_, model_, object_;
  std::vector<Choice> choices_;
  std::optional<nlohmann::json> usage_;
};

// The completion rebuilt from a whole stream's bytes (what a tap fed with all
// of them, then finished, gives): reassembled().dump(). The proxy parses a
// stream's events on its I/O thread only until the first token; the log
// rebuilds the completion from the raw copy on its storage thread.
std::string reassemble_stream(std::string_view raw);

}  // namespace arbiter::gateway
