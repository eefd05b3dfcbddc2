// PROXY protocol v1/v2 header parser and builder, and CidrSet.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <string_view>

#include "protocol/cidr.hpp"
#include "protocol/proxy_protocol.hpp"

namespace {

using namespace std::string_literals;
using shoal::CidrSet;
using shoal::parse_proxy_header;
using shoal::ProxyHeader;
using shoal::ProxyParse;
using shoal::ProxyProtocol;
using Status = ProxyParse::Status;
namespace ip = boost::asio::ip;
using tcp = ip::tcp;

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

tcp::endpoint ep(const char* address, std::uint16_t port) { return {ip::make_address(address), port}; }

// A v2 header by hand, independent of make_proxy_v2.
std::string v2(unsigned char version_command, unsigned char family, const std::string& body) {
  return kSig + static_cast<char>(version_command) + static_cast<char>(family) +
         static_cast<char>(body.size() >> 8) + static_cast<char>(body.size() & 0xff) + body;
}
const std::string kV4Block("\x0a\x00\x00\x01\xc0\xa8\x01\x02\x30\x39\x1f\x90", 12);  // 10.0.0.1:12345 -> 192.168.1.2:8080

std::string tlv(unsigned char type, const std::string& value) {
  return std::string(1, static_cast<char>(type)) + static_cast<char>(value.size() >> 8) +
         static_cast<char>(value.size() & 0xff) + value;
}

ProxyParse parse(std::string_view s, ProxyProtocol accept = ProxyProtocol::any,
                 std::size_t max = shoal::kMaxProxyHeaderBytes) {
  return parse_proxy_header(s, accept, max);
}

void expect_invalid(std::string_view s, ProxyProtocol accept = ProxyProtocol::any) {
  const ProxyParse p = parse(s, accept);
  EXPECT_EQ(p.status, Status::invalid) << "for " << testing::PrintToString(std::string(s));
  EXPECT_STRNE(p.problem, "");
}

// Every prefix needs more, the whole is done, and data after it changes nothing.
void expect_incremental(const std::string& header, ProxyProtocol accept = ProxyProtocol::any) {
  for (std::size_t n = 0; n < header.size(); ++n)
    ASSERT_EQ(parse(std::string_view(header).substr(0, n), accept).status, Status::need_more) << "prefix " << n;
  const ProxyParse whole = parse(header, accept);
  ASSERT_EQ(whole.status, Status::done) << whole.problem;
  EXPECT_EQ(whole.header.length, header.size());
  for (const std::string& data : {"x"s, "GET / HTTP/1.1\r\n\r\n"s, "\r\n"s, kSig, std::string(4000, 'd')}) {
    const ProxyParse more = parse(header + data, accept);
    ASSERT_EQ(more.status, Status::done);
    EXPECT_EQ(more.header.length, header.size());
    EXPECT_EQ(more.header.source, whole.header.source);
    EXPECT_EQ(more.header.destination, whole.header.destination);
  }
}

// A whole header carrying these endpoints.
void expect_proxied(const std::string& h, ProxyHeader::Version version, const tcp::endpoint& src,
                    const tcp::endpoint& dst, ProxyProtocol accept = ProxyProtocol::any) {
  const ProxyParse p = parse(h, accept);
  ASSERT_EQ(p.status, Status::done) << p.problem << " for " << testing::PrintToString(h);
  EXPECT_EQ(p.header.version, version);
  EXPECT_FALSE(p.header.local);
  EXPECT_EQ(p.header.source, src);
  EXPECT_EQ(p.header.destination, dst);
  EXPECT_EQ(p.header.length, h.size());
}

// --- v1 -----------------------------------------------------------------------

TEST(ProxyV1, Tcp4) {
  const std::string h = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  for (auto accept : {ProxyProtocol::any, ProxyProtocol::v1})
    expect_proxied(h, ProxyHeader::Version::v1, ep("192.168.0.1", 56324), ep("192.168.0.11", 443), accept);
}

TEST(ProxyV1, Tcp6) {
  expect_proxied("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.2 0 65535\r\n", ProxyHeader::Version::v1,
                 ep("2001:db8::1", 0), ep("::ffff:10.0.0.2", 65535));
}

TEST(ProxyV1, LongestTcp6AndUnknownFillingAll107Bytes) {
  // The spec's worst case, from which it takes its 107.
  const std::string full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string h = "PROXY TCP6 " + full + " " + full + " 65535 65535\r\n";
  EXPECT_EQ(h.size(), 104u);
  EXPECT_EQ(parse(h).status, Status::done);
  // Valid IPv6 text with embedded IPv4 can make a line longer than 107: the bound holds.
  const std::string embedded = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
  const std::string e = "PROXY TCP6 " + embedded + " " + embedded + " 65535 65535\r\n";
  EXPECT_EQ(e.size(), 116u);
  EXPECT_EQ(parse(e).status, Status::invalid);
  EXPECT_EQ(parse(e.substr(0, 106)).status, Status::need_more);
  const std::string u = "PROXY UNKNOWN " + std::string(107 - 16, 'z') + "\r\n";
  ASSERT_EQ(u.size(), 107u);
  EXPECT_EQ(parse(u).status, Status::done);
  EXPECT_EQ(parse(u).header.length, 107u);
}

TEST(ProxyV1, UnknownIsLocalWhateverFollows) {
  for (const std::string& h : {"PROXY UNKNOWN\r\n"s, "PROXY UNKNOWN ffff::1 ::1 1 2\r\n"s,
                              "PROXY UNKNOWN anything \x01\xff\r at all\r\n"s}) {
    const ProxyParse p = parse(h);
    ASSERT_EQ(p.status, Status::done) << h;
    EXPECT_TRUE(p.header.local);
    EXPECT_EQ(p.header.length, h.size());
  }
}

TEST(ProxyV1, Malformed) {
  for (const std::string& h : {
           "PROXY TCP4  192.168.0.1 192.168.0.11 1 2\r\n"s,     // two spaces
           "PROXY TCP4 192.168.0.1  192.168.0.11 1 2\r\n"s,
           "PROXY TCP4 192.168.0.1 192.168.0.11 1  2\r\n"s,
           "PROXY  TCP4 192.168.0.1 192.168.0.11 1 2\r\n"s,
           "PROXY TCP4 192.168.0.1 192.168.0.11 1 2 \r\n"s,     // trailing space
           "PROXY TCP4 192.168.0.1 192.168.0.11 65536 2\r\n"s,  // port out of range
           "PROXY TCP4 192.168.0.1 192.168.0.11 1 99999\r\n"s,
           "PROXY TCP4 192.168.0.1 192.168.0.11 080 2\r\n"s,    // leading zero
           "PROXY TCP4 192.168.0.1 192.168.0.11 +80 2\r\n"s,
           "PROXY TCP4 192.168.0.1 192.168.0.11 -1 2\r\n"s,
           "PROXY TCP4 192.168.0.1 192.168.0.11 1 2\n"s,        // LF only
           "PROXY TCP4 192.168.0.1 192.168.0.11 1 2\rX"s,       // CR without LF
           "PROXY TCP4 192.168.0.1 192.168.0.11 1\r\n"s,        // a port missing
           "PROXY TCP4 192.168.0.1 1 2\r\n"s,
           "PROXY TCP4 192.168.0.256 192.168.0.11 1 2\r\n"s,    // bad addresses
           "PROXY TCP4 192.168.0 192.168.0.11 1 2\r\n"s,
           "PROXY TCP4 192.168.000.1 192.168.0.11 1 2\r\n"s,
           "PROXY TCP4 192.168.0.1. 192.168.0.11 1 2\r\n"s,
           "PROXY TCP4 localhost 192.168.0.11 1 2\r\n"s,
           "PROXY TCP4 ::1 ::1 1 2\r\n"s,                        // TCP4 with IPv6 text
           "PROXY TCP4 ::ffff:1.2.3.4 1.2.3.4 1 2\r\n"s,
           "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n"s,                // TCP6 with IPv4 text
           "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"s,               // zone id
           "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"s,
           "PROXY TCP6 ::1 ::1 1 2\r\n"s.replace(11, 3, "::g"),
           "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"s,                // protocol
           "PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n"s,
           "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"s,
           "PROXY UNKNOWNX\r\n"s,
           "PROXY UNKNOWN\n"s,
           "PROXY \r\n"s,
           "PROXY\r\n"s,
           "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"s,                // lowercase
           "PROXY TCP4 1.2.3.4\x00 1.2.3.4 1 2\r\n"s,
       })
    expect_invalid(h);
}

TEST(ProxyV1, NoCrlfWithin107Bytes) {
  const std::string u = "PROXY UNKNOWN " + std::string(107 - 14, 'z');  // 107 bytes, no CRLF
  ASSERT_EQ(u.size(), 107u);
  EXPECT_EQ(parse(u.substr(0, 106)).status, Status::need_more);
  const ProxyParse p = parse(u);
  EXPECT_EQ(p.status, Status::invalid);
  EXPECT_STREQ(p.problem, "no CRLF within the 107 bytes of a v1 header");
  // A CRLF at 108 is too late even though it comes.
  EXPECT_EQ(parse(u + "z\r\n").status, Status::invalid);
  // The CR within the 107 but its LF beyond: invalid too.
  EXPECT_EQ(parse("PROXY UNKNOWN " + std::string(107 - 15, 'z') + "\r\n").status, Status::invalid);
}

TEST(ProxyV1, RejectsAtTheFirstImpossibleByte) {
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 1.2.3.4 6553").status, Status::need_more);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 1.2.3.4 65536").status, Status::invalid);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 1.2.3.4 0").status, Status::need_more);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 1.2.3.4 01").status, Status::invalid);
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4:").status, Status::invalid);
  EXPECT_EQ(parse("PROXY TCP4 1234567890123456").status, Status::invalid);  // longer than any dotted quad
  EXPECT_EQ(parse("PROXY UNK").status, Status::need_more);
  EXPECT_EQ(parse("PROXY UNX").status, Status::invalid);
  EXPECT_EQ(parse("PROXY TCP").status, Status::need_more);
  EXPECT_EQ(parse("PROXY TCPX").status, Status::invalid);
  EXPECT_EQ(parse("PROX").status, Status::need_more);
  EXPECT_EQ(parse("PROXX").status, Status::invalid);
}

