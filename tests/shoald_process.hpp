// Test helper: runs the real shoald binary (or the C yardstick, which prints
// the same lines) as a child process with a temporary YAML config, collects
// its output on a reader thread and learns the ephemeral ports from its
// "listening on" lines. The unit tests and shoal-load's black-box tests share
// it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace shoal::test {

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string output;  // stdout and stderr together
};

// Runs `binary` with `args` to completion (killed after `timeout`).
RunResult run_program(const std::string& binary, const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout);

// Runs shoald with `args` to completion (at most `timeout`).
RunResult run_shoald(const std::vector<std::string>& args,
                     std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Runs a shell command line to its end; stdout and stderr together. Bound
// it with timeout(1) in the command when it could hang.
RunResult run_command(const std::string& command);

// Writes `text` to a fresh temporary file and returns its path; removed at
// process exit is not attempted (files live under the test's temp dir).
std::string write_temp_file(const std::string& text, const std::string& suffix = ".yaml");

// One entry of a config's `listeners:` list on 127.0.0.1 port 0; `extra`
// holds more of its keys, each line indented by four spaces.
std::string loopback_listener(const std::string& name, const std::string& protocol,
                              const std::string& extra = "");

// Connections served by each shard, from the "shard N: served M
// connections" lines shoald prints when it stops.
std::vector<std::uint64_t> served_per_shard(const std::string& output);

class ShoaldProcess {
 public:
  struct Options {
    // The config file's content. One without a top-level `admin:` key gets
    // `admin: {port: 0}` appended: the default admin port is a fixed one
    // (7070), which tests running side by side would fight over.
    std::string yaml;
    std::vector<std::string> extra_args;  // after --config FILE
    // When set, the whole command line after the binary instead of
    // `--config FILE` and extra_args (the yardstick takes no config file).
    std::optional<std::vector<std::string>> args;
    std::optional<rlim_t> nofile;         // RLIMIT_NOFILE (soft = hard) set before exec
    bool wait_ready = true;               // wait for the "ready:" line
    std::vector<std::pair<std::string, std::string>> env;  // set in the child
    // The executable: shoald unless a test names another build of it
    // (SHOALD_FAULTS_PATH, shoald with fault injection).
    std::string binary = SHOALD_PATH;
  };

  explicit ShoaldProcess(Options options);
  ~ShoaldProcess();
  ShoaldProcess(const ShoaldProcess&) = delete;
  ShoaldProcess& operator=(const ShoaldProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The config file shoald was started with (a test may rewrite it and
  // send SIGHUP).
  const std::string& config_path() const { return config_path_; }
  // Port of the listener named `name` (from the "listening on" line; the
  // yardstick names its listeners by protocol: "tcp-echo", "websocket-echo").
  std::uint16_t port(const std::string& name) const;
  // Port of the admin HTTP listener (from the "admin listening on" line);
  // throws when there was none.
  std::uint16_t admin_port() const;

  // Waits until a line containing `needle` was printed; false on timeout.
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout);
  std::string output() const;

  // Sends `sig`.
  void signal(int sig);
  // Waits for exit; returns the exit code, or -1 on timeout/killed by signal.
  int wait_exit(std::chrono::milliseconds timeout);

  // CPU time (user + system) the process has used so far, from /proc.
  std::chrono::milliseconds cpu_time() const;

 private:
  void read_loop(int fd);

  pid_t pid_ = -1;
  std::string config_path_;
  bool exited_ = false;
  int status_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;
  bool eof_ = false;  // shoald's output ended (it exited)
  std::map<std::string, std::uint16_t> ports_;
  std::optional<std::uint16_t> admin_port_;
};

// A loopback TCP port that was free a moment ago: bound to 127.0.0.1:0, read
// and released. For configs that cannot say port 0 (the admin port).
std::uint16_t free_loopback_port();

}  // namespace shoal::test
