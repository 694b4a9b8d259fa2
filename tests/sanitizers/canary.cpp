// A sanitized program that commits the error named by its argument, so that
// tests/integration/sanitizer_test.cpp can prove a report in a CHILD process is
// seen: the runtime options reach children (ctest ENVIRONMENT, inherited), the
// report lands in the child's stderr, and find_sanitizer_report() finds it.
// Built only in sanitized builds (tests/CMakeLists.txt).
//
//   sanitizer_canary clean | leak | heap-overflow | signed-overflow | race
//   sanitizer_canary --config FILE   stands in for `arbiter`: prints both
//                                    listening lines, waits for SIGTERM, leaks

#include <pthread.h>
#include <signal.h>

#include <climits>
#include <cstdio>
#include <string_view>
#include <thread>

namespace {

// Stores through volatile pointers keep the compiler from removing the bugs.
int* volatile g_leaked = nullptr;
volatile int g_int_max = INT_MAX;
int g_shared = 0;

int leak() {
  g_leaked = new int[16]{1};
  g_leaked = nullptr;  // the last pointer to the block is gone: LeakSanitizer at exit
  return 0;
}

int heap_overflow() {
  int* volatile block = new int[4]{};
  const int value = block[4];  // one past the end: AddressSanitizer
  delete[] block;
  return value;
}

int signed_overflow() {
  const int sum = g_int_max + 1;  // UBSan, cannot recover
  return sum == 0 ? 0 : 1;
}

int race() {
  // Two unsynchronized writers: ThreadSanitizer.
  std::thread a([] { g_shared = g_shared + 1; });
  std::thread b([] { g_shared = g_shared + 2; });
  a.join();
  b.join();
  return 0;
}

// What GatewayHarness waits for (tests/support/process.hpp): then a graceful
// stop that leaks, as an arbiter with a leak would at exit.
int fake_arbiter() {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, nullptr);
  std::printf("{\"event\":\"listening\",\"listener\":\"proxy\",\"address\":\"127.0.0.1:9\"}\n"
              "{\"event\":\"listening\",\"listener\":\"api\",\"address\":\"127.0.0.1:9\"}\n");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&term, &sig);
  return leak();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view what = argc > 1 ? argv[1] : "";
  if (what == "clean") return 0;
  if (what == "leak") return leak();
  if (what == "heap-overflow") return heap_overflow();
  if (what == "signed-overflow") return signed_overflow();
  if (what == "race") return race();
  if (what == "--config") return fake_arbiter();
  std::fprintf(stderr, "usage: sanitizer_canary clean|leak|heap-overflow|signed-overflow|race|--config FILE\n");
  return 2;
}
