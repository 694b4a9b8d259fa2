#include "gateway/sse_tap.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace arbiter::gateway {
namespace {

using nlohmann::json;

// One SSE event per element: "data: <payload>\n\n".
std::string events(const std::vector<std::string>& payloads, std::string_view eol = "\n") {
  std::string out;
  for (const auto& p : payloads) {
    out += "data: ";
    out += p;
    out += eol;
    out += eol;
  }
  return out;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

// A chat.completion.chunk as OpenAI sends it with stream_options.include_usage.
std::string chunk(const std::string& delta, const std::string& finish_reason = "null") {
  return R"({"id":"chatcmpl-A1b2C3","object":"chat.completion.chunk","created":1718000000,)"
         R"("model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1",)"
         R"("choices":[{"index":0,"delta":)" +
         delta + R"(,"logprobs":null,"finish_reason":)" + finish_reason + R"(}],"usage":null})";
}

const std::string kUsageChunk =
    R"({"id":"chatcmpl-A1b2C3","object":"chat.completion.chunk","created":1718000000,)"
    R"("model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[],)"
    R"("usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18,)"
    R"("prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}})";

// Role delta, content deltas (with multi-byte UTF-8 and JSON escapes), finish, usage, [DONE].
const std::vector<std::string> kChatPayloads = {
    chunk(R"({"role":"assistant","content":"","refusal":null})"),
    chunk(R"({"content":"Hello"})"),
    chunk(R"({"content":", w\u00f6rld"})"),
    chunk(R"({"content":"! \"quoted\"\nnew line 🙂"})"),
    chunk(R"({})", R"("stop")"),
    kUsageChunk,
    "[DONE]",
};

const std::string kChatStream = events(kChatPayloads);

const std::string kChatContent = "Hello, w\xc3\xb6rld! \"quoted\"\nnew line \xf0\x9f\x99\x82";

json expected_chat() {
  return json{
      {"id", "chatcmpl-A1b2C3"},
      {"object", "chat.completion"},
      {"model", "gpt-4o-mini-2024-07-18"},
      {"choices", json::array({json{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", kChatContent}}},
                                    {"finish_reason", "stop"}}})},
      {"usage", json::parse(R"({"prompt_tokens":12,"completion_tokens":6,"total_tokens":18,)"
                            R"("prompt_tokens_details":{"cached_tokens":0},)"
                            R"("completion_tokens_details":{"reasoning_tokens":0}})")},
  };
}

json run_whole(std::string_view stream) {
  SseTap tap;
  tap.feed(stream);
  tap.finish();
  return tap.reassembled();
}

// --- a realistic chat stream, chunked every way -------------------------------

TEST(SseTapTest, ChatStreamFedWhole) {
  SseTap tap;
  tap.feed(kChatStream);
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected_chat()) << tap.reassembled().dump(2);
  EXPECT_EQ(tap.content(), kChatContent);
  EXPECT_EQ(tap.model(), "gpt-4o-mini-2024-07-18");
  ASSERT_TRUE(tap.usage().has_value());
  EXPECT_EQ((*tap.usage())["total_tokens"], 18);
  EXPECT_EQ(tap.events(), 7u);
  EXPECT_TRUE(tap.saw_done());
  EXPECT_FALSE(tap.overflowed());
  EXPECT_TRUE(tap.has_first_token());
}

TEST(SseTapTest, ChatStreamCompleteWithoutFinish) {
  // The stream ends with a blank line, so finish() has nothing left to flush.
  SseTap tap;
  tap.feed(kChatStream);
  EXPECT_EQ(tap.reassembled(), expected_chat());
  EXPECT_TRUE(tap.saw_done());
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected_chat());
  EXPECT_EQ(tap.events(), 7u);
}

TEST(SseTapTest, ChatStreamFedByteByByte) {
  SseTap tap;
  for (const char c : kChatStream) tap.feed(std::string_view(&c, 1));
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected_chat()) << tap.reassembled().dump(2);
  EXPECT_EQ(tap.events(), 7u);
  EXPECT_TRUE(tap.saw_done());
}

TEST(SseTapTest, ChatStreamSplitAtEveryPosition) {
  const json expected = expected_chat();
  const std::string_view s = kChatStream;
  for (std::size_t cut = 0; cut <= s.size(); ++cut) {
    SseTap tap;
    tap.feed(s.substr(0, cut));
    tap.feed(s.substr(cut));
    tap.finish();
    ASSERT_EQ(tap.reassembled(), expected) << "cut at " << cut;
    ASSERT_EQ(tap.events(), 7u) << "cut at " << cut;
    ASSERT_TRUE(tap.saw_done()) << "cut at " << cut;
  }
}

