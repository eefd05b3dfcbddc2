#include "pubsub/redis_bridge.hpp"

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/basic_stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <hiredis/async.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/logging.hpp"

namespace shoal::pubsub {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

using executor_type = asio::io_context::executor_type;
using stream_descriptor = asio::posix::basic_stream_descriptor<executor_type>;
using steady_timer = asio::basic_waitable_timer<
    std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>, executor_type>;

constexpr std::size_t kIdBytes = 16;
constexpr std::size_t kHeaderBytes = kIdBytes + 1;  // id, then the opcode

constexpr std::chrono::milliseconds kBackoffFirst = 100ms;
constexpr std::chrono::milliseconds kBackoffMax = 5s;
// hiredis 0.14 has no connect timeout of its own; without one a connect to
// a host that drops SYNs would hang for the kernel's two minutes.
constexpr std::chrono::milliseconds kConnectTimeout = 3s;
constexpr std::chrono::seconds kWarnInterval = 10s;
// Channels per SUBSCRIBE when resubscribing: keeps one command (and the
// buffer hiredis formats it into) small however many channels are live.
constexpr std::size_t kChannelsPerSubscribe = 256;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

// hiredis' event hooks on an Asio descriptor, one per hiredis context.
//
// hiredis calls add/del Read/Write whenever it (no longer) wants an event,
// idempotently, and `cleanup` once from inside whichever call frees the
// context: a reply callback's caller, redisAsyncHandleRead/Write or
// redisAsyncFree. The fd belongs to hiredis (redisFree closes it), so
// cleanup releases the descriptor instead of closing it. A wait in flight
// holds a reference to this object, finds `ac_` null once the context is
// gone and returns without touching it.
//
// Only used on the bridge's thread.
class AsioEvents : public std::enable_shared_from_this<AsioEvents> {
 public:
  // Told, from inside cleanup, that `ac` is about to be freed (its fields
  // are still readable).
  using Gone = void (*)(void* owner, const redisAsyncContext* ac) noexcept;

  // Throws (assign) before any hook is installed, leaving `ac` untouched.
  static void attach(const executor_type& ex, redisAsyncContext* ac, Gone gone, void* owner) {
    std::shared_ptr<AsioEvents> ev(new AsioEvents(ex, ac, gone, owner));
    ev->fd_.assign(ac->c.fd);
    ev->self_ = ev;
    ac->ev.data = ev.get();
    ac->ev.addRead = &AsioEvents::add_read;
    ac->ev.delRead = &AsioEvents::del_read;
    ac->ev.addWrite = &AsioEvents::add_write;
    ac->ev.delWrite = &AsioEvents::del_write;
    ac->ev.cleanup = &AsioEvents::cleanup;
  }

 private:
  AsioEvents(const executor_type& ex, redisAsyncContext* ac, Gone gone, void* owner)
      : fd_(ex), ac_(ac), gone_(gone), owner_(owner) {}

  static void add_read(void* p) { static_cast<AsioEvents*>(p)->want(true); }
  static void del_read(void* p) { static_cast<AsioEvents*>(p)->want_read_ = false; }
  static void add_write(void* p) { static_cast<AsioEvents*>(p)->want(false); }
  static void del_write(void* p) { static_cast<AsioEvents*>(p)->want_write_ = false; }
  static void cleanup(void* p) { static_cast<AsioEvents*>(p)->release(); }

  // Called from inside hiredis: nothing may throw through its C frames.
  void want(bool read) noexcept {
    bool& wanted = read ? want_read_ : want_write_;
    bool& armed = read ? read_armed_ : write_armed_;
    wanted = true;
    if (armed || ac_ == nullptr) return;
    try {
      // A non-speculative wait re-registers the fd with epoll, which reports
      // readiness that is already there: no edge is missed between waits.
      fd_.async_wait(read ? stream_descriptor::wait_read : stream_descriptor::wait_write,
                     [self = shared_from_this(), read](const boost::system::error_code& ec) {
                       self->on_ready(read, ec);
                     });
      armed = true;
    } catch (const std::exception& e) {
      spdlog::error("redis bridge: cannot wait for the connection: {}", e.what());
    }
  }