TEST(ProxyV1, Incremental) {
  expect_incremental("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  expect_incremental("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", ProxyProtocol::v1);
  expect_incremental("PROXY UNKNOWN\r\n");
  expect_incremental("PROXY UNKNOWN a\rb\r\n");
}

TEST(ProxyV1, MaxBytesBelow107) {
  const std::string h = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  EXPECT_EQ(parse(h, ProxyProtocol::any, h.size()).status, Status::done);
  const ProxyParse p = parse(h, ProxyProtocol::any, h.size() - 1);
  EXPECT_EQ(p.status, Status::invalid);
  EXPECT_STREQ(p.problem, "too long");
  EXPECT_EQ(parse(h.substr(0, 10), ProxyProtocol::any, 10).status, Status::invalid);
}

// --- v2 -----------------------------------------------------------------------

TEST(ProxyV2, ProxyTcp4) {
  const std::string h = v2(0x21, 0x11, kV4Block);
  EXPECT_EQ(h.size(), 28u);
  for (auto accept : {ProxyProtocol::any, ProxyProtocol::v2})
    expect_proxied(h, ProxyHeader::Version::v2, ep("10.0.0.1", 12345), ep("192.168.1.2", 8080), accept);
}

TEST(ProxyV2, ProxyTcp6) {
  std::string block(36, '\0');
  block[0] = '\x20', block[1] = '\x01', block[15] = '\x01';  // 2001::1
  block[16 + 15] = '\x02';                                   // ::2
  block[32] = '\xff', block[33] = '\xfe', block[34] = '\x00', block[35] = '\x50';
  expect_proxied(v2(0x21, 0x21, block), ProxyHeader::Version::v2, ep("2001::1", 65534), ep("::2", 80));
}

TEST(ProxyV2, LocalAndUnspecAndUnusableFamiliesAreLocal) {
  for (const std::string& h : {v2(0x20, 0x00, ""), v2(0x20, 0x11, ""), v2(0x20, 0x11, kV4Block),
                              v2(0x20, 0x00, "opaque \x01\x02"s), v2(0x21, 0x00, ""), v2(0x21, 0x00, "xyz"),
                              v2(0x21, 0x12, kV4Block), v2(0x21, 0x22, std::string(36, '\x01')),
                              v2(0x21, 0x31, std::string(216, 'u')), v2(0x21, 0x32, std::string(216, 'u'))}) {
    const ProxyParse p = parse(h);
    ASSERT_EQ(p.status, Status::done) << p.problem;
    EXPECT_TRUE(p.header.local);
    EXPECT_EQ(p.header.length, h.size());
    expect_incremental(h);
  }
}

TEST(ProxyV2, TlvsAreSkipped) {
  // AWS's VPC endpoint id, ALPN, an empty NOOP, and HAProxy's SSL TLV.
  const std::string tlvs = tlv(0xEA, "\x01vpce-08d2bf15fac5001c9"s) + tlv(0x01, "h2") + tlv(0x04, "") +
                           tlv(0x20, "\x01\x00\x00\x00\x00"s + tlv(0x21, "TLSv1.3"));
  const std::string h = v2(0x21, 0x11, kV4Block + tlvs);
  const ProxyParse p = parse(h);
  ASSERT_EQ(p.status, Status::done) << p.problem;
  EXPECT_EQ(p.header.length, 28 + tlvs.size());
  EXPECT_EQ(p.header.source, ep("10.0.0.1", 12345));
  expect_incremental(h);
}

TEST(ProxyV2, MalformedTlvs) {
  for (const std::string& tlvs : {"\x01"s, "\x01\x00"s, "\x01\x00\x02x"s, tlv(0x01, "ab") + "\x02\x00\x05"s,
                                 tlv(0x01, "ab") + "\x02\xff\xff" + "abc"}) {
    const ProxyParse p = parse(v2(0x21, 0x11, kV4Block + tlvs));
    EXPECT_EQ(p.status, Status::invalid);
    EXPECT_STREQ(p.problem, "v2 bad TLV");
  }
}

TEST(ProxyV2, HeaderFields) {
  const auto problem = [](const std::string& h) { return std::string(parse(h).problem); };
  EXPECT_EQ(problem(v2(0x11, 0x11, kV4Block)), "v2 bad version");
  EXPECT_EQ(problem(v2(0x31, 0x11, kV4Block)), "v2 bad version");
  EXPECT_EQ(problem(v2(0x22, 0x11, kV4Block)), "v2 bad command");
  EXPECT_EQ(problem(v2(0x2f, 0x11, kV4Block)), "v2 bad command");
  for (unsigned char family : {0x01, 0x10, 0x13, 0x23, 0x41, 0xff})
    EXPECT_EQ(problem(v2(0x21, family, kV4Block)), "v2 bad family") << int{family};
  EXPECT_EQ(problem(v2(0x20, 0x44, "")), "v2 bad family");
  EXPECT_EQ(problem(v2(0x21, 0x11, kV4Block.substr(0, 11))), "v2 length shorter than its addresses");
  EXPECT_EQ(problem(v2(0x21, 0x21, std::string(35, 'a'))), "v2 length shorter than its addresses");
  // Decided at the 13th and 14th bytes, not at the end.
  EXPECT_EQ(parse(kSig + "\x11").status, Status::invalid);
  EXPECT_EQ(parse(kSig + "\x21\x05").status, Status::invalid);
}

TEST(ProxyV2, LengthAboveTheLimit) {
  const std::string big = v2(0x21, 0x11, kV4Block + tlv(0xE0, std::string(3000, 'g')));
  const ProxyParse p = parse(big.substr(0, 16));  // known from the length field alone
  EXPECT_EQ(p.status, Status::invalid);
  EXPECT_STREQ(p.problem, "v2 length exceeds the limit");
  EXPECT_EQ(parse(big, ProxyProtocol::any, big.size()).status, Status::done);
  EXPECT_EQ(parse(big, ProxyProtocol::any, big.size() - 1).status, Status::invalid);
  const std::string max = v2(0x20, 0x00, std::string(0xffff, 'm'));
  EXPECT_EQ(parse(max, ProxyProtocol::v2, max.size()).status, Status::done);
  EXPECT_EQ(parse(max, ProxyProtocol::v2, max.size()).header.length, 65551u);
}

TEST(ProxyV2, Incremental) {
  expect_incremental(v2(0x21, 0x11, kV4Block));
  expect_incremental(v2(0x21, 0x11, kV4Block + tlv(0x01, "h2")), ProxyProtocol::v2);
  expect_incremental(v2(0x20, 0x00, ""));
}

// --- what a listener accepts ------------------------------------------------------

TEST(ProxyAccept, Mismatches) {
  const std::string one = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
  const std::string two = v2(0x21, 0x11, kV4Block);
  EXPECT_EQ(parse(one, ProxyProtocol::v2).status, Status::invalid);
  EXPECT_STREQ(parse(one, ProxyProtocol::v2).problem, "not a PROXY v2 header");
  EXPECT_EQ(parse("P", ProxyProtocol::v2).status, Status::invalid);
  EXPECT_EQ(parse(two, ProxyProtocol::v1).status, Status::invalid);
  EXPECT_STREQ(parse(two, ProxyProtocol::v1).problem, "not a PROXY v1 header");
  EXPECT_EQ(parse("\r", ProxyProtocol::v1).status, Status::invalid);
  EXPECT_EQ(parse(one, ProxyProtocol::off).status, Status::invalid);
  EXPECT_EQ(parse("", ProxyProtocol::off).status, Status::invalid);
  for (auto accept : {ProxyProtocol::v1, ProxyProtocol::v2, ProxyProtocol::any})
    EXPECT_EQ(parse("", accept).status, Status::need_more);
}

TEST(ProxyAccept, TlsAndHttpAreRejectedAtOnce) {
  const std::string client_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  for (auto accept : {ProxyProtocol::v1, ProxyProtocol::v2, ProxyProtocol::any}) {
    EXPECT_EQ(parse(client_hello.substr(0, 1), accept).status, Status::invalid);
    EXPECT_EQ(parse("G", accept).status, Status::invalid);
    EXPECT_EQ(parse("GET / HTTP/1.1\r\n", accept).status, Status::invalid);
    EXPECT_EQ(parse("\r\n\r\n\r", accept).status, Status::invalid);  // CRLF CRLF then not the signature
  }
  // "POST /" shares one byte with "PROXY ".
  EXPECT_EQ(parse("P").status, Status::need_more);
  EXPECT_EQ(parse("PO").status, Status::invalid);
  EXPECT_STREQ(parse("\x16").problem, "not a PROXY header");
}

// --- building headers ---------------------------------------------------------------

TEST(ProxyMake, V1RoundTrips) {
  for (const auto& [src, dst] : {std::pair{ep("203.0.113.7", 40000), ep("10.0.0.1", 7000)},
                                 std::pair{ep("2001:db8::7", 1), ep("::1", 65535)},
                                 std::pair{ep("0.0.0.0", 0), ep("255.255.255.255", 65535)}}) {
    expect_proxied(shoal::make_proxy_v1(src, dst), ProxyHeader::Version::v1, src, dst, ProxyProtocol::v1);
  }
  EXPECT_EQ(shoal::make_proxy_v1(ep("203.0.113.7", 40000), ep("10.0.0.1", 7000)),
            "PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000\r\n");
  // Mixed families: TCP6 with the IPv4 side mapped; a zone id is dropped.
  EXPECT_EQ(shoal::make_proxy_v1(ep("1.2.3.4", 1), ep("::1", 2)), "PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n");
  const tcp::endpoint scoped(ip::make_address_v6("fe80::1%1"), 5);
  EXPECT_EQ(parse(shoal::make_proxy_v1(scoped, scoped)).status, Status::done);
}

TEST(ProxyMake, V2RoundTrips) {
  const tcp::endpoint src = ep("203.0.113.7", 40000), dst = ep("10.0.0.1", 7000);
  EXPECT_EQ(shoal::make_proxy_v2(&src, &dst), v2(0x21, 0x11, "\xcb\x00\x71\x07\x0a\x00\x00\x01\x9c\x40\x1b\x58"s));
  const tcp::endpoint src6 = ep("2001:db8::7", 1), dst6 = ep("::ffff:10.0.0.1", 2);
  const std::string tlvs = tlv(0x01, "h2") + tlv(0xEA, "\x01vpce-1"s);
  for (const auto& [s, d] : {std::pair{&src, &dst}, std::pair{&src6, &dst6}}) {
    expect_proxied(shoal::make_proxy_v2(s, d, tlvs), ProxyHeader::Version::v2, *s, *d, ProxyProtocol::v2);
  }
  const std::string local = shoal::make_proxy_v2(nullptr, nullptr);
  EXPECT_EQ(local, v2(0x20, 0x00, ""));
  EXPECT_TRUE(parse(local).header.local);
  EXPECT_THROW(shoal::make_proxy_v2(&src, nullptr), std::invalid_argument);
  EXPECT_THROW(shoal::make_proxy_v2(&src, &dst, std::string(0xffff - 11, 't')), std::invalid_argument);
  EXPECT_NO_THROW(shoal::make_proxy_v2(&src, &dst, std::string(0xffff - 12, 't')));
}

// --- CidrSet --------------------------------------------------------------------------

TEST(Cidr, Parses) {
  const auto c = CidrSet::parse("127.0.0.0/8");
  EXPECT_EQ(c.network, ip::make_address("127.0.0.0"));
  EXPECT_EQ(c.prefix, 8u);
  EXPECT_EQ(CidrSet::parse("10.1.2.3").prefix, 32u);
  EXPECT_EQ(CidrSet::parse("::1").prefix, 128u);
  EXPECT_EQ(CidrSet::parse("::ffff:10.0.0.0/104").prefix, 104u);
  EXPECT_EQ(CidrSet::parse("0.0.0.0/0").prefix, 0u);
  EXPECT_EQ(CidrSet::parse("::/0").prefix, 0u);
  EXPECT_EQ(CidrSet::parse("2001:db8::/32").network, ip::make_address("2001:db8::"));
}

TEST(Cidr, RejectsWithAMessageNamingTheText) {
  for (const char* text : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/08", "10.0.0.0/+8",
                           "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0.0 /8", "10.0.0/8", "010.0.0.0/8", "host/8",
                           "fe80::1%eth0/128", "10.0.0.0/1000", "::g/64"}) {
    try {
      CidrSet::parse(text);
      ADD_FAILURE() << "accepted " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find('"' + std::string(text) + '"'), std::string::npos) << e.what();
    }
  }
}

