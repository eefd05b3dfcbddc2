// RedisBridge against a real redis-server (Debian's), started by each test on
// a free loopback port: two bridges stand for two shoald instances. Also the
// redis:// URL parser.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "pubsub/redis_bridge.hpp"

namespace shoal::pubsub {

// spdlog's registry is made on first use. shoald makes it in main() before
// any thread (daemon/logging.cpp); here the bridges' threads would be first,
// two at once, inside a library ThreadSanitizer cannot see into. Made before
// main() instead, as the daemon does.
[[maybe_unused]] const spdlog::logger* const kLoggerBeforeThreads = spdlog::default_logger_raw();
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- URLs

RedisAddress parse_ok(std::string_view url) {
  std::string error;
  auto a = parse_redis_url(url, error);
  EXPECT_TRUE(a.has_value()) << url << ": " << error;
  EXPECT_TRUE(error.empty()) << url;
  return a.value_or(RedisAddress{});
}

std::string parse_error(std::string_view url) {
  std::string error;
  auto a = parse_redis_url(url, error);
  EXPECT_FALSE(a.has_value()) << url << " parsed as " << (a ? a->host : "") << ":"
                              << (a ? a->port : 0);
  EXPECT_FALSE(error.empty()) << url;
  return error;
}

TEST(ParseRedisUrl, AcceptsNamesAddressesAndPorts) {
  auto a = parse_ok("redis://127.0.0.1:6380");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 6380);
  a = parse_ok("redis://redis.internal:1");
  EXPECT_EQ(a.host, "redis.internal");
  EXPECT_EQ(a.port, 1);
  a = parse_ok("redis://[::1]:65535");
  EXPECT_EQ(a.host, "::1");  // brackets off: what getaddrinfo takes
  EXPECT_EQ(a.port, 65535);
  a = parse_ok("redis://cache-01");
  EXPECT_EQ(a.host, "cache-01");
  EXPECT_EQ(a.port, 6379);  // Redis' own port when none is given
  a = parse_ok("redis://[fe80::1]");
  EXPECT_EQ(a.host, "fe80::1");
  EXPECT_EQ(a.port, 6379);
}

TEST(ParseRedisUrl, RefusesWhatItCannotConnectTo) {
  EXPECT_NE(parse_error("").find("redis://HOST:PORT"), std::string::npos);
  EXPECT_NE(parse_error("http://127.0.0.1:6379").find("redis://"), std::string::npos);
  EXPECT_NE(parse_error("rediss://127.0.0.1:6379").find("TLS"), std::string::npos);
  EXPECT_NE(parse_error("redis://").find("host is empty"), std::string::npos);
  EXPECT_NE(parse_error("redis://:6379").find("host is empty"), std::string::npos);
  EXPECT_NE(parse_error("redis://h:0").find("1 to 65535"), std::string::npos);
  EXPECT_NE(parse_error("redis://h:65536").find("1 to 65535"), std::string::npos);
  EXPECT_NE(parse_error("redis://h:").find("1 to 65535"), std::string::npos);
  EXPECT_NE(parse_error("redis://h:63x").find("1 to 65535"), std::string::npos);
  EXPECT_NE(parse_error("redis://h:-1").find("1 to 65535"), std::string::npos);
  EXPECT_NE(parse_error("redis://::1:6379").find("brackets"), std::string::npos);
  EXPECT_NE(parse_error("redis://[::1:6379").find("']'"), std::string::npos);
  EXPECT_NE(parse_error("redis://[nope]:6379").find("IPv6"), std::string::npos);
  EXPECT_NE(parse_error("redis://[::1]6379").find(":PORT"), std::string::npos);
  EXPECT_NE(parse_error("redis://300.1.1.1:6379").find("IPv4"), std::string::npos);
  EXPECT_NE(parse_error("redis://bad host:6379").find("host name"), std::string::npos);
  EXPECT_NE(parse_error("redis://h:6379/0").find("database"), std::string::npos);
  EXPECT_NE(parse_error("redis://user:pw@h:6379").find("passwords"), std::string::npos);
}

