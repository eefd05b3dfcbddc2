// The daemon's runtime and the owner of its running state: shards,
// listeners and their acceptors, the configuration and limits in force
// (updated by every accepted reload), and the ordered stop (readiness off,
// stop accepting, drain, close the rest, stop the loops).
//
// Thread safety: every public member is called from the main thread only,
// except those marked "any thread" (read by the admin port's thread).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/active_count.hpp"
#include "config/config.hpp"
#include "runtime/listener.hpp"
#include "daemon/preflight.hpp"
#include "runtime/shard.hpp"
#include "tls/tls.hpp"

namespace shoal::pubsub {
class PubSubHub;
}

namespace shoal {

struct BoundListener {
  std::string name;
  Protocol protocol;
  boost::asio::ip::tcp::endpoint endpoint;
};

// What runs now: the configuration with the live part of every accepted
// reload applied (the keys that need a restart keep their start-up values),
// and the preflight's limits for it.
struct RunningState {
  Config config;
  PreflightResult preflight;
};

// How a drain went, for the daemon's log.
struct DrainOutcome {
  std::uint64_t open_at_start = 0;  // connections open when accepting stopped
  std::uint64_t forced = 0;         // still open at the deadline: closed by the server
  bool interrupted = false;         // a second stop signal cut the wait short
  std::uint64_t left_open = 0;      // still open after the forced closes' bound
};

class Server {
 public:
  // `preflight` is the preflight's result for `config` (its effective
  // process-wide limit and resolved shard count are used). `tls` holds the
  // TLS listeners' settings (load_tls_settings(config)); when empty they
  // are loaded here (throws ConfigError).
  Server(const Config& config, const PreflightResult& preflight,
         std::vector<TlsSettingsPtr> tls = {});
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  // Binds every listener (throws on failure, before any thread starts), then
  // starts the shard threads and accepting.
  void start();

  const std::vector<BoundListener>& bound() const { return bound_; }

  // The graceful stop, in order: readiness off (/readyz answers 503, so that
  // load balancers stop sending clients), accepting stopped on every
  // listener, the open connections waited for up to `timeout`, the rest
  // closed on their shards (WebSocket 1001, TLS close_notify) and waited for
  // a bounded time, then the shards stopped and joined. `interrupt_fd`, when
  // not -1, is a signalfd for the stop signals: a second signal ends the
  // wait at once. No polling: the wait is on the connection count's eventfd.
  // Main thread; the server cannot be started again.
  DrainOutcome drain(Duration timeout, int interrupt_fd = -1);

  // The parts of drain(), for tests and for a destructor that must not hang.
  void stop_accepting();
  // Closes every open connection on every shard with CloseReason::drain and
  // returns once every shard has run its closes (their closing handshakes may
  // go on); false when a shard did not answer within `bound`.
  bool close_all_connections(std::chrono::milliseconds bound = std::chrono::seconds(2));
  // Stops the loops and joins the threads; idempotent.
  void stop();

  // Any thread.
  std::uint64_t active_connections() const { return active_.load(); }
  // The name this shoald answers with (config `instance`, else the host
  // name); fixed at start-up. Any thread.
  const std::string& instance() const { return instance_; }

  // The shards and the bound listeners are fixed once start() returned, so
  // any thread may walk them afterwards (reading only their counters).
  const std::vector<std::unique_ptr<Shard>>& shards() const { return shards_; }
  // The listeners as bound at start-up: their order, names and protocols
  // never change while running. Any thread.
  const std::vector<ListenerConfig>& listeners() const { return startup_.listeners; }
  // A copy of what runs now (see RunningState). Any thread.
  RunningState running() const;

  // Ready: every listener is bound and accepting, and no drain has begun.
  // Any thread.
  // With pubsub.redis_required, also: that listener's Redis is connected.
  bool ready() const {
    return started_.load(std::memory_order_acquire) && !draining_.load(std::memory_order_acquire) &&
           pubsub_ready();
  }
  // Per pubsub listener (by index; null for the others), for metrics.
  const std::vector<std::unique_ptr<pubsub::PubSubHub>>& pubsub_hubs() const { return hubs_; }
  bool draining() const { return draining_.load(std::memory_order_acquire); }

  // Applies a reloaded config that passed validation and the preflight
  // (`preflight` is its result; `tls` its TLS settings, load_tls_settings(next),
  // the certificate and key files read again): the process and listener
  // connection limits, the per-client limits, the idle and write timeouts on
  // every shard (returns after every shard applied them), and the
  // certificates for new connections. Returns the changed keys that need a
  // restart (restart_required()), which keep their running values. Main
  // thread only.
  std::vector<std::string> reload(const Config& next, const PreflightResult& preflight,
                                  const std::vector<TlsSettingsPtr>& tls);

  // When start() finished (for uptime); meaningful once ready() was true.
  std::chrono::steady_clock::time_point started_at() const { return started_at_; }

 private:
  // Runs fn(shard) on every shard's own thread; returns when all have run
  // it, or false after `bound` if some have not (a stuck shard).
  bool pubsub_ready() const;
  bool on_all_shards(const std::function<void(Shard&)>& fn, std::chrono::milliseconds bound);
  // Blocks until the connection count is zero, `deadline` passes or
  // `interrupt_fd` is readable; true when the count is zero.
  bool wait_idle(std::chrono::steady_clock::time_point deadline, int interrupt_fd,
                 bool& interrupted);

  // The configuration the listeners were started with. The session starters
  // and acceptors keep pointers into it, so it never changes.
  const Config startup_;
  const std::string instance_;
  mutable std::mutex running_mutex_;
  RunningState running_;  // guarded by running_mutex_
  // The effective process-wide limit, read by acceptors on every accept.
  std::atomic<std::uint64_t> max_connections_;
  unsigned shard_count_;
  ActiveCount active_;
  std::vector<std::unique_ptr<ListenerShared>> listener_shared_;
  // Per listener: the current TLS settings, null for plaintext listeners.
  // Read by the acceptors' session starters on every shard.
  std::vector<std::unique_ptr<TlsSlot>> tls_slots_;
  // websocket-pubsub listeners' fan-out, by listener index (null for the
  // others). Declared before the shards: sessions destroyed with a shard's
  // io_context still leave their channel tables.
  std::vector<std::unique_ptr<pubsub::PubSubHub>> hubs_;
  std::vector<std::unique_ptr<Shard>> shards_;
  // After the shards: destroyed first, while their contexts still exist.
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<BoundListener> bound_;
  bool stopped_ = false;
  std::atomic<bool> started_{false};
  std::atomic<bool> draining_{false};
  std::chrono::steady_clock::time_point started_at_{};
};

}  // namespace shoal
