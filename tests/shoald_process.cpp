#include "shoald_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace shoal::test {
namespace {

std::string temp_dir() {
  const char* d = std::getenv("TMPDIR");
  return d && *d ? d : "/tmp";
}

// fork + exec with stdout/stderr on a pipe; returns the read end.
pid_t spawn(const std::vector<std::string>& args, std::optional<rlim_t> nofile, int& read_fd,
            const std::vector<std::pair<std::string, std::string>>& env = {},
            const std::string& binary = SHOALD_PATH) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    if (nofile) {
      rlimit rl{*nofile, *nofile};
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  read_fd = fds[0];
  return pid;
}

int decode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

// Turns the admin port off unless the config says something about it.
std::string with_admin_default(std::string yaml) {
  const bool has_admin = yaml.rfind("admin:", 0) == 0 || yaml.find("\nadmin:") != std::string::npos;
  if (has_admin) return yaml;
  if (!yaml.empty() && yaml.back() != '\n') yaml += '\n';
  return yaml + "admin:\n  port: 0\n";
}

}  // namespace

std::vector<std::uint64_t> served_per_shard(const std::string& output) {
  static const std::regex re(R"(shard (\d+): served (\d+) connections)");
  std::vector<std::uint64_t> served;
  for (std::sregex_iterator it(output.begin(), output.end(), re), end; it != end; ++it) {
    const auto shard = std::stoul((*it)[1]);
    if (served.size() <= shard) served.resize(shard + 1);
    served[shard] = std::stoull((*it)[2]);
  }
  return served;
}

std::string loopback_listener(const std::string& name, const std::string& protocol,
                              const std::string& extra) {
  return "  - name: " + name + "\n    protocol: " + protocol +
         "\n    address: 127.0.0.1\n    port: 0\n" + extra;
}

namespace {
// Every file write_temp_file() made, removed when the test process exits:
// CI runs the suite several times on one machine (plain, ASan, TSan), which
// left some 14,000 configs, reports and keys in /tmp. A forked child leaves
// with _exit() and removes nothing.
struct TempFiles {
  std::mutex mu;
  std::vector<std::string> paths;
  ~TempFiles() {
    for (const std::string& p : paths) (void)::unlink(p.c_str());
  }
};
TempFiles& temp_files() {
  static TempFiles files;
  return files;
}
}  // namespace

std::string write_temp_file(const std::string& text, const std::string& suffix) {
  std::string path = temp_dir() + "/shoal-test-XXXXXX" + suffix;
  const int fd = mkstemps(path.data(), static_cast<int>(suffix.size()));
  if (fd < 0) throw std::runtime_error("mkstemps failed");
  {
    TempFiles& files = temp_files();
    std::lock_guard lock(files.mu);
    files.paths.push_back(path);
  }
  const ssize_t n = write(fd, text.data(), text.size());
  close(fd);
  if (n != static_cast<ssize_t>(text.size())) throw std::runtime_error("short write");
  return path;
}

RunResult run_command(const std::string& command) {
  RunResult r;
  FILE* p = ::popen(("(" + command + ") 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

RunResult run_program(const std::string& binary, const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout) {
  int fd = -1;
  const pid_t pid = spawn(args, std::nullopt, fd, {}, binary);
  RunResult r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  // Reads until the output ends (the program exited and closed it), or the
  // deadline, when it is killed.
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    r.output.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = decode(status);
  return r;
}

RunResult run_shoald(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  return run_program(SHOALD_PATH, args, timeout);
}

ShoaldProcess::ShoaldProcess(Options options) {
  std::vector<std::string> args;
  if (options.args) {
    args = *options.args;
  } else {
    config_path_ = write_temp_file(with_admin_default(options.yaml));
    args = {"--config", config_path_};
    args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  }
  int fd = -1;
  pid_ = spawn(args, options.nofile, fd, options.env, options.binary);
  reader_ = std::thread([this, fd] { read_loop(fd); });
  if (options.wait_ready && !wait_for_output("ready:", std::chrono::seconds(15))) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    exited_ = true;
    reader_.join();
    throw std::runtime_error("shoald did not become ready; output:\n" + output());
  }
}

ShoaldProcess::~ShoaldProcess() {
  if (!exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
  if (reader_.joinable()) reader_.join();
}

void ShoaldProcess::read_loop(int fd) {
  static const std::regex listening(
      R"re((?:listener "([^"]+)" \([a-z-]+\)|^baseline: ([a-z-]+)) listening on .*:(\d+))re");
  static const std::regex admin_listening(R"re(admin listening on .*:(\d+))re");
  char buf[4096];
  std::string partial;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    std::lock_guard lock(mu_);
    output_.append(buf, static_cast<std::size_t>(n));
    partial.append(buf, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      const std::string line = partial.substr(0, nl);
      partial.erase(0, nl + 1);
      std::smatch m;
      if (std::regex_search(line, m, listening)) {
        ports_[m[1].matched ? m[1].str() : m[2].str()] = static_cast<std::uint16_t>(std::stoi(m[3]));
      } else if (std::regex_search(line, m, admin_listening)) {
        admin_port_ = static_cast<std::uint16_t>(std::stoi(m[1]));
      }
    }
    cv_.notify_all();
  }
  close(fd);
  std::lock_guard lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

std::uint16_t ShoaldProcess::port(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = ports_.find(name);
  if (it == ports_.end()) throw std::runtime_error("no port for listener " + name);
  return it->second;
}

std::uint16_t ShoaldProcess::admin_port() const {
  std::lock_guard lock(mu_);
  if (!admin_port_) throw std::runtime_error("shoald printed no admin port");
  return *admin_port_;
}

// Below the ephemeral range (32768-60999): a port the kernel hands out for
// bind(0) can be taken by any client's connect a moment later, as it is
// while tests and load generators run side by side.
std::uint16_t free_loopback_port() {
  static std::mt19937 rng(static_cast<std::uint32_t>(getpid()) ^
                          static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto port = static_cast<std::uint16_t>(20000 + rng() % 12000);
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (ok) return port;
  }
  throw std::runtime_error("no free loopback port in 20000-31999");
}

bool ShoaldProcess::wait_for_output(const std::string& needle, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  // Gives up early when shoald has exited (its output ended).
  return cv_.wait_for(lock, timeout, [&] { return output_.find(needle) != std::string::npos || eof_; }) &&
         output_.find(needle) != std::string::npos;
}

std::string ShoaldProcess::output() const {
  std::lock_guard lock(mu_);
  return output_;
}

void ShoaldProcess::signal(int sig) { kill(pid_, sig); }

int ShoaldProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exited_) {
    const pid_t w = waitpid(pid_, &status_, WNOHANG);
    if (w == pid_) {
      exited_ = true;
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (reader_.joinable()) reader_.join();
  return decode(status_);
}

std::chrono::milliseconds ShoaldProcess::cpu_time() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name; utime and stime are the
  // 14th and 15th fields overall.
  const auto close_paren = content.rfind(')');
  std::istringstream rest(content.substr(close_paren + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  const long ticks = sysconf(_SC_CLK_TCK);
  return std::chrono::milliseconds((utime + stime) * 1000 / ticks);
}

}  // namespace shoal::test
