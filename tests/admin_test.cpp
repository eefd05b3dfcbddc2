// Tests of the admin port: the metrics collector in-process, then the real
// shoald over HTTP (counters, promtool, health, readiness during a drain,
// HTTP semantics) and a real Prometheus server scraping it.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "admin_client.hpp"
#include "admin/admin_server.hpp"
#include "echo_client.hpp"
#include "admin/metrics.hpp"
#include "runtime/server.hpp"
#include "shoal/version.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kPromtool = "/usr/bin/promtool";
constexpr const char* kPrometheus = "/usr/bin/prometheus";

struct PromtoolResult {
  int exit_code = -1;
  std::string output;
};

// `promtool check metrics` with `body` on its standard input.
PromtoolResult promtool_check(const std::string& body) {
  const std::string file = write_temp_file(body, ".prom");
  const std::string cmd = std::string(kPromtool) + " check metrics < " + file + " 2>&1";
  PromtoolResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::remove(file.c_str());
  return r;
}

std::string config_yaml(std::uint16_t admin_port, const std::string& listener_extra = "",
                        const std::string& drain = "2s") {
  return "shards: 2\n"
         "listeners:\n"
         "  - name: echo\n"
         "    protocol: tcp-echo\n"
         "    address: 127.0.0.1\n"
         "    port: 0\n" +
         listener_extra +
         "shutdown:\n"
         "  drain_timeout: " + drain + "\n"
         "admin:\n"
         "  address: 127.0.0.1\n"
         "  port: " + std::to_string(admin_port) + "\n";
}

// Starts shoald with an admin port. A free port can be taken by someone
// else between the probe and shoald's bind: try a few.
std::unique_ptr<ShoaldProcess> start_with_admin(const std::string& listener_extra = "",
                                                const std::string& drain = "2s") {
  return start_with_admin_port(
      [&](std::uint16_t admin) { return config_yaml(admin, listener_extra, drain); });
}

// ---- in-process: the collector over a Server that was not started -------

Config two_listener_config() {
  Config config;
  config.shards = 2;
  ListenerConfig tcp;
  tcp.name = "echo";
  tcp.address = "127.0.0.1";
  tcp.port = 0;
  ListenerConfig ws;
  ws.name = "ws";
  ws.protocol = Protocol::websocket_echo;
  ws.address = "127.0.0.1";
  ws.port = 0;
  config.listeners = {tcp, ws};
  return config;
}

PreflightResult fake_preflight() {
  PreflightResult p;
  p.fd_limit = 20000;
  p.connection_capacity = 19936;
  p.configured_max_connections = 1000000;
  p.effective_max_connections = 19936;
  p.shards = 2;
  return p;
}

