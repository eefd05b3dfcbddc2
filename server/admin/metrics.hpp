// What GET /metrics reports: the Prometheus exposition of one shoald process,
// built with prometheus-cpp and serialized in the text format 0.0.4.
//
// Four sources, each a prometheus::Collectable asked at scrape time:
//  - a prometheus::Registry with the build info, fixed at start-up;
//  - the limits collector: descriptor limit, connection capacity, effective
//    and per-listener max_connections, as the last accepted reload set them;
//  - the shard collector, which reads every shard's ShardCounters (per
//    listener: connections, messages, bytes, rejections, closes, WebSocket
//    close codes; per shard: loop lag, handlers run, health);
//  - the process collector, which reads /proc/self (process_* metrics).
// Nothing is counted through prometheus-cpp's own Counter on the hot path:
// shards keep plain single-writer counters and the scrape sums them.
//
// Ownership: the AdminServer owns a Metrics; it refers to the Server, which
// outlives it. Thread safety: construct after Server::start() returned; then
// collect()/scrape() may be called from any thread (the admin thread calls
// them), concurrently with the shards running.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>


namespace prometheus {
class Registry;
}

namespace shoal {

class Server;

class Metrics {
 public:
  // The Content-Type of scrape()'s text.
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

  explicit Metrics(const Server& server);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Every metric family, in a stable order.
  std::vector<prometheus::MetricFamily> collect() const;
  // collect() in the Prometheus text format 0.0.4.
  std::string scrape() const;

 private:
  std::shared_ptr<prometheus::Registry> static_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
};

// The standard process_* values, read from /proc/self and getrlimit.
struct ProcessStats {
  double cpu_seconds = 0;         // user + system
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double start_time_seconds = 0;  // since the Unix epoch
  double open_fds = 0;
  double max_fds = 0;             // soft RLIMIT_NOFILE
};
std::optional<ProcessStats> read_process_stats();

// Parses /proc/[pid]/stat content and /proc/stat's btime into ProcessStats
// (all but the descriptor counts). Pure, for tests.
std::optional<ProcessStats> parse_proc_stat(const std::string& stat, std::uint64_t boot_time_seconds,
                                            long ticks_per_second, long page_size);

}  // namespace shoal
