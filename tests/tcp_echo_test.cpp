// Black-box tests of TCP echo: the real shoald on ephemeral loopback ports.
#include <signal.h>

#include <array>
#include <memory>
#include <regex>
#include <thread>

#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include "echo_client.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;

std::string config_yaml(const std::string& sharding, const std::string& listener_extra = "",
                        const std::string& top_extra = "", const std::string& drain = "2s") {
  return "shards: 2\n"
         "sharding: " + sharding + "\n" + top_extra +
         "listeners:\n"
         "  - name: echo\n"
         "    protocol: tcp-echo\n"
         "    address: 127.0.0.1\n"
         "    port: 0\n" + listener_extra +
         "shutdown:\n"
         "  drain_timeout: " + drain + "\n";
}

// One client connection of the concurrency test: writes its own random bytes
// while reading the echo, then compares.
struct EchoCheck : std::enable_shared_from_this<EchoCheck> {
  tcp::socket socket;
  std::vector<char> sent;
  std::vector<char> received;
  bool ok = false;
  std::string error;

  EchoCheck(asio::io_context& ioc, std::size_t size, std::uint32_t seed)
      : socket(ioc), sent(random_bytes(size, seed)), received(size) {}

  void run(const tcp::endpoint& ep) {
    socket.async_connect(ep, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) {
        self->error = "connect: " + ec.message();
        return;
      }
      asio::async_write(self->socket, asio::buffer(self->sent),
                        [self](boost::system::error_code wec, std::size_t) {
                          if (wec) self->error = "write: " + wec.message();
                        });
      asio::async_read(self->socket, asio::buffer(self->received),
                       [self](boost::system::error_code rec, std::size_t) {
                         if (rec) {
                           self->error = "read: " + rec.message();
                           return;
                         }
                         self->ok = self->received == self->sent;
                         if (!self->ok) self->error = "echoed bytes differ";
                       });
    });
  }
};

class ShardingPolicy : public ::testing::TestWithParam<std::string> {};

TEST_P(ShardingPolicy, ThousandConnectionsEchoTheirOwnBytesAcrossBothShards) {
  ShoaldProcess shoald({.yaml = config_yaml(GetParam())});
  const auto ep = loopback(shoald.port("echo"));

  asio::io_context ioc;
  std::vector<std::shared_ptr<EchoCheck>> checks;
  constexpr int kConnections = 1000;
  for (int i = 0; i < kConnections; ++i) {
    checks.push_back(std::make_shared<EchoCheck>(ioc, 64 * 1024, static_cast<std::uint32_t>(i + 1)));
    checks.back()->run(ep);
  }
  ioc.run_for(60s);

  int good = 0;
  std::string first_error;
  for (const auto& c : checks) {
    if (c->ok) ++good;
    else if (first_error.empty()) first_error = c->error;
  }
  EXPECT_EQ(good, kConnections) << "first failure: " << first_error;
  checks.clear();

  shoald.signal(SIGTERM);
  ASSERT_EQ(shoald.wait_exit(10s), 0) << shoald.output();
  const auto served = served_per_shard(shoald.output());
  ASSERT_EQ(served.size(), 2u) << shoald.output();
  EXPECT_EQ(served[0] + served[1], static_cast<std::uint64_t>(kConnections));
  // Both shards took a real share: the kernel's hash or the least-loaded
  // choice, not everything on one loop.
  EXPECT_GT(served[0], kConnections / 10u);
  EXPECT_GT(served[1], kConnections / 10u);
}

INSTANTIATE_TEST_SUITE_P(Policies, ShardingPolicy, ::testing::Values("reuseport", "dispatch"),
                         [](const auto& param_info) { return param_info.param; });

TEST(TcpEcho, HalfCloseEchoesEverythingThenCloses) {
  ShoaldProcess shoald({.yaml = config_yaml("reuseport")});
  asio::io_context ioc;
  auto s = connect_to(ioc, shoald.port("echo"));
  const auto payload = random_bytes(300 * 1024, 7);
  // Write from another thread: shoald echoes while we send, and a reader
  // that waited for the writer could deadlock on full buffers.
  std::thread writer([&] {
    send_all(s, payload.data(), payload.size());
    s.shutdown(tcp::socket::shutdown_send);
  });

  std::vector<char> back;
  std::array<char, 16384> buf;
  ssize_t n;
  while ((n = ::recv(s.native_handle(), buf.data(), buf.size(), 0)) > 0) {
    back.insert(back.end(), buf.data(), buf.data() + n);
  }
  writer.join();
  EXPECT_EQ(n, 0) << "expected an orderly close after the echo";
  EXPECT_EQ(back.size(), payload.size());
  EXPECT_TRUE(back == payload);
}

