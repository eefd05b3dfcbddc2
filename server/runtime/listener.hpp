// Accepting connections for one configured listener.
//
// An Acceptor is one listening socket running on one shard's loop. Under
// `reuseport` every shard has its own (SO_REUSEPORT: the kernel spreads
// connections by hash); under `dispatch` one acceptor creates each socket
// directly on the least-loaded shard's context and hands it over by post.
// Above a connection limit (process, listener, per client address, or the
// listener's new-connection rate) a connection is accepted and closed at once
// and counted; on EMFILE/ENFILE/ENOBUFS/ENOMEM the acceptor waits on a backoff
// timer instead of retrying in a loop.
//
// Ownership: the Server owns its acceptors and destroys them after every shard
// thread has stopped. Each acceptor is used only on its own shard's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "config/config.hpp"
#include "daemon/logging.hpp"
#include "runtime/shard.hpp"

namespace shoal {

// Starts a protocol session for an accepted socket on `shard` (called on that
// shard's thread). The admission counters were already incremented and are
// the session's now (its Connection gives them back); `client` is the per-IP
// count the connection holds (nullptr: none); `peer` is the client as
// admission saw it: the PROXY header's source, or else the socket's peer.
using SessionStarter =
    std::function<void(Shard& shard, std::size_t listener_index, tcp_socket socket,
                       PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer)>;

struct AcceptContext {
  const ListenerConfig* config = nullptr;
  std::size_t listener_index = 0;
  ListenerShared* shared = nullptr;
  ActiveCount* process_active = nullptr;
  const std::atomic<std::uint64_t>* process_max_connections = nullptr;
  std::vector<Shard*> targets;  // dispatch: every shard; reuseport: its own
  SessionStarter start_session;
  // The PROXY header required before anything else is read (off: none), and
  // how long the balancer has to send it (0: no limit).
  ProxyProtocol proxy_protocol = ProxyProtocol::off;
  Duration proxy_timeout{0};
};

class Acceptor {
 public:
  // Opens, binds and listens (throws std::system_error naming the listener
  // and address on failure). Accepting starts with start().
  Acceptor(Shard& home, AcceptContext context, const boost::asio::ip::tcp::endpoint& endpoint,
           bool reuse_port);

  // The bound endpoint (with the real port when 0 was asked for).
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  void start();  // posts the first accept to the home shard
  void stop();   // posts closing the socket to the home shard

 private:
  void do_accept();
  void on_accept(const boost::system::error_code& ec, tcp_socket socket, Shard& target);
  // Starts the session on `target`, here or posted there; the guard keeps
  // the counts until the session's Connection takes them over.
  void start_session(Shard& target, tcp_socket socket, AdmissionGuard admission,
                     const boost::asio::ip::tcp::endpoint& peer);
  bool admit();
  void unadmit();
  // The per-client limits for `peer` (the socket's peer, or the client a
  // PROXY header named; nullopt when neither is known), then the session on
  // `target`. `here` is the shard running it, whose counters it writes: the
  // home shard, or the one that read the PROXY header. Any shard's thread.
  void admit_client_and_start(Shard& here, Shard& target, tcp_socket socket,
                              AdmissionGuard admission,
                              const std::optional<boost::asio::ip::tcp::endpoint>& peer);
  // Per-client limits; nullopt when admitted (`client` set when counted).
  std::optional<RejectReason> admit_client(const std::optional<boost::asio::ip::tcp::endpoint>& peer,
                                           PerIpCounts::Entry*& client);
  void log_refused(RejectReason why, const std::optional<boost::asio::ip::tcp::endpoint>& peer);
  // Refuses a connection for its PROXY header (or for not being allowed to
  // send one): counted on `here`, logged at a limited rate. Any shard's thread.
  void refuse_proxy(Shard& here, tcp_socket& socket, const boost::asio::ip::tcp::endpoint& peer,
                    const char* problem);
  friend class ProxyHeaderRead;
  Shard& pick_target();
  void backoff(const boost::system::error_code& ec);

  Shard& home_;
  AcceptContext ctx_;
  tcp_acceptor acceptor_;
  steady_timer retry_timer_;
  std::chrono::milliseconds retry_delay_{0};
  RateLimiter exhausted_log_{std::chrono::seconds(5)};
  // The refusal logs: with a PROXY header, other shards refuse for this
  // listener too (the shard that read the header), hence the lock. Taken
  // only to log a refusal.
  std::mutex refused_log_mu_;
  RateLimiter per_ip_log_{std::chrono::seconds(5)};
  RateLimiter rate_log_{std::chrono::seconds(5)};
  RateLimiter proxy_log_{std::chrono::seconds(5)};
  std::size_t next_target_ = 0;
};

}  // namespace shoal
