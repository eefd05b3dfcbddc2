#include "tls/tls13_records.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

namespace shoal {

namespace {

constexpr std::uint8_t kAlert = 21, kHandshake = 22, kApplicationData = 23;
constexpr std::uint8_t kNewSessionTicket = 4, kKeyUpdate = 24;
constexpr std::size_t kTag = 16;

const EVP_MD* digest_of(Tls13Records::Suite s) {
  return s == Tls13Records::Suite::aes256_gcm ? EVP_sha384() : EVP_sha256();
}
std::size_t key_len(Tls13Records::Suite s) { return s == Tls13Records::Suite::aes128_gcm ? 16 : 32; }

// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, for outputs no
// longer than the hash (every use here): one HMAC block.
void expand_label(const EVP_MD* md, const unsigned char* secret, std::size_t secret_len,
                  const char* label, unsigned char* out, std::size_t out_len) {
  unsigned char info[2 + 1 + 6 + 16 + 1 + 1];
  const std::size_t label_len = std::strlen(label);
  std::size_t i = 0;
  info[i++] = static_cast<unsigned char>(out_len >> 8);
  info[i++] = static_cast<unsigned char>(out_len);
  info[i++] = static_cast<unsigned char>(6 + label_len);
  std::memcpy(info + i, "tls13 ", 6);
  i += 6;
  std::memcpy(info + i, label, label_len);
  i += label_len;
  info[i++] = 0;     // context: empty
  info[i++] = 0x01;  // T(1) = HMAC(secret, info | 0x01)
  unsigned char block[EVP_MAX_MD_SIZE];
  unsigned int block_len = 0;
  if (HMAC(md, secret, static_cast<int>(secret_len), info, i, block, &block_len) == nullptr)
    throw std::bad_alloc();
  std::memcpy(out, block, out_len);
}

// EVP contexts per thread (each shard is one thread): one per suite and
// direction, set up with its cipher once, so that a record costs no cipher
// fetch (a lock and name lookups in OpenSSL 3's provider store, measured at
// ~8 % of a wss echo's server time) and a key change only its key schedule.
// `owner` is the Direction whose key the context holds.
struct AeadContext {
  EVP_CIPHER_CTX* ctx = nullptr;
  const void* owner = nullptr;
  ~AeadContext() { EVP_CIPHER_CTX_free(ctx); }
};
const char* cipher_name(Tls13Records::Suite s) {
  switch (s) {
    case Tls13Records::Suite::aes128_gcm: return "AES-128-GCM";
    case Tls13Records::Suite::aes256_gcm: return "AES-256-GCM";
    case Tls13Records::Suite::chacha20_poly1305: return "ChaCha20-Poly1305";
  }
  return "";
}
AeadContext (&contexts())[3][2] {
  thread_local AeadContext all[3][2];
  return all;
}
AeadContext& aead(Tls13Records::Suite suite, bool encrypt) {
  AeadContext& c = contexts()[static_cast<int>(suite)][encrypt ? 1 : 0];
  if (c.ctx == nullptr) {
    EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, cipher_name(suite), nullptr);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    const bool ok = cipher != nullptr && ctx != nullptr &&
                    EVP_CipherInit_ex2(ctx, cipher, nullptr, nullptr, encrypt ? 1 : 0, nullptr) == 1;
    EVP_CIPHER_free(cipher);  // the context keeps its own reference
    if (!ok) {
      EVP_CIPHER_CTX_free(ctx);
      throw std::bad_alloc();
    }
    c.ctx = ctx;
  }
  return c;
}
// Forgets `d` as the owner of any context (its key changed).
void forget(const void* d) noexcept {
  for (auto& suite : contexts())
    for (AeadContext& c : suite)
      if (c.owner == d) c.owner = nullptr;
}

void nonce_for(const unsigned char* iv, std::uint64_t seq, unsigned char* nonce) {
  std::memcpy(nonce, iv, 12);
  for (int k = 0; k < 8; ++k) nonce[11 - k] ^= static_cast<unsigned char>(seq >> (8 * k));
}

}  // namespace

bool Tls13Records::suite_of(const ssl_cipher_st* cipher, Suite& suite) noexcept {
  switch (SSL_CIPHER_get_id(cipher) & 0xffff) {
    case 0x1301: suite = Suite::aes128_gcm; return true;
    case 0x1302: suite = Suite::aes256_gcm; return true;
    case 0x1303: suite = Suite::chacha20_poly1305; return true;
    default: return false;
  }
}

Tls13Records::Tls13Records(Suite suite, const unsigned char* write_secret,
                           const unsigned char* read_secret, std::size_t secret_len,
                           std::uint64_t write_seq, std::uint64_t read_seq, Role role)
    : secret_len_(static_cast<std::uint8_t>(secret_len)), suite_(suite), role_(role) {
  std::memcpy(write_.secret, write_secret, secret_len);
  std::memcpy(read_.secret, read_secret, secret_len);
  derive(write_);
  derive(read_);
  write_.seq = write_seq;
  read_.seq = read_seq;
}

Tls13Records::~Tls13Records() {
  forget(&write_);
  forget(&read_);
}

void Tls13Records::derive(Direction& d) {
  expand_label(digest_of(suite_), d.secret, secret_len_, "key", d.key, key_len(suite_));
  expand_label(digest_of(suite_), d.secret, secret_len_, "iv", d.iv, 12);
  d.seq = 0;
  forget(&d);
}

void Tls13Records::next_secret(Direction& d) {
  unsigned char next[kMaxSecret];
  expand_label(digest_of(suite_), d.secret, secret_len_, "traffic upd", next, secret_len_);
  std::memcpy(d.secret, next, secret_len_);
  derive(d);
}

