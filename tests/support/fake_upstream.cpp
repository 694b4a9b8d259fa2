#include "tests/support/fake_upstream.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace arbiter::testing {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr std::size_t kPrefixLimit = 64 * 1024;
constexpr std::uint64_t kBodyLimit = 64ULL * 1024 * 1024;
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
constexpr std::size_t kScratchSize = 64 * 1024;
// Bytes a peer may pipeline while we wait; beyond this we stop watching the socket.
constexpr std::size_t kMaxPipelined = 1024 * 1024;
constexpr std::size_t kDefaultChunks = 5;
constexpr std::size_t kDefaultEmbeddingDim = 8;
constexpr std::string_view kDefaultContent = "Hello from the fake upstream.";
constexpr std::string_view kDefaultModel = "fake-model";

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool contains_ci(std::string_view haystack, std::string_view needle) {
  return to_lower(haystack).find(to_lower(needle)) != std::string::npos;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<long> header_int(const http::fields& fields, std::string_view name) {
  const std::string_view v = trim(fields[name]);
  if (v.empty()) return std::nullopt;
  long out = 0;
  const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc{} || ptr != v.data() + v.size()) return std::nullopt;
  return out;
}

bool header_true(const http::fields& fields, std::string_view name) {
  const std::string_view v = trim(fields[name]);
  return v == "1" || beast::iequals(v, "true") || beast::iequals(v, "yes");
}

std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 14695981039346656037ULL;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

const EVP_MD* sha256_md() {
  // Fetched once: an implicit fetch per request costs a provider lookup on OpenSSL 3.
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || sha256_md() == nullptr || EVP_DigestInit_ex(ctx_.get(), sha256_md(), nullptr) != 1)
      throw std::runtime_error("fake upstream: cannot initialise SHA-256");
  }
  void update(const void* data, std::size_t n) { EVP_DigestUpdate(ctx_.get(), data, n); }
  std::string hex_digest() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), md.data(), &len);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (unsigned int i = 0; i < len; ++i) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 0xF]);
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

std::string base64(const void* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      static_cast<const unsigned char*>(data), static_cast<int>(n));
  out.resize(static_cast<std::size_t>(std::max(written, 0)));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Request body scan. A SAX pass over the (possibly truncated) 64 KiB prefix: a body larger than the
// prefix is not valid JSON on its own, but the fields that precede the cut are still found.

struct BodyFields {
  std::string model;
  bool stream = false;
  bool include_usage = false;
  std::string encoding_format;
  std::vector<std::string> inputs;  // `input` (embeddings, moderations) or `prompt` (completions)
  std::size_t prompt_chars = 0;     // text in messages / prompt / input, for token estimates
  std::string message_text;         // every messages[].content text, concatenated
};

class BodyScanner final : public nlohmann::json_sax<Json> {
 public:
  explicit BodyScanner(BodyFields& out) : out_(out) {}

  bool null() override { return true; }
  bool boolean(bool val) override {
    if (depth_ == 1 && top_key_ == "stream") out_.stream = val;
    if (depth_ == 2 && top_key_ == "stream_options" && last_key_ == "include_usage")
      out_.include_usage = val;
    return true;
  }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t& val) override {
    const bool input_key = top_key_ == "input" || top_key_ == "prompt";
    if (depth_ == 1) {
      if (top_key_ == "model") out_.model = val;
      if (top_key_ == "encoding_format") out_.encoding_format = val;
      if (input_key) {
        out_.prompt_chars += val.size();
        out_.inputs.push_back(val);
      }
    } else if (depth_ == 2 && input_key && in_input_array_) {
      out_.prompt_chars += val.size();
      out_.inputs.push_back(val);
    } else if (top_key_ == "messages" && (last_key_ == "content" || last_key_ == "text")) {
      out_.prompt_chars += val.size();
      out_.message_text += val;
    }
    return true;
  }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    ++depth_;
    return true;
  }
  bool key(string_t& val) override {
    if (depth_ == 1) top_key_ = val;
    last_key_ = val;
    return true;
  }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    ++depth_;
    if (depth_ == 2 && (top_key_ == "input" || top_key_ == "prompt")) in_input_array_ = true;
    return true;
  }
  bool end_array() override {
    if (depth_ == 2) in_input_array_ = false;
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;  // truncated or not JSON: keep what was found so far
  }

 private:
  BodyFields& out_;
  int depth_ = 0;
  bool in_input_array_ = false;
  std::string top_key_, last_key_;
};

// What the session keeps of a request body.
struct BodySummary {
  std::string prefix;  // the first kPrefixLimit bytes
  std::string tail;    // the last kPrefixLimit bytes (at most), when the body is longer than that
  std::size_t size = 0;
  std::string sha256_hex;  // empty when not computed
};

