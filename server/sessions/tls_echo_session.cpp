// One TLS echo connection, its whole life in one file.
//
// TLS through OpenSSL directly on the socket (tls/tls_stream.hpp, via
// Transport), driven by the same readiness wait as the plaintext echo:
// reads go into the shard's scratch buffer until OpenSSL's recv() finds the
// socket empty, and what they brought is echoed with one TLS write. While
// idle a connection holds this object and OpenSSL's SSL object, whose
// record buffers are released when empty (SSL_MODE_RELEASE_BUFFERS): no
// buffer of ours. What the kernel does not take waits in out_, and nothing
// more is read until it has gone (write_timeout, through the shard's
// writers list, bounds a client that does not read).
//
// The handshake runs under tls.handshake_timeout; a failed or timed-out one
// is counted as rejected{reason="handshake_failed"} unless the client sent
// nothing at all (a port check). An established connection that shoald
// closes gets a close_notify, bounded like a closing handshake; the
// client's close_notify is answered with ours.
#include "sessions/tls_echo_session.hpp"

#include <memory>

#include <spdlog/spdlog.h>

#include "protocol/byte_buffer.hpp"
#include "sessions/session_timer.hpp"
#include "sessions/tcp_echo_session.hpp"
#include "sessions/transport.hpp"

namespace shoal {
namespace {

using error_code = boost::system::error_code;

// Reads per readiness event, so that one busy client cannot hold the shard.
constexpr int kReadsPerWakeup = 4;
constexpr std::size_t kMinReadRoom = 2 * Tls13Records::kMaxRecord;

template <typename... Args>
void log_debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::debug)) spdlog::debug(fmt, std::forward<Args>(args)...);
}

class TlsEchoSession final : public Connection {
 public:
  TlsEchoSession(Shard& shard, std::size_t listener_index, PerIpCounts::Entry* client)
      : Connection(shard, listener_index, client) {}
  ~TlsEchoSession() override {
    if (ktls_) stats().ktls_connections.sub();
  }

  // `tls`: kept (with its certificate) for the session's life.
  void start(tcp_socket socket, const boost::asio::ip::tcp::endpoint& peer, TlsSettingsPtr tls);

 private:
  enum class Phase : std::uint8_t { handshake, open, closing, done };

  ListenerStats& stats() noexcept { return shard_.slot(listener_index_).stats; }
  bool write_blocked() const noexcept { return !out_.empty() || io_.output_pending(); }
  void on_poll_readable() override { on_ready({}); }
  void on_poll_writable() override { on_writable({}); }
  void wait_read() { wait_readable(); }
  void wait_write() { wait_writable(); }
  void on_ready(const error_code& ec);
  void on_writable(const error_code& ec);
  void do_handshake();
  void on_readable();
  void on_close(CloseReason reason) override;
  void send_close_notify();
  void end_with_error(const error_code& ec, const char* op);
  void hard_close();
  void arm(std::int64_t at_ms) {
    timer_.arm(shard_.deadlines(), at_ms, this,
               [](void* self, std::int64_t) { static_cast<TlsEchoSession*>(self)->on_timer(error_code()); });
  }
  void on_timer(const error_code& ec);
  std::int64_t closing_deadline() const {
    return closing_deadline_from(Shard::now_ms(), io_.tls_settings()->handshake_timeout);
  }

  Transport io_;  // with the TLS settings the session started with
  ByteBuffer out_;  // echoed bytes the kernel has not taken yet
  SessionTimer timer_;  // handshake deadline, then the close_notify bound
  std::int64_t deadline_ms_ = kNever;
  Phase phase_ = Phase::handshake;
  bool ktls_ = false;
};

void TlsEchoSession::start(tcp_socket socket, const boost::asio::ip::tcp::endpoint& peer,
                           TlsSettingsPtr tls) {
  error_code ec;
  const int fd = release_socket(socket, ec);
  if (fd < 0 || !adopt_socket(fd, ec)) {
    end_with_error(ec, "setup");
    return;
  }
  io_.set_fd(fd);
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("conn {}: accepted from {} (tls)", id_string(), peer.address().to_string());
  }
  const Duration handshake_timeout = tls->handshake_timeout;
  if (!io_.start_tls(std::move(tls))) {
    end_with_error(boost::asio::error::no_memory, "tls setup");
    return;
  }
  if (handshake_timeout.count() > 0) {
    deadline_ms_ = Shard::now_ms() + handshake_timeout.count();
    arm(deadline_ms_);
  }
  do_handshake();
}

void TlsEchoSession::on_ready(const error_code& ec) {
  if (phase_ == Phase::done) return;
  if (ec) {
    end_with_error(ec, "wait");
    return;
  }
  if (phase_ == Phase::handshake) {
    do_handshake();
  } else if (phase_ == Phase::open) {
    on_readable();
  }
}

void TlsEchoSession::do_handshake() {
  switch (io_.handshake()) {
    case Transport::Io::done:
      break;
    case Transport::Io::want_read:
      wait_read();
      return;
    case Transport::Io::want_write:
      wait_write();
      return;
    case Transport::Io::eof:
    case Transport::Io::failed: {
      const Transport::HandshakeEnd end = io_.handshake_end();
      if (end.failed) {
        stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
        log_debug("conn {}: TLS handshake failed: {}", id_string(), io_.error().message());
      }
      close(end.reason);
      return;
    }
  }
  phase_ = Phase::open;
  deadline_ms_ = kNever;
  timer_.cancel(shard_.deadlines());
  if (io_.tls_stream().ktls_send()) {
    ktls_ = true;
    stats().ktls_connections.add();
  }
  log_debug("conn {}: TLS {} established{}", id_string(), io_.tls_stream().version(),
            ktls_ ? " (kTLS)" : "");
  touch();
  on_readable();
}

