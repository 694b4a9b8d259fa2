// ChildProcess and start_arbiter, driven with /bin/sh scripts; the last tests
// run the real arbiter and fake_upstream binaries.

#include "tests/support/process.hpp"
#include "tests/support/sanitizer.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>

#include "tests/support/temp_dir.hpp"

namespace arbiter::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::unique_ptr<ChildProcess> shell(const std::string& script,
                                    std::vector<std::pair<std::string, std::string>> env = {},
                                    std::filesystem::path stderr_file = {}) {
  return std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", script},
                                        std::move(env), std::move(stderr_file));
}

auto equals(std::string expected) {
  return [expected = std::move(expected)](const std::string& line) { return line == expected; };
}

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::filesystem::path write_script(const std::filesystem::path& file, const std::string& body) {
  {
    std::ofstream out(file);
    out << "#!/bin/sh\n" << body;
  }
  std::filesystem::permissions(file, std::filesystem::perms::owner_all);
  return file;
}

// True when `pid` is neither running nor a zombie of ours.
bool reaped(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) < 0 && errno == ECHILD;
}

TEST(ChildProcess, CapturesStdoutLinesInOrder) {
  auto child = shell("printf 'one\\ntwo\\r\\n\\nthree'");  // last line has no '\n'
  ASSERT_EQ(child->wait_exit(10s), 0);
  EXPECT_EQ(child->stdout_lines(), (std::vector<std::string>{"one", "two", "", "three"}));
}

TEST(ChildProcess, CapturesManyLines) {
  auto child = shell("i=0; while [ $i -lt 5000 ]; do echo line-$i; i=$((i+1)); done");
  ASSERT_EQ(child->wait_exit(30s), 0);
  auto lines = child->stdout_lines();
  ASSERT_EQ(lines.size(), 5000u);
  for (std::size_t i = 0; i < lines.size(); ++i) ASSERT_EQ(lines[i], "line-" + std::to_string(i));
}

TEST(ChildProcess, WaitForLineReturnsFirstMatchAndKeepsLines) {
  auto child = shell("echo a; echo ready-1; echo ready-2; exec sleep 30");
  auto line =
      child->wait_for_line([](const std::string& l) { return l.rfind("ready-", 0) == 0; }, 10s);
  ASSERT_TRUE(line);
  EXPECT_EQ(*line, "ready-1");
  // Earlier lines stay visible to later waits.
  EXPECT_EQ(child->wait_for_line(equals("a"), 10s), "a");
  EXPECT_EQ(child->wait_for_line(equals("ready-2"), 10s), "ready-2");
  EXPECT_TRUE(child->running());
}

TEST(ChildProcess, WaitForLineTimesOut) {
  auto child = shell("echo hello; exec sleep 30");
  ASSERT_EQ(child->wait_for_line(equals("hello"), 10s), "hello");
  const auto start = Clock::now();
  EXPECT_EQ(child->wait_for_line(equals("never"), 200ms), std::nullopt);
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 5s);
  EXPECT_TRUE(child->running());
  EXPECT_EQ(child->wait_exit(100ms), std::nullopt);
}

TEST(ChildProcess, WaitForLineReturnsEarlyWhenChildExits) {
  auto child = shell("echo a; exit 0");
  const auto start = Clock::now();
  EXPECT_EQ(child->wait_for_line(equals("b"), 30s), std::nullopt);
  EXPECT_LT(Clock::now() - start, 10s);
  EXPECT_EQ(child->wait_exit(10s), 0);
  EXPECT_EQ(child->stdout_lines(), std::vector<std::string>{"a"});
}

TEST(ChildProcess, LineWrittenJustBeforeExitIsSeen) {
  auto child = shell("printf 'last'");
  EXPECT_EQ(child->wait_for_line(equals("last"), 10s), "last");
}

TEST(ChildProcess, ReportsExitCodes) {
  EXPECT_EQ(shell("exit 0")->wait_exit(10s), 0);
  EXPECT_EQ(shell("exit 3")->wait_exit(10s), 3);
  EXPECT_EQ(shell("exit 255")->wait_exit(10s), 255);
  EXPECT_EQ(shell("kill -KILL $$")->wait_exit(10s), 128 + SIGKILL);
}