TEST(SseTapTest, ChatStreamInChunksOfEverySize) {
  const json expected = expected_chat();
  const std::string_view s = kChatStream;
  for (std::size_t size = 1; size <= 97; ++size) {
    SseTap tap;
    for (std::size_t at = 0; at < s.size(); at += size) tap.feed(s.substr(at, size));
    tap.finish();
    ASSERT_EQ(tap.reassembled(), expected) << "chunk size " << size;
  }
}

TEST(SseTapTest, EmptyFeedsChangeNothing) {
  SseTap tap;
  tap.feed("");
  tap.feed(kChatStream.substr(0, 10));
  tap.feed("");
  tap.feed(kChatStream.substr(10));
  tap.feed("");
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected_chat());
}

TEST(SseTapTest, StreamWithoutUsageHasNoUsageKey) {
  std::vector<std::string> payloads = kChatPayloads;
  payloads.erase(payloads.begin() + 5);  // the usage chunk
  SseTap tap;
  tap.feed(events(payloads));
  tap.finish();
  const json j = tap.reassembled();
  EXPECT_FALSE(j.contains("usage")) << j.dump();
  EXPECT_FALSE(tap.usage().has_value());
  json expected = expected_chat();
  expected.erase("usage");
  EXPECT_EQ(j, expected);
}

TEST(SseTapTest, EmptyTapReassemblesToAnEmptyCompletion) {
  SseTap tap;
  tap.finish();
  EXPECT_EQ(tap.reassembled(), (json{{"id", ""}, {"object", "chat.completion"}, {"model", ""}, {"choices", json::array()}}));
  EXPECT_EQ(tap.content(), "");
  EXPECT_EQ(tap.events(), 0u);
  EXPECT_FALSE(tap.saw_done());
  EXPECT_FALSE(tap.has_first_token());
  EXPECT_FALSE(tap.overflowed());
}

// --- SSE framing ---------------------------------------------------------------

TEST(SseTapTest, CrlfLineEndings) {
  const std::string crlf = events(kChatPayloads, "\r\n");
  ASSERT_NE(crlf.find("\r\n\r\n"), std::string::npos);
  EXPECT_EQ(run_whole(crlf), expected_chat());
  for (std::size_t cut = 0; cut <= crlf.size(); ++cut) {
    SseTap tap;
    tap.feed(std::string_view(crlf).substr(0, cut));
    tap.feed(std::string_view(crlf).substr(cut));
    tap.finish();
    ASSERT_EQ(tap.reassembled(), expected_chat()) << "cut at " << cut;
  }
}

TEST(SseTapTest, MultiLineDataEventsAreJoinedWithNewline) {
  // One JSON object spread over three data: lines.
  const std::string stream =
      "data: {\"id\":\"chatcmpl-ml\",\"model\":\"m\",\n"
      "data: \"choices\":[{\"index\":0,\n"
      "data: \"delta\":{\"content\":\"multi\"}}]}\n"
      "\n"
      "data: {\"id\":\"chatcmpl-ml\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"-line\"},\n"
      "data:\"finish_reason\":\"stop\"}]}\n"
      "\n"
      "data: [DONE]\n\n";
  SseTap tap;
  tap.feed(stream);
  tap.finish();
  EXPECT_EQ(tap.content(), "multi-line");
  EXPECT_EQ(tap.reassembled()["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(tap.reassembled()["id"], "chatcmpl-ml");
  EXPECT_EQ(tap.events(), 3u);
}

TEST(SseTapTest, CommentsEventAndIdLinesAreIgnored) {
  std::string stream = ": ping\n\n";
  stream += ": keep-alive comment\n";
  stream += "event: message\n";
  stream += "id: 1\n";
  stream += "retry: 3000\n";
  stream += "data: " + kChatPayloads[0] + "\n\n";
  stream += ":\n\n";
  for (std::size_t i = 1; i < kChatPayloads.size(); ++i) {
    stream += "event: completion\n";
    stream += "data: " + kChatPayloads[i] + "\n";
    stream += ": ping in the middle of an event\n";
    stream += "id: " + std::to_string(i + 1) + "\n\n";
    stream += ": ping\n\n";
  }
  SseTap tap;
  tap.feed(stream);
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected_chat()) << tap.reassembled().dump(2);
  // Comment-only blocks are not events.
  EXPECT_EQ(tap.events(), 7u);
}

TEST(SseTapTest, DataWithoutSpaceAfterColon) {
  std::string stream;
  for (const auto& p : kChatPayloads) stream += "data:" + p + "\n\n";
  EXPECT_EQ(run_whole(stream), expected_chat());
}

TEST(SseTapTest, ConsecutiveBlankLinesDoNotCreateEvents) {
  const std::string stream = "\n\n\n" + replace_all(kChatStream, "\n\n", "\n\n\n\n");
  SseTap tap;
  tap.feed(stream);
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected_chat());
  EXPECT_EQ(tap.events(), 7u);
}

