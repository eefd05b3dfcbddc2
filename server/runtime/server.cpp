#include "runtime/server.hpp"

#include "pubsub/hub.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>

#include <boost/asio/ip/address.hpp>
#include <spdlog/spdlog.h>

#include "runtime/drain_spread.hpp"
#include "sessions/tcp_echo_session.hpp"
#include "sessions/tls_echo_session.hpp"
#include "sessions/websocket_session.hpp"

namespace shoal {
namespace {

using boost::asio::ip::tcp;

// How long the connections closed by a drain may take to end their closing
// handshakes, and how long a reload waits for every shard to apply it.
constexpr std::chrono::seconds kForcedCloseBound{2};
constexpr std::chrono::seconds kReloadBound{2};

// `tls`: the listener's TLS slot, null for plaintext. The Server's copy of
// the config and its slots outlive every session.
SessionStarter starter_for(const ListenerConfig& lc, const TlsSlot* tls) {
  switch (lc.protocol) {
    case Protocol::tcp_echo:
      if (tls) {
        return [tls](Shard& shard, std::size_t index, tcp_socket socket,
                     PerIpCounts::Entry* client, const tcp::endpoint& peer) {
          start_tls_echo_session(shard, index, std::move(socket), client, peer, tls->get());
        };
      }
      return start_tcp_echo_session;
    case Protocol::websocket_echo:
    case Protocol::websocket_pubsub:  // the same session; the shard's slot has its channels
      if (tls) {
        // The session reads lc.websocket from its shard's slot.
        return [tls](Shard& shard, std::size_t index, tcp_socket socket, PerIpCounts::Entry* client,
                     const tcp::endpoint& peer) {
          start_websocket_session(shard, index, std::move(socket), client, peer, tls->get());
        };
      }
      return [](Shard& shard, std::size_t index, tcp_socket socket, PerIpCounts::Entry* client,
                const tcp::endpoint& peer) {
        start_websocket_session(shard, index, std::move(socket), client, peer);
      };
  }
  throw std::logic_error("no session type for protocol");
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return {};
  return name;
}

// proxy_trusted as the accept path matches it (validated by the config).
std::shared_ptr<const CidrSet> trusted_of(const ListenerConfig& lc) {
  auto set = std::make_shared<CidrSet>();
  for (const std::string& text : lc.proxy_trusted) set->add(CidrSet::parse(text));
  return set;
}

// How long a balancer has to send the PROXY header: the listener's
// handshake deadline, or 10 s for plaintext TCP echo, which has none.
Duration proxy_timeout_of(const ListenerConfig& lc) {
  if (lc.protocol != Protocol::tcp_echo) return lc.websocket.handshake_timeout;
  if (lc.tls) return lc.tls->handshake_timeout;
  return std::chrono::seconds(10);
}

// The CPUs this process may run on, in order, for pinning shard i to the
// i-th of them.
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

}  // namespace

Server::Server(const Config& config, const PreflightResult& preflight,
               std::vector<TlsSettingsPtr> tls)
    : startup_(config),
      instance_(effective_instance(config)),
      running_{config, preflight},
      max_connections_(preflight.effective_max_connections),
      shard_count_(preflight.shards == 0 ? 1 : preflight.shards) {
  if (tls.empty()) tls = load_tls_settings(startup_);
  for (std::size_t i = 0; i < startup_.listeners.size(); ++i) {
    const bool on = startup_.listeners[i].tls.has_value() && i < tls.size() && tls[i];
    tls_slots_.push_back(on ? std::make_unique<TlsSlot>(tls[i]) : nullptr);
  }
  std::vector<ListenerShared*> shared;
  for (const auto& l : startup_.listeners) {
    auto s = std::make_unique<ListenerShared>();
    s->max_connections = l.max_connections;
    s->max_connections_per_ip = l.max_connections_per_ip;
    s->new_connections.configure(l.max_new_connections_per_second, l.new_connections_burst);
    s->proxy_trusted.set(trusted_of(l));
    s->name = l.name;
    s->instance = instance_;
    s->hostname = host_name();
    shared.push_back(s.get());
    listener_shared_.push_back(std::move(s));
  }
  for (unsigned i = 0; i < shard_count_; ++i) {
    shards_.push_back(std::make_unique<Shard>(i, startup_, shared, active_));
  }
  std::vector<Shard*> all;
  for (auto& s : shards_) all.push_back(s.get());
  for (std::size_t li = 0; li < startup_.listeners.size(); ++li) {
    if (startup_.listeners[li].protocol != Protocol::websocket_pubsub) {
      hubs_.push_back(nullptr);
      continue;
    }
    auto hub = std::make_unique<pubsub::PubSubHub>(startup_.listeners[li], li);
    hub->attach(all);
    for (unsigned s = 0; s < shards_.size(); ++s) shards_[s]->slot(li).pubsub = &hub->table(s);
    hubs_.push_back(std::move(hub));
  }
}

bool Server::pubsub_ready() const {
  for (const auto& hub : hubs_)
    if (hub && !hub->ready()) return false;
  return true;
}

Server::~Server() { stop(); }

void Server::start() {
  using boost::asio::ip::tcp;
  const bool reuseport = startup_.sharding == Sharding::reuseport;
  std::vector<Shard*> all;
  for (auto& s : shards_) all.push_back(s.get());

  for (std::size_t li = 0; li < startup_.listeners.size(); ++li) {
    const ListenerConfig& lc = startup_.listeners[li];
    tcp::endpoint endpoint(boost::asio::ip::make_address(lc.address), lc.port);
    AcceptContext base;
    base.config = &lc;
    base.listener_index = li;
    base.shared = listener_shared_[li].get();
    base.process_active = &active_;
    base.process_max_connections = &max_connections_;
    base.start_session = starter_for(lc, tls_slots_[li].get());
    base.proxy_protocol = lc.proxy_protocol;
    base.proxy_timeout = proxy_timeout_of(lc);

    if (reuseport) {
      for (auto& shard : shards_) {
        AcceptContext ctx = base;
        ctx.targets = {shard.get()};
        acceptors_.push_back(std::make_unique<Acceptor>(*shard, std::move(ctx), endpoint, true));
        // Port 0: every shard joins the port the first one was given.
        endpoint.port(acceptors_.back()->local_endpoint().port());
      }
    } else {
      AcceptContext ctx = base;
      ctx.targets = all;
      // Listener i's acceptor lives on shard i mod N, so several listeners
      // do not all accept on shard 0.
      Shard& home = *shards_[li % shards_.size()];
      acceptors_.push_back(std::make_unique<Acceptor>(home, std::move(ctx), endpoint, false));
      endpoint = acceptors_.back()->local_endpoint();
    }
    bound_.push_back(BoundListener{lc.name, lc.protocol, acceptors_.back()->local_endpoint()});
  }

  const std::vector<int> cpus = allowed_cpus();
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    int cpu = -1;
    if (startup_.cpu_affinity && !cpus.empty()) cpu = cpus[i % cpus.size()];
    shards_[i]->start(cpu);
  }
  for (auto& hub : hubs_)
    if (hub) hub->start();  // Redis connects in the background
  for (auto& a : acceptors_) a->start();
  started_at_ = std::chrono::steady_clock::now();
  started_.store(true, std::memory_order_release);
}

