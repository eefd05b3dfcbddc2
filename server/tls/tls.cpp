#include "tls/tls.hpp"

#include "tls/ktls.hpp"
#include "tls/tls_stream.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <system_error>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace shoal {
namespace {

int select_http11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                  unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}


// Far above any real chain or key; keeps a wrong path (a log file, a disk
// image) from being read into memory whole.
constexpr off_t kMaxPemBytes = 1024 * 1024;

std::string quote(const std::string& text) { return "\"" + text + "\""; }

// One key's errors: "listeners[0].tls.certificate: PROBLEM (line L, column C)".
struct KeyErrors {
  std::string key_path;
  const SourceMark* mark;

  [[noreturn]] void fail(const std::string& problem) const {
    throw ConfigError(key_path + ": " + problem + mark->text);
  }
};

// The reason of OpenSSL's most recent error ("no start line", "key values
// mismatch"); the queue is emptied.
std::string openssl_reason() {
  unsigned long last = 0;
  while (const unsigned long e = ERR_get_error()) last = e;
  if (last == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(last);
  return reason ? reason : "error " + std::to_string(ERR_GET_REASON(last));
}

// A regular file of at most kMaxPemBytes, read whole. O_NONBLOCK keeps a FIFO
// given by mistake from hanging the open.
std::string read_pem_file(const std::string& path, const KeyErrors& where) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    where.fail("cannot read " + quote(path) + ": " + std::strerror(errno));
  }
  struct stat st {};
  std::string problem;
  if (::fstat(fd, &st) != 0) {
    problem = "cannot read " + quote(path) + ": " + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    problem = quote(path) + " is not a regular file";
  } else if (st.st_size > kMaxPemBytes) {
    problem = quote(path) + " is larger than 1 MiB; not a PEM file";
  }
  std::string text;
  if (problem.empty()) {
    std::array<char, 16384> buffer;
    for (;;) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n > 0) {
        text.append(buffer.data(), static_cast<std::size_t>(n));
        if (text.size() > static_cast<std::size_t>(kMaxPemBytes)) {
          problem = quote(path) + " is larger than 1 MiB; not a PEM file";
          break;
        }
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        problem = "cannot read " + quote(path) + ": " + std::strerror(errno);
        break;
      }
    }
  }
  ::close(fd);
  if (!problem.empty()) where.fail(problem);
  return text;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr memory_bio(const std::string& text) {
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) throw std::bad_alloc();
  return bio;
}

// Loads the leaf certificate and any intermediates after it (like
// SSL_CTX_use_certificate_chain_file, with our messages); returns the leaf.
X509* use_certificate_chain(SSL_CTX* ctx, const std::string& pem, const std::string& path,
                            const KeyErrors& where) {
  ERR_clear_error();
  BioPtr bio = memory_bio(pem);
  X509* leaf = PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr);
  if (!leaf) {
    where.fail(quote(path) + " holds no PEM certificate (OpenSSL: " + openssl_reason() + ")");
  }
  const int used = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);  // the context holds its own reference
  if (used != 1) {
    where.fail("the certificate in " + quote(path) + " cannot be used (OpenSSL: " +
               openssl_reason() + ")");
  }
  SSL_CTX_clear_chain_certs(ctx);
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {  // takes ownership on success
      X509_free(extra);
      where.fail("an intermediate certificate in " + quote(path) + " cannot be used (OpenSSL: " +
                 openssl_reason() + ")");
    }
  }
  // The loop ends at the end of the file ("no start line"); anything else
  // is a damaged certificate after the first.
  const unsigned long last = ERR_peek_last_error();
  if (last != 0 &&
      !(ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)) {
    where.fail("a certificate after the first in " + quote(path) + " is damaged (OpenSSL: " +
               openssl_reason() + ")");
  }
  ERR_clear_error();
  return SSL_CTX_get0_certificate(ctx);
}

