// shoal-load's options: the command line, an optional YAML scenario under it
// (the command line wins), and the plan derived from both (workers, threads,
// source addresses). Parsed once in the parent before any worker is forked.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "controls.hpp"

namespace shoal::load {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Target {
  enum class Proto { tcp, ws } proto = Proto::tcp;
  bool tls = false;  // tls:// (TCP echo over TLS) or wss://
  std::string host;  // HOST:PORT as written (for the Host header)
  std::string name;  // HOST alone, without brackets: SNI and the certificate check
  std::uint16_t port = 0;
  // ws://, wss://: the request target of the upgrade, path and query
  // exactly as the URL has them ("/" when it has neither).
  std::string path = "/";
  Controls controls;  // ws://, wss://: the response controls in the query
  boost::asio::ip::address address;
  std::string url;
  // --mode pubsub: where the value of channel=NAME is in `path`.
  std::size_t channel_at = std::string::npos, channel_len = 0;
};

// --mode pubsub: `t`'s request target with its channel= value replaced by
// `channel`.
std::string path_for_channel(const Target& t, const std::string& channel);

enum class Mode { echo, pubsub };

// --mode pubsub: S subscribers and P publishers, as connections with ids
// 0..S-1 (subscribers) and S..S+P-1 (publisher j has id S+j). Subscriber i
// joins channel i % K, publisher j publishes on channel j % K, so every
// channel has S/K subscribers and P/K publishers, give or take one.
struct PubSubOptions {
  std::uint64_t subscribers = 1;
  std::uint64_t publishers = 1;  // default: one per channel
  std::uint64_t channels = 1;
  std::string channel;           // NAME, the URLs' channel=NAME
  std::vector<Target> subscribe, publish;  // subscribers (publishers) use these in turn
  double settle_s = 0.25;        // between every connection up and the first message

  // NAME with one channel; NAME-0 .. NAME-(K-1) with K.
  std::string channel_name(std::uint64_t k) const {
    return channels == 1 ? channel : channel + "-" + std::to_string(k);
  }
  std::uint64_t publishers_on(std::uint64_t k) const {
    return publishers / channels + (k < publishers % channels ? 1 : 0);
  }
  std::uint64_t subscribers_on(std::uint64_t k) const {
    return subscribers / channels + (k < subscribers % channels ? 1 : 0);
  }
};

// Parses tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT[/PATH][?QUERY] or
// wss://HOST:PORT[/PATH][?QUERY]. HOST is an IP literal ([::1] for IPv6) or
// "localhost". A path and query go on the upgrade's request line as
// written (nothing is decoded or re-encoded); a fragment (#), spaces,
// control characters and non-ASCII bytes cannot go there and are refused.
// Throws UsageError.
Target parse_target(const std::string& url);

// "500ms", "2s", "1m", "1h"; a bare number means seconds. Throws UsageError.
double parse_duration_s(const std::string& text);
// "1000", "10k", "1.5m" (thousand, million). Throws UsageError.
double parse_count(const std::string& text);

bool is_loopback(const boost::asio::ip::address& a);

struct Options {
  std::string scenario_name;       // file stem of --scenario, or "custom"
  std::string scenario_description;
  Mode mode = Mode::echo;
  // echo: the target. pubsub: the first subscribe URL (the address family,
  // the loopback rule and the source ports go by it).
  Target target;
  PubSubOptions pubsub;             // --mode pubsub only
  std::uint64_t connections = 1;
  double connect_rate = 0;          // connections/s in total; 0: as fast as allowed
  unsigned connect_concurrency = 256;  // connects in progress per thread
  std::vector<boost::asio::ip::address> sources;  // empty: automatic
  unsigned workers = 0;             // 0: automatic
  unsigned threads = 1;             // per worker
  unsigned per_process = 18000;     // most sockets one worker holds
  unsigned pipeline = 1;            // closed loop: messages in flight per connection
  double rate = 0;                  // open loop: messages/s in total (pubsub: per publisher); 0: closed loop
  std::size_t size = 64;
  bool text = false;                // WebSocket text frames (payload is ASCII)
  std::uint64_t active = UINT64_MAX;  // connections that send; the rest hold
  std::uint64_t messages = 0;       // closed loop (pubsub: either): messages per connection (publisher) in all; 0: no limit
  bool insecure = false;            // TLS: accept any server certificate
  std::string ca_file;              // TLS: trust these PEM certificates, not the system store
  double duration_s = 10;
  double warmup_s = 0;
  double hold_s = 0;
  double connect_timeout_s = 10;
  double timeout_s = 5;             // an echo later than this is a timeout
  double max_time_s = 0;            // hard bound on the whole run; 0: derived
  bool quiet = false;
  bool allow_remote = false;
  std::string json_file, csv_file, report_file;
  std::vector<pid_t> server_pids;

  // Set by plan(): source ports are chosen by shoal-load (id -> source
  // address, port) instead of the kernel, whose search for a free ephemeral
  // port costs more and more CPU as the range fills (tens of thousands of
  // connections). Only for loopback targets or explicit --source.
  bool explicit_ports = false;
  std::uint16_t port_lo = 32768, port_hi = 60999;
  std::uint32_t port_offset = 0;  // random per run: a rerun does not retrace the last one's ports

  // Derived by plan().
  std::uint64_t active_count() const {
    if (mode == Mode::pubsub) return pubsub.publishers;
    return active < connections ? active : connections;
  }
  // Connection `id` sends: an active echo connection, or a publisher.
  bool sends(std::uint64_t id) const { return mode == Mode::pubsub ? id >= pubsub.subscribers : id < active_count(); }
  double derived_max_time_s() const;
};

// Parses argv; returns nullopt after printing --help / --version.
std::optional<Options> parse_options(int argc, char** argv);

// Fills workers and sources from the connection count and the host's
// ephemeral port range; throws UsageError when the plan cannot work.
void plan(Options& o);

}  // namespace shoal::load
