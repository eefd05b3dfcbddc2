#include "tls/tls_stream.hpp"

#include "runtime/ready_wait.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string_view>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

namespace shoal {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

// The application traffic secrets of one handshake, as OpenSSL's key log
// reports them; freed at the hand-over.
struct TlsStream::Secrets {
  unsigned char client[Tls13Records::kMaxSecret];
  unsigned char server[Tls13Records::kMaxSecret];
  std::size_t client_len = 0;
  std::size_t server_len = 0;
  TlsDetails* details = nullptr;  // capture_details()
};

namespace {

// Received ciphertext: a read's worth (the shard's scratch size) and one
// carried partial record.
constexpr std::size_t kCipherBufferSize = 64 * 1024 + Tls13Records::kMaxRecord;

int stream_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "LABEL <client random hex> <secret hex>" -> the secret; 0 when malformed.
std::size_t secret_of(std::string_view line, std::string_view label, unsigned char* out) {
  if (line.substr(0, label.size()) != label || line.size() <= label.size() ||
      line[label.size()] != ' ')
    return 0;
  const std::size_t space = line.rfind(' ');
  const std::string_view hex = line.substr(space + 1);
  if (hex.size() % 2 != 0 || hex.size() / 2 > Tls13Records::kMaxSecret) return 0;
  for (std::size_t i = 0; i < hex.size() / 2; ++i) {
    const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return hex.size() / 2;
}

// Sealed records of one write are built here (one per thread, and so one
// per shard) and only what the kernel does not take is kept per connection.
ByteBuffer& sealed_buffer() {
  thread_local ByteBuffer b;
  return b;
}
// Received records are opened here, with the start of an incomplete one
// carried over from the connection's rin_.
unsigned char* cipher_buffer() {
  thread_local std::unique_ptr<unsigned char[]> b(new unsigned char[kCipherBufferSize]);
  return b.get();
}

}  // namespace

void TlsStream::install_key_capture(ssl_ctx_st* context) {
  SSL_CTX_set_num_tickets(context, 0);
  SSL_CTX_set_keylog_callback(context, &TlsStream::on_keylog);
}

void TlsStream::on_keylog(const ssl_st* ssl, const char* line) {
  auto* self = static_cast<TlsStream*>(SSL_get_ex_data(ssl, stream_index()));
  if (self == nullptr || !self->secrets_) return;
  Secrets& s = *self->secrets_;
  const std::string_view text(line);
  if (const std::size_t n = secret_of(text, "CLIENT_TRAFFIC_SECRET_0", s.client)) s.client_len = n;
  if (const std::size_t n = secret_of(text, "SERVER_TRAFFIC_SECRET_0", s.server)) s.server_len = n;
}

TlsStream::TlsStream() = default;

TlsStream::~TlsStream() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

bool TlsStream::open(ssl_ctx_st* context, int fd) {
  fd_ = fd;
  ssl_ = SSL_new(context);
  if (ssl_ == nullptr) return false;
  // A socket BIO that does not own the descriptor: the session's socket
  // closes it. BIO_NOCLOSE is SSL_set_fd's default.
  if (SSL_set_fd(ssl_, fd) != 1 || SSL_set_ex_data(ssl_, stream_index(), this) != 1) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    return false;
  }
  secrets_ = std::make_unique<Secrets>();
  SSL_set_accept_state(ssl_);
  return true;
}

// Maps OpenSSL's verdict on the last call to what the caller does next. The
// error queue is emptied every time: it is per thread, and a shard serves
// many connections.
TlsStream::Io TlsStream::result(int ret) {
  const int e = SSL_get_error(ssl_, ret);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      return Io::want_read;
    case SSL_ERROR_WANT_WRITE:
      return Io::want_write;
    case SSL_ERROR_ZERO_RETURN:
      error_ = asio::error::eof;
      return Io::closed;
    case SSL_ERROR_SYSCALL: {
      const int saved = errno;
      ERR_clear_error();
      // errno 0: the peer closed TCP without close_notify.
      error_ = saved != 0 ? error_code(saved, boost::system::system_category())
                          : error_code(asio::ssl::error::stream_truncated);
      return Io::failed;
    }
    default: {
      const unsigned long last = ERR_peek_last_error();
      ERR_clear_error();
      // OpenSSL 3 reports a TCP close without close_notify as this reason.
      if (ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        error_ = asio::ssl::error::stream_truncated;
      } else {
        error_ = error_code(static_cast<int>(last), asio::error::get_ssl_category());
      }
      return Io::failed;
    }
  }
}