// The value of the last `"key": "..."` in text (a cheap scan, not a parse), unescaped only for \"
// and \\ — enough for model names.
std::optional<std::string> last_string_field(std::string_view text, std::string_view key) {
  const std::string quoted = "\"" + std::string(key) + "\"";
  for (std::size_t pos = text.rfind(quoted); pos != std::string_view::npos;
       pos = pos == 0 ? std::string_view::npos : text.rfind(quoted, pos - 1)) {
    std::size_t i = pos + quoted.size();
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) != 0) ++i;
    if (i >= text.size() || text[i] != ':') continue;
    ++i;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) != 0) ++i;
    if (i >= text.size() || text[i] != '"') continue;
    std::string value;
    for (++i; i < text.size() && text[i] != '"'; ++i) {
      if (text[i] == '\\' && i + 1 < text.size()) ++i;
      value.push_back(text[i]);
    }
    if (i < text.size()) return value;
  }
  return std::nullopt;
}

bool last_true_field(std::string_view text, std::string_view key) {
  const std::string quoted = "\"" + std::string(key) + "\"";
  const std::size_t pos = text.rfind(quoted);
  if (pos == std::string_view::npos) return false;
  std::size_t i = pos + quoted.size();
  while (i < text.size() &&
         (std::isspace(static_cast<unsigned char>(text[i])) != 0 || text[i] == ':'))
    ++i;
  return text.substr(i, 4) == "true";
}

BodyFields scan_body(const BodySummary& body) {
  BodyFields fields;
  BodyScanner scanner(fields);
  Json::sax_parse(std::string_view(body.prefix), &scanner);
  if (body.size > body.prefix.size()) {
    // The SAX pass stopped at the cut. Clients put `model` and `stream` anywhere (the openai SDKs
    // keep the caller's order, often after `messages`), so look for them near the end too.
    if (fields.model.empty()) fields.model = last_string_field(body.tail, "model").value_or("");
    fields.stream = fields.stream || last_true_field(body.tail, "stream");
    fields.include_usage = fields.include_usage || last_true_field(body.tail, "include_usage");
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------
// Response planning: a plain function of the request, so the session loop only does I/O.

struct ResponsePlan {
  enum class Action { respond, hang, close_immediately };
  Action action = Action::respond;
  std::chrono::milliseconds delay{0};
  http::response_header<> header;
  std::string body;                 // non-streaming responses
  bool sse = false;                 // stream `events` with chunked encoding
  std::vector<std::string> events;  // each a whole "data: ...\n\n"
  std::chrono::milliseconds event_interval{0};
  bool close_after_headers = false;  // header (with Content-Length), then drop the connection
  bool header_only = false;          // HEAD: Content-Length of the body, but no body
  bool keep_alive = true;
};

enum class Route { chat, completions, embeddings, models, moderations, evaluate, echo };

Route classify(http::verb method, std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  if (method == http::verb::post) {
    if (ends_with(path, "/chat/completions")) return Route::chat;
    if (ends_with(path, "/completions")) return Route::completions;
    if (ends_with(path, "/embeddings")) return Route::embeddings;
    if (ends_with(path, "/moderations")) return Route::moderations;
    if (ends_with(path, "/evaluate")) return Route::evaluate;
  } else if (method == http::verb::get && ends_with(path, "/models")) {
    return Route::models;
  }
  return Route::echo;
}

std::atomic<std::uint64_t> g_next_id{1};

std::string next_id(std::string_view prefix) {
  return std::string(prefix) + "-fake-" + std::to_string(g_next_id.fetch_add(1));
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Splits text into `pieces` non-empty pieces whose concatenation is the text exactly: on word
// boundaries (each piece at least one word, whitespace kept) while there are enough words, else
// inside words on UTF-8 character boundaries, so a test asking for N chunks gets N; capped at one
// piece per character.
std::vector<std::string> split_content(std::string_view text, std::size_t pieces) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  // Each unit is [offsets[k], offsets[k + 1]).
  std::vector<std::size_t> offsets{0};
  std::size_t i = 0;
  while (i < text.size() && is_space(text[i])) ++i;
  while (i < text.size()) {
    while (i < text.size() && !is_space(text[i])) ++i;
    while (i < text.size() && is_space(text[i])) ++i;
    offsets.push_back(i);
  }
  if (pieces > offsets.size() - 1) {
    offsets.assign({0});
    for (std::size_t b = 1; b <= text.size(); ++b) {
      // A UTF-8 character starts at every byte that is not a continuation byte.
      if (b == text.size() || (static_cast<unsigned char>(text[b]) & 0xC0) != 0x80)
        offsets.push_back(b);
    }
  }
  const std::size_t units = offsets.size() - 1;
  if (units == 0) return {std::string(text)};
  const std::size_t n = std::clamp<std::size_t>(pieces, 1, units);
  std::vector<std::string> out;
  out.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t from = offsets[k * units / n], to = offsets[(k + 1) * units / n];
    out.emplace_back(text.substr(from, to - from));
  }
  return out;
}

std::size_t count_words(std::string_view text) {
  std::size_t words = 0;
  bool in_word = false;
  for (const char c : text) {
    const bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

Json usage_json(std::size_t prompt_tokens, std::size_t completion_tokens) {
  return Json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}};
}

std::string sse_event(const Json& j) {
  return "data: " + j.dump() + "\n\n";
}

void set_json(ResponsePlan& plan, const Json& j) {
  plan.header.set(http::field::content_type, "application/json");
  plan.body = j.dump();
}

void plan_error(ResponsePlan& plan, unsigned status) {
  plan.header.result(status);
  const bool no_body = status == 204 || status == 304;
  if (!no_body) {
    set_json(plan, Json{{"error",
                         {{"message", "fake error " + std::to_string(status)},
                          {"type", "fake_error"},
                          {"param", nullptr},
                          {"code", status}}}});
  }
}

struct Generation {
  std::string id, model, content;
  std::int64_t created = 0;
  std::size_t prompt_tokens = 0, completion_tokens = 0;
  std::size_t chunks = kDefaultChunks;
  bool include_usage = false;
};

void plan_chat(ResponsePlan& plan, const Generation& g, bool stream) {
  if (!stream) {
    set_json(
        plan,
        Json{
            {"id", g.id},
            {"object", "chat.completion"},
            {"created", g.created},
            {"model", g.model},
            {"system_fingerprint", "fp_fake"},
            {"choices",
             Json::array({Json{
                 {"index", 0},
                 {"message", {{"role", "assistant"}, {"content", g.content}, {"refusal", nullptr}}},
                 {"logprobs", nullptr},
                 {"finish_reason", "stop"}}})},
            {"usage", usage_json(g.prompt_tokens, g.completion_tokens)}});
    return;
  }
  auto chunk = [&](Json delta, Json finish_reason) {
    Json j{{"id", g.id},
           {"object", "chat.completion.chunk"},
           {"created", g.created},
           {"model", g.model},
           {"system_fingerprint", "fp_fake"},
           {"choices", Json::array({Json{{"index", 0},
                                         {"delta", std::move(delta)},
                                         {"logprobs", nullptr},
                                         {"finish_reason", std::move(finish_reason)}}})}};
    // Like OpenAI: with include_usage every chunk but the last carries "usage": null.
    if (g.include_usage) j["usage"] = nullptr;
    return j;
  };
  const auto pieces = split_content(g.content, g.chunks);
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    Json delta{{"content", pieces[i]}};
    if (i == 0) delta["role"] = "assistant";
    plan.events.push_back(sse_event(chunk(std::move(delta), nullptr)));
  }
  plan.events.push_back(sse_event(chunk(Json::object(), "stop")));
  if (g.include_usage) {
    plan.events.push_back(
        sse_event(Json{{"id", g.id},
                       {"object", "chat.completion.chunk"},
                       {"created", g.created},
                       {"model", g.model},
                       {"system_fingerprint", "fp_fake"},
                       {"choices", Json::array()},
                       {"usage", usage_json(g.prompt_tokens, g.completion_tokens)}}));
  }
  plan.events.push_back("data: [DONE]\n\n");
}

