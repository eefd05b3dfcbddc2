// websocket-pubsub against the real shoald: fan-out across shards, channels,
// echo_to_sender, bad channel names, oversized messages, slow consumers (close
// and drop), a subscriber flood, and across two instances through a real
// Debian redis-server started here, killed mid-run and restarted.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "admin_client.hpp"
#include "raw_ws.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

namespace asio = boost::asio;

std::string pubsub_yaml(std::uint16_t admin, const std::string& pubsub = "", unsigned shards = 2,
                        const std::string& websocket = "") {
  return "shards: " + std::to_string(shards) + "\nadmin: {address: 127.0.0.1, port: " +
         std::to_string(admin) + "}\nlisteners:\n" +
         loopback_listener("ps", "websocket-pubsub",
                           (websocket.empty() ? "" : "    websocket:\n" + websocket) +
                               (pubsub.empty() ? "" : "    pubsub:\n" + pubsub));
}

std::unique_ptr<RawWs> subscribe(asio::io_context& ioc, std::uint16_t port, const std::string& channel) {
  Upgrade u;
  u.target = "/?channel=" + channel;
  return open_raw(ioc, port, u);
}

std::string metrics(const ShoaldProcess& p) { return get(p.admin_port(), "/metrics").body; }

// Reads text frames until `n` came or the socket's timeout; returns them.
std::vector<std::string> read_texts(RawWs& c, std::size_t n) {
  std::vector<std::string> got;
  while (got.size() < n) {
    auto f = c.read_frame();
    if (!f) break;
    if (f->opcode == kText || f->opcode == kBinary) got.push_back(f->payload);
  }
  return got;
}

TEST(PubSub, EveryOtherSubscriberGetsEveryMessageOnceAndInOrder) {
  auto shoald = start_with_admin_port([](std::uint16_t a) { return pubsub_yaml(a); });
  const std::uint16_t port = shoald->port("ps");
  asio::io_context ioc;
  std::vector<std::unique_ptr<RawWs>> subs;
  for (int i = 0; i < 6; ++i) subs.push_back(subscribe(ioc, port, "room"));
  auto other = subscribe(ioc, port, "elsewhere");
  auto publisher = subscribe(ioc, port, "room");
  // Subscriptions reach every shard's table by a post: wait until all 8 count.
  scrape_until(shoald->admin_port(), [](const std::string& m) {
    return value_of(m, "shoal_pubsub_subscribers").value_or(0) == 8;
  });
  std::this_thread::sleep_for(100ms);

  constexpr int kMessages = 50;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(publisher->send(frame(kText, std::string("m").append(std::to_string(i)))));
  for (auto& s : subs) {
    const std::vector<std::string> got = read_texts(*s, kMessages);
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kMessages));
    for (int i = 0; i < kMessages; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], std::string("m").append(std::to_string(i)));
  }
  // Not back to the publisher (echo_to_sender: false), and nothing on
  // another channel: the next thing each sees is a message sent after.
  ASSERT_TRUE(subs[0]->send(frame(kBinary, std::string("\x00\x01zz", 4))));
  const auto next = read_texts(*publisher, 1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0], std::string("\x00\x01zz", 4));
  ASSERT_TRUE(subscribe(ioc, port, "elsewhere")->send(frame(kText, "for elsewhere")));
  const auto there = read_texts(*other, 1);
  ASSERT_EQ(there.size(), 1u);
  EXPECT_EQ(there[0], "for elsewhere");

  // A shard adds its deliveries to the counter after its whole loop, which
  // may end after a subscriber already read its copy: scrape until it counts.
  const std::string m = scrape_until(shoald->admin_port(), [](const std::string& body) {
    return value_of(body, "shoal_pubsub_deliveries_total").value_or(0) >= kMessages * 6 + 7;
  });
  EXPECT_EQ(value_of(m, "shoal_pubsub_published_total"), kMessages + 2);
  EXPECT_GE(value_of(m, "shoal_pubsub_deliveries_total").value_or(0), kMessages * 6 + 7);
}