TlsStream::Io TlsStream::protocol_failure() {
  error_ = error_code(EPROTO, boost::system::system_category());
  return Io::failed;
}

void TlsStream::capture_details(TlsDetails* into) noexcept {
  if (secrets_) secrets_->details = into;
}

TlsStream::Io TlsStream::handshake() {
  if (stage_ == 0) {
    const int r = SSL_do_handshake(ssl_);
    if (r != 1) return result(r);
    version_ = SSL_get_version(ssl_);
    if (secrets_ && secrets_->details) {
      TlsDetails& d = *secrets_->details;
      d.version = version_;
      d.cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_));
      const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
      d.sni = sni != nullptr ? sni : "";
      const unsigned char* alpn = nullptr;
      unsigned alpn_len = 0;
      SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
      d.alpn.assign(reinterpret_cast<const char*>(alpn), alpn != nullptr ? alpn_len : 0);
    }
    stage_ = 1;
    // TLS 1.3 tickets are ours to send (install_key_capture), so that the
    // records written under the server's traffic secret are counted.
    if (SSL_version(ssl_) == TLS1_3_VERSION) {
      for (int i = 0; i < kTickets; ++i) (void)SSL_new_session_ticket(ssl_);
    }
  }
  if (stage_ == 1) {
    if (SSL_version(ssl_) == TLS1_3_VERSION) {
      const int r = SSL_do_handshake(ssl_);  // writes the tickets
      if (r != 1) return result(r);
    }
    stage_ = 2;
    hand_over();
  }
  return Io::done;
}

// Takes the keys when this connection can go on without OpenSSL's record
// layer: TLS 1.3, one of the three AEAD suites, both secrets reported, no
// kTLS, and nothing read ahead into OpenSSL's buffers (it reads record by
// record, so the client's first application data is still in the kernel).
void TlsStream::hand_over() {
  const std::unique_ptr<Secrets> secrets = std::move(secrets_);
  Tls13Records::Suite suite;
  if (SSL_version(ssl_) != TLS1_3_VERSION || ktls_send() || ktls_recv() || SSL_has_pending(ssl_) ||
      !Tls13Records::suite_of(SSL_get_current_cipher(ssl_), suite))
    return;
  const EVP_MD* md = SSL_CIPHER_get_handshake_digest(SSL_get_current_cipher(ssl_));
  const std::size_t hash_len = md != nullptr ? static_cast<std::size_t>(EVP_MD_get_size(md)) : 0;
  if (!secrets || secrets->client_len != hash_len || secrets->server_len != hash_len) return;
  records_ = std::make_unique<Tls13Records>(suite, secrets->server, secrets->client, hash_len,
                                            /*write_seq=*/kTickets, /*read_seq=*/0);
  SSL_free(ssl_);
  ssl_ = nullptr;
}

TlsStream::Io TlsStream::read(void* buf, std::size_t len, std::size_t& got, bool& more) {
  got = 0;
  more = true;  // through OpenSSL: read on until its recv() finds the socket empty
  if (records_) return records_read(buf, len, got, more);
  const int r = SSL_read_ex(ssl_, buf, len, &got);
  return r == 1 ? Io::done : result(r);
}