  void on_ready(bool read, const boost::system::error_code& ec) {
    (read ? read_armed_ : write_armed_) = false;
    if (ac_ == nullptr || ec == asio::error::operation_aborted) return;
    redisAsyncContext* ac = ac_;
    if (ec) {
      // The reactor failed the wait: end the connection like a failed read,
      // with the reason where hiredis keeps its own (cleanup reads it).
      ac->c.err = REDIS_ERR_IO;
      std::snprintf(ac->c.errstr, sizeof ac->c.errstr, "%s", ec.message().c_str());
      redisAsyncFree(ac);
      return;
    }
    if (read ? !want_read_ : !want_write_) return;  // no longer wanted while we waited
    // Either may free the context (and so run release()); `self` in the
    // handler keeps this object alive across it.
    if (read)
      redisAsyncHandleRead(ac);
    else
      redisAsyncHandleWrite(ac);
  }

  void release() noexcept {
    // hiredis' reference: may be the last one, so it lives to the end of
    // this call.
    std::shared_ptr<AsioEvents> keep = std::move(self_);
    if (ac_ == nullptr) return;
    redisAsyncContext* ac = ac_;
    ac_ = nullptr;
    want_read_ = want_write_ = false;
    // Newer hiredis calls cleanup twice; the hooks must not reach this
    // object after it is gone.
    ac->ev.data = nullptr;
    ac->ev.addRead = ac->ev.delRead = ac->ev.addWrite = ac->ev.delWrite = nullptr;
    ac->ev.cleanup = nullptr;
    // Deregisters from epoll and aborts the waits; hiredis closes the fd.
    fd_.release();
    gone_(owner_, ac);
  }

  stream_descriptor fd_;
  redisAsyncContext* ac_;
  Gone gone_;
  void* owner_;
  std::shared_ptr<AsioEvents> self_;
  bool want_read_ = false;
  bool want_write_ = false;
  bool read_armed_ = false;
  bool write_armed_ = false;
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

std::string url_of(const RedisAddress& a) {
  const bool v6 = a.host.find(':') != std::string::npos;
  return "redis://" + (v6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
}

}  // namespace

std::optional<RedisAddress> parse_redis_url(std::string_view url, std::string& error) {
  const auto fail = [&](std::string why) -> std::optional<RedisAddress> {
    error = std::move(why);
    return std::nullopt;
  };
  constexpr std::string_view kScheme = "redis://";
  if (url.starts_with("rediss://"))
    return fail("rediss:// (TLS) is not supported; expected redis://HOST:PORT");
  if (!url.starts_with(kScheme)) return fail("expected redis://HOST:PORT");
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find('@') != std::string_view::npos)
    return fail("user names and passwords are not supported; expected redis://HOST:PORT");
  if (const auto extra = rest.find_first_of("/?#"); extra != std::string_view::npos)
    return fail("unexpected \"" + std::string(rest.substr(extra)) +
                "\" after the port (database numbers and options are not supported)");

