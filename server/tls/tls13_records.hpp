// TLS 1.3 record protection (RFC 8446 §5) for an established connection,
// after OpenSSL has done the handshake: the AEAD keys derived from the
// traffic secrets OpenSSL reported, the record framing, post-handshake
// KeyUpdate (§4.6.3) and alerts.
//
// Why: OpenSSL's SSL object alone is 8.5 KiB, and ~14 KiB once a handshake
// is done, however idle the connection (measured, README "TLS"). Taking
// the keys out of it once the handshake is over lets shoald free it and
// keep per connection only what protecting records needs: two traffic
// secrets, keys, IVs and sequence numbers (about 250 bytes). This is what
// kTLS does in the kernel; here it is done in user space, with OpenSSL's
// EVP AEAD doing every cryptographic operation. OpenSSL still does the
// whole handshake, certificates, session tickets and version negotiation.
//
// Supported: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and
// TLS_CHACHA20_POLY1305_SHA256, the suites OpenSSL offers by default.
// Anything else (TLS 1.2, CCM suites) stays on OpenSSL's record layer.
//
// Role-neutral: shoald's connections are the server's records, shoal-load's
// the client's. The one difference is the client's: a server may send
// NewSessionTicket messages at any time after the handshake, which a client
// that does not resume skips; a server receiving one fails the connection.
//
// Pure: no I/O. The caller brings received bytes and sends what is sealed.
// Thread safety: none; one per connection, used on its shard's thread (the
// EVP contexts it borrows are per thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "protocol/byte_buffer.hpp"

struct ssl_cipher_st;

namespace shoal {

class Tls13Records {
 public:
  static constexpr std::size_t kMaxSecret = 48;   // SHA-384
  static constexpr std::size_t kMaxPlaintext = 16384;
  static constexpr std::size_t kMaxRecord = 5 + kMaxPlaintext + 256;

  enum class Suite : std::uint8_t { aes128_gcm, aes256_gcm, chacha20_poly1305 };

  // The suite of an OpenSSL cipher, or false when it is not one of the three.
  static bool suite_of(const ssl_cipher_st* cipher, Suite& suite) noexcept;

  enum class Role : std::uint8_t { server, client };

  // From the application traffic secrets (each `secret_len` bytes): ours to
  // write with (the server's on a server), the peer's to read with, and the
  // records already protected with each (shoald's session tickets are
  // written under the server's secret before the hand-over).
  Tls13Records(Suite suite, const unsigned char* write_secret, const unsigned char* read_secret,
               std::size_t secret_len, std::uint64_t write_seq, std::uint64_t read_seq,
               Role role = Role::server);

  // Forgets its keys in the per-thread contexts: another connection's may
  // come to live at the same address.
  ~Tls13Records();
  Tls13Records(const Tls13Records&) = delete;
  Tls13Records& operator=(const Tls13Records&) = delete;

  // Appends `n` bytes of `content_type` (23 application data, 21 alert, 22
  // handshake) to `out` as records of at most kMaxPlaintext each.
  void seal(std::uint8_t content_type, const unsigned char* p, std::size_t n, ByteBuffer& out);

  struct Opened {
    enum class Status : std::uint8_t {
      more,          // every complete record was opened; the rest is a partial record
      room,          // the next record's plaintext does not fit in what is left of `plain`
      close_notify,  // the peer's close_notify: the stream ends cleanly
      failed,        // bad record, MAC, alert or message: the connection cannot go on
    };
    Status status = Status::more;
    std::size_t consumed = 0;  // bytes of complete records taken from the input
    std::size_t plain = 0;     // application data bytes written to `plain`
    const char* why = nullptr;  // failed: for the log
  };

  // Opens the complete records at the front of data[0, n) (decrypting in
  // place) and copies their application data to plain[0, room). A KeyUpdate
  // that asks for ours appends it to `reply`, which must then be sent before
  // anything sealed later.
  Opened open(unsigned char* data, std::size_t n, unsigned char* plain, std::size_t room,
              ByteBuffer& reply);

 private:
  struct Direction {
    unsigned char secret[kMaxSecret];
    unsigned char key[32];
    unsigned char iv[12];
    std::uint64_t seq;
  };
  void derive(Direction& d);      // key and iv from d.secret
  void next_secret(Direction& d);  // KeyUpdate: the next generation

  Direction write_{};
  Direction read_{};
  std::uint8_t secret_len_;
  Suite suite_;
  Role role_;
};

}  // namespace shoal