// ------------------------------------------------------- redis-server

bool ipv6_loopback_works() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// A redis-server child on `bind`:port, no persistence. Its output is
// read on a thread, which tells start() when it is ready and ends when
// the process does.
class RedisServer {
 public:
  explicit RedisServer(std::uint16_t port, std::string bind = "127.0.0.1")
      : port_(port), bind_(std::move(bind)) {}
  ~RedisServer() { kill_now(); }

  std::uint16_t port() const { return port_; }

  // False when it exited or did not say it was ready within 5 s (port taken).
  bool start() {
    kill_now();
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return false;
    const std::string port = std::to_string(port_);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      ::dup2(out[1], 1);
      ::dup2(out[1], 2);
      const int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, 0);
      ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", bind_.c_str(),
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", "/tmp",
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    if (pid_ < 0) {
      ::close(out[0]);
      return false;
    }
    {
      std::lock_guard lock(mu_);
      ready_ = exited_ = false;
      output_.clear();
    }
    reader_ = std::thread([this, fd = out[0]] { read_output(fd); });
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 5s, [&] { return ready_ || exited_; });
    return ready_ && !exited_;
  }

  void kill_now() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (reader_.joinable()) reader_.join();
  }
  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }

  std::string output() {
    std::lock_guard lock(mu_);
    return output_;
  }

 private:
  void read_output(int fd) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      std::lock_guard lock(mu_);
      output_.append(buf, static_cast<std::size_t>(n));
      if (output_.find("Ready to accept connections") != std::string::npos) ready_ = true;
      cv_.notify_all();
    }
    ::close(fd);
    std::lock_guard lock(mu_);
    exited_ = true;
    cv_.notify_all();
  }

  std::uint16_t port_;
  std::string bind_;
  pid_t pid_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool ready_ = false;
  bool exited_ = false;
  std::string output_;
};

// ---------------------------------------------------------- bridges

struct Message {
  std::string channel;
  std::uint8_t opcode;
  std::string payload;
};

// What a bridge delivered, for the test thread to wait on.
class Inbox {
 public:
  RedisBridge::Deliver deliver() {
    return [this](const std::string& channel, std::uint8_t opcode, std::string_view payload) {
      std::lock_guard lock(mu_);
      messages_.push_back({channel, opcode, std::string(payload)});
      cv_.notify_all();
    };
  }
  // Waits until at least n messages arrived (5 s at most); returns them.
  std::vector<Message> wait_for(std::size_t n, std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, limit, [&] { return messages_.size() >= n; });
    return messages_;
  }
  std::vector<Message> all() {
    std::lock_guard lock(mu_);
    return messages_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Message> messages_;
};

// Polls `done` (a bridge's atomic stats) until true or `limit`.
template <typename Pred>
bool eventually(Pred done, std::chrono::milliseconds limit = 5s) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

std::vector<std::string> payloads_of(const std::vector<Message>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.push_back(m.payload);
  return out;
}

class RedisBridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 5 && !redis_; ++i) {
      auto r = std::make_unique<RedisServer>(free_loopback_port());
      if (r->port() != 0 && r->start()) redis_ = std::move(r);
    }
    ASSERT_TRUE(redis_) << "redis-server did not start";
  }

  std::unique_ptr<RedisBridge> bridge(Inbox& inbox, std::uint16_t port = 0) {
    auto b = std::make_unique<RedisBridge>(
        RedisAddress{"127.0.0.1", port != 0 ? port : redis_->port()}, "shoal:test:",
        inbox.deliver());
    b->start();
    return b;
  }

  static bool connected(const RedisBridge& b) { return b.stats().connected.load(); }

  std::unique_ptr<RedisServer> redis_;
};

