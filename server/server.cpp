#include "server.hpp"

#include <sched.h>

#include <boost/asio/ip/address.hpp>
#include <spdlog/spdlog.h>

#include "tcp_echo_session.hpp"
#include "tls_echo_session.hpp"
#include "websocket_session.hpp"

namespace shoal {
namespace {

// `tls`: the listener's TLS slot, null for plaintext. The Server's copy of
// the config and its slots outlive every session.
SessionStarter starter_for(const ListenerConfig& lc, const TlsSlot* tls) {
  switch (lc.protocol) {
    case Protocol::tcp_echo:
      if (tls) {
        return [tls](Shard& shard, std::size_t index, tcp_socket socket,
                     PerIpCounts::Entry* client) {
          start_tls_echo_session(shard, index, std::move(socket), client, tls->get());
        };
      }
      return start_tcp_echo_session;
    case Protocol::websocket_echo:
      if (tls) {
        return [ws = &lc.websocket, tls](Shard& shard, std::size_t index, tcp_socket socket,
                                         PerIpCounts::Entry* client) {
          start_websocket_session(shard, index, std::move(socket), client, *ws, tls->get());
        };
      }
      return [ws = &lc.websocket](Shard& shard, std::size_t index, tcp_socket socket,
                                  PerIpCounts::Entry* client) {
        start_websocket_session(shard, index, std::move(socket), client, *ws);
      };
  }
  throw std::logic_error("no session type for protocol");
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

Server::Server(const Config& config, std::uint64_t max_connections, unsigned shards,
               std::vector<TlsSettingsPtr> tls)
    : config_(config), max_connections_(max_connections), shard_count_(shards == 0 ? 1 : shards) {
  if (tls.empty()) tls = load_tls_settings(config_);
  for (std::size_t i = 0; i < config_.listeners.size(); ++i) {
    const bool on = config_.listeners[i].tls.has_value() && i < tls.size() && tls[i];
    tls_slots_.push_back(on ? std::make_unique<TlsSlot>(tls[i]) : nullptr);
  }
  std::vector<ListenerShared*> shared;
  for (const auto& l : config_.listeners) {
    auto s = std::make_unique<ListenerShared>();
    s->max_connections = l.max_connections;
    s->max_connections_per_ip = l.max_connections_per_ip;
    s->new_connections.configure(l.max_new_connections_per_second, l.new_connections_burst);
    shared.push_back(s.get());
    listener_shared_.push_back(std::move(s));
  }
  for (unsigned i = 0; i < shard_count_; ++i) {
    shards_.push_back(std::make_unique<Shard>(i, config_, shared, process_active_));
  }
}

Server::~Server() { stop(); }

void Server::start() {
  using boost::asio::ip::tcp;
  const bool reuseport = config_.sharding == Sharding::reuseport;
  std::vector<Shard*> all;
  for (auto& s : shards_) all.push_back(s.get());

  for (std::size_t li = 0; li < config_.listeners.size(); ++li) {
    const ListenerConfig& lc = config_.listeners[li];
    tcp::endpoint endpoint(boost::asio::ip::make_address(lc.address), lc.port);
    AcceptContext base;
    base.config = &lc;
    base.listener_index = li;
    base.shared = listener_shared_[li].get();
    base.process_active = &process_active_;
    base.process_max_connections = &max_connections_;
    base.start_session = starter_for(lc, tls_slots_[li].get());

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
    if (config_.cpu_affinity && !cpus.empty()) cpu = cpus[i % cpus.size()];
    shards_[i]->start(cpu);
  }
  for (auto& a : acceptors_) a->start();
  started_at_ = std::chrono::steady_clock::now();
  started_.store(true, std::memory_order_release);
}

void Server::stop_accepting() {
  for (auto& a : acceptors_) a->stop();
}

void Server::close_all_connections() {
  for (auto& s : shards_) {
    Shard* shard = s.get();
    shard->post([shard] { shard->close_all(CloseReason::drain); });
  }
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& s : shards_) s->stop_and_join();
}

}  // namespace shoal

namespace shoal {

std::vector<std::string> Server::apply_reload(const Config& next, std::uint64_t max_connections) {
  std::vector<std::string> restart;
  auto needs_restart = [&](bool changed, const std::string& what) {
    if (changed) restart.push_back(what);
  };
  needs_restart(next.shards != config_.shards, "shards");
  needs_restart(next.cpu_affinity != config_.cpu_affinity, "cpu_affinity");
  needs_restart(next.sharding != config_.sharding, "sharding");
  needs_restart(next.admin != config_.admin, "admin");
  needs_restart(next.limits.reserved_descriptors != config_.limits.reserved_descriptors,
                "limits.reserved_descriptors");
  const bool same_listener_set = next.listeners.size() == config_.listeners.size();
  needs_restart(!same_listener_set, "listeners (added or removed)");

  max_connections_.store(max_connections, std::memory_order_relaxed);
  if (!same_listener_set) return restart;

  for (std::size_t i = 0; i < next.listeners.size(); ++i) {
    const ListenerConfig& now = config_.listeners[i];
    const ListenerConfig& want = next.listeners[i];
    const std::string path = "listeners[" + std::to_string(i) + "]";
    needs_restart(want.name != now.name || want.protocol != now.protocol ||
                      want.address != now.address || want.port != now.port ||
                      want.backlog != now.backlog,
                  path + " name, protocol, address, port or backlog");
    // WebSocket sessions read their options on their own shard without
    // synchronisation, so those options apply to the next start.
    needs_restart(want.websocket != now.websocket, path + ".websocket");

    listener_shared_[i]->max_connections.store(want.max_connections, std::memory_order_relaxed);
    // Connections open before per-IP limiting was turned on are not counted;
    // those counted go on being released when they end, whatever the limit.
    listener_shared_[i]->max_connections_per_ip.store(want.max_connections_per_ip,
                                                      std::memory_order_relaxed);
    listener_shared_[i]->new_connections.configure(want.max_new_connections_per_second,
                                                   want.new_connections_burst);
    // Posted every time: the running value may differ from config_ after an
    // earlier reload.
    const std::int64_t idle_ms = want.idle_timeout.count();
    // WebSocket sessions time their writes themselves (websocket.write_timeout).
    const std::int64_t write_ms =
        want.protocol == Protocol::tcp_echo ? want.write_timeout.count() : 0;
    for (auto& s : shards_) {
      Shard* shard = s.get();
      shard->post([shard, i, idle_ms, write_ms] { shard->set_timeouts(i, idle_ms, write_ms); });
    }
  }
  return restart;
}

std::vector<std::string> Server::reload_tls(const Config& next,
                                            const std::vector<TlsSettingsPtr>& tls) {
  std::vector<std::string> restart;
  if (next.listeners.size() != config_.listeners.size()) return restart;  // named by apply_reload
  for (std::size_t i = 0; i < next.listeners.size(); ++i) {
    const bool was = tls_slots_[i] != nullptr;
    const bool want = next.listeners[i].tls.has_value();
    if (was != want) {
      restart.push_back("listeners[" + std::to_string(i) + "].tls (" +
                        (want ? "turned on" : "turned off") + ")");
      continue;
    }
    if (was && i < tls.size() && tls[i]) tls_slots_[i]->set(tls[i]);
  }
  return restart;
}

}  // namespace shoal
