#include "runtime/shard.hpp"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cassert>

#include <spdlog/spdlog.h>

namespace shoal {

const char* to_string(RejectReason r) {
  switch (r) {
    case RejectReason::limit: return "limit";
    case RejectReason::fd_exhausted: return "fd_exhausted";
    case RejectReason::handshake_failed: return "handshake_failed";
    case RejectReason::origin: return "origin";
    case RejectReason::per_ip_limit: return "per_ip_limit";
    case RejectReason::rate_limit: return "rate_limit";
    case RejectReason::proxy_protocol: return "proxy_protocol";
    case RejectReason::count_: break;
  }
  return "unknown";
}

Connection::Connection(Shard& shard, std::size_t listener_index, PerIpCounts::Entry* client)
    : shard_(shard),
      client_(client),
      seq_(++shard.next_seq_),
      listener_index_(static_cast<std::uint16_t>(listener_index)) {
  ListenerSlot& slot = shard_.slots_[listener_index_];
  slot.stats.served.add();
  slot.stats.active.add();
  shard_.active_.add();
  last_activity_ms_ = Shard::now_ms();
  slot.connections.push_back(*this);
}

Connection::~Connection() {
  ListenerSlot& slot = shard_.slots_[listener_index_];
  // Before the active counts: whoever sees a connection gone from them also
  // finds its address's slot free.
  if (client_ != nullptr) slot.shared->per_ip.release(client_);
  slot.stats.active.sub();
  shard_.active_.sub();
  slot.shared->active.fetch_sub(1, std::memory_order_relaxed);
  shard_.process_active_.release();
  // The auto-unlink hook removes us from the list, if still there.
}

std::string Connection::id_string() const {
  return std::to_string(shard_.id()) + ":" + std::to_string(seq_);
}

void Connection::touch() noexcept {
  if (closed_ || retired_) return;  // closing: stays out of the idle list
  last_activity_ms_ = Shard::now_ms();
  ListenerSlot& slot = shard_.slots_[listener_index_];
  unlink();
  slot.connections.push_back(*this);
}

void Connection::wait_for_peer_to_read() noexcept {
  if (closed_ || retired_) return;  // closing
  last_activity_ms_ = Shard::now_ms();
  ListenerSlot& slot = shard_.slots_[listener_index_];
  unlink();
  slot.writers.push_back(*this);
}

void Connection::close(CloseReason reason) {
  if (closed_) return;
  closed_ = true;
  if (!retired_) unlink();  // a retired connection waits in the poller's list to be deleted
  shard_.slots_[listener_index_].stats.closed[static_cast<int>(reason)].add();
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("conn {}: closed ({})", id_string(), to_string(reason));
  on_close(reason);
  // Still ending (a close frame, a linger): where shutdown finds it.
  if (!retired_ && !is_linked()) shard_.poller_.keep_closing(*this);
}

void Connection::fail(const boost::system::error_code& ec, const char* op) {
  if (closed_) return;
  if (!is_expected_ending(ec) && spdlog::should_log(spdlog::level::debug))
    spdlog::debug("conn {}: {} failed: {}", id_string(), op, ec.message());
  close(classify(ec));
}

Shard::Shard(unsigned id, const Config& config, std::vector<ListenerShared*> listeners,
             ActiveCount& process_active)
    : id_(id),
      slots_(config.listeners.size()),
      process_active_(process_active),
      scratch_(new char[scratch_size]) {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].shared = listeners.at(i);
    slots_[i].idle_timeout_ms = config.listeners[i].idle_timeout.count();
    if (config.listeners[i].protocol == Protocol::tcp_echo)
      slots_[i].write_timeout_ms = config.listeners[i].write_timeout.count();
    else
      slots_[i].websocket = &config.listeners[i].websocket;
  }
  sweep_period_ms_ = sweep_period();
  poller_.start(ioc_, reactor_of(ioc_));
}

// Idle and stalled-writer connections are found by a periodic sweep of
// time-ordered lists instead of a timer per connection (a timer costs ~100
// bytes and a heap operation per reset). A quarter of the shortest timeout
// bounds how late a close can be; 1 s caps the cost for long timeouts.
// 0: no sweep needed.
std::int64_t Shard::sweep_period() const {
  std::int64_t shortest = 0;
  for (const auto& slot : slots_) {
    for (const auto t : {slot.idle_timeout_ms, slot.write_timeout_ms})
      if (t > 0 && (shortest == 0 || t < shortest)) shortest = t;
  }
  return shortest > 0 ? std::clamp<std::int64_t>(shortest / 4, 10, 1000) : 0;
}