TEST_F(RedisBridgeTest, DeliversAcrossInstancesInOrderWithOpcodesAndBinaryPayloads) {
  Inbox in_a, in_b;
  auto a = bridge(in_a);
  auto b = bridge(in_b);
  a->subscribe("room");
  ASSERT_TRUE(eventually([&] { return connected(*a) && connected(*b); }));
  ASSERT_TRUE(eventually([&] { return a->stats().subscribed.load() == 1; }));

  // Every byte value (NUL, CR LF, high bytes), lengths from 0 up, text and
  // binary opcodes alternating, a sequence number first.
  std::vector<Message> sent;
  for (int i = 0; i < 300; ++i) {
    std::string p = std::to_string(i) + ":";
    for (int j = 0; j < (i * 37) % 1500; ++j) p.push_back(static_cast<char>((i + j) & 0xff));
    sent.push_back({"room", static_cast<std::uint8_t>(i % 2 == 0 ? 0x1 : 0x2), p});
  }
  sent.push_back({"room", 0x2, ""});
  for (const auto& m : sent) b->publish(m.channel, m.opcode, m.payload);

  const auto got = in_a.wait_for(sent.size());
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].channel, "room") << i;
    EXPECT_EQ(got[i].opcode, sent[i].opcode) << i;
    ASSERT_EQ(got[i].payload, sent[i].payload) << "message " << i << " differs or is out of order";
  }
  EXPECT_TRUE(eventually([&] { return b->stats().published.load() == sent.size(); }));
  // Counted once Deliver returned, so a moment after the inbox saw it.
  EXPECT_TRUE(eventually([&] { return a->stats().received.load() == sent.size(); }));
  EXPECT_EQ(b->stats().publish_dropped.load(), 0u);
  EXPECT_TRUE(in_b.all().empty()) << "b has no subscriber of room";
}

TEST_F(RedisBridgeTest, OwnMessagesAreNotDeliveredBack) {
  Inbox in_a, in_b;
  auto a = bridge(in_a);
  auto b = bridge(in_b);
  a->subscribe("room");
  b->subscribe("room");
  ASSERT_TRUE(eventually([&] { return connected(*a) && connected(*b); }));
  ASSERT_TRUE(eventually([&] { return a->stats().subscribed.load() == 1; }));
  ASSERT_TRUE(eventually([&] { return b->stats().subscribed.load() == 1; }));

  // Each step waits for Redis to acknowledge the previous PUBLISH, so Redis
  // sent the messages to both subscribers in this order: a bridge that
  // delivered its own would show it before the next marker.
  a->publish("room", 1, "a1");
  ASSERT_TRUE(eventually([&] { return a->stats().published.load() == 1; }));
  b->publish("room", 1, "b1");
  ASSERT_TRUE(eventually([&] { return b->stats().published.load() == 1; }));
  a->publish("room", 1, "a2");
  ASSERT_TRUE(eventually([&] { return a->stats().published.load() == 2; }));
  b->publish("room", 1, "b2");

  EXPECT_EQ(payloads_of(in_a.wait_for(2)), (std::vector<std::string>{"b1", "b2"}));
  EXPECT_EQ(payloads_of(in_b.wait_for(2)), (std::vector<std::string>{"a1", "a2"}));
  // Both published to the same channel; all four reached Redis.
  EXPECT_TRUE(eventually([&] { return b->stats().published.load() == 2; }));
  EXPECT_TRUE(eventually([&] { return a->stats().received.load() == 2; }));
  EXPECT_TRUE(eventually([&] { return b->stats().received.load() == 2; }));
}

