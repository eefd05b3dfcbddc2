// One TLS echo connection, its whole life in one file.
//
// Memory while idle is what Asio's ssl::stream and OpenSSL's SSL object hold
// (measured in README.md, "TLS"): the session adds no read buffer. It waits
// with a 1-byte read; OpenSSL decrypts the whole record that arrives, and the
// rest of that record (SSL_pending) is taken with a plain SSL_read, which
// only copies out of OpenSSL's buffer and does no I/O. The record is echoed
// from a buffer of exactly its size, freed when written. OpenSSL's own
// record buffers are released whenever they are empty
// (SSL_MODE_RELEASE_BUFFERS).
//
// Echo is read -> write -> read: a client that does not read is held back by
// TCP flow control, as in the plaintext session.
#include "sessions/tls_echo_session.hpp"

#include <algorithm>
#include <limits>
#include <memory>

#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

namespace shoal {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using error_code = boost::system::error_code;

// Bound on sending our close_notify when handshake_timeout is 0.
constexpr std::int64_t kFallbackClosingMs = 10'000;

template <typename... Args>
void log_debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::debug)) spdlog::debug(fmt, std::forward<Args>(args)...);
}

class TlsEchoSession final : public Connection,
                             public std::enable_shared_from_this<TlsEchoSession> {
 public:
  TlsEchoSession(Shard& shard, std::size_t listener_index, tcp_socket socket,
                 PerIpCounts::Entry* client, TlsSettingsPtr tls)
      : Connection(shard, listener_index, client),
        tls_(std::move(tls)),
        stream_(std::move(socket), *tls_->context),
        timer_(shard.executor()) {}

  void start(const asio::ip::tcp::endpoint& peer);

 private:
  void on_close(CloseReason reason) override;
  enum class Phase : std::uint8_t { handshake, open, closing, done };

  tcp_socket& socket() noexcept { return stream_.next_layer(); }
  ListenerStats& stats() noexcept { return shard_.slot(listener_index_).stats; }

  void on_handshake(const error_code& ec);
  void do_read();
  void on_read(const error_code& ec, std::size_t n);
  void on_written(const error_code& ec, std::size_t n);
  void on_timer(const error_code& ec);
  void end_with_error(const error_code& ec, const char* op);
  void send_close_notify();
  void hard_close();

  TlsSettingsPtr tls_;  // keeps the context (and certificate) this session started with
  ssl::stream<tcp_socket> stream_;
  steady_timer timer_;            // handshake deadline, then the close_notify bound
  std::unique_ptr<char[]> out_;   // the record being echoed, only while writing
  Phase phase_ = Phase::handshake;
  bool writing_ = false;
  char first_ = 0;  // the idle read's one byte
};

void TlsEchoSession::start(const asio::ip::tcp::endpoint& peer) {
  error_code ec;
  socket().set_option(asio::ip::tcp::no_delay(true), ec);
  if (ec) {
    end_with_error(ec, "setup");
    return;
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("conn {}: accepted from {} (tls)", id_string(), peer.address().to_string());
  }
  if (tls_->handshake_timeout.count() > 0) {
    timer_.expires_after(tls_->handshake_timeout);
    timer_.async_wait([self = shared_from_this()](const error_code& e) { self->on_timer(e); });
  }
  stream_.async_handshake(ssl::stream_base::server,
                          [self = shared_from_this()](const error_code& e) { self->on_handshake(e); });
}

void TlsEchoSession::on_handshake(const error_code& ec) {
  if (closed()) return;  // timed out or closed by the shard
  if (ec) {
    // A client that connects and goes without sending a byte (a port check)
    // has not failed a handshake; one that sent anything has.
    const bool sent_nothing = BIO_number_read(SSL_get_rbio(stream_.native_handle())) == 0;
    const CloseReason reason = classify(ec);
    if (!(sent_nothing && (reason == CloseReason::reset || reason == CloseReason::peer_closed))) {
      stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
      log_debug("conn {}: TLS handshake failed: {}", id_string(), ec.message());
    }
    // A handshake that failed for anything but the peer leaving was a
    // protocol failure, whatever the error's category.
    close(reason == CloseReason::error ? CloseReason::protocol_error : reason);
    return;
  }
  phase_ = Phase::open;
  timer_.cancel();
  log_debug("conn {}: TLS {} established", id_string(), SSL_get_version(stream_.native_handle()));
  touch();
  do_read();
}

