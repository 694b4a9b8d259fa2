#include "tests/support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace arbiter::testing {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// Owns one file descriptor; closes it unless released.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// argv[0] as given when it has a '/', else the first executable match in PATH
// (resolved before fork so the child only calls async-signal-safe functions).
std::string resolve_program(const std::string& name) {
  if (name.empty()) throw_errno(ENOENT, "empty program name");
  if (name.find('/') != std::string::npos) return name;
  const char* path_env = std::getenv("PATH");
  std::string path = path_env != nullptr && *path_env != '\0' ? path_env : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  throw_errno(ENOENT, "program not found in PATH: " + name);
}

std::vector<std::string> build_environment(
    const std::vector<std::pair<std::string, std::string>>& extra_env) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view kv(*entry);
    std::string_view key = kv.substr(0, kv.find('='));
    bool overridden = false;
    for (const auto& [name, value] : extra_env) overridden = overridden || key == name;
    if (!overridden) env.emplace_back(kv);
  }
  for (const auto& [name, value] : extra_env) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the forked child: only async-signal-safe calls from here to execve.
void child_redirect(int from, int to) {
  if (from == to) {
    ::fcntl(to, F_SETFD, 0);  // dup2 onto itself would leave FD_CLOEXEC set
  } else {
    ::dup2(from, to);
  }
}

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string read_tail(const std::filesystem::path& file, std::size_t max_bytes) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                                   ? size - static_cast<std::streamoff>(max_bytes)
                                   : 0;
  in.seekg(start);
  std::string tail((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return tail;
}

// Waits for the listening line of `listener` (nullopt: the fake upstream's line,
// which has no "listener" field) and returns its address, or throws.
std::string await_listening(ChildProcess& process, const std::string& program_name,
                            const std::optional<std::string>& listener, Clock::time_point deadline,
                            std::chrono::milliseconds timeout,
                            const std::filesystem::path& stderr_file) {
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (remaining < std::chrono::milliseconds(0)) remaining = std::chrono::milliseconds(0);
  auto line = process.wait_for_line(
      [&](const std::string& l) { return parse_listening_line(l, listener).has_value(); },
      remaining);
  if (line) return *parse_listening_line(*line, listener);

  // wait_for_line also gives up when stdout reaches EOF, which may be seen a
  // moment before the exit status: give the exit a chance to be reported.
  remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  std::ostringstream message;
  message << program_name << " (pid " << process.pid() << ") ";
  if (auto code = process.wait_exit(std::max(remaining, std::chrono::milliseconds(200)))) {
    message << "exited with status " << *code << " before";
  } else {
    message << "did not print within " << timeout.count() << " ms";
  }
  message << " its listening line";
  if (listener) message << " for listener \"" << *listener << "\"";
  message << ".\nstdout:\n";
  for (const auto& l : process.stdout_lines()) message << "  " << l << "\n";
  if (!stderr_file.empty()) {
    message << "stderr (" << stderr_file.string() << ", tail):\n" << read_tail(stderr_file, 4096);
  }
  throw std::runtime_error(message.str());
}

}  // namespace

