// shoald under systemd's notify protocol, with the real libsystemd client
// on shoald's side and a datagram socket standing in for systemd: READY
// after the listeners are bound, WATCHDOG pings, RELOADING/READY around a
// SIGHUP reload (a bad config rejected, the running one kept), STOPPING on
// drain.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "admin_client.hpp"
#include "echo_client.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;

// The systemd end: a bound AF_UNIX datagram socket.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = write_temp_file("", ".notify");
    unlink(path_.c_str());
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind");
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

  // Next datagram containing `needle` within `timeout`; the ones before it
  // are kept in `seen`.
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      timeval tv{static_cast<time_t>(left.count() / 1000),
                 static_cast<suseconds_t>((left.count() % 1000) * 1000)};
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      seen.emplace_back(buf, static_cast<std::size_t>(n));
      if (seen.back().find(needle) != std::string::npos) return true;
    }
  }
  std::vector<std::string> seen;

 private:
  std::string path_;
  int fd_ = -1;
};

std::string config(const std::string& level, int max_connections, int shards = 2) {
  return "shards: " + std::to_string(shards) + "\n"
         "listeners:\n"
         "  - {name: echo, protocol: tcp-echo, address: 127.0.0.1, port: 0, max_connections: " +
         std::to_string(max_connections) + "}\n"
         "logging: {level: " + level + "}\n"
         "shutdown: {drain_timeout: 1s}\n";
}

void rewrite(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

TEST(Systemd, ReadyWatchdogReloadAndStopping) {
  NotifySocket notify;
  ShoaldProcess shoald({.yaml = config("info", 2),
                        .env = {{"NOTIFY_SOCKET", notify.path()}, {"WATCHDOG_USEC", "400000"}}});
  ASSERT_TRUE(notify.wait_for("READY=1", 5s));
  EXPECT_NE(notify.seen.back().find("STATUS=0 connections on 2 shards"), std::string::npos)
      << notify.seen.back();
  // WatchdogSec=0.4s: pings every 0.2 s while the shards answer.
  ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 2s));
  ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 2s));

  asio::io_context ioc;
  std::vector<tcp::socket> held;
  held.push_back(connect_to(ioc, shoald.port("echo")));
  held.push_back(connect_to(ioc, shoald.port("echo")));
  // Both echo, so both were accepted (and counted) before the third comes:
  // under load one could still sit in a shard's accept queue.
  ASSERT_EQ(echo_once(held[0], "x"), "x");
  ASSERT_EQ(echo_once(held[1], "x"), "x");
  auto third = connect_to(ioc, shoald.port("echo"));
  EXPECT_TRUE(peer_closed(third)) << "max_connections 2 holds before the reload";

  // A reload that raises the listener's limit applies without a restart.
  rewrite(shoald.config_path(), config("debug", 3) + "admin: {port: 0}\n");
  shoald.signal(SIGHUP);
  ASSERT_TRUE(notify.wait_for("RELOADING=1", 3s));
  ASSERT_TRUE(notify.wait_for("READY=1", 3s));
  ASSERT_TRUE(shoald.wait_for_output("reloaded", 2s)) << shoald.output();
  auto now_allowed = connect_to(ioc, shoald.port("echo"));
  EXPECT_EQ(echo_once(now_allowed, "in"), "in");
  // The new log level took effect: connections are now logged (debug).
  EXPECT_TRUE(shoald.wait_for_output("accepted from 127.0.0.1", 2s)) << shoald.output();

  // A broken file is rejected with its error; the running config stays.
  rewrite(shoald.config_path(), "listeners:\n  - port: 70000\nadmin: {port: 0}\n");
  shoald.signal(SIGHUP);
  ASSERT_TRUE(notify.wait_for("READY=1", 3s));
  ASSERT_TRUE(shoald.wait_for_output("reload rejected", 2s)) << shoald.output();
  EXPECT_NE(shoald.output().find("listeners[0].port: 70000 is not a port"), std::string::npos);
  EXPECT_EQ(echo_once(now_allowed, "still"), "still");

  // A change that needs a restart is named, not applied.
  rewrite(shoald.config_path(), config("debug", 3, 1) + "admin: {port: 0}\n");
  shoald.signal(SIGHUP);
  ASSERT_TRUE(shoald.wait_for_output("shards changed; it applies after a restart", 3s))
      << shoald.output();

  shoald.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 3s));
  EXPECT_EQ(shoald.wait_exit(5s), 0) << shoald.output();
}