// A passphrase is never asked for: an encrypted key is refused with a clear
// message instead of a prompt on the terminal.
int no_passphrase(char*, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

void use_private_key(SSL_CTX* ctx, const std::string& pem, const std::string& path,
                     const std::string& certificate_path, const KeyErrors& where) {
  ERR_clear_error();
  BioPtr bio = memory_bio(pem);
  bool asked = false;
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, &asked);
  if (!key) {
    if (asked) {
      ERR_clear_error();
      where.fail(quote(path) + " is encrypted with a passphrase; shoald needs an unencrypted key");
    }
    where.fail(quote(path) + " holds no PEM private key (OpenSSL: " + openssl_reason() + ")");
  }
  const int used = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    where.fail(quote(path) + " does not belong to the certificate in " + quote(certificate_path) +
               " (OpenSSL: " + openssl_reason() + ")");
  }
}

std::string asn1_time_text(const ASN1_TIME* t) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string subject_text(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_ONELINE) < 0)
    return "?";
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace

TlsSettingsPtr load_tls_settings(const ListenerConfig& listener, std::size_t index) {
  if (!listener.tls) return nullptr;
  const TlsConfig& tls = *listener.tls;
  const std::string base = "listeners[" + std::to_string(index) + "].tls.";
  const KeyErrors certificate_errors{base + "certificate", &tls.certificate_mark};
  const KeyErrors key_errors{base + "private_key", &tls.private_key_mark};

  // Both files are read first, so that an unreadable one is named before
  // any content is judged.
  const std::string certificate_pem = read_pem_file(tls.certificate, certificate_errors);
  const std::string key_pem = read_pem_file(tls.private_key, key_errors);

  std::shared_ptr<SSL_CTX> context(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!context) throw std::bad_alloc();
  SSL_CTX* ctx = context.get();
  // TLS 1.0 and 1.1 never: min_version is 1.2 or 1.3.
  SSL_CTX_set_min_proto_version(
      ctx, tls.min_version == TlsVersion::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
  // No renegotiation (a client could make us redo the handshake's expensive
  // half at will), no compression (CRIME), the server's cipher order.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  // No server-side session cache: up to 20,480 cached sessions would be
  // memory that grows with handshakes, not connections. Resumption still
  // works through session tickets, which the client keeps.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // OpenSSL's record buffers (~34 KiB) are freed whenever they are empty, so
  // an idle connection holds none (Asio sets this per SSL too).
  // Writes may be partial and retried from another address with more bytes
  // behind (tls_stream.hpp): the session keeps what was not taken.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // kTLS where the kernel offers it (tls.ktls: auto); OpenSSL hands the keys
  // over after each handshake, for the ciphers the kernel supports.
  static const KtlsSupport kernel = probe_ktls();
  const bool ktls = use_ktls(tls.ktls, kernel);
  if (ktls) SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
  // TLS 1.3 connections leave OpenSSL's record layer after the handshake
  // (tls_stream.hpp): the stream needs the traffic secrets and sends the
  // session tickets itself.
  TlsStream::install_key_capture(ctx);
  // ALPN: HTTP/1.1 when the client offers it (HTTP echo and the upgrade
  // are both HTTP/1.1); a client that offers only others (h2) gets no ALPN
  // answer rather than a refused handshake.
  SSL_CTX_set_alpn_select_cb(ctx, select_http11, nullptr);

  X509* leaf = use_certificate_chain(ctx, certificate_pem, tls.certificate, certificate_errors);
  use_private_key(ctx, key_pem, tls.private_key, tls.certificate, key_errors);

  auto settings = std::make_shared<TlsSettings>();
  settings->context = std::move(context);
  settings->ktls = ktls;
  settings->handshake_timeout = tls.handshake_timeout;
  settings->certificate_summary = "subject " + subject_text(leaf) + ", expires " +
                                  asn1_time_text(X509_get0_notAfter(leaf));
  settings->certificate_expired = X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0;
  return settings;
}

std::vector<TlsSettingsPtr> load_tls_settings(const Config& config) {
  std::vector<TlsSettingsPtr> out;
  out.reserve(config.listeners.size());
  for (std::size_t i = 0; i < config.listeners.size(); ++i)
    out.push_back(load_tls_settings(config.listeners[i], i));
  return out;
}

}  // namespace shoal