void TlsEchoSession::on_readable() {
  char* const buf = shard_.scratch();
  std::size_t have = 0;
  bool drained = false;
  bool want_write = false;
  Transport::Io end = Transport::Io::done;
  // Room for at least two whole TLS records per read (a read over our own
  // record layer takes no more than the room it is given).
  for (int round = 0; round < kReadsPerWakeup && Shard::scratch_size - have >= kMinReadRoom;
       ++round) {
    std::size_t got = 0;
    bool more = true;
    const Transport::Io io = io_.read(buf + have, Shard::scratch_size - have, got, more);
    if (io == Transport::Io::done) {
      have += got;
      continue;
    }
    if (io == Transport::Io::want_read) {
      drained = true;
    } else if (io == Transport::Io::want_write) {
      want_write = true;
    } else {
      end = io;
    }
    break;
  }
  if (have != 0) {
    touch();
    ListenerStats& s = stats();
    s.bytes_received.add(have);
    s.messages_received.add();
    std::size_t sent = 0;
    const Transport::Io io = io_.write(buf, have, sent);
    if (io == Transport::Io::failed || io == Transport::Io::eof) {
      end_with_error(io_.error(), "write");
      return;
    }
    s.bytes_sent.add(have);
    s.messages_sent.add();
    if (sent < have) out_.append(buf + sent, have - sent);
    if (write_blocked()) wait_for_peer_to_read();  // write_timeout runs until it has gone
  }
  if (end != Transport::Io::done) {
    end_with_error(end == Transport::Io::eof ? error_code(boost::asio::error::eof) : io_.error(),
                   "read");
    return;
  }
  if (write_blocked() || want_write) {
    wait_write();
    return;
  }
  if (drained) {
    wait_read();
    return;
  }
  read_again();  // on_ready() reads on while open
}

void TlsEchoSession::on_writable(const error_code& ec) {
  if (phase_ == Phase::done) return;
  if (ec) {
    end_with_error(ec, "write");
    return;
  }
  if (phase_ == Phase::handshake) {
    do_handshake();
    return;
  }
  if (io_.output_pending()) {
    const Transport::Io io = io_.flush_output();
    if (io == Transport::Io::failed) {
      if (phase_ == Phase::closing) {
        hard_close();
      } else {
        end_with_error(io_.error(), "write");
      }
      return;
    }
    if (io_.output_pending()) {
      wait_write();
      return;
    }
  }
  if (!out_.empty()) {
    std::size_t sent = 0;
    const Transport::Io io = io_.write(out_.data(), out_.size(), sent);
    if (io == Transport::Io::failed || io == Transport::Io::eof) {
      if (phase_ == Phase::closing) {
        hard_close();
      } else {
        end_with_error(io_.error(), "write");
      }
      return;
    }
    out_.consume(sent);
    if (!out_.empty()) {
      wait_write();
      return;
    }
    out_.release();
  }
  if (phase_ == Phase::closing) {
    send_close_notify();  // close() waited for the echo, or close_notify waits for room
    return;
  }
  touch();
  on_readable();
}

void TlsEchoSession::on_timer(const error_code& ec) {
  if (ec) return;
  const std::int64_t now = timer_.fired();
  if (phase_ == Phase::done || phase_ == Phase::open) return;
  if (now < deadline_ms_) {
    arm(deadline_ms_);
    return;
  }
  if (phase_ == Phase::handshake && !closed()) {
    // A client that never sends its ClientHello, or stalls in the middle.
    stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
    log_debug("conn {}: TLS handshake timeout", id_string());
    close(CloseReason::idle_timeout);
    return;
  }
  hard_close();  // a close_notify that the peer did not take in time, too
}

void TlsEchoSession::end_with_error(const error_code& ec, const char* op) {
  if (closed()) {
    hard_close();
    return;
  }
  // The client's close_notify (eof) is answered with ours (on_close); after
  // any other error the connection is unusable, and the socket just closes.
  if (ec != boost::asio::error::eof) hard_close();
  fail(ec, op);
}

// An established connection is told with a close_notify (after an echo
// waiting for the kernel, if any); otherwise the socket just closes.
void TlsEchoSession::on_close(CloseReason reason) {
  // A peer that stopped reading would never take a close_notify either.
  if (phase_ != Phase::open || reason == CloseReason::write_timeout) {
    hard_close();
    return;
  }
  phase_ = Phase::closing;
  deadline_ms_ = closing_deadline();
  arm(deadline_ms_);
  if (write_blocked()) {
    wait_write();  // on_writable sends the close_notify after the echo
    return;
  }
  send_close_notify();
}

// close_notify, then the socket closes without waiting for the peer's.
void TlsEchoSession::send_close_notify() {
  switch (io_.shutdown_send()) {
    case Transport::Io::want_write:
      wait_write();
      return;
    default:
      hard_close();
      return;
  }
}

void TlsEchoSession::hard_close() {
  if (phase_ == Phase::done) return;
  phase_ = Phase::done;
  timer_.cancel(shard_.deadlines());
  out_.release();
  retire();
}

}  // namespace

void start_tls_echo_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                            PerIpCounts::Entry* client, const boost::asio::ip::tcp::endpoint& peer,
                            TlsSettingsPtr tls) {
  // Owned by the shard from here (Connection::retire()).
  (new TlsEchoSession(shard, listener_index, client))->start(std::move(socket), peer, std::move(tls));
}

}  // namespace shoal
