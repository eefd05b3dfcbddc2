// The PROXY protocol header (HAProxy's "The PROXY protocol", versions 1 and
// 2) that an L4 balancer (HAProxy send-proxy / send-proxy-v2, an AWS NLB, a
// Kubernetes ingress) puts in front of a connection's first bytes to say
// which client it carries.
//
// parse_proxy_header() is pure: no I/O, no allocation, no state between
// calls. It is given the bytes received so far (a recv(MSG_PEEK) of the
// socket) and answers need_more, done (with the header's length on the wire)
// or invalid (with a static reason). It never looks past the header, so the
// caller can recv() exactly `length` bytes and leave what followed in the
// same segment (an NLB sends the v2 header together with the first data)
// for the session. Bytes that cannot begin a valid header (a TLS
// ClientHello, "GET /") are invalid at once, never need_more.
//
// make_proxy_v1() / make_proxy_v2() build headers, for tests and for the
// load generator.
//
// Thread safety: every function may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

#include "config/config.hpp"  // ProxyProtocol

namespace shoal {


// The longest header accepted by default. A v1 header is at most 107 bytes
// (the spec's own bound). A v2 header is 16 bytes, an address block of at
// most 36 for TCP (216 for UNIX), then TLVs: what AWS (the VPC endpoint id,
// 0xEA), GCP (the PSC connection id, 0xE0), Azure (the private link id) and
// HAProxy (ALPN, authority up to 255 bytes, unique id up to 128, CRC32C, the
// SSL TLV with version, CN, cipher and algorithms) send adds up to a few
// hundred bytes. 2048 leaves several times that headroom while bounding
// what one not yet admitted connection can make the accept path peek at
// and hold.
inline constexpr std::size_t kMaxProxyHeaderBytes = 2048;

// The spec's bound on a v1 line, CRLF included.
inline constexpr std::size_t kMaxProxyV1Bytes = 107;

struct ProxyHeader {
  enum class Version : std::uint8_t { v1, v2 } version = Version::v1;
  // v2 LOCAL, v1 UNKNOWN, v2 UNSPEC, or a family a TCP server cannot use
  // (UDP, UNIX): the connection's own addresses stand for the client.
  bool local = false;
  boost::asio::ip::tcp::endpoint source;       // the real client (when !local)
  boost::asio::ip::tcp::endpoint destination;  // what it connected to (when !local)
  std::size_t length = 0;                      // bytes the header takes on the wire
};

struct ProxyParse {
  enum class Status : std::uint8_t { need_more, done, invalid } status = Status::need_more;
  ProxyHeader header;        // when done
  const char* problem = "";  // when invalid: a short static reason for the log
};

// Parses the header at the front of `bytes` (all that has come so far) for a
// listener that accepts `accept`; `any` lets the first byte decide. A header
// longer than `max_bytes` is invalid, so a peer cannot make us buffer
// without bound; with need_more the caller may wait for at most `max_bytes`.
ProxyParse parse_proxy_header(std::string_view bytes, ProxyProtocol accept,
                              std::size_t max_bytes = kMaxProxyHeaderBytes);

// "PROXY TCP4 ..." when both endpoints are IPv4, else "PROXY TCP6 ..." (an
// IPv4 endpoint beside an IPv6 one is written IPv4-mapped).
std::string make_proxy_v1(const boost::asio::ip::tcp::endpoint& src,
                          const boost::asio::ip::tcp::endpoint& dst);

// A v2 PROXY header (TCP over IPv4 when both endpoints are IPv4, else over
// IPv6 as above), or LOCAL when `src` and `dst` are both null. `tlvs` is
// appended as is after the address block. Throws std::invalid_argument when
// only one endpoint is given or the header would exceed the 16-bit length.
std::string make_proxy_v2(const boost::asio::ip::tcp::endpoint* src,
                          const boost::asio::ip::tcp::endpoint* dst, std::string_view tlvs = {});

}  // namespace shoal
