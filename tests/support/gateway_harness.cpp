#include "tests/support/gateway_harness.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/sanitizer.hpp"
#include "tests/support/test_cert.hpp"

namespace arbiter::testing {

std::string sha256_hex(std::string_view data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

GatewayHarness::GatewayHarness(GatewayOptions opts) : env_(std::move(opts.env)) {
  upstream_ = std::make_unique<FakeUpstream>(opts.upstream);
  const std::string base_url = opts.base_url.empty() ? upstream_->base_url() + opts.base_path : opts.base_url;
  // Evaluator threads at nice 10, not in SCHED_IDLE (arbiter's default): a
  // test waiting for an evaluation must not wait for a CPU that the other
  // tests running in parallel keep busy. A test may set it (server_extra).
  std::string server_extra = opts.server_extra;
  if (server_extra.find("evaluator_sched_idle") == std::string::npos) {
    server_extra += "  evaluator_sched_idle: false\n";
  }
  std::string yaml = "server:\n  proxy_listen: 127.0.0.1:0\n  api_listen: 127.0.0.1:0\n  threads: " +
                     std::to_string(opts.threads) + "\n" + server_extra + "storage:\n  path: " +
                     (opts.storage_path.empty() ? dir_.path() / "data" : opts.storage_path).string() + "\n" + opts.storage_extra +
                     "upstreams:\n  - name: openai\n    base_url: " + base_url + "\n" + opts.upstream_extra +
                     "projects:\n  - name: alpha\n    api_keys: [ \"" + kKeyA +
                     "\" ]\n  - name: beta\n    api_keys: [ { sha256: " + sha256_hex(kKeyB) + " } ]\n" +
                     opts.top_extra;
  config_path_ = dir_.path() / "arbiter.yaml";
  write_file(config_path_, yaml);
  restart();
}

GatewayHarness::~GatewayHarness() {
  // A graceful stop, not the SIGKILL the process's destructor would send:
  // LeakSanitizer checks at exit, and a shutdown that hangs is a bug too.
  // (server.drain_timeout_ms is at most 10 s; the rest is for a slow
  // sanitized build on a loaded machine.)
  if (arbiter_.process && arbiter_.process->running()) {
    arbiter_.process->signal(SIGTERM);
    if (!arbiter_.process->wait_exit(std::chrono::seconds(60))) {
      ADD_FAILURE() << "arbiter (pid " << arbiter_.process->pid()
                    << ") did not exit within 60 s of SIGTERM at the end of the test";
    }
  }
  // A sanitizer report in any run of arbiter this harness started fails the
  // test, whatever the process's exit status was.
  for (int i = 1; i <= starts_; ++i) {
    const auto file = stderr_path(i);
    if (auto report = sanitizer_report_in(file); !report.empty()) {
      ADD_FAILURE() << "sanitizer report in arbiter's stderr (" << file.string() << "):\n" << report;
    }
  }
}

std::filesystem::path GatewayHarness::stderr_path(int start) const {
  return dir_.path() / ("arbiter-" + std::to_string(start) + ".stderr");
}

void GatewayHarness::restart() {
  arbiter_ = {};
  ++starts_;
  arbiter_ = start_arbiter(arbiter_binary(), config_path_, std::chrono::seconds(20), stderr_path(starts_), env_);
}

void GatewayHarness::kill() {
  arbiter_.process->signal(SIGKILL);
  arbiter_.process->wait_exit(std::chrono::seconds(10));
}

std::optional<int> GatewayHarness::terminate(std::chrono::milliseconds timeout) {
  arbiter_.process->signal(SIGTERM);
  return arbiter_.process->wait_exit(timeout);
}

std::string GatewayHarness::stderr_text() const {
  std::string all;
  for (int i = 1; i <= starts_; ++i) {
    std::ifstream in(stderr_path(i));
    all.append(std::istreambuf_iterator<char>(in), {});
  }
  return all;
}

double GatewayHarness::metric(const std::string& name) const {
  auto res = api_client().request("GET", "/metrics");
  std::istringstream in(res.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

Headers GatewayHarness::auth(Headers more, const char* key) {
  more.insert(more.begin(), {"Helicone-Auth", std::string("Bearer ") + key});
  return more;
}

Headers GatewayHarness::api_auth(const char* key) { return {{"Authorization", std::string("Bearer ") + key}}; }

std::string GatewayHarness::chat_body(bool stream, bool usage) {
  nlohmann::json body = {{"model", "gpt-4o-mini"}, {"messages", {{{"role", "user"}, {"content", "Say hello"}}}}};
  if (stream) body["stream"] = true;
  if (usage) body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

}  // namespace arbiter::testing
