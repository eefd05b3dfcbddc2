// Per-client limits: the per-IP table and the new-connection token bucket in
// process, then the real shoald refusing a client above
// max_connections_per_ip or above its listener's new-connection rate, with
// other clients still served, the refusals counted in /metrics and the
// limits raised by a reload. Clients bind 127.0.0.2, 127.0.0.3 ... before
// connecting to act as different addresses.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "admin_client.hpp"
#include "runtime/client_limits.hpp"
#include "echo_client.hpp"
#include "shoald_process.hpp"
#include "sessions/tcp_echo_session.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;
namespace ip = boost::asio::ip;

// ---- in process: the per-IP table -------------------------------------------

TEST(PerIpCounts, CountsEachAddressUpToItsLimitAndForgetsItAtZero) {
  PerIpCounts counts;
  const auto a = ip::make_address("192.0.2.1");
  const auto b = ip::make_address("2001:db8::1");
  std::vector<PerIpCounts::Entry*> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(counts.try_acquire(a, 3));
    ASSERT_NE(held.back(), nullptr) << i;
  }
  EXPECT_EQ(counts.try_acquire(a, 3), nullptr);
  EXPECT_EQ(counts.count(a), 3u);
  // Another address, IPv6 included, has its own count.
  PerIpCounts::Entry* other = counts.try_acquire(b, 3);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(counts.addresses(), 2u);

  counts.release(held.back());
  held.pop_back();
  EXPECT_EQ(counts.count(a), 2u);
  held.push_back(counts.try_acquire(a, 3));
  EXPECT_NE(held.back(), nullptr);

  // A reload that lowers the limit refuses new ones, keeps the open ones.
  EXPECT_EQ(counts.try_acquire(a, 1), nullptr);
  EXPECT_EQ(counts.count(a), 3u);

  for (auto* e : held) counts.release(e);
  counts.release(other);
  EXPECT_EQ(counts.addresses(), 0u);
  EXPECT_EQ(counts.count(a), 0u);
}

TEST(PerIpCounts, IPv4MappedIPv6IsTheSameClientAsItsIPv4) {
  PerIpCounts counts;
  auto* v4 = counts.try_acquire(ip::make_address("10.1.2.3"), 2);
  auto* mapped = counts.try_acquire(ip::make_address("::ffff:10.1.2.3"), 2);
  ASSERT_NE(v4, nullptr);
  ASSERT_NE(mapped, nullptr);
  EXPECT_EQ(v4, mapped);
  EXPECT_EQ(counts.try_acquire(ip::make_address("10.1.2.3"), 2), nullptr);
  EXPECT_EQ(counts.count(ip::make_address("::ffff:10.1.2.3")), 2u);
  // Neighbours are other clients.
  EXPECT_EQ(counts.count(ip::make_address("10.1.2.4")), 0u);
  counts.release(v4);
  counts.release(mapped);
  EXPECT_EQ(counts.addresses(), 0u);
}

