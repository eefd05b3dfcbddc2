#include "runtime/listener.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <memory>

#include <boost/asio/socket_base.hpp>
#include <spdlog/spdlog.h>

#include "protocol/proxy_protocol.hpp"

namespace shoal {
namespace {

using boost::asio::ip::tcp;

// SO_REUSEPORT is not among Asio's socket options.
using reuse_port = boost::asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

bool is_descriptor_exhaustion(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category() &&
      ec.category() != boost::asio::error::get_system_category())
    return false;
  const int v = ec.value();
  return v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM;
}

// Accepted and closed at once: the client learns now (RST), and the backlog
// keeps moving instead of filling with connections we will never serve.
void close_at_once(tcp_socket& socket) {
  boost::system::error_code ignored;
  socket.set_option(boost::asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}

constexpr std::chrono::milliseconds kFirstRetry{10};
constexpr std::chrono::milliseconds kMaxRetry{1000};

}  // namespace

Acceptor::Acceptor(Shard& home, AcceptContext context, const tcp::endpoint& endpoint,
                   bool reuse_port_enabled)
    : home_(home),
      ctx_(std::move(context)),
      acceptor_(home.executor()),
      retry_timer_(home.executor()) {
  const std::string where =
      "listener \"" + ctx_.config->name + "\" on " + ctx_.config->address + ":" +
      std::to_string(endpoint.port());
  auto check = [&](const boost::system::error_code& ec, const char* what) {
    if (ec) throw std::system_error(ec, where + ": " + what);
  };
  boost::system::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  check(ec, "socket");
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  check(ec, "SO_REUSEADDR");
  if (reuse_port_enabled) {
    acceptor_.set_option(reuse_port(true), ec);
    check(ec, "SO_REUSEPORT");
  }
  acceptor_.bind(endpoint, ec);
  check(ec, "bind");
  acceptor_.listen(ctx_.config->backlog, ec);
  check(ec, "listen");
}

tcp::endpoint Acceptor::local_endpoint() const { return acceptor_.local_endpoint(); }

void Acceptor::start() {
  home_.post([this] { do_accept(); });
}

void Acceptor::stop() {
  home_.post([this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    retry_timer_.cancel();
  });
}

Shard& Acceptor::pick_target() {
  if (ctx_.targets.size() == 1) return *ctx_.targets.front();
  // Least loaded first; ties go round-robin so an idle start spreads evenly.
  const std::size_t n = ctx_.targets.size();
  std::size_t best = next_target_ % n;
  std::uint64_t best_load = ctx_.targets[best]->active_connections();
  for (std::size_t k = 1; k < n; ++k) {
    const std::size_t i = (next_target_ + k) % n;
    const std::uint64_t load = ctx_.targets[i]->active_connections();
    if (load < best_load) {
      best = i;
      best_load = load;
    }
  }
  next_target_ = best + 1;
  return *ctx_.targets[best];
}

void Acceptor::do_accept() {
  if (!acceptor_.is_open()) return;
  Shard& target = pick_target();
  if (&target == &home_) {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp_socket socket) {
      on_accept(ec, std::move(socket), home_);
    });
  } else {
    // The socket is created on the target's context; only the accept itself
    // runs here.
    acceptor_.async_accept(target.context(),
                           [this, &target](const boost::system::error_code& ec, tcp_socket socket) {
                             on_accept(ec, std::move(socket), target);
                           });
  }
}

bool Acceptor::admit() {
  if (!ctx_.process_active->acquire(ctx_.process_max_connections->load(std::memory_order_relaxed))) {
    return false;
  }
  const auto listener_now = ctx_.shared->active.fetch_add(1, std::memory_order_relaxed);
  const auto listener_max = ctx_.shared->max_connections.load(std::memory_order_relaxed);
  if (listener_max != 0 && listener_now >= listener_max) {
    unadmit();
    return false;
  }
  return true;
}

void Acceptor::unadmit() {
  ctx_.shared->active.fetch_sub(1, std::memory_order_relaxed);
  ctx_.process_active->release();
}

// Checked after admit(), and the rate last: a connection refused for a
// connection limit or for its address takes no token, so one client
// hammering at its own limit does not use up everyone's rate.
std::optional<RejectReason> Acceptor::admit_client(const std::optional<tcp::endpoint>& peer,
                                                   PerIpCounts::Entry*& client) {
  ListenerShared& shared = *ctx_.shared;
  const std::uint64_t per_ip_max = shared.max_connections_per_ip.load(std::memory_order_relaxed);
  // No peer address: the client reset it while it waited in the backlog.
  // It goes on uncounted; its session fails at its first read.
  if (per_ip_max != 0 && peer) {
    client = shared.per_ip.try_acquire(peer->address(), per_ip_max);
    if (client == nullptr) return RejectReason::per_ip_limit;
  }
  if (!shared.new_connections.try_take(NewConnectionRate::now_ns())) {
    if (client != nullptr) shared.per_ip.release(client);
    client = nullptr;
    return RejectReason::rate_limit;
  }
  return std::nullopt;
}