void plan_completion(ResponsePlan& plan, const Generation& g, bool stream) {
  auto choice = [](std::string text, Json finish_reason) {
    return Json::array({Json{{"text", std::move(text)},
                             {"index", 0},
                             {"logprobs", nullptr},
                             {"finish_reason", std::move(finish_reason)}}});
  };
  auto base = [&](Json choices) {
    return Json{{"id", g.id},
                {"object", "text_completion"},
                {"created", g.created},
                {"model", g.model},
                {"choices", std::move(choices)}};
  };
  if (!stream) {
    Json j = base(choice(g.content, "stop"));
    j["usage"] = usage_json(g.prompt_tokens, g.completion_tokens);
    set_json(plan, j);
    return;
  }
  for (auto& piece : split_content(g.content, g.chunks))
    plan.events.push_back(sse_event(base(choice(std::move(piece), nullptr))));
  plan.events.push_back(sse_event(base(choice("", "stop"))));
  if (g.include_usage) {
    Json j = base(Json::array());
    j["usage"] = usage_json(g.prompt_tokens, g.completion_tokens);
    plan.events.push_back(sse_event(j));
  }
  plan.events.push_back("data: [DONE]\n\n");
}

void plan_embeddings(ResponsePlan& plan, const BodyFields& body, const http::fields& headers) {
  std::size_t dim = kDefaultEmbeddingDim;
  if (auto d = header_int(headers, "x-fake-embedding-dim"); d && *d > 0 && *d <= 65536)
    dim = static_cast<std::size_t>(*d);
  std::vector<std::string> inputs = body.inputs;
  if (inputs.empty()) inputs.emplace_back();
  // The openai SDKs ask for base64 by default and decode it themselves.
  const bool as_base64 = body.encoding_format == "base64";
  Json data = Json::array();
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<float> v = fake_embedding(inputs[i], dim);
    Json item{{"object", "embedding"}, {"index", i}};
    if (as_base64)
      item["embedding"] = base64(v.data(), v.size() * sizeof(float));
    else
      item["embedding"] = v;
    data.push_back(std::move(item));
  }
  const std::size_t tokens = std::max<std::size_t>(1, (body.prompt_chars + 3) / 4);
  set_json(plan, Json{{"object", "list"},
                      {"data", std::move(data)},
                      {"model", body.model.empty() ? "text-embedding-3-small" : body.model},
                      {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
}

void plan_moderations(ResponsePlan& plan, const BodyFields& body, const http::fields& headers,
                      const std::vector<std::string>& flag_words) {
  static constexpr std::array<std::string_view, 13> kCategories = {"harassment",
                                                                   "harassment/threatening",
                                                                   "hate",
                                                                   "hate/threatening",
                                                                   "illicit",
                                                                   "illicit/violent",
                                                                   "self-harm",
                                                                   "self-harm/instructions",
                                                                   "self-harm/intent",
                                                                   "sexual",
                                                                   "sexual/minors",
                                                                   "violence",
                                                                   "violence/graphic"};
  const bool forced = header_true(headers, "x-fake-flagged");
  std::vector<std::string> inputs = body.inputs;
  if (inputs.empty()) inputs.emplace_back();
  Json results = Json::array();
  for (const auto& input : inputs) {
    bool flagged = forced;
    for (const auto& word : flag_words) flagged = flagged || contains_ci(input, word);
    Json categories = Json::object(), scores = Json::object();
    for (const auto name : kCategories) {
      const bool hit = flagged && name == "violence";
      categories[std::string(name)] = hit;
      scores[std::string(name)] = hit ? 0.97 : 0.0001;
    }
    results.push_back(Json{{"flagged", flagged},
                           {"categories", std::move(categories)},
                           {"category_scores", std::move(scores)}});
  }
  set_json(plan, Json{{"id", next_id("modr")},
                      {"model", body.model.empty() ? "omni-moderation-latest" : body.model},
                      {"results", std::move(results)}});
}

void plan_models(ResponsePlan& plan) {
  set_json(plan, Json{{"object", "list"},
                      {"data", Json::array({Json{{"id", "gpt-4o-mini"},
                                                 {"object", "model"},
                                                 {"created", 1721172741},
                                                 {"owned_by", "system"}},
                                            Json{{"id", "text-embedding-3-small"},
                                                 {"object", "model"},
                                                 {"created", 1705948997},
                                                 {"owned_by", "system"}}})}});
}

void plan_echo(ResponsePlan& plan, const http::request_header<>& req, std::size_t body_size,
               std::string_view body_sha256_hex) {
  Json headers = Json::object();
  for (const auto& f : req) {
    auto& slot = headers[to_lower(f.name_string())];
    // A repeated header folds into one value, as HTTP allows for list-valued fields.
    if (slot.is_null())
      slot = std::string(f.value());
    else
      slot = slot.get<std::string>() + ", " + std::string(f.value());
  }
  set_json(plan, Json{{"method", std::string(req.method_string())},
                      {"target", std::string(req.target())},
                      {"headers", std::move(headers)},
                      {"body_size", body_size},
                      {"body_sha256", std::string(body_sha256_hex)}});
}

// The text between "<<judge-reply:" and the next ">>" in the messages, if any.
std::optional<std::string> judge_reply(std::string_view text) {
  static constexpr std::string_view kOpen = "<<judge-reply:";
  const auto start = text.find(kOpen);
  if (start == std::string_view::npos) return std::nullopt;
  const auto end = text.find(">>", start + kOpen.size());
  if (end == std::string_view::npos) return std::nullopt;
  return std::string(text.substr(start + kOpen.size(), end - start - kOpen.size()));
}

// An `http` evaluator: scores computed from the posted event.
void plan_evaluate(ResponsePlan& plan, const BodySummary& body) {
  const Json event = Json::parse(body.prefix, nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded() || !event.is_object()) {
    plan.header.result(http::status::bad_request);
    set_json(plan, Json{{"error", "fake evaluate: the body is not a JSON object"}});
    return;
  }
  std::string content;
  if (auto o = event.find("outputs"); o != event.end() && o->is_object()) {
    if (auto c = o->find("content"); c != o->end() && c->is_string()) content = c->get<std::string>();
  }
  bool has_truth = false;
  if (auto f = event.find("feedback"); f != event.end() && f->is_object()) has_truth = f->contains("ground_truth");
  set_json(plan, Json{{"scores",
                       Json::array({Json{{"name", "content_bytes"},
                                         {"value", content.size()},
                                         {"comment", "bytes in outputs.content"}},
                                    Json{{"name", "has_ground_truth"}, {"value", has_truth}}})}});
}

ResponsePlan make_plan(const http::request<http::buffer_body>& req, Route route,
                       const BodySummary& body, const FakeUpstreamOptions& opts) {
  ResponsePlan plan;
  plan.header.version(req.version());
  plan.header.result(http::status::ok);
  plan.header.set(http::field::server, "arbiter-fake-upstream");

  if (header_true(req, "x-fake-hang")) {
    plan.action = ResponsePlan::Action::hang;
    return plan;
  }
  if (auto d = header_int(req, "x-fake-delay-ms"); d && *d > 0)
    plan.delay = std::chrono::milliseconds(*d);
  const std::string_view close_mode = trim(req["x-fake-close"]);
  if (beast::iequals(close_mode, "immediately")) {
    plan.action = ResponsePlan::Action::close_immediately;
    return plan;
  }
  plan.close_after_headers = beast::iequals(close_mode, "after-headers");
  plan.header_only = req.method() == http::verb::head;
  if (const std::string_view retry_after = trim(req["x-fake-retry-after"]); !retry_after.empty())
    plan.header.set(http::field::retry_after, retry_after);

  if (auto status = header_int(req, "x-fake-status"); status && *status >= 200 && *status <= 599) {
    plan_error(plan, static_cast<unsigned>(*status));
  } else if (route == Route::chat || route == Route::completions) {
    const BodyFields fields = scan_body(body);
    Generation g;
    g.id = next_id(route == Route::chat ? "chatcmpl" : "cmpl");
    g.model = fields.model.empty() ? std::string(kDefaultModel) : fields.model;
    g.created = unix_now();
    const std::string_view content = req["x-fake-content"];
    g.content = content.empty() ? std::string(kDefaultContent) : std::string(content);
    if (route == Route::chat) {
      if (auto reply = judge_reply(fields.message_text)) g.content = std::move(*reply);
    }
    g.prompt_tokens = std::max<std::size_t>(1, (fields.prompt_chars + 3) / 4);
    g.completion_tokens = count_words(g.content);
    if (auto n = header_int(req, "x-fake-chunks"); n && *n > 0)
      g.chunks = static_cast<std::size_t>(*n);
    g.include_usage = fields.include_usage;
    if (route == Route::chat)
      plan_chat(plan, g, fields.stream);
    else
      plan_completion(plan, g, fields.stream);
    if (fields.stream) {
      plan.sse = true;
      plan.header.set(http::field::content_type, "text/event-stream; charset=utf-8");
      plan.header.set(http::field::cache_control, "no-cache");
      if (auto ms = header_int(req, "x-fake-chunk-interval-ms"); ms && *ms > 0)
        plan.event_interval = std::chrono::milliseconds(*ms);
    }
  } else if (route == Route::embeddings) {
    plan_embeddings(plan, scan_body(body), req);
  } else if (route == Route::moderations) {
    plan_moderations(plan, scan_body(body), req, opts.moderation_words);
  } else if (route == Route::evaluate) {
    plan_evaluate(plan, body);
  } else if (route == Route::models) {
    plan_models(plan);
  } else {
    plan_echo(plan, req, body.size, body.sha256_hex);
  }
  plan.keep_alive = req.keep_alive();
  return plan;
}

// Errors that mean the peer went away (or we closed the socket while stopping).
bool is_peer_gone(const boost::system::error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
         ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor ||
         ec == asio::error::not_connected || ec == http::error::end_of_stream ||
         ec == http::error::partial_message || ec == ssl::error::stream_truncated;
}

tcp::socket& lowest_socket(tcp::socket& s) {
  return s;
}
tcp::socket& lowest_socket(ssl::stream<tcp::socket>& s) {
  return s.next_layer();
}

void close_socket(tcp::socket& s) {
  boost::system::error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::optional<std::string> SeenRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers)
    if (name == lower_name) return value;
  return std::nullopt;
}

struct FakeUpstream::Impl {
  explicit Impl(FakeUpstreamOptions o) : opts_(std::move(o)) {}

  FakeUpstreamOptions opts_;
  std::optional<ssl::context> ssl_ctx_;  // outlives every TLS stream: destroyed after ioc_
  std::unique_ptr<asio::io_context> ioc_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;

  mutable std::mutex mu_;
  std::vector<SeenRequest> seen_;  // guarded by mu_
  struct Live {
    std::weak_ptr<tcp::socket> socket;
    asio::any_io_executor executor;
  };
  std::unordered_map<std::uint64_t, Live> live_;  // guarded by mu_; for shutdown
  bool stopping_ = false;                         // guarded by mu_
  std::uint64_t next_session_ = 0;                // guarded by mu_

  std::atomic<std::size_t> request_count_{0}, accepted_{0}, aborted_{0}, open_{0};

  void start();
  void stop();

  // Registers a session's socket so that stop() can close it; false if already stopping_.
  bool enroll(std::uint64_t& id, std::shared_ptr<tcp::socket> socket) {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    id = ++next_session_;
    live_.emplace(id, Live{socket, socket->get_executor()});
    return true;
  }

  // Ends a session's accounting whichever way its coroutine exits.
  struct SessionGuard {
    Impl& impl;
    std::uint64_t id = 0;
    ~SessionGuard() {
      if (id != 0) {
        std::lock_guard lock(impl.mu_);
        impl.live_.erase(id);
      }
      impl.open_.fetch_sub(1);
    }
  };

  void record(const http::request_header<>& req, std::string prefix, std::size_t body_size,
              std::string sha256_hex, bool chunked) {
    if (!opts_.record_requests) {
      request_count_.fetch_add(1);
      return;
    }
    SeenRequest seen_request;
    seen_request.method = std::string(req.method_string());
    seen_request.target = std::string(req.target());
    for (const auto& f : req)
      seen_request.headers.emplace_back(to_lower(f.name_string()), std::string(f.value()));
    seen_request.body_size = body_size;
    seen_request.body_sha256_hex = std::move(sha256_hex);
    seen_request.body_prefix = std::move(prefix);
    seen_request.body_was_chunked = chunked;
    // Counted under the lock so that reset_stats() never leaves the count and the list disagreeing.
    std::lock_guard lock(mu_);
    seen_.push_back(std::move(seen_request));
    request_count_.fetch_add(1);
  }

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(tcp::socket socket);
  template <class Stream>
  asio::awaitable<void> serve(Stream& stream);
  template <class Stream>
  asio::awaitable<bool> execute(Stream& stream, beast::flat_buffer& buffer, ResponsePlan plan);
  template <class Stream>
  asio::awaitable<void> reject_too_large(Stream& stream);
  template <class Stream>
  asio::awaitable<bool> wait_watching_peer(Stream& stream, beast::flat_buffer& buffer,
                                           std::optional<std::chrono::milliseconds> duration);
};

void FakeUpstream::Impl::start() {
  if (opts_.tls) {
    ssl_ctx_.emplace(ssl::context::tls_server);
    ssl_ctx_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1);
    ssl_ctx_->use_certificate_chain(asio::buffer(opts_.cert_pem));
    ssl_ctx_->use_private_key(asio::buffer(opts_.key_pem), ssl::context::pem);
  }
  const unsigned n_threads =
      opts_.threads != 0 ? opts_.threads : std::max(1U, std::thread::hardware_concurrency());
  ioc_ = std::make_unique<asio::io_context>(static_cast<int>(n_threads));
  // The acceptor lives on a strand so stop() can close it from another thread safely.
  acceptor_ = std::make_unique<tcp::acceptor>(asio::make_strand(*ioc_));
  const tcp::endpoint endpoint(asio::ip::make_address(opts_.host), opts_.port);
  acceptor_->open(endpoint.protocol());
  acceptor_->set_option(asio::socket_base::reuse_address(true));
  acceptor_->bind(endpoint);
  acceptor_->listen(asio::socket_base::max_listen_connections);
  port_ = acceptor_->local_endpoint().port();

  asio::co_spawn(acceptor_->get_executor(), accept_loop(), [](std::exception_ptr) {});
  threads_.reserve(n_threads);
  for (unsigned i = 0; i < n_threads; ++i) threads_.emplace_back([this] { ioc_->run(); });
}