  RedisAddress out;
  std::string_view host;
  std::optional<std::string_view> port;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return fail("IPv6 address without its closing ']'");
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return fail("expected :PORT after the ']'");
      port = after.substr(1);
    }
    in6_addr a6{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1)
      return fail("\"[" + std::string(host) + "]\" is not an IPv6 address");
  } else {
    const auto colon = rest.find(':');
    if (colon != std::string_view::npos && rest.find(':', colon + 1) != std::string_view::npos)
      return fail("an IPv6 address needs brackets, as in redis://[::1]:6379");
    host = rest.substr(0, colon);
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
    if (host.empty()) return fail("the host is empty; expected redis://HOST:PORT");
    if (!std::all_of(host.begin(), host.end(), is_name_char))
      return fail("\"" + std::string(host) + "\" is not a host name or an IPv4 address");
    const bool dotted = std::all_of(host.begin(), host.end(),
                                    [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
    in_addr a4{};
    if (dotted && inet_pton(AF_INET, std::string(host).c_str(), &a4) != 1)
      return fail("\"" + std::string(host) + "\" is not an IPv4 address");
  }
  if (port) {
    unsigned value = 0;
    const char* end = port->data() + port->size();
    const auto [p, ec] = std::from_chars(port->data(), end, value);
    if (port->empty() || ec != std::errc{} || p != end || value < 1 || value > 65535)
      return fail("the port must be a number from 1 to 65535, not \"" + std::string(*port) + "\"");
    out.port = static_cast<std::uint16_t>(value);
  }
  out.host = std::string(host);
  error.clear();
  return out;
}

struct RedisBridge::Impl {
  // One hiredis connection (subscriber or publisher) and its reconnect timer.
  // Lives in the bridge's Impl and is only touched on the bridge's thread.
  struct Link {
    enum class State { idle, connecting, connected };

    Link(Impl& o, const char* r, const executor_type& ex) : owner(o), role(r), timer(ex) {}

    Impl& owner;
    const char* role;  // for the log
    steady_timer timer;  // the backoff before a connect, then the connect's deadline
    redisAsyncContext* ac = nullptr;  // while connecting or connected
    State state = State::idle;
    std::chrono::milliseconds backoff = kBackoffFirst;
    std::uint64_t attempt = 0;      // tells a stale deadline from the current one
    std::string reason;             // why we freed the context ourselves (connect deadline)
  };

  Impl(RedisAddress a, std::string p, Deliver d)
      : address(std::move(a)), prefix(std::move(p)), deliver(std::move(d)), where(url_of(address)) {
    std::random_device rd;
    for (std::size_t i = 0; i < kIdBytes; i += 4) {
      const std::uint32_t r = rd();
      std::memcpy(id.data() + i, &r, 4);
    }
    rng.seed(rd());
  }

  // --- called from any thread ------------------------------------------

  void start();
  void stop();

  // --- the bridge's thread -----------------------------------------------

  void connect(Link& l);
  void on_connected(Link& l);
  void on_gone(Link& l, const std::string& why);
  void retry_later(Link& l);
  void update_connected();
  void send_subscribe(const std::vector<const std::string*>& channels);
  void do_subscribe(const std::string& channel);
  void do_unsubscribe(const std::string& channel);
  void do_publish(const std::string& key, const std::string& envelope, std::size_t cost);
  void on_subscriber_reply(const redisReply& r);
  void on_message(std::string_view channel, std::string_view body);
  void on_publish_reply(std::size_t cost, const redisReply* r);
  void shutdown();
  void drop_publish(std::size_t cost) {
    pending_bytes.fetch_sub(cost, std::memory_order_relaxed);
    stats.publish_dropped.fetch_add(1, std::memory_order_relaxed);
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args);

  // hiredis callbacks (C linkage conventions; never throw through hiredis).
  static void on_connect_cb(const redisAsyncContext* ac, int status);
  static void on_subscriber_cb(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_publish_cb(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_gone_cb(void* link, const redisAsyncContext* ac) noexcept;

  const RedisAddress address;
  const std::string prefix;
  const Deliver deliver;
  const std::string where;  // redis://HOST:PORT, for the log
  std::array<char, kIdBytes> id{};
  Stats stats;
  std::atomic<std::size_t> pending_bytes{0};

  asio::io_context ioc{1};
  asio::executor_work_guard<executor_type> work{ioc.get_executor()};
  Link sub{*this, "subscriber", ioc.get_executor()};
  Link pub{*this, "publisher", ioc.get_executor()};

  std::mutex lifecycle;  // start/stop
  bool started = false;
  std::thread thread;

  // The bridge's thread only.
  bool stopping = false;
  bool ever_connected = false;
  // Local subscriber counts per channel (local name).
  std::unordered_map<std::string, std::uint64_t, StringHash, std::equal_to<>> channels;
  RateLimiter warn_limit{kWarnInterval};
  std::minstd_rand rng;
};

template <typename... Args>
void RedisBridge::Impl::warn(fmt::format_string<Args...> format, Args&&... args) {
  std::uint64_t suppressed = 0;
  if (!warn_limit.allow(suppressed)) return;
  const std::string text = fmt::format(format, std::forward<Args>(args)...);
  if (suppressed > 0)
    spdlog::warn("redis bridge \"{}\": {} ({} more warnings suppressed)", prefix, text, suppressed);
  else
    spdlog::warn("redis bridge \"{}\": {}", prefix, text);
}

void RedisBridge::Impl::start() {
  std::lock_guard lock(lifecycle);
  if (started) return;
  started = true;
  asio::post(ioc, [this] {
    connect(sub);
    connect(pub);
  });
  thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "redis-bridge");
    // hiredis writes with write(2), not send(MSG_NOSIGNAL): a write to a
    // Redis that just went away raises SIGPIPE in this thread. shoald
    // ignores it process-wide; blocking it here keeps the bridge safe in
    // any process (the write then fails with EPIPE, and the signal stays
    // pending on this thread, never delivered).
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
    // An exception escaping a handler is logged and the loop goes on: the
    // bridge must never take the process down.
    for (;;) {
      try {
        ioc.run();
        break;
      } catch (const std::exception& e) {
        spdlog::error("redis bridge \"{}\": unhandled exception: {}", prefix, e.what());
      } catch (...) {
        spdlog::error("redis bridge \"{}\": unhandled non-standard exception", prefix);
      }
    }
  });
}

