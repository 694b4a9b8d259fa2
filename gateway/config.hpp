#pragma once
// The gateway's configuration: the YAML file of DESIGN.md §5, loaded and
// validated once at start-up. A loaded Config is immutable and shared as
// `std::shared_ptr<const Config>`; it is safe to read from any thread.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace arbiter::gateway {

// A configuration error. what() is "file:line: message" (line is 1-based);
// for errors that have no line (e.g. unreadable file) it is "file: message".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TlsConfig {
  std::string cert_file;  // PEM, may hold the chain
  std::string key_file;   // PEM
};

struct ListenerConfig {
  std::string host = "127.0.0.1";  // IPv4 or IPv6 literal, without brackets
  std::uint16_t port = 0;  // 0 = any free port
  std::optional<TlsConfig> tls;
};

struct LimitsConfig {
  std::size_t max_header_bytes = 64 * 1024;              // larger → 431
  std::uint64_t max_body_bytes = 32ull * 1024 * 1024;    // larger → 413
  std::chrono::milliseconds header_timeout{10'000};      // slowloris guard
  std::chrono::milliseconds idle_timeout{60'000};        // keep-alive idle
  std::chrono::milliseconds body_timeout{60'000};        // gap between client body reads
  std::size_t max_connections = 10'000;                  // per listener; over → 503
};

enum class LogLevel { debug, info, warn, error };

struct ServerConfig {
  ListenerConfig proxy{"127.0.0.1", 8787, std::nullopt};
  ListenerConfig api{"127.0.0.1", 8585, std::nullopt};
  unsigned threads = 0;  // 0 = one per core
  // Threads that run API handlers (storage reads, durable writes). A handler
  // waiting for its fsync holds one, so this bounds concurrent durable API
  // writes; RocksDB merges concurrent syncs into one (group commit).
  unsigned api_workers = 32;
  // The evaluator runtime's own threads (never the I/O threads) and the
  // bounded queue of runs waiting for one; a run that finds it full waits
  // in storage (deferred, counted) until the queue drains.
  unsigned evaluator_workers = 4;
  std::size_t evaluator_queue_capacity = 10'000;
  // Nice value of the evaluator threads (0-19): under CPU contention they
  // yield to the I/O threads, so evaluations cannot add proxy latency.
  unsigned evaluator_nice = 10;
  // The evaluator threads run under Linux's SCHED_IDLE policy: only on CPU
  // time that no other thread wants, and a proxy thread that wakes takes
  // their CPU at once. Under a sustained saturation evaluations then wait
  // (in storage, deferred) until the load falls. false: evaluator_nice.
  bool evaluator_sched_idle = true;
  // Nice value of the other background threads (storage, WAL sync, score
  // writer, webhooks, outbound HTTP, retention): the I/O threads get the CPU
  // first, the log's bounded queue absorbs the wait (scoring/background_thread.hpp).
  unsigned background_nice = 5;
  // glibc malloc arenas for the whole process (M_ARENA_MAX), set at start
  // unless MALLOC_ARENA_MAX or a glibc.malloc.arena_max tunable is in the
  // environment. glibc's own default is 8 per core: each thread that
  // allocates gets its own arena until then, and memory freed in one arena
  // is not reused by another, so RSS creeps up under a long mixed load.
  // 0 = glibc's default.
  unsigned malloc_arenas = 2;
  LogLevel log_level = LogLevel::info;
  // Accept proxy calls without a gateway key (they go to the first project).
  // Refused by validation when any upstream injects an api_key.
  bool allow_anonymous = false;
  LimitsConfig limits;
  std::chrono::milliseconds drain_timeout{10'000};  // SIGTERM: wait this long for in-flight calls
};

enum class Durability { relaxed, strict };

struct StorageConfig {
  std::string path = "./data";
  Durability durability = Durability::relaxed;
  unsigned retention_days = 0;  // 0 = keep forever
  std::size_t queue_capacity = 65536;            // records waiting for the storage thread; full → dropped + counted
  std::chrono::milliseconds batch_window{5};     // relaxed: longest time written records stay un-fsynced
  std::size_t max_logged_body_bytes = 1 << 20;   // per body; larger bodies are stored truncated (flagged)
  // false: proxied calls are not recorded (the API still serves what is
  // stored and manual logs). For measuring the cost of logging.
  bool log_requests = true;
};

// Price of a model, in USD per million tokens. `model` is exact, or a prefix
// ending in '*' ("gpt-4o-mini*"); the most specific match wins.
struct ModelPrice {
  std::string model;
  double input_per_million = 0;
  double output_per_million = 0;
};

struct UpstreamConfig {
  std::string name;
  std::string base_url;  // as written, e.g. "https://api.openai.com" or "http://127.0.0.1:9000/v1"
  // Parsed from base_url by the loader:
  bool tls = true;             // scheme https
  std::string host;            // without brackets / port
  std::string port;            // explicit or 443/80
  std::string base_path;       // "" or "/v1" (no trailing slash); prefixed to every forwarded target
  // Injected as "Authorization: Bearer <api_key>" only when the client sent no
  // provider key. Empty = never injected. Never logged.
  std::string api_key;
  std::string ca_file;         // extra CA bundle (PEM); empty = system store only
  bool verify_tls = true;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds timeout{600'000};       // until the response header arrives → 504
  std::chrono::milliseconds idle_timeout{300'000};  // max gap between response body bytes
  std::size_t max_idle_connections = 64;            // per I/O thread
  std::chrono::milliseconds pool_idle_timeout{30'000};
};

// evaluators[] (DESIGN.md §6). The loader checks the shape of every field;
// kind-specific `params` are checked when the evaluator runtime builds the
// evaluator at start-up (scoring/evaluator_runtime.hpp).
struct EvaluatorFilterConfig {
  std::string path;   // glob ('*' any run, '?' one character) on the path without its query; "" = any
  std::string model;  // glob on the requested or the response model; "" = any
  std::map<std::string, std::string> properties;  // exact values; keys lower-cased
  // "" = any, "2xx" (a class, 1xx-5xx) or an exact code such as "200".
  std::string status;
};

struct EvaluatorRetryConfig {
  unsigned max_attempts = 3;  // 1 = no retry
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{60'000};
};

struct EvaluatorConfig {
  std::string name;  // unique, A-Z a-z 0-9 . _ -
  int line = 0;      // where the entry starts in the file, for start-up errors
  std::string kind;  // a built-in kind, llm_judge, http, semantic_similarity, moderation or plugin
  EvaluatorFilterConfig filter;
  unsigned sampling = 100;         // percent of matching requests, 0-100
  std::vector<std::string> needs;  // event paths that must exist before the run
  std::string score_name;          // default: the evaluator's name
  std::string score_data_type;     // "", NUMERIC, BOOLEAN or CATEGORICAL
  std::chrono::milliseconds timeout{30'000};  // per attempt
  unsigned concurrency = 4;                   // runs of this evaluator at once
  EvaluatorRetryConfig retry;
  // Kind-specific settings as JSON (an object; empty when absent).
  std::shared_ptr<const nlohmann::json> params;
};

using KeyHash = std::array<std::uint8_t, 32>;  // SHA-256 of an arbiter API key

struct ProjectConfig {
  std::string name;
  // Keys are kept only as SHA-256 digests: plaintext keys from the file or the
  // environment are hashed by the loader and dropped.
  std::vector<KeyHash> key_hashes;
};

// One `webhooks:` entry (DESIGN.md §7). The secret is held in memory only:
// never logged, stored or shown by the API.
struct WebhookRetryConfig {
  std::uint32_t max_attempts = 8;
  std::chrono::milliseconds initial_backoff{5'000};
  std::chrono::milliseconds max_backoff{3'600'000};
};

struct WebhookConfig {
  std::string name;
  std::string url;    // as written: http(s)://host[:port][/path][?query]
  bool tls = true;    // https
  std::string host;   // parsed from url, without brackets
  std::string secret_text;  // "whsec_<base64>" as configured (Helicone-Signature key)
  std::string secret_key;   // its decoded bytes (Standard Webhooks signature key)
  std::vector<std::string> events;  // subset of request.logged, score.created, evaluation.completed
  double sample_rate = 100;         // percent, 0-100
  std::map<std::string, std::string> property_filters;  // exact match; keys lower-cased
  bool include_bodies = true;
  WebhookRetryConfig retry;
  std::chrono::milliseconds timeout{15'000};
  std::vector<std::pair<std::string, std::string>> headers;  // static extra headers
  // Permits plain http:// and private / loopback destinations (the SSRF guard).
  bool allow_insecure = false;
  std::string ca_file;             // extra CA bundle (PEM) for https receivers
  unsigned max_in_flight = 4;      // concurrent attempts to this receiver
  std::vector<std::string> projects;  // empty = every project
};

struct Config {
  std::string source_file;  // for messages
  ServerConfig server;
  StorageConfig storage;
  std::vector<UpstreamConfig> upstreams;  // at least one; the first is the default
  std::vector<ProjectConfig> projects;    // at least one
  std::vector<ModelPrice> pricing;        // unknown models have unknown cost
  std::vector<EvaluatorConfig> evaluators;
  std::vector<WebhookConfig> webhooks;

  const UpstreamConfig* find_upstream(std::string_view name) const;
  // Exact match first, then the longest matching '*' prefix; nullptr if none.
  const ModelPrice* price_for(std::string_view model) const;
};

// Loads and validates a config file. ${VAR} and ${VAR:-default} are expanded in
// scalar values (an unset VAR without default is an error). Unknown keys,
// wrong types and invalid values throw ConfigError with file:line.
std::shared_ptr<const Config> load_config(const std::string& path);

// Same, from text already in memory (`source_name` is used in messages).
std::shared_ptr<const Config> load_config_from_string(const std::string& yaml,
                                                      const std::string& source_name);

KeyHash sha256_key(std::string_view key);

}  // namespace arbiter::gateway
