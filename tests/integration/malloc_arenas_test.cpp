// server.malloc_arenas: the real binary's glibc malloc arenas, counted from
// outside in /proc/PID/maps.
//
// Every arena but the main one lives in heaps that glibc maps at an address
// aligned to their maximum size (64 MiB on 64-bit), read-write at the front
// and PROT_NONE behind. Thread stacks start with their PROT_NONE guard, and
// other anonymous maps are page-aligned only, so a read-write anonymous map
// at a 64 MiB boundary followed directly by a PROT_NONE one is a heap. An
// arena grows by further heaps only past 64 MiB, which these tests never
// allocate, so here heaps = arenas - 1.

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/gateway_harness.hpp"
#include "tests/support/sanitizer.hpp"

namespace arbiter::testing {
namespace {

constexpr std::uint64_t kHeapAlign = 64ull << 20;

struct Map {
  std::uint64_t begin = 0, end = 0;
  std::string perms;
  bool anonymous = false;
};

std::vector<Map> maps_of(int pid) {
  std::vector<Map> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string range, perms, offset, device, inode, path;
    fields >> range >> perms >> offset >> device >> inode;
    std::getline(fields >> std::ws, path);
    const auto dash = range.find('-');
    if (dash == std::string::npos) continue;
    Map m;
    m.begin = std::stoull(range.substr(0, dash), nullptr, 16);
    m.end = std::stoull(range.substr(dash + 1), nullptr, 16);
    m.perms = perms;
    m.anonymous = inode == "0" && path.empty();
    out.push_back(m);
  }
  return out;
}

int malloc_heaps(int pid) {
  const auto maps = maps_of(pid);
  int heaps = 0;
  for (std::size_t i = 0; i + 1 < maps.size(); ++i) {
    const Map& front = maps[i];
    const Map& back = maps[i + 1];
    if (front.anonymous && front.perms == "rw-p" && front.begin % kHeapAlign == 0 && back.anonymous &&
        back.perms == "---p" && back.begin == front.end && back.end <= front.begin + kHeapAlign) {
      ++heaps;
    }
  }
  return heaps;
}

// Starts arbiter with an evaluator (so its workers allocate too), makes
// calls (I/O threads, the storage thread, evaluations, the API workers),
// then counts the heaps.
int heaps_after_calls(GatewayOptions opts) {
  opts.top_extra = "evaluators:\n  - name: len\n    kind: response_length\n";
  GatewayHarness h(std::move(opts));
  auto proxy = h.proxy_client();
  for (int i = 0; i < 20; ++i) {
    auto res = proxy.request("POST", "/v1/chat/completions",
                             GatewayHarness::auth({{"Content-Type", "application/json"}}),
                             GatewayHarness::chat_body());
    EXPECT_EQ(res.status, 200) << res.body;
  }
  EXPECT_TRUE(wait_until([&] { return h.metric("arbiter_evaluator_completed_total{evaluator=\"len\"}") >= 20; },
                         std::chrono::seconds(20)));
  EXPECT_EQ(h.api_client().request("GET", "/v1/evaluators", GatewayHarness::api_auth()).status, 200);
  return malloc_heaps(h.process().pid());
}

class MallocArenas : public ::testing::Test {
 protected:
  void SetUp() override {
    // The sanitizers bring their own allocator: no glibc arenas to count.
    if (kSanitized) GTEST_SKIP() << "sanitized builds do not use glibc's malloc";
  }
};

TEST_F(MallocArenas, TwoByDefault) {
  // The main arena and one more: a single heap.
  EXPECT_EQ(heaps_after_calls({}), 1);
}

TEST_F(MallocArenas, ZeroLeavesGlibcsDefaultOfEightPerCore) {
  // Arbiter's ~50 threads then get an arena each, up to 8 per core: many
  // heaps. This is also what shows the count above can tell them apart.
  EXPECT_GE(heaps_after_calls({.server_extra = "  malloc_arenas: 0\n"}), 3);
}

TEST_F(MallocArenas, TheEnvironmentWinsOverTheConfig) {
  // MALLOC_ARENA_MAX=1: every thread shares the main arena, so no heap at
  // all; the configured 4 would have given three.
  EXPECT_EQ(heaps_after_calls({.server_extra = "  malloc_arenas: 4\n", .env = {{"MALLOC_ARENA_MAX", "1"}}}), 0);
}

}  // namespace
}  // namespace arbiter::testing