void RedisBridge::Impl::stop() {
  std::lock_guard lock(lifecycle);
  if (!thread.joinable()) return;
  asio::post(ioc, [this] { shutdown(); });
  thread.join();
}

void RedisBridge::Impl::shutdown() {
  stopping = true;
  for (Link* l : {&sub, &pub}) {
    l->timer.cancel();
    // Not inside a hiredis callback here, so the context is freed at once:
    // its pending replies run with NULL (counted as dropped publishes) and
    // cleanup releases the descriptor before the io_context goes.
    if (l->ac != nullptr) redisAsyncFree(l->ac);
  }
  stats.connected.store(false);
  stats.subscribed.store(0);
  work.reset();
  // What is left in the queue (aborted waits, publishes posted after this)
  // is destroyed with the io_context, never run.
  ioc.stop();
}

void RedisBridge::Impl::connect(Link& l) {
  if (stopping) return;
  l.state = Link::State::connecting;
  ++l.attempt;
  l.reason.clear();
  // Resolves the name synchronously (hiredis uses getaddrinfo): this thread
  // is the bridge's own, so only the bridge waits.
  redisAsyncContext* c = redisAsyncConnect(address.host.c_str(), address.port);
  if (c == nullptr) {
    on_gone(l, "out of memory");
    return;
  }
  if (c->err != 0) {
    const std::string why = c->errstr != nullptr ? c->errstr : "connect failed";
    redisAsyncFree(c);
    on_gone(l, why);
    return;
  }
  c->data = &l;
  try {
    AsioEvents::attach(ioc.get_executor(), c, &on_gone_cb, &l);
  } catch (const std::exception& e) {
    redisAsyncFree(c);  // no hooks installed: nothing calls back
    on_gone(l, e.what());
    return;
  }
  l.ac = c;
  redisEnableKeepAlive(&c->c);
  // Installs the callback and waits for the first write event, which is
  // how hiredis learns that the connect finished (or failed).
  redisAsyncSetConnectCallback(c, &on_connect_cb);
  l.timer.expires_after(kConnectTimeout);
  l.timer.async_wait([this, &l, attempt = l.attempt](const boost::system::error_code& ec) {
    if (ec || stopping || l.attempt != attempt || l.state != Link::State::connecting ||
        l.ac == nullptr)
      return;
    l.reason = "connect timed out after " + std::to_string(kConnectTimeout.count()) + " ms";
    redisAsyncFree(l.ac);  // cleanup -> on_gone -> retry_later
  });
}

void RedisBridge::Impl::on_connected(Link& l) {
  l.state = Link::State::connected;
  l.backoff = kBackoffFirst;
  l.timer.cancel();
  if (&l == &sub && !channels.empty()) {
    std::vector<const std::string*> all;
    all.reserve(channels.size());
    for (const auto& [name, count] : channels) all.push_back(&name);
    send_subscribe(all);
  }
  update_connected();
}

void RedisBridge::Impl::on_gone(Link& l, const std::string& why) {
  const bool was_connected = l.state == Link::State::connected;
  l.ac = nullptr;
  l.state = Link::State::idle;
  l.timer.cancel();
  if (&l == &sub) stats.subscribed.store(0);
  update_connected();
  if (stopping) return;
  if (was_connected) {
    l.backoff = kBackoffFirst;
    warn("lost the {} connection to {}: {}; publishes are dropped until it is back", l.role,
         where, why);
  } else {
    warn("cannot connect ({}) to {}: {}; retrying in up to {} ms", l.role, where, why,
         l.backoff.count());
  }
  retry_later(l);
}

void RedisBridge::Impl::retry_later(Link& l) {
  // Equal jitter: half the backoff fixed, half random, so instances that
  // lost the same Redis do not all come back in the same millisecond.
  const auto half = l.backoff.count() / 2;
  std::uniform_int_distribution<long> spread(0, half);
  const std::chrono::milliseconds wait(half + spread(rng));
  l.backoff = std::min(l.backoff * 2, kBackoffMax);
  l.timer.expires_after(wait);
  l.timer.async_wait([this, &l](const boost::system::error_code& ec) {
    if (ec || stopping || l.state != Link::State::idle) return;
    connect(l);
  });
}

