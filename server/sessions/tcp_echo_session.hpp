// One TCP echo connection, its whole life in one file.
//
// Echo is read -> write -> read: the next read starts only after the echo is
// written, so a client that does not read is held back by TCP flow control
// and costs no memory here. An idle connection waits in a ReadyWait
// (ready_wait.hpp: no epoll_ctl per wait, no allocation) and holds no
// buffer: bytes are read into the shard's scratch buffer and written back at
// once; only the part the kernel did not take is copied into a buffer of this
// connection, freed when written.
//
// Ownership: owned by its one pending operation, which holds the only
// pointer to it (a unique_ptr, handed on to the next operation; the session
// is deleted when a handler does not hand it on, or is destroyed uninvoked).
// No shared_ptr: no control block, no enable_shared_from_this. The shard's
// list only indexes it. All calls on the owning shard's thread.
//
// Per idle connection this is the whole cost besides the kernel's: 184
// bytes with GCC 12 on x86-64 (static_assert below): Connection 56, socket
// 40, pending-echo pointer 8, the ReadyWait 80 (Asio's reactor_op 72, the
// owner 8).
#pragma once

#include <memory>

#include "runtime/ready_wait.hpp"
#include "runtime/shard.hpp"

namespace shoal {

class TcpEchoSession final : public Connection {
 public:
  using owner = std::unique_ptr<TcpEchoSession>;

  TcpEchoSession(Shard& shard, std::size_t listener_index, tcp_socket socket,
                 PerIpCounts::Entry* client);

  // `peer`: the client, for the log (the PROXY header's when there was one).
  void start(owner self, const boost::asio::ip::tcp::endpoint& peer);

 private:
  void on_close(CloseReason reason) override;
  void do_wait(owner self);
  static void ready(owner self, const boost::system::error_code& ec);
  void on_readable(owner self, const boost::system::error_code& ec);
  void on_written(owner self, const boost::system::error_code& ec, std::size_t n);

  tcp_socket socket_;
  std::unique_ptr<char[]> pending_;  // unsent rest of an echo, only while writing
  ReadyWait<owner, &TcpEchoSession::ready> wait_;
};

static_assert(sizeof(TcpEchoSession) <= 184,
              "TcpEchoSession grew: it is the memory of every idle TCP echo connection");

// SessionStarter for `protocol: tcp-echo`.
void start_tcp_echo_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                            PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer);

}  // namespace shoal
