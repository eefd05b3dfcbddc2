// Debian's haproxy in front of two shoald instances, with the shipped
// deploy/haproxy/haproxy.cfg (only its addresses and ports filled in):
// connections reach both, the PROXY v2 header makes per-IP limits apply to
// the real clients, and a rolling restart under load loses nothing.
//
// The two instances listen on 127.0.0.11 and 127.0.0.12 with the same port
// numbers, as two hosts would; HAProxy listens on 127.0.0.1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "admin_client.hpp"
#include "echo_client.hpp"
#include "raw_ws.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr const char* kHaproxy = "/usr/sbin/haproxy";
const char* const kAddress[2] = {"127.0.0.11", "127.0.0.12"};

bool bindable(const char* address, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, address, &a.sin_addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A port below the ephemeral range that is free on every one of `addresses`.
std::uint16_t free_port_on(std::initializer_list<const char*> addresses) {
  static std::mt19937 rng(static_cast<std::uint32_t>(getpid() * 7919u));
  for (int attempt = 0; attempt < 500; ++attempt) {
    const auto port = static_cast<std::uint16_t>(20000 + rng() % 12000);
    bool ok = true;
    for (const char* a : addresses) ok = ok && bindable(a, port);
    if (ok) return port;
  }
  throw std::runtime_error("no free port");
}

struct Ports {
  std::uint16_t echo = free_port_on({kAddress[0], kAddress[1]});
  std::uint16_t ws = free_port_on({kAddress[0], kAddress[1]});
  std::uint16_t admin = free_port_on({kAddress[0], kAddress[1]});
  std::uint16_t front_echo = free_port_on({"127.0.0.1"});
  std::uint16_t front_ws = free_port_on({"127.0.0.1"});
};

std::string instance_yaml(const char* address, const Ports& p, const std::string& spread) {
  const std::string a = address;
  return "shards: 2\n"
         "listeners:\n"
         "  - name: echo\n    protocol: tcp-echo\n    address: " + a +
         "\n    port: " + std::to_string(p.echo) +
         "\n    proxy_protocol: v2\n    max_connections_per_ip: 1\n"
         "  - name: ws\n    protocol: websocket-echo\n    address: " + a +
         "\n    port: " + std::to_string(p.ws) + "\n    proxy_protocol: v2\n"
         "shutdown:\n  drain_timeout: 10s\n  drain_spread: " + spread + "\n"
         "admin:\n  address: " + a + "\n  port: " + std::to_string(p.admin) + "\n";
}

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (std::size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size())
    text.replace(at, from.size(), to);
}

// deploy/haproxy/haproxy.cfg as shipped, with the lines it marks EDIT:
// filled in for loopback.
std::string haproxy_cfg(const Ports& p) {
  std::ifstream in(SHOAL_SOURCE_DIR "/deploy/haproxy/haproxy.cfg");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string cfg = ss.str();
  EXPECT_NE(cfg.find("send-proxy-v2"), std::string::npos);
  for (int i = 0; i < 2; ++i) {
    const std::string shipped = i == 0 ? "10.0.0.11" : "10.0.0.12";
    replace_all(cfg, shipped + ":7000", std::string(kAddress[i]) + ":" + std::to_string(p.echo));
    replace_all(cfg, shipped + ":7001", std::string(kAddress[i]) + ":" + std::to_string(p.ws));
  }
  replace_all(cfg, "port 7070", "port " + std::to_string(p.admin));
  // This host's descriptor limit (20000) is below what maxconn 200000 needs.
  replace_all(cfg, "maxconn 200000", "maxconn 4000");
  replace_all(cfg, "bind :7000", "bind 127.0.0.1:" + std::to_string(p.front_echo));
  replace_all(cfg, "bind :7001", "bind 127.0.0.1:" + std::to_string(p.front_ws));
  return cfg;
}