TEST(ChildProcess, SignalTerminatesChild) {
  auto child = shell("echo ready; exec sleep 30");
  ASSERT_TRUE(child->wait_for_line(equals("ready"), 10s));
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 128 + SIGTERM);
  EXPECT_FALSE(child->running());
  child->signal(SIGTERM);  // after exit: a no-op, not an error
}

TEST(ChildProcess, SignalIsDeliveredToHandler) {
  // `wait` is interruptible, so the trap runs as soon as SIGTERM arrives. The
  // background sleep holds stdout open: exit must still be observed.
  auto child = shell(
      "trap 'kill $pid; echo got-term; exit 7' TERM; sleep 30 & pid=$!; echo ready; "
      "wait $pid");
  ASSERT_TRUE(child->wait_for_line(equals("ready"), 10s));
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 7);
  EXPECT_EQ(child->stdout_lines(), (std::vector<std::string>{"ready", "got-term"}));
}

TEST(ChildProcess, ExitSeenWhileGrandchildHoldsStdout) {
  auto child = shell("(exec sleep 3) & echo parent-done");
  EXPECT_EQ(child->wait_exit(10s), 0);
  EXPECT_EQ(child->stdout_lines(), std::vector<std::string>{"parent-done"});
  const auto start = Clock::now();
  EXPECT_EQ(child->wait_for_line(equals("never"), 10s), std::nullopt);
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST(ChildProcess, PassesExtraEnvironment) {
  ::setenv("ARBITER_PROCESS_TEST_OVERRIDE", "parent", 1);
  ::setenv("ARBITER_PROCESS_TEST_INHERITED", "inherited", 1);
  auto child = shell(
      "echo \"$ARBITER_PROCESS_TEST_NEW|$ARBITER_PROCESS_TEST_OVERRIDE|"
      "$ARBITER_PROCESS_TEST_INHERITED\"",
      {{"ARBITER_PROCESS_TEST_NEW", "new value"}, {"ARBITER_PROCESS_TEST_OVERRIDE", "child"}});
  ASSERT_EQ(child->wait_exit(10s), 0);
  EXPECT_EQ(child->stdout_lines(), std::vector<std::string>{"new value|child|inherited"});
  ::unsetenv("ARBITER_PROCESS_TEST_OVERRIDE");
  ::unsetenv("ARBITER_PROCESS_TEST_INHERITED");
}

TEST(ChildProcess, AppendsStderrToFile) {
  TempDir dir;
  const auto log = dir.path() / "stderr.log";
  EXPECT_EQ(shell("echo first >&2; echo out", {}, log)->wait_exit(10s), 0);
  auto second = shell("echo second >&2", {}, log);
  EXPECT_EQ(second->wait_exit(10s), 0);
  EXPECT_EQ(read_file(log), "first\nsecond\n");
  EXPECT_TRUE(second->stdout_lines().empty());
}

TEST(ChildProcess, StdinIsDevNull) {
  auto child = shell("if read x; then echo got-input; else echo eof; fi");
  ASSERT_EQ(child->wait_exit(10s), 0);
  EXPECT_EQ(child->stdout_lines(), std::vector<std::string>{"eof"});
}

TEST(ChildProcess, ResolvesProgramInPath) {
  ChildProcess child({"sh", "-c", "echo via-path"});
  ASSERT_EQ(child.wait_exit(10s), 0);
  EXPECT_EQ(child.stdout_lines(), std::vector<std::string>{"via-path"});
}

TEST(ChildProcess, ThrowsWhenProgramCannotStart) {
  TempDir dir;
  EXPECT_THROW(ChildProcess({(dir.path() / "missing").string()}), std::system_error);
  EXPECT_THROW(ChildProcess({"arbiter-no-such-program-in-path"}), std::system_error);
  const auto not_executable = dir.path() / "plain.txt";
  std::ofstream(not_executable) << "x";
  EXPECT_THROW(ChildProcess({not_executable.string()}), std::system_error);
  EXPECT_THROW(ChildProcess(std::vector<std::string>{}), std::invalid_argument);
}

TEST(ChildProcess, DestructorKillsAndReapsRunningChild) {
  pid_t pid;
  const auto start = Clock::now();
  {
    auto child = shell("echo up; exec sleep 30");
    ASSERT_TRUE(child->wait_for_line(equals("up"), 10s));
    pid = child->pid();
    EXPECT_EQ(::kill(pid, 0), 0);
  }
  EXPECT_LT(Clock::now() - start, 10s);
  EXPECT_TRUE(reaped(pid));
}

TEST(ChildProcess, DestructorReapsExitedChild) {
  pid_t pid;
  {
    auto child = shell("exit 0");
    pid = child->pid();
    ASSERT_EQ(child->wait_exit(10s), 0);
  }
  EXPECT_TRUE(reaped(pid));
}

std::size_t open_fd_count() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++count;
  }
  return count;
}

