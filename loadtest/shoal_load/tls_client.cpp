#include "tls_client.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string_view>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "runtime/ready_wait.hpp"

namespace shoal::load {

namespace {

std::string reason_of(unsigned long e) {
  if (const char* r = ERR_reason_error_string(e)) return r;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// The oldest error on the queue is the cause; the later ones are the
// callers that passed it up. The queue is emptied either way.
std::string pop_reason() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  return e ? reason_of(e) : std::string();
}

bool is_ip_literal(const std::string& name) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(name, ec);
  return !ec;
}

// The application traffic secrets of one handshake, as the key log reports
// them: hung on the SSL (ex_data) from make() to hand_over(), or freed with
// the SSL when the handshake fails.
struct Secrets {
  unsigned char client[shoal::Tls13Records::kMaxSecret];
  unsigned char server[shoal::Tls13Records::kMaxSecret];
  std::size_t client_len = 0;
  std::size_t server_len = 0;
};

void free_secrets(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  if (ptr == nullptr) return;
  OPENSSL_cleanse(ptr, sizeof(Secrets));
  delete static_cast<Secrets*>(ptr);
}

int secrets_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_secrets);
  return index;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "LABEL <client random hex> <secret hex>" -> the secret; 0 when the line
// is another label or malformed.
std::size_t secret_of(std::string_view line, std::string_view label, unsigned char* out) {
  if (line.size() <= label.size() || line.substr(0, label.size()) != label || line[label.size()] != ' ')
    return 0;
  const std::string_view hex = line.substr(line.rfind(' ') + 1);
  if (hex.size() % 2 != 0 || hex.size() / 2 > shoal::Tls13Records::kMaxSecret) return 0;
  for (std::size_t i = 0; i < hex.size() / 2; ++i) {
    const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return hex.size() / 2;
}

void on_keylog(const SSL* ssl, const char* line) {
  auto* s = static_cast<Secrets*>(SSL_get_ex_data(ssl, secrets_index()));
  if (s == nullptr) return;  // handed over (a later KeyUpdate's line)
  const std::string_view text(line);
  if (const std::size_t n = secret_of(text, "CLIENT_TRAFFIC_SECRET_0", s->client)) s->client_len = n;
  if (const std::size_t n = secret_of(text, "SERVER_TRAFFIC_SECRET_0", s->server)) s->server_len = n;
}

// Records are sealed here and only what the kernel does not take is kept by
// the connection; received ciphertext is assembled here, behind the carried
// start of a record. One of each per engine thread.
shoal::ByteBuffer& sealed_scratch() {
  thread_local shoal::ByteBuffer b;
  return b;
}
shoal::ByteBuffer& cipher_scratch() {
  thread_local shoal::ByteBuffer b;
  return b;
}

}  // namespace

std::string check_ca_file(const std::string& path) {
  std::error_code fec;
  if (!std::filesystem::is_regular_file(path, fec)) return "no such file";
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return "OpenSSL: " + pop_reason();
  std::string problem;
  if (SSL_CTX_load_verify_file(ctx, path.c_str()) != 1) {
    problem = "not a PEM file of certificates (" + pop_reason() + ")";
  }
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return problem;
}

TlsClientContext::TlsClientContext(const Options& o) : TlsClientContext(o, o.target) {}

