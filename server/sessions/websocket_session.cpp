#include "sessions/websocket_session.hpp"

#include <memory>

#include "sessions/ws_session.hpp"

namespace shoal {

void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer,
                             const WebSocketConfig& config) {
  std::make_shared<ws::WsSession>(shard, listener_index, std::move(socket), client, config, nullptr)
      ->start(peer);
}

void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer,
                             const WebSocketConfig& config, TlsSettingsPtr tls) {
  std::make_shared<ws::WsSession>(shard, listener_index, std::move(socket), client, config,
                                  std::move(tls))
      ->start(peer);
}

}  // namespace shoal