TEST(PubSub, EchoToSenderSendsThePublisherItsOwnMessages) {
  auto shoald = start_with_admin_port(
      [](std::uint16_t a) { return pubsub_yaml(a, "      echo_to_sender: true\n", 1); });
  asio::io_context ioc;
  auto c = subscribe(ioc, shoald->port("ps"), "me");
  ASSERT_TRUE(c->send(frame(kText, "hello")));
  const auto got = read_texts(*c, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], "hello");
}

TEST(PubSub, BadChannelNamesGet400NamingTheParameter) {
  auto shoald = start_with_admin_port([](std::uint16_t a) { return pubsub_yaml(a, "", 1); });
  const std::uint16_t port = shoald->port("ps");
  for (const std::string& target : std::vector<std::string>{
           "/", "/?channel=", "/?channel=" + std::string(65, 'a'), "/?channel=a%20b", "/?channel=a/b",
        "/?channel=a&channel=b", "/?channel=caf\xc3\xa9"}) {
    asio::io_context ioc;
    RawWs c(ioc, port);
    Upgrade u;
    u.target = target;
    const UpgradeResponse r = c.upgrade(u);
    EXPECT_EQ(r.status, 400) << target;
    const std::string body = c.read_body(r);
    EXPECT_NE(body.find("\"parameter\":\"channel\""), std::string::npos) << target << ": " << body;
    EXPECT_TRUE(c.closed_by_peer()) << target;
  }
  // The longest and every allowed character are fine.
  asio::io_context ioc;
  subscribe(ioc, port, std::string(64, 'z'));
  subscribe(ioc, port, "Az09_.:-");
}

TEST(PubSub, AnOversizedMessageClosesItsPublisherWith1009AndNobodyGetsIt) {
  auto shoald = start_with_admin_port([](std::uint16_t a) {
    return pubsub_yaml(a, "", 1, "      max_message_bytes: 1024\n");
  });
  asio::io_context ioc;
  auto sub = subscribe(ioc, shoald->port("ps"), "big");
  auto pub = subscribe(ioc, shoald->port("ps"), "big");
  ASSERT_TRUE(pub->send(frame(kText, std::string(2000, 'x'))));
  EXPECT_EQ(pub->read_close_code(), 1009);
  ASSERT_TRUE(subscribe(ioc, shoald->port("ps"), "big")->send(frame(kText, "small")));
  const auto got = read_texts(*sub, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], "small");
}

// A subscriber that never reads: once the kernel's buffers and then
// max_queued_bytes are full it is closed with 1008 (or, with drop, its
// messages are dropped), and a reading subscriber gets every message.
void slow_consumer(const std::string& policy) {
  auto shoald = start_with_admin_port([&](std::uint16_t a) {
    return pubsub_yaml(a, "      max_queued_bytes: 1048576\n      slow_consumer: " + policy + "\n", 1);
  });
  const std::uint16_t port = shoald->port("ps");
  asio::io_context ioc;
  auto slow = subscribe(ioc, port, "feed");
  auto fast = subscribe(ioc, port, "feed");
  auto pub = subscribe(ioc, port, "feed");
  const std::string payload(16 * 1024, 'p');
  // 32 MiB: more than the kernel's buffers for one loopback connection hold
  // (tcp_wmem and tcp_rmem at most 4 and 6 MiB here).
  constexpr int kMessages = 2000;
  // The reading subscriber keeps up (the publisher waits for it to be
  // within 32 messages, 512 KiB, of what was sent): only the one that never
  // reads passes the bound.
  std::atomic<int> fast_got{0};
  std::thread reader([&] {
    while (fast_got.load() < kMessages) {
      auto f = fast->read_frame();
      if (!f) break;
      if (f->opcode == kBinary) fast_got.fetch_add(1);
    }
  });
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(pub->send(frame(kBinary, payload)));
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (fast_got.load() < i - 32 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(100us);
  }
  reader.join();
  EXPECT_EQ(fast_got.load(), kMessages);
  const std::string m = scrape_until(shoald->admin_port(), [&](const std::string& text) {
    return value_of(text, policy == "close" ? "shoal_pubsub_slow_consumers_closed_total"
                                            : "shoal_pubsub_dropped_total")
               .value_or(0) > 0;
  });
  if (policy == "close") {
    EXPECT_EQ(value_of(m, "shoal_pubsub_slow_consumers_closed_total"), 1);
    EXPECT_EQ(value_of(m, "shoal_connections_closed_total", {{"reason", "slow_consumer"}}), 1);
    // Reading now, it finds what was queued, then the 1008.
    EXPECT_EQ(slow->read_close_code(), 1008);
  } else {
    EXPECT_GT(value_of(m, "shoal_pubsub_dropped_total").value_or(0), 0);
    EXPECT_EQ(value_of(m, "shoal_pubsub_slow_consumers_closed_total"), 0);
    // Still subscribed: after draining, a new message arrives.
    std::size_t drained = 0;
    while (true) {
      auto f = slow->read_frame();
      ASSERT_TRUE(f);
      if (f->payload == "after") break;
      ++drained;
      if (drained == 1) {
        ASSERT_TRUE(pub->send(frame(kText, "after")));
      }
    }
    EXPECT_LT(drained, static_cast<std::size_t>(kMessages));
  }
}

