#include "shard.hpp"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <spdlog/spdlog.h>

namespace shoal {

const char* to_string(CloseReason r) {
  switch (r) {
    case CloseReason::peer_closed: return "peer_closed";
    case CloseReason::reset: return "reset";
    case CloseReason::idle_timeout: return "idle_timeout";
    case CloseReason::drain: return "drain";
    case CloseReason::error: return "error";
    case CloseReason::count_: break;
  }
  return "unknown";
}

Connection::Connection(Shard& shard, std::size_t listener_index)
    : shard_(shard),
      listener_index_(static_cast<std::uint32_t>(listener_index)),
      seq_(++shard.next_seq_) {
  ListenerSlot& slot = shard_.slots_[listener_index_];
  slot.stats.served.add();
  slot.stats.active.add();
  shard_.active_.add();
  last_activity_ms_ = Shard::now_ms();
  slot.connections.push_back(*this);
}

Connection::~Connection() {
  ListenerSlot& slot = shard_.slots_[listener_index_];
  slot.stats.active.sub();
  shard_.active_.sub();
  slot.shared->active.fetch_sub(1, std::memory_order_relaxed);
  shard_.process_active_.fetch_sub(1, std::memory_order_relaxed);
  // The auto-unlink hook removes us from the list, if still there.
}

std::string Connection::id_string() const {
  return std::to_string(shard_.id()) + ":" + std::to_string(seq_);
}

void Connection::touch() noexcept {
  if (!is_linked()) return;  // closing: stays out of the idle list
  last_activity_ms_ = Shard::now_ms();
  ListenerSlot& slot = shard_.slots_[listener_index_];
  unlink();
  slot.connections.push_back(*this);
}

void Connection::account_close(CloseReason reason) noexcept {
  unlink();
  shard_.slots_[listener_index_].stats.closed[static_cast<int>(reason)].add();
}

Shard::Shard(unsigned id, const Config& config, std::vector<ListenerShared*> listeners,
             std::atomic<std::uint64_t>& process_active)
    : id_(id),
      slots_(config.listeners.size()),
      process_active_(process_active),
      scratch_(new char[scratch_size]) {
  std::int64_t shortest = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].shared = listeners.at(i);
    slots_[i].idle_timeout_ms = config.listeners[i].idle_timeout.count();
    const auto t = slots_[i].idle_timeout_ms;
    if (t > 0 && (shortest == 0 || t < shortest)) shortest = t;
  }
  // Idle connections are found by a periodic sweep of activity-ordered
  // lists instead of a timer per connection (a timer costs ~100 bytes and a
  // heap operation per reset). A quarter of the shortest timeout bounds how
  // late a close can be; 1 s caps the cost for long timeouts.
  if (shortest > 0) sweep_period_ms_ = std::clamp<std::int64_t>(shortest / 4, 10, 1000);
}

Shard::~Shard() { stop_and_join(); }

std::int64_t Shard::now_ms() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

std::uint64_t Shard::served_connections() const noexcept {
  std::uint64_t n = 0;
  for (const auto& s : slots_) n += s.stats.served.load();
  return n;
}

void Shard::start(int cpu) {
  if (sweep_period_ms_ > 0) schedule_sweep();
  thread_ = std::thread([this, cpu] {
    const std::string name = "shard-" + std::to_string(id_);
    pthread_setname_np(pthread_self(), name.c_str());
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      if (int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set); rc != 0) {
        spdlog::warn("shard {}: cannot pin to CPU {}: {}", id_, cpu, std::strerror(rc));
      }
    }
    // An exception escaping a handler is logged and the loop goes on: one
    // bad connection must never stop a shard.
    for (;;) {
      try {
        ioc_.run();
        break;
      } catch (const std::exception& e) {
        spdlog::error("shard {}: unhandled exception in a handler: {}", id_, e.what());
      } catch (...) {
        spdlog::error("shard {}: unhandled non-standard exception in a handler", id_);
      }
    }
  });
}

void Shard::stop_and_join() {
  ioc_.stop();
  if (thread_.joinable()) thread_.join();
}

void Shard::close_all(CloseReason reason) {
  for (auto& slot : slots_) {
    // close() unlinks the connection, so always take the front.
    while (!slot.connections.empty()) slot.connections.front().close(reason);
  }
}

void Shard::schedule_sweep() {
  sweep_timer_.expires_after(std::chrono::milliseconds(sweep_period_ms_));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    sweep();
    schedule_sweep();
  });
}

void Shard::sweep() {
  const std::int64_t now = now_ms();
  for (auto& slot : slots_) {
    if (slot.idle_timeout_ms <= 0) continue;
    // Least recently active first: stop at the first one still in time.
    while (!slot.connections.empty()) {
      Connection& c = slot.connections.front();
      if (now - c.last_activity_ms_ < slot.idle_timeout_ms) break;
      c.close(CloseReason::idle_timeout);
    }
  }
}

}  // namespace shoal
