#include "pubsub/hub.hpp"

#include <boost/asio/post.hpp>
#include <cstring>
#include <stdexcept>

#include "protocol/frame_codec.hpp"
#include "pubsub/redis_bridge.hpp"
#include "runtime/shard.hpp"

namespace shoal::pubsub {

namespace {

bool channel_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == ':' || c == '-';
}

void set_bit(std::vector<std::uint64_t>& bits, unsigned i, bool on) {
  if (bits.size() <= i / 64) bits.resize(i / 64 + 1, 0);
  const std::uint64_t mask = std::uint64_t{1} << (i % 64);
  bits[i / 64] = on ? bits[i / 64] | mask : bits[i / 64] & ~mask;
}

bool none_set(const std::vector<std::uint64_t>& bits) {
  for (const std::uint64_t w : bits)
    if (w != 0) return false;
  return true;
}

ListenerStats& stats_of(PubSubHub& hub, unsigned shard) {
  return hub.shard(shard).slot(hub.listener_index()).stats;
}

}  // namespace

std::optional<std::string> channel_of(std::string_view target, std::string& error) {
  const std::size_t q = target.find('?');
  std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  std::optional<std::string> found;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const std::size_t eq = item.find('=');
    if (item.substr(0, eq) != "channel") continue;
    if (found) {
      error = "channel: given more than once";
      return std::nullopt;
    }
    // Names are plain bytes of a small set: no percent-decoding, so a name
    // means the same in every client's URL.
    const std::string_view name = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
    if (name.empty() || name.size() > 64) {
      error = "channel: a name is 1-64 bytes of A-Z a-z 0-9 _ . : -";
      return std::nullopt;
    }
    for (const char c : name) {
      if (!channel_char(c)) {
        error = "channel: a name is 1-64 bytes of A-Z a-z 0-9 _ . : -";
        return std::nullopt;
      }
    }
    found = std::string(name);
  }
  if (!found) error = "channel: required (ws://HOST:PORT/PATH?channel=NAME)";
  return found;
}

// --- Member ------------------------------------------------------------------

Member::Member(ChannelTable& table, std::string channel, void* session, DeliverFn deliver_fn)
    : table_(table), channel_(std::move(channel)), session_(session), deliver_(deliver_fn) {
  table_.join(*this);
}

Member::~Member() { table_.leave(*this); }

bool Member::on_message(WsEchoEngine&, unsigned opcode, const unsigned char* message, std::size_t n,
                        ByteBuffer&) {
  table_.publish(*this, opcode, message, n);
  return true;
}

// --- ChannelTable ------------------------------------------------------------

ChannelTable::ChannelTable(PubSubHub& hub, unsigned shard_index) : hub_(hub), shard_(shard_index) {}

const PubSubConfig& ChannelTable::config() const noexcept { return hub_.config(); }

ChannelTable::~ChannelTable() {
  // Members still linked (sessions destroyed with the io_context after the
  // table): unlink them so that their destructors find nothing.
  for (auto& [name, members] : local_) members.clear();
}

void ChannelTable::join(Member& member) {
  MemberList& list = local_[member.channel()];
  const bool first = list.empty();
  list.push_back(member);
  stats_of(hub_, shard_).pubsub_subscribers.add();
  if (!first || hub_.stopping()) return;
  // Every shard (this one too, through the same path, so that the order of
  // changes is the same everywhere) learns that this shard has the channel.
  for (unsigned s = 0; s < hub_.shard_count(); ++s) {
    ChannelTable* table = &hub_.table(s);
    hub_.shard(s).post([table, channel = member.channel(), from = shard_] {
      table->set_remote(channel, from, true);
    });
  }
  if (RedisBridge* bridge = hub_.bridge()) bridge->subscribe(member.channel());
}

void ChannelTable::leave(Member& member) {
  if (!member.hook.is_linked()) return;
  member.hook.unlink();
  stats_of(hub_, shard_).pubsub_subscribers.sub();
  const auto it = local_.find(member.channel());
  if (it == local_.end() || !it->second.empty()) return;
  local_.erase(it);
  if (hub_.stopping()) return;
  for (unsigned s = 0; s < hub_.shard_count(); ++s) {
    ChannelTable* table = &hub_.table(s);
    hub_.shard(s).post([table, channel = member.channel(), from = shard_] {
      table->set_remote(channel, from, false);
    });
  }
  if (RedisBridge* bridge = hub_.bridge()) bridge->unsubscribe(member.channel());
}

