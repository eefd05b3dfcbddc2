#include "daemon/daemon.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <system_error>

#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include "admin/admin_server.hpp"
#include "config/config.hpp"
#include "daemon/logging.hpp"
#include "daemon/preflight.hpp"
#include "admin/probe.hpp"
#include "runtime/server.hpp"
#include "daemon/systemd_notify.hpp"
#include "tls/tls.hpp"
#include "shoal/version.hpp"

namespace shoal {
namespace {

namespace po = boost::program_options;

struct CliOptions {
  std::optional<std::string> config_path;
  std::optional<std::string> log_level;
  std::optional<std::string> probe;
  bool check = false;
  bool print_config = false;
};

// Parses argv; returns an exit status when the process should end now.
std::optional<int> parse_cli(int argc, char** argv, CliOptions& out) {
  po::options_description desc(
      "Usage: shoald [options]\n\n"
      "shoal daemon: TCP echo and WebSocket echo (ws://, wss://) listeners on one event\n"
      "loop per core, with an admin port for /metrics, /healthz, /readyz and /status.\n\nOptions");
  desc.add_options()
      ("config,c", po::value<std::string>(), "configuration file (YAML); built-in defaults without it")
      ("check,t", "validate the configuration, print the preflight and exit (0 ok, 1 not)")
      ("print-config", "print the effective configuration as YAML and exit")
      ("log-level", po::value<std::string>(), "override logging.level (trace|debug|info|warn|error|critical|off)")
      ("probe", po::value<std::string>()->value_name("ADDRESS:PORT"),
       "ask a running shoald's admin port for /healthz; exit 0 when healthy (container HEALTHCHECK)")
      ("version,v", "print the version and exit")
      ("help,h", "print this help and exit");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "shoald: " << e.what() << "\nTry 'shoald --help'.\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "shoald " << kVersion << " (commit " << kGitCommit << ")\n";
    return 0;
  }
  if (vm.count("config")) out.config_path = vm["config"].as<std::string>();
  if (vm.count("log-level")) out.log_level = vm["log-level"].as<std::string>();
  if (vm.count("probe")) out.probe = vm["probe"].as<std::string>();
  out.check = vm.count("check") > 0;
  out.print_config = vm.count("print-config") > 0;
  return std::nullopt;
}

Config load(const CliOptions& opts) {
  Config config = opts.config_path ? load_config_file(*opts.config_path) : Config{};
  if (opts.log_level) {
    parse_log_level(*opts.log_level);  // throws ConfigError naming the value
    config.logging.level = *opts.log_level;
  }
  return config;
}

// Reads the TLS listeners' certificates and keys (every time a config is put
// to use, so a renewed certificate is picked up by a reload); errors name the
// config file like load_config_file's.
std::vector<TlsSettingsPtr> load_tls(const CliOptions& opts, const Config& config) {
  try {
    return load_tls_settings(config);
  } catch (const ConfigError& e) {
    if (!opts.config_path) throw;
    throw ConfigError(*opts.config_path + ": " + e.what());
  }
}

// One line per TLS listener, for the start-up log, a reload and --check.
std::vector<std::string> tls_lines(const Config& config, const std::vector<TlsSettingsPtr>& tls) {
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < config.listeners.size() && i < tls.size(); ++i) {
    if (!tls[i]) continue;
    lines.push_back("listener \"" + config.listeners[i].name + "\": TLS " +
                    to_string(config.listeners[i].tls->min_version) + "+, certificate " +
                    tls[i]->certificate_summary +
                    (tls[i]->certificate_expired ? " (EXPIRED: clients will refuse it)" : ""));
  }
  return lines;
}

void log_tls(const Config& config, const std::vector<TlsSettingsPtr>& tls) {
  for (std::size_t i = 0; i < config.listeners.size() && i < tls.size(); ++i) {
    if (!tls[i]) continue;
    if (tls[i]->certificate_expired) {
      spdlog::warn("listener \"{}\": the TLS certificate has expired: {}",
                   config.listeners[i].name, tls[i]->certificate_summary);
    }
  }
  for (const std::string& line : tls_lines(config, tls)) spdlog::info("{}", line);
}

void log_block(spdlog::level::level_enum level, const std::string& block) {
  std::size_t start = 0;
  while (start < block.size()) {
    std::size_t end = block.find('\n', start);
    if (end == std::string::npos) end = block.size();
    if (end > start) spdlog::log(level, "{}", block.substr(start, end - start));
    start = end + 1;
  }
}