void Tls13Records::seal(std::uint8_t type, const unsigned char* p, std::size_t n, ByteBuffer& out) {
  AeadContext& a = aead(suite_, true);
  do {
    const std::size_t chunk = std::min(n, kMaxPlaintext);
    const std::size_t inner = chunk + 1;  // the content type follows the content
    const std::size_t length = inner + kTag;
    unsigned char* r = out.prepare(5 + length);
    r[0] = kApplicationData;  // every protected record looks like application data
    r[1] = 0x03;
    r[2] = 0x03;
    r[3] = static_cast<unsigned char>(length >> 8);
    r[4] = static_cast<unsigned char>(length);
    if (chunk != 0) std::memcpy(r + 5, p, chunk);
    r[5 + chunk] = type;
    unsigned char nonce[12];
    nonce_for(write_.iv, write_.seq, nonce);
    int len = 0, fin = 0;
    if (EVP_EncryptInit_ex2(a.ctx, nullptr, a.owner != &write_ ? write_.key : nullptr, nonce,
                            nullptr) != 1 ||
        EVP_EncryptUpdate(a.ctx, nullptr, &len, r, 5) != 1 ||
        EVP_EncryptUpdate(a.ctx, r + 5, &len, r + 5, static_cast<int>(inner)) != 1 ||
        EVP_EncryptFinal_ex(a.ctx, r + 5 + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(a.ctx, EVP_CTRL_AEAD_GET_TAG, kTag, r + 5 + inner) != 1) {
      a.owner = nullptr;
      throw std::bad_alloc();  // only an allocation can fail here
    }
    a.owner = &write_;
    ++write_.seq;
    out.commit(5 + length);
    p += chunk;
    n -= chunk;
  } while (n != 0);
}

Tls13Records::Opened Tls13Records::open(unsigned char* data, std::size_t n, unsigned char* plain,
                                        std::size_t room, ByteBuffer& reply) {
  Opened o;
  AeadContext& a = aead(suite_, false);
  auto fail = [&](const char* why) {
    o.status = Opened::Status::failed;
    o.why = why;
    return o;
  };
  while (n - o.consumed >= 5) {
    unsigned char* const r = data + o.consumed;
    const std::size_t length = (static_cast<std::size_t>(r[3]) << 8) | r[4];
    if (r[0] != kApplicationData) return fail("a record that is not protected");
    if (length < kTag + 1 || length > kMaxPlaintext + 256) return fail("record length out of range");
    if (n - o.consumed < 5 + length) break;  // not all here yet
    const std::size_t inner = length - kTag;
    if (inner - 1 > room - o.plain) {  // its content may not fit: left for the next call
      o.status = Opened::Status::room;
      return o;
    }
    unsigned char nonce[12];
    nonce_for(read_.iv, read_.seq, nonce);
    int len = 0, fin = 0;
    if (EVP_DecryptInit_ex2(a.ctx, nullptr, a.owner != &read_ ? read_.key : nullptr, nonce,
                            nullptr) != 1 ||
        EVP_DecryptUpdate(a.ctx, nullptr, &len, r, 5) != 1 ||
        EVP_DecryptUpdate(a.ctx, r + 5, &len, r + 5, static_cast<int>(inner)) != 1 ||
        EVP_CIPHER_CTX_ctrl(a.ctx, EVP_CTRL_AEAD_SET_TAG, kTag, r + 5 + inner) != 1 ||
        EVP_DecryptFinal_ex(a.ctx, r + 5 + len, &fin) != 1) {
      a.owner = nullptr;
      return fail("bad record MAC");
    }
    a.owner = &read_;
    ++read_.seq;
    o.consumed += 5 + length;
    // The content type is the last non-zero byte; zeros after it are padding.
    std::size_t end = inner;
    while (end > 0 && r[5 + end - 1] == 0) --end;
    if (end == 0) return fail("record without a content type");
    const std::uint8_t type = r[5 + end - 1];
    const unsigned char* content = r + 5;
    const std::size_t content_len = end - 1;
    switch (type) {
      case kApplicationData:
        if (content_len != 0) std::memcpy(plain + o.plain, content, content_len);
        o.plain += content_len;
        break;
      case kAlert:
        if (content_len != 2) return fail("malformed alert");
        if (content[1] == 0) {  // close_notify
          o.status = Opened::Status::close_notify;
          return o;
        }
        return fail("alert from the peer");
      case kHandshake: {
        // A client skips the server's session tickets (it does not resume),
        // as many as one record holds; a ticket split over records is not
        // worth the code: OpenSSL writes each in one.
        if (role_ == Role::client && content_len >= 4 && content[0] == kNewSessionTicket) {
          std::size_t at = 0;
          while (at + 4 <= content_len && content[at] == kNewSessionTicket) {
            const std::size_t body = (static_cast<std::size_t>(content[at + 1]) << 16) |
                                     (static_cast<std::size_t>(content[at + 2]) << 8) |
                                     content[at + 3];
            if (body > content_len - at - 4) break;
            at += 4 + body;
          }
          if (at != content_len) return fail("malformed or split NewSessionTicket");
          break;
        }
        // Otherwise only KeyUpdate (a message split over records, or several
        // in one, is not worth the code: no peer sends that).
        if (content_len != 5 || content[0] != kKeyUpdate || content[1] != 0 || content[2] != 0 ||
            content[3] != 1 || content[4] > 1)
          return fail("unexpected post-handshake message");
        next_secret(read_);
        if (content[4] == 1) {  // update_requested: ours, then our key moves on
          const unsigned char ours[5] = {kKeyUpdate, 0, 0, 1, 0};
          seal(kHandshake, ours, sizeof ours, reply);
          next_secret(write_);
        }
        break;
      }
      default:
        return fail("unexpected record type");
    }
  }
  return o;
}

}  // namespace shoal
