// The transport layer under a session: the connection's socket (a plain
// descriptor on the shard's poller), plaintext or with TLS on it
// (tls/tls_stream.hpp). Sessions read into and write from the
// shard's buffers through it with the same calls either way, so one
// WebSocket engine and one set of deadlines serve ws:// and wss://.
//
// The branch on TLS is one well-predicted test per system call, never per
// message. Plaintext reads use read_hinted() (TCP_INQ), so a read that
// drained the socket says so and the caller parks without a second recv();
// over TLS a read goes on until OpenSSL's recv() finds the socket empty.
//
// Thread safety: none; one per connection, on its shard's thread.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <memory>

#include <boost/asio/error.hpp>

#include "runtime/close_reason.hpp"
#include "runtime/ready_wait.hpp"
#include "tls/tls.hpp"
#include "tls/tls_stream.hpp"

namespace shoal {

class Transport {
 public:
  enum class Io : std::uint8_t {
    done,        // bytes moved (got/wrote > 0), or a handshake/shutdown completed
    want_read,   // the socket is empty: park on readability
    want_write,  // the kernel's send buffer is full (or TLS must send first)
    eof,         // the peer's orderly end (FIN, or TLS close_notify)
    failed,      // error() says why
  };

  Transport() = default;

  // The socket, once the connection adopted it (Connection::adopt_socket);
  // the connection closes it.
  void set_fd(int fd) noexcept { fd_ = fd; }
  int fd() const noexcept { return fd_; }

  // Puts TLS on the socket (server side), keeping `settings` (the context
  // and certificate) for the connection's life. False: OpenSSL could not
  // allocate.
  bool start_tls(TlsSettingsPtr settings) {
    tls_ = std::make_unique<Tls>();
    tls_->settings = std::move(settings);
    return tls_->stream.open(tls_->settings->ssl_context(), fd());
  }
  bool tls() const noexcept { return tls_ != nullptr; }
  TlsStream& tls_stream() noexcept { return tls_->stream; }
  // The TLS settings the connection started with; null in plaintext.
  const TlsSettings* tls_settings() const noexcept { return tls_ ? tls_->settings.get() : nullptr; }

  Io handshake() { return map(tls_->stream.handshake()); }

  // After a handshake that ended in eof or failed: how the connection is
  // closed, and whether it counts as rejected{reason="handshake_failed"}. A
  // client that connects and leaves without sending a byte (a port check)
  // has not failed a handshake; anything but the peer leaving is a protocol
  // failure, whatever the error's category.
  struct HandshakeEnd {
    CloseReason reason;
    bool failed;
  };
  HandshakeEnd handshake_end() const {
    const CloseReason reason = classify(error());
    const bool left = reason == CloseReason::reset || reason == CloseReason::peer_closed;
    return {reason == CloseReason::error ? CloseReason::protocol_error : reason,
            !(left && tls_->stream.peer_sent_nothing())};
  }

  // `more`: whether another read may find bytes without a new edge.
  Io read(void* buf, std::size_t len, std::size_t& got, bool& more) {
    if (tls()) return map(tls_->stream.read(buf, len, got, more));
    for (;;) {
      const long n = read_hinted(fd(), buf, len, more);
      if (n > 0) {
        got = static_cast<std::size_t>(n);
        return Io::done;
      }
      got = 0;
      if (n == 0) return Io::eof;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::want_read;
      errno_ = errno;
      return Io::failed;
    }
  }

  // Sends from buf[0, len); `wrote` says how much was taken.
  Io write(const void* buf, std::size_t len, std::size_t& wrote) {
    if (tls()) return map(tls_->stream.write(buf, len, wrote));
    wrote = 0;
    while (wrote < len) {
      const ssize_t r = ::send(fd(), static_cast<const char*>(buf) + wrote, len - wrote,
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r > 0) {
        wrote += static_cast<std::size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Io::want_write;
      errno_ = r < 0 ? errno : EPIPE;
      return Io::failed;
    }
    return Io::done;
  }

  // Bytes the transport took but the kernel has not (TLS records sealed
  // after the hand-over); flush_output() sends them.
  bool output_pending() const noexcept { return tls_ && tls_->stream.output_pending(); }
  std::size_t output_pending_bytes() const noexcept {
    return tls_ ? tls_->stream.output_pending_bytes() : 0;
  }
  Io flush_output() { return map(tls_->stream.flush()); }

  // Our end of the byte stream: TLS close_notify (done once it is in the
  // kernel; want_write: call again when writable), then the TCP half-close.
  Io shutdown_send() {
    if (tls() && !tls_->shut) {
      const Io r = map(tls_->stream.shutdown());
      if (r != Io::done) return r;
      tls_->shut = true;
    }
    (void)::shutdown(fd_, SHUT_WR);
    return Io::done;
  }

  // Why the last call failed: the system's error, else TLS's.
  boost::system::error_code error() const noexcept {
    if (errno_ == 0 && tls()) return tls_->stream.error();
    return {errno_, boost::system::system_category()};
  }

 private:
  static Io map(TlsStream::Io r) noexcept {
    switch (r) {
      case TlsStream::Io::done: return Io::done;
      case TlsStream::Io::want_read: return Io::want_read;
      case TlsStream::Io::want_write: return Io::want_write;
      case TlsStream::Io::closed: return Io::eof;
      case TlsStream::Io::failed: break;
    }
    return Io::failed;
  }

  // What only TLS needs, allocated with a TLS connection: 16 bytes of every
  // connection are a pointer, the socket and an errno.
  struct Tls {
    TlsStream stream;
    TlsSettingsPtr settings;
    bool shut = false;  // our close_notify is out
  };
  std::unique_ptr<Tls> tls_;
  int fd_ = -1;
  int errno_ = 0;
};

static_assert(sizeof(Transport) == 16, "Transport grew: it is in every connection");

}  // namespace shoal