void TlsEchoSession::do_read() {
  stream_.async_read_some(asio::buffer(&first_, 1),
                          [self = shared_from_this()](const error_code& ec, std::size_t n) {
                            self->on_read(ec, n);
                          });
}

void TlsEchoSession::on_read(const error_code& ec, std::size_t n) {
  if (closed()) return;
  if (ec) {
    end_with_error(ec, "read");
    return;
  }
  SSL* const ssl = stream_.native_handle();
  // The rest of the record the byte came from, already decrypted.
  const int pending = std::max(0, SSL_pending(ssl));
  const std::size_t total = n + static_cast<std::size_t>(pending);
  out_.reset(new char[total]);
  out_[0] = first_;
  if (pending > 0 && SSL_read(ssl, out_.get() + n, pending) != pending) {
    end_with_error(asio::error::fault, "read");
    return;
  }
  touch();
  ListenerStats& s = stats();
  s.bytes_received.add(total);
  s.messages_received.add();
  writing_ = true;
  wait_for_peer_to_read();  // write_timeout runs until on_written
  asio::async_write(stream_, asio::buffer(out_.get(), total),
                    [self = shared_from_this()](const error_code& e, std::size_t written) {
                      self->on_written(e, written);
                    });
}

void TlsEchoSession::on_written(const error_code& ec, std::size_t n) {
  writing_ = false;
  out_.reset();
  if (closed()) {
    if (phase_ == Phase::closing) send_close_notify();  // close() waited for this write
    return;
  }
  if (ec) {
    end_with_error(ec, "write");
    return;
  }
  ListenerStats& s = stats();
  s.bytes_sent.add(n);
  s.messages_sent.add();
  touch();
  do_read();
}

void TlsEchoSession::on_timer(const error_code& ec) {
  // Cancelled (handshake done, or closed), or a wait that had already
  // completed when the timer was re-armed for closing.
  if (ec || phase_ == Phase::open || timer_.expiry() > std::chrono::steady_clock::now()) return;
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
  // any other error the stream is unusable, and the socket just closes.
  if (ec != asio::error::eof) hard_close();
  fail(ec, op);
}

// An established connection is told with a close_notify (after an echo
// being written, if any); otherwise the socket just closes.
void TlsEchoSession::on_close(CloseReason reason) {
  // A peer that stopped reading would never take a close_notify either.
  if (phase_ != Phase::open || reason == CloseReason::write_timeout) {
    hard_close();
    return;
  }
  if (writing_) {
    // on_written sends it: two writes at once on one ssl::stream would mix.
    phase_ = Phase::closing;
    const auto t = tls_->handshake_timeout.count();
    timer_.expires_after(std::chrono::milliseconds(t > 0 ? t : kFallbackClosingMs));
    timer_.async_wait([self = shared_from_this()](const error_code& e) { self->on_timer(e); });
    return;
  }
  send_close_notify();
}

// Sends close_notify and closes, without waiting for the peer's: marking the
// peer's as received makes SSL_shutdown complete as soon as ours is written.
// Bounded like a closing handshake: a peer that does not read cannot hold it.
void TlsEchoSession::send_close_notify() {
  if (phase_ == Phase::done) return;
  if (phase_ != Phase::closing) {
    phase_ = Phase::closing;
    const auto t = tls_->handshake_timeout.count();
    timer_.expires_after(std::chrono::milliseconds(t > 0 ? t : kFallbackClosingMs));
    timer_.async_wait([self = shared_from_this()](const error_code& e) { self->on_timer(e); });
  }
  SSL* const ssl = stream_.native_handle();
  SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN);
  stream_.async_shutdown([self = shared_from_this()](const error_code&) { self->hard_close(); });
}

void TlsEchoSession::hard_close() {
  if (phase_ == Phase::done) return;
  phase_ = Phase::done;
  timer_.cancel();
  error_code ignored;
  socket().close(ignored);  // pending operations complete with operation_aborted
}

}  // namespace

void start_tls_echo_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                            PerIpCounts::Entry* client, const asio::ip::tcp::endpoint& peer,
                            TlsSettingsPtr tls) {
  std::make_shared<TlsEchoSession>(shard, listener_index, std::move(socket), client,
                                   std::move(tls))
      ->start(peer);
}

}  // namespace shoal
