// permessage-deflate (protocol/permessage_deflate.hpp): the negotiation a
// client sees in its upgrade response, messages that come back as they went,
// interop with plain zlib (what browsers and other libraries use), the size
// limit against zip bombs, and the memory an idle connection holds.
#include "protocol/permessage_deflate.hpp"

#define ZLIB_CONST
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace shoal {
namespace {

using Bytes = std::vector<unsigned char>;
using Inflate = MessageCompression::Inflate;

WebSocketConfig::Deflate enabled(int server_bits = 15, int client_bits = 15) {
  return {.enabled = true,
          .server_max_window_bits = server_bits,
          .client_max_window_bits = client_bits};
}

std::optional<DeflateAgreement> negotiate(std::vector<std::string_view> offers,
                                          const WebSocketConfig::Deflate& config = enabled()) {
  return negotiate_deflate(offers, config);
}

std::string response(std::vector<std::string_view> offers,
                     const WebSocketConfig::Deflate& config = enabled()) {
  auto a = negotiate_deflate(offers, config);
  return a ? a->response : "(declined)";
}

// --- Negotiation ---------------------------------------------------------------

TEST(DeflateNegotiation, PlainOfferGetsDefaults) {
  auto a = negotiate({"permessage-deflate"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response, "permessage-deflate");
  EXPECT_EQ(a->server_max_window_bits, 15);
  EXPECT_EQ(a->client_max_window_bits, 15);
  EXPECT_FALSE(a->server_no_context_takeover);
  EXPECT_FALSE(a->client_no_context_takeover);
}

TEST(DeflateNegotiation, DeclinedWhenDisabledOrNotOffered) {
  EXPECT_FALSE(negotiate({"permessage-deflate"}, WebSocketConfig::Deflate{}));
  EXPECT_FALSE(negotiate({}));
  EXPECT_FALSE(negotiate({""}));
  EXPECT_FALSE(negotiate({"x-webkit-deflate-frame", "foo; bar=1"}));
  EXPECT_FALSE(negotiate({"permessage-deflate-x"}));
}

TEST(DeflateNegotiation, ClientMaxWindowBitsWithoutValueLetsUsChoose) {
  // Firefox and Chrome offer this way.
  EXPECT_EQ(response({"permessage-deflate; client_max_window_bits"}), "permessage-deflate");
  auto a = negotiate({"permessage-deflate; client_max_window_bits"}, enabled(15, 10));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response, "permessage-deflate; client_max_window_bits=10");
  EXPECT_EQ(a->client_max_window_bits, 10);
}

TEST(DeflateNegotiation, ClientMaxWindowBitsWithValueIsAnUpperBound) {
  auto a = negotiate({"permessage-deflate; client_max_window_bits=12"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response, "permessage-deflate; client_max_window_bits=12");
  EXPECT_EQ(a->client_max_window_bits, 12);
  EXPECT_EQ(response({"permessage-deflate; client_max_window_bits=12"}, enabled(15, 10)),
            "permessage-deflate; client_max_window_bits=10");
  EXPECT_EQ(response({"permessage-deflate; client_max_window_bits=8"}, enabled(15, 10)),
            "permessage-deflate; client_max_window_bits=8");
}

TEST(DeflateNegotiation, WithoutClientMaxWindowBitsWeInflateWith15AndSayNothing) {
  auto a = negotiate({"permessage-deflate"}, enabled(15, 9));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response, "permessage-deflate");
  EXPECT_EQ(a->client_max_window_bits, 15);
}

TEST(DeflateNegotiation, ServerMaxWindowBitsLimitsOurWindow) {
  auto a = negotiate({"permessage-deflate; server_max_window_bits=12"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response, "permessage-deflate; server_max_window_bits=12");
  EXPECT_EQ(a->server_max_window_bits, 12);
  // The config's limit applies too; an offered value is always answered.
  EXPECT_EQ(response({"permessage-deflate; server_max_window_bits=12"}, enabled(10, 15)),
            "permessage-deflate; server_max_window_bits=10");
  EXPECT_EQ(response({"permessage-deflate; server_max_window_bits=15"}),
            "permessage-deflate; server_max_window_bits=15");
  // Not offered: a config below 15 is announced.
  a = negotiate({"permessage-deflate"}, enabled(11, 15));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response, "permessage-deflate; server_max_window_bits=11");
  EXPECT_EQ(a->server_max_window_bits, 11);
  EXPECT_EQ(response({"permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"}),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10");
}

TEST(DeflateNegotiation, ServerMaxWindowBits8IsDeclined) {
  EXPECT_FALSE(negotiate({"permessage-deflate; server_max_window_bits=8"}));
  EXPECT_FALSE(negotiate({"permessage-deflate; server_max_window_bits=8"}, enabled(9, 15)));
  // ... and the next offer is taken.
  EXPECT_EQ(response({"permessage-deflate; server_max_window_bits=8, permessage-deflate; "
                      "server_max_window_bits=9"}),
            "permessage-deflate; server_max_window_bits=9");
}

TEST(DeflateNegotiation, NoContextTakeoverBothWays) {
  auto a =
      negotiate({"permessage-deflate; server_no_context_takeover; client_no_context_takeover"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  EXPECT_TRUE(a->server_no_context_takeover);
  EXPECT_TRUE(a->client_no_context_takeover);
  a = negotiate({"permessage-deflate; client_no_context_takeover"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response, "permessage-deflate; client_no_context_takeover");
  EXPECT_FALSE(a->server_no_context_takeover);
  EXPECT_TRUE(a->client_no_context_takeover);
}

TEST(DeflateNegotiation, QuotedValues) {
  EXPECT_EQ(response({"permessage-deflate; server_max_window_bits=\"10\""}),
            "permessage-deflate; server_max_window_bits=10");
  EXPECT_EQ(response({"permessage-deflate; client_max_window_bits=\"1\\1\""}),
            "permessage-deflate; client_max_window_bits=11");
  EXPECT_FALSE(negotiate({"permessage-deflate; server_max_window_bits=\"10"}));  // unterminated
  EXPECT_FALSE(negotiate({"permessage-deflate; server_max_window_bits=\"1 0\""}));
}

TEST(DeflateNegotiation, BadValuesAreDeclined) {
  for (const char* offer : {
           "permessage-deflate; server_max_window_bits",  // needs a value
           "permessage-deflate; server_max_window_bits=16",
           "permessage-deflate; server_max_window_bits=7",
           "permessage-deflate; server_max_window_bits=010",
           "permessage-deflate; server_max_window_bits=abc",
           "permessage-deflate; server_max_window_bits=",
           "permessage-deflate; client_max_window_bits=16",
           "permessage-deflate; client_max_window_bits=09",
           "permessage-deflate; server_no_context_takeover=1",
           "permessage-deflate; client_no_context_takeover=\"\"",
           "permessage-deflate;",
           "permessage-deflate; ; server_no_context_takeover",
           "permessage-deflate server_no_context_takeover",
       }) {
    EXPECT_FALSE(negotiate({offer})) << offer;
  }
}

TEST(DeflateNegotiation, UnknownAndDuplicatedParametersAreDeclined) {
  for (const char* offer : {
           "permessage-deflate; foo",
           "permessage-deflate; client_max_window_bits; x-extra=1",
           "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
           "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
           "permessage-deflate; server_max_window_bits=10; SERVER_MAX_WINDOW_BITS=10",
       }) {
    EXPECT_FALSE(negotiate({offer})) << offer;
  }
}

TEST(DeflateNegotiation, FirstAcceptableOfferWins) {
  // Within one header, across headers, with other extensions in between.
  EXPECT_EQ(response({"permessage-deflate; foo, permessage-deflate; client_max_window_bits=9"}),
            "permessage-deflate; client_max_window_bits=9");
  EXPECT_EQ(response({"x-webkit-deflate-frame", "permessage-deflate; bar",
                      "permessage-deflate; server_no_context_takeover", "permessage-deflate"}),
            "permessage-deflate; server_no_context_takeover");
  // A comma inside a quoted string does not start an offer.
  EXPECT_EQ(response({"foo; bar=\"a, permessage-deflate; server_no_context_takeover\", "
                      "permessage-deflate"}),
            "permessage-deflate");
  // A malformed offer does not hide the next one.
  EXPECT_EQ(
      response({"permessage-deflate; x=\"unterminated, permessage-deflate", "permessage-deflate"}),
      "permessage-deflate");
}

TEST(DeflateNegotiation, NamesAreCaseInsensitive) {
  auto a = negotiate({"PerMessage-Deflate; Server_Max_Window_Bits=10; CLIENT_NO_CONTEXT_TAKEOVER"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response,
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10");
  EXPECT_EQ(a->server_max_window_bits, 10);
}

TEST(DeflateNegotiation, WhitespaceAndEmptyListElements) {
  EXPECT_EQ(response({" ,\t permessage-deflate ;\tclient_max_window_bits = 9 ;  "
                      "server_no_context_takeover , ,"}),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=9");
  EXPECT_EQ(response({"permessage-deflate;client_max_window_bits;server_max_window_bits=13"}),
            "permessage-deflate; server_max_window_bits=13");
}

// --- Messages --------------------------------------------------------------------

Bytes random_bytes(std::size_t n, unsigned seed = 1) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& c : b) c = static_cast<unsigned char>(rng());
  return b;
}

Bytes text_bytes(std::size_t n) {
  static const std::string line =
      "{\"user\":4711,\"event\":\"price\",\"symbol\":\"SHOAL\",\"bid\":101.25,\"ask\":101.5}\n";
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = static_cast<unsigned char>(line[(i * 7 / 5) % line.size()]);
  return b;
}

Bytes bytes(const ByteBuffer& b) { return Bytes(b.data(), b.data() + b.size()); }

DeflateAgreement agreement(int bits, bool no_context_takeover) {
  return {.server_max_window_bits = bits,
          .client_max_window_bits = bits,
          .server_no_context_takeover = no_context_takeover,
          .client_no_context_takeover = no_context_takeover};
}

Bytes deflated(MessageDeflate& d, const Bytes& m) {
  ByteBuffer out;
  d.deflate(m.data(), m.size(), out);
  return bytes(out);
}

Bytes inflated(MessageDeflate& d, const Bytes& payload, std::uint64_t limit = 0) {
  ByteBuffer out;
  EXPECT_EQ(d.inflate(payload.data(), payload.size(), out, limit), Inflate::ok);
  return bytes(out);
}

struct RoundTrip : testing::TestWithParam<bool> {};  // no_context_takeover

TEST_P(RoundTrip, MessagesComeBackAsTheyWent) {
  // Two ends of one connection: what one deflates, the other inflates.
  MessageDeflate sender(agreement(15, GetParam()));
  MessageDeflate receiver(agreement(15, GetParam()));
  for (std::size_t size : {0u, 1u, 125u, 65536u, 1u << 20}) {
    const Bytes text = text_bytes(size);
    const Bytes binary = random_bytes(size, static_cast<unsigned>(size));
    const Bytes text_payload = deflated(sender, text);
    EXPECT_EQ(inflated(receiver, text_payload), text) << size;
    if (size >= 65536) {
      EXPECT_LT(text_payload.size(), size / 4) << size;
    }
    const Bytes binary_payload = deflated(sender, binary);
    EXPECT_EQ(inflated(receiver, binary_payload), binary) << size;
    // Incompressible: stored blocks, at most 5 bytes per KiB more.
    EXPECT_LE(binary_payload.size(), size + size / 200 + 8) << size;
  }
}

TEST_P(RoundTrip, AppendsToWhatTheBufferHolds) {
  MessageDeflate sender(agreement(12, GetParam()));
  MessageDeflate receiver(agreement(12, GetParam()));
  const Bytes m = text_bytes(3000);
  ByteBuffer wire;
  wire.append("hdr", 3);
  sender.deflate(m.data(), m.size(), wire);
  ByteBuffer out;
  out.append("x", 1);
  ASSERT_EQ(receiver.inflate(wire.data() + 3, wire.size() - 3, out, 0), Inflate::ok);
  EXPECT_EQ(std::memcmp(wire.data(), "hdr", 3), 0);
  ASSERT_EQ(out.size(), m.size() + 1);
  EXPECT_EQ(out.data()[0], 'x');
  EXPECT_EQ(Bytes(out.data() + 1, out.data() + out.size()), m);
}

TEST_P(RoundTrip, RepeatedMessageUsesTheContextOnlyWithTakeover) {
  MessageDeflate sender(agreement(15, GetParam()));
  MessageDeflate receiver(agreement(15, GetParam()));
  const Bytes m = random_bytes(1000, 7);  // compresses only against its earlier copy
  std::vector<std::size_t> sizes;
  for (int i = 0; i < 3; ++i) {
    const Bytes payload = deflated(sender, m);
    sizes.push_back(payload.size());
    EXPECT_EQ(inflated(receiver, payload), m);
  }
  if (GetParam()) {
    EXPECT_EQ(sizes[1], sizes[0]);
    EXPECT_EQ(sizes[2], sizes[0]);
  } else {
    EXPECT_LT(sizes[1], sizes[0] / 10) << sizes[0] << " then " << sizes[1];
    EXPECT_LT(sizes[2], sizes[0] / 10);
  }
}

std::string takeover_name(const testing::TestParamInfo<bool>& param) {
  return param.param ? "no_context_takeover" : "context_takeover";
}
INSTANTIATE_TEST_SUITE_P(ContextTakeover, RoundTrip, testing::Values(false, true), takeover_name);

// --- Interop with plain zlib ---------------------------------------------------------

constexpr unsigned char kTail[4] = {0x00, 0x00, 0xff, 0xff};

// A peer on plain zlib, as RFC 7692 describes it.
class ZlibPeer {
 public:
  explicit ZlibPeer(int bits) {
    EXPECT_EQ(deflateInit2(&d_, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    EXPECT_EQ(inflateInit2(&i_, -bits), Z_OK);
  }
  ~ZlibPeer() {
    deflateEnd(&d_);
    inflateEnd(&i_);
  }
  ZlibPeer(const ZlibPeer&) = delete;
  ZlibPeer& operator=(const ZlibPeer&) = delete;

  // Sync flush, tail removed; or a final block with `finish`.
  Bytes deflate(const Bytes& m, bool finish = false) {
    Bytes out(m.size() + 1024);
    d_.next_in = m.data();
    d_.avail_in = static_cast<uInt>(m.size());
    d_.next_out = out.data();
    d_.avail_out = static_cast<uInt>(out.size());
    const int r = ::deflate(&d_, finish ? Z_FINISH : Z_SYNC_FLUSH);
    out.resize(out.size() - d_.avail_out);
    // Nothing to flush (an empty message right after a flush): no output.
    if (r == Z_BUF_ERROR && m.empty()) return out;
    EXPECT_EQ(r, finish ? Z_STREAM_END : Z_OK);
    if (!finish) {
      EXPECT_GE(out.size(), 4u);
      EXPECT_EQ(std::memcmp(out.data() + out.size() - 4, kTail, 4), 0);
      out.resize(out.size() - 4);
    }
    return out;
  }
  Bytes inflate(Bytes payload, std::size_t expected) {
    payload.insert(payload.end(), kTail, kTail + 4);
    Bytes out(expected + 1);
    i_.next_in = payload.data();
    i_.avail_in = static_cast<uInt>(payload.size());
    i_.next_out = out.data();
    i_.avail_out = static_cast<uInt>(out.size());
    EXPECT_EQ(::inflate(&i_, Z_SYNC_FLUSH), Z_OK);
    EXPECT_EQ(i_.avail_in, 0u);
    out.resize(out.size() - i_.avail_out);
    return out;
  }

 private:
  z_stream d_{};
  z_stream i_{};
};

struct Interop : testing::TestWithParam<int> {};  // window bits

TEST_P(Interop, OurMessagesInflateWithPlainZlib) {
  for (bool nct : {false, true}) {
    MessageDeflate ours(agreement(GetParam(), nct));
    ZlibPeer peer(GetParam());
    const Bytes text = text_bytes(100000);
    const Bytes noise = random_bytes(70000, 3);
    for (const Bytes* m : {&text, &noise, &text, &text}) {
      EXPECT_EQ(peer.inflate(deflated(ours, *m), m->size()), *m) << "nct " << nct;
    }
  }
}

TEST_P(Interop, PlainZlibMessagesInflateWithOurs) {
  MessageDeflate ours(agreement(GetParam(), false));
  ZlibPeer peer(GetParam());
  const Bytes text = text_bytes(100000);
  const Bytes noise = random_bytes(70000, 4);
  for (const Bytes* m : {&text, &noise, &text, &text}) {
    EXPECT_EQ(inflated(ours, peer.deflate(*m)), *m);
  }
  // A peer that resets its context after each message.
  MessageDeflate ours_nct(agreement(GetParam(), true));
  for (int i = 0; i < 3; ++i) {
    ZlibPeer fresh(GetParam());
    EXPECT_EQ(inflated(ours_nct, fresh.deflate(text)), text);
  }
}

INSTANTIATE_TEST_SUITE_P(WindowBits, Interop, testing::Range(9, 16));

TEST(DeflateInterop, MessageEndingInAFinalBlock) {
  // RFC 7692 §7.2.3.1: a sender may end a message with BFINAL set.
  MessageDeflate ours(agreement(15, false));
  const Bytes m = text_bytes(5000);
  for (int i = 0; i < 2; ++i) {
    ZlibPeer peer(15);
    EXPECT_EQ(inflated(ours, peer.deflate(m, true)), m);
  }
}

TEST(DeflateInterop, ClientWindowOf8InflatesA9BitStream) {
  // zlib before 1.2.9 deflated with 9 bits when asked for 8.
  MessageDeflate ours(agreement(8, false));
  ZlibPeer peer(9);
  const Bytes m = text_bytes(20000);
  EXPECT_EQ(inflated(ours, peer.deflate(m)), m);
}

TEST(DeflateInterop, EmptyMessages) {
  // RFC 7692 §7.2.3.6: an empty message is sent as one 0x00 byte; an empty
  // payload is taken as an empty message too. Neither disturbs the context.
  for (bool nct : {false, true}) {
    MessageDeflate ours(agreement(15, nct));
    ZlibPeer peer(15);
    const Bytes m = text_bytes(3000);
    EXPECT_EQ(inflated(ours, peer.deflate(m)), m);
    EXPECT_TRUE(inflated(ours, Bytes{0x00}).empty());
    EXPECT_TRUE(inflated(ours, Bytes{}).empty());
    EXPECT_TRUE(peer.deflate(Bytes{}).empty());  // what a plain zlib client sends
    ZlibPeer fresh(15);  // a client without context takeover starts each message anew
    EXPECT_EQ(inflated(ours, (nct ? fresh : peer).deflate(m)), m);
    // Ours: 0x00, which plain zlib inflates, between messages that share context.
    EXPECT_EQ(deflated(ours, Bytes{}), Bytes{0x00});
    EXPECT_EQ(peer.inflate(deflated(ours, m), m.size()), m);
    EXPECT_TRUE(peer.inflate(deflated(ours, Bytes{}), 0).empty());
    EXPECT_EQ(peer.inflate(deflated(ours, m), m.size()), m);
  }
}

// --- Limits and bad data ---------------------------------------------------------------

TEST(DeflateLimit, ZipBombStopsAtTheLimit) {
  const Bytes zeros(10'000'000, 0);
  for (bool nct : {false, true}) {
    MessageDeflate sender(agreement(15, nct));
    const Bytes bomb = deflated(sender, zeros);
    EXPECT_LT(bomb.size(), 20'000u);
    MessageDeflate receiver(agreement(15, nct));
    ByteBuffer out;
    constexpr std::uint64_t limit = 1 << 20;
    EXPECT_EQ(receiver.inflate(bomb.data(), bomb.size(), out, limit), Inflate::too_big);
    EXPECT_LE(out.size(), limit);
    EXPECT_LE(out.capacity(), 2 * limit);
    // Without a limit it inflates whole.
    MessageDeflate unlimited(agreement(15, nct));
    ByteBuffer all;
    ASSERT_EQ(unlimited.inflate(bomb.data(), bomb.size(), all, 0), Inflate::ok);
    EXPECT_EQ(bytes(all), zeros);
  }
}

TEST(DeflateLimit, ExactlyAtTheLimitIsAllowed) {
  const Bytes m = text_bytes(100000);
  for (bool nct : {false, true}) {
    for (std::uint64_t limit : {100000u, 99999u, 1u}) {
      MessageDeflate sender(agreement(15, nct));
      MessageDeflate receiver(agreement(15, nct));
      const Bytes payload = deflated(sender, m);
      ByteBuffer out;
      const Inflate r = receiver.inflate(payload.data(), payload.size(), out, limit);
      EXPECT_EQ(r, limit >= m.size() ? Inflate::ok : Inflate::too_big) << limit;
      EXPECT_LE(out.size(), limit);
    }
  }
}

TEST(DeflateLimit, BadDataIsInvalid) {
  const Bytes good = [] {
    MessageDeflate sender(agreement(15, false));
    return deflated(sender, text_bytes(50000));
  }();
  const std::vector<Bytes> bad = {
      {0x06, 0x00},                    // reserved block type 11
      {0x00, 0x05, 0x00, 0x00, 0x00},  // stored block whose length check fails
      random_bytes(1000, 9),
      Bytes(good.begin(),
            good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2)),  // truncated
  };
  for (bool nct : {false, true}) {
    for (const Bytes& b : bad) {
      auto receiver = std::make_unique<MessageDeflate>(agreement(15, nct));
      ByteBuffer out;
      EXPECT_EQ(receiver->inflate(b.data(), b.size(), out, 0), Inflate::invalid) << b.size();
      EXPECT_EQ(receiver->held_bytes(), 0u);  // a broken context is not kept
      receiver.reset();
    }
    // The pool's stream serves the next connection as if nothing happened.
    MessageDeflate next(agreement(15, nct));
    EXPECT_EQ(inflated(next, good), text_bytes(50000));
  }
}

TEST(DeflateLimit, ReferenceToAContextWeDoNotHaveIsInvalid) {
  // The client kept its context across a message we failed on: its next
  // message cannot silently inflate to something else.
  ZlibPeer peer(15);
  const Bytes m = random_bytes(2000, 11);
  (void)peer.deflate(m);
  const Bytes second = peer.deflate(m);  // all references to the first copy
  MessageDeflate ours(agreement(15, false));
  ByteBuffer out;
  EXPECT_EQ(ours.inflate(second.data(), second.size(), out, 0), Inflate::invalid);
}

// --- Memory --------------------------------------------------------------------------

TEST(DeflateMemory, NoContextTakeoverHoldsNothingBetweenMessages) {
  const Bytes m = text_bytes(64 * 1024);
  std::size_t pooled = 0;
  for (int connection = 0; connection < 50; ++connection) {
    MessageDeflate sender(agreement(15, true));
    MessageDeflate receiver(agreement(15, true));
    for (int i = 0; i < 4; ++i) EXPECT_EQ(inflated(receiver, deflated(sender, m)), m);
    EXPECT_EQ(sender.held_bytes(), 0u);
    EXPECT_EQ(receiver.held_bytes(), 0u);
    // The thread's pool is made once and reused, not grown per connection.
    if (connection == 0) pooled = MessageDeflate::pooled_bytes();
    EXPECT_EQ(MessageDeflate::pooled_bytes(), pooled);
  }
  EXPECT_GT(pooled, 0u);
}

TEST(DeflateMemory, ContextTakeoverHoldsItsStreamsOnlyOnceUsed) {
  for (int bits : {9, 12, 15}) {
    MessageDeflate both(agreement(bits, false));
    EXPECT_EQ(both.held_bytes(), 0u);  // nothing before the first message
    const Bytes m = text_bytes(10000);
    const Bytes payload = deflated(both, m);
    const std::size_t send_side = both.held_bytes();
    EXPECT_EQ(inflated(both, payload), m);  // its own output: same window size
    const std::size_t held = both.held_bytes();
    EXPECT_GT(send_side, 0u);
    EXPECT_GT(held, send_side);
    // Steady state: more messages allocate nothing.
    for (int i = 0; i < 5; ++i) EXPECT_EQ(inflated(both, deflated(both, m)), m);
    EXPECT_EQ(both.held_bytes(), held);
    std::printf("context takeover, %d window bits: %zu bytes to send, %zu to receive, %zu held\n",
                bits, send_side, held - send_side, held);
    RecordProperty("held_bytes_" + std::to_string(bits), std::to_string(held));
  }
}

}  // namespace
}  // namespace shoal
