// TLS for shoal-load's tls:// and wss:// connections, through OpenSSL 3's
// libssl directly: the client context built from the options, a new SSL
// object per connected socket, and the words for a failure.
//
// Each engine owns one TlsClientContext, built on the thread that builds the
// engine and then used only on the engine's thread (SSL_CTX itself would be
// safe to share; one per engine keeps the engines independent). The SSL
// objects it makes belong to their connection and its engine thread.
// The engine drives them with its own readiness waits: non-blocking
// SSL_connect/SSL_read/SSL_write on the socket's descriptor (SSL_set_fd);
// SSL_ERROR_WANT_READ means the socket was found empty (the edge-triggered
// read wait may start), SSL_ERROR_WANT_WRITE that its send buffer is full.
#pragma once

#include <string>

#include <openssl/ssl.h>

#include "options.hpp"

namespace shoal::load {

// "" when `path` loads as PEM certificates to trust (for --ca), else why not.
std::string check_ca_file(const std::string& path);

class TlsClientContext {
 public:
  // The verification the options ask for (none with --insecure; else the
  // --ca file or the system's store, and the target's name or IP address
  // against the certificate). Throws std::runtime_error.
  explicit TlsClientContext(const Options& o);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  // A client SSL on the connected, non-blocking socket `fd` (which it does
  // not close), with SNI set; nullptr when OpenSSL cannot make one, and
  // `error` says why. The caller SSL_free()s it.
  SSL* make(int fd, std::string& error) const;

 private:
  SSL_CTX* ctx_ = nullptr;
  std::string sni_;  // empty for an IP literal: RFC 6066 names hosts only
};

// Why the SSL_* call on `ssl` that returned `ssl_error` (SSL_get_error)
// failed, in words: OpenSSL's reason, with the certificate check's verdict
// when that was the cause. `saved_errno` is errno right after the call.
// Empties the calling thread's OpenSSL error queue, which every later
// SSL_get_error relies on.
std::string tls_failure(SSL* ssl, int ssl_error, int saved_errno);

// Empties the calling thread's OpenSSL error queue, for code paths whose
// failures are not reported (a best-effort close).
void tls_clear_errors();

}  // namespace shoal::load
