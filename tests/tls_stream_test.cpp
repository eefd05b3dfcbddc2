// TlsStream against OpenSSL's own client over a socket pair: the
// handshake, the hand-over of TLS 1.3 connections to our record layer
// (Tls13Records), and everything a client may do afterwards: data both
// ways in records of every size, KeyUpdate, close_notify, resumption with
// the tickets we send, and tampered records.
#include "tls/tls_stream.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>
#include <string>
#include <vector>

namespace shoal {
namespace {

// A server context as tls.cpp builds it, with a throwaway EC certificate.
SSL_CTX* server_context() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    SSL_CTX_use_certificate(c, cert);
    SSL_CTX_use_PrivateKey(c, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    TlsStream::install_key_capture(c);
    return c;
  }();
  return ctx;
}

struct Options {
  int max_version = 0;       // 0: TLS 1.3
  const char* suites = nullptr;  // TLS 1.3 ciphersuites
  SSL_SESSION* resume = nullptr;
};

// One connection: our server stream on one end, OpenSSL's client on the
// other, both non-blocking, driven by turns.
class Pair {
 public:
  explicit Pair(const Options& o = {}) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    server_fd_ = sv[0];
    client_fd_ = sv[1];
    ::fcntl(server_fd_, F_SETFL, O_NONBLOCK);
    ::fcntl(client_fd_, F_SETFL, O_NONBLOCK);
    client_ctx_ = SSL_CTX_new(TLS_client_method());
    if (o.max_version != 0) SSL_CTX_set_max_proto_version(client_ctx_, o.max_version);
    if (o.suites != nullptr) SSL_CTX_set_ciphersuites(client_ctx_, o.suites);
    client_ = SSL_new(client_ctx_);
    SSL_set_fd(client_, client_fd_);
    SSL_set_connect_state(client_);
    if (o.resume != nullptr) SSL_set_session(client_, o.resume);
    EXPECT_TRUE(server_.open(server_context(), server_fd_));
  }
  ~Pair() {
    SSL_free(client_);
    SSL_CTX_free(client_ctx_);
    ::close(server_fd_);
    ::close(client_fd_);
  }

  bool handshake() {
    for (int i = 0; i < 100; ++i) {
      SSL_do_handshake(client_);
      const TlsStream::Io r = server_.handshake();
      if (r == TlsStream::Io::done && SSL_is_init_finished(client_)) return true;
      if (r == TlsStream::Io::failed || r == TlsStream::Io::closed) return false;
    }
    return false;
  }

  // Client writes `data`; the server reads it all, echoes it, and the client
  // reads the echo back. Returns what the client got.
  std::string echo(const std::string& data) {
    std::size_t off = 0;
    std::string at_server, at_client;
    std::vector<char> buf(64 * 1024);
    for (int i = 0; i < 10000 && at_client.size() < data.size(); ++i) {
      if (off < data.size()) {
        std::size_t w = 0;
        if (SSL_write_ex(client_, data.data() + off, data.size() - off, &w) == 1) off += w;
      }
      std::size_t got = 0;
      bool more = true;
      const TlsStream::Io r = server_.read(buf.data(), buf.size(), got, more);
      if (r == TlsStream::Io::failed || r == TlsStream::Io::closed) break;
      if (got != 0) {
        std::size_t wrote = 0;
        EXPECT_NE(server_.write(buf.data(), got, wrote), TlsStream::Io::failed);
        EXPECT_EQ(wrote, got);
      }
      if (server_.output_pending()) server_.flush();
      std::size_t n = 0;
      while (SSL_read_ex(client_, buf.data(), buf.size(), &n) == 1) at_client.append(buf.data(), n);
    }
    return at_client;
  }

  TlsStream& server() { return server_; }
  SSL* client() { return client_; }
  int client_fd() const { return client_fd_; }

 private:
  int server_fd_ = -1;
  int client_fd_ = -1;
  SSL_CTX* client_ctx_ = nullptr;
  SSL* client_ = nullptr;
  TlsStream server_;
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 13) % 26);
  return s;
}

TEST(TlsStream, Tls13HandsTheRecordsOverAndEchoesEverySize) {
  Pair p;
  ASSERT_TRUE(p.handshake());
  EXPECT_STREQ(p.server().version(), "TLSv1.3");
  EXPECT_TRUE(p.server().own_records());
  EXPECT_EQ(p.server().native_handle(), nullptr);  // the SSL object is gone
  for (std::size_t n : {1u, 2u, 125u, 16383u, 16384u, 16385u, 100000u, 300000u}) {
    const std::string data = pattern(n);
    EXPECT_EQ(p.echo(data), data) << n << " bytes";
  }
}

TEST(TlsStream, EachTls13SuiteWorksAfterTheHandOver) {
  for (const char* suite : {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                            "TLS_CHACHA20_POLY1305_SHA256"}) {
    Pair p({.suites = suite});
    ASSERT_TRUE(p.handshake()) << suite;
    EXPECT_STREQ(SSL_CIPHER_get_name(SSL_get_current_cipher(p.client())), suite);
    EXPECT_TRUE(p.server().own_records()) << suite;
    EXPECT_EQ(p.echo("hello " + std::string(suite)), "hello " + std::string(suite));
  }
}