TEST(PerIpCounts, ConcurrentAcceptorsNeverGrantMoreThanTheLimit) {
  PerIpCounts counts;
  const auto client = ip::make_address("198.51.100.7");
  constexpr int kThreads = 4;
  constexpr std::uint64_t kMax = 100;
  std::atomic<std::uint64_t> granted{0};
  std::vector<std::vector<PerIpCounts::Entry*>> held(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Churn on other addresses in between, as other clients would.
      const auto mine = ip::make_address_v4(0x0a000000u + static_cast<unsigned>(t));
      for (int i = 0; i < 2000; ++i) {
        if (auto* e = counts.try_acquire(client, kMax)) {
          held[t].push_back(e);
          granted.fetch_add(1);
        }
        counts.release(counts.try_acquire(mine, 1));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(granted.load(), kMax);
  EXPECT_EQ(counts.count(client), kMax);
  for (auto& v : held)
    for (auto* e : v) counts.release(e);
  EXPECT_EQ(counts.addresses(), 0u);
}

// ---- in process: the new-connection token bucket ------------------------------

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kT0 = 5000 * kSecond;  // any steady-clock time

int takes(NewConnectionRate& rate, std::int64_t now, int tries) {
  int n = 0;
  for (int i = 0; i < tries; ++i) n += rate.try_take(now) ? 1 : 0;
  return n;
}

TEST(NewConnectionRate, BurstAtOnceThenOnePerIntervalNeverMoreThanTheBurst) {
  NewConnectionRate rate;
  rate.configure(10, 5);
  EXPECT_EQ(takes(rate, kT0, 50), 5);
  // One token every 100 ms.
  EXPECT_EQ(takes(rate, kT0 + kSecond / 10 - 1, 5), 0);
  EXPECT_EQ(takes(rate, kT0 + kSecond / 10, 5), 1);
  EXPECT_EQ(takes(rate, kT0 + 3 * kSecond / 10, 5), 2);
  // A long pause refills to the burst, not to rate x pause.
  EXPECT_EQ(takes(rate, kT0 + 60 * kSecond, 100), 5);
}

TEST(NewConnectionRate, BurstDefaultsToTheRateAndZeroRateIsUnlimited) {
  NewConnectionRate rate;
  EXPECT_EQ(takes(rate, kT0, 100000), 100000);
  rate.configure(20, 0);
  EXPECT_EQ(rate.burst(), 20u);
  EXPECT_EQ(takes(rate, kT0, 100), 20);
  EXPECT_EQ(takes(rate, kT0 + kSecond, 100), 20);
}

TEST(NewConnectionRate, AReloadThatChangesTheRateStartsFullOneThatDoesNotKeepsTheDebt) {
  NewConnectionRate rate;
  rate.configure(1, 1000);
  EXPECT_EQ(takes(rate, kT0, 2000), 1000);  // empty for the next 1000 s
  rate.configure(1, 1000);                  // unchanged: still empty
  EXPECT_EQ(takes(rate, kT0, 10), 0);
  rate.configure(100, 100);  // changed: full, not 1000 s in debt
  EXPECT_EQ(takes(rate, kT0, 1000), 100);
}

TEST(NewConnectionRate, ConcurrentAcceptorsShareOneBucket) {
  NewConnectionRate rate;
  rate.configure(1000, 300);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] { granted.fetch_add(takes(rate, kT0, 1000)); });
  for (auto& th : threads) th.join();
  EXPECT_EQ(granted.load(), 300);
}

// The per-IP entry pointer fits in what Connection had as padding: an idle
// TCP echo connection costs no more for it (the members are counted in
// tcp_echo_session.hpp: Connection 64 with its socket, the pending echo 8).
TEST(PerIpCounts, CountingCostsTheTcpEchoSessionNoBytes) {
  EXPECT_EQ(sizeof(TcpEchoSession), 72u);
}

// ---- the real shoald -----------------------------------------------------------

std::string limits_yaml(std::uint16_t admin, const std::string& sharding,
                        const std::string& listener) {
  return "shards: 2\n"
         "sharding: " + sharding + "\n"
         "listeners:\n"
         "  - name: echo\n"
         "    protocol: tcp-echo\n"
         "    address: 127.0.0.1\n"
         "    port: 0\n" + listener +
         "shutdown:\n"
         "  drain_timeout: 1s\n"
         "admin:\n"
         "  address: 127.0.0.1\n"
         "  port: " + std::to_string(admin) + "\n";
}

// A client connection from `source` (an address in 127.0.0.0/8).
tcp::socket connect_from(asio::io_context& ioc, const std::string& source, std::uint16_t port) {
  tcp::socket s(ioc);
  s.open(tcp::v4());
  s.bind({ip::make_address(source), 0});
  s.connect(loopback(port));
  set_timeouts(s, 3s);
  return s;
}

// Served: the connection echoes. Refused: closed before any byte comes back.
bool served(tcp::socket& s) { return echo_once(s, "ping") == "ping"; }

double rejected(const std::string& metrics, const char* reason) {
  return value_of(metrics, "shoal_connections_rejected_total", {{"listener", "echo"}, {"reason", reason}})
      .value_or(-1);
}

class PerIpLimit : public ::testing::TestWithParam<std::string> {};