TlsClientContext::TlsClientContext(const Options& o, const Target& target) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) throw std::runtime_error("TLS: SSL_CTX_new: " + pop_reason());
  // Buffers only while a record is in flight, as a server holding many
  // idle connections would want; SSL_write may write part of what it is
  // given (it returns how much) and may be retried from a buffer that has
  // moved (a WebSocket connection's output string grows while a write
  // waits).
  SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                             SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // A server may close without close_notify (shoald does at its idle
  // timeout, a balancer may): a plain end of stream, counted as the
  // plaintext path counts a FIN, not a TLS failure.
  SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  // No read-ahead during the handshake: what follows the server's Finished
  // (session tickets, early echoes) must stay in the kernel for the
  // hand-over to TlsRecordIo. Connections that stay on OpenSSL turn it on
  // afterwards (hand_over), so that a recv takes what the socket holds
  // instead of a header, then a body, per record: the client must not cost
  // more system calls per message than the server it measures.
  SSL_CTX_set_read_ahead(ctx_, 0);
  SSL_CTX_set_keylog_callback(ctx_, &on_keylog);
  // No resumption: every connection does a full handshake, so that a
  // handshake rate is one of full handshakes.
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
  if (!is_ip_literal(target.name)) sni_ = target.name;
  if (o.insecure) {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    const bool loaded = o.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx_) == 1
                                          : SSL_CTX_load_verify_file(ctx_, o.ca_file.c_str()) == 1;
    if (!loaded) {
      const std::string why = pop_reason();
      SSL_CTX_free(ctx_);
      throw std::runtime_error("TLS: cannot load " + (o.ca_file.empty() ? "the system's trust store" : o.ca_file) +
                               ": " + why);
    }
    // The certificate must name the target: its IP address, or its host
    // name. Set once here; every SSL made from the context inherits it.
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx_);
    const int ok = sni_.empty() ? X509_VERIFY_PARAM_set1_ip_asc(param, target.name.c_str())
                                : X509_VERIFY_PARAM_set1_host(param, target.name.c_str(), 0);
    if (ok != 1) {
      const std::string why = pop_reason();
      SSL_CTX_free(ctx_);
      throw std::runtime_error("TLS: cannot check certificates for " + target.name + ": " + why);
    }
  }
  ERR_clear_error();
}

TlsClientContext::~TlsClientContext() { SSL_CTX_free(ctx_); }

SSL* TlsClientContext::make(int fd, std::string& error) const {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) {
    error = "SSL_new: " + pop_reason();
    return nullptr;
  }
  // SSL_set_tlsext_host_name() is this call behind a macro with a C cast.
  Secrets* secrets = new Secrets;
  if (SSL_set_ex_data(ssl, secrets_index(), secrets) != 1) {
    delete secrets;
    error = "SSL_set_ex_data: " + pop_reason();
    SSL_free(ssl);
    return nullptr;
  }
  if (SSL_set_fd(ssl, fd) != 1 ||
      (!sni_.empty() && SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                                 const_cast<char*>(sni_.c_str())) != 1)) {
    error = pop_reason();
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

std::unique_ptr<TlsRecordIo> TlsClientContext::hand_over(SSL* ssl) const {
  auto* secrets = static_cast<Secrets*>(SSL_get_ex_data(ssl, secrets_index()));
  SSL_set_ex_data(ssl, secrets_index(), nullptr);
  std::unique_ptr<TlsRecordIo> io;
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  shoal::Tls13Records::Suite suite;
  if (secrets != nullptr && SSL_version(ssl) == TLS1_3_VERSION && !SSL_has_pending(ssl) && cipher != nullptr &&
      shoal::Tls13Records::suite_of(cipher, suite)) {
    const EVP_MD* md = SSL_CIPHER_get_handshake_digest(cipher);
    const std::size_t hash_len = md != nullptr ? static_cast<std::size_t>(EVP_MD_get_size(md)) : 0;
    if (hash_len != 0 && secrets->client_len == hash_len && secrets->server_len == hash_len)
      io = std::make_unique<TlsRecordIo>(suite, secrets->client, secrets->server, hash_len);
  }
  free_secrets(nullptr, secrets, nullptr, 0, 0, nullptr);
  if (!io) SSL_set_read_ahead(ssl, 1);
  return io;
}

TlsRecordIo::TlsRecordIo(shoal::Tls13Records::Suite suite, const unsigned char* client_secret,
                         const unsigned char* server_secret, std::size_t secret_len)
    : records_(suite, client_secret, server_secret, secret_len, /*write_seq=*/0, /*read_seq=*/0,
               shoal::Tls13Records::Role::client) {}

namespace {

// Sends b from its start until the kernel stops taking it; what was taken is
// consumed.
TlsRecordIo::Write send_from(int fd, shoal::ByteBuffer& b, int& error) {
  std::size_t sent = 0;
  TlsRecordIo::Write result = TlsRecordIo::Write::done;
  while (sent < b.size()) {
    const ssize_t n = ::send(fd, b.data() + sent, b.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      result = TlsRecordIo::Write::blocked;
    } else {
      error = n < 0 ? errno : EPIPE;
      result = TlsRecordIo::Write::failed;
    }
    break;
  }
  b.consume(sent);
  return result;
}

}  // namespace

TlsRecordIo::Write TlsRecordIo::flush(int fd, int& error) {
  if (out_.empty()) return Write::done;
  const Write w = send_from(fd, out_, error);
  if (w == Write::done) out_.release();  // an idle connection keeps no buffer
  return w;
}

TlsRecordIo::Write TlsRecordIo::write(int fd, const char* p, std::size_t n, int& error) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(p);
  if (!out_.empty()) {  // behind what waits: queued only
    records_.seal(23, bytes, n, out_);
    return flush(fd, error);
  }
  shoal::ByteBuffer& sealed = sealed_scratch();
  sealed.clear();
  records_.seal(23, bytes, n, sealed);
  const Write w = send_from(fd, sealed, error);
  if (w == Write::blocked) out_.append(sealed.data(), sealed.size());
  return w;
}

