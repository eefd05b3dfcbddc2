#include "admin/metrics.hpp"

#include "pubsub/hub.hpp"
#include "pubsub/redis_bridge.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <utility>

#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "runtime/server.hpp"
#include "shoal/version.hpp"

// Why not prometheus-cpp's pull Exposer: it serves HTTP with civetweb, which
// brings its own listening socket and its own pool of worker threads, outside
// the event loops and the ordered stop of this daemon. The admin port already
// runs a Beast server on one thread and one io_context (admin_server.cpp);
// a second HTTP stack, a second port and a thread pool would buy nothing but a
// second set of timeouts, limits and shutdown paths to get right. So we use
// prometheus-cpp for what it does well here (the data model, a Registry for
// the static values and the text serializer) and serve the text ourselves.

namespace shoal {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily make_family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void add_counter(MetricFamily& f, Labels labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = value;
  f.metric.push_back(std::move(m));
}

void add_gauge(MetricFamily& f, Labels labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

double as_double(std::uint64_t v) { return static_cast<double>(v); }

// Sums of one listener's counters over every shard.
struct ListenerTotals {
  std::uint64_t accepted = 0;
  std::uint64_t rejected[static_cast<int>(RejectReason::count_)] = {};
  std::uint64_t closed[static_cast<int>(CloseReason::count_)] = {};
  std::uint64_t bytes_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t messages_sent = 0;
  std::uint64_t close_codes[kCloseCodeSlots] = {};
  std::uint64_t ktls_connections = 0;
  std::uint64_t http_requests = 0;
  std::uint64_t pubsub_subscribers = 0, pubsub_published = 0, pubsub_deliveries = 0,
                pubsub_dropped = 0, pubsub_slow_closed = 0;
  std::uint64_t controls[kControlSlots] = {};
  std::uint64_t control_errors[kControlSlots] = {};
};

// The `control` label of each ListenerStats::controls slot.
constexpr const char* kControlNames[kControlSlots] = {"delay", "status", "size", "close_after",
                                                      "close_code"};

// Reads the per-shard counters at scrape time.
//
// Why reading another thread's counters without a lock is safe: every
// ShardCounter is a std::atomic<std::uint64_t> with exactly one writer, the
// shard that owns it, which updates it with a relaxed load and store (a
// plain mov on x86, no lock prefix and no shared cache line with other
// shards: ListenerStats and LoopStats are cache-line aligned). A relaxed
// load from this thread is therefore not a data race and never tears; it
// returns a value the owner stored recently, and read-read coherence
// guarantees successive scrapes of one counter never see it go backwards.
// What we give up is a consistent snapshot *across* counters (accepted and
// active may be a handler apart), which Prometheus does not need. The
// vectors of shards and slots are fixed before the shards start and never
// resized, so walking them is safe too. No cross-shard post either: a
// scrape never waits on a busy or stuck shard, and adds nothing to its queue.
class ShardCollector final : public prometheus::Collectable {
 public:
  explicit ShardCollector(const Server& server) : server_(server) {}

  std::vector<MetricFamily> Collect() const override {
    const auto& shards = server_.shards();
    const auto& listeners = server_.listeners();

    MetricFamily active = make_family(
        "shoal_connections_active", "Client connections open now, by listener and shard.",
        MetricType::Gauge);
    MetricFamily served = make_family(
        "shoal_connections_served_total",
        "Client connections a shard has served (admitted and handed to a session).",
        MetricType::Counter);
    MetricFamily accepted = make_family(
        "shoal_connections_accepted_total",
        "Client connections accepted and admitted under the connection limits.",
        MetricType::Counter);
    MetricFamily rejected = make_family(
        "shoal_connections_rejected_total",
        "Client connections refused before being served, by reason (limit: max_connections "
        "reached; fd_exhausted: accept failed for lack of descriptors; handshake_failed: a bad "
        "or timed-out TLS handshake or HTTP upgrade; origin: not in allowed_origins; "
        "per_ip_limit: max_connections_per_ip reached; rate_limit: above "
        "max_new_connections_per_second).",
        MetricType::Counter);
    MetricFamily closed = make_family(
        "shoal_connections_closed_total", "Client connections ended, by reason.",
        MetricType::Counter);
    MetricFamily msg_in = make_family(
        "shoal_messages_received_total",
        "Messages received (TCP echo: one per read; WebSocket: whole messages).",
        MetricType::Counter);
    MetricFamily msg_out = make_family(
        "shoal_messages_sent_total",
        "Messages sent (TCP echo: one per completed echo; WebSocket: whole messages).",
        MetricType::Counter);
    MetricFamily bytes_in = make_family("shoal_bytes_received_total",
                                        "Payload bytes received from clients.",
                                        MetricType::Counter);
    MetricFamily bytes_out = make_family("shoal_bytes_sent_total",
                                         "Payload bytes sent to clients.", MetricType::Counter);
    MetricFamily close_codes = make_family(
        "shoal_websocket_close_codes_total",
        "WebSocket close codes sent or received, by WebSocket listener (codes outside "
        "1000-1011: other).",
        MetricType::Counter);

    MetricFamily ktls = make_family(
        "shoal_tls_ktls_connections",
        "Open TLS connections whose records the kernel encrypts (kTLS), by TLS listener; 0 where "
        "the kernel offers no kTLS or tls.ktls is off (see the preflight).",
        MetricType::Gauge);

    MetricFamily http_requests = make_family(
        "shoal_http_requests_total",
        "Requests answered by HTTP echo (the browser page included, error answers not), by "
        "websocket-echo listener.",
        MetricType::Counter);
    MetricFamily controls = make_family(
        "shoal_controls_total",
        "HTTP requests and WebSocket upgrades that used a response control (delay, status, size, "
        "close_after, close_code), by listener and control.",
        MetricType::Counter);
    MetricFamily control_errors = make_family(
        "shoal_control_errors_total",
        "Requests and upgrades refused with 400 for a bad response control, by listener and "
        "control.",
        MetricType::Counter);

    MetricFamily ps_subscribers = make_family(
        "shoal_pubsub_subscribers", "Subscribers connected now, by websocket-pubsub listener.",
        MetricType::Gauge);
    MetricFamily ps_published = make_family(
        "shoal_pubsub_published_total",
        "Messages this instance's clients published, by websocket-pubsub listener.",
        MetricType::Counter);
    MetricFamily ps_deliveries = make_family(
        "shoal_pubsub_deliveries_total",
        "Messages sent (or queued) to subscribers, from this instance or through Redis.",
        MetricType::Counter);
    MetricFamily ps_dropped = make_family(
        "shoal_pubsub_dropped_total",
        "Messages not delivered to a slow consumer (slow_consumer: drop).", MetricType::Counter);
    MetricFamily ps_slow = make_family(
        "shoal_pubsub_slow_consumers_closed_total",
        "Subscribers closed with 1008 for passing max_queued_bytes (slow_consumer: close).",
        MetricType::Counter);
    MetricFamily redis_up = make_family(
        "shoal_pubsub_redis_connected",
        "1 while the listener's Redis link is up, else 0 (listeners with pubsub.redis).",
        MetricType::Gauge);
    MetricFamily redis_reconnects = make_family(
        "shoal_pubsub_redis_reconnects_total", "Times the Redis link was connected again after a loss.",
        MetricType::Counter);
    MetricFamily redis_out = make_family(
        "shoal_pubsub_redis_published_total", "Messages published to Redis.", MetricType::Counter);
    MetricFamily redis_in = make_family(
        "shoal_pubsub_redis_received_total",
        "Messages from other instances received through Redis.", MetricType::Counter);
    MetricFamily redis_dropped = make_family(
        "shoal_pubsub_redis_publish_dropped_total",
        "Messages not published to Redis because the link was down (local delivery went on).",
        MetricType::Counter);

    for (std::size_t li = 0; li < listeners.size(); ++li) {
      const std::string& name = listeners[li].name;
      ListenerTotals t;
      for (const auto& shard : shards) {
        const ListenerStats& s = shard->slot(li).stats;
        const std::string shard_id = std::to_string(shard->id());
        add_gauge(active, {{"listener", name}, {"shard", shard_id}}, as_double(s.active.load()));
        add_counter(served, {{"listener", name}, {"shard", shard_id}}, as_double(s.served.load()));
        t.accepted += s.accepted.load();
        for (int r = 0; r < static_cast<int>(RejectReason::count_); ++r)
          t.rejected[r] += s.rejected[r].load();
        for (int r = 0; r < static_cast<int>(CloseReason::count_); ++r)
          t.closed[r] += s.closed[r].load();
        t.bytes_received += s.bytes_received.load();
        t.bytes_sent += s.bytes_sent.load();
        t.messages_received += s.messages_received.load();
        t.messages_sent += s.messages_sent.load();
        for (std::size_t c = 0; c < kCloseCodeSlots; ++c) t.close_codes[c] += s.close_codes[c].load();
        t.ktls_connections += s.ktls_connections.load();
        t.http_requests += s.http_requests.load();
        t.pubsub_subscribers += s.pubsub_subscribers.load();
        t.pubsub_published += s.pubsub_published.load();
        t.pubsub_deliveries += s.pubsub_deliveries.load();
        t.pubsub_dropped += s.pubsub_dropped.load();
        t.pubsub_slow_closed += s.pubsub_slow_closed.load();
        for (std::size_t c = 0; c < kControlSlots; ++c) {
          t.controls[c] += s.controls[c].load();
          t.control_errors[c] += s.control_errors[c].load();
        }
      }
      if (listeners[li].tls) add_gauge(ktls, {{"listener", name}}, as_double(t.ktls_connections));
      add_counter(accepted, {{"listener", name}}, as_double(t.accepted));
      for (int r = 0; r < static_cast<int>(RejectReason::count_); ++r)
        add_counter(rejected, {{"listener", name}, {"reason", to_string(static_cast<RejectReason>(r))}},
                    as_double(t.rejected[r]));
      for (int r = 0; r < static_cast<int>(CloseReason::count_); ++r)
        add_counter(closed, {{"listener", name}, {"reason", to_string(static_cast<CloseReason>(r))}},
                    as_double(t.closed[r]));
      add_counter(msg_in, {{"listener", name}}, as_double(t.messages_received));
      add_counter(msg_out, {{"listener", name}}, as_double(t.messages_sent));
      add_counter(bytes_in, {{"listener", name}}, as_double(t.bytes_received));
      add_counter(bytes_out, {{"listener", name}}, as_double(t.bytes_sent));
      // Only WebSocket listeners have close codes: a TCP listener would show
      // a dozen series that can never move.
      if (listeners[li].protocol == Protocol::websocket_pubsub) {
        add_gauge(ps_subscribers, {{"listener", name}}, as_double(t.pubsub_subscribers));
        add_counter(ps_published, {{"listener", name}}, as_double(t.pubsub_published));
        add_counter(ps_deliveries, {{"listener", name}}, as_double(t.pubsub_deliveries));
        add_counter(ps_dropped, {{"listener", name}}, as_double(t.pubsub_dropped));
        add_counter(ps_slow, {{"listener", name}}, as_double(t.pubsub_slow_closed));
        const auto& hubs = server_.pubsub_hubs();
        if (li < hubs.size() && hubs[li] && hubs[li]->bridge()) {
          const pubsub::RedisBridge::Stats& r = hubs[li]->bridge()->stats();
          add_gauge(redis_up, {{"listener", name}}, r.connected.load() ? 1 : 0);
          add_counter(redis_reconnects, {{"listener", name}}, as_double(r.reconnects.load()));
          add_counter(redis_out, {{"listener", name}}, as_double(r.published.load()));
          add_counter(redis_in, {{"listener", name}}, as_double(r.received.load()));
          add_counter(redis_dropped, {{"listener", name}}, as_double(r.publish_dropped.load()));
        }
        for (std::size_t c = 0; c < kCloseCodeSlots; ++c) {
          const std::string code =
              c < std::size(kCountedCloseCodes) ? std::to_string(kCountedCloseCodes[c]) : "other";
          add_counter(close_codes, {{"listener", name}, {"code", code}}, as_double(t.close_codes[c]));
        }
      }
      if (listeners[li].protocol == Protocol::websocket_echo) {
        for (std::size_t c = 0; c < kCloseCodeSlots; ++c) {
          const std::string code =
              c < std::size(kCountedCloseCodes) ? std::to_string(kCountedCloseCodes[c]) : "other";
          add_counter(close_codes, {{"listener", name}, {"code", code}}, as_double(t.close_codes[c]));
        }
        add_counter(http_requests, {{"listener", name}}, as_double(t.http_requests));
        for (std::size_t c = 0; c < kControlSlots; ++c) {
          add_counter(controls, {{"listener", name}, {"control", kControlNames[c]}},
                      as_double(t.controls[c]));
          add_counter(control_errors, {{"listener", name}, {"control", kControlNames[c]}},
                      as_double(t.control_errors[c]));
        }
      }
    }

    MetricFamily lag = make_family(
        "shoal_shard_loop_lag_seconds",
        "How late each shard's 100 ms probe timer ran: the time its event loop was busy or "
        "blocked when the timer fell due.",
        MetricType::Histogram);
    MetricFamily handlers = make_family(
        "shoal_shard_handlers_total",
        "Completion handlers a shard ran, as counted without a per-handler cost: timer ticks "
        "(loop-lag probe, idle sweep), accepts and message reads. A lower bound.",
        MetricType::Counter);
    MetricFamily exceptions = make_family(
        "shoal_shard_handler_exceptions_total",
        "Exceptions that escaped a handler, were logged and did not stop the shard.",
        MetricType::Counter);
    MetricFamily healthy = make_family(
        "shoal_shard_healthy",
        "1 while the shard's event loop ran its probe timer within the last 2 seconds, else 0.",
        MetricType::Gauge);

    const std::int64_t now = Shard::now_ms();
    for (const auto& shard : shards) {
      const LoopStats& loop = shard->loop_stats();
      const std::string shard_id = std::to_string(shard->id());

      ClientMetric h;
      h.label = {{"shard", shard_id}};
      std::uint64_t cumulative = 0;
      for (std::size_t b = 0; b < kLoopLagSlots; ++b) {
        cumulative += loop.lag_buckets[b].load();
        ClientMetric::Bucket bucket;
        bucket.cumulative_count = cumulative;
        bucket.upper_bound = b < std::size(kLoopLagBuckets) ? kLoopLagBuckets[b]
                                                           : std::numeric_limits<double>::infinity();
        h.histogram.bucket.push_back(bucket);
      }
      // The count is the +Inf bucket, read once, so the two always agree.
      h.histogram.sample_count = cumulative;
      h.histogram.sample_sum = as_double(loop.lag_sum_ns.load()) / 1e9;
      lag.metric.push_back(std::move(h));

      // Asio counts the handlers it runs only as run()'s return value; a
      // run_one() loop would, but it sets up and tears down the thread's
      // handler-memory cache on every call, a cost on every message. So
      // this is the sum of completions shoal already counts for free.
      std::uint64_t ran = loop.ticks.load() + loop.sweeps.load();
      for (std::size_t li = 0; li < shard->listener_count(); ++li) {
        const ListenerStats& s = shard->slot(li).stats;
        ran += s.accepted.load() + s.messages_received.load();
        for (const auto& r : s.rejected) ran += r.load();
      }
      add_counter(handlers, {{"shard", shard_id}}, as_double(ran));
      add_counter(exceptions, {{"shard", shard_id}}, as_double(loop.exceptions.load()));
      add_gauge(healthy, {{"shard", shard_id}}, shard->loop_answered(now) ? 1 : 0);
    }

    MetricFamily draining = make_family(
        "shoal_draining", "1 from the stop signal on (graceful drain), else 0.", MetricType::Gauge);
    add_gauge(draining, {}, server_.draining() ? 1 : 0);

    std::vector<MetricFamily> out;
    for (MetricFamily* f : {&active, &served, &accepted, &rejected, &closed, &msg_in, &msg_out,
                            &bytes_in, &bytes_out, &close_codes, &http_requests, &controls, &control_errors, &ps_subscribers, &ps_published,
                            &ps_deliveries, &ps_dropped, &ps_slow, &redis_up, &redis_reconnects,
                            &redis_out, &redis_in, &redis_dropped, &ktls, &lag, &handlers, &exceptions,
                            &healthy, &draining}) {
      if (!f->metric.empty()) out.push_back(std::move(*f));
    }
    return out;
  }

 private:
  const Server& server_;
};

// The limits in force, read from the server's running state at each scrape:
// a reload that changes them shows at the next scrape.
class LimitsCollector final : public prometheus::Collectable {
 public:
  explicit LimitsCollector(const Server& server) : server_(server) {}

  std::vector<MetricFamily> Collect() const override {
    const RunningState running = server_.running();
    const PreflightResult& p = running.preflight;
    std::vector<MetricFamily> out;
    const auto gauge = [&out](const char* name, const char* help, double v) {
      MetricFamily f = make_family(name, help, MetricType::Gauge);
      add_gauge(f, {}, v);
      out.push_back(std::move(f));
    };
    gauge("shoal_fd_limit",
          "Open-files limit (RLIMIT_NOFILE) after raising the soft limit to the hard one.",
          as_double(p.fd_limit));
    gauge("shoal_connection_capacity",
          "Connections the descriptor limit allows: fd_limit minus limits.reserved_descriptors.",
          as_double(p.connection_capacity));
    gauge("shoal_max_connections",
          "Effective process-wide connection limit: limits.max_connections, capped by the "
          "capacity when limits.on_insufficient is warn.",
          as_double(p.effective_max_connections));
    gauge("shoal_shards", "Shards (event loops, one thread each).", as_double(p.shards));
    MetricFamily per_listener = make_family(
        "shoal_listener_max_connections",
        "A listener's own connection limit (max_connections; 0: none, the process limit applies).",
        MetricType::Gauge);
    for (const ListenerConfig& l : running.config.listeners)
      add_gauge(per_listener, {{"listener", l.name}}, as_double(l.max_connections));
    out.push_back(std::move(per_listener));
    return out;
  }

 private:
  const Server& server_;
};

// The standard process_* metrics (the names every Prometheus client library
// exports), read from /proc on the admin thread, never on a shard.
class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<MetricFamily> Collect() const override {
    const std::optional<ProcessStats> p = read_process_stats();
    if (!p) return {};
    std::vector<MetricFamily> out;
    auto one = [&out](const char* name, const char* help, MetricType type, double v) {
      MetricFamily f = make_family(name, help, type);
      if (type == MetricType::Counter) {
        add_counter(f, {}, v);
      } else {
        add_gauge(f, {}, v);
      }
      out.push_back(std::move(f));
    };
    one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
        MetricType::Counter, p->cpu_seconds);
    one("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, p->open_fds);
    one("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
        p->max_fds);
    one("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
        p->virtual_bytes);
    one("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
        p->resident_bytes);
    one("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge, p->start_time_seconds);
    return out;
  }
};

std::string read_file(const char* path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::uint64_t boot_time_seconds() {
  std::istringstream in(read_file("/proc/stat"));
  std::string key;
  std::uint64_t value = 0;
  while (in >> key) {
    if (key == "btime" && in >> value) return value;
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

// Entries of /proc/self/fd, less the descriptor that reads the directory.
double count_open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  const int own = dirfd(dir);
  double n = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    if (std::atoi(e->d_name) == own) continue;
    ++n;
  }
  closedir(dir);
  return n;
}

}  // namespace

std::optional<ProcessStats> parse_proc_stat(const std::string& stat, std::uint64_t boot_time,
                                            long ticks_per_second, long page_size) {
  // The command name is in parentheses and may hold spaces or ')': the
  // fields start after the last ')'. Field numbers as in proc(5).
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || ticks_per_second <= 0) return std::nullopt;
  std::istringstream in(stat.substr(paren + 1));
  std::string field;
  double utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
  int i = 3;
  for (; i <= 24 && in >> field; ++i) {
    switch (i) {
      case 14: utime = std::strtod(field.c_str(), nullptr); break;
      case 15: stime = std::strtod(field.c_str(), nullptr); break;
      case 22: start = std::strtod(field.c_str(), nullptr); break;
      case 23: vsize = std::strtod(field.c_str(), nullptr); break;
      case 24: rss = std::strtod(field.c_str(), nullptr); break;
      default: break;
    }
  }
  if (i <= 24) return std::nullopt;
  const auto hz = static_cast<double>(ticks_per_second);
  ProcessStats p;
  p.cpu_seconds = (utime + stime) / hz;
  p.virtual_bytes = vsize;
  p.resident_bytes = rss * static_cast<double>(page_size);
  p.start_time_seconds = static_cast<double>(boot_time) + start / hz;
  return p;
}

std::optional<ProcessStats> read_process_stats() {
  std::optional<ProcessStats> p = parse_proc_stat(
      read_file("/proc/self/stat"), boot_time_seconds(), sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE));
  if (!p) return std::nullopt;
  p->open_fds = count_open_fds();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    p->max_fds = rl.rlim_cur == RLIM_INFINITY ? std::numeric_limits<double>::infinity()
                                              : static_cast<double>(rl.rlim_cur);
  }
  return p;
}

Metrics::Metrics(const Server& server) : static_(std::make_shared<prometheus::Registry>()) {
  // The build never changes while running: an ordinary prometheus-cpp
  // Registry, set once here, never touched by a shard.
  prometheus::BuildGauge()
      .Name("shoal_build_info")
      .Help("Always 1; the labels say which shoald build is running.")
      .Register(*static_)
      .Add({{"version", kVersion},
            {"commit", kGitCommit},
            {"instance", server.instance()}})
      .Set(1);

  collectables_.push_back(static_);
  collectables_.push_back(std::make_shared<LimitsCollector>(server));
  collectables_.push_back(std::make_shared<ShardCollector>(server));
  collectables_.push_back(std::make_shared<ProcessCollector>());
}

Metrics::~Metrics() = default;

std::vector<MetricFamily> Metrics::collect() const {
  std::vector<MetricFamily> out;
  for (const auto& c : collectables_) {
    auto families = c->Collect();
    std::move(families.begin(), families.end(), std::back_inserter(out));
  }
  return out;
}

std::string Metrics::scrape() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, collect());
  return std::move(out).str();
}

}  // namespace shoal
