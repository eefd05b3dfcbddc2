#include "server.hpp"

#include <sched.h>

#include <boost/asio/ip/address.hpp>
#include <spdlog/spdlog.h>

#include "tcp_echo_session.hpp"

namespace shoal {
namespace {

SessionStarter starter_for(Protocol p) {
  switch (p) {
    case Protocol::tcp_echo: return start_tcp_echo_session;
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

Server::Server(const Config& config, std::uint64_t max_connections, unsigned shards)
    : config_(config), max_connections_(max_connections), shard_count_(shards == 0 ? 1 : shards) {
  std::vector<ListenerShared*> shared;
  for (const auto& l : config_.listeners) {
    auto s = std::make_unique<ListenerShared>();
    s->max_connections = l.max_connections;
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
    base.process_max_connections = max_connections_;
    base.start_session = starter_for(lc.protocol);

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