// Receives at most `len` minus what is carried, so that the application
// data of every record opened fits in `buf` (a record's plaintext is
// shorter than the record).
TlsStream::Io TlsStream::records_read(void* buf, std::size_t len, std::size_t& got, bool& more) {
  unsigned char* const cb = cipher_buffer();
  for (;;) {
    const std::size_t carried = rin_.size();
    if (carried != 0) std::memcpy(cb, rin_.data(), carried);
    const std::size_t want = std::min(len > carried ? len - carried : 0, kCipherBufferSize - carried);
    if (want == 0) return protocol_failure();  // callers give room for two records
    const long n = read_hinted(fd_, cb + carried, want, more);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::want_read;
      error_ = error_code(errno, boost::system::system_category());
      return Io::failed;
    }
    if (n == 0) {  // TCP closed without close_notify
      error_ = asio::ssl::error::stream_truncated;
      return Io::failed;
    }
    const std::size_t total = carried + static_cast<std::size_t>(n);
    const Tls13Records::Opened o =
        records_->open(cb, total, static_cast<unsigned char*>(buf), len, wout_);
    rin_.clear();
    if (o.consumed < total) {
      rin_.append(cb + o.consumed, total - o.consumed);
    } else {
      rin_.release();
    }
    if (!wout_.empty() && flush() == Io::failed) return Io::failed;  // a KeyUpdate of ours
    got = o.plain;
    switch (o.status) {
      case Tls13Records::Opened::Status::close_notify:
        if (got != 0) return Io::done;  // the data first; the next read finds the end
        error_ = asio::error::eof;
        return Io::closed;
      case Tls13Records::Opened::Status::failed:
        return protocol_failure();
      case Tls13Records::Opened::Status::room:
      case Tls13Records::Opened::Status::more:
        break;
    }
    if (got != 0) return Io::done;
    // Only part of a record came (or a KeyUpdate): read on, or wait when
    // the kernel holds nothing more (no edge is lost: the socket is empty).
    if (!more) return Io::want_read;
  }
}

TlsStream::Io TlsStream::write(const void* buf, std::size_t len, std::size_t& wrote) {
  wrote = 0;
  if (len == 0) return Io::done;
  if (records_) {
    if (!wout_.empty()) {
      const Io r = flush();
      if (r != Io::done) return r;  // nothing more is sealed behind what waits
    }
    ByteBuffer& sealed = sealed_buffer();
    sealed.clear();
    records_->seal(23, static_cast<const unsigned char*>(buf), len, sealed);
    wrote = len;
    std::size_t sent = 0;
    while (sent < sealed.size()) {
      const ssize_t r = ::send(fd_, sealed.data() + sent, sealed.size() - sent,
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r > 0) {
        sent += static_cast<std::size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      error_ = error_code(r < 0 ? errno : EPIPE, boost::system::system_category());
      return Io::failed;
    }
    if (sent < sealed.size()) wout_.append(sealed.data() + sent, sealed.size() - sent);
    if (sealed.capacity() > 4 * Tls13Records::kMaxRecord) sealed.release();
    return Io::done;
  }
  const int r = SSL_write_ex(ssl_, buf, len, &wrote);
  return r == 1 ? Io::done : result(r);
}

TlsStream::Io TlsStream::flush() {
  std::size_t sent = 0;
  while (sent < wout_.size()) {
    const ssize_t r =
        ::send(fd_, wout_.data() + sent, wout_.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0) {
      sent += static_cast<std::size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    error_ = error_code(r < 0 ? errno : EPIPE, boost::system::system_category());
    return Io::failed;
  }
  wout_.consume(sent);
  if (wout_.empty()) {
    wout_.release();
    return Io::done;
  }
  return Io::want_write;
}

TlsStream::Io TlsStream::shutdown() {
  if (records_) {
    if (!shut_) {
      static constexpr unsigned char kCloseNotify[2] = {1, 0};
      records_->seal(21, kCloseNotify, sizeof kCloseNotify, wout_);
      shut_ = true;
    }
    return flush();
  }
  // Marking the peer's close_notify as received makes SSL_shutdown complete
  // as soon as ours is written.
  SSL_set_shutdown(ssl_, SSL_get_shutdown(ssl_) | SSL_RECEIVED_SHUTDOWN);
  const int r = SSL_shutdown(ssl_);
  if (r >= 0) return Io::done;
  return result(r);
}

bool TlsStream::peer_sent_nothing() const noexcept {
  return ssl_ == nullptr ? false : BIO_number_read(SSL_get_rbio(ssl_)) == 0;
}

const char* TlsStream::version() const noexcept { return version_; }

bool TlsStream::ktls_send() const noexcept {
  return ssl_ != nullptr && BIO_get_ktls_send(SSL_get_wbio(ssl_)) != 0;
}
bool TlsStream::ktls_recv() const noexcept {
  return ssl_ != nullptr && BIO_get_ktls_recv(SSL_get_rbio(ssl_)) != 0;
}

}  // namespace shoal
