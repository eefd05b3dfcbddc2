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
//
// A TLS 1.3 connection with one of the three AEAD suites leaves OpenSSL once
// its handshake is done, as shoald's do (server/tls/tls13_records.hpp):
// hand_over() takes the traffic secrets OpenSSL's key log reported and the
// connection goes on with a TlsRecordIo, which seals and opens records with
// EVP and does its own send/recv; the SSL object is freed. Measured on the
// bench's wss row (1,000 connections x 16 in flight, 64-byte messages):
// client CPU per echo 530 -> 400 ns (ws:// 270), the limit when client and
// server share cores; an idle wss connection costs the client 2 KB instead
// of 32 KB. TLS 1.2 and other suites stay on SSL_read/SSL_write.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <openssl/ssl.h>

#include "options.hpp"
#include "protocol/byte_buffer.hpp"
#include "tls/tls13_records.hpp"

namespace shoal::load {

// "" when `path` loads as PEM certificates to trust (for --ca), else why not.
std::string check_ca_file(const std::string& path);

class TlsRecordIo;

class TlsClientContext {
 public:
  // The verification the options ask for (none with --insecure; else the
  // --ca file or the system's store, and the target's name or IP address
  // against the certificate). Throws std::runtime_error.
  explicit TlsClientContext(const Options& o);
  // The same for `target` instead of the options' (pubsub: one per URL).
  TlsClientContext(const Options& o, const Target& target);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  // A client SSL on the connected, non-blocking socket `fd` (which it does
  // not close), with SNI set; nullptr when OpenSSL cannot make one, and
  // `error` says why. The caller SSL_free()s it.
  SSL* make(int fd, std::string& error) const;

  // Right after SSL_connect on `ssl` returned 1: the connection's own record
  // layer when it can leave OpenSSL (TLS 1.3, an AEAD suite, both traffic
  // secrets reported, nothing buffered in OpenSSL); the caller then
  // SSL_free()s `ssl` and uses only the TlsRecordIo. nullptr: it stays on
  // OpenSSL, which from now on reads ahead. Either way the captured secrets
  // are wiped and freed here.
  std::unique_ptr<TlsRecordIo> hand_over(SSL* ssl) const;

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

// One connection's TLS 1.3 records after the hand-over, on its non-blocking
// socket: application data sealed and sent, received bytes opened. Holds
// only the keys, ciphertext the kernel did not take yet and a partial
// record received; the scratch buffers are per thread. Owned by the
// connection, used on its engine's thread only.
class TlsRecordIo {
 public:
  // The client's records: written under `client_secret`, read under
  // `server_secret`, both at sequence number 0.
  TlsRecordIo(shoal::Tls13Records::Suite suite, const unsigned char* client_secret,
              const unsigned char* server_secret, std::size_t secret_len);

  // Outcome of a write or flush: all sent; some kept (wait until writable,
  // then flush()); or the socket failed (`error` is its errno).
  enum class Write { done, blocked, failed };

  // Seals p[0, n) as application data and sends it after what is kept.
  Write write(int fd, const char* p, std::size_t n, int& error);
  // Sends what is kept.
  Write flush(int fd, int& error);
  // Ciphertext is waiting for the socket: write() would only queue.
  bool blocked() const { return !out_.empty(); }

  struct Read {
    enum class Status : std::uint8_t {
      data,     // `plain` bytes; the socket may hold more: read again
      drained,  // `plain` bytes (maybe none); the socket is empty
      end,      // the server's close_notify or FIN: a clean end of stream
      failed,   // `error` (errno) is set for a socket failure, else `why`
    };
    Status status = Status::drained;
    std::size_t plain = 0;
    int error = 0;
    const char* why = nullptr;
  };
  // One recv (at most `room` bytes of ciphertext, so that what it opens fits
  // in plain[0, room)), and the records it completes opened into `plain`.
  // `room` must exceed Tls13Records::kMaxRecord (the carried partial record).
  // A KeyUpdate the server asks for is answered by the next flush().
  Read read(int fd, char* plain, std::size_t room);

  // Best effort, for the end of a run: seals p[0, n) (may be empty) and a
  // close_notify and sends them in one go, unless a write is blocked.
  void close(int fd, const char* p, std::size_t n);

 private:
  shoal::Tls13Records records_;
  shoal::ByteBuffer out_;  // sealed, not yet taken by the kernel
  shoal::ByteBuffer in_;   // received, the start of a record not complete yet
};

}  // namespace shoal::load
