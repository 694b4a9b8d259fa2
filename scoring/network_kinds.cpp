#include "scoring/network_kinds.hpp"

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <system_error>

#include "plugins/builtin/judge.hpp"
#include "plugins/event_path.hpp"
#include "scoring/json_limits.hpp"
#include "scoring/outbound_http.hpp"
#include "scoring/request_record.hpp"

namespace arbiter::scoring {

namespace {

using nlohmann::json;
using plugins::EvalResult;

constexpr std::size_t kMaxQuotedBody = 200;  // of an unexpected answer, in error messages
constexpr std::size_t kMaxTemplateBytes = 256 * 1024;

// ---- params ----

// Strict params reading: every key must be one the kind knows; each getter
// names the param in its error.
class Params {
 public:
  Params(const json& params, std::initializer_list<std::string_view> known, std::string_view kind)
      : p_(params) {
    for (const auto& [key, value] : p_.items()) {
      bool ok = false;
      for (auto k : known) ok = ok || k == key;
      if (!ok) {
        std::string list;
        for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        throw EvaluatorSetupError("params." + key + ": unknown param (" + std::string(kind) +
                                  " takes " + list + ")");
      }
    }
  }

  bool has(const char* key) const { return p_.contains(key) && !p_.at(key).is_null(); }

  std::string string(const char* key, std::optional<std::string> fallback = std::nullopt) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      throw EvaluatorSetupError(std::string("params.") + key + ": required");
    }
    const json& v = p_.at(key);
    if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
      throw EvaluatorSetupError(std::string("params.") + key + ": expected a non-empty string");
    }
    return v.get<std::string>();
  }

  std::string event_path(const char* key, const char* fallback) const {
    std::string path = string(key, std::string(fallback));
    if (!plugins::valid_event_path(path)) {
      throw EvaluatorSetupError(std::string("params.") + key +
                                ": expected an event path such as outputs.content");
    }
    return path;
  }

  std::optional<double> number(const char* key, double min, double max) const {
    if (!has(key)) return std::nullopt;
    const json& v = p_.at(key);
    if (!v.is_number()) throw EvaluatorSetupError(std::string("params.") + key + ": expected a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || d < min || d > max) {
      char buf[96];
      std::snprintf(buf, sizeof buf, ": must be between %g and %g", min, max);
      throw EvaluatorSetupError(std::string("params.") + key + buf);
    }
    return d;
  }

  std::optional<std::int64_t> integer(const char* key, std::int64_t min, std::int64_t max) const {
    if (!has(key)) return std::nullopt;
    const json& v = p_.at(key);
    if (!v.is_number_integer()) {
      throw EvaluatorSetupError(std::string("params.") + key + ": expected an integer");
    }
    const auto i = v.get<std::int64_t>();
    if (i < min || i > max) {
      throw EvaluatorSetupError(std::string("params.") + key + ": must be between " +
                                std::to_string(min) + " and " + std::to_string(max));
    }
    return i;
  }

  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = p_.at(key);
    if (!v.is_boolean()) throw EvaluatorSetupError(std::string("params.") + key + ": expected true or false");
    return v.get<bool>();
  }

  const json& raw(const char* key) const { return p_.at(key); }

 private:
  const json& p_;
};

const EvalUpstream& find_upstream(const Params& p, const KindEnvironment& env) {
  const std::string name = p.string("upstream");
  if (env.upstreams != nullptr) {
    for (const auto& u : *env.upstreams) {
      if (u.name == name) return u;
    }
  }
  std::string known;
  if (env.upstreams != nullptr) {
    for (const auto& u : *env.upstreams) known += (known.empty() ? "" : ", ") + u.name;
  }
  throw EvaluatorSetupError("params.upstream: no upstream named '" + name + "' (configured: " +
                            known + ")");
}

std::string read_text_file(const std::string& path, const char* param) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw EvaluatorSetupError(std::string("params.") + param + ": cannot read '" + path +
                              "': " + std::generic_category().message(errno));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw EvaluatorSetupError(std::string("params.") + param + ": cannot read '" + path + "'");
  if (text.size() > kMaxTemplateBytes) {
    throw EvaluatorSetupError(std::string("params.") + param + ": '" + path + "' is larger than " +
                              std::to_string(kMaxTemplateBytes) + " bytes");
  }
  return text;
}

// ---- calls ----

EvalResult failure(std::string message, bool retryable) {
  EvalResult r;
  r.ok = false;
  r.retryable = retryable;
  r.error = std::move(message);
  return r;
}

std::string excerpt(std::string_view body) {
  std::string s = sanitize_utf8(body.substr(0, kMaxQuotedBody));
  if (body.size() > kMaxQuotedBody) s += "...";
  return s;
}

