// The daemon's runtime: shards, listeners and their acceptors, and the
// ordered stop (stop accepting, drain, close the rest, stop the loops).
//
// Thread safety: every public member is called from the main thread only,
// except those marked "any thread" (read by the admin port's thread).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#include "listener.hpp"
#include "preflight.hpp"
#include "shard.hpp"
#include "tls.hpp"

namespace shoal {

struct BoundListener {
  std::string name;
  Protocol protocol;
  boost::asio::ip::tcp::endpoint endpoint;
};

class Server {
 public:
  // `max_connections` is the preflight's effective process-wide limit and
  // `shards` its resolved shard count. `tls` holds the TLS listeners'
  // settings (load_tls_settings(config)); when empty they are loaded here
  // (throws ConfigError).
  Server(const Config& config, std::uint64_t max_connections, unsigned shards,
         std::vector<TlsSettingsPtr> tls = {});
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  // Binds every listener (throws on failure, before any thread starts), then
  // starts the shard threads and accepting.
  void start();

  const std::vector<BoundListener>& bound() const { return bound_; }

  // Stops accepting on every listener; open connections go on.
  void stop_accepting();
  // Closes every open connection on every shard (asynchronously).
  void close_all_connections();
  std::uint64_t active_connections() const {
    return process_active_.load(std::memory_order_relaxed);
  }
  // Stops the loops and joins the threads; idempotent.
  void stop();

  // The shards and the bound listeners are fixed once start() returned, so
  // any thread may walk them afterwards (reading only their counters).
  const std::vector<std::unique_ptr<Shard>>& shards() const { return shards_; }
  const Config& config() const { return config_; }

  // Ready: every listener is bound and accepting, and no drain has begun.
  // ready(), draining() and started_at(): any thread.
  bool ready() const {
    return started_.load(std::memory_order_acquire) && !draining_.load(std::memory_order_acquire);
  }
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  // Marks the start of a graceful stop (before stop_accepting()): from now
  // on /readyz answers 503 so that load balancers stop sending new clients.
  void set_draining() { draining_.store(true, std::memory_order_release); }
  // The effective process-wide connection limit now (changes on reload).
  std::uint64_t max_connections() const { return max_connections_.load(std::memory_order_relaxed); }

  // Applies what a reloaded config can change while running: the process
  // and per-listener connection limits (`max_connections` is the new
  // preflight's effective limit) and the listeners' idle timeouts. `next`
  // must have passed validation. Returns the settings that need a restart
  // (one line each), which are left as they were. Main thread only.
  std::vector<std::string> apply_reload(const Config& next, std::uint64_t max_connections);

  // Hands each TLS listener the settings built from a reloaded config
  // (load_tls_settings(next): the certificate and key files read again):
  // connections accepted from now on use them, open ones keep theirs.
  // Returns the TLS changes that need a restart (TLS turned on or off on a
  // listener), which are left as they were. Main thread only.
  std::vector<std::string> reload_tls(const Config& next, const std::vector<TlsSettingsPtr>& tls);

  // When start() finished (for uptime); meaningful once ready() was true.
  std::chrono::steady_clock::time_point started_at() const { return started_at_; }

 private:
  Config config_;
  std::atomic<std::uint64_t> max_connections_;
  unsigned shard_count_;
  std::atomic<std::uint64_t> process_active_{0};
  std::vector<std::unique_ptr<ListenerShared>> listener_shared_;
  // Per listener: the current TLS settings, null for plaintext listeners.
  // Read by the acceptors' session starters on every shard.
  std::vector<std::unique_ptr<TlsSlot>> tls_slots_;
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
