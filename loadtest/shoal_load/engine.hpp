// Engine: one thread's share of a worker's connections, on its own
// io_context (concurrency hint 1, run by exactly one thread).
//
// It connects (paced, bounded concurrency), upgrades WebSocket connections,
// sends on the closed-loop or open-loop schedule, verifies every echoed byte
// against the connection's expected byte sequence, and keeps its own
// counters and histograms. In --mode pubsub its connections are publishers
// (which send) and subscribers (which check what the server delivers
// against pubsub.hpp's format and sequence rules) instead. Nothing is shared with other engines; the worker's
// main thread talks to it only through the thread-safe entry points below,
// which post to the engine's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "controls.hpp"
#include "histogram.hpp"
#include "options.hpp"
#include "pubsub.hpp"

namespace shoal::load {

// The bytes every connection sends: a fixed pseudo-random (or ASCII) table
// of prime period, read at a per-connection offset, so that an echo can be
// checked with memcmp and a byte from another connection or another place in
// the stream is caught.
class Pattern {
 public:
  static constexpr std::size_t period = 65521;  // prime
  static constexpr std::size_t max_window = 65536;
  explicit Pattern(bool text);
  // max_window bytes from stream offset `off` are contiguous here.
  const char* at(std::uint64_t off) const { return bytes_.data() + off % period; }

 private:
  std::vector<char> bytes_;
};

struct Snapshot {
  Counters total;              // since the start (the worker takes deltas)
  Histogram::Sparse interval;  // latencies recorded since the last snapshot
  std::uint64_t open = 0;
  std::uint64_t inflight = 0;
};

struct FinalStats {
  Counters total;   // whole run
  Counters window;  // received (and sent) inside the measurement window
  Histogram latency;    // messages whose (intended) send time is in the window
  Histogram connect;    // TCP connect, plus the TLS handshake for tls:// and wss://
  Histogram tls_handshake;  // the TLS handshake alone, after TCP connect
  Histogram handshake;  // WebSocket upgrade, after connect (and TLS)
  std::uint64_t established = 0;
  std::uint64_t lost = 0;        // established, then failed before the end
  std::uint64_t unanswered = 0;  // messages never echoed
  std::uint64_t skipped = 0;     // open loop: not sent, connection backlog full
  std::uint64_t peak_open = 0;
  ControlCounts controls;  // the target URL's response controls, as checked
  pubsub::Counts pubsub;   // --mode pubsub: what the subscribers got
  std::vector<std::string> samples;  // first failures, for the report
};

class Engine {
 public:
  struct Setup {
    const Options* options = nullptr;
    const Pattern* pattern = nullptr;
    std::vector<std::uint32_t> ids;  // global connection ids of this engine
    double rate = 0;                 // open loop: this engine's messages/s
    double connect_rate = 0;         // this engine's connections/s; 0: unpaced
    int notify_fd = -1;              // written (one byte) on connect_done/drained
  };
  explicit Engine(Setup setup);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs the io_context on the calling thread until close_all() finished.
  void run();

  // Thread-safe: post to the engine's thread.
  void start_connecting();
  void go(std::int64_t t_go, std::int64_t t_measure, std::int64_t t_end);
  void stop_traffic();
  void close_all();
  std::future<Snapshot> snapshot();

  bool connect_done() const { return connect_done_.load(std::memory_order_acquire); }
  bool drained() const { return drained_.load(std::memory_order_acquire); }

  // After run() returned.
  FinalStats& final_stats();

  struct Impl;  // engine.cpp

 private:
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> connect_done_{false};
  std::atomic<bool> drained_{false};
};

}  // namespace shoal::load
