// The daemon's runtime: shards, listeners and their acceptors, and the
// ordered stop (stop accepting, drain, close the rest, stop the loops).
//
// Thread safety: every public member is called from the main thread only.
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

namespace shoal {

struct BoundListener {
  std::string name;
  Protocol protocol;
  boost::asio::ip::tcp::endpoint endpoint;
};

class Server {
 public:
  // `max_connections` is the preflight's effective process-wide limit and
  // `shards` its resolved shard count.
  Server(const Config& config, std::uint64_t max_connections, unsigned shards);
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

  const std::vector<std::unique_ptr<Shard>>& shards() const { return shards_; }

 private:
  Config config_;
  std::uint64_t max_connections_;
  unsigned shard_count_;
  std::atomic<std::uint64_t> process_active_{0};
  std::vector<std::unique_ptr<ListenerShared>> listener_shared_;
  std::vector<std::unique_ptr<Shard>> shards_;
  // After the shards: destroyed first, while their contexts still exist.
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<BoundListener> bound_;
  bool stopped_ = false;
};

}  // namespace shoal
