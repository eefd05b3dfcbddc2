// permessage-deflate (RFC 7692): negotiation and zlib streams. See the header.
#include "protocol/permessage_deflate.hpp"

#define ZLIB_CONST  // next_in is const: we never let zlib write to the input
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace shoal {

// --- Negotiation -------------------------------------------------------------

namespace {

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

struct Param {
  std::string_view name;
  std::optional<std::string> value;  // unquoted
};

// One header value, extension by extension (RFC 6455 §9.1 in RFC 7230's
// #list: empty elements allowed, optional whitespace around separators).
class ExtensionReader {
 public:
  explicit ExtensionReader(std::string_view s) noexcept : s_(s) {}

  // The next extension; false at the end. A malformed one comes back with
  // `ok` false, its rest skipped up to the next comma outside quotes.
  bool next(std::string_view& name, std::vector<Param>& params, bool& ok) {
    while (eat(',')) {
    }
    if (i_ == s_.size()) return false;
    params.clear();
    ok = element(name, params);
    if (!ok) skip_element();
    return true;
  }

 private:
  // Whitespace, then `c` and the whitespace after it when `c` is there.
  bool eat(char c) {
    const auto ows = [this] {
      while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
    };
    ows();
    if (i_ == s_.size() || s_[i_] != c) return false;
    ++i_;
    ows();
    return true;
  }
  std::string_view token() {
    const std::size_t from = i_;
    while (i_ < s_.size() && is_tchar(s_[i_])) ++i_;
    return s_.substr(from, i_ - from);
  }
  bool quoted(std::string& out) {
    for (++i_; i_ < s_.size();) {
      char c = s_[i_++];
      if (c == '"') return true;
      if (c == '\\') {
        if (i_ == s_.size()) return false;
        c = s_[i_++];
      }
      out += c;
    }
    return false;
  }
  bool element(std::string_view& name, std::vector<Param>& params) {
    if ((name = token()).empty()) return false;
    while (eat(';')) {
      Param& p = params.emplace_back();
      if ((p.name = token()).empty()) return false;
      if (!eat('=')) continue;
      p.value.emplace();
      if (i_ < s_.size() && s_[i_] == '"') {
        if (!quoted(*p.value)) return false;
      } else if ((*p.value = token()).empty()) {
        return false;
      }
    }
    return i_ == s_.size() || s_[i_] == ',';
  }
  void skip_element() {
    for (bool quoted = false; i_ < s_.size() && (quoted || s_[i_] != ','); ++i_) {
      if (quoted && s_[i_] == '\\') {
        ++i_;
      } else if (s_[i_] == '"') {
        quoted = !quoted;
      }
    }
    i_ = std::min(i_, s_.size());
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

// "8" to "15" without leading zeroes (RFC 7692 §7.1.2.1); 0 for anything else.
// A quoted value is the same value unquoted (RFC 6455 §9.1).
int window_bits(std::string_view v) {
  if (v.size() == 1 && (v[0] == '8' || v[0] == '9')) return v[0] - '0';
  if (v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + (v[1] - '0');
  return 0;
}

std::optional<DeflateAgreement> accept(const std::vector<Param>& params,
                                       const WebSocketConfig::Deflate& config) {
  static constexpr std::array<std::string_view, 4> names = {
      "server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
      "client_max_window_bits"};
  std::array<bool, 4> seen{};
  DeflateAgreement a;
  int server_bits = 0;  // 0: not offered
  int client_bits = 0;  // 0: not offered, -1: offered without a value
  for (const Param& p : params) {
    const auto at = std::find_if(names.begin(), names.end(),
                                 [&](std::string_view n) { return iequals(p.name, n); });
    if (at == names.end()) return std::nullopt;
    const auto which = static_cast<std::size_t>(at - names.begin());
    if (seen[which]) return std::nullopt;
    seen[which] = true;
    if (which < 2) {
      if (p.value) return std::nullopt;
      (which == 0 ? a.server_no_context_takeover : a.client_no_context_takeover) = true;
    } else {
      const int bits = p.value ? window_bits(*p.value) : (which == 3 ? -1 : 0);
      if (bits == 0) return std::nullopt;
      (which == 2 ? server_bits : client_bits) = bits;
    }
  }

  const int our_server = std::clamp(config.server_max_window_bits, 9, 15);
  const int our_client = std::clamp(config.client_max_window_bits, 9, 15);
  // We never ask for no_context_takeover ourselves (it costs compression);
  // what the client asks for is honoured, and its own promise echoed so that
  // our inflater can be a borrowed one.
  a.response = "permessage-deflate";
  if (a.server_no_context_takeover) a.response += "; server_no_context_takeover";
  if (a.client_no_context_takeover) a.response += "; client_no_context_takeover";

  // Offered, the server's window must be named in the response (§7.1.2.1);
  // not offered, we name it only when it is less than the default 15. zlib
  // cannot deflate with 8 bits (it would use 9, past the client's window).
  a.server_max_window_bits = server_bits != 0 ? std::min(server_bits, our_server) : our_server;
  if (a.server_max_window_bits < 9) return std::nullopt;
  if (server_bits != 0 || a.server_max_window_bits < 15) {
    a.response += "; server_max_window_bits=" + std::to_string(a.server_max_window_bits);
  }

  // Not offered: the client cannot limit its window, so we take 15 rather
  // than decline (Beast declines when configured below 15): our inflater's
  // memory is the price of compression for such clients. Without a value:
  // ours, named only below 15, which is the default and so changes nothing
  // (the same header Beast sent). With a value: at most the client's.
  if (client_bits == 0) {
    a.client_max_window_bits = 15;
  } else if (client_bits < 0) {
    a.client_max_window_bits = our_client;
    if (our_client < 15) a.response += "; client_max_window_bits=" + std::to_string(our_client);
  } else {
    a.client_max_window_bits = std::min(client_bits, our_client);
    a.response += "; client_max_window_bits=" + std::to_string(a.client_max_window_bits);
  }
  return a;
}

}  // namespace

std::optional<DeflateAgreement> negotiate_deflate(const std::vector<std::string_view>& offers,
                                                  const WebSocketConfig::Deflate& config) {
  if (!config.enabled) return std::nullopt;
  std::vector<Param> params;
  for (std::string_view value : offers) {
    ExtensionReader reader(value);
    std::string_view name;
    bool ok = false;
    while (reader.next(name, params, ok)) {
      if (!ok || !iequals(name, "permessage-deflate")) continue;
      if (auto a = accept(params, config)) return a;
    }
  }
  return std::nullopt;
}

// --- zlib streams --------------------------------------------------------------

// Level 6 and memLevel 4 (Beast's defaults). memLevel 4 keeps the hash table
// and pending buffer at 4 KiB each instead of 64 KiB each (memLevel 8): a
// deflater of 142 KiB instead of 262 KiB, for 0.5-1% bigger output on JSON
// and 5 bytes per KiB on incompressible data (its blocks are smaller).
// Level 1 made 18% bigger output on the same JSON.
constexpr int kLevel = 6;
constexpr int kMemLevel = 4;
constexpr std::size_t kMaxChunk = std::size_t{1} << 30;  // fits zlib's uInt counters
constexpr std::array<unsigned char, 4> kTail = {0x00, 0x00, 0xff, 0xff};

namespace detail {

// A z_stream that counts what zlib allocates for it. Never moves: zlib's
// state points back at its z_stream.
struct ZStream {
  z_stream z{};
  std::size_t bytes = 0;  // live zlib allocations
  bool deflater;
  bool live = false;

  explicit ZStream(bool d) noexcept : deflater(d) {
    z.zalloc = &allocate;
    z.zfree = &release;
    z.opaque = this;
  }
  ~ZStream() {
    if (live) deflater ? deflateEnd(&z) : inflateEnd(&z);
  }
  ZStream(const ZStream&) = delete;
  ZStream& operator=(const ZStream&) = delete;

  // Each block carries its size in front, so that release() can count it.
  static constexpr std::size_t kHeader = alignof(std::max_align_t);
  static void* allocate(void* opaque, unsigned items, unsigned size) {
    const std::size_t n = std::size_t{items} * size;
    auto* p = static_cast<unsigned char*>(std::malloc(n + kHeader));
    if (p == nullptr) return nullptr;
    std::memcpy(p, &n, sizeof n);
    static_cast<ZStream*>(opaque)->bytes += n;
    return p + kHeader;
  }
  static void release(void* opaque, void* address) {
    unsigned char* p = static_cast<unsigned char*>(address) - kHeader;
    std::size_t n = 0;
    std::memcpy(&n, p, sizeof n);
    static_cast<ZStream*>(opaque)->bytes -= n;
    std::free(p);
  }
};

}  // namespace detail

namespace {

using detail::ZStream;

std::unique_ptr<ZStream> make_stream(bool deflater, int bits) {
  auto s = std::make_unique<ZStream>(deflater);
  const int r = deflater
                    ? deflateInit2(&s->z, kLevel, Z_DEFLATED, -bits, kMemLevel, Z_DEFAULT_STRATEGY)
                    : inflateInit2(&s->z, -bits);
  // Our parameters are valid, so the one failure is memory.
  if (r != Z_OK) throw std::bad_alloc();
  s->live = true;
  return s;
}

std::size_t held(const std::unique_ptr<ZStream>& s) { return s ? sizeof(ZStream) + s->bytes : 0; }

// Each shard is one thread, and a call borrows a stream only while it runs,
// so one stream per window size and direction serves every connection of the
// shard that resets its context after each message. A stream is reset when
// given back, keeping its memory: no allocation per message.
struct Pool {
  std::array<std::unique_ptr<ZStream>, 7> deflaters;  // by window bits 9..15
  std::array<std::unique_ptr<ZStream>, 7> inflaters;
};
Pool& pool() {
  thread_local Pool p;
  return p;
}

// The stream of one call. A borrowed one is reset when given back; one that
// failed (an exception, or data that left its context unusable) is dropped.
// Dropping a connection's own stream is always safe: a fresh deflater
// references nothing the client lacks, and a fresh inflater rejects a
// reference to a window it never saw (zlib: "invalid distance too far back").
struct Lease {
  std::unique_ptr<ZStream>& slot;
  bool pooled;
  bool keep = false;
  ~Lease() {
    if (!keep) {
      slot.reset();
    } else if (pooled) {
      slot->deflater ? deflateReset(&slot->z) : inflateReset(&slot->z);
    }
  }
};

// A message as stored blocks: what we send if zlib ever fails to deflate
// (it cannot with our parameters unless memory is corrupt). Valid whatever
// the client's window holds; the message starts on a byte boundary since the
// previous one ended with a sync flush.
void store(const unsigned char* in, std::size_t n, ByteBuffer& out) {
  do {
    const std::size_t len = std::min<std::size_t>(n, 0xffff);
    const std::array<unsigned char, 5> head = {
        0x00, static_cast<unsigned char>(len), static_cast<unsigned char>(len >> 8),
        static_cast<unsigned char>(~len), static_cast<unsigned char>(~len >> 8)};
    out.append(head.data(), head.size());
    out.append(in, len);
    in += len;
    n -= len;
  } while (n > 0);
}

// Gives zlib the next piece of the input once it has used the last one.
bool feed(z_stream& z, const unsigned char*& in, std::size_t& n) {
  if (z.avail_in != 0 || n == 0) return false;
  const std::size_t chunk = std::min(n, kMaxChunk);
  z.next_in = in;
  z.avail_in = static_cast<uInt>(chunk);
  in += chunk;
  n -= chunk;
  return true;
}

MessageCompression::Inflate run_inflate(z_stream& z, const unsigned char* in, std::size_t n,
                                        ByteBuffer& out, std::uint64_t limit) {
  using Inflate = MessageCompression::Inflate;
  std::uint64_t room = limit == 0 ? UINT64_MAX : limit;  // bytes we may still produce
  std::size_t step = std::max<std::size_t>(2 * std::min(n, kMaxChunk), 1024);
  bool tail = false;  // kTail given to zlib
  unsigned char probe = 0;
  z.avail_in = 0;
  for (;;) {
    if (!feed(z, in, n) && z.avail_in == 0 && !tail) {
      z.next_in = kTail.data();  // RFC 7692 §7.2.2
      z.avail_in = kTail.size();
      tail = true;
    }
    // At the limit, one byte of room outside `out` tells whether more would
    // come: nothing past the limit is ever kept.
    const bool probing = room == 0;
    std::size_t give = 1;
    if (probing) {
      z.next_out = &probe;
    } else {
      give = std::max(step, out.capacity() - out.size());
      give = static_cast<std::size_t>(std::min<std::uint64_t>({give, room, kMaxChunk}));
      z.next_out = out.prepare(give);
    }
    z.avail_out = static_cast<uInt>(give);
    const int r = ::inflate(&z, Z_SYNC_FLUSH);
    const std::size_t made = give - z.avail_out;
    if (probing && made > 0) return Inflate::too_big;
    if (!probing) {
      out.commit(made);
      room -= made;
      if (z.avail_out == 0) step = std::min(step * 2, kMaxChunk);
    }
    if (r == Z_STREAM_END) {
      // The client ended its deflate stream with a final block (§7.2.3.1 lets
      // it): only our tail may follow, and its next message starts a new one.
      if (n > 0 || (!tail && z.avail_in > 0)) return Inflate::invalid;
      inflateReset(&z);
      return Inflate::ok;
    }
    if (r == Z_MEM_ERROR) throw std::bad_alloc();
    if (r != Z_OK && r != Z_BUF_ERROR) return Inflate::invalid;
    if (tail && z.avail_in == 0 && z.avail_out > 0) {
      // All read, all written: a whole message ends where the tail's empty
      // stored block ends, at a block boundary; a truncated one does not.
      return (z.data_type & 128) != 0 ? Inflate::ok : Inflate::invalid;
    }
    if (r == Z_BUF_ERROR) return Inflate::invalid;  // no progress with input and room
  }
}

}  // namespace

MessageDeflate::MessageDeflate(const DeflateAgreement& agreement) noexcept
    : deflate_bits_(static_cast<std::uint8_t>(std::clamp(agreement.server_max_window_bits, 9, 15))),
      // An agreed 8 inflates with 9: the same streams, 256 bytes more, and
      // zlib before 1.2.9 deflated with 9 when asked for 8.
      inflate_bits_(static_cast<std::uint8_t>(std::clamp(agreement.client_max_window_bits, 9, 15))),
      deflate_pooled_(agreement.server_no_context_takeover),
      inflate_pooled_(agreement.client_no_context_takeover) {}

MessageDeflate::~MessageDeflate() = default;

MessageCompression::Inflate MessageDeflate::inflate(const unsigned char* in, std::size_t n,
                                                    ByteBuffer& out, std::uint64_t limit) {
  // An empty payload is an empty message. RFC 7692 §7.2.3.6 sends 0x00, but
  // plain zlib makes no output at all for an empty message after a flush,
  // and this leaves the context as it was.
  if (n == 0) return Inflate::ok;
  std::unique_ptr<ZStream>& slot =
      inflate_pooled_ ? pool().inflaters[inflate_bits_ - 9u] : inflater_;
  if (!slot) slot = make_stream(false, inflate_bits_);
  Lease use{slot, inflate_pooled_};
  const Inflate result = run_inflate(slot->z, in, n, out, limit);
  // A failed message leaves an owned stream mid-message: dropped (see Lease).
  use.keep = result == Inflate::ok || inflate_pooled_;
  return result;
}

void MessageDeflate::deflate(const unsigned char* in, std::size_t n, ByteBuffer& out) {
  // An empty message is one 0x00 (§7.2.3.6): an empty stored block's header,
  // whose lengths are the receiver's 00 00 ff ff. Our context is untouched.
  if (n == 0) {
    out.append(kTail.data(), 1);
    return;
  }
  std::unique_ptr<ZStream>& slot =
      deflate_pooled_ ? pool().deflaters[deflate_bits_ - 9u] : deflater_;
  if (!slot) slot = make_stream(true, deflate_bits_);
  Lease use{slot, deflate_pooled_};
  z_stream& z = slot->z;
  const std::size_t start = out.size();
  // The first room fits the whole output of a small message; a big one grows
  // `out` by doubling rather than reserving its incompressible bound.
  std::size_t step = std::min<std::size_t>(deflateBound(&z, n) + 16, 64 * 1024);
  const unsigned char* const begin = in;
  const std::size_t size = n;
  z.avail_in = 0;
  for (;;) {
    feed(z, in, n);
    const int flush = n == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    // Always more than 6 bytes of room, or a sync flush may repeat its marker.
    const std::size_t give = std::min(std::max(step, out.capacity() - out.size()), kMaxChunk);
    z.next_out = out.prepare(give);
    z.avail_out = static_cast<uInt>(give);
    const int r = ::deflate(&z, flush);
    out.commit(give - z.avail_out);
    // Z_BUF_ERROR: nothing left to flush (the last call filled the room exactly).
    if (r == Z_BUF_ERROR) break;
    if (r != Z_OK) {
      out.resize(start);
      store(begin, size, out);
      return;  // the stream is dropped
    }
    if (flush == Z_SYNC_FLUSH && z.avail_out != 0) break;
    step = 64 * 1024;
  }
  if (out.size() - start >= kTail.size() &&
      std::memcmp(out.data() + out.size() - kTail.size(), kTail.data(), kTail.size()) == 0) {
    out.resize(out.size() - kTail.size());  // §7.2.1
  }
  use.keep = true;
}

std::size_t MessageDeflate::held_bytes() const noexcept {
  return held(deflater_) + held(inflater_);
}

std::size_t MessageDeflate::pooled_bytes() noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < pool().deflaters.size(); ++i) {
    n += held(pool().deflaters[i]) + held(pool().inflaters[i]);
  }
  return n;
}

}  // namespace shoal
