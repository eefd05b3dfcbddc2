// Small blocking and asynchronous TCP clients for the black-box tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace shoal::test {

namespace asio = boost::asio;
using asio::ip::tcp;

inline std::vector<char> random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<char> v(n);
  for (auto& c : v) c = static_cast<char>(rng() & 0xff);
  return v;
}

inline tcp::endpoint loopback(std::uint16_t port) {
  return {asio::ip::make_address("127.0.0.1"), port};
}

// Sets SO_RCVTIMEO/SO_SNDTIMEO so that a blocking call in a test cannot hang.
inline void set_timeouts(tcp::socket& s, std::chrono::milliseconds t) {
  timeval tv{static_cast<time_t>(t.count() / 1000), static_cast<suseconds_t>((t.count() % 1000) * 1000)};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Blocking helpers on the native descriptor, so that SO_RCVTIMEO bounds every
// wait (Asio's synchronous calls poll again after a timeout and would hang).
inline bool send_all(tcp::socket& s, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(s.native_handle(), data, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Reads exactly n bytes unless the peer closes, fails or the timeout passes.
inline std::string recv_exact(tcp::socket& s, std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(s.native_handle(), out.data() + got, n - got, 0);
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

// Sends `payload` and reads the same number of bytes back; shorter on error
// or timeout.
inline std::string echo_once(tcp::socket& s, const std::string& payload) {
  if (!send_all(s, payload.data(), payload.size())) return {};
  return recv_exact(s, payload.size());
}

enum class PeerState { closed, reset, open_after_timeout, data };

// Waits for the server to close the connection (within the socket timeout).
inline PeerState wait_peer_close(tcp::socket& s) {
  char c;
  const ssize_t r = ::recv(s.native_handle(), &c, 1, 0);
  if (r == 0) return PeerState::closed;
  if (r > 0) return PeerState::data;
  if (errno == ECONNRESET) return PeerState::reset;
  return PeerState::open_after_timeout;
}

inline bool peer_closed(tcp::socket& s) {
  const PeerState st = wait_peer_close(s);
  return st == PeerState::closed || st == PeerState::reset;
}

inline tcp::socket connect_to(asio::io_context& ioc, std::uint16_t port,
                              std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  tcp::socket s(ioc);
  s.connect(loopback(port));
  set_timeouts(s, timeout);
  return s;
}

}  // namespace shoal::test
