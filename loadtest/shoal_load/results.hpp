// The merged outcome of a run, built by the parent from its workers'
// reports, and the writers that turn it into a summary, JSON, CSV and HTML.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.hpp"
#include "controls.hpp"
#include "histogram.hpp"
#include "options.hpp"
#include "pubsub.hpp"

namespace shoal::load {

// The host kernel's memory for sockets, from /proc: what RSS does not show.
// Slab is every slab cache (the TCP socket, its inode and file, epoll items
// are most of what a connection adds); tcp_mem_pages is the buffer memory of
// TCP sockets (/proc/net/sockstat "mem", in pages). Host-wide: with the client
// on the same host both ends are in it.
struct HostKernelSample {
  std::uint64_t slab_bytes = 0;
  std::uint64_t tcp_mem_pages = 0;
  std::uint64_t tcp_inuse = 0;
};
HostKernelSample sample_host_kernel();

struct SecondPoint {
  std::int64_t sec = 0;         // end of the interval, seconds since start
  std::string phase;            // connect, warmup, measure, drain, hold, close
  std::uint64_t open = 0;       // connections open at the end of the second
  std::uint64_t reported = 0;   // workers that reported this second
  Counters delta;               // during the second
  Histogram hist;               // latencies of echoes received during the second
  std::optional<std::uint64_t> server_rss;  // bytes, when --server-pid
  std::optional<std::uint64_t> server_anon;  // RssAnon bytes, when --server-pid
  HostKernelSample kernel;                   // when --server-pid
};

struct Results {
  const Options* options = nullptr;
  double elapsed_s = 0;         // whole run
  double measured_s = 0;        // the measurement window
  double connect_phase_s = 0;   // start until every connect attempt finished
  Counters total, window;
  Histogram latency, connect, handshake, tls_handshake;
  std::uint64_t established = 0, lost = 0, unanswered = 0, skipped = 0, peak_open = 0;
  ControlCounts controls;       // the target URL's response controls, as checked
  pubsub::Counts pubsub;        // --mode pubsub: summed over the workers
  std::vector<std::string> samples;
  double client_cpu_s = 0;
  std::uint64_t client_max_rss_kb = 0;
  std::vector<SecondPoint> series;

  // Server figures (--server-pid), summed over the processes given.
  bool server = false;
  std::uint64_t server_rss_before = 0, server_rss_held = 0;
  std::vector<std::uint64_t> server_rss_before_each, server_rss_held_each;  // per --server-pid, in order
  std::uint64_t server_anon_before = 0, server_anon_held = 0;  // RssAnon, summed
  HostKernelSample kernel_before, kernel_held;
  double server_cpu_window_s = 0;  // CPU the server used during the window

  bool hard_limit_hit = false;
  bool interrupted = false;
  int workers_failed = 0;
  int exit_code = 0;
  std::vector<std::string> verdict;  // why exit_code is not 0

  // --mode pubsub: every subscriber gets every message of its channel.
  std::uint64_t expected() const { return pubsub.expected(); }
  std::uint64_t distinct() const { return pubsub.delivered - pubsub.duplicated; }
  std::uint64_t missing() const { return expected() > distinct() ? expected() - distinct() : 0; }
  // More distinct messages than were published (a worker's report lost).
  std::uint64_t extra() const { return distinct() > expected() ? distinct() - expected() : 0; }
  std::uint64_t pubsub_failures() const {
    return missing() + extra() + pubsub.duplicated + pubsub.reordered + pubsub.foreign;
  }

  double msgs_per_s() const { return measured_s > 0 ? static_cast<double>(window.msgs_recv) / measured_s : 0; }
  double sent_per_s() const { return measured_s > 0 ? static_cast<double>(window.msgs_sent) / measured_s : 0; }
  void decide_exit_code();
};

nlohmann::json to_json(const Results& r);
std::string summary_text(const Results& r);
std::string csv_text(const Results& r);
std::string html_report(const Results& r);
// Throws std::runtime_error when the file cannot be written.
void write_file(const std::string& path, const std::string& content);

// Formatting helpers shared with the live progress line.
std::string fmt_duration_ns(double ns);
std::string fmt_rate(double per_s);

}  // namespace shoal::load
