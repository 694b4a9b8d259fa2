#pragma once
// Child processes for integration tests: start a program, capture its stdout
// as lines, await a line or the exit, signal it. Used to run the real `arbiter`
// binary and the fake upstream as separate processes.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace arbiter::testing {

// One child process with its stdout read line by line by a background thread.
//
// - argv[0] is run as given when it contains a '/', else looked up in PATH.
// - stdin is /dev/null; stdout goes through a pipe into stdout_lines() (a last
//   line without '\n' is kept too); stderr is appended to `stderr_file` when one
//   is given, else inherited.
// - The environment is the current one plus `extra_env` (which overrides).
// - The child gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the thread that
//   created it even if the test process is killed. Create a ChildProcess on a
//   thread that outlives it (the test body's thread is fine).
//
// Throws std::system_error when the program cannot be started (bad path, not
// executable, unreadable stderr file).
//
// Thread-safety: every member function may be called from any thread,
// concurrently. The destructor must not race with other calls. Lifetime: the
// destructor SIGKILLs the child if it still runs, reaps it, and joins both
// background threads; no fd, thread or zombie outlives the object. Only the
// direct child is killed: grandchildren (e.g. `sh -c 'x &'`) are not tracked.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv,
               std::vector<std::pair<std::string, std::string>> extra_env = {},
               std::filesystem::path stderr_file = {});
  ~ChildProcess();

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ChildProcess(ChildProcess&&) = delete;
  ChildProcess& operator=(ChildProcess&&) = delete;

  pid_t pid() const { return pid_; }

  // Returns the first stdout line (old or new) that satisfies `pred`. Returns
  // nullopt on timeout, or once the child has exited (or closed stdout) and all
  // it wrote was checked. `pred` runs with an internal lock held: keep it cheap
  // and do not call back into this object.
  std::optional<std::string> wait_for_line(const std::function<bool(const std::string&)>& pred,
                                           std::chrono::milliseconds timeout);

  // Every stdout line so far, in order.
  std::vector<std::string> stdout_lines() const;

  // Sends `sig` to the child; a no-op once it has exited (never hits a reused pid).
  void signal(int sig);

  // Exit code, or 128 + signal number when killed by a signal; nullopt on
  // timeout. Once it returns a value, stdout_lines() holds everything the child
  // wrote before exiting.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  bool running();

 private:
  void read_loop();
  void wait_loop();
  void wake_reader();
  // True when no more lines will arrive from the child itself. Needs mutex_.
  bool output_settled() const { return stdout_eof_ || drained_after_exit_; }

  pid_t pid_ = -1;
  int stdout_fd_ = -1;  // read end of the stdout pipe, non-blocking
  int wake_fd_ = -1;    // eventfd: "child exited" or "stop" for the reader

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
  std::string partial_;
  bool stdout_eof_ = false;
  bool drained_after_exit_ = false;
  bool stop_reader_ = false;
  std::optional<int> exit_code_;

  std::thread reader_;
  std::thread waiter_;
};

// A running `arbiter` whose listeners are both up.
struct ArbiterProcess {
  std::unique_ptr<ChildProcess> process;
  std::string proxy_address, api_address;  // "127.0.0.1:PORT"
  std::uint16_t proxy_port = 0, api_port = 0;
};

// Runs `binary --config config_file` and returns once both
// {"event":"listening","listener":"proxy"|"api",...} lines were printed.
// Throws std::runtime_error (with the exit status and the stdout seen) when the
// process exits or `timeout` passes first. `extra_env` as for ChildProcess.
ArbiterProcess start_arbiter(const std::filesystem::path& binary,
                             const std::filesystem::path& config_file,
                             std::chrono::milliseconds timeout = std::chrono::seconds(20),
                             std::filesystem::path stderr_file = {},
                             std::vector<std::pair<std::string, std::string>> extra_env = {});

// A running `fake_upstream` that is listening.
struct FakeUpstreamProcess {
  std::unique_ptr<ChildProcess> process;
  std::string address;  // "127.0.0.1:PORT"
  std::uint16_t port = 0;
};

// Runs `binary [args...]` (e.g. {"--threads", "2"}) and returns once it printed
// {"event":"listening","address":...}. Throws like start_arbiter.
FakeUpstreamProcess start_fake_upstream(
    const std::filesystem::path& binary, std::vector<std::string> args = {},
    std::chrono::milliseconds timeout = std::chrono::seconds(20),
    std::filesystem::path stderr_file = {});

// Parses a `{"event":"listening",...}` line. When `listener` is given the line
// must carry that "listener" value. Returns the "address" field.
std::optional<std::string> parse_listening_line(const std::string& line,
                                                const std::optional<std::string>& listener);

// The port of "host:port" or "[v6]:port"; throws std::invalid_argument.
std::uint16_t port_of(const std::string& address);

// A program built by this project: the value of environment variable `env_var`
// when set and non-empty, else `fallback`.
std::filesystem::path program_path(const char* env_var, const std::filesystem::path& fallback);

// Test targets get ARBITER_BINARY_DIR from tests/CMakeLists.txt; there the
// binaries are found next to each other, unless ARBITER_BINARY /
// FAKE_UPSTREAM_BINARY point elsewhere (e.g. at an installed or sanitizer
// build). Code without the macro (the support library itself, bench/) calls
// program_path() with its own fallback.
#ifdef ARBITER_BINARY_DIR
inline std::filesystem::path arbiter_binary() {
  return program_path("ARBITER_BINARY", ARBITER_BINARY_DIR "/arbiter");
}
inline std::filesystem::path fake_upstream_binary() {
  return program_path("FAKE_UPSTREAM_BINARY", ARBITER_BINARY_DIR "/fake_upstream");
}
#endif

}  // namespace arbiter::testing