void Shard::set_timeouts(std::size_t listener_index, std::int64_t idle_ms, std::int64_t write_ms) {
  ListenerSlot& slot = slots_.at(listener_index);
  slot.idle_timeout_ms = idle_ms;
  slot.write_timeout_ms = write_ms;
  const bool was_sweeping = sweep_period_ms_ > 0;
  sweep_period_ms_ = sweep_period();
  if (sweep_period_ms_ > 0) {
    // Restart the timer so a shorter period applies now, not after the
    // current (possibly 1 s) wait.
    if (was_sweeping) sweep_timer_.cancel();
    schedule_sweep();
  } else {
    sweep_timer_.cancel();
  }
}

Shard::~Shard() {
  stop_and_join();
  // The connections, while the slots, the deadline queue and the context
  // they refer to are all still here.
  poller_.shutdown(slots_);
}

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

bool Shard::loop_answered(std::int64_t now) const noexcept {
  if (loop_.last_tick_ms.load() == 0) return false;  // not started
  return ms_since_last_tick(now) <= kLoopHealthDeadline.count();
}

std::int64_t Shard::ms_since_last_tick(std::int64_t now) const noexcept {
  const auto last = static_cast<std::int64_t>(loop_.last_tick_ms.load());
  return last == 0 ? now : std::max<std::int64_t>(0, now - last);
}

void Shard::start(int cpu) {
  if (sweep_period_ms_ > 0) schedule_sweep();
  // Stored before the thread starts: a scrape right after start() sees a
  // shard that answered "now", not one that never did.
  loop_.last_tick_ms.set(static_cast<std::uint64_t>(now_ms()));
  schedule_lag_tick();
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
        poller_.run();
        break;
      } catch (const std::exception& e) {
        loop_.exceptions.add();
        spdlog::error("shard {}: unhandled exception in a handler: {}", id_, e.what());
      } catch (...) {
        loop_.exceptions.add();
        spdlog::error("shard {}: unhandled non-standard exception in a handler", id_);
      }
    }
  });
}

void Shard::stop_and_join() {
  ioc_.stop();
  poller_.stop();  // the loop sleeps in its own epoll_wait(), not Asio's
  if (thread_.joinable()) thread_.join();
}

// close() takes the connection out of the listener's lists before anything
// else, and touch() never puts a closed one back: a loop that takes the
// front always ends.
void Shard::close_and_unlink(Connection& c, CloseReason reason) { c.close(reason); }

void Shard::close_all(CloseReason reason) {
  for (auto& slot : slots_) {
    for (auto* list : {&slot.connections, &slot.writers})
      while (!list->empty()) close_and_unlink(list->front(), reason);
  }
}

void Shard::schedule_sweep() {
  sweep_timer_.expires_after(std::chrono::milliseconds(sweep_period_ms_));
  sweep_timer_.async_wait([this, generation = ++sweep_generation_](boost::system::error_code ec) {
    // A newer schedule_sweep() superseded this wait (reload).
    if (ec || generation != sweep_generation_) return;
    loop_.sweeps.add();
    sweep();
    schedule_sweep();
  });
}

// The loop-lag probe: a timer due every kLoopLagPeriod; how late its handler
// runs is how long the loop was busy with other handlers (or blocked) when it
// fell due. One timer and one clock read per 100 ms per shard, nothing per
// message. The next tick is due a period after this one *ran*, so a stalled
// loop is measured once, not followed by a burst of catch-up ticks.
void Shard::schedule_lag_tick() {
  lag_timer_.expires_after(kLoopLagPeriod);
  lag_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    on_lag_tick();
    schedule_lag_tick();
  });
}

void Shard::on_lag_tick() {
  const auto late = std::chrono::steady_clock::now() - lag_timer_.expiry();
  const auto ns = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(late).count()));
  const double seconds = static_cast<double>(ns) / 1e9;
  std::size_t slot = 0;
  while (slot < std::size(kLoopLagBuckets) && seconds > kLoopLagBuckets[slot]) ++slot;
  loop_.lag_buckets[slot].add();
  loop_.lag_sum_ns.add(ns);
  loop_.lag_last_ns.set(ns);
  const std::uint64_t avg = loop_.lag_avg_ns.load();
  loop_.lag_avg_ns.set(loop_.ticks.load() == 0 ? ns : avg - avg / 8 + ns / 8);
  loop_.ticks.add();
  loop_.last_tick_ms.set(static_cast<std::uint64_t>(now_ms()));
}

void Shard::sweep() {
  const std::int64_t now = now_ms();
  const auto expire = [now](ListenerSlot::list_type& list, std::int64_t timeout_ms,
                            CloseReason reason) {
    if (timeout_ms <= 0) return;
    // Oldest first: stop at the first one still in time.
    while (!list.empty()) {
      Connection& c = list.front();
      if (now - c.last_activity_ms_ < timeout_ms) break;
      close_and_unlink(c, reason);
    }
  };
  for (auto& slot : slots_) {
    expire(slot.connections, slot.idle_timeout_ms, CloseReason::idle_timeout);
    expire(slot.writers, slot.write_timeout_ms, CloseReason::write_timeout);
  }
}

}  // namespace shoal