void Acceptor::log_refused(RejectReason why, const std::optional<tcp::endpoint>& peer) {
  std::uint64_t suppressed = 0;
  std::lock_guard lock(refused_log_mu_);
  if (why == RejectReason::per_ip_limit && per_ip_log_.allow(suppressed)) {
    spdlog::warn(
        "listener \"{}\": refused a connection from {}: it has max_connections_per_ip ({}) "
        "open ({} similar messages suppressed)",
        ctx_.config->name, peer ? peer->address().to_string() : std::string("a client"),
        ctx_.shared->max_connections_per_ip.load(std::memory_order_relaxed), suppressed);
  } else if (why == RejectReason::rate_limit && rate_log_.allow(suppressed)) {
    const NewConnectionRate& rate = ctx_.shared->new_connections;
    spdlog::warn(
        "listener \"{}\": refused a new connection above max_new_connections_per_second {} "
        "(burst {}) ({} similar messages suppressed)",
        ctx_.config->name, rate.per_second(), rate.burst(), suppressed);
  }
}

void Acceptor::refuse_proxy(Shard& here, tcp_socket& socket, const tcp::endpoint& peer,
                            const char* problem) {
  here.slot(ctx_.listener_index).stats.rejected[static_cast<int>(RejectReason::proxy_protocol)].add();
  {
    std::uint64_t suppressed = 0;
    std::lock_guard lock(refused_log_mu_);
    if (proxy_log_.allow(suppressed)) {
      spdlog::warn(
          "listener \"{}\": refused a connection from {}: {} (proxy_protocol {}) ({} similar "
          "messages suppressed)",
          ctx_.config->name, peer.address().to_string(), problem,
          to_string(ctx_.proxy_protocol), suppressed);
    }
  }
  close_at_once(socket);
}

// Reads a connection's PROXY header on the shard that will serve it, before
// anything else reads the socket: peeks at what has come, waits for more
// while the parser asks for it (within the handshake deadline), then takes
// exactly the header's bytes, so that data sent in the same segment (an AWS
// NLB sends the header with the first bytes) stays for the session. Owned by
// its pending wait and timer; the guard it holds gives the admission back
// if it never finishes.
class ProxyHeaderRead : public std::enable_shared_from_this<ProxyHeaderRead> {
 public:
  ProxyHeaderRead(Acceptor& acceptor, Shard& shard, tcp_socket socket, AdmissionGuard admission,
                  const tcp::endpoint& peer)
      : acceptor_(acceptor),
        shard_(shard),
        socket_(std::move(socket)),
        admission_(std::move(admission)),
        peer_(peer),
        timer_(shard.executor()) {}

  void start() {
    const Duration timeout = acceptor_.ctx_.proxy_timeout;
    if (timeout.count() > 0) {
      timer_.expires_after(timeout);
      timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (!ec) self->fail("no PROXY header within the handshake timeout");
      });
    }
    try_read();
  }

 private:
  void try_read() {
    if (finished_) return;
    // Peeked into the shard's scratch buffer: nothing is kept between waits.
    char* const buf = shard_.scratch();
    static_assert(kMaxProxyHeaderBytes <= Shard::scratch_size);
    const ssize_t n = ::recv(socket_.native_handle(), buf, kMaxProxyHeaderBytes,
                             MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        wait();
      } else {
        fail("the connection failed before its PROXY header");
      }
      return;
    }
    if (n == 0) {
      fail("closed before sending a PROXY header");
      return;
    }
    const ProxyParse parse = parse_proxy_header(
        std::string_view(buf, static_cast<std::size_t>(n)), acceptor_.ctx_.proxy_protocol);
    switch (parse.status) {
      case ProxyParse::Status::need_more: wait(); return;
      case ProxyParse::Status::invalid: fail(parse.problem); return;
      case ProxyParse::Status::done: break;
    }
    const std::size_t length = parse.header.length;
    if (::recv(socket_.native_handle(), buf, length, MSG_DONTWAIT) != static_cast<ssize_t>(length)) {
      fail("the PROXY header could not be read past");
      return;
    }
    finished_ = true;
    timer_.cancel();
    // LOCAL: the balancer speaking for itself (its health checks).
    const tcp::endpoint client = parse.header.local ? peer_ : parse.header.source;
    if (spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("listener \"{}\": PROXY header from {}: client {}", acceptor_.ctx_.config->name,
                    peer_.address().to_string(),
                    parse.header.local ? std::string("the balancer itself (LOCAL)")
                                       : client.address().to_string());
    }
    acceptor_.admit_client_and_start(shard_, shard_, std::move(socket_), std::move(admission_),
                                     client);
  }

  void wait() {
    socket_.async_wait(tcp_socket::wait_read,
                       [self = shared_from_this()](const boost::system::error_code& ec) {
                         if (ec) {
                           if (ec != boost::asio::error::operation_aborted)
                             self->fail("the connection failed before its PROXY header");
                           return;
                         }
                         self->try_read();
                       });
  }

  void fail(const char* problem) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    acceptor_.refuse_proxy(shard_, socket_, peer_, problem);
    // The guard gives the admission back with this object.
  }

  Acceptor& acceptor_;
  Shard& shard_;
  tcp_socket socket_;
  AdmissionGuard admission_;
  tcp::endpoint peer_;  // the balancer
  steady_timer timer_;
  bool finished_ = false;
};

