// Test helper: runs the real shoald binary as a child process with a
// temporary YAML config, collects its output on a reader thread and learns
// the ephemeral ports from its "listening on" lines.
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

// Runs shoald with `args` to completion (at most `timeout`).
RunResult run_shoald(const std::vector<std::string>& args,
                     std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Writes `text` to a fresh temporary file and returns its path; removed at
// process exit is not attempted (files live under the test's temp dir).
std::string write_temp_file(const std::string& text, const std::string& suffix = ".yaml");

class ShoaldProcess {
 public:
  struct Options {
    std::string yaml;                     // the config file's content
    std::vector<std::string> extra_args;  // after --config FILE
    std::optional<rlim_t> nofile;         // RLIMIT_NOFILE (soft = hard) set before exec
    bool wait_ready = true;               // wait for the "ready:" line
  };

  explicit ShoaldProcess(Options options);
  ~ShoaldProcess();
  ShoaldProcess(const ShoaldProcess&) = delete;
  ShoaldProcess& operator=(const ShoaldProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Port of the listener named `name` (from the "listening on" line).
  std::uint16_t port(const std::string& name) const;

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
  bool exited_ = false;
  int status_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;
  std::map<std::string, std::uint16_t> ports_;
};

}  // namespace shoal::test