TEST(ChildProcess, ClosesEveryFileDescriptor) {
  TempDir dir;
  const auto before = open_fd_count();
  for (int i = 0; i < 5; ++i) {
    auto running = shell("echo up; exec sleep 30", {}, dir.path() / "stderr.log");
    ASSERT_TRUE(running->wait_for_line(equals("up"), 10s));
    EXPECT_EQ(shell("exit 0")->wait_exit(10s), 0);
    EXPECT_THROW(ChildProcess({(dir.path() / "missing").string()}), std::system_error);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ChildProcess, ConcurrentWaiters) {
  auto child = shell(
      "echo start; read x < /dev/null; i=0; while [ $i -lt 20 ]; do echo n$i; "
      "i=$((i+1)); done; exit 5");
  std::atomic<int> found{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      if (child->wait_for_line(equals("n" + std::to_string(i * 5)), 10s)) ++found;
    });
  }
  EXPECT_EQ(child->wait_exit(10s), 5);
  for (auto& t : threads) t.join();
  EXPECT_EQ(found.load(), 4);
}

TEST(ParseListeningLine, AcceptsOnlyListeningEvents) {
  const std::string proxy =
      R"({"event":"listening","listener":"proxy","address":"127.0.0.1:8787"})";
  EXPECT_EQ(parse_listening_line(proxy, "proxy"), "127.0.0.1:8787");
  EXPECT_EQ(parse_listening_line(proxy, std::nullopt), "127.0.0.1:8787");
  EXPECT_EQ(parse_listening_line(proxy, "api"), std::nullopt);
  EXPECT_EQ(parse_listening_line(R"({"event":"listening","address":"127.0.0.1:1"})", std::nullopt),
            "127.0.0.1:1");
  EXPECT_EQ(parse_listening_line(R"({"event":"stopped","address":"127.0.0.1:1"})", std::nullopt),
            std::nullopt);
  EXPECT_EQ(parse_listening_line("not json", std::nullopt), std::nullopt);
  EXPECT_EQ(parse_listening_line("[1,2]", std::nullopt), std::nullopt);
  EXPECT_EQ(parse_listening_line(R"({"event":"listening","address":5})", std::nullopt),
            std::nullopt);
}

TEST(PortOf, ParsesHostPort) {
  EXPECT_EQ(port_of("127.0.0.1:8787"), 8787);
  EXPECT_EQ(port_of("[::1]:443"), 443);
  EXPECT_THROW(port_of("127.0.0.1"), std::invalid_argument);
  EXPECT_THROW(port_of("127.0.0.1:"), std::invalid_argument);
  EXPECT_THROW(port_of("127.0.0.1:70000"), std::invalid_argument);
  EXPECT_THROW(port_of("127.0.0.1:80x"), std::invalid_argument);
}