TEST_P(PerIpLimit, AClientGetsItsLimitOthersAreServedAndAClosedSlotIsFree) {
  auto shoald = start_with_admin_port([](std::uint16_t admin) {
    return limits_yaml(admin, GetParam(), "    max_connections_per_ip: 3\n");
  });
  const std::uint16_t port = shoald->port("echo");
  asio::io_context ioc;

  // Five from 127.0.0.2: one after the other, each known served or refused
  // before the next, whichever shard the kernel or the dispatcher picks.
  std::vector<tcp::socket> first;
  for (int i = 0; i < 5; ++i) {
    first.push_back(connect_from(ioc, "127.0.0.2", port));
    if (i < 3) EXPECT_TRUE(served(first.back())) << i;
    else EXPECT_TRUE(peer_closed(first.back())) << i;
  }

  // Another address is another client.
  std::vector<tcp::socket> second;
  for (int i = 0; i < 3; ++i) {
    second.push_back(connect_from(ioc, "127.0.0.3", port));
    EXPECT_TRUE(served(second.back())) << i;
  }
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(served(first[i])) << i;

  // Closing one frees a slot for 127.0.0.2 once shoald has seen the close.
  first[0].close();
  scrape_until(shoald->admin_port(), [](const std::string& t) {
    return value_of(t, "shoal_connections_active", {{"listener", "echo"}}) == 5;
  });
  auto again = connect_from(ioc, "127.0.0.2", port);
  EXPECT_TRUE(served(again));
  auto over = connect_from(ioc, "127.0.0.2", port);
  EXPECT_TRUE(peer_closed(over));

  const std::string metrics = scrape_until(shoald->admin_port(), [](const std::string& t) {
    return value_of(t, "shoal_connections_rejected_total", {{"reason", "per_ip_limit"}}) == 3;
  });
  EXPECT_EQ(rejected(metrics, "per_ip_limit"), 3);
  EXPECT_EQ(rejected(metrics, "limit"), 0);
  EXPECT_EQ(rejected(metrics, "rate_limit"), 0);
  EXPECT_EQ(value_of(metrics, "shoal_connections_accepted_total", {{"listener", "echo"}}), 7);
  EXPECT_TRUE(shoald->wait_for_output(
      "refused a connection from 127.0.0.2: it has max_connections_per_ip (3) open", 2s))
      << shoald->output();
}

INSTANTIATE_TEST_SUITE_P(Policies, PerIpLimit, ::testing::Values("reuseport", "dispatch"),
                         [](const auto& param_info) { return param_info.param; });

// A plain request that asks to upgrade; the reply's first line, or "" when
// the connection was closed before any reply.
std::string upgrade_status_line(tcp::socket& s) {
  const std::string request =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  if (!send_all(s, request.data(), request.size())) return {};
  std::string reply;
  char c;
  while (reply.find("\r\n") == std::string::npos && ::recv(s.native_handle(), &c, 1, 0) == 1)
    reply += c;
  return reply.substr(0, reply.find("\r\n"));
}

TEST(PerIpLimitWebSocket, TheRefusedConnectionIsClosedBeforeAnyUpgrade) {
  auto shoald = start_with_admin_port([](std::uint16_t admin) {
    return "shards: 2\n"
           "listeners:\n"
           "  - name: ws\n"
           "    protocol: websocket-echo\n"
           "    address: 127.0.0.1\n"
           "    port: 0\n"
           "    max_connections_per_ip: 2\n"
           "admin:\n"
           "  address: 127.0.0.1\n"
           "  port: " + std::to_string(admin) + "\n";
  });
  const std::uint16_t port = shoald->port("ws");
  asio::io_context ioc;
  std::vector<tcp::socket> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(connect_from(ioc, "127.0.0.2", port));
    EXPECT_EQ(upgrade_status_line(open.back()), "HTTP/1.1 101 Switching Protocols") << i;
  }
  auto refused = connect_from(ioc, "127.0.0.2", port);
  EXPECT_EQ(upgrade_status_line(refused), "");
  auto other = connect_from(ioc, "127.0.0.4", port);
  EXPECT_EQ(upgrade_status_line(other), "HTTP/1.1 101 Switching Protocols");

  const std::string metrics = scrape_until(shoald->admin_port(), [](const std::string& t) {
    return value_of(t, "shoal_connections_rejected_total", {{"reason", "per_ip_limit"}}) == 1;
  });
  EXPECT_EQ(value_of(metrics, "shoal_connections_rejected_total",
                     {{"listener", "ws"}, {"reason", "per_ip_limit"}}),
            1);
  EXPECT_EQ(value_of(metrics, "shoal_connections_rejected_total",
                     {{"listener", "ws"}, {"reason", "handshake_failed"}}),
            0);
}

