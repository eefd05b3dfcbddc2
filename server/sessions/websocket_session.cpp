#include "sessions/websocket_session.hpp"

#include <memory>

#include "sessions/ws_session.hpp"

namespace shoal {

void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer) {
  // Owned by the shard from here (Connection::retire()).
  (new ws::WsSession(shard, listener_index, client))->start(std::move(socket), peer, nullptr);
}

void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer,
                             TlsSettingsPtr tls) {
  (new ws::WsSession(shard, listener_index, client))->start(std::move(socket), peer, std::move(tls));
}

}  // namespace shoal
