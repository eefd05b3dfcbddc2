// Configuration of shoald: plain structs with the documented defaults, parsed
// once from YAML by load_config(), validated as a whole, then passed around as
// `const Config&`. Nothing here touches the network or the host; the preflight
// (preflight.hpp) compares a Config with what the host allows.
//
// Thread safety: a Config is an immutable value after loading; share it freely.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace shoal {

using Duration = std::chrono::milliseconds;

enum class Protocol { tcp_echo, websocket_echo, websocket_pubsub };
// Which PROXY protocol header (proxy_protocol.hpp) a listener requires
// before the client's first byte.
enum class ProxyProtocol { off, v1, v2, any };
enum class Sharding { reuseport, dispatch };
enum class OnInsufficient { warn, fail };
enum class LogFormat { text, json };

// Options of a `protocol: websocket-echo` or `websocket-pubsub` listener
// (its `websocket:` map). A pubsub listener serves upgrades only: http_echo,
// max_body_bytes and controls have no effect there.
struct WebSocketConfig {
  std::string path = "/";  // request target that upgrades; an upgrade elsewhere gets 404
  std::uint64_t max_message_bytes = 1024 * 1024;  // larger: close 1009
  std::uint64_t max_header_bytes = 8 * 1024;       // a request head: upgrade or HTTP echo
  Duration handshake_timeout = std::chrono::seconds(10);
  // Ping a peer that has been silent for ping_interval. 0: keepalive pings
  // off entirely, and pong_timeout then has no effect.
  Duration ping_interval = std::chrono::seconds(30);
  // Close a pinged peer whose pong has not come within pong_timeout.
  // 0: no pong deadline (pings are still sent; a silent peer is then bounded
  // by idle_timeout only).
  Duration pong_timeout = std::chrono::seconds(10);
  // A peer that does not read our echo for this long is closed.
  Duration write_timeout = std::chrono::seconds(10);
  std::vector<std::string> allowed_origins;  // empty: any Origin
  std::vector<std::string> subprotocols;     // offered, in preference order
  struct Deflate {
    bool enabled = false;  // off by default: it costs memory per connection
    int server_max_window_bits = 15;  // 9-15
    int client_max_window_bits = 15;  // 9-15
    bool operator==(const Deflate&) const = default;
  } permessage_deflate;
  // Requests that are not WebSocket upgrades, on any path, get 200 and a
  // JSON echo of what arrived (protocol/http_echo.hpp); GET /.ws gets the
  // browser page. false: they get the refusals of an upgrade-only port
  // (405, 426 on `path`, 404 elsewhere).
  bool http_echo = true;
  std::uint64_t max_body_bytes = 64 * 1024;  // an HTTP echo request's body; larger: 413
  // Response controls in the query of a request or an upgrade URL
  // (delay=, status=, size=, close_after=, close_code=), each capped here.
  struct Controls {
    bool enabled = true;  // false: the parameters are only echoed, never acted on
    Duration max_delay = std::chrono::seconds(10);
    std::uint64_t max_size = 1024 * 1024;  // bytes of a sized HTTP body or WebSocket echo
    bool operator==(const Controls&) const = default;
  } controls;

  bool operator==(const WebSocketConfig&) const = default;
};

// Options of a `protocol: websocket-pubsub` listener (its `pubsub:` map; it
// takes a `websocket:` map too, as websocket-echo does).
enum class SlowConsumer { close, drop };
struct PubSubConfig {
  bool echo_to_sender = false;  // a publisher gets its own messages too
  // A subscriber whose unsent messages pass this is a slow consumer.
  std::uint64_t max_queued_bytes = 1024 * 1024;
  SlowConsumer slow_consumer = SlowConsumer::close;  // close: 1008; drop: the message is dropped and counted
  std::string redis;            // "redis://HOST:PORT"; empty: this instance alone
  bool redis_required = false;  // /readyz is not ready while Redis is unreachable
  bool operator==(const PubSubConfig&) const = default;
};

// --- TLS (a listener's `tls:` map) ------------------------------------------

