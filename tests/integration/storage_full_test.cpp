// A full disk under the real binary: storage.path on a small tmpfs that the
// test fills up. The gateway must keep proxying, say so on /healthz and in
// /metrics, and store what it kept once space returns. (The in-process
// fault-injection tests of the request log are in
// tests/unit/scoring/storage_faults_test.cpp.)
//
// Mounting needs CAP_SYS_ADMIN (root in the CI container); without it the test
// skips and says why.

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/gateway_harness.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class TmpfsMount {
 public:
  TmpfsMount(const std::filesystem::path& where, const std::string& size) : where_(where) {
    mounted_ = ::mount("tmpfs", where.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    error_ = mounted_ ? 0 : errno;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool mounted() const { return mounted_; }
  int error() const { return error_; }

 private:
  std::filesystem::path where_;
  bool mounted_ = false;
  int error_ = 0;
};

// Writes `path` until the filesystem is full; returns the bytes written.
std::size_t fill(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 0;
  std::size_t total = 0;
  std::string chunk(1 << 20, 'x');
  for (std::size_t size : {std::size_t{1} << 20, std::size_t{4096}, std::size_t{1}}) {
    for (;;) {
      const ssize_t n = ::write(fd, chunk.data(), size);
      if (n <= 0) break;
      total += static_cast<std::size_t>(n);
    }
  }
  ::close(fd);
  return total;
}

json healthz(GatewayHarness& h) {
  auto res = h.api_client().request("GET", "/healthz");
  EXPECT_EQ(res.status, 200) << res.body;
  return json::parse(res.body, nullptr, false);
}

std::string call(GatewayHarness& h, std::size_t body_bytes) {
  json body = {{"model", "gpt-4o-mini"},
               {"messages", {{{"role", "user"}, {"content", std::string(body_bytes, 'a')}}}}};
  auto c = h.proxy_client();
  auto res = c.request("POST", "/v1/chat/completions", GatewayHarness::auth({{"Content-Type", "application/json"}}),
                       body.dump());
  EXPECT_EQ(res.status, 200) << res.body;
  return res.header("helicone-id").value_or("");
}

bool logged(GatewayHarness& h, const std::string& id) {
  return h.api_client().request("GET", "/v1/request/" + id, GatewayHarness::api_auth()).status == 200;
}

void run_full_disk(GatewayHarness& h, const std::filesystem::path& mount_dir);

TEST(StorageFull, TheProxyKeepsServingReportsItAndRecoversWhenSpaceReturns) {
  TempDir mount_dir;
  TmpfsMount tmpfs(mount_dir.path(), "64m");
  if (!tmpfs.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs CAP_SYS_ADMIN): " << std::strerror(tmpfs.error());
  }
  GatewayHarness h({.storage_path = mount_dir.path() / "data"});
  try {
    run_full_disk(h, mount_dir.path());
  } catch (const std::exception& e) {
    FAIL() << e.what() << "\narbiter stderr:\n" << h.stderr_text();
  }
}

void run_full_disk(GatewayHarness& h, const std::filesystem::path& mount_dir) {
  const std::string before = call(h, 100);
  ASSERT_TRUE(wait_until([&] { return logged(h, before); }, 20s));
  EXPECT_EQ(healthz(h)["storage"]["ok"], true);
  EXPECT_EQ(h.metric("arbiter_storage_healthy"), 1);

  const auto filler = mount_dir / "filler";
  ASSERT_GT(fill(filler), 0u);

  // Calls with 256 KiB bodies outgrow the WAL's preallocated space soon; each
  // one is still answered.
  std::vector<std::string> during;
  ASSERT_TRUE(wait_until(
      [&] {
        during.push_back(call(h, 256 * 1024));
        return healthz(h)["storage"]["ok"] == false;
      },
      120s))
      << "storage never reported the full disk after " << during.size() << " calls";
  // It keeps proxying while the disk is full.
  for (int i = 0; i < 5; ++i) during.push_back(call(h, 100));
  const json health = healthz(h);
  EXPECT_EQ(health["status"], "degraded") << health.dump();
  EXPECT_EQ(health["storage"]["error"], "no space left on device") << health.dump();
  EXPECT_EQ(health.dump().find(mount_dir.string()), std::string::npos) << "no internal paths";
  EXPECT_EQ(h.metric("arbiter_storage_healthy"), 0);
  EXPECT_GE(h.metric("arbiter_log_write_errors_total"), 1);
  EXPECT_EQ(h.metric("arbiter_log_records_dropped_total"), 0);

  std::filesystem::remove(filler);
  ASSERT_TRUE(wait_until([&] { return healthz(h)["storage"]["ok"] == true; }, 60s)) << healthz(h).dump();
  EXPECT_EQ(healthz(h)["status"], "ok");
  EXPECT_GE(h.metric("arbiter_log_storage_recoveries_total"), 1);

  // What was proxied during the outage was kept and is stored now; so is
  // what comes after.
  const std::string after = call(h, 100);
  ASSERT_TRUE(wait_until([&] { return logged(h, after); }, 20s));
  for (const auto& id : during) EXPECT_TRUE(logged(h, id)) << id;
  EXPECT_TRUE(logged(h, before));

  // And it all survives a restart.
  EXPECT_EQ(h.terminate(), 0);
  h.restart();
  for (const auto& id : during) EXPECT_TRUE(logged(h, id)) << id;
  EXPECT_TRUE(logged(h, after));
  EXPECT_EQ(h.terminate(), 0);
}

}  // namespace
}  // namespace arbiter::testing
