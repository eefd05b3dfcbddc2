// TLS for listeners with a `tls:` map: the OpenSSL context built from the
// configured certificate and key, and the slot through which acceptors on
// every shard pick up the current one.
//
// A context is built whenever a config is put to use: at start-up, by
// `shoald --check` and on each SIGHUP, so a certificate renewed on disk is
// picked up by a reload even when the config file did not change. A file that
// does not load is a ConfigError naming the key and where it was written; a
// reload that fails this way is rejected like any other bad config.
//
// Thread safety: a TlsSettings is immutable once built and shared by the
// sessions that started with it (OpenSSL allows SSL_new on one SSL_CTX from
// several threads). TlsSlot is read by every shard's accept path and written
// by the main thread on reload.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "runtime/shared_value.hpp"

struct ssl_ctx_st;

namespace shoal {

// What a TLS session needs from its listener, fixed for the session's life.
struct TlsSettings {
  std::shared_ptr<ssl_ctx_st> context;  // OpenSSL's SSL_CTX
  ssl_ctx_st* ssl_context() const noexcept { return context.get(); }
  // SSL_OP_ENABLE_KTLS is set: tls.ktls is auto and the kernel offers kTLS.
  bool ktls = false;
  // TLS handshake deadline of a tcp-echo listener (0: none); a WebSocket
  // session uses websocket.handshake_timeout instead.
  Duration handshake_timeout{0};
  // For the log: "subject CN=localhost, expires Jan  1 00:00:00 2030 GMT".
  std::string certificate_summary;
  bool certificate_expired = false;
};
using TlsSettingsPtr = std::shared_ptr<const TlsSettings>;

// Reads `listener.tls`'s files and builds its context (server side,
// min_version, no renegotiation, no compression, no session cache: tickets
// resume sessions without server memory). Throws ConfigError, e.g.
//   listeners[0].tls.certificate: cannot read "/etc/x.pem": No such file or directory (line 5, column 20)
//   listeners[0].tls.private_key: "/k.pem" does not belong to the certificate in "/c.pem" (...)
// `index` is the listener's position in the config, for the key path.
TlsSettingsPtr load_tls_settings(const ListenerConfig& listener, std::size_t index);

// One entry per listener of `config`, null for plaintext ones.
std::vector<TlsSettingsPtr> load_tls_settings(const Config& config);

// The current settings of one TLS listener. get() is called once per accepted
// connection (never per message); set() by a reload.
using TlsSlot = SharedValue<const TlsSettings>;

}  // namespace shoal
