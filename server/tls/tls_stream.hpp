// One connection's TLS, driven through OpenSSL directly on the socket's
// descriptor: no Asio ssl::stream, no BIO pair, no buffer of our own.
//
// OpenSSL reads and writes the non-blocking socket itself (a socket BIO,
// SSL_set_fd), which is also what kTLS needs. Each call does what it can
// and says what it waits for: want_read means a recv() found the socket
// empty, so the caller may park until the next edge (Connection::wait_readable());
// want_write means the kernel's send buffer is full. The only memory a
// connection holds while idle is OpenSSL's own state: the context sets
// SSL_MODE_RELEASE_BUFFERS, so its ~34 KiB of record buffers exist only
// while a record is in flight, and the plaintext is read into and written
// from the caller's (the shard's) buffers.
//
// Once a TLS 1.3 handshake is done (and the kernel does not take over with
// kTLS), the stream takes the traffic keys out of OpenSSL and frees the SSL
// object (8.5 KiB new, ~14 KiB after a handshake): records are then
// protected by Tls13Records with OpenSSL's AEAD, and an idle connection
// holds about 250 bytes of key material. Session tickets are sent before
// the hand-over. TLS 1.2 connections stay on OpenSSL's record layer.
//
// Writes: through OpenSSL they may be partial and retried with more bytes
// appended (SSL_MODE_ENABLE_PARTIAL_WRITE | ACCEPT_MOVING_WRITE_BUFFER): a
// caller keeps what write() did not take at the front of its buffer and
// offers it again. After the hand-over write() takes every byte it is
// given, sealed, and keeps what the kernel did not take
// (output_pending(), flush()).
//
// Thread safety: none; one per connection, used on its shard's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/system/error_code.hpp>

#include <memory>

#include "protocol/byte_buffer.hpp"
#include "tls/tls13_records.hpp"

struct ssl_st;
struct ssl_ctx_st;

namespace shoal {

// What a connection's handshake agreed, for people to see (HTTP echo).
struct TlsDetails {
  std::string version;  // "TLSv1.3"
  std::string cipher;   // "TLS_AES_128_GCM_SHA256"
  std::string sni;      // empty: none sent
  std::string alpn;     // empty: none agreed
};

class TlsStream {
 public:
  enum class Io : std::uint8_t {
    done,        // read: bytes came; write: bytes taken; handshake/shutdown: complete
    want_read,   // wait until the socket is readable, then call again
    want_write,  // wait until the socket is writable, then call again
    closed,      // the peer's close_notify (read), or an orderly end
    failed,      // error(): the connection cannot go on
  };

  // Session tickets sent to every TLS 1.3 client after its handshake (the
  // context's own ticket count is 0: they are sent by the stream, so that
  // it knows how many records it must count before taking the keys).
  static constexpr int kTickets = 2;

  // Set on every server context: the traffic secrets go to the stream of
  // the connection they belong to, for the hand-over.
  static void install_key_capture(ssl_ctx_st* context);

  TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;
  ~TlsStream();

  // Server side of a connection on `fd` (not owned), with `context`'s
  // certificate. False when OpenSSL cannot allocate it.
  bool open(ssl_ctx_st* context, int fd);
  bool is_open() const noexcept { return ssl_ != nullptr || records_ != nullptr; }
  // Whether the records are ours now (the SSL object is gone).
  bool own_records() const noexcept { return records_ != nullptr; }

  Io handshake();
  // Before the handshake: `into` gets its details when it completes (the
  // SSL object may be gone after it). `into` must outlive the handshake.
  void capture_details(TlsDetails* into) noexcept;
  // Up to `len` decrypted bytes into `buf`; `got` says how many. `more`:
  // whether another read may find bytes without a new edge (after the
  // hand-over the kernel's TCP_INQ says, when enable_read_hints() is on).
  Io read(void* buf, std::size_t len, std::size_t& got, bool& more);
  // Encrypts and sends from `buf`; `wrote` says how many bytes were taken
  // (whole records went to the kernel). want_write: some bytes wait inside
  // OpenSSL; call again with the same bytes first.
  Io write(const void* buf, std::size_t len, std::size_t& wrote);
  // Sends our close_notify without waiting for the peer's (an echo server
  // has nothing to read after it). done once it is in the kernel.
  Io shutdown();
  // Sealed bytes the kernel has not taken yet (after the hand-over).
  bool output_pending() const noexcept { return !wout_.empty(); }
  std::size_t output_pending_bytes() const noexcept { return wout_.size(); }
  // Sends them: done when none are left, want_write, or failed.
  Io flush();

  // After failed: what happened, as an error code that classify()
  // understands (reset, EOF without close_notify, or a TLS protocol error in
  // Asio's ssl category).
  const boost::system::error_code& error() const noexcept { return error_; }
  // Whether the peer sent no byte at all (a port check, not a failed handshake).
  bool peer_sent_nothing() const noexcept;
  // "TLSv1.3", for the log.
  const char* version() const noexcept;
  // Whether the kernel encrypts (kTLS) in each direction, after the handshake.
  bool ktls_send() const noexcept;
  bool ktls_recv() const noexcept;
  ssl_st* native_handle() const noexcept { return ssl_; }

 private:
  struct Secrets;
  static void on_keylog(const ssl_st* ssl, const char* line);
  Io result(int ret);
  void hand_over();
  Io records_read(void* buf, std::size_t len, std::size_t& got, bool& more);
  Io protocol_failure();  // a bad record or message from the peer

  ssl_st* ssl_ = nullptr;
  std::unique_ptr<Secrets> secrets_;          // during the handshake only
  std::unique_ptr<Tls13Records> records_;     // after the hand-over
  ByteBuffer rin_;   // the start of a record a read did not complete
  ByteBuffer wout_;  // sealed records the kernel has not taken
  boost::system::error_code error_;
  const char* version_ = "";
  int fd_ = -1;
  std::uint8_t stage_ = 0;  // 0 handshake, 1 sending tickets, 2 established
  bool shut_ = false;       // our close_notify is sealed
};

}  // namespace shoal