TEST(SseTapTest, GarbageJsonIsIgnored) {
  std::vector<std::string> payloads;
  const std::vector<std::string> garbage = {
      "{not json",  "[1,2,3]", "\"a string\"", "null", "42", "{\"choices\":\"nope\"}",
      "{\"choices\":[1,\"x\",null]}", "{\"choices\":[{\"delta\":\"str\"}]}", "}{", "",
      "{\"choices\":[{\"index\":-1,\"delta\":{\"content\":7}}]}",
  };
  for (std::size_t i = 0; i < kChatPayloads.size(); ++i) {
    payloads.push_back(garbage[i % garbage.size()]);
    payloads.push_back(kChatPayloads[i]);
  }
  for (std::size_t i = kChatPayloads.size(); i < garbage.size(); ++i) payloads.push_back(garbage[i]);
  SseTap tap;
  tap.feed(events(payloads));
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected_chat()) << tap.reassembled().dump(2);
  EXPECT_TRUE(tap.saw_done());
  EXPECT_FALSE(tap.overflowed());
}

TEST(SseTapTest, TruncatedJsonLineIsIgnoredAndLaterEventsStillCount) {
  std::string stream = events({chunk(R"({"role":"assistant","content":""})")});
  stream += "data: {\"id\":\"chatcmpl-A1b2C3\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lost\n\n";
  stream += events({chunk(R"({"content":"kept"})"), chunk("{}", "\"stop\"")});
  SseTap tap;
  tap.feed(stream);
  tap.finish();
  EXPECT_EQ(tap.content(), "kept");
  EXPECT_EQ(tap.reassembled()["choices"][0]["finish_reason"], "stop");
}

// --- finish() -------------------------------------------------------------------

