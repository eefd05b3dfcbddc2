#include "sessions/tcp_echo_session.hpp"

#include <cerrno>
#include <cstring>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

namespace shoal {

namespace asio = boost::asio;

TcpEchoSession::TcpEchoSession(Shard& shard, std::size_t listener_index, tcp_socket socket,
                               PerIpCounts::Entry* client)
    : Connection(shard, listener_index, client), socket_(std::move(socket)) {}

void start_tcp_echo_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                            PerIpCounts::Entry* client, const asio::ip::tcp::endpoint& peer) {
  auto session = std::make_unique<TcpEchoSession>(shard, listener_index, std::move(socket), client);
  TcpEchoSession* const s = session.get();
  s->start(std::move(session), peer);
}

void TcpEchoSession::start(owner self, const asio::ip::tcp::endpoint& peer) {
  boost::system::error_code ec;
  // Synchronous reads and writes below must never block the shard.
  socket_.non_blocking(true, ec);
  if (!ec) socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  if (!ec) enable_read_hints(socket_.native_handle());
  if (ec) {
    fail(ec, "setup");
    return;  // deletes the session
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("conn {}: accepted from {}", id_string(), peer.address().to_string());
  }
  do_wait(std::move(self));
}

void TcpEchoSession::do_wait(owner self) {
  TcpEchoSession* const s = self.get();
  s->wait_.start(s->shard_.reactor(), s->socket_, std::move(self));
}

void TcpEchoSession::ready(owner self, const boost::system::error_code& ec) {
  TcpEchoSession* const s = self.get();
  s->on_readable(std::move(self), ec);
}

void TcpEchoSession::on_readable(owner self, const boost::system::error_code& wait_ec) {
  if (closed()) return;
  if (wait_ec) {
    fail(wait_ec, "wait");
    return;
  }
  ListenerStats& stats = shard_.slot(listener_index_).stats;
  char* const buf = shard_.scratch();
  // A few rounds per wake-up drain a busy socket without starving the other
  // connections of this shard.
  for (int round = 0; round < 4; ++round) {
    bool more = true;
    const long got = read_hinted(socket_.native_handle(), buf, Shard::scratch_size, more);
    if (got == 0) {
      // Half-close: everything received was already echoed (we read again
      // only after a write completes), so closing now loses nothing.
      close(CloseReason::peer_closed);
      return;
    }
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        do_wait(std::move(self));
        return;
      }
      fail(boost::system::error_code(errno, boost::system::system_category()), "read");
      return;
    }
    const auto n = static_cast<std::size_t>(got);
    touch();
    stats.bytes_received.add(n);
    stats.messages_received.add();

    boost::system::error_code ec;
    std::size_t sent = socket_.write_some(asio::buffer(buf, n), ec);
    if (ec == asio::error::would_block) {
      sent = 0;
    } else if (ec) {
      fail(ec, "write");
      return;
    }
    stats.bytes_sent.add(sent);
    if (sent == n) stats.messages_sent.add();
    if (sent < n) {
      // The kernel's send buffer is full: keep the rest and stop reading
      // until it is written (backpressure).
      const std::size_t rest = n - sent;
      pending_.reset(new char[rest]);
      std::memcpy(pending_.get(), buf + sent, rest);
      wait_for_peer_to_read();  // write_timeout runs from now
      asio::async_write(socket_, asio::buffer(pending_.get(), rest),
                        [self = std::move(self)](const boost::system::error_code& e,
                                                 std::size_t written) mutable {
                          TcpEchoSession* const s = self.get();
                          s->on_written(std::move(self), e, written);
                        });
      return;
    }
    if (!more) {  // the socket is empty: wait for the next edge
      do_wait(std::move(self));
      return;
    }
  }
  // Still busy after these rounds: come back after the shard's other ready
  // handlers. A wait would not fire, as no new edge need come.
  asio::post(socket_.get_executor(), [self = std::move(self)]() mutable {
    TcpEchoSession* const s = self.get();
    s->on_readable(std::move(self), {});
  });
}

void TcpEchoSession::on_written(owner self, const boost::system::error_code& ec, std::size_t n) {
  pending_.reset();
  if (closed()) return;
  if (ec) {
    fail(ec, "write");
    return;
  }
  ListenerStats& stats = shard_.slot(listener_index_).stats;
  stats.bytes_sent.add(n);
  stats.messages_sent.add();
  touch();
  // Read first, not wait: what came while the write was blocked may have
  // made its edge before this, or have been left unread by the last round.
  on_readable(std::move(self), {});
}

void TcpEchoSession::on_close(CloseReason) {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

}  // namespace shoal
