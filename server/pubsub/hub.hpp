// Fan-out for a `websocket-pubsub` listener: channels across the shards of
// this process and, with `pubsub.redis`, across instances.
//
// - Each shard keeps its own ChannelTable: the subscribers on that shard,
//   by channel, and which shards have subscribers of each channel. Nothing
//   on the hot path is shared or locked.
// - A message published on shard S is framed once (an unmasked, uncompressed
//   server frame, shared and immutable), handed to S's own subscribers, and
//   posted once to each other shard whose table S knows to have subscribers
//   of the channel; the Redis bridge gets a copy to publish.
// - A shard's table learns who subscribes where by messages: when a
//   channel's local subscribers go from 0 to 1 (or 1 to 0), its shard posts
//   the change to every shard. So a new subscriber on another shard gets
//   the messages published after that post has run there.
// - Messages from other instances (the bridge's thread) are posted to every
//   shard of the listener; each looks up its own table.
//
// Ownership: one PubSubHub per pubsub listener, owned by the Server, with one
// ChannelTable per shard (the shard's ListenerSlot points to it). The hub
// outlives the shards' threads. Thread safety: a ChannelTable is used only
// on its shard's thread; PubSubHub's methods say where they may be called.
#pragma once

#include <atomic>
#include <boost/intrusive/list.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "protocol/ws_echo.hpp"

namespace shoal {
class Shard;
}

namespace shoal::pubsub {

class RedisBridge;
class ChannelTable;

// The channel a subscriber asks for at the upgrade (`?channel=NAME`): 1-64
// bytes of [A-Za-z0-9_.:-]. nullopt with `error` (naming the parameter) for
// a missing, repeated or bad name.
std::optional<std::string> channel_of(std::string_view target, std::string& error);

// One published message, framed once for every subscriber.
struct Published {
  std::string channel;
  std::vector<unsigned char> frame;  // FIN, the opcode, no mask, no RSV bits
  std::size_t payload_size = 0;
};
using PublishedPtr = std::shared_ptr<const Published>;

// What a subscriber's session does with a delivery: sends (or queues) the
// frame; false when it could not take it (closed, or dropped or closed as a
// slow consumer, counted by the session). A function and the session's
// address rather than a virtual base, which would put a vtable pointer in
// every session.
using DeliverFn = bool (*)(void* session, const PublishedPtr& message);

// A subscriber's place in its shard's table, and the EchoShaper through
// which the messages it sends are published. Lives in the session (by
// unique_ptr); leaves the table when destroyed.
class Member final : public EchoShaper {
 public:
  using Hook = boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

  Member(ChannelTable& table, std::string channel, void* session, DeliverFn deliver_fn);
  ~Member() override;
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  // The client's message: published to the channel; nothing is echoed.
  bool on_message(WsEchoEngine& engine, unsigned opcode, const unsigned char* message,
                  std::size_t n, ByteBuffer& out) override;

  const std::string& channel() const noexcept { return channel_; }
  bool deliver(const PublishedPtr& message) const { return deliver_(session_, message); }

  Hook hook;

 private:
  ChannelTable& table_;
  std::string channel_;
  void* session_;
  DeliverFn deliver_;
};

using MemberList = boost::intrusive::list<
    Member, boost::intrusive::member_hook<Member, Member::Hook, &Member::hook>,
    boost::intrusive::constant_time_size<false>>;

class PubSubHub;

// One shard's channels of one listener. Shard thread only.
class ChannelTable {
 public:
  ChannelTable(PubSubHub& hub, unsigned shard_index);
  ~ChannelTable();

  void join(Member& member);
  void leave(Member& member);
  // A client's message on this shard.
  void publish(const Member& from, unsigned opcode, const unsigned char* payload, std::size_t n);
  // Hands `message` to this shard's subscribers of its channel (`except`:
  // the publisher, when it must not get its own).
  void deliver_local(const PublishedPtr& message, const Member* except);
  // Another shard's change: whether `shard` has subscribers of `channel`.
  void set_remote(const std::string& channel, unsigned shard, bool present);

  std::size_t local_channels() const noexcept { return local_.size(); }
  const PubSubConfig& config() const noexcept;

 private:
  PubSubHub& hub_;
  unsigned shard_;
  std::unordered_map<std::string, MemberList> local_;
  // Per channel, the shards (bit per shard, in words of 64) that have
  // subscribers of it, this one included.
  std::unordered_map<std::string, std::vector<std::uint64_t>> shards_with_;
};

class PubSubHub {
 public:
  // `shards`: the server's, in index order; they outlive the hub's use.
  PubSubHub(const ListenerConfig& listener, std::size_t listener_index);
  ~PubSubHub();

  // Before the shards start: one table per shard.
  void attach(std::vector<Shard*> shards);
  // Starts the Redis bridge, when configured (main thread, after attach).
  void start();
  void stop();

  ChannelTable& table(unsigned shard) noexcept { return *tables_[shard]; }
  const PubSubConfig& config() const noexcept { return config_; }
  std::size_t listener_index() const noexcept { return listener_index_; }
  std::size_t shard_count() const noexcept { return shards_.size(); }
  Shard& shard(unsigned i) noexcept { return *shards_[i]; }
  // Null without pubsub.redis.
  RedisBridge* bridge() noexcept { return bridge_.get(); }
  const RedisBridge* bridge() const noexcept { return bridge_.get(); }
  // Ready as far as Redis goes: connected, or not required.
  bool ready() const;
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

  static PublishedPtr frame(std::string channel, unsigned opcode, const unsigned char* payload,
                            std::size_t n);

 private:
  friend class ChannelTable;
  // The bridge's thread: a message from another instance.
  void from_redis(const std::string& channel, std::uint8_t opcode, std::string_view payload);

  PubSubConfig config_;
  std::string listener_name_;
  std::size_t listener_index_;
  std::vector<Shard*> shards_;
  std::vector<std::unique_ptr<ChannelTable>> tables_;
  std::unique_ptr<RedisBridge> bridge_;
  // From stop() on, tables only unlink (the shards' loops are ending).
  std::atomic<bool> stopping_{false};
};

}  // namespace shoal::pubsub