TEST(AdminMetrics, SumsShardCountersPerListenerAndKeepsShardLabels) {
  Server server(two_listener_config(), fake_preflight());
  const auto& shards = server.shards();
  // What two shards counted, written as the shards would (single writer).
  shards[0]->slot(0).stats.accepted.add(3);
  shards[1]->slot(0).stats.accepted.add(4);
  shards[0]->slot(0).stats.active.add(2);
  shards[1]->slot(0).stats.active.add(5);
  shards[1]->slot(0).stats.rejected[static_cast<int>(RejectReason::limit)].add(6);
  shards[0]->slot(0).stats.closed[static_cast<int>(CloseReason::idle_timeout)].add(1);
  shards[1]->slot(0).stats.closed[static_cast<int>(CloseReason::idle_timeout)].add(2);
  shards[0]->slot(0).stats.bytes_received.add(1000);
  shards[1]->slot(0).stats.bytes_sent.add(999);
  shards[0]->slot(1).stats.messages_received.add(11);
  shards[1]->slot(1).stats.messages_sent.add(12);
  shards[0]->slot(1).stats.close_codes[close_code_slot(1001)].add(7);
  shards[1]->slot(1).stats.close_codes[close_code_slot(4000)].add(8);

  const Metrics metrics(server);
  const std::string text = metrics.scrape();
  EXPECT_EQ(value_of(text, "shoal_connections_accepted_total", {{"listener", "echo"}}), 7);
  EXPECT_EQ(value_of(text, "shoal_connections_accepted_total", {{"listener", "ws"}}), 0);
  EXPECT_EQ(value_of(text, "shoal_connections_active", {{"listener", "echo"}, {"shard", "1"}}), 5);
  EXPECT_EQ(value_of(text, "shoal_connections_active", {{"listener", "echo"}}), 7);
  EXPECT_EQ(value_of(text, "shoal_connections_rejected_total", {{"listener", "echo"}, {"reason", "limit"}}), 6);
  // Every reason is exported, zero included.
  for (const char* reason :
       {"limit", "fd_exhausted", "handshake_failed", "origin", "per_ip_limit", "rate_limit"})
    EXPECT_TRUE(value_of(text, "shoal_connections_rejected_total", {{"listener", "ws"}, {"reason", reason}}))
        << reason;
  EXPECT_EQ(value_of(text, "shoal_connections_closed_total", {{"listener", "echo"}, {"reason", "idle_timeout"}}), 3);
  EXPECT_EQ(value_of(text, "shoal_connections_closed_total", {{"listener", "echo"}, {"reason", "drain"}}), 0);
  EXPECT_EQ(value_of(text, "shoal_bytes_received_total", {{"listener", "echo"}}), 1000);
  EXPECT_EQ(value_of(text, "shoal_bytes_sent_total", {{"listener", "echo"}}), 999);
  EXPECT_EQ(value_of(text, "shoal_messages_received_total", {{"listener", "ws"}}), 11);
  EXPECT_EQ(value_of(text, "shoal_messages_sent_total", {{"listener", "ws"}}), 12);
  EXPECT_EQ(value_of(text, "shoal_websocket_close_codes_total", {{"listener", "ws"}, {"code", "1001"}}), 7);
  EXPECT_EQ(value_of(text, "shoal_websocket_close_codes_total", {{"listener", "ws"}, {"code", "other"}}), 8);
  EXPECT_EQ(value_of(text, "shoal_websocket_close_codes_total", {{"listener", "ws"}, {"code", "1011"}}), 0);
  // A TCP listener has no close codes.
  EXPECT_FALSE(value_of(text, "shoal_websocket_close_codes_total", {{"listener", "echo"}}));

  EXPECT_EQ(value_of(text, "shoal_fd_limit"), 20000);
  EXPECT_EQ(value_of(text, "shoal_connection_capacity"), 19936);
  EXPECT_EQ(value_of(text, "shoal_max_connections"), 19936);
  EXPECT_EQ(value_of(text, "shoal_build_info", {{"version", kVersion}, {"commit", kGitCommit}}), 1);
  // Never started: no loop answered, no lag measured.
  EXPECT_EQ(value_of(text, "shoal_shard_healthy"), 0);
  EXPECT_EQ(value_of(text, "shoal_shard_loop_lag_seconds_count", {{"shard", "0"}}), 0);
  EXPECT_EQ(value_of(text, "shoal_shard_loop_lag_seconds_bucket", {{"shard", "0"}, {"le", "+Inf"}}), 0);
  for (const char* name : {"process_open_fds", "process_max_fds", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_cpu_seconds_total",
                           "process_start_time_seconds"})
    EXPECT_TRUE(value_of(text, name)) << name;

  // HELP and TYPE for every family.
  for (const auto& f : metrics.collect()) {
    EXPECT_FALSE(f.help.empty()) << f.name;
    EXPECT_NE(text.find("# TYPE " + f.name + " "), std::string::npos) << f.name;
  }
}

TEST(AdminMetrics, PromtoolFindsNothingInTheCollectorOutput) {
  if (access(kPromtool, X_OK) != 0) GTEST_SKIP() << kPromtool << " is not installed";
  Server server(two_listener_config(), fake_preflight());
  server.shards()[0]->slot(1).stats.close_codes[0].add(1);
  const PromtoolResult r = promtool_check(Metrics(server).scrape());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
}