// A response that is not a usable 2xx, as a failure; nullopt when it is one.
// Names `what` ("judge call to upstream 'openai'") but never the URL's
// credentials or the api key.
std::optional<EvalResult> transport_failure(const OutboundResponse& res, const std::string& what) {
  if (res.timed_out) return failure(what + " timed out", true);
  if (!res.error.empty()) return failure(what + " failed: " + res.error, true);
  if (res.status >= 200 && res.status < 300) return std::nullopt;
  const bool retryable = res.status == 429 || res.status >= 500;
  return failure(what + " answered " + std::to_string(res.status) + ": " + excerpt(res.body), retryable);
}

OutboundRequest json_post(std::string url, std::string body, std::chrono::milliseconds timeout) {
  OutboundRequest req;
  req.method = "POST";
  req.url = std::move(url);
  req.body = std::move(body);
  req.timeout = timeout;
  req.headers.emplace_back("Content-Type", "application/json");
  req.headers.emplace_back("Accept", "application/json");
  return req;
}

// base_url + "/v1" + path, where a base_url that already ends in /v1 (a
// local OpenAI-compatible server: "http://host:9000/v1") gets no second one.
std::string upstream_url(const EvalUpstream& u, std::string_view path) {
  std::string base = u.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  const std::size_t scheme = base.find("://");
  const std::size_t slash = base.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  const bool has_v1 = slash != std::string::npos && base.size() >= 3 &&
                      base.compare(base.size() - 3, 3, "/v1") == 0 && base.size() - 3 >= slash;
  return base + (has_v1 ? "" : "/v1") + std::string(path);
}

OutboundRequest upstream_post(const EvalUpstream& u, std::string_view path, const json& body,
                              std::chrono::milliseconds timeout) {
  OutboundRequest req = json_post(upstream_url(u, path), body.dump(), timeout);
  if (!u.api_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + u.api_key);
  req.ca_file = u.ca_file;
  req.verify_tls = u.verify_tls;
  // An operator-configured upstream, like the proxy's own: local model
  // servers on loopback / private addresses are normal.
  req.allow_private = true;
  return req;
}

// Sends on the client's own thread and waits here (an evaluator worker),
// giving up early when the runtime stops: the call's callback then lands in
// the shared state, which outlives this frame.
class Caller {
 public:
  explicit Caller(const KindEnvironment& env) : http_(*env.http), cancel_(env.cancel) {}

  OutboundResponse call(OutboundRequest req) const {
    struct State {
      std::mutex mu;
      std::condition_variable cv;
      std::optional<OutboundResponse> res;
    };
    auto state = std::make_shared<State>();
    http_.send(std::move(req), [state](OutboundResponse r) {
      std::lock_guard lk(state->mu);
      state->res = std::move(r);
      state->cv.notify_all();
    });
    std::unique_lock lk(state->mu);
    while (!state->res) {
      if (cancel_ != nullptr && cancel_->load()) {
        OutboundResponse abandoned;
        abandoned.error = "cancelled: the evaluator runtime is stopping";
        return abandoned;
      }
      // Polled: a stop is rare and 50 ms is a fine reaction time for it.
      state->cv.wait_for(lk, std::chrono::milliseconds(50));
    }
    return std::move(*state->res);
  }

 private:
  OutboundHttp& http_;
  const std::atomic<bool>* cancel_;
};