ChildProcess::ChildProcess(std::vector<std::string> argv,
                           std::vector<std::pair<std::string, std::string>> extra_env,
                           std::filesystem::path stderr_file) {
  if (argv.empty()) throw std::invalid_argument("ChildProcess: empty argv");
  const std::string program = resolve_program(argv[0]);
  std::vector<std::string> env = build_environment(extra_env);
  std::vector<char*> argv_ptrs = c_strings(argv);
  std::vector<char*> env_ptrs = c_strings(env);

  // Every fd is O_CLOEXEC so that children spawned concurrently by other
  // threads never inherit our pipe ends (which would delay EOF).
  UniqueFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (dev_null.get() < 0) throw_errno(errno, "open /dev/null");
  UniqueFd stderr_fd;
  if (!stderr_file.empty()) {
    stderr_fd.reset(::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (stderr_fd.get() < 0) throw_errno(errno, "open " + stderr_file.string());
  }
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  // The child writes errno here when execve fails; EOF means exec succeeded.
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
  UniqueFd exec_read(exec_pipe[0]), exec_write(exec_pipe[1]);
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (wake.get() < 0) throw_errno(errno, "eventfd");
  if (::fcntl(out_read.get(), F_SETFL, O_NONBLOCK) != 0) throw_errno(errno, "fcntl O_NONBLOCK");

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno(errno, "fork");
  if (pid == 0) {
    // Die with the parent even when it is SIGKILLed (e.g. a ctest timeout).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    child_redirect(dev_null.get(), STDIN_FILENO);
    child_redirect(out_write.get(), STDOUT_FILENO);
    if (stderr_fd.get() >= 0) child_redirect(stderr_fd.get(), STDERR_FILENO);
    ::execve(program.c_str(), argv_ptrs.data(), env_ptrs.data());
    const int err = errno;
    [[maybe_unused]] auto n = ::write(exec_write.get(), &err, sizeof err);
    ::_exit(127);
  }

  out_write.reset();
  exec_write.reset();
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_read.get(), &exec_errno, sizeof exec_errno);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    throw_errno(exec_errno, "execve " + program);
  }

  pid_ = pid;
  stdout_fd_ = out_read.release();
  wake_fd_ = wake.release();
  try {
    waiter_ = std::thread([this] { wait_loop(); });
    reader_ = std::thread([this] { read_loop(); });
  } catch (...) {
    // Out of threads: undo everything the destructor would have done.
    {
      std::lock_guard lock(mutex_);
      stop_reader_ = true;
    }
    if (!waiter_.joinable()) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    } else {
      signal(SIGKILL);
      waiter_.join();
    }
    ::close(stdout_fd_);
    ::close(wake_fd_);
    throw;
  }
}

ChildProcess::~ChildProcess() {
  signal(SIGKILL);
  waiter_.join();  // reaps the child
  {
    std::lock_guard lock(mutex_);
    stop_reader_ = true;
  }
  wake_reader();
  reader_.join();
  ::close(stdout_fd_);
  ::close(wake_fd_);
}

void ChildProcess::wake_reader() {
  const std::uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the reader wakes anyway.
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void ChildProcess::wait_loop() {
  // Wait without reaping, then reap under the lock: while exit_code_ is unset
  // the pid still belongs to our (possibly zombie) child, so signal() can never
  // hit a reused pid.
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT);
  } while (rc != 0 && errno == EINTR);
  {
    std::lock_guard lock(mutex_);
    int status = 0;
    pid_t reaped;
    do {
      reaped = ::waitpid(pid_, &status, 0);
    } while (reaped < 0 && errno == EINTR);
    // -1: someone else reaped it (SIGCHLD ignored or a foreign waitpid(-1)).
    exit_code_ = reaped == pid_ ? decode_wait_status(status) : -1;
  }
  changed_.notify_all();
  wake_reader();
}

