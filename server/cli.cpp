#include "cli.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>
#include <thread>

#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include "config.hpp"
#include "logging.hpp"
#include "preflight.hpp"
#include "server.hpp"
#include "shoal/version.hpp"

namespace shoal {
namespace {

namespace po = boost::program_options;

struct CliOptions {
  std::optional<std::string> config_path;
  std::optional<std::string> log_level;
  bool check = false;
  bool print_config = false;
};

// Parses argv; returns an exit status when the process should end now.
std::optional<int> parse_cli(int argc, char** argv, CliOptions& out) {
  po::options_description desc(
      "Usage: shoald [options]\n\n"
      "shoal daemon: sharded TCP echo server.\n\nOptions");
  desc.add_options()
      ("config,c", po::value<std::string>(), "configuration file (YAML); built-in defaults without it")
      ("check,t", "validate the configuration, print the preflight and exit (0 ok, 1 not)")
      ("print-config", "print the effective configuration as YAML and exit")
      ("log-level", po::value<std::string>(), "override logging.level (trace|debug|info|warn|error|critical|off)")
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

void log_block(spdlog::level::level_enum level, const std::string& block) {
  std::size_t start = 0;
  while (start < block.size()) {
    std::size_t end = block.find('\n', start);
    if (end == std::string::npos) end = block.size();
    if (end > start) spdlog::log(level, "{}", block.substr(start, end - start));
    start = end + 1;
  }
}

// Waits for the next of `set`'s signals, or until `deadline`; 0 on timeout.
int wait_signal(const sigset_t& set, std::chrono::steady_clock::time_point deadline) {
  const auto left = deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::steady_clock::duration::zero()) return 0;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  const int sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

int run(const Config& config, const PreflightResult& preflight) {
  // Block the signals in every thread (the shards inherit the mask); this
  // thread takes them synchronously. SIGPIPE must never end the process: a
  // peer that vanished is one failed write.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Server server(config, preflight.effective_max_connections, preflight.shards);
  try {
    server.start();
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
  spdlog::info("ready: {} listeners on {} shards, max_connections {}", server.bound().size(),
               preflight.shards, preflight.effective_max_connections);

  int sig = 0;
  for (;;) {
    sig = wait_signal(set, std::chrono::steady_clock::time_point::max());
    if (sig == SIGHUP) {
      spdlog::warn("SIGHUP: live reload is not supported by this build; restart to apply changes");
      continue;
    }
    if (sig != 0) break;
  }

  // Ordered stop: no new connections, let open ones finish within the
  // drain timeout, then close the rest, then stop the loops.
  const auto drain = config.shutdown.drain_timeout;
  spdlog::info("{}: draining {} connections (up to {})", strsignal(sig), server.active_connections(),
               format_duration(drain));
  server.stop_accepting();
  const auto deadline = std::chrono::steady_clock::now() + drain;
  bool forced = false;
  while (server.active_connections() > 0) {
    const auto step = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(20));
    if (const int again = wait_signal(set, step); again == SIGINT || again == SIGTERM) {
      spdlog::warn("{} again: closing {} connections now", strsignal(again),
                   server.active_connections());
      forced = true;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
  }
  if (server.active_connections() > 0) {
    if (!forced) {
      spdlog::info("drain timeout: closing {} remaining connections", server.active_connections());
    }
    server.close_all_connections();
    // Closing is a post per shard; give it a moment to run (bounded).
    const auto close_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (server.active_connections() > 0 && std::chrono::steady_clock::now() < close_deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  server.stop();
  for (const auto& shard : server.shards()) {
    spdlog::info("shard {}: served {} connections", shard->id(), shard->served_connections());
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int shoald_main(int argc, char** argv) {
  CliOptions opts;
  if (auto status = parse_cli(argc, argv, opts)) return *status;

  Config config;
  try {
    config = load(opts);
  } catch (const ConfigError& e) {
    std::cerr << "shoald: configuration error: " << e.what() << "\n";
    if (opts.check) std::cerr << "shoald: configuration test failed\n";
    return 1;
  }
  if (opts.print_config) {
    std::cout << to_yaml(config);
    return 0;
  }

  raise_nofile_limit();
  const PreflightResult preflight = run_preflight(config, read_host_limits());
  if (opts.check) {
    std::cout << preflight.report();
    const std::string what = opts.config_path ? *opts.config_path : std::string("built-in defaults");
    if (!preflight.ok) {
      std::cout << "shoald: configuration " << what << " is valid, but this host is insufficient\n";
      return 1;
    }
    std::cout << "shoald: configuration " << what << " is ok\n";
    return 0;
  }

  configure_logging(config.logging);
  log_block(preflight.ok ? spdlog::level::info : spdlog::level::err, preflight.report());
  int status = 1;
  if (!preflight.ok) {
    spdlog::critical("preflight failed (limits.on_insufficient: fail); not starting");
  } else {
    status = run(config, preflight);
  }
  shutdown_logging();
  return status;
}

}  // namespace shoal
