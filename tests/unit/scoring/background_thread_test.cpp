// Background threads carry their names and run at server.background_nice,
// below the threads that start them (the I/O threads in the gateway), and
// they yield the CPU at their yield points.

#include "scoring/background_thread.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "scoring/request_log.hpp"
#include "scoring/score_store.hpp"
#include "tests/support/temp_dir.hpp"

namespace arbiter::scoring {
namespace {

using namespace std::chrono_literals;

// Name → nice value of this process's threads.
std::map<std::string, int> threads_by_name() {
  std::map<std::string, int> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (!std::getline(comm, name)) continue;
    const auto tid = static_cast<id_t>(std::stol(task.path().filename().string()));
    errno = 0;
    const int nice = getpriority(PRIO_PROCESS, tid);
    if (errno == 0) out[name] = nice;
  }
  return out;
}

int own_nice() {
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  EXPECT_EQ(errno, 0);
  return nice;
}

TEST(BackgroundThreads, TheLogAndScoreThreadsAreNamedAndNicedBelowTheirStarter) {
  ASSERT_EQ(own_nice(), 0) << "the test must start at nice 0";
  set_background_nice(7);
  arbiter::testing::TempDir dir;
  RequestLogOptions options;
  options.path = dir.path().string() + "/data";
  options.durability = Durability::kRelaxed;  // has the WAL sync thread
  RequestLog log(options);
  ScoreStore scores(log);

  const auto deadline = std::chrono::steady_clock::now() + 20s;
  std::map<std::string, int> threads;
  for (;;) {
    threads = threads_by_name();
    if ((threads.contains("arb-storage") && threads["arb-storage"] == 7 && threads.contains("arb-wal-sync") &&
         threads["arb-wal-sync"] == 7 && threads.contains("arb-scores") && threads["arb-scores"] == 7) ||
        std::chrono::steady_clock::now() > deadline) {
      break;
    }
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(threads["arb-storage"], 7);
  EXPECT_EQ(threads["arb-wal-sync"], 7);
  EXPECT_EQ(threads["arb-scores"], 7);
  EXPECT_EQ(own_nice(), 0);  // per thread: the starter keeps its priority
  set_background_nice(kDefaultBackgroundNice);
}

TEST(BackgroundThreads, SchedIdleAppliesToTheCallingThreadOnly) {
  std::thread([] {
    ASSERT_TRUE(set_thread_sched_idle());
    EXPECT_EQ(sched_getscheduler(static_cast<pid_t>(gettid())), SCHED_IDLE);
  }).join();
  EXPECT_EQ(sched_getscheduler(static_cast<pid_t>(gettid())), SCHED_OTHER);
}

TEST(BackgroundThreads, NiceValuesAreClampedAndNeverLowered) {
  set_background_nice(40);
  EXPECT_EQ(background_nice(), 19);
  set_background_nice(-3);
  EXPECT_EQ(background_nice(), 0);
  set_background_nice(kDefaultBackgroundNice);

  std::thread([] {
    ASSERT_TRUE(set_thread_nice(9));
    EXPECT_EQ(own_nice(), 9);
    // Raising the priority again is not this function's to do.
    ASSERT_TRUE(set_thread_nice(3));
    EXPECT_EQ(own_nice(), 9);
  }).join();
  EXPECT_EQ(own_nice(), 0);
}

// Yield points: with the quantum at 0, every yield point of a thread that
// opted in yields, so the counts are exact.
class YieldPoints : public ::testing::Test {
 protected:
  void SetUp() override { set_yield_quantum_us_for_testing(0); }
  void TearDown() override { set_yield_quantum_us_for_testing(-1); }
};

TEST_F(YieldPoints, OnlyThreadsThatOptedInYield) {
  const auto before = yields_made();
  std::thread([] {
    for (int i = 0; i < 5; ++i) yield_point();  // as on an I/O thread: never
  }).join();
  EXPECT_EQ(yields_made(), before);
  std::thread([] {
    enable_yield_points();
    for (int i = 0; i < 5; ++i) yield_point();
  }).join();
  EXPECT_EQ(yields_made(), before + 5);
  std::thread([] {
    enter_background_thread("arb-yield-test");  // every background thread opts in
    yield_point();
  }).join();
  EXPECT_EQ(yields_made(), before + 6);
}

}  // namespace
}  // namespace arbiter::scoring
