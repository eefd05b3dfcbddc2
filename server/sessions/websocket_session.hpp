// WebSocket echo (RFC 6455): the session starter for a `protocol:
// websocket-echo` listener.
//
// Two engines behind one session. Plain ws:// without permessage-deflate
// echoes on the session's own frame engine (ws_echo.hpp), answering the
// upgrade itself; permessage-deflate and wss:// run on Boost.Beast's
// websocket::stream. Either way the session reads and checks the HTTP
// upgrade itself (with Beast's HTTP parser).
//
// The whole life of one connection (HTTP upgrade, echo, keepalive, closing)
// is in websocket_session.cpp, which is also the only translation unit that
// instantiates Beast's WebSocket and HTTP templates, for ws:// and wss://
// alike; this header stays free of Beast and Asio's ssl so that server.cpp
// compiles fast.
//
// Ownership: a session is owned by its pending asynchronous operations and
// indexed by its shard's listener list (Connection), like the TCP echo
// session. All calls on the owning shard's thread.
#pragma once

#include <cstddef>

#include "config/config.hpp"
#include "runtime/shard.hpp"
#include "tls/tls.hpp"

namespace shoal {

// Starts a WebSocket echo session for an accepted socket (shard thread).
// `config` must outlive every session (it is the Server's copy of the
// listener's options).
void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer,
                             const WebSocketConfig& config);

// The same over TLS (wss://) with `tls`'s certificate, which the session
// keeps for its whole life. websocket.handshake_timeout covers the TLS
// handshake and the HTTP upgrade together.
void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer,
                             const WebSocketConfig& config, TlsSettingsPtr tls);

}  // namespace shoal