TEST_F(RedisBridgeTest, SubscribersAreCountedAndUnsubscribeStopsDelivery) {
  Inbox in_a, in_b;
  auto a = bridge(in_a);
  auto b = bridge(in_b);
  a->subscribe("x");
  a->subscribe("x");  // a second local subscriber: no second SUBSCRIBE
  a->subscribe("y");
  ASSERT_TRUE(eventually([&] { return a->stats().subscribed.load() == 2; }));
  ASSERT_TRUE(eventually([&] { return connected(*b); }));

  a->unsubscribe("x");  // one of the two left: still subscribed
  b->publish("x", 1, "x1");
  b->publish("y", 1, "y1");
  const auto first = in_a.wait_for(2);
  ASSERT_EQ(payloads_of(first), (std::vector<std::string>{"x1", "y1"}));
  EXPECT_EQ(first[0].channel, "x");
  EXPECT_EQ(first[1].channel, "y");

  a->unsubscribe("x");  // the last one: UNSUBSCRIBE
  ASSERT_TRUE(eventually([&] { return a->stats().subscribed.load() == 1; }))
      << "Redis did not confirm the UNSUBSCRIBE";
  a->unsubscribe("x");  // one too many: ignored
  // Same publisher connection, so Redis keeps the order: had x2 been
  // delivered, it would come before y2.
  b->publish("x", 1, "x2");
  b->publish("y", 1, "y2");
  EXPECT_EQ(payloads_of(in_a.wait_for(3)), (std::vector<std::string>{"x1", "y1", "y2"}));
  EXPECT_EQ(a->stats().subscribed.load(), 1u);
}

TEST_F(RedisBridgeTest, ReconnectsAndResubscribesWhenRedisComesBack) {
  Inbox in_a, in_b;
  auto a = bridge(in_a);
  auto b = bridge(in_b);
  a->subscribe("room");
  a->subscribe("other");
  ASSERT_TRUE(eventually([&] { return a->stats().subscribed.load() == 2 && connected(*b); }));
  b->publish("room", 1, "before");
  ASSERT_EQ(payloads_of(in_a.wait_for(1)), (std::vector<std::string>{"before"}));

  redis_->kill_now();
  ASSERT_TRUE(eventually([&] { return !connected(*a) && !connected(*b); }))
      << "the bridges did not notice Redis going away";
  // connected goes false with the first connection lost; the subscriber
  // one may see its end a moment later.
  EXPECT_TRUE(eventually([&] { return a->stats().subscribed.load() == 0; }));
  for (int i = 0; i < 5; ++i) b->publish("room", 1, "while down");
  EXPECT_TRUE(eventually([&] { return b->stats().publish_dropped.load() == 5; }))
      << b->stats().publish_dropped.load();

  ASSERT_TRUE(redis_->start()) << redis_->output();
  ASSERT_TRUE(eventually([&] { return connected(*a) && connected(*b); }, 8s))
      << "no reconnect after Redis came back";
  ASSERT_TRUE(eventually([&] { return a->stats().subscribed.load() == 2; }))
      << "channels not subscribed again";
  EXPECT_GE(a->stats().reconnects.load(), 1u);
  EXPECT_GE(b->stats().reconnects.load(), 1u);

  b->publish("other", 2, "after");
  const auto got = in_a.wait_for(2);
  ASSERT_EQ(payloads_of(got), (std::vector<std::string>{"before", "after"}))
      << "nothing sent while Redis was down may arrive, and delivery resumes";
  EXPECT_EQ(got[1].channel, "other");
  EXPECT_EQ(got[1].opcode, 2);
  EXPECT_EQ(b->stats().publish_dropped.load(), 5u);
}