TEST(SseTapTest, FinishFlushesLastEventWithoutBlankLine) {
  const std::string stream = events({chunk(R"({"role":"assistant","content":""})"), chunk(R"({"content":"Hi"})")}) +
                             "data: " + chunk(R"({"content":" there"})", "\"stop\"") + "\n";
  SseTap tap;
  tap.feed(stream);
  EXPECT_EQ(tap.content(), "Hi");  // the last event is not complete yet
  EXPECT_EQ(tap.events(), 2u);
  tap.finish();
  EXPECT_EQ(tap.content(), "Hi there");
  EXPECT_EQ(tap.reassembled()["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(tap.events(), 3u);
}

TEST(SseTapTest, FinishFlushesLastLineWithoutNewline) {
  const std::string stream = events({chunk(R"({"content":"Hi"})")}) + "data: " + chunk(R"({"content":"!"})", "\"length\"");
  SseTap tap;
  tap.feed(stream);
  EXPECT_EQ(tap.content(), "Hi");
  tap.finish();
  EXPECT_EQ(tap.content(), "Hi!");
  EXPECT_EQ(tap.reassembled()["choices"][0]["finish_reason"], "length");
}

TEST(SseTapTest, FinishFlushesDoneWithoutNewline) {
  SseTap tap;
  tap.feed(events({chunk(R"({"content":"x"})")}) + "data: [DONE]");
  EXPECT_FALSE(tap.saw_done());
  tap.finish();
  EXPECT_TRUE(tap.saw_done());
  EXPECT_EQ(tap.events(), 2u);
}

TEST(SseTapTest, FinishFlushesLastLineWithCarriageReturnOnly) {
  SseTap tap;
  tap.feed("data: [DONE]\r");
  tap.finish();
  EXPECT_TRUE(tap.saw_done());
}

TEST(SseTapTest, FinishTwiceDoesNotReplay) {
  SseTap tap;
  tap.feed("data: " + chunk(R"({"content":"once"})"));
  tap.finish();
  tap.finish();
  EXPECT_EQ(tap.content(), "once");
  EXPECT_EQ(tap.events(), 1u);
}

// --- first token --------------------------------------------------------------

TEST(SseTapTest, FirstTokenOnlyAfterNonEmptyContent) {
  SseTap tap;
  EXPECT_FALSE(tap.has_first_token());
  tap.feed(events({chunk(R"({"role":"assistant","content":"","refusal":null})")}));
  EXPECT_FALSE(tap.has_first_token());
  tap.feed(": ping\n\n");
  EXPECT_FALSE(tap.has_first_token());
  tap.feed(events({chunk(R"({"content":""})"), chunk(R"({"content":null})"), "{garbage"}));
  EXPECT_FALSE(tap.has_first_token());
  tap.feed("data: " + chunk(R"({"content":"T"})"));  // not yet terminated
  EXPECT_FALSE(tap.has_first_token());
  tap.feed("\n\n");
  EXPECT_TRUE(tap.has_first_token());
  tap.feed(events({chunk(R"({"content":"more"})")}));
  EXPECT_TRUE(tap.has_first_token());
}

TEST(SseTapTest, UsageAndFinishChunksAreNotFirstTokens) {
  SseTap tap;
  tap.feed(events({chunk(R"({"role":"assistant","content":""})"), chunk("{}", "\"stop\""), kUsageChunk, "[DONE]"}));
  tap.finish();
  EXPECT_FALSE(tap.has_first_token());
  EXPECT_EQ(tap.content(), "");
  EXPECT_TRUE(tap.usage().has_value());
}

// --- tool calls -----------------------------------------------------------------

std::string tool_chunk(const std::string& delta, const std::string& finish_reason = "null") {
  return R"({"id":"chatcmpl-tools","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06",)"
         R"("choices":[{"index":0,"delta":)" +
         delta + R"(,"logprobs":null,"finish_reason":)" + finish_reason + "}]}";
}

// Two parallel tool calls, OpenAI style: id, type and name only in each call's first chunk,
// arguments split anywhere (even inside escapes of the JSON they carry).
const std::vector<std::string> kToolPayloads = {
    tool_chunk(R"({"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null})"),
    tool_chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]})"),
    tool_chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Par"}}]})"),
    tool_chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"is, FR\"}"}}]})"),
    tool_chunk(R"({"tool_calls":[{"index":1,"id":"call_def","type":"function","function":{"name":"get_time","arguments":""}}]})"),
    tool_chunk(R"({"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":"}}]})"),
    tool_chunk(R"({"tool_calls":[{"index":1,"function":{"arguments":"\"Europe/Paris\"}"}}]})"),
    tool_chunk("{}", R"("tool_calls")"),
    "[DONE]",
};

json expected_tools() {
  return json{
      {"id", "chatcmpl-tools"},
      {"object", "chat.completion"},
      {"model", "gpt-4o-2024-08-06"},
      {"choices",
       json::array({json{
           {"index", 0},
           {"message",
            {{"role", "assistant"},
             {"content", ""},
             {"tool_calls",
              json::array({
                  json{{"id", "call_abc"},
                       {"type", "function"},
                       {"function", {{"name", "get_weather"}, {"arguments", "{\"location\": \"Paris, FR\"}"}}}},
                  json{{"id", "call_def"},
                       {"type", "function"},
                       {"function", {{"name", "get_time"}, {"arguments", "{\"tz\":\"Europe/Paris\"}"}}}},
              })}}},
           {"finish_reason", "tool_calls"}}})},
  };
}

TEST(SseTapTest, ToolCallsAreMergedByIndex) {
  SseTap tap;
  tap.feed(events(kToolPayloads));
  tap.finish();
  const json j = tap.reassembled();
  EXPECT_EQ(j, expected_tools()) << j.dump(2);
  EXPECT_TRUE(tap.has_first_token());
  // The merged arguments are the JSON the model produced.
  const json args = json::parse(j["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].get<std::string>());
  EXPECT_EQ(args, (json{{"location", "Paris, FR"}}));
}

TEST(SseTapTest, ToolCallsSplitAtEveryPosition) {
  const std::string stream = events(kToolPayloads);
  const json expected = expected_tools();
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    SseTap tap;
    tap.feed(std::string_view(stream).substr(0, cut));
    tap.feed(std::string_view(stream).substr(cut));
    tap.finish();
    ASSERT_EQ(tap.reassembled(), expected) << "cut at " << cut;
  }
}

TEST(SseTapTest, ToolCallsInterleavedByIndex) {
  // Calls may arrive interleaved; merging follows each call's index, not arrival order.
  const std::vector<std::string> payloads = {
      kToolPayloads[0], kToolPayloads[4], kToolPayloads[1], kToolPayloads[5],
      kToolPayloads[2], kToolPayloads[6], kToolPayloads[3], kToolPayloads[7],
  };
  SseTap tap;
  tap.feed(events(payloads));
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected_tools()) << tap.reassembled().dump(2);
}