void ChildProcess::read_loop() {
  std::vector<char> buffer(64 * 1024);
  pollfd fds[2] = {{stdout_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  bool stdout_open = true;
  for (;;) {
    const nfds_t count = stdout_open ? 2 : 1;
    pollfd* watched = stdout_open ? fds : fds + 1;
    if (::poll(watched, count, -1) < 0) {
      if (errno == EINTR) continue;
      break;  // cannot happen with valid fds; treat as EOF below
    }
    std::uint64_t ignored;
    [[maybe_unused]] auto w = ::read(wake_fd_, &ignored, sizeof ignored);

    // Snapshot "exited" before draining: everything the child wrote before it
    // exited is then in the pipe and is read by the drain below.
    bool exited;
    bool drained_before;
    {
      std::lock_guard lock(mutex_);
      if (stop_reader_) return;
      exited = exit_code_.has_value();
      drained_before = drained_after_exit_;
    }

    bool eof = false;
    std::string chunk;
    while (stdout_open) {
      const ssize_t n = ::read(stdout_fd_, buffer.data(), buffer.size());
      if (n > 0) {
        chunk.append(buffer.data(), static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      eof = true;  // n == 0, or a read error: no more output either way
      break;
    }

    {
      std::lock_guard lock(mutex_);
      partial_ += chunk;
      std::size_t start = 0;
      for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::size_t end = nl;
        if (end > start && partial_[end - 1] == '\r') --end;
        lines_.emplace_back(partial_, start, end - start);
      }
      partial_.erase(0, start);
      const bool settle = eof || (exited && !drained_before);
      if (settle && !partial_.empty()) lines_.push_back(std::exchange(partial_, {}));
      if (eof) stdout_eof_ = true;
      if (exited) drained_after_exit_ = true;
    }
    changed_.notify_all();
    if (eof) stdout_open = false;
    // After EOF the thread only waits for the stop request (the destructor),
    // so it never outlives the object and never spins.
  }
  std::lock_guard lock(mutex_);
  stdout_eof_ = true;
  changed_.notify_all();
}

std::optional<std::string> ChildProcess::wait_for_line(
    const std::function<bool(const std::string&)>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mutex_);
  std::size_t checked = 0;
  for (;;) {
    for (; checked < lines_.size(); ++checked) {
      if (pred(lines_[checked])) return lines_[checked];
    }
    if (output_settled() || Clock::now() >= deadline) return std::nullopt;
    changed_.wait_until(lock, deadline);
  }
}

std::vector<std::string> ChildProcess::stdout_lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

void ChildProcess::signal(int sig) {
  std::lock_guard lock(mutex_);
  if (!exit_code_) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, timeout,
                         [&] { return exit_code_.has_value() && output_settled(); })) {
    return std::nullopt;
  }
  return exit_code_;
}

bool ChildProcess::running() {
  std::lock_guard lock(mutex_);
  return !exit_code_.has_value();
}

std::optional<std::string> parse_listening_line(const std::string& line,
                                                const std::optional<std::string>& listener) {
  auto json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return std::nullopt;
  auto text = [&](const char* key) -> std::optional<std::string> {
    auto it = json.find(key);
    if (it == json.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  if (text("event") != "listening") return std::nullopt;
  if (listener && text("listener") != *listener) return std::nullopt;
  return text("address");
}

std::uint16_t port_of(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("no port in address: " + address);
  unsigned value = 0;
  const char* first = address.data() + colon + 1;
  const char* last = address.data() + address.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc() || ptr != last || first == last || value > 65535) {
    throw std::invalid_argument("bad port in address: " + address);
  }
  return static_cast<std::uint16_t>(value);
}

std::filesystem::path program_path(const char* env_var, const std::filesystem::path& fallback) {
  const char* value = std::getenv(env_var);
  if (value != nullptr && *value != '\0') return value;
  return fallback;
}

ArbiterProcess start_arbiter(const std::filesystem::path& binary,
                             const std::filesystem::path& config_file,
                             std::chrono::milliseconds timeout, std::filesystem::path stderr_file,
                             std::vector<std::pair<std::string, std::string>> extra_env) {
  const auto deadline = Clock::now() + timeout;
  ArbiterProcess result;
  result.process = std::make_unique<ChildProcess>(
      std::vector<std::string>{binary.string(), "--config", config_file.string()}, std::move(extra_env),
      stderr_file);
  result.proxy_address =
      await_listening(*result.process, "arbiter", "proxy", deadline, timeout, stderr_file);
  result.api_address =
      await_listening(*result.process, "arbiter", "api", deadline, timeout, stderr_file);
  result.proxy_port = port_of(result.proxy_address);
  result.api_port = port_of(result.api_address);
  return result;
}

FakeUpstreamProcess start_fake_upstream(const std::filesystem::path& binary,
                                        std::vector<std::string> args,
                                        std::chrono::milliseconds timeout,
                                        std::filesystem::path stderr_file) {
  const auto deadline = Clock::now() + timeout;
  std::vector<std::string> argv{binary.string()};
  argv.insert(argv.end(), std::make_move_iterator(args.begin()),
              std::make_move_iterator(args.end()));
  FakeUpstreamProcess result;
  result.process = std::make_unique<ChildProcess>(
      std::move(argv), std::vector<std::pair<std::string, std::string>>{}, stderr_file);
  result.address = await_listening(*result.process, "fake_upstream", std::nullopt, deadline,
                                   timeout, stderr_file);
  result.port = port_of(result.address);
  return result;
}

}  // namespace arbiter::testing