void RedisBridge::Impl::update_connected() {
  const bool now = sub.state == Link::State::connected && pub.state == Link::State::connected;
  if (now == stats.connected.load()) return;
  stats.connected.store(now);
  if (!now) return;
  if (ever_connected) {
    stats.reconnects.fetch_add(1);
    spdlog::info("redis bridge \"{}\": connected again to {}", prefix, where);
  } else {
    spdlog::info("redis bridge \"{}\": connected to {}", prefix, where);
  }
  ever_connected = true;
}

void RedisBridge::Impl::send_subscribe(const std::vector<const std::string*>& names) {
  std::vector<std::string> keys;
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (std::size_t at = 0; at < names.size(); at += kChannelsPerSubscribe) {
    const std::size_t n = std::min(kChannelsPerSubscribe, names.size() - at);
    keys.clear();
    argv.assign(1, "SUBSCRIBE");
    lens.assign(1, 9);
    for (std::size_t i = 0; i < n; ++i) keys.push_back(prefix + *names[at + i]);
    for (const auto& k : keys) {
      argv.push_back(k.data());
      lens.push_back(k.size());
    }
    // One callback for every channel: each reply and message carries its
    // channel, and the privdata is unused.
    redisAsyncCommandArgv(sub.ac, &on_subscriber_cb, nullptr, static_cast<int>(argv.size()),
                          argv.data(), lens.data());
  }
}

void RedisBridge::Impl::do_subscribe(const std::string& channel) {
  auto [it, inserted] = channels.try_emplace(channel, 0);
  if (it->second++ == 0 && sub.state == Link::State::connected) send_subscribe({&it->first});
}

void RedisBridge::Impl::do_unsubscribe(const std::string& channel) {
  const auto it = channels.find(channel);
  if (it == channels.end()) return;  // more unsubscribes than subscribes: ignore
  if (--it->second > 0) return;
  channels.erase(it);
  if (sub.state != Link::State::connected) return;
  const std::string key = prefix + channel;
  const char* argv[] = {"UNSUBSCRIBE", key.data()};
  const std::size_t lens[] = {11, key.size()};
  // No callback: hiredis routes the reply to the channel's SUBSCRIBE one.
  redisAsyncCommandArgv(sub.ac, nullptr, nullptr, 2, argv, lens);
}

void RedisBridge::Impl::do_publish(const std::string& key, const std::string& envelope,
                                   std::size_t cost) {
  if (pub.state != Link::State::connected) {
    drop_publish(cost);
    return;
  }
  const char* argv[] = {"PUBLISH", key.data(), envelope.data()};
  const std::size_t lens[] = {7, key.size(), envelope.size()};
  // The cost rides along as the privdata: the reply gives it back to the
  // pending bound without a per-publish allocation.
  void* privdata = reinterpret_cast<void*>(static_cast<std::uintptr_t>(cost));
  if (redisAsyncCommandArgv(pub.ac, &on_publish_cb, privdata, 3, argv, lens) != REDIS_OK)
    drop_publish(cost);
}

void RedisBridge::Impl::on_publish_reply(std::size_t cost, const redisReply* r) {
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    // NULL: the connection went before Redis answered; the message may or
    // may not have gone out, and is counted as dropped.
    drop_publish(cost);
    return;
  }
  pending_bytes.fetch_sub(cost, std::memory_order_relaxed);
  stats.published.fetch_add(1, std::memory_order_relaxed);
}

void RedisBridge::Impl::on_subscriber_reply(const redisReply& r) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 3) return;
  const redisReply* kind = r.element[0];
  if (kind->type != REDIS_REPLY_STRING) return;
  const std::string_view k(kind->str, kind->len);
  if (k == "message") {
    const redisReply* channel = r.element[1];
    const redisReply* body = r.element[2];
    if (channel->type != REDIS_REPLY_STRING || body->type != REDIS_REPLY_STRING) return;
    on_message({channel->str, channel->len}, {body->str, body->len});
  } else if (k == "subscribe" || k == "unsubscribe") {
    // The third element is how many channels this connection now has.
    if (r.element[2]->type == REDIS_REPLY_INTEGER)
      stats.subscribed.store(static_cast<std::uint64_t>(std::max<long long>(0, r.element[2]->integer)));
  }
}