TEST(SseTapTest, ToolCallIdAndNameComeFromTheFirstChunk) {
  // Some OpenAI-compatible servers repeat id, type and name in every chunk of a call.
  const std::vector<std::string> payloads = {
      tool_chunk(R"({"role":"assistant","tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"location\":"}}]})"),
      tool_chunk(R"({"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":" \"Paris\"}"}}]})"),
      tool_chunk("{}", R"("tool_calls")"),
  };
  SseTap tap;
  tap.feed(events(payloads));
  tap.finish();
  const json call = tap.reassembled()["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(call["id"], "call_abc");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(call["function"]["arguments"], "{\"location\": \"Paris\"}");
}

TEST(SseTapTest, ToolCallWithoutTypeDefaultsToFunction) {
  SseTap tap;
  tap.feed(events({tool_chunk(R"({"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{}"}}]})")}));
  tap.finish();
  EXPECT_EQ(tap.reassembled()["choices"][0]["message"]["tool_calls"],
            json::parse(R"([{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}])"));
}

TEST(SseTapTest, ContentAndToolCallsTogether) {
  SseTap tap;
  tap.feed(events({
      tool_chunk(R"({"role":"assistant","content":"Let me check."})"),
      tool_chunk(R"({"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]})"),
      tool_chunk("{}", "\"tool_calls\""),
  }));
  tap.finish();
  const json msg = tap.reassembled()["choices"][0]["message"];
  EXPECT_EQ(msg["content"], "Let me check.");
  EXPECT_EQ(msg["tool_calls"].size(), 1u);
}

TEST(SseTapTest, NoToolCallsKeyWithoutToolCalls) {
  SseTap tap;
  tap.feed(kChatStream);
  tap.finish();
  EXPECT_FALSE(tap.reassembled()["choices"][0]["message"].contains("tool_calls"));
}

// --- several choices ------------------------------------------------------------

TEST(SseTapTest, MultipleChoicesN2) {
  auto c = [](int index, const std::string& delta, const std::string& finish = "null") {
    return R"({"id":"chatcmpl-n2","object":"chat.completion.chunk","created":1,"model":"gpt-4o",)"
           R"("choices":[{"index":)" +
           std::to_string(index) + R"(,"delta":)" + delta + R"(,"finish_reason":)" + finish + "}]}";
  };
  const std::string stream = events({
      c(0, R"({"role":"assistant","content":""})"),
      c(1, R"({"role":"assistant","content":""})"),
      c(0, R"({"content":"Red"})"),
      c(1, R"({"content":"Blue"})"),
      c(1, R"({"content":" sky"})"),
      c(0, R"({"content":" rose"})"),
      c(1, "{}", "\"stop\""),
      c(0, R"({"content":" petals"})"),
      c(0, "{}", "\"length\""),
      R"({"id":"chatcmpl-n2","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],)"
      R"("usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}})",
      "[DONE]",
  });
  const json expected = json::parse(R"({
    "id": "chatcmpl-n2", "object": "chat.completion", "model": "gpt-4o",
    "choices": [
      {"index": 0, "message": {"role": "assistant", "content": "Red rose petals"}, "finish_reason": "length"},
      {"index": 1, "message": {"role": "assistant", "content": "Blue sky"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
  })");
  EXPECT_EQ(run_whole(stream), expected) << run_whole(stream).dump(2);

  SseTap tap;
  for (const char ch : stream) tap.feed(std::string_view(&ch, 1));
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected);
  EXPECT_EQ(tap.content(), "Red rose petals");  // content() is choice 0
}