enum class TlsVersion { tls1_2, tls1_3 };
// kTLS: whether the kernel encrypts a connection's records after the
// handshake. auto: when the kernel offers the `tls` ULP; off: never.
enum class KtlsMode { auto_, off };

// Where a value was written in the config file (" (line L, column C)"), kept
// for errors that are found only after parsing: a certificate file that does
// not load. Never part of a config's value: any two compare equal.
struct SourceMark {
  std::string text;
  bool operator==(const SourceMark&) const { return true; }
};

// TLS on a listener's connections; a listener without it is plaintext. The
// files are read when the config is put to use (start-up, `--check`, each
// SIGHUP; see tls.hpp), not by parse_config, which touches no files.
struct TlsConfig {
  std::string certificate;  // PEM file: the certificate, then any intermediates
  std::string private_key;  // PEM file: its unencrypted private key
  TlsVersion min_version = TlsVersion::tls1_2;
  // Time for a tcp-echo listener's client to complete the TLS handshake. A
  // websocket-echo listener's websocket.handshake_timeout covers its TLS
  // handshake and HTTP upgrade together, and it takes no key of its own.
  Duration handshake_timeout = std::chrono::seconds(10);
  KtlsMode ktls = KtlsMode::auto_;
  SourceMark certificate_mark;
  SourceMark private_key_mark;

  bool operator==(const TlsConfig&) const = default;
};

// -----------------------------------------------------------------------------

struct ListenerConfig {
  std::string name = "echo";
  Protocol protocol = Protocol::tcp_echo;
  std::string address = "0.0.0.0";
  std::uint16_t port = 7000;
  int backlog = 4096;
  // 0: no per-listener limit; limits.max_connections still applies.
  std::uint64_t max_connections = 0;
  // Per-client limits, so that one client cannot take all the capacity;
  // above them a connection is accepted and closed at once. 0: no limit.
  // Off by default: a load generator or a NAT puts many clients behind one
  // address, and only the operator knows whether theirs do.
  std::uint64_t max_connections_per_ip = 0;  // open at once from one address
  std::uint64_t max_new_connections_per_second = 0;
  std::uint64_t new_connections_burst = 0;  // 0: max_new_connections_per_second
  // 0: never closed for being idle.
  Duration idle_timeout = std::chrono::seconds(300);
  // tcp-echo: a peer that has not taken a pending echo for this long (it
  // stopped reading) is closed. 0: never. WebSocket listeners use
  // websocket.write_timeout, which also bounds their closing handshake.
  Duration write_timeout = std::chrono::seconds(10);
  // A PROXY protocol header from the balancer in front: required (v1, v2, or
  // either) or not read at all (off). Only peers in proxy_trusted may send
  // one; the client address it carries is the one limits and logs use.
  ProxyProtocol proxy_protocol = ProxyProtocol::off;
  std::vector<std::string> proxy_trusted = {"127.0.0.0/8", "::1/128"};  // CIDR ranges
  WebSocketConfig websocket;  // used when protocol is websocket_echo or websocket_pubsub
  PubSubConfig pubsub;        // used when protocol is websocket_pubsub
  std::optional<TlsConfig> tls;  // absent: plaintext

  bool operator==(const ListenerConfig&) const = default;
};

struct LimitsConfig {
  std::uint64_t max_connections = 1'000'000;
  // Descriptors kept for everything that is not a client connection (log
  // files, the admin port, acceptors, epoll, timers): capacity is the
  // open-files limit minus this.
  std::uint64_t reserved_descriptors = 64;
  OnInsufficient on_insufficient = OnInsufficient::warn;

  bool operator==(const LimitsConfig&) const = default;
};

struct ShutdownConfig {
  Duration drain_timeout = std::chrono::seconds(30);
  // WebSocket connections are closed with 1001 (going away) evenly over this
  // window from the start of a stop, least recently active first, so that
  // their clients do not reconnect elsewhere in lock-step. Capped by
  // drain_timeout; 0 closes them all at once. TCP echo connections are left
  // to end by themselves within drain_timeout.
  Duration drain_spread = std::chrono::seconds(10);

