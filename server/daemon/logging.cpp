#include "daemon/logging.hpp"

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/async.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace shoal {
namespace {

// One JSON object per line. The message goes through nlohmann::json so quotes
// and control characters are escaped; spdlog's pattern flags cannot escape.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    const auto since_epoch = msg.time.time_since_epoch();
    const auto secs = duration_cast<seconds>(since_epoch);
    const auto micros = duration_cast<microseconds>(since_epoch - secs).count();
    std::time_t t = secs.count();
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[40];
    const std::size_t n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(ts + n, sizeof ts - n, ".%06ldZ", static_cast<long>(micros));

    nlohmann::json line = {
        {"time", ts},
        {"level", spdlog::level::to_string_view(msg.level).data()},
        {"logger", std::string(msg.logger_name.data(), msg.logger_name.size())},
        {"thread", msg.thread_id},
        {"msg", std::string(msg.payload.data(), msg.payload.size())},
    };
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

constexpr const char* kTextPattern = "%Y-%m-%dT%H:%M:%S.%e%z %^%-5l%$ %v";

void apply_format(spdlog::logger& logger, LogFormat format) {
  if (format == LogFormat::json) {
    logger.set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger.set_pattern(kTextPattern);
  }
}

}  // namespace

spdlog::level::level_enum parse_log_level(const std::string& name) {
  static const char* const names[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (int i = 0; i < 7; ++i) {
    if (name == names[i]) return static_cast<spdlog::level::level_enum>(i);
  }
  throw ConfigError("log level \"" + name +
                    "\" is not one of trace, debug, info, warn, error, critical, off");
}

void configure_logging(const LoggingConfig& config) {
  // Already configured (a reload): only level and format can change.
  if (auto existing = spdlog::get("shoal")) {
    existing->set_level(parse_log_level(config.level));
    apply_format(*existing, config.format);
    return;
  }
  // A bounded queue; when full the oldest entries are dropped so that no
  // shard ever waits for the log writer.
  spdlog::init_thread_pool(16384, 1);
  spdlog::sink_ptr sink;
  if (config.format == LogFormat::text && isatty(STDOUT_FILENO)) {
    sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
  } else {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  }
  auto logger = std::make_shared<spdlog::async_logger>(
      "shoal", sink, spdlog::thread_pool(), spdlog::async_overflow_policy::overrun_oldest);
  apply_format(*logger, config.format);
  logger->set_level(parse_log_level(config.level));
  logger->flush_on(spdlog::level::trace);
  spdlog::register_logger(logger);
  spdlog::set_default_logger(logger);
}

void shutdown_logging() {
  // Our reference keeps the sinks alive until spdlog::shutdown() has joined
  // the writer thread, so they are destroyed after it, never beside it.
  auto logger = spdlog::get("shoal");
  spdlog::shutdown();
  logger.reset();
}

bool RateLimiter::allow(std::uint64_t& suppressed) {
  const auto now = std::chrono::steady_clock::now();
  if (!first_ && now - last_ < interval_) {
    ++held_;
    return false;
  }
  first_ = false;
  last_ = now;
  suppressed = held_;
  held_ = 0;
  return true;
}

}  // namespace shoal
