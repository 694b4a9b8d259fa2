#include "scoring/background_thread.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace arbiter::scoring {

namespace {
std::atomic<int> g_background_nice{kDefaultBackgroundNice};
std::atomic<long long> g_yield_quantum_ns{kYieldQuantumUs * 1000};
std::atomic<std::uint64_t> g_yields{0};
thread_local bool t_yields = false;
thread_local long long t_last_yield_ns = 0;

long long monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void enable_yield_points() {
  t_yields = true;
  t_last_yield_ns = monotonic_ns();
}

void yield_point() {
  if (!t_yields) return;
  const long long now = monotonic_ns();
  if (now - t_last_yield_ns < g_yield_quantum_ns.load(std::memory_order_relaxed)) return;
  sched_yield();
  g_yields.fetch_add(1, std::memory_order_relaxed);
  t_last_yield_ns = monotonic_ns();
}

std::uint64_t yields_made() { return g_yields.load(std::memory_order_relaxed); }

void set_yield_quantum_us_for_testing(long us) {
  g_yield_quantum_ns.store(us < 0 ? kYieldQuantumUs * 1000 : static_cast<long long>(us) * 1000,
                           std::memory_order_relaxed);
}

int background_nice() { return g_background_nice.load(std::memory_order_relaxed); }

void set_background_nice(int nice) { g_background_nice.store(std::clamp(nice, 0, 19), std::memory_order_relaxed); }

void name_thread(const char* name) {
  char short_name[16];
  std::strncpy(short_name, name, sizeof short_name - 1);
  short_name[sizeof short_name - 1] = '\0';
  (void)pthread_setname_np(pthread_self(), short_name);
}

bool set_thread_nice(int nice) {
  // setpriority on a thread id changes that thread only (Linux). Never
  // raises the priority (a process started niced stays at least as nice).
  const auto tid = static_cast<id_t>(gettid());
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, tid);
  if (errno != 0) return false;
  return setpriority(PRIO_PROCESS, tid, std::max(current, std::clamp(nice, 0, 19))) == 0;
}

bool set_thread_sched_idle() {
  const sched_param param{};  // priority 0, the only one SCHED_IDLE has
  return sched_setscheduler(static_cast<pid_t>(gettid()), SCHED_IDLE, &param) == 0;
}

void enter_background_thread(const char* name) {
  name_thread(name);
  enable_yield_points();
  if (const int nice = background_nice(); nice > 0) (void)set_thread_nice(nice);  // else: only the preference is lost
}

}  // namespace arbiter::scoring
