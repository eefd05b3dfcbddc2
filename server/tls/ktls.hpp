// kTLS: whether the kernel can encrypt and decrypt a connection's TLS
// records once OpenSSL has done the handshake (SSL_OP_ENABLE_KTLS), so that
// an established TLS connection costs what a plaintext one costs.
//
// The kernel offers it when /proc/sys/net/ipv4/tcp_available_ulp lists the
// `tls` upper-layer protocol. OpenSSL then hands the keys over by itself
// after the handshake, for the ciphers the kernel supports; a connection
// that could not use it goes on in user space, and the session counts the
// ones that did (TlsStream::ktls_send()).
//
// Thread safety: pure functions, and probe_ktls() reads one /proc file.
#pragma once

#include <string>
#include <string_view>

#include "config/config.hpp"

namespace shoal {

struct KtlsSupport {
  bool available = false;
  // For the preflight line: what the kernel offers, or why it is unknown.
  std::string detail;
};

// From the contents of tcp_available_ulp ("espintcp mptcp tls"), or
// `readable` false when the file could not be read.
KtlsSupport ktls_support(std::string_view tcp_available_ulp, bool readable);

// Reads /proc/sys/net/ipv4/tcp_available_ulp (or `path`, for tests).
KtlsSupport probe_ktls(const char* path = "/proc/sys/net/ipv4/tcp_available_ulp");

// Whether a listener asks OpenSSL for kTLS: `mode` auto and the kernel
// offers it.
inline bool use_ktls(KtlsMode mode, const KtlsSupport& support) noexcept {
  return mode == KtlsMode::auto_ && support.available;
}

}  // namespace shoal