TEST(PubSub, ASlowConsumerIsClosedWith1008AtTheBound) { slow_consumer("close"); }
TEST(PubSub, ASlowConsumerHasItsMessagesDroppedWithDrop) { slow_consumer("drop"); }

TEST(PubSub, ASubscriberFloodLeavesNothingBehind) {
  auto shoald = start_with_admin_port([](std::uint16_t a) { return pubsub_yaml(a); });
  const std::uint16_t port = shoald->port("ps");
  {
    asio::io_context ioc;
    std::vector<std::unique_ptr<RawWs>> flood;
    for (int i = 0; i < 300; ++i) flood.push_back(subscribe(ioc, port, std::string("c").append(std::to_string(i % 30))));
    scrape_until(shoald->admin_port(), [](const std::string& m) {
      return value_of(m, "shoal_pubsub_subscribers").value_or(0) == 300;
    });
    EXPECT_EQ(value_of(metrics(*shoald), "shoal_pubsub_subscribers"), 300);
  }  // all 300 leave at once (TCP close without a close frame)
  const std::string m = scrape_until(shoald->admin_port(), [](const std::string& text) {
    return value_of(text, "shoal_pubsub_subscribers").value_or(-1) == 0;
  });
  EXPECT_EQ(value_of(m, "shoal_pubsub_subscribers"), 0);
  asio::io_context ioc;
  auto a = subscribe(ioc, port, "c1");
  auto b = subscribe(ioc, port, "c1");
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(a->send(frame(kText, "still works")));
  const auto got = read_texts(*b, 1);
  ASSERT_EQ(got.size(), 1u);
}

// --- across instances ------------------------------------------------------------

class RedisServer {
 public:
  explicit RedisServer(std::uint16_t port) : port_(port) { start(); }
  ~RedisServer() { stop(); }
  void start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      const std::string p = std::to_string(port_);
      ::execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--loglevel", "warning", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 100; ++i) {  // until it accepts
      try {
        asio::io_context ioc;
        RawWs probe(ioc, port_, std::chrono::milliseconds(200));
        return;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(50ms);
      }
    }
    FAIL() << "redis-server did not start on port " << port_;
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::uint16_t port_;
  pid_t pid_ = -1;
};