TEST(SseTapTest, SeveralChoicesInOneChunk) {
  const std::string stream = events({
      R"({"id":"x","model":"m","choices":[{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"content":"A"}}]})",
  });
  const json j = run_whole(stream);
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "A");
  EXPECT_EQ(j["choices"][1]["message"]["content"], "B");
}

TEST(SseTapTest, HugeChoiceIndexDoesNotAllocate) {
  const std::string stream = events({
      R"({"id":"x","model":"m","choices":[{"index":4000000000,"delta":{"content":"A"}}]})",
      R"({"id":"x","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":4000000000,"id":"c"}]}}]})",
  });
  SseTap tap;
  tap.feed(stream);
  tap.finish();
  EXPECT_LE(tap.reassembled()["choices"].size(), 65u);
}

// --- legacy completions -----------------------------------------------------------

TEST(SseTapTest, LegacyTextCompletionStream) {
  auto c = [](const std::string& text, const std::string& finish = "null") {
    return R"({"id":"cmpl-9aB","object":"text_completion","created":1718000000,"choices":[{"text":)" + text +
           R"(,"index":0,"logprobs":null,"finish_reason":)" + finish + R"(}],"model":"gpt-3.5-turbo-instruct"})";
  };
  const std::string stream = events({
      c("\"Once\""),
      c("\" upon\""),
      c("\" a time\""),
      c("\"\"", "\"length\""),
      R"({"id":"cmpl-9aB","object":"text_completion","created":1718000000,"choices":[],"model":"gpt-3.5-turbo-instruct",)"
      R"("usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}})",
      "[DONE]",
  });
  const json expected = json::parse(R"({
    "id": "cmpl-9aB", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
    "choices": [{"index": 0, "text": "Once upon a time", "finish_reason": "length"}],
    "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
  })");
  SseTap tap;
  tap.feed(stream);
  tap.finish();
  EXPECT_EQ(tap.reassembled(), expected) << tap.reassembled().dump(2);
  EXPECT_EQ(tap.content(), "Once upon a time");
  EXPECT_TRUE(tap.has_first_token());
  EXPECT_TRUE(tap.saw_done());
}

TEST(SseTapTest, LegacyEmptyTextIsNotAFirstToken) {
  SseTap tap;
  tap.feed(events({R"({"id":"cmpl-1","object":"text_completion","choices":[{"text":"","index":0}]})"}));
  EXPECT_FALSE(tap.has_first_token());
  tap.feed(events({R"({"id":"cmpl-1","object":"text_completion","choices":[{"text":"x","index":0}]})"}));
  EXPECT_TRUE(tap.has_first_token());
}

// --- Responses API ---------------------------------------------------------------

const std::string kResponsesStream =
    "event: response.created\n"
    R"(data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67ccd2bed1ec8190","object":"response","created_at":1741476542,"status":"in_progress","model":"gpt-4.1-2025-04-14","output":[],"usage":null}})"
    "\n\n"
    "event: response.in_progress\n"
    R"(data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_67ccd2bed1ec8190","object":"response","status":"in_progress","model":"gpt-4.1-2025-04-14","output":[],"usage":null}})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67ccd2bf17f0","type":"message","status":"in_progress","role":"assistant","content":[]}})"
    "\n\n"
    "event: response.content_part.added\n"
    R"(data: {"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67ccd2bf17f0","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}})"
    "\n\n"
    "event: response.output_text.delta\n"
    R"(data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67ccd2bf17f0","output_index":0,"content_index":0,"delta":"Hi"})"
    "\n\n"
    "event: response.output_text.delta\n"
    R"(data: {"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_67ccd2bf17f0","output_index":0,"content_index":0,"delta":" there, caf\u00e9!"})"
    "\n\n"
    "event: response.output_text.done\n"
    R"(data: {"type":"response.output_text.done","sequence_number":6,"item_id":"msg_67ccd2bf17f0","output_index":0,"content_index":0,"text":"Hi there, caf\u00e9!"})"
    "\n\n"
    "event: response.output_item.done\n"
    R"(data: {"type":"response.output_item.done","sequence_number":7,"output_index":0,"item":{"id":"msg_67ccd2bf17f0","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there, caf\u00e9!","annotations":[]}]}})"
    "\n\n"
    "event: response.completed\n"
    R"(data: {"type":"response.completed","sequence_number":8,"response":{"id":"resp_67ccd2bed1ec8190","object":"response","created_at":1741476542,"status":"completed","model":"gpt-4.1-2025-04-14","output":[{"id":"msg_67ccd2bf17f0","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there, caf\u00e9!","annotations":[]}]}],"usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}}})"
    "\n\n";