TEST_F(RedisBridgeTest, StartsWithoutRedisAndConnectsWhenItAppears) {
  const std::uint16_t later = free_loopback_port();
  ASSERT_NE(later, 0);
  Inbox in_a, in_b;
  auto a = bridge(in_a, later);  // nothing listens there yet
  auto b = bridge(in_b, later);
  a->subscribe("room");
  for (int i = 0; i < 3; ++i) b->publish("room", 1, "too early");
  ASSERT_TRUE(eventually([&] { return b->stats().publish_dropped.load() == 3; }));
  EXPECT_FALSE(connected(*a));
  EXPECT_FALSE(connected(*b));

  RedisServer late(later);
  ASSERT_TRUE(late.start()) << late.output();
  ASSERT_TRUE(eventually([&] { return connected(*a) && connected(*b); }, 8s));
  ASSERT_TRUE(eventually([&] { return a->stats().subscribed.load() == 1; }));
  EXPECT_EQ(a->stats().reconnects.load(), 0u) << "a first connection is not a reconnect";
  b->publish("room", 1, "now");
  EXPECT_EQ(payloads_of(in_a.wait_for(1)), (std::vector<std::string>{"now"}));

  // Stopping while Redis is away (the bridge waiting to retry) is prompt.
  late.kill_now();
  ASSERT_TRUE(eventually([&] { return !connected(*a); }));
  const auto t0 = Clock::now();
  a->stop();
  b.reset();
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST_F(RedisBridgeTest, PendingPublishesAreBounded) {
  Inbox in_a;
  auto a = bridge(in_a);
  ASSERT_TRUE(eventually([&] { return connected(*a); }));

  // Redis stops answering: PUBLISHes pile up in the bridge until the bound.
  redis_->pause();
  const std::string payload(std::size_t{1} << 20, 'p');
  const std::size_t cost = std::string("shoal:test:big").size() + 17 + payload.size();
  const std::size_t fits = RedisBridge::kMaxPendingBytes / cost;
  const std::size_t sent = fits + 16;
  for (std::size_t i = 0; i < sent; ++i) a->publish("big", 2, payload);
  EXPECT_EQ(a->stats().publish_dropped.load(), sent - fits);
  EXPECT_TRUE(connected(*a));

  // Everything under the bound goes out once Redis is back.
  redis_->resume();
  EXPECT_TRUE(eventually([&] { return a->stats().published.load() == fits; }))
      << a->stats().published.load() << " of " << fits;
  EXPECT_EQ(a->stats().publish_dropped.load(), sent - fits);
  // And the bound is free again.
  a->publish("big", 2, "small");
  EXPECT_TRUE(eventually([&] { return a->stats().published.load() == fits + 1; }));
}

TEST_F(RedisBridgeTest, ADeliverThatThrowsSkipsOnlyThatMessage) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> got;
  RedisBridge a(RedisAddress{"127.0.0.1", redis_->port()}, "shoal:test:",
                [&](const std::string&, std::uint8_t, std::string_view p) {
                  if (p == "boom") throw std::runtime_error("boom");
                  std::lock_guard lock(mu);
                  got.emplace_back(p);
                  cv.notify_all();
                });
  a.start();
  Inbox in_b;
  auto b = bridge(in_b);
  a.subscribe("room");
  ASSERT_TRUE(eventually([&] { return a.stats().subscribed.load() == 1 && connected(*b); }));
  b->publish("room", 1, "boom");
  b->publish("room", 1, "fine");
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return !got.empty(); }));
  EXPECT_EQ(got, (std::vector<std::string>{"fine"}));
  EXPECT_TRUE(eventually([&] { return a.stats().received.load() == 1; }));
  EXPECT_TRUE(connected(a));
}

TEST_F(RedisBridgeTest, ConnectsToABracketedIpv6Address) {
  if (!ipv6_loopback_works()) GTEST_SKIP() << "no IPv6 loopback here";
  RedisServer v6(free_loopback_port(), "::1");
  ASSERT_TRUE(v6.start()) << v6.output();
  std::string error;
  const auto address = parse_redis_url("redis://[::1]:" + std::to_string(v6.port()), error);
  ASSERT_TRUE(address) << error;
  Inbox in_a, in_b;
  RedisBridge a(*address, "shoal:test:", in_a.deliver());
  RedisBridge b(*address, "shoal:test:", in_b.deliver());
  a.start();
  b.start();
  a.subscribe("room");
  ASSERT_TRUE(eventually([&] { return a.stats().subscribed.load() == 1 && connected(b); }));
  b.publish("room", 1, "over ::1");
  EXPECT_EQ(payloads_of(in_a.wait_for(1)), (std::vector<std::string>{"over ::1"}));
}

}  // namespace
}  // namespace shoal::pubsub