void RedisBridge::Impl::on_message(std::string_view channel, std::string_view body) {
  if (body.size() < kHeaderBytes || !channel.starts_with(prefix)) return;  // not ours
  // Our own: the hub delivered it to the local subscribers when it was sent.
  if (std::memcmp(body.data(), id.data(), kIdBytes) == 0) return;
  // Unsubscribed while Redis had not yet confirmed the UNSUBSCRIBE.
  const auto it = channels.find(channel.substr(prefix.size()));
  if (it == channels.end() || !deliver) return;
  const auto opcode = static_cast<std::uint8_t>(body[kIdBytes]);
  try {
    deliver(it->first, opcode, body.substr(kHeaderBytes));
    stats.received.fetch_add(1, std::memory_order_relaxed);
  } catch (const std::exception& e) {
    warn("delivering a message on \"{}\" failed: {}", it->first, e.what());
  } catch (...) {
    warn("delivering a message on \"{}\" failed", it->first);
  }
}

void RedisBridge::Impl::on_connect_cb(const redisAsyncContext* ac, int status) {
  // REDIS_ERR: hiredis frees the context right after this returns, and
  // cleanup (on_gone_cb) reports it; nothing to do here.
  if (status != REDIS_OK) return;
  auto* l = static_cast<Link*>(ac->data);
  try {
    l->owner.on_connected(*l);
  } catch (const std::exception& e) {
    spdlog::error("redis bridge: after connecting: {}", e.what());
  } catch (...) {
    spdlog::error("redis bridge: after connecting: non-standard exception");
  }
}

void RedisBridge::Impl::on_subscriber_cb(redisAsyncContext* ac, void* reply, void*) {
  if (reply == nullptr) return;  // the context is being freed
  auto* l = static_cast<Link*>(ac->data);
  try {
    l->owner.on_subscriber_reply(*static_cast<const redisReply*>(reply));
  } catch (const std::exception& e) {
    spdlog::error("redis bridge: handling a message: {}", e.what());
  } catch (...) {
    spdlog::error("redis bridge: handling a message: non-standard exception");
  }
}

void RedisBridge::Impl::on_publish_cb(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* l = static_cast<Link*>(ac->data);
  l->owner.on_publish_reply(static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(privdata)),
                            static_cast<const redisReply*>(reply));
}

void RedisBridge::Impl::on_gone_cb(void* link, const redisAsyncContext* ac) noexcept {
  auto* l = static_cast<Link*>(link);
  std::string why;
  try {
    if (ac->c.err != 0)
      why = ac->c.errstr;
    else if (!l->reason.empty())
      why = l->reason;
    else
      why = "connection closed";
    l->owner.on_gone(*l, why);
  } catch (const std::exception& e) {
    spdlog::error("redis bridge: after a disconnect: {}", e.what());
  } catch (...) {
    spdlog::error("redis bridge: after a disconnect: non-standard exception");
  }
}

RedisBridge::RedisBridge(RedisAddress address, std::string prefix, Deliver deliver)
    : impl_(std::make_unique<Impl>(std::move(address), std::move(prefix), std::move(deliver))) {}

RedisBridge::~RedisBridge() { stop(); }

void RedisBridge::start() { impl_->start(); }
void RedisBridge::stop() { impl_->stop(); }

void RedisBridge::subscribe(const std::string& channel) {
  Impl& m = *impl_;
  asio::post(m.ioc, [&m, channel] { m.do_subscribe(channel); });
}

void RedisBridge::unsubscribe(const std::string& channel) {
  Impl& m = *impl_;
  asio::post(m.ioc, [&m, channel] { m.do_unsubscribe(channel); });
}

void RedisBridge::publish(const std::string& channel, std::uint8_t opcode, std::string payload) {
  Impl& m = *impl_;
  // Counted from here to Redis' reply, so the queue to the thread and
  // hiredis' output buffer together stay under the bound. One atomic add
  // per publish, next to the post's own lock.
  const std::size_t cost = m.prefix.size() + channel.size() + kHeaderBytes + payload.size();
  if (m.pending_bytes.fetch_add(cost, std::memory_order_relaxed) + cost > kMaxPendingBytes) {
    m.drop_publish(cost);
    return;
  }
  std::string envelope;
  envelope.reserve(kHeaderBytes + payload.size());
  envelope.append(m.id.data(), kIdBytes);
  envelope.push_back(static_cast<char>(opcode));
  envelope.append(payload);
  asio::post(m.ioc, [&m, key = m.prefix + channel, envelope = std::move(envelope), cost] {
    m.do_publish(key, envelope, cost);
  });
}

const RedisBridge::Stats& RedisBridge::stats() const { return impl_->stats; }

}  // namespace shoal::pubsub