// Two shoald instances behind one HAProxy.
struct Deployment {
  explicit Deployment(const std::string& spread = "2s") {
    for (int i = 0; i < 2; ++i) {
      shoald[i] = std::make_unique<ShoaldProcess>(
          ShoaldProcess::Options{.yaml = instance_yaml(kAddress[i], ports, spread)});
    }
    const std::string cfg = write_temp_file(haproxy_cfg(ports), ".cfg");
    haproxy = std::make_unique<ShoaldProcess>(ShoaldProcess::Options{
        .args = std::vector<std::string>{"-db", "-f", cfg}, .wait_ready = false, .binary = kHaproxy});
    // Up when both frontends accept and each instance has been reached.
    const auto deadline = clock_type::now() + 10s;
    const auto accepts = [](std::uint16_t port) {
      const int fd = connect_loopback(port, 200ms);
      if (fd >= 0) ::close(fd);
      return fd >= 0;
    };
    while (clock_type::now() < deadline) {
      if (accepts(ports.front_echo) && accepts(ports.front_ws)) return;
      std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error("haproxy did not start: " + haproxy->output());
  }

  double metric(int i, const std::string& name, const std::map<std::string, std::string>& labels) {
    return value_of(get(ports.admin, "/metrics", kAddress[i]).body, name, labels).value_or(-1);
  }

  Ports ports;
  std::unique_ptr<ShoaldProcess> shoald[2];
  std::unique_ptr<ShoaldProcess> haproxy;
};

tcp::socket connect_from(asio::io_context& ioc, const char* source, std::uint16_t port) {
  tcp::socket s(ioc);
  s.open(tcp::v4());
  s.bind(tcp::endpoint(asio::ip::make_address(source), 0));
  s.connect(loopback(port));
  set_timeouts(s, 3s);
  return s;
}

TEST(Haproxy, ConnectionsReachBothInstancesAndPerIpLimitsCountRealClients) {
  Deployment d;
  asio::io_context ioc;
  // max_connections_per_ip 1 on each instance: 127.0.0.2 may hold one on
  // each, so two of its three connections are served and one refused.
  // Without the PROXY header every connection would come from HAProxy's
  // own address and 127.0.0.3 would be refused too.
  std::vector<tcp::socket> held;
  int served = 0, refused = 0;
  for (int i = 0; i < 3; ++i) {
    tcp::socket s = connect_from(ioc, "127.0.0.2", d.ports.front_echo);
    if (echo_once(s, "from .2") == "from .2") {
      ++served;
      held.push_back(std::move(s));
    } else {
      ++refused;
    }
  }
  EXPECT_EQ(served, 2);
  EXPECT_EQ(refused, 1);
  tcp::socket other = connect_from(ioc, "127.0.0.3", d.ports.front_echo);
  EXPECT_EQ(echo_once(other, "from .3"), "from .3");

  // Both instances served connections, and one of them refused 127.0.0.2.
  const std::map<std::string, std::string> echo = {{"listener", "echo"}};
  EXPECT_GE(d.metric(0, "shoal_connections_accepted_total", echo), 1);
  EXPECT_GE(d.metric(1, "shoal_connections_accepted_total", echo), 1);
  // At least once: HAProxy may retry a refused connection on the other
  // instance (option redispatch), which refuses it too.
  EXPECT_GE(d.metric(0, "shoal_connections_rejected_total", {{"listener", "echo"}, {"reason", "per_ip_limit"}}) +
                d.metric(1, "shoal_connections_rejected_total", {{"listener", "echo"}, {"reason", "per_ip_limit"}}),
            1);
  EXPECT_TRUE(d.shoald[0]->wait_for_output("refused a connection from 127.0.0.2", 1s) ||
              d.shoald[1]->wait_for_output("refused a connection from 127.0.0.2", 1s));
  // HAProxy's health checks (no PROXY header, on the admin port) are not
  // refused as bad headers.
  EXPECT_EQ(d.metric(0, "shoal_connections_rejected_total", {{"listener", "echo"}, {"reason", "proxy_protocol"}}), 0);
}

// One WebSocket client that echoes in a loop through HAProxy and reconnects
// when it is told to go (1001), resending what was unanswered.
struct EchoLoop {
  int attempts = 0;    // connects tried
  int failed = 0;      // connects or upgrades that failed
  int echoes = 0;      // messages echoed back intact
  int going_away = 0;  // close frames with 1001
  int resent = 0;      // messages unanswered at a 1001, sent again after reconnecting
  int lost = 0;        // a message in flight when the connection ended any other way
  std::vector<clock_type::time_point> reconnected;
  std::chrono::milliseconds pause{5};  // between an echo and the next message