// The signals the main thread takes, through a signalfd (they are blocked
// in every thread, so none takes them with its default action).
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

// A signalfd for `signals`, closed when it goes out of scope.
class SignalFd {
 public:
  explicit SignalFd(std::initializer_list<int> signals) {
    sigset_t set;
    sigemptyset(&set);
    for (const int s : signals) sigaddset(&set, s);
    fd_ = ::signalfd(-1, &set, SFD_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
  }
  ~SignalFd() { ::close(fd_); }
  SignalFd(const SignalFd&) = delete;
  SignalFd& operator=(const SignalFd&) = delete;
  int fd() const { return fd_; }

  // The next signal, or 0 when none came before `deadline`.
  int wait(std::chrono::steady_clock::time_point deadline) const {
    const auto left = deadline - std::chrono::steady_clock::now();
    const auto ms = std::max<std::int64_t>(
        0, std::chrono::ceil<std::chrono::milliseconds>(left).count());
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(ms, 60'000))) <= 0) return 0;
    signalfd_siginfo info{};
    if (::read(fd_, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return 0;
    return static_cast<int>(info.ssi_signo);
  }

 private:
  int fd_ = -1;
};

// One line for `systemctl status` and the periodic log.
std::string status_line(const Server& server) {
  return std::to_string(server.active_connections()) + " connections on " +
         std::to_string(server.shards().size()) + " shards" +
         (server.draining() ? ", draining" : "");
}

// SIGHUP: re-read the config file; apply what can change live, log what
// needs a restart; a config that fails validation or the preflight is
// rejected with its error and the running one stays.
void reload(const CliOptions& opts, Server& server) {
  if (!opts.config_path) {
    spdlog::warn("SIGHUP: started without --config, so there is no file to reload");
    return;
  }
  Config next;
  std::vector<TlsSettingsPtr> tls;
  try {
    next = load(opts);
    tls = load_tls(opts, next);
  } catch (const ConfigError& e) {
    spdlog::error("reload rejected, the running configuration stays: {}", e.what());
    return;
  }
  const PreflightResult preflight = run_preflight(next, read_host_limits());
  if (!preflight.ok) {
    log_block(spdlog::level::err, preflight.report());
    spdlog::error("reload rejected (preflight failed), the running configuration stays");
    return;
  }
  configure_logging(next.logging);
  const std::vector<std::string> restart = server.reload(next, preflight, tls);
  spdlog::info(
      "reloaded {}: log level {}, max_connections {}, listener limits and idle timeouts, "
      "drain_timeout {} applied",
      *opts.config_path, next.logging.level, preflight.effective_max_connections,
      format_duration(next.shutdown.drain_timeout));
  // Certificates and keys were read again: new connections use them, open
  // ones keep the certificate they were accepted with.
  log_tls(next, tls);
  for (const auto& what : restart) {
    spdlog::warn("reload: {} changed; it applies after a restart", what);
  }
}

// Whether every shard's loop ran its timer recently (the watchdog's test).
bool all_shards_answer(const Server& server) {
  const std::int64_t now = Shard::now_ms();
  for (const auto& shard : server.shards()) {
    if (!shard->loop_answered(now)) return false;
  }
  return true;
}

int run(const CliOptions& opts, const Config& config, const PreflightResult& preflight,
        const std::vector<TlsSettingsPtr>& tls, const Hooks& hooks) {
  // The signals are blocked in every thread (shoald_main blocked them
  // before the first thread started; shards and the admin thread inherit
  // the mask); this thread takes them from a signalfd. SIGPIPE must never
  // end the process: a peer that vanished is one failed write.
  signal(SIGPIPE, SIG_IGN);
  const SignalFd signals({SIGINT, SIGTERM, SIGHUP});

  Server server(config, preflight, tls);
  // After the server: destroyed first, while the shards it reads still exist.
  std::unique_ptr<AdminServer> admin;
  try {
    server.start();
    // Bound after the listeners, so /readyz can never answer before they
    // are; a failed bind is a start-up error like a listener's.
    if (config.admin.port != 0) {
      admin = std::make_unique<AdminServer>(config.admin, server);
      admin->start();
    }
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  spdlog::info("shoald {} started: {} shards, sharding {}, cpu_affinity {}", kVersion,
               preflight.shards, to_string(config.sharding), config.cpu_affinity ? "on" : "off");
  for (const auto& b : server.bound()) {
    spdlog::info("listener \"{}\" ({}) listening on {}:{}", b.name, to_string(b.protocol),
                 b.endpoint.address().to_string(), b.endpoint.port());
  }
  log_tls(config, tls);
  if (admin) {
    const auto ep = admin->local_endpoint();
    spdlog::info("admin listening on {}:{}", ep.address().to_string(), ep.port());
  }
  spdlog::info("ready: {} listeners on {} shards, max_connections {}", server.bound().size(),
               preflight.shards, preflight.effective_max_connections);
  SystemdNotifier notifier;
  notifier.ready(status_line(server));
  if (hooks.started) hooks.started(server);

  // The main thread waits for signals and, between them, keeps systemd's
  // watchdog fed (only while every shard answers: a stuck shard stops the
  // pings and systemd restarts the service) and the status line current.
  const auto tick = std::min<std::chrono::steady_clock::duration>(
      notifier.watchdog_period().value_or(std::chrono::seconds(5)), std::chrono::seconds(5));
  bool stuck_reported = false;
  int sig = 0;
  for (;;) {
    sig = signals.wait(std::chrono::steady_clock::now() + tick);
    if (sig == SIGHUP) {
      notifier.reloading();
      reload(opts, server);
      notifier.ready(status_line(server));
      continue;
    }
    if (sig != 0) break;
    const bool healthy = all_shards_answer(server);
    if (notifier.watchdog_period()) {
      if (healthy) notifier.watchdog();
    }
    if (!healthy && !stuck_reported) {
      spdlog::error("a shard's event loop has stopped answering; {}",
                    notifier.watchdog_period() ? "withholding the systemd watchdog"
                                               : "/healthz reports it");
    }
    stuck_reported = !healthy;
    notifier.status(status_line(server));
  }

  // The ordered stop is the server's (Server::drain); /metrics and /status
  // go on serving until the shards have stopped. A second SIGINT or SIGTERM
  // ends the wait; a SIGHUP now stays pending and unread.
  notifier.stopping();
  spdlog::info("{}: stopping", strsignal(sig));
  const SignalFd again({SIGINT, SIGTERM});
  const DrainOutcome outcome =
      server.drain(server.running().config.shutdown.drain_timeout, again.fd());
  if (outcome.left_open > 0) {
    spdlog::warn("{} connections had not ended their closing handshakes; stopped anyway",
                 outcome.left_open);
  }
  if (admin) admin->stop();
  for (const auto& shard : server.shards()) {
    spdlog::info("shard {}: served {} connections", shard->id(), shard->served_connections());
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int shoald_main(int argc, char** argv, const Hooks& hooks) {
  CliOptions opts;
  if (auto status = parse_cli(argc, argv, opts)) return *status;
  if (opts.probe) return probe_health(*opts.probe, std::chrono::seconds(3));

  Config config;
  std::vector<TlsSettingsPtr> tls;
  try {
    config = load(opts);
    if (opts.print_config) {
      std::cout << to_yaml(config);
      return 0;
    }
    tls = load_tls(opts, config);
  } catch (const ConfigError& e) {
    std::cerr << "shoald: configuration error: " << e.what() << "\n";
    if (opts.check) std::cerr << "shoald: configuration test failed\n";
    return 1;
  }

  raise_nofile_limit();
  const PreflightResult preflight = run_preflight(config, read_host_limits());
  if (opts.check) {
    std::cout << preflight.report();
    for (const std::string& line : tls_lines(config, tls)) std::cout << line << "\n";
    const std::string what = opts.config_path ? *opts.config_path : std::string("built-in defaults");
    if (!preflight.ok) {
      std::cout << "shoald: configuration " << what << " is valid, but this host is insufficient\n";
      return 1;
    }
    std::cout << "shoald: configuration " << what << " is ok\n";
    return 0;
  }

  // Before any thread exists, the asynchronous logger's included: a thread
  // that leaves SIGTERM unblocked would take it with the default action and
  // end the process in the middle of a drain.
  const sigset_t signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  configure_logging(config.logging);
  log_block(preflight.ok ? spdlog::level::info : spdlog::level::err, preflight.report());
  int status = 1;
  if (!preflight.ok) {
    spdlog::critical("preflight failed (limits.on_insufficient: fail); not starting");
  } else {
    status = run(opts, config, preflight, tls, hooks);
  }
  shutdown_logging();
  return status;
}

}  // namespace shoal