TlsRecordIo::Read TlsRecordIo::read(int fd, char* plain, std::size_t room) {
  Read r;
  // What is carried is less than one record, so the recv gets at least
  // room - kMaxRecord; what it opens is shorter than its ciphertext, so it
  // fits in `room` and open() never stops for lack of room.
  shoal::ByteBuffer& cipher = cipher_scratch();
  cipher.clear();
  unsigned char* buf = cipher.prepare(room);
  const std::size_t have = in_.size();
  if (have != 0) std::memcpy(buf, in_.data(), have);
  bool more = true;
  const long n = shoal::read_hinted(fd, buf + have, room - have, more);
  if (n == 0) {
    // A FIN (shoald closes without close_notify at its idle timeout): a
    // clean end unless it cuts a record.
    r.status = have == 0 ? Read::Status::end : Read::Status::failed;
    r.why = "the server closed the connection in the middle of a record";
    return r;
  }
  if (n < 0) {
    if (errno == EINTR) {
      r.status = Read::Status::data;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      r.status = Read::Status::drained;
    } else {
      r.status = Read::Status::failed;
      r.error = errno;
    }
    return r;
  }
  const std::size_t total = have + static_cast<std::size_t>(n);
  const shoal::Tls13Records::Opened o =
      records_.open(buf, total, reinterpret_cast<unsigned char*>(plain), room, out_);
  r.plain = o.plain;
  using S = shoal::Tls13Records::Opened::Status;
  if (o.status == S::close_notify) {
    r.status = Read::Status::end;
    return r;
  }
  if (o.status != S::more) {
    r.status = Read::Status::failed;
    r.why = o.status == S::room ? "a record larger than TLS allows" : o.why;
    return r;
  }
  // The start of the next record waits here for its rest; an empty carry
  // gives its memory back.
  if (o.consumed == total) {
    in_.release();
  } else {
    in_.clear();
    in_.append(buf + o.consumed, total - o.consumed);
  }
  r.status = more ? Read::Status::data : Read::Status::drained;
  return r;
}

void TlsRecordIo::close(int fd, const char* p, std::size_t n) {
  if (!out_.empty()) return;
  shoal::ByteBuffer& sealed = sealed_scratch();
  sealed.clear();
  if (n != 0) records_.seal(23, reinterpret_cast<const unsigned char*>(p), n, sealed);
  const unsigned char close_notify[2] = {1, 0};  // warning, close_notify
  records_.seal(21, close_notify, sizeof close_notify, sealed);
  [[maybe_unused]] const ssize_t sent = ::send(fd, sealed.data(), sealed.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

std::string tls_failure(SSL* ssl, int ssl_error, int saved_errno) {
  const unsigned long e = ERR_peek_error();
  std::string what;
  if (e != 0) {
    what = reason_of(e);
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      const long v = SSL_get_verify_result(ssl);
      if (v != X509_V_OK) what += std::string(" (") + X509_verify_cert_error_string(v) + ")";
    }
  } else if (ssl_error == SSL_ERROR_SYSCALL && saved_errno != 0) {
    what = std::strerror(saved_errno);
  } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
    what = "the server closed the connection";
  } else {
    what = "SSL error " + std::to_string(ssl_error);
  }
  ERR_clear_error();
  return what;
}

void tls_clear_errors() { ERR_clear_error(); }

}  // namespace shoal::load