std::optional<json> parse_json_body(const OutboundResponse& res) {
  json j = parse_json_bounded(res.body);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

const json* text_at(const json& event, const std::string& path, EvalResult& error) {
  const json* v = plugins::find_event_path(event, path);
  if (v == nullptr || v->is_null()) {
    error = failure("event has no " + path, false);
    return nullptr;
  }
  return v;
}

EvalResult one_score(std::string name, json value, std::string comment) {
  EvalResult r;
  r.ok = true;
  r.scores.push_back(plugins::EvalScore{std::move(name), std::move(value), std::move(comment)});
  return r;
}

// ---- llm_judge ----

class LlmJudge final : public EvaluatorKind {
 public:
  LlmJudge(const KindSpec& spec, const KindEnvironment& env) : http_(env), score_(spec.score_name) {
    const Params p(spec.params,
                   {"template", "template_file", "upstream", "model", "temperature", "max_tokens"},
                   "llm_judge");
    if (p.has("template") == p.has("template_file")) {
      throw EvaluatorSetupError("params.template: give exactly one of template and template_file");
    }
    const char* which = p.has("template") ? "template" : "template_file";
    template_ = p.has("template") ? p.string("template") : read_text_file(p.string("template_file"), which);
    if (auto problem = plugins::builtin::check_judge_template(template_); !problem.empty()) {
      throw EvaluatorSetupError(std::string("params.") + which + ": " + problem);
    }
    upstream_ = find_upstream(p, env);
    model_ = p.string("model");
    temperature_ = p.number("temperature", 0, 2);
    max_tokens_ = p.integer("max_tokens", 1, 1'000'000);
  }

  EvalResult evaluate(const json& event, const std::string&, std::chrono::milliseconds timeout) const override {
    const auto rendered = plugins::builtin::render_judge_template(template_, event);
    if (!rendered.ok) return failure(rendered.error, false);
    json body = {{"model", model_},
                 {"messages", json::array({json{{"role", "user"}, {"content", rendered.text}}})}};
    if (temperature_) body["temperature"] = *temperature_;
    if (max_tokens_) body["max_tokens"] = *max_tokens_;
    const std::string what = "judge call to upstream '" + upstream_.name + "'";
    const auto res = http_.call(upstream_post(upstream_, "/chat/completions", body, timeout));
    if (auto f = transport_failure(res, what)) return *f;
    const auto answer = parse_json_body(res);
    const json* content = nullptr;
    if (answer && answer->is_object()) {
      content = plugins::find_event_path(*answer, "choices.0.message.content");
    }
    if (content == nullptr || !content->is_string()) {
      return failure(what + ": no choices[0].message.content in the answer: " + excerpt(res.body), false);
    }
    const auto rating = plugins::builtin::parse_judge_rating(content->get_ref<const std::string&>());
    if (!rating.ok) return failure("judge answer has no valid rating: " + rating.error, false);
    return one_score(score_, rating.value, rating.explanation);
  }

 private:
  Caller http_;
  std::string score_;
  std::string template_;
  EvalUpstream upstream_;
  std::string model_;
  std::optional<double> temperature_;
  std::optional<std::int64_t> max_tokens_;
};

// ---- http ----

class HttpKind final : public EvaluatorKind {
 public:
  HttpKind(const KindSpec& spec, const KindEnvironment& env) : http_(env) {
    const Params p(spec.params, {"url", "headers", "allow_insecure"}, "http");
    url_ = p.string("url");
    std::string why;
    const auto parsed = parse_url(url_, &why);
    if (!parsed) throw EvaluatorSetupError("params.url: " + (why.empty() ? "not a URL" : why));
    allow_insecure_ = p.boolean("allow_insecure", false);
    if (!parsed->tls && !allow_insecure_) {
      throw EvaluatorSetupError("params.url: plain http:// needs allow_insecure: true");
    }
    if (p.has("headers")) {
      const json& h = p.raw("headers");
      if (!h.is_object()) throw EvaluatorSetupError("params.headers: expected a mapping of header names to values");
      for (const auto& [name, value] : h.items()) {
        if (!value.is_string()) {
          throw EvaluatorSetupError("params.headers." + name + ": expected a string");
        }
        const auto& v = value.get_ref<const std::string&>();
        auto bad = [](unsigned char c) { return c < 0x20 || c == 0x7f; };
        bool invalid = name.empty();
        for (unsigned char c : name) invalid = invalid || bad(c) || c == ':' || c == ' ';
        for (unsigned char c : v) invalid = invalid || (bad(c) && c != '\t');
        if (invalid) throw EvaluatorSetupError("params.headers." + name + ": invalid header");
        headers_.emplace_back(name, v);
      }
    }
  }

  EvalResult evaluate(const json&, const std::string& event_json, std::chrono::milliseconds timeout) const override {
    OutboundRequest req = json_post(url_, event_json, timeout);
    for (const auto& h : headers_) req.headers.push_back(h);
    req.allow_private = allow_insecure_;
    const auto res = http_.call(std::move(req));
    if (auto f = transport_failure(res, "http evaluator call")) return *f;
    auto result = plugins::parse_evaluator_result(res.body);
    if (!result.ok && !result.retryable) {
      result.error = "http evaluator answer: " + result.error;
    }
    return result;
  }
  bool names_own_scores() const override { return true; }

 private:
  Caller http_;
  std::string url_;
  bool allow_insecure_ = false;
  std::vector<std::pair<std::string, std::string>> headers_;
};

// ---- semantic_similarity ----

class SemanticSimilarity final : public EvaluatorKind {
 public:
  SemanticSimilarity(const KindSpec& spec, const KindEnvironment& env)
      : http_(env), score_(spec.score_name) {
    const Params p(spec.params, {"upstream", "model", "output", "reference"}, "semantic_similarity");
    upstream_ = find_upstream(p, env);
    model_ = p.string("model", std::string("text-embedding-3-small"));
    output_ = p.event_path("output", "outputs.content");
    reference_ = p.event_path("reference", "feedback.ground_truth");
  }

  EvalResult evaluate(const json& event, const std::string&, std::chrono::milliseconds timeout) const override {
    EvalResult missing;
    const json* out = text_at(event, output_, missing);
    if (out == nullptr) return missing;
    const json* ref = text_at(event, reference_, missing);
    if (ref == nullptr) return missing;
    const json body = {{"model", model_},
                       {"input", json::array({plugins::event_value_text(*out),
                                              plugins::event_value_text(*ref)})}};
    const std::string what = "embeddings call to upstream '" + upstream_.name + "'";
    const auto res = http_.call(upstream_post(upstream_, "/embeddings", body, timeout));
    if (auto f = transport_failure(res, what)) return *f;
    const auto answer = parse_json_body(res);
    std::vector<double> vectors[2];
    bool shaped = answer && answer->is_object() && answer->contains("data") &&
                  (*answer)["data"].is_array() && (*answer)["data"].size() == 2;
    if (shaped) {
      std::size_t position = 0;
      for (const auto& item : (*answer)["data"]) {
        const std::size_t index = item.contains("index") && item["index"].is_number_unsigned()
                                      ? item["index"].get<std::size_t>()
                                      : position;
        ++position;
        auto e = item.find("embedding");
        if (index > 1 || e == item.end() || !e->is_array() || e->empty()) {
          shaped = false;
          break;
        }
        for (const auto& x : *e) {
          if (!x.is_number()) {
            shaped = false;
            break;
          }
          vectors[index].push_back(x.get<double>());
        }
      }
    }
    if (!shaped || vectors[0].size() != vectors[1].size() || vectors[0].empty()) {
      return failure(what + ": expected two embeddings of one dimension in the answer: " + excerpt(res.body),
                     false);
    }
    double dot = 0, na = 0, nb = 0;
    for (std::size_t i = 0; i < vectors[0].size(); ++i) {
      dot += vectors[0][i] * vectors[1][i];
      na += vectors[0][i] * vectors[0][i];
      nb += vectors[1][i] * vectors[1][i];
    }
    if (na == 0 || nb == 0) return failure(what + ": an embedding is the zero vector", false);
    return one_score(score_, dot / (std::sqrt(na) * std::sqrt(nb)), "");
  }

 private:
  Caller http_;
  std::string score_;
  EvalUpstream upstream_;
  std::string model_, output_, reference_;
};

// ---- moderation ----

class Moderation final : public EvaluatorKind {
 public:
  Moderation(const KindSpec& spec, const KindEnvironment& env) : http_(env), score_(spec.score_name) {
    const Params p(spec.params, {"upstream", "model", "output"}, "moderation");
    upstream_ = find_upstream(p, env);
    model_ = p.string("model", std::string());
    output_ = p.event_path("output", "outputs.content");
  }

  EvalResult evaluate(const json& event, const std::string&, std::chrono::milliseconds timeout) const override {
    EvalResult missing;
    const json* out = text_at(event, output_, missing);
    if (out == nullptr) return missing;
    json body = {{"input", plugins::event_value_text(*out)}};
    if (!model_.empty()) body["model"] = model_;
    const std::string what = "moderation call to upstream '" + upstream_.name + "'";
    const auto res = http_.call(upstream_post(upstream_, "/moderations", body, timeout));
    if (auto f = transport_failure(res, what)) return *f;
    const auto answer = parse_json_body(res);
    const json* flagged = answer ? plugins::find_event_path(*answer, "results.0.flagged") : nullptr;
    if (flagged == nullptr || !flagged->is_boolean()) {
      return failure(what + ": no results[0].flagged in the answer: " + excerpt(res.body), false);
    }
    std::string comment;
    if (const json* cats = plugins::find_event_path(*answer, "results.0.categories");
        cats != nullptr && cats->is_object()) {
      for (const auto& [name, hit] : cats->items()) {
        if (hit.is_boolean() && hit.get<bool>()) comment += (comment.empty() ? "" : ", ") + name;
      }
    }
    if (!comment.empty()) comment = "flagged categories: " + comment;
    return one_score(score_, flagged->get<bool>(), comment);
  }

 private:
  Caller http_;
  std::string score_;
  EvalUpstream upstream_;
  std::string model_, output_;
};

}  // namespace

std::unique_ptr<EvaluatorKind> make_network_kind(const KindSpec& spec, const KindEnvironment& env) {
  if (env.http == nullptr) throw EvaluatorSetupError("kind " + spec.kind + " needs the outbound HTTP client");
  if (spec.kind == "llm_judge") return std::make_unique<LlmJudge>(spec, env);
  if (spec.kind == "http") return std::make_unique<HttpKind>(spec, env);
  if (spec.kind == "semantic_similarity") return std::make_unique<SemanticSimilarity>(spec, env);
  if (spec.kind == "moderation") return std::make_unique<Moderation>(spec, env);
  throw EvaluatorSetupError("kind: '" + spec.kind + "' is not a network kind");
}

}  // namespace arbiter::scoring
