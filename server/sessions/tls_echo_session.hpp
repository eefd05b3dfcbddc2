// TCP echo over TLS: the session starter of a `protocol: tcp-echo` listener
// with a `tls:` map.
//
// The session (tls_echo_session.cpp, on the Transport with OpenSSL driven
// directly) does the TLS handshake under tls.handshake_timeout, then echoes
// what each wake-up read with one TLS write, and ends with
// a close_notify when it closes the connection (bounded). Counted like the
// plaintext session; a failed or timed-out handshake is also a
// rejected{reason="handshake_failed"}.
//
// Ownership: the shard's (Connection::retire()), indexed by its listener
// list while open. All calls on the owning shard's thread.
#pragma once

#include <cstddef>

#include "runtime/shard.hpp"
#include "tls/tls.hpp"

namespace shoal {

// Starts a TLS echo session for an accepted socket (shard thread). The
// session keeps `tls` (and with it the certificate it was accepted with)
// for its whole life.
void start_tls_echo_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                            PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer,
                            TlsSettingsPtr tls);

}  // namespace shoal