TEST(Cidr, RejectsHostBitsBeyondThePrefix) {
  try {
    CidrSet::parse("10.0.0.1/8");
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "\"10.0.0.1/8\" is not an address range: it has host bits set beyond /8 (the network is 10.0.0.0/8)");
  }
  EXPECT_THROW(CidrSet::parse("192.168.1.128/24"), std::invalid_argument);
  EXPECT_THROW(CidrSet::parse("11.0.0.0/7"), std::invalid_argument);  // 11 = 0b00001011
  EXPECT_THROW(CidrSet::parse("2001:db8::1/64"), std::invalid_argument);
  EXPECT_THROW(CidrSet::parse("::ffff:10.0.0.1/104"), std::invalid_argument);
  EXPECT_NO_THROW(CidrSet::parse("10.0.0.0/7"));
  EXPECT_NO_THROW(CidrSet::parse("192.168.1.128/25"));
}

TEST(Cidr, Contains) {
  CidrSet set;
  EXPECT_TRUE(set.empty());
  EXPECT_FALSE(set.contains(ip::make_address("127.0.0.1")));
  set.add(CidrSet::parse("10.0.0.0/8"));
  set.add(CidrSet::parse("192.168.1.128/25"));
  set.add(CidrSet::parse("2001:db8::/32"));
  set.add(CidrSet::parse("::ffff:172.16.0.0/108"));  // 172.16.0.0/12
  set.add(CidrSet::parse("203.0.113.9"));
  for (const char* yes : {"10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3", "192.168.1.128", "192.168.1.255",
                          "2001:db8::1", "2001:db8:ffff::", "172.16.0.1", "172.31.255.255", "::ffff:172.20.0.1",
                          "203.0.113.9", "::ffff:203.0.113.9"})
    EXPECT_TRUE(set.contains(ip::make_address(yes))) << yes;
  for (const char* no : {"11.0.0.0", "9.255.255.255", "192.168.1.127", "2001:db9::", "172.32.0.0", "203.0.113.8",
                         "::a00:1" /* IPv4-compatible, not mapped */, "::1", "127.0.0.1"})
    EXPECT_FALSE(set.contains(ip::make_address(no))) << no;
}

