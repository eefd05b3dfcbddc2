// Types shared by shoal-load's parent process, its workers and their
// per-thread engines: failure kinds, counters and the clock.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

namespace shoal::load {

// Every failure shoal-load counts. Connection failures are counted once per
// connection; mismatch is counted per message.
enum class ErrorKind : std::uint8_t {
  refused,          // ECONNREFUSED on connect
  timeout,          // connect/handshake deadline, or an echo that never came
  reset,            // ECONNRESET, EPIPE
  closed,           // the server closed (FIN or WebSocket close) mid-run
  bad_handshake,    // WebSocket upgrade refused or malformed
  protocol,         // a malformed WebSocket frame from the server
  tls,              // TLS handshake failed (certificate, protocol) or a TLS error later
  ports_exhausted,  // EADDRNOTAVAIL / EADDRINUSE: no source port left
  fd_limit,         // EMFILE / ENFILE: out of descriptors
  mismatch,         // an echoed message differs from what was sent
  other,
};
inline constexpr std::size_t error_kind_count = 11;
inline constexpr std::array<const char*, error_kind_count> error_kind_names = {
    "refused", "timeout", "reset", "closed", "bad_handshake", "protocol", "tls",
    "ports_exhausted", "fd_limit", "mismatch", "other"};

struct Counters {
  std::uint64_t connects = 0;     // connections established (TCP connected, TLS up, WS upgraded)
  std::uint64_t msgs_sent = 0;
  std::uint64_t msgs_recv = 0;
  std::uint64_t bytes_sent = 0;   // payload bytes
  std::uint64_t bytes_recv = 0;
  std::uint64_t pings = 0;        // WebSocket pings answered
  std::array<std::uint64_t, error_kind_count> errors{};

  std::uint64_t error_total() const {
    std::uint64_t t = 0;
    for (auto e : errors) t += e;
    return t;
  }
  void add(const Counters& o) {
    connects += o.connects;
    msgs_sent += o.msgs_sent;
    msgs_recv += o.msgs_recv;
    bytes_sent += o.bytes_sent;
    bytes_recv += o.bytes_recv;
    pings += o.pings;
    for (std::size_t i = 0; i < error_kind_count; ++i) errors[i] += o.errors[i];
  }
};

// Monotonic nanoseconds. CLOCK_MONOTONIC is one clock for every process on
// the host, so the parent can hand its workers absolute times.
inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline constexpr std::int64_t ns_per_s = 1'000'000'000;

}  // namespace shoal::load
