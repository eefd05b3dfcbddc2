// Logging set-up: one asynchronous spdlog logger ("shoal") writing text or
// JSON lines to stdout, so a shard never blocks on a slow terminal or pipe
// (the queue overwrites its oldest entries rather than block). Per-connection
// lines are at debug level and carry the connection id.
//
// Thread safety: configure_logging/set_log_level from the main thread; the
// logger itself is safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <spdlog/spdlog.h>

#include "config/config.hpp"

namespace shoal {

void configure_logging(const LoggingConfig& config);

// Throws ConfigError for a name spdlog does not know.
spdlog::level::level_enum parse_log_level(const std::string& name);

// Flushes and stops the asynchronous logger; call once before exit.
void shutdown_logging();

// Lets one message through per `interval` and counts the ones it held back,
// for warnings that a flood of events (EMFILE on accept) would repeat.
// Owned and called by one thread.
class RateLimiter {
 public:
  explicit RateLimiter(std::chrono::steady_clock::duration interval) : interval_(interval) {}

  // True when the caller should log now; `suppressed` is how many calls were
  // held back since the last one that returned true.
  bool allow(std::uint64_t& suppressed);

 private:
  std::chrono::steady_clock::duration interval_;
  std::chrono::steady_clock::time_point last_{};
  std::uint64_t held_ = 0;
  bool first_ = true;
};

}  // namespace shoal