TEST(Cidr, ZeroPrefixes) {
  CidrSet v4;
  v4.add(CidrSet::parse("0.0.0.0/0"));
  EXPECT_TRUE(v4.contains(ip::make_address("1.2.3.4")));
  EXPECT_TRUE(v4.contains(ip::make_address("::ffff:1.2.3.4")));
  EXPECT_FALSE(v4.contains(ip::make_address("2001:db8::1")));
  CidrSet all;
  all.add(CidrSet::parse("::/0"));
  EXPECT_TRUE(all.contains(ip::make_address("2001:db8::1")));
  EXPECT_TRUE(all.contains(ip::make_address("1.2.3.4")));
}

TEST(Cidr, LoopbackDefaultAndToString) {
  const CidrSet lo = shoal::loopback_cidrs();
  EXPECT_EQ(lo.to_string(), "127.0.0.0/8, ::1/128");
  EXPECT_TRUE(lo.contains(ip::make_address("127.0.0.1")));
  EXPECT_TRUE(lo.contains(ip::make_address("127.255.0.3")));
  EXPECT_TRUE(lo.contains(ip::make_address("::ffff:127.0.0.1")));
  EXPECT_TRUE(lo.contains(ip::make_address("::1")));
  EXPECT_FALSE(lo.contains(ip::make_address("128.0.0.1")));
  EXPECT_FALSE(lo.contains(ip::make_address("::2")));
  EXPECT_EQ(CidrSet().to_string(), "");
}

TEST(Cidr, AddressText) {
  EXPECT_EQ(shoal::parse_ipv4_text("1.2.3.4"), ip::make_address_v4("1.2.3.4"));
  EXPECT_FALSE(shoal::parse_ipv4_text("1.2.3.04"));
  EXPECT_FALSE(shoal::parse_ipv4_text(std::string_view("1.2.3.4\0", 8)));
  EXPECT_FALSE(shoal::parse_ipv4_text("1.2.3.4 "));
  EXPECT_FALSE(shoal::parse_ipv4_text(""));
  EXPECT_EQ(shoal::parse_ipv6_text("::ffff:1.2.3.4"), ip::make_address_v6("::ffff:1.2.3.4"));
  EXPECT_FALSE(shoal::parse_ipv6_text("fe80::1%1"));
  EXPECT_FALSE(shoal::parse_ipv6_text(std::string(46, '1')));
}

}  // namespace