void FakeUpstream::Impl::stop() {
  if (!ioc_) return;
  std::vector<Live> to_close;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [id, l] : live_) to_close.push_back(l);
  }
  if (acceptor_) {
    asio::post(acceptor_->get_executor(), [this] {
      boost::system::error_code ignored;
      acceptor_->close(ignored);
    });
  }
  // Each socket is closed on its own strand; every pending operation of a session involves its
  // socket (hangs, delays and pacing keep a read pending), so each coroutine ends promptly.
  for (auto& l : to_close) {
    asio::post(l.executor, [w = l.socket] {
      if (auto s = w.lock()) close_socket(*s);
    });
  }
  to_close.clear();  // its executors (strands) must not outlive the io_context below
  wait_until([this] { return open_.load() == 0; }, 5s);
  ioc_->stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  acceptor_.reset();
  // Destroys whatever handlers are left (none, normally) while the rest of Impl is still alive.
  ioc_.reset();
}

asio::awaitable<void> FakeUpstream::Impl::accept_loop() {
  for (;;) {
    asio::any_io_executor session_executor = asio::make_strand(*ioc_);
    auto [ec, socket] = co_await acceptor_->async_accept(session_executor, kNoThrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
      // EMFILE and friends: back off instead of spinning, then try again.
      asio::steady_timer backoff(co_await asio::this_coro::executor, 10ms);
      co_await backoff.async_wait(kNoThrow);
      continue;
    }
    accepted_.fetch_add(1);
    open_.fetch_add(1);
    asio::co_spawn(session_executor, session(std::move(socket)), [](std::exception_ptr) {});
  }
}

