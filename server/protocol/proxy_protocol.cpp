#include "protocol/proxy_protocol.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "protocol/cidr.hpp"

namespace shoal {

namespace ip = boost::asio::ip;
using tcp = ip::tcp;
using Status = ProxyParse::Status;

namespace {

constexpr std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);
constexpr std::size_t kV2FixedBytes = 16;  // signature, version/command, family, length

ProxyParse need_more() { return {Status::need_more, {}, ""}; }
ProxyParse invalid(const char* why) { return {Status::invalid, {}, why}; }

// Whether `in` so far agrees with `literal` (is a prefix of it, or starts
// with all of it).
bool agrees(std::string_view in, std::string_view literal) {
  const std::size_t n = std::min(in.size(), literal.size());
  return in.substr(0, n) == literal.substr(0, n);
}

// --- v1 ------------------------------------------------------------------------

// Reads a v1 line a field at a time. Each step answers ok (the field is
// whole), more (the bytes end inside it, and what came could still be it)
// or bad, so that a line is rejected at its first impossible byte.
class V1Reader {
 public:
  enum Step { ok, more, bad };

  explicit V1Reader(std::string_view in) : in_(in) {}
  std::size_t pos() const { return pos_; }

  // One of `choices` (none a prefix of another).
  template <std::size_t N>
  Step one_of(const std::string_view (&choices)[N], std::size_t& which) {
    const std::string_view rest = in_.substr(pos_);
    bool possible = false;
    for (std::size_t i = 0; i < N; ++i) {
      if (!agrees(rest, choices[i])) continue;
      if (rest.size() < choices[i].size()) {
        possible = true;
        continue;
      }
      which = i;
      pos_ += choices[i].size();
      return ok;
    }
    return possible ? more : bad;
  }

  // One to `max` bytes of `allowed` ended by `end` (consumed); `field` is the
  // field without its end, or on `more` the part of it that came.
  Step field(std::string_view allowed, std::size_t max, char end, std::string_view& field) {
    for (std::size_t i = pos_; i < in_.size(); ++i) {
      if (in_[i] == end) {
        if (i == pos_) return bad;
        field = in_.substr(pos_, i - pos_);
        pos_ = i + 1;
        return ok;
      }
      if (i - pos_ == max || allowed.find(in_[i]) == std::string_view::npos) return bad;
    }
    field = in_.substr(pos_);
    return more;
  }