// A last message with the FIN right behind it reaches a waiting connection
// as one readiness event (shoald is stopped while both arrive, so its next
// epoll_wait sees them together): the echo comes back and shoald closes at
// once. A read shorter than asked for does not mean the socket is empty; a
// server that waited for another edge would hold the connection until its
// idle_timeout (5 minutes here).
TEST(TcpEcho, LastMessageAndFinInOneWakeUpAreEchoedThenClosed) {
  ShoaldProcess shoald({.yaml = config_yaml("reuseport", "    idle_timeout: 5m\n")});
  asio::io_context ioc;
  std::vector<tcp::socket> conns;
  for (int i = 0; i < 8; ++i) {
    conns.push_back(connect_to(ioc, shoald.port("echo"), 3s));
    ASSERT_EQ(echo_once(conns.back(), "hello " + std::to_string(i)), "hello " + std::to_string(i));
  }
  shoald.signal(SIGSTOP);
  for (auto& s : conns) {
    ASSERT_TRUE(send_all(s, "bye!", 4));
    s.shutdown(tcp::socket::shutdown_send);
  }
  std::this_thread::sleep_for(50ms);  // both have arrived
  shoald.signal(SIGCONT);
  for (auto& s : conns) {
    EXPECT_EQ(recv_exact(s, 4), "bye!");
    EXPECT_EQ(wait_peer_close(s), PeerState::closed);
  }
}

TEST(TcpEcho, ClientResetMidStreamThenNextClientIsServed) {
  ShoaldProcess shoald({.yaml = config_yaml("reuseport")});
  asio::io_context ioc;
  for (int round = 0; round < 20; ++round) {
    auto s = connect_to(ioc, shoald.port("echo"));
    const auto payload = random_bytes(256 * 1024, static_cast<std::uint32_t>(round));
    boost::system::error_code ec;
    s.non_blocking(true);
    s.write_some(asio::buffer(payload), ec);
    // RST while shoald is still echoing (we read nothing).
    s.set_option(asio::socket_base::linger(true, 0));
    s.close();
  }
  auto s = connect_to(ioc, shoald.port("echo"));
  EXPECT_EQ(echo_once(s, "still here"), "still here");
}