asio::awaitable<void> FakeUpstream::Impl::session(tcp::socket socket) {
  SessionGuard guard{*this};
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  if (ssl_ctx_) {
    auto stream = std::make_shared<ssl::stream<tcp::socket>>(std::move(socket), *ssl_ctx_);
    if (!enroll(guard.id, std::shared_ptr<tcp::socket>(stream, &stream->next_layer()))) co_return;
    auto [ec] = co_await stream->async_handshake(ssl::stream_base::server, kNoThrow);
    if (ec) co_return;
    co_await serve(*stream);
  } else {
    auto stream = std::make_shared<tcp::socket>(std::move(socket));
    if (!enroll(guard.id, stream)) co_return;
    co_await serve(*stream);
  }
}

template <class Stream>
asio::awaitable<void> FakeUpstream::Impl::serve(Stream& stream) {
  beast::flat_buffer buffer;
  std::unique_ptr<char[]> scratch;  // only for bodies beyond the kept prefix
  for (unsigned served = 0;; ++served) {
    http::request_parser<http::buffer_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kBodyLimit);
    {
      auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kNoThrow);
      // Beast checks a Content-Length against the limit while parsing the header.
      if (ec == http::error::body_limit) co_await reject_too_large(stream);
      if (ec) co_return;  // idle close between requests, or garbage: no response in progress
    }
    const http::request<http::buffer_body>& req = parser.get();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, req.version()};
      auto [ec, n] = co_await http::async_write(stream, cont, kNoThrow);
      if (ec) {
        aborted_.fetch_add(1);
        co_return;
      }
    }

    const Route route = classify(req.method(), req.target());
    std::optional<Sha256> sha;
    if (opts_.record_requests || route == Route::echo) sha.emplace();
    const auto content_length = parser.content_length();
    BodySummary body;
    std::string& prefix = body.prefix;
    std::size_t& body_size = body.size;
    while (!parser.is_done()) {
      char* dest = nullptr;
      std::size_t space = 0;
      const std::size_t kept = prefix.size();
      const bool into_prefix = kept < kPrefixLimit;
      if (into_prefix) {
        // Read straight into the kept prefix; sized by Content-Length when known.
        space = kPrefixLimit - kept;
        if (content_length && *content_length > body_size)
          space =
              static_cast<std::size_t>(std::min<std::uint64_t>(space, *content_length - body_size));
        prefix.resize(kept + space);
        dest = prefix.data() + kept;
      } else {
        if (!scratch) scratch = std::make_unique<char[]>(kScratchSize);
        dest = scratch.get();
        space = kScratchSize;
      }
      parser.get().body().data = dest;
      parser.get().body().size = space;
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
      const std::size_t got = space - parser.get().body().size;
      if (into_prefix) {
        prefix.resize(kept + got);
      } else {
        // Keep the last 64 KiB (trimmed in bulk, so the copying stays linear).
        body.tail.append(dest, got);
        if (body.tail.size() > 2 * kPrefixLimit)
          body.tail.erase(0, body.tail.size() - kPrefixLimit);
      }
      if (sha) sha->update(dest, got);
      body_size += got;
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::body_limit) {  // a chunked body that grew past the limit
        co_await reject_too_large(stream);
        co_return;
      }
      if (ec) {
        if (is_peer_gone(ec)) aborted_.fetch_add(1);
        co_return;
      }
    }

    if (sha) body.sha256_hex = sha->hex_digest();
    if (body.tail.size() > kPrefixLimit) body.tail.erase(0, body.tail.size() - kPrefixLimit);
    ResponsePlan plan = make_plan(req, route, body, opts_);
    // A keep-alive connection that the server dropped while the client was reusing it.
    if (served > 0 && beast::iequals(trim(req["x-fake-close"]), "if-reused"))
      plan.action = ResponsePlan::Action::close_immediately;
    const bool keep_alive = req.keep_alive();
    // Recorded before the response is written, so a client that has its answer sees its request.
    record(req, std::move(body.prefix), body.size, std::move(body.sha256_hex), parser.chunked());
    if (!co_await execute(stream, buffer, std::move(plan))) co_return;
    if (!keep_alive) {
      boost::system::error_code ignored;
      lowest_socket(stream).shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

// 413, then the connection is dropped: the rest of the body is not worth reading.
template <class Stream>
asio::awaitable<void> FakeUpstream::Impl::reject_too_large(Stream& stream) {
  http::response<http::string_body> res{http::status::payload_too_large, 11};
  res.set(http::field::server, "arbiter-fake-upstream");
  res.set(http::field::content_type, "application/json");
  res.body() = R"({"error":{"message":"fake upstream: body over 64 MiB",)"
               R"("type":"fake_error","code":413}})";
  res.keep_alive(false);
  res.prepare_payload();
  co_await http::async_write(stream, res, kNoThrow);
  close_socket(lowest_socket(stream));
}

// Waits for `duration` (forever when empty) while keeping a read pending, so that a peer that
// goes away is noticed at once. Returns true if the wait ran out, false if the peer went away.
template <class Stream>
asio::awaitable<bool> FakeUpstream::Impl::wait_watching_peer(
    Stream& stream, beast::flat_buffer& buffer, std::optional<std::chrono::milliseconds> duration) {
  if (!duration) {
    for (;;) {
      // Anything the peer sends while we hang is read and dropped.
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), kNoThrow);
      if (ec) co_return false;
      buffer.consume(buffer.size());
    }
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, *duration);
  for (;;) {
    if (buffer.size() >= kMaxPipelined) {
      auto [ec] = co_await timer.async_wait(kNoThrow);
      co_return !ec;
    }
    auto [order, timer_ec, read_ec, n] =
        co_await asio::experimental::make_parallel_group(
            timer.async_wait(asio::deferred),
            stream.async_read_some(buffer.prepare(4096), asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    // Bytes of a pipelined next request are kept for the parser, even when the timer won the race
    // but the read had already completed.
    if (!read_ec) buffer.commit(n);
    if (order[0] == 0) co_return !timer_ec;
    if (read_ec) co_return false;
  }
}

// Writes the planned response. Returns true if the connection may carry another request.
template <class Stream>
asio::awaitable<bool> FakeUpstream::Impl::execute(Stream& stream, beast::flat_buffer& buffer,
                                                  ResponsePlan plan) {
  using Action = ResponsePlan::Action;
  if (plan.action == Action::hang) {
    co_await wait_watching_peer(stream, buffer, std::nullopt);
    aborted_.fetch_add(1);
    co_return false;
  }
  if (plan.delay.count() > 0 && !co_await wait_watching_peer(stream, buffer, plan.delay)) {
    aborted_.fetch_add(1);
    co_return false;
  }
  if (plan.action == Action::close_immediately) {
    close_socket(lowest_socket(stream));
    co_return false;
  }

  if (!plan.sse) {
    http::response<http::string_body> res{std::move(plan.header), std::move(plan.body)};
    res.keep_alive(plan.keep_alive);
    res.prepare_payload();
    if (plan.close_after_headers || plan.header_only) {
      http::response_serializer<http::string_body> sr{res};
      auto [ec, n] = co_await http::async_write_header(stream, sr, kNoThrow);
      if (ec) {
        aborted_.fetch_add(1);
        co_return false;
      }
      if (plan.close_after_headers) {
        close_socket(lowest_socket(stream));
        co_return false;
      }
      co_return true;
    }
    auto [ec, n] = co_await http::async_write(stream, res, kNoThrow);
    if (ec) {
      aborted_.fetch_add(1);
      co_return false;
    }
    co_return true;
  }

  http::response<http::empty_body> res{std::move(plan.header)};
  res.keep_alive(plan.keep_alive);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  {
    auto [ec, n] = co_await http::async_write_header(stream, sr, kNoThrow);
    if (ec) {
      aborted_.fetch_add(1);
      co_return false;
    }
  }
  if (plan.close_after_headers) {
    close_socket(lowest_socket(stream));
    co_return false;
  }
  for (std::size_t i = 0; i < plan.events.size(); ++i) {
    if (i > 0 && plan.event_interval.count() > 0 &&
        !co_await wait_watching_peer(stream, buffer, plan.event_interval)) {
      aborted_.fetch_add(1);
      co_return false;
    }
    // One write per event: each reaches the peer as soon as it is produced (TCP_NODELAY).
    auto [ec, n] = co_await asio::async_write(
        stream, http::make_chunk(asio::buffer(plan.events[i])), kNoThrow);
    if (ec) {
      aborted_.fetch_add(1);
      co_return false;
    }
  }
  auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), kNoThrow);
  if (ec) {
    aborted_.fetch_add(1);
    co_return false;
  }
  co_return true;
}