TEST(AdminMetrics, ParsesProcStat) {
  // A command name with a space and a ')' must not shift the fields.
  std::string stat = "4242 (sho ald)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 ";
  stat += "1000 123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  const auto p = parse_proc_stat(stat, 1'700'000'000, 100, 4096);
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(p->cpu_seconds, 3.0);  // (250 + 50) / 100
  EXPECT_DOUBLE_EQ(p->start_time_seconds, 1'700'000'010.0);
  EXPECT_DOUBLE_EQ(p->virtual_bytes, 123456789.0);
  EXPECT_DOUBLE_EQ(p->resident_bytes, 300.0 * 4096);
  EXPECT_FALSE(parse_proc_stat("garbage", 0, 100, 4096));
  EXPECT_FALSE(parse_proc_stat("1 (x) S 1 2 3", 0, 100, 4096));
}

TEST(AdminRoutes, MethodsPathsAndAServerThatIsNotReady) {
  Server server(two_listener_config(), fake_preflight());
  const AdminServer admin(AdminConfig{}, server);
  EXPECT_EQ(admin.handle("POST", "/metrics").status, 405);
  EXPECT_EQ(admin.handle("DELETE", "/healthz").status, 405);
  EXPECT_EQ(admin.handle("GET", "/nope").status, 404);
  EXPECT_EQ(admin.handle("GET", "/metrics?x=1").status, 200);
  // Not started: not ready, and no shard loop has answered.
  const auto ready = admin.handle("GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "starting\n");
  const auto health = admin.handle("GET", "/healthz");
  EXPECT_EQ(health.status, 503);
  EXPECT_NE(health.body.find("shard 0: event loop has not answered"), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("shard 1: event loop has not answered"), std::string::npos) << health.body;
}

TEST(AdminHealth, HealthzNamesAStuckShardAndRecovers) {
  // In-process: a started Server and admin port, then one shard blocked by
  // a handler that does not return (until the test releases it).
  Config config = two_listener_config();
  config.listeners.resize(1);
  Server server(config, fake_preflight());
  server.start();
  AdminConfig admin_config;
  admin_config.port = 0;
  AdminServer admin(admin_config, server);
  admin.start();
  const std::uint16_t port = admin.local_endpoint().port();
  EXPECT_EQ(get(port, "/healthz").status, 200);
  EXPECT_EQ(get(port, "/readyz").status, 200);

  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  server.shards()[1]->post([released] { released.wait_for(std::chrono::seconds(10)); });

  // Stuck after kLoopHealthDeadline (2 s); bounded wait.
  HttpResponse stuck;
  const auto deadline = std::chrono::steady_clock::now() + kLoopHealthDeadline + 3s;
  do {
    std::this_thread::sleep_for(50ms);
    stuck = get(port, "/healthz");
  } while (stuck.status == 200 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(stuck.status, 503);
  EXPECT_NE(stuck.body.find("shard 1: event loop has not answered for"), std::string::npos) << stuck.body;
  EXPECT_EQ(stuck.body.find("shard 0"), std::string::npos) << stuck.body;
  // A stuck shard does not stop the scrape, which says which one it is.
  std::string body = get(port, "/metrics").body;
  EXPECT_EQ(value_of(body, "shoal_shard_healthy", {{"shard", "0"}}), 1);
  EXPECT_EQ(value_of(body, "shoal_shard_healthy", {{"shard", "1"}}), 0);
  EXPECT_EQ(nlohmann::json::parse(get(port, "/status").body).at("shards")[1].at("healthy"), false);

  release.set_value();
  HttpResponse healthy;
  const auto recover = std::chrono::steady_clock::now() + 3s;
  do {
    std::this_thread::sleep_for(20ms);
    healthy = get(port, "/healthz");
  } while (healthy.status != 200 && std::chrono::steady_clock::now() < recover);
  EXPECT_EQ(healthy.status, 200) << healthy.body;
  // The late tick was measured: one lag observation above 1 s on shard 1.
  body = scrape_until(port, [](const std::string& t) {
    return value_of(t, "shoal_shard_loop_lag_seconds_bucket", {{"shard", "1"}, {"le", "1"}}) <
           value_of(t, "shoal_shard_loop_lag_seconds_count", {{"shard", "1"}});
  });
  EXPECT_LT(value_of(body, "shoal_shard_loop_lag_seconds_bucket", {{"shard", "1"}, {"le", "1"}}),
            value_of(body, "shoal_shard_loop_lag_seconds_count", {{"shard", "1"}}));
  EXPECT_GE(value_of(body, "shoal_shard_loop_lag_seconds_sum", {{"shard", "1"}}).value_or(0), 1.0);
  admin.stop();
  server.stop();
}

// ---- the real shoald ----------------------------------------------------

TEST(AdminScrape, CountersMoveByExactlyWhatTheTestDid) {
  // max_connections 3: the fourth client is accepted and closed at once.
  auto shoald = start_with_admin("    max_connections: 3\n");
  const std::uint16_t admin = shoald->admin_port();
  const std::uint16_t echo = shoald->port("echo");

  const std::string base = get(admin, "/metrics").body;
  ASSERT_TRUE(value_of(base, "shoal_connections_accepted_total"));
  EXPECT_EQ(value_of(base, "shoal_connections_accepted_total", {{"listener", "echo"}}), 0);
  EXPECT_EQ(value_of(base, "shoal_messages_received_total", {{"listener", "echo"}}), 0);
  const double base_fds = value_of(base, "process_open_fds").value_or(-1);
  ASSERT_GT(base_fds, 0);

  // Three clients: client i sends i+2 messages of 100*(i+1) bytes, one echo
  // round trip at a time, so each is exactly one read on the server.
  asio::io_context ioc;
  std::vector<tcp::socket> clients;
  std::uint64_t messages = 0, bytes = 0;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(connect_to(ioc, echo));
    const std::string payload(static_cast<std::size_t>(100 * (i + 1)), static_cast<char>('a' + i));
    for (int m = 0; m < i + 2; ++m) {
      ASSERT_EQ(echo_once(clients.back(), payload), payload);
      ++messages;
      bytes += payload.size();
    }
  }
  // Over the listener's limit: refused, counted, never served.
  {
    tcp::socket extra = connect_to(ioc, echo);
    EXPECT_TRUE(peer_closed(extra));
  }

  // A shard counts an echo just after writing it, so the client may see
  // the bytes a moment before the scrape sees the count: poll (bounded).
  std::string body = scrape_until(admin, [&](const std::string& t) {
    return value_of(t, "shoal_connections_rejected_total", {{"reason", "limit"}}) == 1 &&
           value_of(t, "shoal_messages_sent_total") == messages &&
           value_of(t, "shoal_bytes_sent_total") == bytes;
  });
  EXPECT_EQ(value_of(body, "shoal_connections_accepted_total", {{"listener", "echo"}}), 3);
  EXPECT_EQ(value_of(body, "shoal_connections_rejected_total", {{"listener", "echo"}, {"reason", "limit"}}), 1);
  EXPECT_EQ(value_of(body, "shoal_connections_rejected_total", {{"listener", "echo"}, {"reason", "fd_exhausted"}}), 0);
  EXPECT_EQ(value_of(body, "shoal_connections_active", {{"listener", "echo"}}), 3);
  EXPECT_EQ(value_of(body, "shoal_connections_served_total", {{"listener", "echo"}}), 3);
  EXPECT_EQ(value_of(body, "shoal_messages_received_total", {{"listener", "echo"}}), messages);
  EXPECT_EQ(value_of(body, "shoal_messages_sent_total", {{"listener", "echo"}}), messages);
  EXPECT_EQ(value_of(body, "shoal_bytes_received_total", {{"listener", "echo"}}), bytes);
  EXPECT_EQ(value_of(body, "shoal_bytes_sent_total", {{"listener", "echo"}}), bytes);
  EXPECT_EQ(value_of(body, "shoal_connections_closed_total", {{"listener", "echo"}}), 0);
  EXPECT_GE(value_of(body, "process_open_fds").value_or(0), base_fds + 3);
  // handlers run covers at least the reads and accepts the test caused.
  EXPECT_GE(value_of(body, "shoal_shard_handlers_total").value_or(0),
            static_cast<double>(messages + 3 + 1));

  for (auto& c : clients) c.close();
  body = scrape_until(admin, [](const std::string& t) {
    return value_of(t, "shoal_connections_closed_total", {{"reason", "peer_closed"}}) == 3 &&
           value_of(t, "shoal_connections_active") == 0;
  });
  EXPECT_EQ(value_of(body, "shoal_connections_closed_total", {{"listener", "echo"}, {"reason", "peer_closed"}}), 3);
  EXPECT_EQ(value_of(body, "shoal_connections_closed_total", {{"listener", "echo"}}), 3);
  EXPECT_EQ(value_of(body, "shoal_connections_active", {{"listener", "echo"}}), 0);
  EXPECT_EQ(value_of(body, "shoal_connections_accepted_total", {{"listener", "echo"}}), 3);

  // The descriptors come back: at most one more than at the start (slack
  // for a descriptor the process may open for itself).
  body = scrape_until(admin, [&](const std::string& t) {
    return value_of(t, "process_open_fds").value_or(1e9) <= base_fds + 1;
  });
  EXPECT_LE(value_of(body, "process_open_fds").value_or(1e9), base_fds + 1);
}

TEST(AdminScrape, PromtoolCheckMetricsReportsNothing) {
  if (access(kPromtool, X_OK) != 0) GTEST_SKIP() << kPromtool << " is not installed";
  auto shoald = start_with_admin();
  asio::io_context ioc;
  tcp::socket c = connect_to(ioc, shoald->port("echo"));
  ASSERT_EQ(echo_once(c, "hello"), "hello");
  const HttpResponse r = get(shoald->admin_port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const PromtoolResult check = promtool_check(r.body);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output, "") << r.body;
}

TEST(AdminHealth, HealthzStatusAndLoopLag) {
  auto shoald = start_with_admin();
  const std::uint16_t admin = shoald->admin_port();

  const HttpResponse health = get(admin, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_EQ(get(admin, "/readyz").status, 200);

  // The lag probe runs every 100 ms on each shard.
  const std::string body = scrape_until(admin, [](const std::string& t) {
    return value_of(t, "shoal_shard_loop_lag_seconds_count", {{"shard", "0"}}).value_or(0) >= 3 &&
           value_of(t, "shoal_shard_loop_lag_seconds_count", {{"shard", "1"}}).value_or(0) >= 3;
  });
  for (const char* shard : {"0", "1"}) {
    const double count = value_of(body, "shoal_shard_loop_lag_seconds_count", {{"shard", shard}}).value_or(0);
    EXPECT_GE(count, 3) << shard;
    EXPECT_EQ(value_of(body, "shoal_shard_loop_lag_seconds_bucket", {{"shard", shard}, {"le", "+Inf"}}), count);
    EXPECT_TRUE(value_of(body, "shoal_shard_loop_lag_seconds_sum", {{"shard", shard}}));
    EXPECT_EQ(value_of(body, "shoal_shard_healthy", {{"shard", shard}}), 1);
  }

  const HttpResponse status = get(admin, "/status");
  ASSERT_EQ(status.status, 200);
  EXPECT_EQ(status.header("content-type"), "application/json");
  const auto j = nlohmann::json::parse(status.body);
  EXPECT_EQ(j.at("version"), kVersion);
  EXPECT_EQ(j.at("commit"), kGitCommit);
  EXPECT_GE(j.at("uptime_seconds").get<double>(), 0.0);
  EXPECT_EQ(j.at("draining"), false);
  ASSERT_EQ(j.at("shards").size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& s = j.at("shards")[i];
    EXPECT_EQ(s.at("id"), i);
    EXPECT_EQ(s.at("connections"), 0);
    EXPECT_EQ(s.at("healthy"), true);
    EXPECT_GE(s.at("loop_lag_ms_last").get<double>(), 0.0);
    EXPECT_GE(s.at("loop_lag_ms_avg").get<double>(), 0.0);
  }
  ASSERT_EQ(j.at("listeners").size(), 1u);
  const auto& l = j.at("listeners")[0];
  EXPECT_EQ(l.at("name"), "echo");
  EXPECT_EQ(l.at("protocol"), "tcp-echo");
  EXPECT_EQ(l.at("address"), "127.0.0.1");
  EXPECT_EQ(l.at("port"), shoald->port("echo"));
  EXPECT_EQ(l.at("active"), 0);
  EXPECT_EQ(l.at("accepted"), 0);
  EXPECT_GT(j.at("limits").at("fd_limit").get<std::uint64_t>(), 0u);
  EXPECT_GT(j.at("limits").at("capacity").get<std::uint64_t>(), 0u);
  EXPECT_GT(j.at("limits").at("max_connections").get<std::uint64_t>(), 0u);
}

TEST(AdminHttp, NotFoundMethodNotAllowedHeadKeepAliveAndLimits) {
  auto shoald = start_with_admin();
  const std::uint16_t admin = shoald->admin_port();

  EXPECT_EQ(get(admin, "/nope").status, 404);
  EXPECT_EQ(get(admin, "/healthz?verbose=1").status, 200);

  const HttpResponse post = http(admin, "POST", "/metrics", "Content-Length: 0\r\n");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("allow"), "GET, HEAD");

  // HEAD: the headers of GET, the length it would have, and no body.
  const HttpResponse head = http(admin, "HEAD", "/metrics");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_GT(std::stoul(head.header("content-length")), 1000u);
  EXPECT_EQ(head.bytes_after_headers, 0u);

  // Keep-alive: two requests, two answers, one connection.
  {
    const int fd = connect_loopback(admin, 5s);
    ASSERT_GE(fd, 0);
    std::string raw;
    for (const char* target : {"/healthz", "/readyz"}) {
      ASSERT_TRUE(send_text(fd, std::string("GET ") + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
      HttpResponse r;
      std::size_t used = 0;
      char buf[4096];
      while ((used = parse_response(raw, false, r)) == 0) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        ASSERT_GT(n, 0) << "no answer to " << target << " on a kept-alive connection";
        raw.append(buf, static_cast<std::size_t>(n));
      }
      raw.erase(0, used);
      EXPECT_EQ(r.status, 200) << target;
      EXPECT_NE(lower(r.header("connection")), "close");
    }
    close(fd);
  }

  // An oversized request is answered 431 and closed.
  const HttpResponse big = http(admin, "GET", "/metrics", "X-Big: " + std::string(10000, 'x') + "\r\n");
  EXPECT_EQ(big.status, 431);

  // A client that sends half a request is closed by the request timeout;
  // here only check that it does not stop the others.
  const int slow = connect_loopback(admin, 5s);
  ASSERT_GE(slow, 0);
  ASSERT_TRUE(send_text(slow, "GET /metr"));
  EXPECT_EQ(get(admin, "/healthz").status, 200);
  close(slow);
}

TEST(AdminReady, ReadyzTurns503DuringADrainWhileMetricsGoOn) {
  auto shoald = start_with_admin("", "20s");
  const std::uint16_t admin = shoald->admin_port();
  asio::io_context ioc;
  tcp::socket client = connect_to(ioc, shoald->port("echo"));
  ASSERT_EQ(echo_once(client, "still here"), "still here");

  const HttpResponse before = get(admin, "/readyz");
  EXPECT_EQ(before.status, 200);
  EXPECT_EQ(before.body, "ready\n");

  shoald->signal(SIGTERM);
  ASSERT_TRUE(shoald->wait_for_output("draining", 5s)) << shoald->output();
  HttpResponse during;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    during = get(admin, "/readyz");
  } while (during.status != 503 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(during.status, 503);
  EXPECT_EQ(during.body, "draining\n");
  // Alive, and still scraped, while draining.
  EXPECT_EQ(get(admin, "/healthz").status, 200);
  const std::string body = get(admin, "/metrics").body;
  EXPECT_EQ(value_of(body, "shoal_draining"), 1);
  EXPECT_EQ(value_of(body, "shoal_connections_active"), 1);
  EXPECT_EQ(nlohmann::json::parse(get(admin, "/status").body).at("draining"), true);
  // The open connection is still served during the drain.
  EXPECT_EQ(echo_once(client, "bye"), "bye");

  // The last client leaves: the drain ends at once, well before 20 s.
  client.close();
  EXPECT_EQ(shoald->wait_exit(10s), 0) << shoald->output();
}

// What /status and /metrics say the limits are, as one comparable value.
struct ShownLimits {
  std::uint64_t status_process = 0, status_listener = 0, metric_process = 0, metric_listener = 0;
  bool operator==(const ShownLimits&) const = default;
};
std::ostream& operator<<(std::ostream& out, const ShownLimits& l) {
  return out << "/status " << l.status_process << "/" << l.status_listener << ", /metrics "
             << l.metric_process << "/" << l.metric_listener;
}

ShownLimits shown_limits(std::uint16_t admin) {
  const nlohmann::json status = nlohmann::json::parse(get(admin, "/status").body);
  const std::string metrics = get(admin, "/metrics").body;
  return {status.at("limits").at("max_connections").get<std::uint64_t>(),
          status.at("listeners").at(0).at("max_connections").get<std::uint64_t>(),
          static_cast<std::uint64_t>(value_of(metrics, "shoal_max_connections").value_or(-1)),
          static_cast<std::uint64_t>(
              value_of(metrics, "shoal_listener_max_connections", {{"listener", "echo"}})
                  .value_or(-1))};
}

std::string limits_yaml(std::uint16_t admin, const std::string& process, int listener) {
  return config_yaml(admin, "    max_connections: " + std::to_string(listener) + "\n") +
         "limits:\n  max_connections: " + process + "\n";
}

// Regression: after a SIGHUP from 100/10 to 50/3, only 3 connections were
// admitted, yet /status and shoal_max_connections still said 100 and 10.
TEST(AdminReload, StatusAndMetricsShowTheLimitsOfTheLastAcceptedReload) {
  std::uint16_t admin_port = 0;
  auto shoald = start_with_admin_port([&](std::uint16_t admin) {
    admin_port = admin;
    return limits_yaml(admin, "100", 10);
  });
  const std::uint16_t admin = shoald->admin_port();
  EXPECT_EQ(shown_limits(admin), (ShownLimits{100, 10, 100, 10}));

  std::ofstream(shoald->config_path(), std::ios::trunc) << limits_yaml(admin_port, "50", 3);
  shoald->signal(SIGHUP);
  ASSERT_TRUE(shoald->wait_for_output("reloaded", 5s)) << shoald->output();
  EXPECT_EQ(shown_limits(admin), (ShownLimits{50, 3, 50, 3}));

  // What the admin port says is what is enforced: the fourth is refused.
  asio::io_context ioc;
  std::vector<tcp::socket> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(connect_to(ioc, shoald->port("echo")));
    ASSERT_EQ(echo_once(clients.back(), "in"), "in") << "connection " << i;
  }
  tcp::socket fourth = connect_to(ioc, shoald->port("echo"));
  EXPECT_TRUE(peer_closed(fourth)) << "listener max_connections 3 after the reload";

  // A rejected reload (max_connections: 0 fails validation) changes nothing.
  std::ofstream(shoald->config_path(), std::ios::trunc) << limits_yaml(admin_port, "0", 7);
  shoald->signal(SIGHUP);
  ASSERT_TRUE(shoald->wait_for_output("reload rejected", 5s)) << shoald->output();
  EXPECT_EQ(shown_limits(admin), (ShownLimits{50, 3, 50, 3}));
}

TEST(AdminConfigured, PortZeroTurnsTheAdminPortOff) {
  ShoaldProcess shoald({.yaml = config_yaml(0)});
  EXPECT_EQ(shoald.output().find("admin listening"), std::string::npos);
  EXPECT_THROW(shoald.admin_port(), std::runtime_error);
  asio::io_context ioc;
  tcp::socket c = connect_to(ioc, shoald.port("echo"));
  EXPECT_EQ(echo_once(c, "x"), "x");
}

TEST(AdminConfigured, AFailedAdminBindIsAStartUpError) {
  // Hold the port with a listening socket: shoald's bind must fail.
  asio::io_context ioc;
  tcp::acceptor holder(ioc, loopback(0));
  const std::uint16_t port = holder.local_endpoint().port();
  const std::string path = write_temp_file(config_yaml(port));
  const RunResult r = run_shoald({"--config", path});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("admin port on 127.0.0.1:" + std::to_string(port) + ": bind"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("ready:"), std::string::npos) << r.output;
}

// ---- a real Prometheus scrapes shoald -----------------------------------

class TempDir {
 public:
  TempDir() {
    const char* t = std::getenv("TMPDIR");
    std::string templ = std::string(t && *t ? t : "/tmp") + "/shoal-prom-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs a program with its output in a file; killed (TERM, then KILL) on
// destruction.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& args, const std::string& log_path) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~ChildProcess() {
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  bool running() const { return waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  pid_t pid_ = -1;
};

std::string url_encode(const std::string& s) {
  std::string out;
  const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// The instant-query result of `query`, or an empty array.
nlohmann::json prometheus_query(std::uint16_t port, const std::string& query) {
  const HttpResponse r = get(port, "/api/v1/query?query=" + url_encode(query));
  if (r.status != 200) return nlohmann::json::array();
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || j.value("status", "") != "success") return nlohmann::json::array();
  return j.at("data").at("result");
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(AdminPrometheus, ARealPrometheusScrapesShoald) {
  if (access(kPrometheus, X_OK) != 0) GTEST_SKIP() << kPrometheus << " is not installed";
  auto shoald = start_with_admin();
  const std::uint16_t admin = shoald->admin_port();
  // Two connections before Prometheus starts: its first scrape sees them.
  asio::io_context ioc;
  for (int i = 0; i < 2; ++i) {
    tcp::socket c = connect_to(ioc, shoald->port("echo"));
    ASSERT_EQ(echo_once(c, "x"), "x");
  }

  TempDir dir;
  const std::string config = dir.path() + "/prometheus.yml";
  {
    std::ofstream out(config);
    out << "global:\n"
           "  scrape_interval: 1s\n"
           "  evaluation_interval: 1s\n"
           "scrape_configs:\n"
           "  - job_name: shoal\n"
           "    static_configs:\n"
           "      - targets: ['127.0.0.1:" << admin << "']\n";
  }
  const std::uint16_t web = free_loopback_port();
  const std::string log = dir.path() + "/prometheus.log";
  ChildProcess prometheus({kPrometheus, "--config.file=" + config,
                           "--storage.tsdb.path=" + dir.path() + "/data",
                           "--web.listen-address=127.0.0.1:" + std::to_string(web)},
                          log);

  // Bounded: Prometheus starts in a second or two, then scrapes every 1 s.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  bool up = false, counter = false;
  nlohmann::json last_up, last_counter;
  while (std::chrono::steady_clock::now() < deadline && !(up && counter)) {
    ASSERT_TRUE(prometheus.running()) << "prometheus exited:\n" << slurp(log);
    last_up = prometheus_query(web, R"(up{job="shoal"})");
    up = last_up.size() == 1 && last_up[0].at("value")[1] == "1";
    last_counter = prometheus_query(web, R"(shoal_connections_accepted_total{job="shoal",listener="echo"})");
    counter = last_counter.size() == 1 && last_counter[0].at("value")[1] == "2";
    if (!(up && counter)) std::this_thread::sleep_for(250ms);
  }
  EXPECT_TRUE(up) << last_up.dump() << "\n" << slurp(log);
  EXPECT_TRUE(counter) << last_counter.dump() << "\n" << slurp(log);
}

}  // namespace
}  // namespace shoal::test
