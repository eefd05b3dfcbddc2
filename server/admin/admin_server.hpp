// The admin HTTP port (config `admin: {address, port}`): what operators and
// orchestrators ask the daemon.
//
//   GET /metrics  Prometheus text format 0.0.4 (metrics.hpp)
//   GET /healthz  200 while every shard's event loop answered within
//                 kLoopHealthDeadline (its loop-lag timer ran), else 503
//                 naming the stuck shards
//   GET /readyz   200 once the listeners are bound and while not draining,
//                 503 otherwise
//   GET /status   JSON: version, uptime, shards, listeners, limits, draining
//
// HEAD is answered like GET without the body; other methods get 405 with
// `Allow: GET, HEAD`, unknown paths 404. HTTP/1.1 with keep-alive. A
// request's line and headers are at most kMaxRequestBytes (else 431), its
// body too (else 413); it must arrive within kRequestTimeout, which also
// closes idle keep-alive connections. At most kMaxAdminConnections at once;
// more are closed on accept.
//
// It runs on its own thread and io_context, never on a shard: a slow scrape
// or a flood of admin requests cannot delay an echo, and a stuck shard can
// still be reported. It only reads the shards' counters (see metrics.cpp).
//
// Ownership: created by shoald_main after Server::start() and destroyed
// before the Server. Thread safety: construct, start(), stop() and destroy
// from one thread (the main thread); handle() may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

#include "config/config.hpp"

namespace shoal {

class Server;

inline constexpr std::size_t kMaxRequestBytes = 8 * 1024;
inline constexpr std::chrono::seconds kRequestTimeout{10};
inline constexpr int kMaxAdminConnections = 64;

class AdminServer {
 public:
  // The server outlives the admin server; /status and /metrics read its
  // running state (Server::running()) at each request.
  AdminServer(const AdminConfig& config, const Server& server);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and listens (throws std::system_error naming the admin address on
  // failure), then starts the admin thread.
  void start();
  // The bound endpoint (the real port when 0 was asked for).
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Stops the admin loop and joins its thread; open admin connections are
  // dropped. Idempotent.
  void stop();

  // What a request gets, before HTTP framing.
  struct Reply {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  // Routes one request by method and target (the query string is ignored).
  Reply handle(std::string_view method, std::string_view target) const;

  struct Impl;  // the loop, the acceptor and the routes (admin_server.cpp)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace shoal
