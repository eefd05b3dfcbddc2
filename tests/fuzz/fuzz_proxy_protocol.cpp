// Fuzz target: the PROXY protocol header parser, pure, no server. The first
// byte picks what the listener accepts (off, v1, v2, any) and the byte
// limit; the rest is what a peer sent. The oracle, beyond no crash:
//
// - Feeding the bytes one more at a time gives need_more, then at most one
//   change, to done or invalid, which holds for every longer prefix: done
//   keeps the same header (what the MSG_PEEK accept path relies on when
//   data follows the header), invalid never turns valid. So every prefix
//   shorter than a header is need_more, and need_more never waits past
//   max_bytes.
// - A done header is no longer than the bytes or max_bytes, is of a version
//   the listener accepts, has the shape of its version (a v1 line ending at
//   its first CRLF, a v2 block whose length field says its length), and
//   parses alike on its own.
// - A done header with addresses re-encodes: make_proxy_v2 with the same
//   TLVs gives back the very bytes of a TCP v2 header, make_proxy_v1 those
//   of a TCP4 line, and both parse to the same endpoints. Its TLVs, where
//   the address block has a size, end exactly at its end.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "protocol/proxy_protocol.hpp"

using shoal::fuzz::excerpt;
using shoal::fuzz::fail;
using shoal::ProxyHeader;
using shoal::ProxyParse;
using shoal::ProxyProtocol;
using Status = ProxyParse::Status;

namespace {

const std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);
// Limits around the sizes that matter: below the v2 fixed part, at a v2
// TCP4 header, inside and at the v1 bound, the default, the v2 maximum.
constexpr std::size_t kLimits[8] = {shoal::kMaxProxyHeaderBytes, shoal::kMaxProxyHeaderBytes, 0, 15, 28, 60,
                                    107, 16 + 65535};

bool same(const ProxyParse& a, const ProxyParse& b) {
  return a.status == b.status && std::strcmp(a.problem, b.problem) == 0 &&
         a.header.version == b.header.version && a.header.local == b.header.local &&
         a.header.source == b.header.source && a.header.destination == b.header.destination &&
         a.header.length == b.header.length;
}

std::string endpoint_text(const boost::asio::ip::tcp::endpoint& e) {
  std::string out = e.address().to_string();
  out += ':';
  out += std::to_string(e.port());
  return out;
}

// Built by appending: GCC 12 at -O3 warns (-Wrestrict, a false positive)
// on a chain of operator+ here.
std::string describe(const ProxyParse& p) {
  std::string out;
  switch (p.status) {
    case Status::need_more: return "need_more";
    case Status::invalid:
      out = "invalid (";
      out += p.problem;
      out += ')';
      return out;
    case Status::done: break;
  }
  out = p.header.version == ProxyHeader::Version::v1 ? "done v1" : "done v2";
  if (p.header.local) {
    out += " local";
  } else {
    out += ' ';
    out += endpoint_text(p.header.source);
    out += " -> ";
    out += endpoint_text(p.header.destination);
  }
  out += " length ";
  out += std::to_string(p.header.length);
  return out;
}

[[noreturn]] void finding(const std::string& why, std::string_view bytes, const ProxyParse& p) {
  fail(why + "; parse gave " + describe(p) + " for " + excerpt(bytes, 300));
}