  // Whatever bytes up to the first CRLF, consumed with it (UNKNOWN's rest).
  Step to_crlf() {
    const std::size_t crlf = in_.find("\r\n", pos_);
    if (crlf == std::string_view::npos) return more;
    pos_ = crlf + 2;
    return ok;
  }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

// Decimal 0-65535 as the spec writes it: no sign, no leading zero. Checked
// on a partial field too, so "65536" or "01" fail at their last byte.
bool port_text(std::string_view digits, std::uint16_t& port) {
  if (digits.size() > 1 && digits[0] == '0') return false;
  unsigned value = 0;
  for (char c : digits) {
    value = value * 10 + static_cast<unsigned>(c - '0');
    if (value > 65535) return false;
  }
  port = static_cast<std::uint16_t>(value);
  return true;
}

std::optional<ip::address> address_text(std::string_view text, bool v6) {
  if (v6) {
    if (const auto a = parse_ipv6_text(text)) return ip::address(*a);
  } else if (const auto a = parse_ipv4_text(text)) {
    return ip::address(*a);
  }
  return std::nullopt;
}

// "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN ...\r\n".
// `in` is already cut at the longest line we take, so a line with no CRLF
// within it ends as need_more and the caller calls it too long.
ProxyParse parse_v1_line(std::string_view in) {
  V1Reader r(in);
  static constexpr std::string_view kProxy[] = {"PROXY "};
  std::size_t which = 0;
  switch (r.one_of(kProxy, which)) {
    case V1Reader::ok: break;
    case V1Reader::more: return need_more();
    case V1Reader::bad: return invalid("not a PROXY v1 header");
  }
  static constexpr std::string_view kProtocols[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
  switch (r.one_of(kProtocols, which)) {
    case V1Reader::ok: break;
    case V1Reader::more: return need_more();
    case V1Reader::bad: return invalid("bad v1 protocol");
  }
  ProxyHeader h;
  h.version = ProxyHeader::Version::v1;
  if (which == 2) {
    // UNKNOWN: the spec has the receiver ignore everything up to the CRLF,
    // but "UNKNOWNX" is another word, not UNKNOWN.
    if (in.size() > r.pos() && in[r.pos()] != ' ' && in[r.pos()] != '\r') return invalid("bad v1 protocol");
    if (r.to_crlf() == V1Reader::more) return need_more();
    h.local = true;
    h.length = r.pos();
    return {Status::done, h, ""};
  }
  const bool v6 = which == 1;
  // inet_pton's alphabets and longest forms: "255.255.255.255" and the 45
  // characters of a full IPv6 text with embedded IPv4.
  const std::string_view alphabet = v6 ? "0123456789abcdefABCDEF:." : "0123456789.";
  const std::size_t longest = v6 ? 45 : 15;
  ip::address addresses[2];
  std::uint16_t ports[2] = {};
  std::string_view text;
  for (auto& address : addresses) {
    const auto step = r.field(alphabet, longest, ' ', text);
    if (step == V1Reader::more) return need_more();
    if (step == V1Reader::bad) return invalid("bad v1 address");
    const auto parsed = address_text(text, v6);
    if (!parsed) return invalid("bad v1 address");
    address = *parsed;
  }
  for (int i = 0; i < 2; ++i) {
    const auto step = r.field("0123456789", 5, i == 0 ? ' ' : '\r', text);
    if (step == V1Reader::bad || !port_text(text, ports[i])) return invalid("bad v1 port");
    if (step == V1Reader::more) return need_more();
  }
  static constexpr std::string_view kLf[] = {"\n"};
  switch (r.one_of(kLf, which)) {
    case V1Reader::ok: break;
    case V1Reader::more: return need_more();
    case V1Reader::bad: return invalid("bad v1 line end");
  }
  h.source = tcp::endpoint(addresses[0], ports[0]);
  h.destination = tcp::endpoint(addresses[1], ports[1]);
  h.length = r.pos();
  return {Status::done, h, ""};
}

ProxyParse parse_v1(std::string_view in, std::size_t max_bytes) {
  const std::size_t limit = std::min(kMaxProxyV1Bytes, max_bytes);
  ProxyParse p = parse_v1_line(in.substr(0, limit));
  if (p.status == Status::need_more && in.size() >= limit)
    return invalid(limit == kMaxProxyV1Bytes ? "no CRLF within the 107 bytes of a v1 header" : "too long");
  return p;
}

// --- v2 ------------------------------------------------------------------------

std::uint16_t be16(std::string_view s, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(s[at]) << 8 | static_cast<unsigned char>(s[at + 1]));
}

ip::address_v4 v4_at(std::string_view s, std::size_t at) {
  ip::address_v4::bytes_type b;
  std::copy_n(s.begin() + static_cast<std::ptrdiff_t>(at), b.size(), b.begin());
  return ip::address_v4(b);
}

ip::address_v6 v6_at(std::string_view s, std::size_t at) {
  ip::address_v6::bytes_type b;
  std::copy_n(s.begin() + static_cast<std::ptrdiff_t>(at), b.size(), b.begin());
  return ip::address_v6(b);
}

// The family/protocol bytes the spec defines (any other "must be rejected
// as invalid by receivers"), with their address block sizes.
std::optional<std::size_t> v2_address_bytes(unsigned char family) {
  switch (family) {
    case 0x00: return 0;                  // UNSPEC
    case 0x11: case 0x12: return 12;      // TCP, UDP over IPv4
    case 0x21: case 0x22: return 36;      // TCP, UDP over IPv6
    case 0x31: case 0x32: return 216;     // UNIX stream, datagram
    default: return std::nullopt;
  }
}

ProxyParse parse_v2(std::string_view in, std::size_t max_bytes, const char* not_v2) {
  if (!agrees(in, kV2Signature)) return invalid(not_v2);
  if (in.size() < 13) return need_more();
  const auto version_command = static_cast<unsigned char>(in[12]);
  if (version_command >> 4 != 2) return invalid("v2 bad version");
  const bool proxy = (version_command & 0x0f) == 1;
  if (!proxy && (version_command & 0x0f) != 0) return invalid("v2 bad command");
  if (in.size() < 14) return need_more();
  // Checked for LOCAL too, whose family the receiver otherwise ignores: a
  // byte the spec never defines is rejected whatever the command.
  const auto family = static_cast<unsigned char>(in[13]);
  const auto address_bytes = v2_address_bytes(family);
  if (!address_bytes) return invalid("v2 bad family");
  if (in.size() < kV2FixedBytes) return need_more();
  const std::size_t total = kV2FixedBytes + be16(in, 14);
  if (total > max_bytes) return invalid("v2 length exceeds the limit");
  if (proxy && total < kV2FixedBytes + *address_bytes) return invalid("v2 length shorter than its addresses");
  if (in.size() < total) return need_more();

  ProxyHeader h;
  h.version = ProxyHeader::Version::v2;
  h.length = total;
  // LOCAL and UNSPEC carry no address we can place, so what follows is
  // opaque to us and skipped whole, as the spec has receivers do.
  if (!proxy || family == 0x00) {
    h.local = true;
    return {Status::done, h, ""};
  }
  // TLVs: each must end inside the header, or the sender and we disagree on
  // where its data starts.
  for (std::size_t at = kV2FixedBytes + *address_bytes; at < total;) {
    if (total - at < 3 || total - at - 3 < be16(in, at + 1)) return invalid("v2 bad TLV");
    at += 3 + be16(in, at + 1);
  }
  // UDP and UNIX clients: a TCP echo server cannot use their addresses and,
  // as the spec asks of a receiver without the family, takes the
  // connection's own (the balancer is trusted, the header well formed).
  if (family == 0x11) {
    h.source = tcp::endpoint(v4_at(in, 16), be16(in, 24));
    h.destination = tcp::endpoint(v4_at(in, 20), be16(in, 26));
  } else if (family == 0x21) {
    h.source = tcp::endpoint(v6_at(in, 16), be16(in, 48));
    h.destination = tcp::endpoint(v6_at(in, 32), be16(in, 50));
  } else {
    h.local = true;
  }
  return {Status::done, h, ""};
}

// The text of `a` in the family the header uses, without a zone id (the
// spec's text has none, and our parser rejects it).
std::string address_for(const ip::address& a, bool v4) {
  if (v4) return a.to_v4().to_string();
  if (a.is_v4()) return ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_string();
  return ip::address_v6(a.to_v6().to_bytes()).to_string();
}

void put16(std::string& out, std::size_t v) {
  out += static_cast<char>(v >> 8 & 0xff);
  out += static_cast<char>(v & 0xff);
}

void put_bytes(std::string& out, const ip::address& a, bool v4) {
  if (v4) {
    const auto b = a.to_v4().to_bytes();
    out.append(b.begin(), b.end());
  } else {
    const auto b = a.is_v4() ? ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes() : a.to_v6().to_bytes();
    out.append(b.begin(), b.end());
  }
}

}  // namespace

ProxyParse parse_proxy_header(std::string_view bytes, ProxyProtocol accept, std::size_t max_bytes) {
  // Nothing past the limit is looked at, so once `max_bytes` have come the
  // answer, problem included, is the same however many more come.
  bytes = bytes.substr(0, max_bytes);
  ProxyParse p;
  switch (accept) {
    case ProxyProtocol::off:
      return invalid("PROXY protocol is off on this listener");
    case ProxyProtocol::v1:
      p = parse_v1(bytes, max_bytes);
      break;
    case ProxyProtocol::v2:
      p = parse_v2(bytes, max_bytes, "not a PROXY v2 header");
      break;
    case ProxyProtocol::any:
      // The first byte decides: CR begins only the v2 signature, 'P' only "PROXY ".
      if (bytes.empty()) {
        p = need_more();
      } else if (bytes[0] == kV2Signature[0]) {
        p = parse_v2(bytes, max_bytes, "not a PROXY header");
      } else if (bytes[0] == 'P') {
        p = parse_v1(bytes, max_bytes);
      } else {
        return invalid("not a PROXY header");
      }
      break;
  }
  // Whatever the version: waiting for more than max_bytes is never allowed.
  if (p.status == Status::need_more && bytes.size() >= max_bytes) return invalid("too long");
  return p;
}

std::string make_proxy_v1(const tcp::endpoint& src, const tcp::endpoint& dst) {
  const bool v4 = src.address().is_v4() && dst.address().is_v4();
  std::string out = v4 ? "PROXY TCP4 " : "PROXY TCP6 ";
  out += address_for(src.address(), v4) + ' ' + address_for(dst.address(), v4) + ' ' +
         std::to_string(src.port()) + ' ' + std::to_string(dst.port()) + "\r\n";
  return out;
}

std::string make_proxy_v2(const tcp::endpoint* src, const tcp::endpoint* dst, std::string_view tlvs) {
  if ((src == nullptr) != (dst == nullptr))
    throw std::invalid_argument("make_proxy_v2: give both endpoints (PROXY) or neither (LOCAL)");
  const bool v4 = src && src->address().is_v4() && dst->address().is_v4();
  const std::size_t address_bytes = !src ? 0 : v4 ? 12 : 36;
  if (address_bytes + tlvs.size() > 0xffff)
    throw std::invalid_argument("make_proxy_v2: the TLVs do not fit the 16-bit length");
  std::string out(kV2Signature);
  out += static_cast<char>(src ? 0x21 : 0x20);
  out += static_cast<char>(!src ? 0x00 : v4 ? 0x11 : 0x21);
  put16(out, address_bytes + tlvs.size());
  if (src) {
    put_bytes(out, src->address(), v4);
    put_bytes(out, dst->address(), v4);
    put16(out, src->port());
    put16(out, dst->port());
  }
  out += tlvs;
  return out;
}

}  // namespace shoal
