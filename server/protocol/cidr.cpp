#include "protocol/cidr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace shoal {

namespace ip = boost::asio::ip;

namespace {

// inet_pton(3) wants a NUL-terminated string; copying into a stack buffer
// keeps the parsers allocation-free. The character check first also keeps
// out what glibc would accept or stop at: an embedded NUL, a zone id ("%eth0").
bool to_c_string(std::string_view text, std::string_view allowed, char* out, std::size_t out_size) {
  if (text.empty() || text.size() >= out_size) return false;
  for (char c : text)
    if (allowed.find(c) == std::string_view::npos) return false;
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return true;
}

std::array<unsigned char, 16> mapped_bytes(const ip::address& a) {
  if (a.is_v4()) return ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes();
  return a.to_v6().to_bytes();
}

// Whether the first `prefix` bits of a and b are equal.
bool same_prefix(const std::array<unsigned char, 16>& a, const std::array<unsigned char, 16>& b,
                 unsigned prefix) {
  const unsigned whole = prefix / 8;
  if (!std::equal(a.begin(), a.begin() + whole, b.begin())) return false;
  if (prefix % 8 == 0) return true;
  const auto mask = static_cast<unsigned char>(0xff << (8 - prefix % 8));
  return (a[whole] & mask) == (b[whole] & mask);
}

std::invalid_argument bad_cidr(std::string_view text, const std::string& why) {
  return std::invalid_argument('"' + std::string(text) + "\" is not an address range: " + why);
}

}  // namespace

std::optional<ip::address_v4> parse_ipv4_text(std::string_view text) noexcept {
  char buf[16];  // "255.255.255.255"
  in_addr a{};
  if (!to_c_string(text, "0123456789.", buf, sizeof buf) || ::inet_pton(AF_INET, buf, &a) != 1)
    return std::nullopt;
  return ip::address_v4(ntohl(a.s_addr));
}

std::optional<ip::address_v6> parse_ipv6_text(std::string_view text) noexcept {
  char buf[INET6_ADDRSTRLEN];  // 45 characters and the NUL
  in6_addr a{};
  if (!to_c_string(text, "0123456789abcdefABCDEF:.", buf, sizeof buf) ||
      ::inet_pton(AF_INET6, buf, &a) != 1)
    return std::nullopt;
  ip::address_v6::bytes_type bytes;
  std::memcpy(bytes.data(), &a, bytes.size());
  return ip::address_v6(bytes);
}

Cidr CidrSet::parse(std::string_view text) {
  const std::size_t slash = text.find('/');
  const std::string_view host = text.substr(0, slash);
  Cidr cidr;
  unsigned max_prefix = 0;
  if (host.find(':') != std::string_view::npos) {
    const auto a = parse_ipv6_text(host);
    if (!a) throw bad_cidr(text, "\"" + std::string(host) + "\" is not an IPv6 address");
    cidr.network = *a;
    max_prefix = 128;
  } else {
    const auto a = parse_ipv4_text(host);
    if (!a) throw bad_cidr(text, "\"" + std::string(host) + "\" is not an IPv4 address");
    cidr.network = *a;
    max_prefix = 32;
  }
  cidr.prefix = max_prefix;
  if (slash != std::string_view::npos) {
    // Decimal, no sign, no leading zero: "/08" is a typo more often than
    // an octal eight.
    const std::string_view digits = text.substr(slash + 1);
    const bool decimal = !digits.empty() && digits.size() <= 3 &&
                         digits.find_first_not_of("0123456789") == std::string_view::npos &&
                         (digits.size() == 1 || digits[0] != '0');
    unsigned prefix = 0;
    for (char c : digits) prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    if (!decimal || prefix > max_prefix)
      throw bad_cidr(text, "the prefix length must be 0 to " + std::to_string(max_prefix));
    cidr.prefix = prefix;
  }
  // Host bits beyond the prefix mean the operator wrote something other
  // than what would be trusted.
  const auto bytes = mapped_bytes(cidr.network);
  auto network = bytes;
  for (unsigned bit = cidr.prefix + 128 - max_prefix; bit < 128; ++bit)
    network[bit / 8] = static_cast<unsigned char>(network[bit / 8] & ~(0x80u >> (bit % 8)));
  if (network != bytes) {
    const ip::address_v6 masked(network);
    const std::string shown =
        cidr.network.is_v4() ? ip::make_address_v4(ip::v4_mapped, masked).to_string() : masked.to_string();
    throw bad_cidr(text, "it has host bits set beyond /" + std::to_string(cidr.prefix) + " (the network is " +
                             shown + "/" + std::to_string(cidr.prefix) + ")");
  }
  return cidr;
}

void CidrSet::add(const Cidr& cidr) {
  cidrs_.push_back(cidr);
  entries_.push_back({mapped_bytes(cidr.network), cidr.network.is_v4() ? cidr.prefix + 96 : cidr.prefix});
}

bool CidrSet::contains(const ip::address& address) const {
  const auto bytes = mapped_bytes(address);
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return same_prefix(e.bytes, bytes, e.prefix); });
}

std::string CidrSet::to_string() const {
  std::string out;
  for (const Cidr& c : cidrs_) {
    if (!out.empty()) out += ", ";
    out += c.network.to_string() + "/" + std::to_string(c.prefix);
  }
  return out;
}

CidrSet loopback_cidrs() {
  CidrSet set;
  set.add({ip::make_address_v4("127.0.0.0"), 8});
  set.add({ip::address_v6::loopback(), 128});
  return set;
}

}  // namespace shoal