  bool operator==(const ShutdownConfig&) const = default;
};

struct LoggingConfig {
  std::string level = "info";  // trace|debug|info|warn|error|critical|off
  LogFormat format = LogFormat::text;

  bool operator==(const LoggingConfig&) const = default;
};

// The admin HTTP port: /metrics, /healthz, /readyz, /status.
struct AdminConfig {
  std::string address = "127.0.0.1";
  std::uint16_t port = 7070;  // 0: no admin port

  bool operator==(const AdminConfig&) const = default;
};

// A connection keeps its listener's index in 16 bits (shard.hpp).
inline constexpr std::size_t kMaxListeners = 65535;

// The listeners a daemon started without a config file serves.
std::vector<ListenerConfig> default_listeners();

struct Config {
  // Names this shoald in HTTP echo answers, /status and shoal_build_info.
  // Empty: the host name (effective_instance()).
  std::string instance;
  unsigned shards = 0;  // 0 = auto: the CPUs this process may run on
  bool cpu_affinity = false;
  Sharding sharding = Sharding::reuseport;
  std::vector<ListenerConfig> listeners = default_listeners();
  LimitsConfig limits;
  ShutdownConfig shutdown;
  LoggingConfig logging;
  AdminConfig admin;

  bool operator==(const Config&) const = default;
};

// config.instance, or the host name when it is empty.
std::string effective_instance(const Config& config);

// Thrown by load_config for any invalid input. what() is the full message,
// e.g. "listeners[1].port: 70000 is not a port (line 12, column 11)";
// the file name, when known, is prefixed as "FILE: ".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses and validates YAML text. `source` names the text in error messages
// (a file path, or empty). An empty document yields the defaults.
Config parse_config(const std::string& yaml_text, const std::string& source = {});

// Reads and parses a file; a missing or unreadable file is a ConfigError.
Config load_config_file(const std::string& path);

// The effective configuration as YAML that parse_config reads back unchanged.
std::string to_yaml(const Config& config);

// "30s", "250ms", "5m", "1h" or a plain number of seconds -> Duration;
// formatting picks the largest unit that represents the value exactly.
std::string format_duration(Duration d);

// The keys whose value differs between `running` and `next` and that do not
// reload live, as full paths ("shards", "listeners[1].port",
// "listeners[0].websocket.ping_interval", "admin.port", ...), in config order.
// A change in the number of listeners is reported once as
// "listeners (added or removed)" and the per-listener keys are then not compared.
// TLS turned on or off on a listener is "listeners[N].tls (turned on)" or
// "listeners[N].tls (turned off)"; the TLS keys themselves reload live.
std::vector<std::string> restart_required(const Config& running, const Config& next);

// `running` with the keys of `next` that reload live: what runs after a
// reload of `next`. The keys restart_required() names keep their running
// values, and so does a listener's TLS turned on or off.
Config apply_live(const Config& running, const Config& next);

// One key of the configuration, as config/shoal.yaml documents it.
struct KeyDoc {
  std::string path;          // "listeners[].websocket.ping_interval"
  std::string default_text;  // as --print-config writes it: "30s"; empty for a section
  std::string range_text;    // "0-8760h", ">= 1", "one of warn, fail"; empty for a section
  bool live = false;         // a change applies on SIGHUP (a section: all of it does)
  std::string doc;           // one line
  bool section = false;      // a map or list of keys (listeners, websocket, tls, ...)

  bool operator==(const KeyDoc&) const = default;
};

// Every key in config order, sections before their keys.
std::vector<KeyDoc> describe_keys();

std::string to_string(Protocol p);
std::string to_string(ProxyProtocol p);
std::string to_string(Sharding s);
std::string to_string(OnInsufficient o);
std::string to_string(LogFormat f);
std::string to_string(SlowConsumer s);  // "close", "drop"
std::string to_string(KtlsMode m);      // "auto", "off"
std::string to_string(TlsVersion v);  // "1.2", "1.3"

}  // namespace shoal