void Acceptor::on_accept(const boost::system::error_code& ec, tcp_socket socket, Shard& target) {
  if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
  ListenerStats& stats = home_.slot(ctx_.listener_index).stats;
  if (ec) {
    if (is_descriptor_exhaustion(ec)) {
      stats.rejected[static_cast<int>(RejectReason::fd_exhausted)].add();
      backoff(ec);
      return;
    }
    // ECONNABORTED and the like concern one connection: accept the next.
    spdlog::debug("listener \"{}\": accept: {}", ctx_.config->name, ec.message());
    do_accept();
    return;
  }
  retry_delay_ = std::chrono::milliseconds(0);

  if (!admit()) {
    stats.rejected[static_cast<int>(RejectReason::limit)].add();
    close_at_once(socket);
    do_accept();
    return;
  }
  // From here every way out gives back what admit() took, or hands it on.
  AdmissionGuard admission(*ctx_.shared, *ctx_.process_active);
  boost::system::error_code peer_ec;
  const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
  if (ctx_.proxy_protocol == ProxyProtocol::off) {
    admit_client_and_start(home_, target, std::move(socket), std::move(admission),
                           peer_ec ? std::nullopt : std::optional<tcp::endpoint>(peer));
    do_accept();
    return;
  }
  // Only a trusted balancer may say who the client is.
  if (peer_ec || !ctx_.shared->proxy_trusted.get()->contains(peer.address())) {
    refuse_proxy(home_, socket, peer,
                 peer_ec ? "no peer address" : "a PROXY header is not accepted from this address "
                                               "(proxy_trusted)");
    do_accept();
    return;
  }
  // Read where the session will run: the header's wait is that shard's work.
  auto read = std::make_shared<ProxyHeaderRead>(*this, target, std::move(socket),
                                                std::move(admission), peer);
  if (&target == &home_) {
    read->start();
  } else {
    target.post([read = std::move(read)] { read->start(); });
  }
  do_accept();
}

void Acceptor::admit_client_and_start(Shard& here, Shard& target, tcp_socket socket,
                                      AdmissionGuard admission,
                                      const std::optional<tcp::endpoint>& peer) {
  ListenerStats& stats = here.slot(ctx_.listener_index).stats;
  PerIpCounts::Entry* client = nullptr;
  if (const std::optional<RejectReason> why = admit_client(peer, client)) {
    stats.rejected[static_cast<int>(*why)].add();
    log_refused(*why, peer);
    close_at_once(socket);
    return;
  }
  admission.hold_client(client);
  stats.accepted.add();
  start_session(target, std::move(socket), std::move(admission), peer.value_or(tcp::endpoint()));
}

// One path for both policies. Under `dispatch` the start is a handler queued
// on another shard, which a shutdown may destroy unrun: the guard in it then
// gives the counts back. release() hands them to the starter as it is
// called, and the session's Connection gives them back when it ends.
void Acceptor::start_session(Shard& target, tcp_socket socket, AdmissionGuard admission,
                             const tcp::endpoint& peer) {
  if (&target == &home_ || ctx_.proxy_protocol != ProxyProtocol::off) {
    // Here: the accepting shard, or the one that read the PROXY header,
    // which is the target.
    ctx_.start_session(target, ctx_.listener_index, std::move(socket), admission.release(), peer);
    return;
  }
  target.post([start = &ctx_.start_session, &target, index = ctx_.listener_index,
               s = std::move(socket), a = std::move(admission), peer]() mutable {
    (*start)(target, index, std::move(s), a.release(), peer);
  });
}

void Acceptor::backoff(const boost::system::error_code& ec) {
  retry_delay_ = retry_delay_.count() == 0 ? kFirstRetry : std::min(retry_delay_ * 2, kMaxRetry);
  std::uint64_t suppressed = 0;
  if (exhausted_log_.allow(suppressed)) {
    spdlog::warn(
        "listener \"{}\": accept failed: {} (descriptors exhausted); retrying in {} ms, "
        "connections already open are still served ({} similar messages suppressed)",
        ctx_.config->name, ec.message(), retry_delay_.count(), suppressed);
  }
  retry_timer_.expires_after(retry_delay_);
  retry_timer_.async_wait([this](boost::system::error_code wait_ec) {
    if (!wait_ec) do_accept();
  });
}

}  // namespace shoal
