// The graceful stop as a rolling restart sees it: WebSocket clients closed
// with 1001 spread over shutdown.drain_spread (so they do not reconnect to
// the other instances in lock-step), TCP echo clients left to the drain
// timeout, and the process gone as soon as nothing is left.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "echo_client.hpp"
#include "raw_ws.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

std::string drain_yaml(const std::string& spread, const std::string& timeout = "5s") {
  return "shards: 2\nlisteners:\n" + loopback_listener("ws", "websocket-echo") +
         loopback_listener("echo", "tcp-echo") +
         "shutdown:\n"
         "  drain_timeout: " + timeout + "\n"
         "  drain_spread: " + spread + "\n";
}

struct Arrivals {
  std::vector<clock_type::duration> after_signal;  // when each close frame came
  int going_away = 0;                               // how many said 1001
};

// Opens `n` WebSocket clients, sends SIGTERM, and times each close frame.
Arrivals close_arrivals(ShoaldProcess& shoald, int n) {
  asio::io_context ioc;
  std::vector<std::unique_ptr<RawWs>> clients;
  for (int i = 0; i < n; ++i) {
    clients.push_back(open_raw(ioc, shoald.port("ws")));
    EXPECT_EQ(clients.back()->echo("hi"), "hi");
  }
  Arrivals out;
  std::mutex mu;
  const auto sent = clock_type::now();
  shoald.signal(SIGTERM);
  std::vector<std::thread> readers;
  for (auto& c : clients) {
    readers.emplace_back([&, client = c.get()] {
      const std::optional<std::uint16_t> code = client->read_close_code();
      const auto at = clock_type::now() - sent;
      client->send(frame(kClose, close_payload(1001)));
      std::lock_guard lock(mu);
      out.after_signal.push_back(at);
      if (code == 1001) ++out.going_away;
    });
  }
  for (auto& t : readers) t.join();
  std::sort(out.after_signal.begin(), out.after_signal.end());
  return out;
}

// The most close frames that arrived within any 100 ms.
int peak_per_100ms(const std::vector<clock_type::duration>& sorted) {
  int peak = 0;
  for (std::size_t i = 0, j = 0; i < sorted.size(); ++i) {
    while (sorted[i] - sorted[j] >= 100ms) ++j;
    peak = std::max(peak, static_cast<int>(i - j + 1));
  }
  return peak;
}

TEST(DrainSpread, WebSocketClientsAreToldToGoEvenlyOverTheWindow) {
  ShoaldProcess shoald({.yaml = drain_yaml("1s")});
  asio::io_context ioc;
  tcp::socket echo = connect_to(ioc, shoald.port("echo"));
  ASSERT_EQ(echo_once(echo, "stay"), "stay");

  const Arrivals a = close_arrivals(shoald, 40);
  ASSERT_EQ(a.after_signal.size(), 40u);
  EXPECT_EQ(a.going_away, 40);
  // A straight line over 1 s puts 4 in each 100 ms; all at once would be 40.
  EXPECT_GE(a.after_signal.back() - a.after_signal.front(), 600ms);
  EXPECT_LE(peak_per_100ms(a.after_signal), 12) << shoald.output();
  // The TCP echo client is not told to go: it is still served, and the
  // drain waits for it.
  EXPECT_EQ(echo_once(echo, "still here"), "still here");
  echo.close();
  EXPECT_EQ(shoald.wait_exit(4s), 0) << shoald.output();
}

TEST(DrainSpread, ZeroClosesThemAllWhenTheDrainStarts) {
  ShoaldProcess shoald({.yaml = drain_yaml("0s")});
  const Arrivals a = close_arrivals(shoald, 40);
  ASSERT_EQ(a.after_signal.size(), 40u);
  EXPECT_EQ(a.going_away, 40);
  EXPECT_LT(a.after_signal.back(), 1s);
  EXPECT_GE(peak_per_100ms(a.after_signal), 30);
  // Nothing left: the process does not wait out the 5 s drain timeout.
  EXPECT_EQ(shoald.wait_exit(3s), 0) << shoald.output();
}

TEST(DrainSpread, TheWindowIsCutToTheDrainTimeout) {
  // drain_spread 10s with drain_timeout 1s: every client is told within
  // the second, not left to the forced close at its end.
  ShoaldProcess shoald({.yaml = drain_yaml("10s", "1s")});
  const Arrivals a = close_arrivals(shoald, 20);
  ASSERT_EQ(a.after_signal.size(), 20u);
  EXPECT_EQ(a.going_away, 20);
  EXPECT_LT(a.after_signal.back(), 1500ms);
  EXPECT_GE(a.after_signal.back() - a.after_signal.front(), 400ms);
  EXPECT_EQ(shoald.wait_exit(3s), 0) << shoald.output();
}

}  // namespace
}  // namespace shoal::test