// ---------------------------------------------------------------------------------------------

FakeUpstream::FakeUpstream(FakeUpstreamOptions opts)
    : impl_(std::make_unique<Impl>(std::move(opts))) {
  try {
    impl_->start();
  } catch (...) {
    impl_->stop();
    throw;
  }
}

FakeUpstream::~FakeUpstream() {
  impl_->stop();
}

uint16_t FakeUpstream::port() const {
  return impl_->port_;
}

std::string FakeUpstream::base_url() const {
  const std::string& host = impl_->opts_.host;
  const bool v6 = host.find(':') != std::string::npos;
  return std::string(impl_->opts_.tls ? "https://" : "http://") + (v6 ? "[" + host + "]" : host) +
         ":" + std::to_string(impl_->port_);
}

std::vector<SeenRequest> FakeUpstream::requests() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->seen_;
}

std::size_t FakeUpstream::request_count() const {
  return impl_->request_count_.load();
}
std::size_t FakeUpstream::connections_accepted() const {
  return impl_->accepted_.load();
}
std::size_t FakeUpstream::aborted_responses() const {
  return impl_->aborted_.load();
}
std::size_t FakeUpstream::open_connections() const {
  return impl_->open_.load();
}

void FakeUpstream::reset_stats() {
  std::lock_guard lock(impl_->mu_);
  impl_->seen_.clear();
  impl_->request_count_.store(0);
  impl_->accepted_.store(0);
  impl_->aborted_.store(0);
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

std::vector<float> fake_embedding(std::string_view text, std::size_t dim) {
  if (dim == 0) return {};
  std::vector<double> acc(dim, 0.0);
  std::size_t i = 0;
  std::string word;
  while (i < text.size()) {
    word.clear();
    while (i < text.size() && std::isalnum(static_cast<unsigned char>(text[i])) == 0) ++i;
    while (i < text.size() && std::isalnum(static_cast<unsigned char>(text[i])) != 0)
      word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(text[i++]))));
    if (word.empty()) break;
    // Each word adds a signed unit to one dimension and half a signed unit to another, so two
    // different words rarely cancel out exactly.
    const std::uint64_t h = fnv1a64(word);
    acc[h % dim] += (h >> 63) != 0 ? -1.0 : 1.0;
    acc[(h >> 20) % dim] += ((h >> 62) & 1) != 0 ? -0.5 : 0.5;
  }
  double norm = 0;
  for (const double v : acc) norm += v * v;
  norm = std::sqrt(norm);
  std::vector<float> out(dim, 0.0F);
  if (norm < 1e-9) {
    out[0] = 1.0F;
    return out;
  }
  for (std::size_t k = 0; k < dim; ++k) out[k] = static_cast<float>(acc[k] / norm);
  return out;
}

}  // namespace arbiter::testing
