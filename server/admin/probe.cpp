#include "admin/probe.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace shoal {
namespace {

// Waits for `events` on fd until the deadline; false on timeout or error.
bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = poll(&p, 1, static_cast<int>(left.count()));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

int probe_health(const std::string& target, std::chrono::milliseconds timeout) {
  namespace ip = boost::asio::ip;
  // ADDRESS:PORT, with [v6]:PORT for IPv6.
  const auto colon = target.rfind(':');
  if (colon == std::string::npos || colon + 1 >= target.size()) {
    std::cerr << "shoald: --probe expects ADDRESS:PORT, got \"" << target << "\"\n";
    return 2;
  }
  std::string host = target.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  const ip::address address = ip::make_address(host, ec);
  int port = 0;
  try {
    port = std::stoi(target.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (ec || port <= 0 || port > 65535) {
    std::cerr << "shoald: --probe expects ADDRESS:PORT, got \"" << target << "\"\n";
    return 2;
  }
  const ip::tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  const int fd = socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::cerr << "shoald: probe: socket: " << std::strerror(errno) << "\n";
    return 1;
  }
  auto fail = [&](const std::string& why) {
    std::cerr << "shoald: probe " << target << ": " << why << "\n";
    close(fd);
    return 1;
  };
  if (connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) != 0 && errno != EINPROGRESS)
    return fail(std::strerror(errno));
  if (!wait_for(fd, POLLOUT, deadline)) return fail("connect timed out");
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return fail(std::strerror(err));

  const std::string request = "GET /healthz HTTP/1.1\r\nHost: " + target +
                              "\r\nUser-Agent: shoald-probe\r\nConnection: close\r\n\r\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    if (!wait_for(fd, POLLOUT, deadline)) return fail("send timed out");
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return fail(std::strerror(errno));
    if (n > 0) sent += static_cast<std::size_t>(n);
  }
  // Only the status line matters: "HTTP/1.1 200 ...".
  std::string response;
  char buf[512];
  while (response.find("\r\n") == std::string::npos && response.size() < 4096) {
    if (!wait_for(fd, POLLIN, deadline)) return fail("no answer in time");
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail(std::strerror(errno));
    }
    response.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.rfind("HTTP/1.", 0) == 0 && status_line.size() >= 12 &&
      status_line.compare(9, 3, "200") == 0) {
    return 0;
  }
  std::cerr << "shoald: probe " << target << ": unhealthy: "
            << (status_line.empty() ? std::string("no response") : status_line) << "\n";
  return 1;
}

}  // namespace shoal
