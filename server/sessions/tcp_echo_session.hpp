// One TCP echo connection, its whole life in one file.
//
// Echo is read -> write -> read: the next read starts only after the echo is
// written, so a client that does not read is held back by TCP flow control
// and costs no memory here. An idle connection is parked on the shard's
// poller (its socket registered once, edge-triggered) and holds no buffer:
// bytes are read into the shard's scratch buffer and written back at once;
// only the part the kernel did not take is copied into a buffer of this
// connection, freed when written.
//
// Ownership: the shard's (Connection::retire()). All calls on the owning
// shard's thread.
//
// Per idle connection this is the whole cost besides the kernel's: 72 bytes
// with GCC 12 on x86-64 (static_assert below), an 80-byte malloc chunk:
// Connection 64 (its socket descriptor included), the pending-echo buffer 8.
#pragma once

#include "protocol/byte_buffer.hpp"
#include "runtime/shard.hpp"

namespace shoal {

class TcpEchoSession final : public Connection {
 public:
  TcpEchoSession(Shard& shard, std::size_t listener_index, PerIpCounts::Entry* client);

  // Adopts the socket and starts echoing; `peer`: the client, for the log
  // (the PROXY header's when there was one).
  void start(tcp_socket socket, const boost::asio::ip::tcp::endpoint& peer);

 private:
  void on_close(CloseReason reason) override;
  void on_poll_readable() override;
  void on_poll_writable() override;

  ByteBuffer pending_;  // unsent rest of an echo, only while the kernel's buffer is full
};

static_assert(sizeof(TcpEchoSession) <= 72,
              "TcpEchoSession grew: it is the memory of every idle TCP echo connection");

// SessionStarter for `protocol: tcp-echo`.
void start_tcp_echo_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                            PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer);

// The descriptor of an accepted socket, taken out of Asio (which forgets
// it: no reactor registration is left behind); -1 with `ec` on failure.
int release_socket(tcp_socket& socket, boost::system::error_code& ec) noexcept;

}  // namespace shoal
