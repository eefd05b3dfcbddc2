// PROXY protocol on the real shoald: the header is read before anything
// else (TCP echo, the WebSocket upgrade, TLS), the client it names is the one
// the per-IP limits count, and every header that must be refused is refused
// and counted as rejected{reason="proxy_protocol"}.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "admin_client.hpp"
#include "echo_client.hpp"
#include "protocol/proxy_protocol.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;

tcp::endpoint client_at(const std::string& address, std::uint16_t port = 40000) {
  return {asio::ip::make_address(address), port};
}

std::string proxy_yaml(std::uint16_t admin, const std::string& mode,
                       const std::string& extra = "") {
  return "shards: 2\nlisteners:\n" +
         loopback_listener("echo", "tcp-echo",
                           "    proxy_protocol: " + mode + "\n" + extra) +
         loopback_listener("ws", "websocket-echo",
                           "    proxy_protocol: " + mode + "\n"
                           "    websocket:\n      handshake_timeout: 500ms\n") +
         "admin:\n  address: 127.0.0.1\n  port: " + std::to_string(admin) + "\n";
}

std::unique_ptr<ShoaldProcess> start_proxied(const std::string& mode, const std::string& extra = "") {
  return start_with_admin_port([&](std::uint16_t admin) { return proxy_yaml(admin, mode, extra); });
}

double refused_for_proxy(std::uint16_t admin, const std::string& listener) {
  return value_of(get(admin, "/metrics").body, "shoal_connections_rejected_total",
                  {{"listener", listener}, {"reason", "proxy_protocol"}})
      .value_or(-1);
}

TEST(ProxyProtocol, V1AndV2HeadersAreReadBeforeTheEchoEvenInTheSameSegment) {
  auto shoald = start_proxied("any");
  asio::io_context ioc;
  const tcp::endpoint dst = client_at("127.0.0.1", shoald->port("echo"));

  tcp::socket v1 = connect_to(ioc, shoald->port("echo"));
  ASSERT_TRUE(send_all(v1, make_proxy_v1(client_at("192.0.2.7"), dst).data(),
                       make_proxy_v1(client_at("192.0.2.7"), dst).size()));
  EXPECT_EQ(echo_once(v1, "after a v1 header"), "after a v1 header");

  // An AWS NLB sends the v2 header and the first data bytes together: the
  // echo must be exactly the data, nothing of the header.
  const tcp::endpoint src = client_at("2001:db8::5");
  const tcp::endpoint dst6 = client_at("2001:db8::1", 7000);
  const std::string together = make_proxy_v2(&src, &dst6, std::string("\x04\x00\x02zz", 5)) + "hello";
  tcp::socket v2 = connect_to(ioc, shoald->port("echo"));
  ASSERT_TRUE(send_all(v2, together.data(), together.size()));
  EXPECT_EQ(recv_exact(v2, 5), "hello");
  EXPECT_EQ(echo_once(v2, "and more"), "and more");

  // A v2 LOCAL header (the balancer's health check) is served.
  tcp::socket local = connect_to(ioc, shoald->port("echo"));
  const std::string health = make_proxy_v2(nullptr, nullptr);
  ASSERT_TRUE(send_all(local, health.data(), health.size()));
  EXPECT_EQ(echo_once(local, "health"), "health");
  EXPECT_EQ(refused_for_proxy(shoald->admin_port(), "echo"), 0);
}

TEST(ProxyProtocol, TheHeadersClientIsTheOneThePerIpLimitCounts) {
  auto shoald = start_proxied("v2", "    max_connections_per_ip: 1\n");
  asio::io_context ioc;
  const auto open_as = [&](const std::string& address) {
    tcp::socket s = connect_to(ioc, shoald->port("echo"));
    const tcp::endpoint src = client_at(address);
    const tcp::endpoint dst = client_at("127.0.0.1", shoald->port("echo"));
    const std::string header = make_proxy_v2(&src, &dst);
    send_all(s, header.data(), header.size());
    return s;
  };
  // All three come from 127.0.0.1, the "balancer"; the limit of one per
  // client applies to the addresses in their headers.
  tcp::socket first = open_as("198.51.100.1");
  ASSERT_EQ(echo_once(first, "one"), "one");
  tcp::socket second = open_as("198.51.100.1");
  EXPECT_TRUE(peer_closed(second)) << "a second connection of 198.51.100.1";
  tcp::socket other = open_as("198.51.100.2");
  EXPECT_EQ(echo_once(other, "two"), "two");
  EXPECT_TRUE(shoald->wait_for_output("refused a connection from 198.51.100.1", 2s))
      << shoald->output();
  EXPECT_EQ(value_of(get(shoald->admin_port(), "/metrics").body,
                     "shoal_connections_rejected_total",
                     {{"listener", "echo"}, {"reason", "per_ip_limit"}}),
            1);
}