void check_done(std::string_view bytes, ProxyProtocol accept, std::size_t max_bytes, const ProxyParse& p) {
  const ProxyHeader& h = p.header;
  if (*p.problem) finding("done with a problem", bytes, p);
  if (h.length == 0 || h.length > bytes.size() || h.length > max_bytes)
    finding("a done length beyond the bytes or the limit", bytes, p);
  const std::string_view header = bytes.substr(0, h.length);
  if (h.version == ProxyHeader::Version::v1) {
    if (accept == ProxyProtocol::v2) finding("a v1 header on a v2 listener", bytes, p);
    if (h.length > shoal::kMaxProxyV1Bytes || header.substr(0, 6) != "PROXY " || header.find("\r\n") != h.length - 2)
      finding("a v1 header that is not one PROXY line of at most 107 bytes", bytes, p);
    if (h.local != (header.substr(0, 13) == "PROXY UNKNOWN")) finding("v1 local is not UNKNOWN", bytes, p);
    if (!h.local && header.substr(0, 11) == "PROXY TCP4 " &&
        shoal::make_proxy_v1(h.source, h.destination) != header)
      finding("a TCP4 line does not re-encode to itself", bytes, p);
  } else {
    if (accept == ProxyProtocol::v1) finding("a v2 header on a v1 listener", bytes, p);
    if (h.length < 16 || header.substr(0, 12) != kV2Signature ||
        h.length != 16u + (static_cast<unsigned char>(header[14]) << 8 | static_cast<unsigned char>(header[15])))
      finding("a v2 header whose length is not its length field's", bytes, p);
    const auto command = static_cast<unsigned char>(header[12]);
    const auto family = static_cast<unsigned char>(header[13]);
    const bool tcp = command == 0x21 && (family == 0x11 || family == 0x21);
    if (h.local == tcp) finding("v2 local is not LOCAL or a family other than TCP", bytes, p);
    const std::size_t address_bytes = family >> 4 == 1 ? 12 : family >> 4 == 2 ? 36 : family >> 4 == 3 ? 216 : 0;
    if (tcp) {
      if (shoal::make_proxy_v2(&h.source, &h.destination, header.substr(16 + address_bytes)) != header)
        finding("a TCP v2 header does not re-encode to itself", bytes, p);
    }
    // Where the address block has a known size, the rest splits into whole
    // TLVs (type, 16-bit length, value) ending exactly at the header's end.
    if (command == 0x21 && address_bytes != 0) {
      std::size_t at = 16 + address_bytes;
      while (at + 3 <= h.length)
        at += 3 + (static_cast<unsigned char>(header[at + 1]) << 8 | static_cast<unsigned char>(header[at + 2]));
      if (at != h.length) finding("a done v2 header whose TLVs do not end at its end", bytes, p);
    }
  }
  if (!h.local) {
    for (const std::string& again : {shoal::make_proxy_v1(h.source, h.destination),
                                     shoal::make_proxy_v2(&h.source, &h.destination)}) {
      const ProxyParse q = shoal::parse_proxy_header(again, ProxyProtocol::any);
      if (q.status != Status::done || q.header.length != again.size() || q.header.local ||
          q.header.source != h.source || q.header.destination != h.destination)
        finding("the re-encoded header " + excerpt(again) + " parses as " + describe(q), bytes, p);
    }
  }
  if (!same(shoal::parse_proxy_header(header, accept, max_bytes), p))
    finding("the header alone parses differently", bytes, p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto accept = static_cast<ProxyProtocol>(data[0] & 3);
  const std::size_t max_bytes = kLimits[data[0] >> 2 & 7];
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);

  const ProxyParse whole = shoal::parse_proxy_header(bytes, accept, max_bytes);
  if (accept == ProxyProtocol::off && whole.status != Status::invalid)
    finding("a listener with PROXY off took something", bytes, whole);
  if (whole.status == Status::invalid && !*whole.problem) finding("invalid without a problem", bytes, whole);
  if (whole.status == Status::need_more && (*whole.problem || bytes.size() >= max_bytes))
    finding("need_more at or beyond the limit", bytes, whole);
  if (whole.status == Status::done) check_done(bytes, accept, max_bytes, whole);

  // The prefixes: need_more until one decides, and the decision holds.
  ProxyParse first;
  std::size_t decided_at = 0;
  for (std::size_t n = 0; n <= bytes.size(); ++n) {
    const ProxyParse p = shoal::parse_proxy_header(bytes.substr(0, n), accept, max_bytes);
    if (first.status == Status::need_more) {
      first = p;
      decided_at = n;
      if (p.status == Status::done && p.header.length != n)
        finding("the first done prefix (" + std::to_string(n) + " bytes) is not the header's length", bytes, p);
    } else if (!same(p, first)) {
      finding("the prefix of " + std::to_string(n) + " bytes undoes the decision at " +
                  std::to_string(decided_at) + " (" + describe(first) + ")",
              bytes, p);
    }
  }
  if (!same(first, whole)) finding("the prefixes end elsewhere than the whole", bytes, whole);
  return 0;
}
