// Why a connection ended, and which ending an I/O error means. One place
// for the question every session asks of a failed operation ("was this a
// reset?"), so that the TCP, TLS and WebSocket sessions count the same error
// under the same reason.
//
// Thread safety: pure functions, any thread.
#pragma once

#include <cstdint>

#include <boost/system/error_code.hpp>

namespace shoal {

enum class CloseReason : std::uint8_t {
  peer_closed,     // orderly EOF from the client, or its WebSocket close
  reset,           // connection reset or broken pipe
  idle_timeout,    // no traffic for the listener's idle_timeout
  drain,           // closed by a graceful shutdown
  error,           // any other I/O error
  protocol_error,  // the peer broke the protocol (WebSocket 1002/1007/1009, a bad TLS record)
  write_timeout,   // the peer stopped reading our writes
  ping_timeout,    // no pong within pong_timeout
  close_after,     // the close_after= response control: closed after N echoes
  slow_consumer,   // websocket-pubsub: unsent messages passed pubsub.max_queued_bytes
  count_
};
const char* to_string(CloseReason r);

// The reason an I/O error ends a connection with:
// - reset: ECONNRESET, EPIPE, ECONNABORTED (the peer went away abruptly);
// - peer_closed: EOF, or TLS stream_truncated (TCP closed without
//   close_notify: common and harmless for an echo);
// - protocol_error: any other error of OpenSSL's category (a bad record,
//   an unexpected message);
// - error: anything else, operation_aborted included (a session whose
//   operation was cancelled without close() has lost track of itself).
CloseReason classify(const boost::system::error_code& ec) noexcept;

// Whether the error is one a session expects and does not log: the
// peer's ways of leaving (reset, peer_closed) and operation_aborted.
bool is_expected_ending(const boost::system::error_code& ec) noexcept;

}  // namespace shoal
