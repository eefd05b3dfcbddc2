// WebSocket echo (RFC 6455): the session starters of a `protocol:
// websocket-echo` listener, ws:// and wss://.
//
// One engine serves both, with or without permessage-deflate: the session
// (sessions/ws_session.hpp, split by phase into ws_upgrade.cpp, ws_open.cpp
// and ws_closing.cpp) reads through a Transport (plaintext, or TLS driven
// through OpenSSL directly), answers the upgrade itself and echoes on
// WsEchoEngine (protocol/ws_echo.hpp). This header stays free of Asio's and
// OpenSSL's details so that server.cpp compiles fast.
//
// Ownership: a session is owned by its pending asynchronous operations and
// indexed by its shard's listener list (Connection). All calls on the owning
// shard's thread.
#pragma once

#include <cstddef>

#include "config/config.hpp"
#include "runtime/shard.hpp"
#include "tls/tls.hpp"

namespace shoal {

// Starts a WebSocket echo session for an accepted socket (shard thread).
// The session reads its listener's `websocket:` options from the shard's
// slot (ListenerSlot::websocket).
void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer);

// The same over TLS (wss://) with `tls`'s certificate, which the session
// keeps for its whole life. websocket.handshake_timeout covers the TLS
// handshake and the HTTP upgrade together.
void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer,
                             TlsSettingsPtr tls);

}  // namespace shoal
