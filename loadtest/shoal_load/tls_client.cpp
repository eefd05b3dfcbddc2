#include "tls_client.hpp"

#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <openssl/err.h>
#include <openssl/x509v3.h>

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

TlsClientContext::TlsClientContext(const Options& o) {
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
  // Read what the socket holds in one recv instead of a header, then a
  // body, per record: the client must not cost more system calls per
  // message than the server it measures.
  SSL_CTX_set_read_ahead(ctx_, 1);
  // No resumption: every connection does a full handshake, so that a
  // handshake rate is one of full handshakes.
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
  if (!is_ip_literal(o.target.name)) sni_ = o.target.name;
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
    const int ok = sni_.empty() ? X509_VERIFY_PARAM_set1_ip_asc(param, o.target.name.c_str())
                                : X509_VERIFY_PARAM_set1_host(param, o.target.name.c_str(), 0);
    if (ok != 1) {
      const std::string why = pop_reason();
      SSL_CTX_free(ctx_);
      throw std::runtime_error("TLS: cannot check certificates for " + o.target.name + ": " + why);
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