TEST(StartArbiter, ParsesBothListeningLinesFromAStandIn) {
  TempDir dir;
  // Log noise and the api line first: order must not matter.
  const auto fake = write_script(dir.path() / "arbiter", R"(
[ "$1" = --config ] && [ -f "$2" ] || exit 64
echo 'starting up'
echo '{"event":"listening","listener":"api","address":"127.0.0.1:4321"}'
echo '{"event":"listening","listener":"proxy","address":"127.0.0.1:1234"}'
exec sleep 30
)");
  const auto config = dir.path() / "arbiter.yaml";
  std::ofstream(config) << "server: {}\n";
  auto arbiter = start_arbiter(fake, config, 10s);
  EXPECT_EQ(arbiter.proxy_address, "127.0.0.1:1234");
  EXPECT_EQ(arbiter.proxy_port, 1234);
  EXPECT_EQ(arbiter.api_address, "127.0.0.1:4321");
  EXPECT_EQ(arbiter.api_port, 4321);
  EXPECT_TRUE(arbiter.process->running());
}

TEST(StartArbiter, ThrowsWithDiagnosticsWhenTheBinaryExits) {
  TempDir dir;
  const auto fake = write_script(dir.path() / "arbiter", R"(
echo '{"event":"listening","listener":"proxy","address":"127.0.0.1:1234"}'
echo 'config.yaml:3: unknown key "sever"' >&2
exit 2
)");
  const auto log = dir.path() / "stderr.log";
  try {
    start_arbiter(fake, dir.path() / "config.yaml", 10s, log);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("exited with status 2"), std::string::npos) << what;
    EXPECT_NE(what.find("\"api\""), std::string::npos) << what;
    EXPECT_NE(what.find("unknown key"), std::string::npos) << what;
  }
}

TEST(StartArbiter, ThrowsOnTimeoutAndKillsTheProcess) {
  TempDir dir;
  const auto fake = write_script(dir.path() / "arbiter", "echo booting; exec sleep 30\n");
  const auto start = Clock::now();
  std::string what;
  try {
    start_arbiter(fake, dir.path() / "config.yaml", 300ms);
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  EXPECT_LT(Clock::now() - start, 10s);
  EXPECT_NE(what.find("did not print within 300 ms"), std::string::npos) << what;
  // "arbiter (pid N) ...": the process must be gone once start_arbiter threw.
  const auto open = what.find("(pid ");
  ASSERT_NE(open, std::string::npos) << what;
  EXPECT_TRUE(reaped(static_cast<pid_t>(std::stol(what.substr(open + 5)))));
}

// --- the real binaries -------------------------------------------------------

TEST(StartArbiter, RealBinaryListensAndDrainsOnSigterm) {
  TempDir dir;
  auto upstream = start_fake_upstream(fake_upstream_binary(), {"--threads", "1"}, 20s,
                                      dir.path() / "fake_upstream.stderr");
  ASSERT_GT(upstream.port, 0);

  const auto config = dir.path() / "arbiter.yaml";
  std::ofstream(config) << "server:\n"
                           "  proxy_listen: 127.0.0.1:0\n"
                           "  api_listen: 127.0.0.1:0\n"
                           "  threads: 2\n"
                           "storage: { path: "
                        << (dir.path() / "data").string()
                        << " }\n"
                           "upstreams:\n"
                           "  - name: openai\n"
                           "    base_url: http://"
                        << upstream.address
                        << "\n"
                           "projects:\n"
                           "  - name: default\n"
                           "    api_keys: [ \"process-test-key\" ]\n"
                           "evaluators: []\n"
                           "webhooks: []\n";
  const auto log = dir.path() / "arbiter.stderr";
  auto arbiter = start_arbiter(arbiter_binary(), config, 20s, log);
  EXPECT_GT(arbiter.proxy_port, 0);
  EXPECT_GT(arbiter.api_port, 0);
  EXPECT_NE(arbiter.proxy_port, arbiter.api_port);
  EXPECT_EQ(arbiter.proxy_address, "127.0.0.1:" + std::to_string(arbiter.proxy_port));

  arbiter.process->signal(SIGTERM);
  EXPECT_EQ(arbiter.process->wait_exit(30s), 0) << read_file(log);
  EXPECT_EQ(sanitizer_report_in(log), "");
  upstream.process->signal(SIGTERM);
  EXPECT_EQ(upstream.process->wait_exit(30s), 0);
  EXPECT_EQ(sanitizer_report_in(dir.path() / "fake_upstream.stderr"), "");
}

}  // namespace
}  // namespace arbiter::testing