const char* const kResponsesUsage =
    R"({"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,)"
    R"("output_tokens_details":{"reasoning_tokens":0},"total_tokens":48})";

TEST(SseTapTest, ResponsesApiStream) {
  SseTap tap;
  tap.feed(kResponsesStream);
  tap.finish();
  EXPECT_EQ(tap.content(), "Hi there, caf\xc3\xa9!");
  ASSERT_TRUE(tap.usage().has_value());
  EXPECT_EQ(*tap.usage(), json::parse(kResponsesUsage));
  EXPECT_EQ(tap.model(), "gpt-4.1-2025-04-14");
  EXPECT_TRUE(tap.has_first_token());
  EXPECT_EQ(tap.events(), 9u);
  EXPECT_FALSE(tap.saw_done());  // the Responses API sends no [DONE]
  const json j = tap.reassembled();
  EXPECT_EQ(j["model"], "gpt-4.1-2025-04-14");
  EXPECT_EQ(j["usage"], json::parse(kResponsesUsage));
  EXPECT_EQ(j["choices"], json::parse(R"([{"index":0,"message":{"role":"assistant","content":"Hi there, café!"},"finish_reason":null}])"));
}

TEST(SseTapTest, ResponsesApiStreamSplitAtEveryPosition) {
  const json expected = run_whole(kResponsesStream);
  ASSERT_EQ(expected["choices"][0]["message"]["content"], "Hi there, caf\xc3\xa9!");
  const std::string_view s = kResponsesStream;
  for (std::size_t cut = 0; cut <= s.size(); ++cut) {
    SseTap tap;
    tap.feed(s.substr(0, cut));
    tap.feed(s.substr(cut));
    tap.finish();
    ASSERT_EQ(tap.reassembled(), expected) << "cut at " << cut;
  }
}

TEST(SseTapTest, ResponsesApiFirstTokenIsTheFirstTextDelta) {
  SseTap tap;
  const std::size_t first_delta = kResponsesStream.find("event: response.output_text.delta");
  tap.feed(std::string_view(kResponsesStream).substr(0, first_delta));
  EXPECT_FALSE(tap.has_first_token());
  EXPECT_EQ(tap.events(), 4u);
  tap.feed(std::string_view(kResponsesStream).substr(first_delta));
  EXPECT_TRUE(tap.has_first_token());
}

TEST(SseTapTest, ResponsesApiStreamKeepsTheResponseId) {
  // reassembled() documents an id; for a Responses stream it is the response's id.
  EXPECT_EQ(run_whole(kResponsesStream)["id"], "resp_67ccd2bed1ec8190");
}

// --- limits ------------------------------------------------------------------------

std::string content_event(const std::string& content) {
  return "data: " + chunk(json{{"content", content}}.dump()) + "\n\n";
}

TEST(SseTapTest, OverlongLineSetsOverflowedAndTapKeepsWorking) {
  const std::string huge = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" +
                           std::string(SseTap::kMaxLine + 10, 'x') + "\"}}]}\n\n";
  const std::string stream = content_event("before ") + huge + content_event("after") +
                             "data: " + chunk("{}", "\"stop\"") + "\n\n" + "data: [DONE]\n\n";
  const std::string_view s = stream;

  auto check = [](const SseTap& tap, const char* how) {
    EXPECT_TRUE(tap.overflowed()) << how;
    EXPECT_EQ(tap.content(), "before after") << how;
    EXPECT_EQ(tap.reassembled()["choices"][0]["finish_reason"], "stop") << how;
    EXPECT_TRUE(tap.saw_done()) << how;
    EXPECT_EQ(tap.events(), 4u) << how;
  };
  {
    SseTap tap;
    tap.feed(s);
    tap.finish();
    check(tap, "whole");
  }
  {
    SseTap tap;
    for (std::size_t at = 0; at < s.size(); at += 4096) tap.feed(s.substr(at, 4096));
    tap.finish();
    check(tap, "4096-byte pieces");
  }
  {
    SseTap tap;
    for (std::size_t at = 0; at < s.size(); at += 65537) tap.feed(s.substr(at, 65537));
    tap.finish();
    check(tap, "65537-byte pieces");
  }
  {
    SseTap tap;
    for (std::size_t at = 0; at < s.size(); ++at) tap.feed(s.substr(at, 1));
    tap.finish();
    check(tap, "byte by byte");
  }
}