  void run(std::uint16_t port, const std::atomic<bool>& stop, int id) {
    asio::io_context ioc;
    std::string pending;
    int seq = 0;
    while (!stop) {
      ++attempts;
      std::unique_ptr<RawWs> ws;
      try {
        ws = std::make_unique<RawWs>(ioc, port, 3s);
      } catch (const std::exception&) {
        ++failed;
        continue;
      }
      if (ws->upgrade().status != 101) {
        ++failed;
        continue;
      }
      if (attempts > 1) reconnected.push_back(clock_type::now());
      while (!stop || !pending.empty()) {
        if (pending.empty()) pending = "client " + std::to_string(id) + " message " + std::to_string(seq++);
        if (!ws->send(frame(kText, pending))) {
          ++lost;
          break;
        }
        const std::optional<Frame> f = ws->read_frame();
        if (f && f->opcode == kText && f->payload == pending) {
          ++echoes;
          pending.clear();
          std::this_thread::sleep_for(pause);
          continue;
        }
        if (f && f->opcode == kClose && f->close_code() == 1001) {
          ++going_away;
          ++resent;
          ws->send(frame(kClose, close_payload(1001)));
        } else {
          ++lost;
          pending.clear();
        }
        break;
      }
    }
  }
};

// The clients' counters added up.
EchoLoop totals(const std::vector<EchoLoop>& clients) {
  EchoLoop t;
  for (const EchoLoop& c : clients) {
    t.attempts += c.attempts;
    t.failed += c.failed;
    t.echoes += c.echoes;
    t.going_away += c.going_away;
    t.resent += c.resent;
    t.lost += c.lost;
  }
  return t;
}

struct RollingRestart {
  std::vector<EchoLoop> clients;
  clock_type::time_point signalled;
  int survivor = 0;
  int stopped = 0;
  double survivor_active = 0;  // WebSocket connections on the survivor once the other left
  std::string output;
};

// `n` clients echo through HAProxy; the instance holding the most of them
// is stopped with SIGTERM; the clients go on until it has exited and a
// moment after.
RollingRestart rolling_restart(Deployment& d, int n, std::chrono::milliseconds pause = 5ms) {
  RollingRestart r;
  r.clients.resize(static_cast<std::size_t>(n));
  for (EchoLoop& c : r.clients) c.pause = pause;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] { r.clients[static_cast<std::size_t>(i)].run(d.ports.front_ws, stop, i); });
  }
  const std::map<std::string, std::string> ws = {{"listener", "ws"}};
  const auto deadline = clock_type::now() + 10s;
  while (d.metric(0, "shoal_connections_active", ws) + d.metric(1, "shoal_connections_active", ws) < n &&
         clock_type::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  r.stopped = d.metric(0, "shoal_connections_active", ws) >= d.metric(1, "shoal_connections_active", ws) ? 0 : 1;
  r.survivor = 1 - r.stopped;
  std::this_thread::sleep_for(300ms);
  r.signalled = clock_type::now();
  d.shoald[r.stopped]->signal(SIGTERM);
  const int code = d.shoald[r.stopped]->wait_exit(15s);
  std::this_thread::sleep_for(500ms);
  r.survivor_active = d.metric(r.survivor, "shoal_connections_active", ws);
  stop = true;
  for (auto& t : threads) t.join();
  r.output = d.shoald[r.stopped]->output() + d.haproxy->output();
  EXPECT_EQ(code, 0) << r.output;
  std::printf("stopped instance exited %.1f s after SIGTERM\n",
              std::chrono::duration<double>(clock_type::now() - r.signalled).count() - 0.5);
  return r;
}

TEST(HaproxyRollingRestart, SigtermUnderLoadLosesNoConnectAndNoEcho) {
  Deployment d("2s");
  const RollingRestart r = rolling_restart(d, 20);
  const EchoLoop t = totals(r.clients);
  const int attempts = t.attempts, failed = t.failed, echoes = t.echoes,
            going_away = t.going_away, resent = t.resent, lost = t.lost;
  std::printf("rolling restart: %d connects attempted, %d failed, %d echoes, %d told to go (1001), "
              "%d resent after reconnecting, %d lost\n",
              attempts, failed, echoes, going_away, resent, lost);
  EXPECT_EQ(failed, 0) << r.output;
  EXPECT_EQ(lost, 0) << r.output;
  EXPECT_GE(going_away, 1) << "the stopped instance held clients";
  EXPECT_EQ(attempts, 20 + going_away);
  EXPECT_GT(echoes, 20 * 10);
  // HAProxy saw the instance leave through /readyz.
  EXPECT_NE(d.haproxy->output().find("is DOWN"), std::string::npos) << d.haproxy->output();
  // Every client ended on the survivor.
  EXPECT_EQ(r.survivor_active, 20);
}

// A benchmark, not a test (ctest lists it as disabled; loadtest/rolling-restart.sh
// runs it): how the reconnects of the stopped instance's clients arrive at
// the survivor, all at once (drain_spread 0) or spread (the default window
// and a shorter one). SHOAL_BENCH_CLIENTS sets the client count (200).
TEST(DISABLED_RollingRestartBench, PeakReconnectsPer100msWithAndWithoutTheSpread) {
  const char* env = std::getenv("SHOAL_BENCH_CLIENTS");
  const int n = env ? std::atoi(env) : 200;
  for (const std::string spread : {"0s", "2s", "10s"}) {
    Deployment d(spread);
    const RollingRestart r = rolling_restart(d, n, 100ms);
    std::vector<clock_type::duration> at;
    for (const EchoLoop& c : r.clients) {
      for (const auto t : c.reconnected) at.push_back(t - r.signalled);
    }
    const EchoLoop sum = totals(r.clients);
    const int failed = sum.failed, lost = sum.lost;
    std::sort(at.begin(), at.end());
    int peak = 0;
    for (std::size_t i = 0, j = 0; i < at.size(); ++i) {
      while (at[i] - at[j] >= 100ms) ++j;
      peak = std::max(peak, static_cast<int>(i - j + 1));
    }
    const double first = at.empty() ? 0 : std::chrono::duration<double>(at.front()).count();
    const double last = at.empty() ? 0 : std::chrono::duration<double>(at.back()).count();
    std::printf("bench: clients %d, drain_spread %s: %zu reconnects to the survivor between %.2f s "
                "and %.2f s after SIGTERM, peak %d per 100 ms; %d connects failed, %d echoes lost\n",
                n, spread.c_str(), at.size(), first, last, peak, failed, lost);
    EXPECT_EQ(failed, 0);
    EXPECT_EQ(lost, 0);
  }
}

}  // namespace
}  // namespace shoal::test