TEST(TcpEcho, IdleConnectionIsClosedActiveOneIsNot) {
  ShoaldProcess shoald({.yaml = config_yaml("reuseport", "    idle_timeout: 400ms\n")});
  asio::io_context ioc;
  auto idle = connect_to(ioc, shoald.port("echo"));
  auto active = connect_to(ioc, shoald.port("echo"));

  const auto start = std::chrono::steady_clock::now();
  // The active one talks every 100 ms for 1.2 s: three idle timeouts.
  while (std::chrono::steady_clock::now() - start < 1200ms) {
    ASSERT_EQ(echo_once(active, "tick"), "tick");
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(peer_closed(idle));
  EXPECT_EQ(echo_once(active, "alive"), "alive");
}

TEST(TcpEcho, ConnectionAboveMaxConnectionsIsClosedOthersKeepEchoing) {
  ShoaldProcess shoald({.yaml = config_yaml("dispatch", "    max_connections: 5\n")});
  asio::io_context ioc;
  std::vector<tcp::socket> held;
  for (int i = 0; i < 5; ++i) {
    held.push_back(connect_to(ioc, shoald.port("echo")));
    ASSERT_EQ(echo_once(held.back(), "hello"), "hello");
  }
  auto extra = connect_to(ioc, shoald.port("echo"));
  EXPECT_TRUE(peer_closed(extra));
  for (auto& s : held) EXPECT_EQ(echo_once(s, "still"), "still");

  // A slot freed is a slot given: closing one lets a new client in.
  held.pop_back();
  std::this_thread::sleep_for(100ms);
  auto again = connect_to(ioc, shoald.port("echo"));
  EXPECT_EQ(echo_once(again, "welcome"), "welcome");
}

TEST(TcpEcho, DescriptorExhaustionBacksOffWithoutSpinningAndRecovers) {
  ShoaldProcess shoald({.yaml = config_yaml("reuseport", "",
                                            "limits:\n  reserved_descriptors: 0\n"),
                        .nofile = 64});
  asio::io_context ioc;
  std::vector<tcp::socket> held;
  std::vector<tcp::socket> waiting;
  // Connect until a connection is not served: shoald has run out of
  // descriptors. The kernel still completes handshakes into the backlog.
  for (int i = 0; i < 100 && waiting.empty(); ++i) {
    auto s = connect_to(ioc, shoald.port("echo"), 500ms);
    if (echo_once(s, "x") == "x") held.push_back(std::move(s));
    else waiting.push_back(std::move(s));
  }
  ASSERT_FALSE(waiting.empty()) << "never ran out of descriptors";
  ASSERT_GT(held.size(), 20u);
  for (int i = 0; i < 30; ++i) waiting.push_back(connect_to(ioc, shoald.port("echo"), 500ms));

  const auto cpu_before = shoald.cpu_time();
  std::this_thread::sleep_for(3s);
  const auto cpu_used = shoald.cpu_time() - cpu_before;
  // A spinning accept loop burns ~3 s of CPU here; backing off burns ~0.
  EXPECT_LT(cpu_used, 300ms) << "CPU time during 3 s of descriptor exhaustion";
  for (auto& s : held) EXPECT_EQ(echo_once(s, "held"), "held");
  EXPECT_TRUE(shoald.wait_for_output("descriptors exhausted", 1s));

  held.clear();
  waiting.clear();
  // Recovery by itself: within the longest backoff a new client is served.
  auto s = connect_to(ioc, shoald.port("echo"), 3s);
  EXPECT_EQ(echo_once(s, "back"), "back");
}

TEST(TcpEcho, SigtermDrainsThenExitsZeroWithinDrainTimeout) {
  ShoaldProcess shoald({.yaml = config_yaml("reuseport")});  // drain_timeout: 2s
  asio::io_context ioc;
  std::vector<tcp::socket> open;
  for (int i = 0; i < 10; ++i) {
    open.push_back(connect_to(ioc, shoald.port("echo")));
    ASSERT_EQ(echo_once(open.back(), "hi"), "hi");
  }
  const auto port = shoald.port("echo");
  const auto start = std::chrono::steady_clock::now();
  shoald.signal(SIGTERM);
  ASSERT_TRUE(shoald.wait_for_output("draining 10 connections", 2s)) << shoald.output();
  // Open connections are still served while draining...
  EXPECT_EQ(echo_once(open[0], "during drain"), "during drain");
  // ...and new ones are not accepted.
  tcp::socket fresh(ioc);
  boost::system::error_code ec;
  for (int i = 0; i < 50; ++i) {
    fresh = tcp::socket(ioc);
    fresh.connect(loopback(port), ec);
    if (ec) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(ec, asio::error::connection_refused);

  EXPECT_EQ(shoald.wait_exit(5s), 0) << shoald.output();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 2s + 1500ms);
  EXPECT_GE(took, 1900ms);  // it waited for the drain timeout
  // The held connections were closed by the drain.
  EXPECT_TRUE(peer_closed(open[1]));
}

TEST(TcpEcho, SigtermWithoutConnectionsExitsAtOnceAndSecondSignalCutsDrainShort) {
  {
    ShoaldProcess shoald({.yaml = config_yaml("reuseport")});
    const auto start = std::chrono::steady_clock::now();
    shoald.signal(SIGTERM);
    EXPECT_EQ(shoald.wait_exit(5s), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  }
  {
    ShoaldProcess shoald({.yaml = config_yaml("reuseport", "", "", "30s")});
    asio::io_context ioc;
    auto s = connect_to(ioc, shoald.port("echo"));
    ASSERT_EQ(echo_once(s, "hi"), "hi");
    const auto start = std::chrono::steady_clock::now();
    shoald.signal(SIGTERM);
    ASSERT_TRUE(shoald.wait_for_output("draining", 2s));
    shoald.signal(SIGINT);
    EXPECT_EQ(shoald.wait_exit(5s), 0) << shoald.output();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  }
}

TEST(TcpEcho, SigpipeDoesNotKillTheDaemon) {
  ShoaldProcess shoald({.yaml = config_yaml("reuseport")});
  asio::io_context ioc;
  // Clients that send a lot and vanish leave shoald writing to dead sockets.
  for (int i = 0; i < 10; ++i) {
    auto s = connect_to(ioc, shoald.port("echo"));
    const auto payload = random_bytes(1 << 20, static_cast<std::uint32_t>(i));
    boost::system::error_code ec;
    s.non_blocking(true);
    s.write_some(asio::buffer(payload), ec);
    s.close();
  }
  auto s = connect_to(ioc, shoald.port("echo"));
  EXPECT_EQ(echo_once(s, "alive"), "alive");
}

}  // namespace
}  // namespace shoal::test
