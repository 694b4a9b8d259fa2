// wake_latency: how long a thread takes to run after another CPU wakes it,
// while a low-priority neighbour keeps the sleeper's CPU busy. It measures the
// machine, not arbiter: the proxy's one-connection latency is a chain of such
// wake-ups (client -> I/O thread -> upstream -> I/O thread -> client), with the
// gateway's background threads (storage, evaluators, RocksDB) as neighbours.
//
//   build/release/bench/wake_latency [wakeups]
//
// For each neighbour it prints the wake-up latency percentiles:
//   none        the sleeper's CPU is idle (the cost of waking an idle CPU)
//   user        a SCHED_IDLE thread spinning in user mode
//   user+calls  the same, making a cheap system call every ~50 us
//   write 1MiB  a SCHED_IDLE thread writing 1 MiB pieces to a file
//   write 64KiB the same with 64 KiB pieces
// On a kernel without kernel preemption (CONFIG_PREEMPT_NONE, or
// preempt=none) a thread inside a system call keeps its CPU until the call
// ends, whatever its priority: "write 1MiB" shows what that costs.
// Needs 2 CPUs (exits 77 without them); the file goes to $TMPDIR (or /tmp)
// and is removed.
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

enum class Neighbour { kNone, kUser, kUserWithCalls, kWrite1M, kWrite64K };

struct Case {
  Neighbour neighbour;
  const char* name;
};

// The neighbour: runs on CPU 1 at SCHED_IDLE until stop is set.
void neighbour_loop(Neighbour kind, const std::atomic<bool>& stop, const std::string& file) {
  pin_to(1);
  sched_param param{};
  pthread_setschedparam(pthread_self(), SCHED_IDLE, &param);
  if (kind == Neighbour::kWrite1M || kind == Neighbour::kWrite64K) {
    const std::string piece(kind == Neighbour::kWrite1M ? (1u << 20) : (64u << 10), 'x');
    const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0) {
      std::perror("open");
      std::exit(1);
    }
    std::size_t written = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      if (::write(fd, piece.data(), piece.size()) < 0) {
        std::perror("write");
        std::exit(1);
      }
      written += piece.size();
      if (written >= (64u << 20)) {  // keep the file (and the page cache) small
        if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) std::exit(1);
        written = 0;
      }
    }
    ::close(fd);
    ::unlink(file.c_str());
    return;
  }
  volatile std::uint64_t sink = 0;
  std::int64_t last_call = now_ns();
  while (!stop.load(std::memory_order_relaxed)) {
    for (int i = 0; i < 1000; ++i) sink = sink + static_cast<std::uint64_t>(i);
    if (kind == Neighbour::kUserWithCalls && now_ns() - last_call > 50'000) {
      (void)::getppid();
      last_call = now_ns();
    }
  }
}

// Wakes a sleeper on CPU 1 from CPU 0 `count` times, 500 us apart; returns the
// latencies in microseconds, sorted.
std::vector<double> measure(Neighbour kind, int count, const std::string& file) {
  std::atomic<bool> stop{false};
  std::thread neighbour;
  if (kind != Neighbour::kNone) neighbour = std::thread(neighbour_loop, kind, std::cref(stop), file);

  const int efd = ::eventfd(0, 0);
  std::atomic<std::int64_t> sent_at{0};
  std::atomic<int> woken{0};
  std::vector<double> latencies;
  latencies.reserve(static_cast<std::size_t>(count));
  std::thread sleeper([&] {
    pin_to(1);
    for (int i = 0; i < count; ++i) {
      std::uint64_t value = 0;
      if (::read(efd, &value, sizeof value) != sizeof value) std::exit(1);
      latencies.push_back(static_cast<double>(now_ns() - sent_at.load()) / 1000.0);
      woken.fetch_add(1);
    }
  });

  pin_to(0);
  ::usleep(100'000);  // let the neighbour get going
  for (int i = 0; i < count; ++i) {
    ::usleep(500);
    sent_at.store(now_ns());
    const std::uint64_t one = 1;
    if (::write(efd, &one, sizeof one) != sizeof one) std::exit(1);
    while (woken.load() <= i) ::usleep(50);  // one wake-up at a time
  }
  sleeper.join();
  stop = true;
  if (neighbour.joinable()) neighbour.join();
  ::close(efd);
  std::sort(latencies.begin(), latencies.end());
  return latencies;
}

double percentile(const std::vector<double>& sorted, double p) {
  const auto index = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1));
  return sorted[index];
}

}  // namespace

int main(int argc, char** argv) {
  const int count = argc > 1 ? std::max(100, std::atoi(argv[1])) : 2000;
  if (std::thread::hardware_concurrency() < 2) {
    std::fprintf(stderr, "wake_latency needs 2 CPUs\n");
    return 77;  // ctest: skipped
  }
  const char* tmp = std::getenv("TMPDIR");
  const std::string file = std::string(tmp != nullptr ? tmp : "/tmp") + "/wake_latency." +
                           std::to_string(::getpid());
  const Case cases[] = {{Neighbour::kNone, "none"},
                        {Neighbour::kUser, "user"},
                        {Neighbour::kUserWithCalls, "user+calls"},
                        {Neighbour::kWrite1M, "write 1MiB"},
                        {Neighbour::kWrite64K, "write 64KiB"}};
  std::printf("%-12s %8s %8s %8s %8s   (wake-up latency, us; %d wake-ups each)\n", "neighbour", "p50",
              "p90", "p99", "max", count);
  for (const Case& c : cases) {
    const std::vector<double> l = measure(c.neighbour, count, file);
    std::printf("%-12s %8.0f %8.0f %8.0f %8.0f\n", c.name, percentile(l, 50), percentile(l, 90),
                percentile(l, 99), l.back());
  }
  return 0;
}