TEST(PubSubRedis, TwoInstancesDeliverEveryMessageOnceAndSurviveRedisGoingAway) {
  const std::uint16_t redis_port = free_loopback_port();
  auto redis = std::make_unique<RedisServer>(redis_port);
  const std::string ps = "      redis: \"redis://127.0.0.1:" + std::to_string(redis_port) + "\"\n";
  auto a = start_with_admin_port([&](std::uint16_t p) { return pubsub_yaml(p, ps); });
  auto b = start_with_admin_port(
      [&](std::uint16_t p) { return pubsub_yaml(p, ps + "      redis_required: true\n"); });
  for (auto* s : {a.get(), b.get()}) {
    const std::string m = scrape_until(s->admin_port(), [](const std::string& text) {
      return value_of(text, "shoal_pubsub_redis_connected").value_or(0) == 1;
    });
    ASSERT_EQ(value_of(m, "shoal_pubsub_redis_connected"), 1);
  }
  EXPECT_EQ(get(b->admin_port(), "/readyz").status, 200);

  asio::io_context ioc;
  auto on_a = subscribe(ioc, a->port("ps"), "x");
  auto on_b = subscribe(ioc, b->port("ps"), "x");
  auto pub_a = subscribe(ioc, a->port("ps"), "x");
  auto pub_b = subscribe(ioc, b->port("ps"), "x");
  std::this_thread::sleep_for(300ms);  // the SUBSCRIBEs reach Redis
  constexpr int kMessages = 40;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(pub_a->send(frame(kText, std::string("a").append(std::to_string(i)))));
    ASSERT_TRUE(pub_b->send(frame(kText, std::string("b").append(std::to_string(i)))));
  }
  // Each subscriber: all 80 once, each publisher's in order, and the other
  // publisher's 40 too.
  for (auto* s : {on_a.get(), on_b.get()}) {
    const auto got = read_texts(*s, 2 * kMessages);
    ASSERT_EQ(got.size(), 2u * kMessages);
    int next_a = 0, next_b = 0;
    for (const std::string& g : got) {
      if (g[0] == 'a') {
        EXPECT_EQ(g, std::string("a").append(std::to_string(next_a++)));
      } else {
        EXPECT_EQ(g, std::string("b").append(std::to_string(next_b++)));
      }
    }
    EXPECT_EQ(next_a, kMessages);
    EXPECT_EQ(next_b, kMessages);
  }
  // Publishers get the other's messages, and never their own back through Redis.
  const auto to_pub_a = read_texts(*pub_a, kMessages);
  ASSERT_EQ(to_pub_a.size(), static_cast<std::size_t>(kMessages));
  for (const std::string& g : to_pub_a) EXPECT_EQ(g[0], 'b') << g;

  // Redis goes away: local delivery goes on, B is not ready, nobody crashes.
  redis->stop();
  scrape_until(a->admin_port(), [](const std::string& text) {
    return value_of(text, "shoal_pubsub_redis_connected").value_or(1) == 0;
  });
  ASSERT_TRUE(pub_a->send(frame(kText, "local")));
  const auto local = read_texts(*on_a, 1);
  ASSERT_EQ(local.size(), 1u);
  EXPECT_EQ(local[0], "local");
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (get(b->admin_port(), "/readyz").status == 200 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(get(b->admin_port(), "/readyz").status, 503);
  EXPECT_EQ(get(a->admin_port(), "/readyz").status, 200);  // not required there

  // Back: both reconnect and resubscribe, and cross-instance delivery resumes.
  redis->start();
  for (auto* s : {a.get(), b.get()}) {
    const std::string m = scrape_until(
        s->admin_port(),
        [](const std::string& text) { return value_of(text, "shoal_pubsub_redis_connected").value_or(0) == 1; },
        15s);
    ASSERT_EQ(value_of(m, "shoal_pubsub_redis_connected"), 1);
    EXPECT_GE(value_of(m, "shoal_pubsub_redis_reconnects_total").value_or(0), 1);
  }
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(pub_a->send(frame(kText, "after")));
  const auto after = read_texts(*on_b, 1);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0], "after");
  EXPECT_EQ(get(b->admin_port(), "/readyz").status, 200);
}

}  // namespace
}  // namespace shoal::test