TEST(SseTapTest, OverlongLineAtEndIsDroppedByFinish) {
  SseTap tap;
  tap.feed(content_event("ok"));
  tap.feed("data: " + std::string(SseTap::kMaxLine + 1, 'y'));
  tap.finish();
  EXPECT_TRUE(tap.overflowed());
  EXPECT_EQ(tap.content(), "ok");
  EXPECT_EQ(tap.events(), 1u);
}

TEST(SseTapTest, LineOfExactlyMaxLineIsKept) {
  // "data: " + JSON = kMaxLine bytes, newline excluded.
  const std::string prefix = R"(data: {"choices":[{"index":0,"delta":{"content":")";
  const std::string suffix = R"("}}]})";
  const std::string content(SseTap::kMaxLine - prefix.size() - suffix.size(), 'z');
  const std::string line = prefix + content + suffix;
  ASSERT_EQ(line.size(), SseTap::kMaxLine);
  const std::string stream = line + "\n\n";
  {
    SseTap tap;
    tap.feed(stream);
    tap.finish();
    EXPECT_FALSE(tap.overflowed());
    EXPECT_EQ(tap.content().size(), content.size());
  }
  {
    SseTap tap;
    for (std::size_t at = 0; at < stream.size(); at += 4096) tap.feed(std::string_view(stream).substr(at, 4096));
    tap.finish();
    EXPECT_FALSE(tap.overflowed());
    EXPECT_EQ(tap.content().size(), content.size());
  }
}

TEST(SseTapTest, LineJustOverMaxLineIsHandledTheSameHoweverItIsChunked) {
  // A line of kMaxLine + 1 bytes: whether it is kept or dropped, the result must
  // not depend on how the network happened to split it.
  const std::string prefix = R"(data: {"choices":[{"index":0,"delta":{"content":")";
  const std::string suffix = R"("}}]})";
  const std::string content(SseTap::kMaxLine + 1 - prefix.size() - suffix.size(), 'z');
  const std::string stream = prefix + content + suffix + "\n\n";
  ASSERT_EQ(stream.size(), SseTap::kMaxLine + 3);

  SseTap whole;
  whole.feed(stream);
  whole.finish();

  SseTap bytes;
  for (const char c : stream) bytes.feed(std::string_view(&c, 1));
  bytes.finish();

  EXPECT_EQ(whole.overflowed(), bytes.overflowed());
  EXPECT_EQ(whole.content().size(), bytes.content().size());
  EXPECT_EQ(whole.events(), bytes.events());
}

TEST(SseTapTest, OverlongMultiLineEventOverflows) {
  // Many short data: lines adding up to more than kMaxLine in one event.
  std::string stream;
  const std::string line = "data: " + std::string(1000, 'q') + "\n";
  for (std::size_t total = 0; total <= SseTap::kMaxLine; total += 1001) stream += line;
  stream += "\n";
  stream += content_event("after");
  SseTap tap;
  tap.feed(stream);
  tap.finish();
  EXPECT_TRUE(tap.overflowed());
  EXPECT_EQ(tap.content(), "after");
}

}  // namespace
}  // namespace arbiter::gateway

namespace arbiter::gateway {
namespace {

// Found while writing the sse_tee fuzz target: an event nested half a million
// levels deep (within kMaxLine) had its `usage` kept, and the proxy's
// reassembled().dump() recursed through every level: a stack overflow on an
// I/O thread, from a hostile upstream. Such events are now ignored.
TEST(SseTapTest, EventsNestedTooDeepAreIgnored) {
  const std::size_t depth = 300'000;
  const std::string deep_usage = R"({"choices":[],"usage":{"prompt_tokens":)" + std::string(depth, '[') + "1" +
                                 std::string(depth, ']') + "}}";
  ASSERT_LT(deep_usage.size(), SseTap::kMaxLine);
  SseTap tap;
  tap.feed(events({chunk(R"({"content":"ok"})"), deep_usage, kUsageChunk, "[DONE]"}));
  tap.finish();
  EXPECT_EQ(tap.events(), 4u);
  EXPECT_EQ(tap.content(), "ok");
  ASSERT_TRUE(tap.usage());
  EXPECT_EQ((*tap.usage())["total_tokens"], 18);
  EXPECT_FALSE(tap.reassembled().dump().empty());
}

}  // namespace
}  // namespace arbiter::gateway