void Server::stop_accepting() {
  for (auto& a : acceptors_) a->stop();
}

RunningState Server::running() const {
  std::lock_guard lock(running_mutex_);
  return running_;
}

bool Server::on_all_shards(const std::function<void(Shard&)>& fn,
                           std::chrono::milliseconds bound) {
  // Shared with the posted handlers: a shard that answers after the bound
  // still finds it alive.
  struct Pending {
    std::mutex mutex;
    std::condition_variable done;
    std::size_t left;
    std::function<void(Shard&)> fn;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = shards_.size();
  pending->fn = fn;
  for (auto& s : shards_) {
    Shard* shard = s.get();
    shard->post([pending, shard] {
      pending->fn(*shard);
      std::lock_guard lock(pending->mutex);
      if (--pending->left == 0) pending->done.notify_one();
    });
  }
  std::unique_lock lock(pending->mutex);
  return pending->done.wait_for(lock, bound, [&] { return pending->left == 0; });
}

bool Server::close_all_connections(std::chrono::milliseconds bound) {
  return on_all_shards([](Shard& shard) { shard.close_all(CloseReason::drain); }, bound);
}

bool Server::wait_idle(std::chrono::steady_clock::time_point deadline, int interrupt_fd,
                       bool& interrupted) {
  for (;;) {
    if (active_.watch() == 0) return true;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return false;
    // Rounded up, so that the last wait does not spin on a 0 ms timeout.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    pollfd fds[2] = {{active_.fd(), POLLIN, 0}, {interrupt_fd, POLLIN, 0}};
    const int n = ::poll(fds, interrupt_fd >= 0 ? 2 : 1,
                         static_cast<int>(std::min<std::int64_t>(ms, 60'000)));
    if (n < 0 && errno != EINTR) return active_.load() == 0;
    if (n > 0 && (fds[0].revents & POLLIN)) active_.clear();
    if (n > 0 && interrupt_fd >= 0 && (fds[1].revents & POLLIN)) {
      signalfd_siginfo info{};
      if (::read(interrupt_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        spdlog::warn("{} again: closing {} connections now",
                     strsignal(static_cast<int>(info.ssi_signo)), active_.load());
      }
      interrupted = true;
      return active_.load() == 0;
    }
  }
}

DrainOutcome Server::drain(Duration timeout, int interrupt_fd) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  DrainOutcome out;
  draining_.store(true, std::memory_order_release);
  stop_accepting();
  out.open_at_start = active_.load();
  spdlog::info("draining {} connections (up to {})", out.open_at_start, format_duration(timeout));
  // WebSocket clients are told to go (1001) over the spread window, so that
  // they do not all reconnect to the other instances in one moment.
  std::vector<std::size_t> websocket_listeners;
  for (std::size_t i = 0; i < startup_.listeners.size(); ++i) {
    if (startup_.listeners[i].protocol != Protocol::tcp_echo) websocket_listeners.push_back(i);
  }
  if (!websocket_listeners.empty()) {
    const Duration spread = std::min(running().config.shutdown.drain_spread, timeout);
    for (auto& s : shards_) {
      Shard* shard = s.get();
      shard->post([shard, websocket_listeners, spread] { spread_close(*shard, websocket_listeners, spread); });
    }
  }
  if (!wait_idle(deadline, interrupt_fd, out.interrupted)) {
    out.forced = active_.load();
    if (!out.interrupted) {
      spdlog::info("drain timeout: closing {} remaining connections", out.forced);
    }
    if (!close_all_connections()) {
      spdlog::error("drain: a shard did not run its closes within 2 s");
    }
    // Their closing handshakes (WebSocket close, TLS close_notify) are
    // bounded by the sessions' own timers; this bounds the whole.
    bool ignored = false;
    wait_idle(std::chrono::steady_clock::now() + kForcedCloseBound, -1, ignored);
    out.left_open = active_.load();
  }
  stop();
  return out;
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  // Before the loops stop: sessions that end from now on only leave their
  // shard's table, and Redis is let go.
  for (auto& hub : hubs_)
    if (hub) hub->stop();
  for (auto& s : shards_) s->stop_and_join();
}

}  // namespace shoal

namespace shoal {

std::vector<std::string> Server::reload(const Config& next, const PreflightResult& preflight,
                                        const std::vector<TlsSettingsPtr>& tls) {
  RunningState now = running();
  std::vector<std::string> restart = restart_required(now.config, next);
  const Config applied = apply_live(now.config, next);

  max_connections_.store(preflight.effective_max_connections, std::memory_order_relaxed);
  for (std::size_t i = 0; i < applied.listeners.size(); ++i) {
    const ListenerConfig& l = applied.listeners[i];
    ListenerShared& shared = *listener_shared_[i];
    shared.max_connections.store(l.max_connections, std::memory_order_relaxed);
    // Connections open before per-IP limiting was turned on are not counted;
    // those counted go on being released when they end, whatever the limit.
    shared.max_connections_per_ip.store(l.max_connections_per_ip, std::memory_order_relaxed);
    shared.new_connections.configure(l.max_new_connections_per_second, l.new_connections_burst);
    shared.proxy_trusted.set(trusted_of(l));
    if (tls_slots_[i] && l.tls && i < tls.size() && tls[i]) tls_slots_[i]->set(tls[i]);
  }
  // By value: a shard that answers after the bound runs them still.
  std::vector<std::pair<std::int64_t, std::int64_t>> timeouts;
  for (const ListenerConfig& l : applied.listeners) {
    // WebSocket sessions time their writes themselves (websocket.write_timeout).
    timeouts.emplace_back(l.idle_timeout.count(),
                          l.protocol == Protocol::tcp_echo ? l.write_timeout.count() : 0);
  }
  const bool applied_everywhere = on_all_shards(
      [timeouts](Shard& shard) {
        for (std::size_t i = 0; i < timeouts.size(); ++i)
          shard.set_timeouts(i, timeouts[i].first, timeouts[i].second);
      },
      kReloadBound);
  if (!applied_everywhere) {
    spdlog::error("reload: a shard did not apply the new timeouts within {} ms; it will when it "
                  "runs again",
                  kReloadBound.count());
  }

  PreflightResult limits = preflight;
  // The shard count does not change while running, whatever `next` asks.
  limits.shards = now.preflight.shards;
  std::lock_guard lock(running_mutex_);
  running_ = RunningState{applied, std::move(limits)};
  return restart;
}

}  // namespace shoal