void ChannelTable::publish(const Member& from, unsigned opcode, const unsigned char* payload,
                           std::size_t n) {
  stats_of(hub_, shard_).pubsub_published.add();
  const PublishedPtr message = PubSubHub::frame(from.channel(), opcode, payload, n);
  deliver_local(message, hub_.config().echo_to_sender ? nullptr : &from);
  if (const auto it = shards_with_.find(from.channel()); it != shards_with_.end()) {
    const std::vector<std::uint64_t>& bits = it->second;
    for (unsigned s = 0; s < hub_.shard_count(); ++s) {
      if (s == shard_ || s / 64 >= bits.size() || (bits[s / 64] >> (s % 64) & 1) == 0) continue;
      ChannelTable* table = &hub_.table(s);
      hub_.shard(s).post([table, message] { table->deliver_local(message, nullptr); });
    }
  }
  if (RedisBridge* bridge = hub_.bridge())
    bridge->publish(from.channel(), static_cast<std::uint8_t>(opcode),
                    std::string(reinterpret_cast<const char*>(payload), n));
}

void ChannelTable::deliver_local(const PublishedPtr& message, const Member* except) {
  const auto it = local_.find(message->channel);
  if (it == local_.end()) return;
  ListenerStats& st = stats_of(hub_, shard_);
  std::uint64_t delivered = 0;
  // A delivery may close its subscriber (a slow consumer); its Member stays
  // in the list until the session is destroyed, which never happens inside
  // a delivery (its pending operations hold it), and closed subscribers take
  // nothing.
  for (Member& member : it->second) {
    if (&member == except) continue;
    if (member.deliver(message)) ++delivered;
  }
  st.pubsub_deliveries.add(delivered);
}

void ChannelTable::set_remote(const std::string& channel, unsigned shard, bool present) {
  auto it = shards_with_.find(channel);
  if (it == shards_with_.end()) {
    if (!present) return;
    it = shards_with_.emplace(channel, std::vector<std::uint64_t>{}).first;
  }
  set_bit(it->second, shard, present);
  if (none_set(it->second)) shards_with_.erase(it);
}

// --- PubSubHub ---------------------------------------------------------------

PubSubHub::PubSubHub(const ListenerConfig& listener, std::size_t listener_index)
    : config_(listener.pubsub), listener_name_(listener.name), listener_index_(listener_index) {}

PubSubHub::~PubSubHub() { stop(); }

void PubSubHub::attach(std::vector<Shard*> shards) {
  shards_ = std::move(shards);
  for (unsigned i = 0; i < shards_.size(); ++i)
    tables_.push_back(std::make_unique<ChannelTable>(*this, i));
  if (!config_.redis.empty()) {
    std::string error;
    std::optional<RedisAddress> address = parse_redis_url(config_.redis, error);
    if (!address) throw std::runtime_error("pubsub.redis: " + error);
    bridge_ = std::make_unique<RedisBridge>(
        *address, "shoal:" + listener_name_ + ":",
        [this](const std::string& channel, std::uint8_t opcode, std::string_view payload) {
          from_redis(channel, opcode, payload);
        });
  }
}

void PubSubHub::start() {
  if (bridge_) bridge_->start();
}

void PubSubHub::stop() {
  stopping_.store(true, std::memory_order_release);
  if (bridge_) bridge_->stop();
}

bool PubSubHub::ready() const {
  return !config_.redis_required || (bridge_ && bridge_->stats().connected.load());
}

PublishedPtr PubSubHub::frame(std::string channel, unsigned opcode, const unsigned char* payload,
                              std::size_t n) {
  auto message = std::make_shared<Published>();
  message->channel = std::move(channel);
  message->payload_size = n;
  message->frame.resize(ws::ServerCodec::max_send_header + n);
  const std::size_t h = ws::ServerCodec::put_header(message->frame.data(), true, false,
                                                    static_cast<std::uint8_t>(opcode), n);
  if (n != 0) std::memcpy(message->frame.data() + h, payload, n);
  message->frame.resize(h + n);
  return message;
}

void PubSubHub::from_redis(const std::string& channel, std::uint8_t opcode, std::string_view payload) {
  const PublishedPtr message =
      frame(channel, opcode, reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
  for (unsigned s = 0; s < shards_.size(); ++s) {
    ChannelTable* table = tables_[s].get();
    shards_[s]->post([table, message] { table->deliver_local(message, nullptr); });
  }
}

}  // namespace shoal::pubsub
