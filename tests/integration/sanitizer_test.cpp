// The sanitizer checks themselves (docs/reliability.md, "Sanitizers"): the
// report finder, and, in a sanitized build, that a report in a child process
// started by a test is found in its stderr and fails its exit status.

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/support/gateway_harness.hpp"
#include "tests/support/process.hpp"
#include "tests/support/sanitizer.hpp"
#include "tests/support/temp_dir.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;

TEST(SanitizerReport, FindsEachKindFromTheStartOfItsLine) {
  const std::vector<std::string> reports = {
      "==42==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000020",
      "==42==ERROR: LeakSanitizer: detected memory leaks",
      "WARNING: ThreadSanitizer: data race (pid=42)",
      "FATAL: ThreadSanitizer CHECK failed: x",
      "gateway/proxy.cpp:10:5: runtime error: signed integer overflow: 2147483647 + 1",
      "==42==ERROR: UndefinedBehaviorSanitizer: SEGV on unknown address",
  };
  for (const auto& report : reports) {
    const std::string text = "{\"event\":\"listening\"}\n" + report + "\n    #0 0x1 in f()\n";
    EXPECT_EQ(find_sanitizer_report(text), report + "\n    #0 0x1 in f()\n") << report;
    EXPECT_EQ(find_sanitizer_report(report), report);
  }
  // The earliest report wins; the excerpt is bounded.
  EXPECT_EQ(find_sanitizer_report("a\nWARNING: ThreadSanitizer: x\nb runtime error: y\n", 20),
            "WARNING: ThreadSanit");
}

TEST(SanitizerReport, OrdinaryOutputHasNone) {
  EXPECT_EQ(find_sanitizer_report(""), "");
  EXPECT_EQ(find_sanitizer_report("{\"level\":\"error\",\"msg\":\"storage write failed\"}\n"
                                  "arbiter: cannot open storage: IO error: lock hold by current process\n"
                                  "AddressSanitizer is mentioned, WARNING: but no report\n"),
            "");
  TempDir dir;
  EXPECT_EQ(sanitizer_report_in(dir.path() / "missing.stderr"), "");
}

#ifdef ARBITER_SANITIZER_CANARY
// A child that commits `what` exits non-zero and leaves a report in its
// stderr; a clean one leaves none. Proves the options reach children and that
// the harness's scan sees what they print.
void expect_child_report(const std::string& what) {
  TempDir dir;
  const auto err = dir.path() / (what + ".stderr");
  ChildProcess child({ARBITER_SANITIZER_CANARY, what}, {}, err);
  const auto code = child.wait_exit(60s);
  ASSERT_TRUE(code) << what;
  if (what == "clean") {
    EXPECT_EQ(*code, 0);
    EXPECT_EQ(sanitizer_report_in(err), "");
    return;
  }
  EXPECT_NE(*code, 0) << what;
  // Not printed on success: the test's own output must stay free of reports
  // (ctest's FAIL_REGULAR_EXPRESSION).
  EXPECT_FALSE(sanitizer_report_in(err).empty()) << what << ": no report in " << err.string();
}

TEST(SanitizerChild, AReportInAChildIsFoundAndFailsItsExit) {
  const std::string sanitizer = ARBITER_SANITIZED;
  expect_child_report("clean");
  if (sanitizer == "address") {
    expect_child_report("leak");
    expect_child_report("heap-overflow");
    expect_child_report("signed-overflow");
  } else {
    expect_child_report("race");
  }
}

// GatewayHarness stops its arbiter gracefully and fails the test on a report
// in its stderr: here "arbiter" is the canary, which leaks when it gets SIGTERM.
TEST(SanitizerChild, GatewayHarnessFailsTheTestWhenArbiterReports) {
  if (std::string(ARBITER_SANITIZED) != "address") GTEST_SKIP() << "the canary leaks, which only LeakSanitizer sees";
  ASSERT_EQ(::setenv("ARBITER_BINARY", ARBITER_SANITIZER_CANARY, 1), 0);
  EXPECT_NONFATAL_FAILURE({ GatewayHarness harness; }, "sanitizer report in arbiter's stderr");
  ::unsetenv("ARBITER_BINARY");
}
#endif

}  // namespace
}  // namespace arbiter::testing