TEST(Systemd, NoNotifySocketMeansNoNotifications) {
  // Outside systemd the same binary runs and stops as usual.
  ShoaldProcess shoald({.yaml = config("info", 0)});
  shoald.signal(SIGTERM);
  EXPECT_EQ(shoald.wait_exit(5s), 0) << shoald.output();
}

TEST(Probe, ExitsZeroForAHealthyDaemonAndOneOtherwise) {
  const auto admin = free_loopback_port();
  ShoaldProcess shoald({.yaml = config("info", 0) + "admin: {address: 127.0.0.1, port: " +
                                std::to_string(admin) + "}\n"});
  auto healthy = run_shoald({"--probe", "127.0.0.1:" + std::to_string(shoald.admin_port())});
  EXPECT_EQ(healthy.exit_code, 0) << healthy.output;

  auto unreachable = run_shoald({"--probe", "127.0.0.1:" + std::to_string(free_loopback_port())});
  EXPECT_EQ(unreachable.exit_code, 1) << unreachable.output;
  // The echo port speaks no HTTP: echoing the request back is not a 200.
  auto wrong = run_shoald({"--probe", "127.0.0.1:" + std::to_string(shoald.port("echo"))});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
  auto malformed = run_shoald({"--probe", "nonsense"});
  EXPECT_EQ(malformed.exit_code, 2) << malformed.output;
}

// A shard thread blocked in a handler (shoald-faults blocks shard 1 for 6 s,
// 1.5 s after start): /healthz names it, the watchdog pings stop while it is
// stuck, and both recover once it answers again. The other shard keeps
// serving its connections meanwhile.
TEST(Systemd, StuckShardFailsHealthzAndStarvesTheWatchdogUntilItRecovers) {
  NotifySocket notify;
  ShoaldProcess shoald({.yaml = config("info", 0) + "admin: {address: 127.0.0.1, port: " +
                                std::to_string(free_loopback_port()) + "}\n",
                        .env = {{"NOTIFY_SOCKET", notify.path()},
                                {"WATCHDOG_USEC", "400000"},
                                {"SHOAL_FAULT_BLOCK_SHARD", "1:1500:6000"}},
                        .binary = SHOALD_FAULTS_PATH});
  ASSERT_TRUE(notify.wait_for("READY=1", 5s));
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 2s));
  EXPECT_EQ(get(shoald.admin_port(), "/healthz").status, 200);

  // Stuck: /healthz turns 503 and names shard 1 (2 s without an answer).
  // The notifications are read meanwhile, as systemd would: an unread
  // datagram queue (10 deep) would block shoald's sd_notify.
  HttpResponse health;
  while (std::chrono::steady_clock::now() - started < 6s) {
    health = get(shoald.admin_port(), "/healthz");
    if (health.status == 503) break;
    notify.wait_for("(read everything queued)", 50ms);
  }
  ASSERT_EQ(health.status, 503) << health.body;
  EXPECT_NE(health.body.find("shard 1: event loop has not answered"), std::string::npos)
      << health.body;
  EXPECT_TRUE(shoald.wait_for_output("withholding the systemd watchdog", 2s)) << shoald.output();
  // No ping for a whole second while it stays stuck (pings come every 0.2 s
  // when healthy); systemd would now kill and restart the service.
  notify.wait_for("(read everything queued)", 10ms);
  EXPECT_FALSE(notify.wait_for("WATCHDOG=1", 1s));

  // Unblocked at 7.5 s: healthy again, pings again.
  ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 7s));
  EXPECT_GE(std::chrono::steady_clock::now() - started, 7s);
  EXPECT_EQ(get(shoald.admin_port(), "/healthz").status, 200);
  shoald.signal(SIGTERM);
  EXPECT_EQ(shoald.wait_exit(5s), 0) << shoald.output();
}

}  // namespace
}  // namespace shoal::test