TEST(ProxyProtocol, MissingMalformedWrongVersionAndUntrustedAreRefusedAndCounted) {
  auto shoald = start_proxied("v2");
  asio::io_context ioc;
  const std::uint16_t port = shoald->port("echo");
  const std::vector<std::string> bad = {
      "hello, no header\r\n",                      // missing
      "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n",    // v1 where v2 is required
      std::string("\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff", 16),  // v2 longer than the limit
      std::string("\x16\x03\x01\x02\x00\x01", 6),  // a TLS ClientHello
  };
  for (const std::string& bytes : bad) {
    tcp::socket s = connect_to(ioc, port);
    ASSERT_TRUE(send_all(s, bytes.data(), bytes.size()));
    EXPECT_TRUE(peer_closed(s)) << "sent: " << bytes;
  }
  EXPECT_TRUE(shoald->wait_for_output("refused a connection from 127.0.0.1", 2s)) << shoald->output();
  EXPECT_EQ(refused_for_proxy(shoald->admin_port(), "echo"), static_cast<double>(bad.size()));

  // A WebSocket client that sends nothing is closed at the handshake
  // deadline (500 ms), and counted too.
  tcp::socket silent = connect_to(ioc, shoald->port("ws"), 3s);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(peer_closed(silent));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2500ms);
  EXPECT_EQ(refused_for_proxy(shoald->admin_port(), "ws"), 1);
}

TEST(ProxyProtocol, OnlyTrustedPeersMaySendAHeader) {
  // Loopback is not trusted here: the header is refused whatever it says.
  auto shoald = start_proxied("any", "    proxy_trusted: [10.0.0.0/8, \"2001:db8::/32\"]\n");
  asio::io_context ioc;
  tcp::socket s = connect_to(ioc, shoald->port("echo"));
  const std::string header =
      make_proxy_v1(client_at("192.0.2.9"), client_at("127.0.0.1", shoald->port("echo")));
  send_all(s, header.data(), header.size());
  EXPECT_TRUE(peer_closed(s));
  EXPECT_TRUE(shoald->wait_for_output("not accepted from this address (proxy_trusted)", 2s))
      << shoald->output();
  EXPECT_EQ(refused_for_proxy(shoald->admin_port(), "echo"), 1);

  // proxy_trusted reloads live: with loopback trusted the same header works.
  std::ofstream(shoald->config_path(), std::ios::trunc)
      << proxy_yaml(shoald->admin_port(), "any", "    proxy_trusted: [127.0.0.1]\n");
  shoald->signal(SIGHUP);
  ASSERT_TRUE(shoald->wait_for_output("reloaded", 5s)) << shoald->output();
  tcp::socket again = connect_to(ioc, shoald->port("echo"));
  send_all(again, header.data(), header.size());
  EXPECT_EQ(echo_once(again, "trusted now"), "trusted now");
}

// Under `dispatch` one shard accepts and the header is read on the shard
// that will serve the connection.
TEST(ProxyProtocol, DispatchModeReadsTheHeaderOnTheServingShard) {
  auto shoald = start_with_admin_port([](std::uint16_t admin) {
    return "sharding: dispatch\n" + proxy_yaml(admin, "v1", "    max_connections_per_ip: 4\n");
  });
  asio::io_context ioc;
  std::vector<tcp::socket> open;
  for (int i = 0; i < 8; ++i) {
    tcp::socket s = connect_to(ioc, shoald->port("echo"));
    const std::string header =
        make_proxy_v1(client_at("192.0.2." + std::to_string(1 + i % 2)), client_at("127.0.0.1", 7000));
    ASSERT_TRUE(send_all(s, header.data(), header.size()));
    ASSERT_EQ(echo_once(s, "dispatched " + std::to_string(i)), "dispatched " + std::to_string(i));
    open.push_back(std::move(s));
  }
  // Four of each client are open; a fifth of 192.0.2.1 is one too many.
  tcp::socket fifth = connect_to(ioc, shoald->port("echo"));
  const std::string header = make_proxy_v1(client_at("192.0.2.1"), client_at("127.0.0.1", 7000));
  send_all(fifth, header.data(), header.size());
  EXPECT_TRUE(peer_closed(fifth));
  const std::string metrics = get(shoald->admin_port(), "/metrics").body;
  EXPECT_EQ(value_of(metrics, "shoal_connections_active", {{"listener", "echo"}, {"shard", "0"}}).value_or(0) +
                value_of(metrics, "shoal_connections_active", {{"listener", "echo"}, {"shard", "1"}}).value_or(0),
            8);
  EXPECT_GE(value_of(metrics, "shoal_connections_active", {{"listener", "echo"}, {"shard", "1"}}).value_or(0), 1)
      << "the connections are spread over both shards";
}

TEST(ProxyProtocolConfig, BadRangesAndModesNameTheKey) {
  const auto check = [](const std::string& listener_extra) {
    const std::string path = write_temp_file(
        "listeners:\n" + loopback_listener("echo", "tcp-echo", listener_extra) + "admin: {port: 0}\n");
    return run_shoald({"--check", "--config", path});
  };
  RunResult r = check("    proxy_trusted: [10.0.0.1/8]\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("listeners[0].proxy_trusted[0]: \"10.0.0.1/8\" is not an address range"),
            std::string::npos)
      << r.output;
  r = check("    proxy_trusted: []\n");
  EXPECT_NE(r.output.find("listeners[0].proxy_trusted: must list at least one address range"),
            std::string::npos)
      << r.output;
  r = check("    proxy_protocol: v3\n");
  EXPECT_NE(r.output.find("listeners[0].proxy_protocol: \"v3\" is not one of off, v1, v2, any"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace shoal::test
