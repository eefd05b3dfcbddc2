// Address ranges in CIDR notation, for settings such as `proxy_trusted` (the
// balancers allowed to send a PROXY header), and the strict address text
// parsers they and the PROXY v1 parser share.
//
// A CidrSet is built once from config and then only read: contains() is a
// scan of a few 17-byte entries, with IPv4 kept in its IPv4-mapped IPv6 form
// so that 10.0.0.1 and ::ffff:10.0.0.1 are the same client whichever way the
// range was written.
//
// Thread safety: CidrSet::parse and the free functions may be called from
// any thread; a CidrSet is not modified concurrently with anything, and
// const members may be called from any number of threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace shoal {

// Strict address text, as inet_pton(3) takes it: an IPv4 dotted quad (four
// decimal octets, no leading zeros), IPv6 text (embedded IPv4 allowed, no
// zone id). No allocation; nullopt for anything else.
std::optional<boost::asio::ip::address_v4> parse_ipv4_text(std::string_view text) noexcept;
std::optional<boost::asio::ip::address_v6> parse_ipv6_text(std::string_view text) noexcept;

struct Cidr {
  boost::asio::ip::address network;
  unsigned prefix = 0;
};

class CidrSet {
 public:
  // "127.0.0.0/8", "::1/128", "10.1.2.3" (one host), "::ffff:10.0.0.0/104".
  // Throws std::invalid_argument naming the text when it is not a range,
  // including a network with bits set beyond its prefix ("10.0.0.1/8"): an
  // operator who wrote that meant either a host or 10.0.0.0/8, and guessing
  // would trust the wrong machines.
  static Cidr parse(std::string_view text);

  void add(const Cidr& cidr);
  // IPv4-mapped IPv6 addresses match their IPv4 form, and vice versa.
  bool contains(const boost::asio::ip::address& address) const;
  bool empty() const { return entries_.empty(); }
  // "127.0.0.0/8, ::1/128" as added (empty when nothing is), for logs and
  // --print-config.
  std::string to_string() const;

 private:
  struct Entry {
    std::array<unsigned char, 16> bytes;  // IPv6, IPv4 mapped
    unsigned prefix;                      // over the 128 bits
  };
  std::vector<Cidr> cidrs_;  // as given, for to_string()
  std::vector<Entry> entries_;
};

// The default `proxy_trusted`: 127.0.0.0/8 and ::1/128.
CidrSet loopback_cidrs();

}  // namespace shoal