TEST(RateLimit, ABurstGetsAboutTheBurstServedTheRestRefusedThenServedAgain) {
  constexpr int kRate = 5;  // per second, burst the same
  constexpr int kConnects = 60;
  auto shoald = start_with_admin_port([](std::uint16_t admin) {
    return limits_yaml(admin, "reuseport",
                       "    max_new_connections_per_second: " + std::to_string(kRate) + "\n");
  });
  const std::uint16_t port = shoald->port("echo");
  asio::io_context ioc;

  // From several addresses: the bound is the listener's, not a client's.
  std::vector<tcp::socket> burst;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kConnects; ++i)
    burst.push_back(connect_from(ioc, "127.0.0." + std::to_string(2 + i % 4), port));
  int good = 0;
  for (auto& s : burst) good += served(s) ? 1 : 0;
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The burst at once, then one per 1/rate for as long as the burst took.
  EXPECT_GE(good, kRate);
  EXPECT_LE(good, kRate + static_cast<int>(took * kRate) + 1) << "in " << took << " s";

  std::string metrics = scrape_until(shoald->admin_port(), [&](const std::string& t) {
    return value_of(t, "shoal_connections_rejected_total", {{"reason", "rate_limit"}}) ==
           kConnects - good;
  });
  EXPECT_EQ(rejected(metrics, "rate_limit"), kConnects - good);
  EXPECT_EQ(rejected(metrics, "per_ip_limit"), 0);
  EXPECT_TRUE(shoald->wait_for_output("refused a new connection above max_new_connections_per_second 5 (burst 5)", 2s))
      << shoald->output();

  // Refused connections used no token, and the bucket refills: after a full
  // second, a burst's worth is served again while those served go on.
  std::this_thread::sleep_for(1100ms);
  for (int i = 0; i < kRate; ++i) {
    auto s = connect_from(ioc, "127.0.0.9", port);
    EXPECT_TRUE(served(s)) << i;
  }
  for (auto& s : burst)
    if (s.is_open() && echo_once(s, "x") == "x") --good;
  EXPECT_EQ(good, 0) << "every connection served in the burst is still served";
}

TEST(PerIpLimitReload, RaisingTheLimitLetsMoreInWithoutDroppingOpenOnes) {
  const auto yaml = [](std::uint16_t admin, int limit) {
    return limits_yaml(admin, "reuseport",
                       "    max_connections_per_ip: " + std::to_string(limit) + "\n");
  };
  std::uint16_t admin_port = 0;
  auto shoald = start_with_admin_port([&](std::uint16_t admin) {
    admin_port = admin;
    return yaml(admin, 2);
  });
  const std::uint16_t port = shoald->port("echo");
  asio::io_context ioc;
  std::vector<tcp::socket> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(connect_from(ioc, "127.0.0.2", port));
    ASSERT_TRUE(served(open.back()));
  }
  auto refused = connect_from(ioc, "127.0.0.2", port);
  EXPECT_TRUE(peer_closed(refused));

  std::ofstream(shoald->config_path(), std::ios::trunc) << yaml(admin_port, 4);
  shoald->signal(SIGHUP);
  ASSERT_TRUE(shoald->wait_for_output("reloaded", 3s)) << shoald->output();
  for (int i = 0; i < 2; ++i) {
    open.push_back(connect_from(ioc, "127.0.0.2", port));
    EXPECT_TRUE(served(open.back())) << i;
  }
  auto over = connect_from(ioc, "127.0.0.2", port);
  EXPECT_TRUE(peer_closed(over));
  for (auto& s : open) EXPECT_TRUE(served(s));

  // Turned off: the fifth connection is served once the reload is applied
  // (the same log line as before says when, so poll, bounded).
  std::ofstream(shoald->config_path(), std::ios::trunc) << yaml(admin_port, 0);
  shoald->signal(SIGHUP);
  bool fifth_served = false;
  for (int i = 0; i < 60 && !fifth_served; ++i) {
    auto s = connect_from(ioc, "127.0.0.2", port);
    fifth_served = served(s);
    if (fifth_served) open.push_back(std::move(s));
    else std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(fifth_served) << shoald->output();
  for (auto& s : open) EXPECT_TRUE(served(s));
}

}  // namespace
}  // namespace shoal::test
