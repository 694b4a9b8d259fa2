#pragma once
// Starts the real arbiter binary against a fake upstream with a generated
// config in a temp dir, for integration tests. Two projects: "alpha" (plain
// key kKeyA) and "beta" (key kKeyB, configured as its SHA-256 only).

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/fake_upstream.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace arbiter::testing {

inline constexpr const char* kKeyA = "test-key-project-a";
inline constexpr const char* kKeyB = "test-key-project-b";

struct GatewayOptions {
  std::string server_extra{};    // lines under server:, indented by 2
  std::string storage_extra{};   // lines under storage:, indented by 2
  std::filesystem::path storage_path{};  // storage.path; default: <dir()>/data
  std::string upstream_extra{};  // lines under the upstream, indented by 4
  std::string top_extra{};       // top-level sections appended to the file
  std::string base_url{};        // overrides the fake upstream's URL
  std::string base_path{};       // appended to the fake upstream's URL
  FakeUpstreamOptions upstream{};
  int threads = 2;
  std::vector<std::pair<std::string, std::string>> env{};  // added to arbiter's environment
};

std::string sha256_hex(std::string_view data);

class GatewayHarness {
 public:
  // Starts the fake upstream and arbiter; throws if arbiter does not come up.
  explicit GatewayHarness(GatewayOptions opts = {});
  // Stops arbiter with SIGTERM if it still runs (SIGKILL after 60 s, a test
  // failure), then fails the current test (gtest ADD_FAILURE) when any run's
  // stderr holds a sanitizer report (tests/support/sanitizer.hpp).
  ~GatewayHarness();

  // Starts arbiter again on the same config and data directory (after a kill).
  void restart();
  // SIGKILL, reaped.
  void kill();
  // SIGTERM; returns the exit code (nullopt on timeout).
  std::optional<int> terminate(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  HttpClient proxy_client() const { return HttpClient("127.0.0.1", arbiter_.proxy_port); }
  HttpClient api_client() const { return HttpClient("127.0.0.1", arbiter_.api_port); }
  std::uint16_t proxy_port() const { return arbiter_.proxy_port; }
  std::uint16_t api_port() const { return arbiter_.api_port; }
  FakeUpstream& upstream() { return *upstream_; }
  ChildProcess& process() { return *arbiter_.process; }
  const std::filesystem::path& dir() const { return dir_.path(); }
  const std::filesystem::path& config_path() const { return config_path_; }
  std::string stderr_text() const;
  // The stderr file of the `start`-th run of arbiter (1 = the first).
  std::filesystem::path stderr_path(int start) const;
  // A counter or gauge from GET /metrics (-1 if absent).
  double metric(const std::string& name) const;

  static Headers auth(Headers more = {}, const char* key = kKeyA);
  static Headers api_auth(const char* key = kKeyA);
  static std::string chat_body(bool stream = false, bool usage = false);

 private:
  TempDir dir_;
  std::unique_ptr<FakeUpstream> upstream_;
  std::filesystem::path config_path_;
  std::vector<std::pair<std::string, std::string>> env_;
  ArbiterProcess arbiter_;
  int starts_ = 0;
};

}  // namespace arbiter::testing
