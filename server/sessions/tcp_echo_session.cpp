#include "sessions/tcp_echo_session.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace shoal {

namespace {

boost::system::error_code last_error() { return {errno, boost::system::system_category()}; }

}  // namespace

int release_socket(tcp_socket& socket, boost::system::error_code& ec) noexcept {
  const int fd = socket.release(ec);
  return ec ? -1 : fd;
}

TcpEchoSession::TcpEchoSession(Shard& shard, std::size_t listener_index, PerIpCounts::Entry* client)
    : Connection(shard, listener_index, client) {}

void start_tcp_echo_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                            PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer) {
  // Owned by the shard from here (Connection::retire()).
  (new TcpEchoSession(shard, listener_index, client))->start(std::move(socket), peer);
}

void TcpEchoSession::start(tcp_socket socket, const boost::asio::ip::tcp::endpoint& peer) {
  boost::system::error_code ec;
  const int fd = release_socket(socket, ec);
  if (fd < 0 || !adopt_socket(fd, ec)) {
    fail(ec, "setup");  // retires the session
    return;
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("conn {}: accepted from {}", id_string(), peer.address().to_string());
  }
  // Registration reports what already came: the first edge reads it.
  wait_readable();
}

void TcpEchoSession::on_poll_readable() {
  if (closed()) return;
  ListenerStats& stats = shard_.slot(listener_index_).stats;
  char* const buf = shard_.scratch();
  // A few rounds per wake-up drain a busy socket without starving the other
  // connections of this shard.
  for (int round = 0; round < 4; ++round) {
    bool more = true;
    const long got = read_hinted(fd_, buf, Shard::scratch_size, more);
    if (got == 0) {
      // Half-close: everything received was already echoed (we read again
      // only after a write completes), so closing now loses nothing.
      close(CloseReason::peer_closed);
      return;
    }
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_readable();
        return;
      }
      fail(last_error(), "read");
      return;
    }
    const auto n = static_cast<std::size_t>(got);
    touch();
    stats.bytes_received.add(n);
    stats.messages_received.add();

    ssize_t sent = ::send(fd_, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(last_error(), "write");
        return;
      }
      sent = 0;
    }
    const auto took = static_cast<std::size_t>(sent);
    stats.bytes_sent.add(took);
    if (took == n) {
      stats.messages_sent.add();
    } else {
      // The kernel's send buffer is full: keep the rest and stop reading
      // until it is written (backpressure).
      pending_.append(buf + took, n - took);
      wait_for_peer_to_read();  // write_timeout runs from now
      wait_writable();
      return;
    }
    if (!more) {  // the socket is empty: wait for the next edge
      wait_readable();
      return;
    }
  }
  // Still busy after these rounds: come back after the shard's other ready
  // handlers. A wait would not fire, as no new edge need come.
  read_again();
}

void TcpEchoSession::on_poll_writable() {
  if (closed()) return;
  ListenerStats& stats = shard_.slot(listener_index_).stats;
  while (!pending_.empty()) {
    const ssize_t sent = ::send(fd_, pending_.data(), pending_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_writable();
        return;
      }
      fail(last_error(), "write");
      return;
    }
    stats.bytes_sent.add(static_cast<std::size_t>(sent));
    pending_.consume(static_cast<std::size_t>(sent));
  }
  pending_.release();
  stats.messages_sent.add();
  touch();
  // Read first, not wait: what came while the write was blocked may have
  // made its edge before this, or have been left unread by the last round.
  on_poll_readable();
}

void TcpEchoSession::on_close(CloseReason) { retire(); }

}  // namespace shoal