// Connections one after the other: each new one's keys may live where the
// last one's did, and must still be the ones its records use.
TEST(TlsStream, ConnectionsOneAfterAnotherEachUseTheirOwnKeys) {
  for (int i = 0; i < 8; ++i) {
    Pair p;
    ASSERT_TRUE(p.handshake());
    const std::string m = std::string("connection ").append(std::to_string(i));
    EXPECT_EQ(p.echo(m), m);
  }
  // And interleaved: two at once, taking turns.
  Pair a, b;
  ASSERT_TRUE(a.handshake());
  ASSERT_TRUE(b.handshake());
  for (int i = 0; i < 20; ++i) {
    const std::string ma = std::string("a").append(std::to_string(i));
    const std::string mb = std::string("b").append(std::to_string(i));
    EXPECT_EQ(a.echo(ma), ma);
    EXPECT_EQ(b.echo(mb), mb);
  }
}

TEST(TlsStream, KeyUpdatesFromTheClientAreFollowedBothWays) {
  Pair p;
  ASSERT_TRUE(p.handshake());
  EXPECT_EQ(p.echo("before"), "before");
  // Requested: we must update ours too (and the client then reads with it).
  ASSERT_EQ(SSL_key_update(p.client(), SSL_KEY_UPDATE_REQUESTED), 1);
  EXPECT_EQ(p.echo("after a requested update"), "after a requested update");
  ASSERT_EQ(SSL_key_update(p.client(), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
  EXPECT_EQ(p.echo("after an unrequested one"), "after an unrequested one");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(SSL_key_update(p.client(), SSL_KEY_UPDATE_REQUESTED), 1);
    EXPECT_EQ(p.echo(pattern(40000)), pattern(40000));
  }
}

TEST(TlsStream, CloseNotifyEndsTheStreamCleanlyBothWays) {
  {
    Pair p;
    ASSERT_TRUE(p.handshake());
    EXPECT_EQ(p.echo("x"), "x");
    SSL_shutdown(p.client());
    char buf[64];
    std::size_t got = 0;
    bool more = true;
    EXPECT_EQ(p.server().read(buf, sizeof buf, got, more), TlsStream::Io::closed);
  }
  {
    Pair p;
    ASSERT_TRUE(p.handshake());
    EXPECT_EQ(p.echo("x"), "x");
    EXPECT_EQ(p.server().shutdown(), TlsStream::Io::done);
    char buf[64];
    std::size_t n = 0;
    EXPECT_EQ(SSL_read_ex(p.client(), buf, sizeof buf, &n), 0);
    EXPECT_EQ(SSL_get_error(p.client(), 0), SSL_ERROR_ZERO_RETURN);
  }
}

TEST(TlsStream, TheTicketsWeSendResumeTheSession) {
  SSL_SESSION* session = nullptr;
  {
    Pair p;
    ASSERT_TRUE(p.handshake());
    EXPECT_EQ(p.echo("first"), "first");  // the client reads the tickets with the echo
    session = SSL_get1_session(p.client());
    ASSERT_NE(session, nullptr);
    EXPECT_TRUE(SSL_SESSION_is_resumable(session));
    EXPECT_TRUE(SSL_SESSION_has_ticket(session));
    // A client that frees its connection without close_notify gives up the
    // session (OpenSSL's ssl_clear_bad_session): close cleanly.
    SSL_shutdown(p.client());
  }
  Pair again({.resume = session});
  ASSERT_TRUE(again.handshake());
  EXPECT_TRUE(SSL_session_reused(again.client()));
  EXPECT_TRUE(again.server().own_records());
  EXPECT_EQ(again.echo("resumed"), "resumed");
  SSL_SESSION_free(session);
}

TEST(TlsStream, Tls12StaysOnOpensslsRecordLayer) {
  Pair p({.max_version = TLS1_2_VERSION});
  ASSERT_TRUE(p.handshake());
  EXPECT_STREQ(p.server().version(), "TLSv1.2");
  EXPECT_FALSE(p.server().own_records());
  EXPECT_EQ(p.echo(pattern(50000)), pattern(50000));
}

TEST(TlsStream, ATamperedRecordFailsTheConnection) {
  Pair p;
  ASSERT_TRUE(p.handshake());
  EXPECT_EQ(p.echo("ok"), "ok");
  // A record with a flipped ciphertext byte, written past OpenSSL.
  unsigned char record[5 + 1 + 1 + 16] = {23, 3, 3, 0, 18};
  record[7] = 0x55;
  ASSERT_EQ(::write(p.client_fd(), record, sizeof record), static_cast<ssize_t>(sizeof record));
  char buf[64];
  std::size_t got = 0;
  bool more = true;
  EXPECT_EQ(p.server().read(buf, sizeof buf, got, more), TlsStream::Io::failed);
  EXPECT_EQ(got, 0u);
}

}  // namespace
}  // namespace shoal
