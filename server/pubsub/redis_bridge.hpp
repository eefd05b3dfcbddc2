// RedisBridge: one websocket-pubsub listener's link to Redis pub/sub, so that
// several shoald instances serving the same channels deliver each other's
// messages. A message a local client publishes is PUBLISHed to Redis; one
// another instance published arrives through SUBSCRIBE and is handed to
// `Deliver`.
//
// On the wire each message is PUBLISH <prefix><channel> <envelope>, where the
// envelope is this bridge's 16-byte random instance id, one byte of WebSocket
// opcode, then the message. A bridge drops what carries its own id: the hub
// already delivered it to the local subscribers.
//
// Redis is optional at run time: the bridge connects in the background,
// reconnects with exponential backoff (100 ms doubling to 5 s, with jitter),
// SUBSCRIBEs again to every channel that has a local subscriber, and while
// it is not connected drops publishes and counts them. Nothing it does
// throws out of its thread or blocks the caller.
//
// Ownership: the listener's hub owns the bridge. The bridge owns one thread
// with its own io_context (never a shard's: name resolution in hiredis
// blocks, and a slow Redis must not stall a shard) and two hiredis
// connections, because a SUBSCRIBEd connection accepts no PUBLISH.
//
// Thread safety: subscribe(), unsubscribe(), publish() and stats() may be
// called from any thread at any time (before start() their work waits for
// the thread; after stop() it is dropped). start() and stop() are for the
// owner's thread, never from inside `Deliver`. `Deliver` runs on the
// bridge's thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace shoal::pubsub {

struct RedisAddress {
  std::string host;  // a name or an address; IPv6 without its brackets
  std::uint16_t port = 6379;
};

// "redis://HOST:PORT" -> address; nullopt with `error` set otherwise. HOST
// is a name, an IPv4 address or a bracketed IPv6 address ("[::1]"); PORT is
// 1-65535 and may be left out (6379). User names, passwords, database
// numbers and rediss:// (TLS) are refused, each with its own message.
std::optional<RedisAddress> parse_redis_url(std::string_view url, std::string& error);

class RedisBridge {
 public:
  // Called on the bridge's thread for each message another instance
  // published on a channel that has a local subscriber. `channel` is the
  // local name (without the prefix); `payload` points into hiredis' reply
  // and is valid only during the call. An exception it throws is logged and
  // the message skipped. While it runs the bridge reads nothing from Redis,
  // so it should hand the message on (post to the shards) and return.
  using Deliver =
      std::function<void(const std::string& channel, std::uint8_t opcode, std::string_view payload)>;

  // Written by the bridge's thread (publish_dropped also by the callers of
  // publish()), read by anyone.
  struct Stats {
    std::atomic<bool> connected{false};         // both connections up
    std::atomic<std::uint64_t> reconnects{0};   // times connected again after a loss
    std::atomic<std::uint64_t> published{0};    // PUBLISHes Redis acknowledged
    std::atomic<std::uint64_t> received{0};     // messages from other instances delivered
    std::atomic<std::uint64_t> publish_dropped{0};  // not sent: down, over the bound, or lost in flight
    std::atomic<std::uint64_t> subscribed{0};   // channels Redis confirms on the subscriber connection
  };

  // Bytes of publishes accepted but not yet acknowledged by Redis (waiting
  // for the thread, in hiredis' output buffer or awaiting the reply); a
  // publish that would go above it is dropped and counted.
  static constexpr std::size_t kMaxPendingBytes = std::size_t{64} << 20;

  // prefix: prepended to every channel name on Redis ("shoal:LISTENER:").
  RedisBridge(RedisAddress address, std::string prefix, Deliver deliver);
  ~RedisBridge();  // stops and joins
  RedisBridge(const RedisBridge&) = delete;
  RedisBridge& operator=(const RedisBridge&) = delete;

  // Starts the thread, which connects in the background; never blocks on
  // Redis and never throws because Redis is down. Once only.
  void start();
  // Closes both connections and joins the thread. Idempotent.
  void stop();

  // The instance now has one more local subscriber of `channel`; Redis is
  // sent SUBSCRIBE when the count goes 0 -> 1.
  void subscribe(const std::string& channel);
  // One local subscriber fewer; UNSUBSCRIBE when the count goes 1 -> 0.
  void unsubscribe(const std::string& channel);
  // PUBLISHes `payload` with its WebSocket opcode to the other instances.
  void publish(const std::string& channel, std::uint8_t opcode, std::string payload);

  const Stats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shoal::pubsub
