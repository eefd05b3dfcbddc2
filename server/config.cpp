// yaml-cpp is used only to tokenize: every scalar is read as text and
// converted here, so that each error can name the key path, the text that was
// found and where it is, instead of yaml-cpp's generic "bad conversion".
#include "config.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>
#include <boost/asio/ip/address.hpp>

#include "utf8.hpp"

namespace shoal {
namespace {

namespace ip = boost::asio::ip;

constexpr std::uint64_t max_u64 = std::numeric_limits<std::uint64_t>::max();

// Far below the ~292 years at which steady_clock::now() + timeout overflows in
// nanoseconds; "never" is spelled 0, not a huge value.
constexpr Duration max_duration = std::chrono::hours(8760);
constexpr std::string_view max_duration_text = "8760h";

// New connections per second and burst: far above what one listener accepts,
// low enough that the token bucket's arithmetic in nanoseconds stays exact.
constexpr std::uint64_t kMaxConnectionRate = 1'000'000;

constexpr std::array<std::string_view, 8> top_keys = {
    "shards",   "cpu_affinity", "sharding", "listeners",
    "limits",   "shutdown",     "logging",  "admin"};
constexpr std::array<std::string_view, 13> listener_keys = {
    "name", "protocol", "address", "port", "backlog", "max_connections",
    // per-client limits
    "max_connections_per_ip", "max_new_connections_per_second", "new_connections_burst",
    "idle_timeout", "write_timeout", "websocket", "tls"};
constexpr std::array<std::string_view, 10> websocket_keys = {
    "path",          "max_message_bytes", "max_header_bytes",
    "handshake_timeout", "ping_interval", "pong_timeout",
    "write_timeout", "allowed_origins",   "subprotocols",
    "permessage_deflate"};
constexpr std::array<std::string_view, 3> deflate_keys = {
    "enabled", "server_max_window_bits", "client_max_window_bits"};
constexpr std::array<std::string_view, 4> tls_keys = {
    "certificate", "private_key", "min_version", "handshake_timeout"};
constexpr std::array<std::string_view, 2> admin_keys = {"address", "port"};
constexpr std::array<std::string_view, 3> limits_keys = {
    "max_connections", "reserved_descriptors", "on_insufficient"};
constexpr std::array<std::string_view, 1> shutdown_keys = {"drain_timeout"};
constexpr std::array<std::string_view, 2> logging_keys = {"level", "format"};

// Indexed by the enum's value.
constexpr std::array<std::string_view, 2> protocol_names = {"tcp-echo",
                                                            "websocket-echo"};
constexpr std::array<std::string_view, 2> sharding_names = {"reuseport",
                                                            "dispatch"};
constexpr std::array<std::string_view, 2> on_insufficient_names = {"warn",
                                                                   "fail"};
constexpr std::array<std::string_view, 2> log_format_names = {"text", "json"};
constexpr std::array<std::string_view, 2> tls_version_names = {"1.2", "1.3"};
constexpr std::array<std::string_view, 7> log_level_names = {
    "trace", "debug", "info", "warn", "error", "critical", "off"};

// Error messages show what they found as one line of text: control
// characters and bytes that are not UTF-8 as \xNN (found by fuzzing: an
// unknown key of NUL bytes cut the message short). `quoting` also escapes
// the quote and the backslash.
std::string escape(std::string_view text, bool quoting) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto byte = static_cast<unsigned char>(c);
    if (quoting && (c == '"' || c == '\\')) {
      out += '\\';
      out += c;
      continue;
    }
    if (c == '\n' || c == '\t') {
      out += c == '\n' ? "\\n" : "\\t";
      continue;
    }
    std::size_t len = 1;
    if (byte >= 0x80) {  // the whole sequence when it is valid UTF-8
      len = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2;
      if (check_utf8(text.substr(i, len)) != Utf8::valid) len = 0;
    }
    if (len == 0 || byte < 0x20 || byte == 0x7f) {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
      continue;
    }
    out.append(text.substr(i, len));
    i += len - 1;
  }
  return out;
}

std::string quote(std::string_view text) { return '"' + escape(text, true) + '"'; }

// A key as an error message's path shows it: quoted when it is not plain
// text.
std::string key_text(const std::string& name) {
  const bool plain = check_utf8(name) == Utf8::valid &&
                     std::none_of(name.begin(), name.end(), [](char c) {
                       return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
                     });
  return plain ? name : quote(name);
}

std::string position(const YAML::Mark& mark) {
  if (mark.is_null()) {
    return {};
  }
  return " (line " + std::to_string(mark.line + 1) + ", column " +
         std::to_string(mark.column + 1) + ")";
}

// Thrown without the source prefix; parse_config adds it in one place.
[[noreturn]] void fail(const std::string& path, const YAML::Mark& mark,
                       const std::string& problem) {
  throw ConfigError((path.empty() ? std::string() : path + ": ") + problem +
                    position(mark));
}

// A value with its key path and the position errors about it point at: the
// key's when the value is empty, since yaml-cpp gives an empty value the mark
// of whatever token follows it.
struct Field {
  YAML::Node node;
  std::string path;
  YAML::Mark mark;
};

[[noreturn]] void fail(const Field& field, const std::string& problem) {
  fail(field.path, field.mark, problem);
}

// What was found, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Scalar: return quote(node.Scalar());
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: break;
  }
  return "null";
}

template <std::size_t N>
std::string join(const std::array<std::string_view, N>& words) {
  std::string out;
  for (const std::string_view word : words) {
    if (!out.empty()) {
      out += ", ";
    }
    out += word;
  }
  return out;
}

std::size_t levenshtein(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j < row.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      const std::size_t substitution =
          diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitution});
      diagonal = above;
    }
  }
  return row[b.size()];
}

template <std::size_t N>
std::string unknown_key_problem(std::string_view key,
                                const std::array<std::string_view, N>& known) {
  const std::size_t threshold = std::max<std::size_t>(2, key.size() / 3);
  std::optional<std::string_view> best;
  std::size_t best_distance = 0;
  for (const std::string_view candidate : known) {
    const std::size_t distance = levenshtein(key, candidate);
    if (distance <= threshold && (!best || distance < best_distance)) {
      best = candidate;
      best_distance = distance;
    }
  }
  if (best) {
    return "unknown key; did you mean " + quote(*best) + "?";
  }
  return "unknown key; known keys: " + join(known);
}

// Calls fn(key, field) for each entry of a map, after rejecting
// unknown and repeated keys (yaml-cpp keeps both entries of a repeated key).
template <std::size_t N, typename Fn>
void for_each_entry(const YAML::Node& map, const std::string& path,
                    const std::array<std::string_view, N>& known, Fn&& fn) {
  std::vector<std::string> seen;
  for (const auto& entry : map) {
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) {
      fail(path, key.Mark(), "expected a key name, got " + describe(key));
    }
    const std::string& name = key.Scalar();
    const std::string key_path = path.empty() ? key_text(name) : path + "." + key_text(name);
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      fail(key_path, key.Mark(), unknown_key_problem(name, known));
    }
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      fail(key_path, key.Mark(), "key given twice");
    }
    seen.push_back(name);
    const YAML::Node& value = entry.second;
    fn(std::string_view(name),
       Field{value, key_path, value.IsNull() ? key.Mark() : value.Mark()});
  }
}

// A section left empty (all of its keys commented out) means its defaults.
template <std::size_t N, typename Fn>
void read_section(const Field& field,
                  const std::array<std::string_view, N>& known, Fn&& fn) {
  if (field.node.IsNull()) {
    return;
  }
  if (!field.node.IsMap()) {
    fail(field, "expected a map");
  }
  for_each_entry(field.node, field.path, known, std::forward<Fn>(fn));
}

struct Integer {
  bool negative = false;
  std::uint64_t magnitude = 0;
  bool overflow = false;
};

// YAML 1.2 core-schema decimal integers only: [-+]?[0-9]+.
std::optional<Integer> parse_integer(std::string_view text) {
  Integer result;
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
    result.negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) {
        return c >= '0' && c <= '9';
      })) {
    return std::nullopt;
  }
  const auto [end, error] =
      std::from_chars(text.data(), text.data() + text.size(), result.magnitude);
  result.overflow = error == std::errc::result_out_of_range;
  return result;
}

std::string range_text(std::uint64_t min, std::uint64_t max) {
  if (max == max_u64) {
    return "(>= " + std::to_string(min) + ")";
  }
  return "(" + std::to_string(min) + "-" + std::to_string(max) + ")";
}

bool in_range(const Integer& value, std::uint64_t min, std::uint64_t max) {
  if (value.overflow) {
    return false;
  }
  if (value.negative && value.magnitude != 0) {
    return false;
  }
  return value.magnitude >= min && value.magnitude <= max;
}

std::uint64_t read_integer(const Field& field, std::uint64_t min,
                           std::uint64_t max,
                           std::string_view out_of_range = "is out of range") {
  const YAML::Node& node = field.node;
  const std::optional<Integer> value =
      node.IsScalar() ? parse_integer(node.Scalar()) : std::nullopt;
  if (!value) {
    fail(field, "expected an integer, got " + describe(node));
  }
  if (!in_range(*value, min, max)) {
    fail(field, node.Scalar() + " " + std::string(out_of_range) + " " +
                    range_text(min, max));
  }
  return value->magnitude;
}

bool read_bool(const Field& field) {
  const YAML::Node& node = field.node;
  if (node.IsScalar()) {
    const std::string& text = node.Scalar();
    if (text == "true" || text == "True" || text == "TRUE") {
      return true;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
      return false;
    }
  }
  fail(field, "expected true or false, got " + describe(node));
}

// An empty value reads as the empty string, which the callers then reject
// with a clearer message than "got null".
std::string read_string(const Field& field) {
  const YAML::Node& node = field.node;
  if (node.IsNull()) {
    return {};
  }
  if (!node.IsScalar()) {
    fail(field, "expected a string, got " + describe(node));
  }
  // Every string option is one line of text: names become log fields and
  // Prometheus labels (UTF-8 only), paths, origins and subprotocols are
  // compared with HTTP header values. Found by fuzzing: a name with NUL
  // bytes and invalid UTF-8 loaded, and --print-config wrote it back as
  // another name.
  const std::string& text = node.Scalar();
  if (check_utf8(text) != Utf8::valid) {
    fail(field, "must be UTF-8 text");
  }
  for (const char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      fail(field, "must not contain control characters");
    }
  }
  return text;
}

template <std::size_t N>
std::size_t read_choice(const Field& field,
                        const std::array<std::string_view, N>& choices) {
  const YAML::Node& node = field.node;
  if (!node.IsScalar()) {
    fail(field, "expected one of " + join(choices) + ", got " + describe(node));
  }
  const auto found = std::find(choices.begin(), choices.end(), node.Scalar());
  if (found == choices.end()) {
    fail(field, quote(node.Scalar()) + " is not one of " + join(choices));
  }
  return static_cast<std::size_t>(found - choices.begin());
}

template <typename Enum, std::size_t N>
Enum read_enum(const Field& field,
               const std::array<std::string_view, N>& names) {
  return static_cast<Enum>(read_choice(field, names));
}

[[noreturn]] void fail_duration(const Field& field) {
  fail(field, "expected a duration like 30s, 250ms, 5m or 1h, got " +
                  describe(field.node));
}

// [0-9]+ followed by ms, s, m, h or nothing (seconds).
Duration read_duration(const Field& field) {
  const YAML::Node& node = field.node;
  if (!node.IsScalar()) {
    fail_duration(field);
  }
  const std::string& text = node.Scalar();
  const auto digits_end = std::find_if(
      text.begin(), text.end(), [](char c) { return c < '0' || c > '9'; });
  const std::string_view digits(
      text.data(), static_cast<std::size_t>(digits_end - text.begin()));
  const std::string_view unit(text.data() + digits.size(),
                              text.size() - digits.size());
  std::uint64_t ms_per_unit = 0;
  if (unit.empty() || unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "m") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  }
  if (digits.empty() || ms_per_unit == 0) {
    fail_duration(field);
  }
  std::uint64_t count = 0;
  const auto [end, error] =
      std::from_chars(digits.data(), digits.data() + digits.size(), count);
  const auto max_ms = static_cast<std::uint64_t>(max_duration.count());
  if (error == std::errc::result_out_of_range || count > max_ms / ms_per_unit) {
    fail(field,
         text + " is out of range (0-" + std::string(max_duration_text) + ")");
  }
  return Duration(static_cast<Duration::rep>(count * ms_per_unit));
}

unsigned read_shards(const Field& field) {
  const YAML::Node& node = field.node;
  if (node.IsScalar() && node.Scalar() == "auto") {
    return 0;
  }
  if (!node.IsScalar() || !parse_integer(node.Scalar())) {
    fail(field, "expected an integer or auto, got " + describe(node));
  }
  return static_cast<unsigned>(read_integer(field, 1, 1024));
}

// A bound listener, for the conflict checks between listeners.
struct Bound {
  std::string path;
  ip::address address;
};

// v4-mapped IPv6 addresses bind the same socket address as their IPv4 form.
ip::address normalize(const ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return ip::make_address_v4(ip::v4_mapped, address.to_v6());
  }
  return address;
}

// Same port and addresses that cannot both be bound: equal, or either is a
// wildcard covering the other. "::" also covers IPv4: with Linux's default
// IPV6_V6ONLY=0 it binds both families.
bool conflicts(const ListenerConfig& a, const ip::address& a_address,
               const ListenerConfig& b, const ip::address& b_address) {
  if (a.port == 0 || a.port != b.port) {
    return false;
  }
  if (a_address == b_address) {
    return true;
  }
  const auto is_v6_any = [](const ip::address& x) {
    return x.is_v6() && x.is_unspecified();
  };
  if (is_v6_any(a_address) || is_v6_any(b_address)) {
    return true;
  }
  return a_address.is_v4() && b_address.is_v4() &&
         (a_address.is_unspecified() || b_address.is_unspecified());
}

std::string endpoint(const ListenerConfig& listener,
                     const ip::address& address) {
  if (address.is_v6()) {
    return "[" + listener.address + "]:" + std::to_string(listener.port);
  }
  return listener.address + ":" + std::to_string(listener.port);
}

ip::address read_address(const Field& field, std::string& text) {
  text = read_string(field);
  boost::system::error_code error;
  const ip::address address = ip::make_address(text, error);
  if (error) {
    fail(field, quote(text) + " is not an IP address");
  }
  return normalize(address);
}

std::vector<std::string> read_string_list(const Field& field) {
  const YAML::Node& node = field.node;
  if (node.IsNull()) {
    return {};
  }
  if (!node.IsSequence()) {
    fail(field, "expected a sequence, got " + describe(node));
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const Field item{node[i], field.path + "[" + std::to_string(i) + "]",
                     node[i].Mark()};
    std::string text = read_string(item);
    if (text.empty()) {
      fail(item, "must not be empty");
    }
    out.push_back(std::move(text));
  }
  return out;
}

void read_deflate(const Field& field, WebSocketConfig::Deflate& deflate) {
  const auto read_key = [&](std::string_view key, const Field& value) {
    if (key == "enabled") {
      deflate.enabled = read_bool(value);
    } else if (key == "server_max_window_bits") {
      deflate.server_max_window_bits = static_cast<int>(read_integer(value, 9, 15));
    } else if (key == "client_max_window_bits") {
      deflate.client_max_window_bits = static_cast<int>(read_integer(value, 9, 15));
    }
  };
  read_section(field, deflate_keys, read_key);
}

void read_websocket(const Field& field, WebSocketConfig& ws) {
  const auto read_key = [&](std::string_view key, const Field& value) {
    if (key == "path") {
      ws.path = read_string(value);
      if (ws.path.empty() || ws.path.front() != '/') {
        fail(value, quote(ws.path) + " is not a path (it must start with /)");
      }
    } else if (key == "max_message_bytes") {
      ws.max_message_bytes = read_integer(value, 1, 1ULL << 31);
    } else if (key == "max_header_bytes") {
      ws.max_header_bytes = read_integer(value, 1024, 1024 * 1024);
    } else if (key == "handshake_timeout") {
      ws.handshake_timeout = read_duration(value);
    } else if (key == "ping_interval") {
      ws.ping_interval = read_duration(value);
    } else if (key == "pong_timeout") {
      ws.pong_timeout = read_duration(value);
    } else if (key == "write_timeout") {
      ws.write_timeout = read_duration(value);
    } else if (key == "allowed_origins") {
      ws.allowed_origins = read_string_list(value);
    } else if (key == "subprotocols") {
      ws.subprotocols = read_string_list(value);
    } else if (key == "permessage_deflate") {
      read_deflate(value, ws.permessage_deflate);
    }
  };
  read_section(field, websocket_keys, read_key);
}

// A listener's `tls:` map. Left empty (null) it means no TLS, like any
// section whose keys are all commented out; a map, even {}, turns TLS on and
// needs both files. Returns the handshake_timeout entry, if given, for the
// check against the protocol, which may come later in the listener.
std::optional<Field> read_tls(const Field& field, std::optional<TlsConfig>& tls) {
  if (field.node.IsNull()) {
    tls.reset();
    return std::nullopt;
  }
  if (!field.node.IsMap()) {
    fail(field, "expected a map");
  }
  TlsConfig out;
  std::optional<Field> handshake_timeout;
  const auto read_file_path = [](const Field& value, std::string& path, SourceMark& mark) {
    path = read_string(value);
    if (path.empty()) {
      fail(value, "must not be empty");
    }
    mark.text = position(value.mark);
  };
  const auto read_key = [&](std::string_view key, const Field& value) {
    if (key == "certificate") {
      read_file_path(value, out.certificate, out.certificate_mark);
    } else if (key == "private_key") {
      read_file_path(value, out.private_key, out.private_key_mark);
    } else if (key == "min_version") {
      out.min_version = read_enum<TlsVersion>(value, tls_version_names);
    } else if (key == "handshake_timeout") {
      handshake_timeout = value;
      out.handshake_timeout = read_duration(value);
    }
  };
  for_each_entry(field.node, field.path, tls_keys, read_key);
  if (out.certificate.empty()) {
    fail(field, "certificate is required (a PEM file)");
  }
  if (out.private_key.empty()) {
    fail(field, "private_key is required (a PEM file)");
  }
  tls = std::move(out);
  return handshake_timeout;
}

ListenerConfig read_listener(const Field& field, ip::address& address,
                             YAML::Mark& name_mark) {
  if (!field.node.IsMap()) {
    fail(field, "expected a map");
  }
  ListenerConfig listener;
  address = normalize(ip::make_address(listener.address));
  name_mark = field.mark;
  std::optional<Field> websocket_field;
  std::optional<Field> write_timeout_field;
  std::optional<Field> burst_field;
  std::optional<Field> tls_handshake_timeout;
  const auto read_key = [&](std::string_view key, const Field& value) {
    if (key == "name") {
      listener.name = read_string(value);
      name_mark = value.mark;
      if (listener.name.empty()) {
        fail(value, "must not be empty");
      }
    } else if (key == "protocol") {
      listener.protocol = read_enum<Protocol>(value, protocol_names);
    } else if (key == "address") {
      address = read_address(value, listener.address);
    } else if (key == "port") {
      listener.port = static_cast<std::uint16_t>(
          read_integer(value, 0, 65535, "is not a port"));
    } else if (key == "backlog") {
      listener.backlog = static_cast<int>(read_integer(value, 1, 1'048'576));
    } else if (key == "max_connections") {
      listener.max_connections = read_integer(value, 0, max_u64);
    } else if (key == "max_connections_per_ip") {
      listener.max_connections_per_ip = read_integer(value, 0, max_u64);
    } else if (key == "max_new_connections_per_second") {
      listener.max_new_connections_per_second = read_integer(value, 0, kMaxConnectionRate);
    } else if (key == "new_connections_burst") {
      burst_field = value;
      listener.new_connections_burst = read_integer(value, 0, kMaxConnectionRate);
    } else if (key == "idle_timeout") {
      listener.idle_timeout = read_duration(value);
    } else if (key == "write_timeout") {
      write_timeout_field = value;
      listener.write_timeout = read_duration(value);
    } else if (key == "websocket") {
      websocket_field = value;
      read_websocket(value, listener.websocket);
    } else if (key == "tls") {
      tls_handshake_timeout = read_tls(value, listener.tls);
    }
  };
  for_each_entry(field.node, field.path, listener_keys, read_key);
  // Checked after all keys, since `protocol` may come after `websocket`.
  if (websocket_field && listener.protocol != Protocol::websocket_echo) {
    fail(*websocket_field, "only a websocket-echo listener takes websocket options");
  }
  if (write_timeout_field && listener.protocol == Protocol::websocket_echo) {
    fail(*write_timeout_field, "a websocket-echo listener sets websocket.write_timeout instead");
  }
  if (burst_field && listener.new_connections_burst != 0 &&
      listener.max_new_connections_per_second == 0) {
    fail(*burst_field, "has no effect without max_new_connections_per_second");
  }
  if (tls_handshake_timeout && listener.protocol == Protocol::websocket_echo) {
    fail(*tls_handshake_timeout,
         "a websocket-echo listener's TLS handshake is covered by websocket.handshake_timeout");
  }
  return listener;
}

std::vector<ListenerConfig> read_listeners(const Field& field) {
  const YAML::Node& node = field.node;
  if (!node.IsNull() && !node.IsSequence()) {
    fail(field, "expected a sequence");
  }
  if (node.IsNull() || node.size() == 0) {
    fail(field, "must list at least one listener");
  }
  if (node.size() > kMaxListeners) {
    fail(field, "at most " + std::to_string(kMaxListeners) + " listeners, got " +
                    std::to_string(node.size()));
  }
  std::vector<ListenerConfig> listeners;
  std::vector<Bound> bound;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node entry = node[i];
    const Field entry_field{entry, field.path + "[" + std::to_string(i) + "]",
                            entry.Mark()};
    ip::address address;
    YAML::Mark name_mark;
    ListenerConfig listener = read_listener(entry_field, address, name_mark);
    for (std::size_t j = 0; j < listeners.size(); ++j) {
      if (listeners[j].name == listener.name) {
        fail(entry_field.path + ".name", name_mark,
             quote(listener.name) + " is already used by " + bound[j].path);
      }
    }
    for (std::size_t j = 0; j < listeners.size(); ++j) {
      if (!conflicts(listener, address, listeners[j], bound[j].address)) {
        continue;
      }
      std::string problem = endpoint(listener, address) +
                            " is already used by listener " +
                            quote(listeners[j].name);
      // The other endpoint is shown when it is written differently.
      if (listener.address != listeners[j].address) {
        problem += " on " + endpoint(listeners[j], bound[j].address);
      }
      fail(entry_field, problem);
    }
    listeners.push_back(std::move(listener));
    bound.push_back({entry_field.path, address});
  }
  return listeners;
}

void read_limits(const Field& field, LimitsConfig& limits) {
  const auto read_key = [&](std::string_view key, const Field& value) {
    if (key == "max_connections") {
      limits.max_connections = read_integer(value, 1, max_u64);
    } else if (key == "reserved_descriptors") {
      limits.reserved_descriptors = read_integer(value, 0, 1'000'000);
    } else if (key == "on_insufficient") {
      limits.on_insufficient =
          read_enum<OnInsufficient>(value, on_insufficient_names);
    }
  };
  read_section(field, limits_keys, read_key);
}

void read_shutdown(const Field& field, ShutdownConfig& shutdown) {
  const auto read_key = [&](std::string_view, const Field& value) {
    shutdown.drain_timeout = read_duration(value);
  };
  read_section(field, shutdown_keys, read_key);
}

void read_admin(const Field& field, AdminConfig& admin) {
  const auto read_key = [&](std::string_view key, const Field& value) {
    if (key == "address") {
      read_address(value, admin.address);
    } else if (key == "port") {
      admin.port = static_cast<std::uint16_t>(
          read_integer(value, 0, 65535, "is not a port"));
    }
  };
  read_section(field, admin_keys, read_key);
}

void read_logging(const Field& field, LoggingConfig& logging) {
  const auto read_key = [&](std::string_view key, const Field& value) {
    if (key == "level") {
      logging.level =
          std::string(log_level_names[read_choice(value, log_level_names)]);
    } else if (key == "format") {
      logging.format = read_enum<LogFormat>(value, log_format_names);
    }
  };
  read_section(field, logging_keys, read_key);
}

Config read_config(const YAML::Node& root) {
  Config config;
  if (root.IsNull()) {
    return config;
  }
  if (!root.IsMap()) {
    fail({}, root.Mark(),
         "expected a map at the top level, got " + describe(root));
  }
  std::optional<Field> admin_field;
  const auto read_key = [&](std::string_view key, const Field& value) {
    if (key == "shards") {
      config.shards = read_shards(value);
    } else if (key == "cpu_affinity") {
      config.cpu_affinity = read_bool(value);
    } else if (key == "sharding") {
      config.sharding = read_enum<Sharding>(value, sharding_names);
    } else if (key == "listeners") {
      config.listeners = read_listeners(value);
    } else if (key == "limits") {
      read_limits(value, config.limits);
    } else if (key == "shutdown") {
      read_shutdown(value, config.shutdown);
    } else if (key == "logging") {
      read_logging(value, config.logging);
    } else if (key == "admin") {
      admin_field = value;
      read_admin(value, config.admin);
    }
  };
  for_each_entry(root, {}, top_keys, read_key);
  // The admin port must not collide with a listener, whether it was written
  // out or is the default.
  if (config.admin.port != 0) {
    const ip::address admin_address =
        normalize(ip::make_address(config.admin.address));
    ListenerConfig as_listener;
    as_listener.address = config.admin.address;
    as_listener.port = config.admin.port;
    for (const ListenerConfig& l : config.listeners) {
      if (!conflicts(as_listener, admin_address, l,
                     normalize(ip::make_address(l.address)))) {
        continue;
      }
      const std::string problem = endpoint(as_listener, admin_address) +
                                  " is already used by listener " + quote(l.name);
      if (admin_field) {
        fail("admin", admin_field->mark, problem);
      }
      fail("admin", YAML::Mark::null_mark(),
           "the default " + problem + "; set admin.port (0 turns it off)");
    }
  }
  return config;
}

// POSIX rather than iostreams: a directory or a read error must be reported
// with its errno, not read as an empty file (which would mean the defaults).
std::error_code read_file(const std::string& path, std::string& text) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return {errno, std::generic_category()};
  }
  std::array<char, 65536> buffer;
  std::error_code error;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n > 0) {
      text.append(buffer.data(), static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      error = {errno, std::generic_category()};
      break;
    }
  }
  ::close(fd);
  return error;
}

}  // namespace

namespace {

// The documents of a YAML stream: how many, and where the second one's root
// node is. yaml-cpp 0.7's LoadAll() never returns on a stray flow indicator
// such as a lone ',' (found by fuzzing): its parser hands out an empty
// document without consuming the token, again and again, and LoadAll
// collects them until memory runs out. Here a document that starts where the
// previous one started is that token, reported as a syntax error.
class DocumentScan final : public YAML::EventHandler {
 public:
  static DocumentScan of(const std::string& text) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentScan scan;
    while (parser.HandleNextDocument(scan)) {
      if (scan.count_ >= 2 && scan.start_.pos == scan.previous_start_.pos) {
        const std::size_t at = static_cast<std::size_t>(scan.start_.pos);
        throw YAML::ParserException(
            scan.start_, at < text.size() ? "unexpected " + quote(text.substr(at, 1)) : "unexpected end");
      }
    }
    return scan;
  }
  std::size_t count() const { return count_; }
  const YAML::Mark& second_root() const { return second_root_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    previous_start_ = start_;
    start_ = mark;
    ++count_;
    root_seen_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override {
    node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& mark) {
    if (!root_seen_ && count_ == 2) second_root_ = mark;
    root_seen_ = true;
  }

  std::size_t count_ = 0;
  YAML::Mark start_ = YAML::Mark::null_mark();
  YAML::Mark previous_start_ = YAML::Mark::null_mark();
  YAML::Mark second_root_ = YAML::Mark::null_mark();
  bool root_seen_ = false;
};

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source) {
  const std::string prefix = source.empty() ? std::string() : source + ": ";
  try {
    const DocumentScan documents = DocumentScan::of(yaml_text);
    if (documents.count() == 0) {
      return Config{};
    }
    if (documents.count() > 1) {
      fail({}, documents.second_root(),
           "expected one YAML document, found " + std::to_string(documents.count()));
    }
    return read_config(YAML::Load(yaml_text));
  } catch (const ConfigError& e) {
    throw ConfigError(prefix + e.what());
  } catch (const YAML::ParserException& e) {
    throw ConfigError(prefix + "syntax error: " + escape(e.msg, false) + position(e.mark));
  } catch (const YAML::Exception& e) {
    throw ConfigError(prefix + "invalid YAML: " + escape(e.msg, false) + position(e.mark));
  } catch (const std::exception& e) {
    throw ConfigError(prefix + "invalid configuration: " + escape(e.what(), false));
  }
}

Config load_config_file(const std::string& path) {
  std::string text;
  if (const std::error_code error = read_file(path, text)) {
    throw ConfigError("cannot read config file " + quote(path) + ": " +
                      error.message());
  }
  return parse_config(text, path);
}

std::string to_yaml(const Config& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "shards" << YAML::Value;
  if (config.shards == 0) {
    out << "auto";
  } else {
    out << config.shards;
  }
  out << YAML::Key << "cpu_affinity" << YAML::Value << config.cpu_affinity;
  out << YAML::Key << "sharding" << YAML::Value << to_string(config.sharding);
  out << YAML::Key << "listeners" << YAML::Value << YAML::BeginSeq;
  for (const ListenerConfig& listener : config.listeners) {
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << listener.name;
    out << YAML::Key << "protocol" << YAML::Value
        << to_string(listener.protocol);
    out << YAML::Key << "address" << YAML::Value << listener.address;
    out << YAML::Key << "port" << YAML::Value << listener.port;
    out << YAML::Key << "backlog" << YAML::Value << listener.backlog;
    out << YAML::Key << "max_connections" << YAML::Value
        << listener.max_connections;
    out << YAML::Key << "max_connections_per_ip" << YAML::Value
        << listener.max_connections_per_ip;
    out << YAML::Key << "max_new_connections_per_second" << YAML::Value
        << listener.max_new_connections_per_second;
    out << YAML::Key << "new_connections_burst" << YAML::Value
        << listener.new_connections_burst;
    out << YAML::Key << "idle_timeout" << YAML::Value
        << format_duration(listener.idle_timeout);
    if (listener.protocol == Protocol::tcp_echo) {
      out << YAML::Key << "write_timeout" << YAML::Value
          << format_duration(listener.write_timeout);
    }
    if (listener.protocol == Protocol::websocket_echo) {
      const WebSocketConfig& ws = listener.websocket;
      out << YAML::Key << "websocket" << YAML::Value << YAML::BeginMap;
      out << YAML::Key << "path" << YAML::Value << ws.path;
      out << YAML::Key << "max_message_bytes" << YAML::Value << ws.max_message_bytes;
      out << YAML::Key << "max_header_bytes" << YAML::Value << ws.max_header_bytes;
      out << YAML::Key << "handshake_timeout" << YAML::Value
          << format_duration(ws.handshake_timeout);
      out << YAML::Key << "ping_interval" << YAML::Value << format_duration(ws.ping_interval);
      out << YAML::Key << "pong_timeout" << YAML::Value << format_duration(ws.pong_timeout);
      out << YAML::Key << "write_timeout" << YAML::Value << format_duration(ws.write_timeout);
      out << YAML::Key << "allowed_origins" << YAML::Value << YAML::Flow << ws.allowed_origins;
      out << YAML::Key << "subprotocols" << YAML::Value << YAML::Flow << ws.subprotocols;
      out << YAML::Key << "permessage_deflate" << YAML::Value << YAML::BeginMap;
      out << YAML::Key << "enabled" << YAML::Value << ws.permessage_deflate.enabled;
      out << YAML::Key << "server_max_window_bits" << YAML::Value
          << ws.permessage_deflate.server_max_window_bits;
      out << YAML::Key << "client_max_window_bits" << YAML::Value
          << ws.permessage_deflate.client_max_window_bits;
      out << YAML::EndMap;
      out << YAML::EndMap;
    }
    if (listener.tls) {
      const TlsConfig& tls = *listener.tls;
      out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
      out << YAML::Key << "certificate" << YAML::Value << tls.certificate;
      out << YAML::Key << "private_key" << YAML::Value << tls.private_key;
      out << YAML::Key << "min_version" << YAML::Value << to_string(tls.min_version);
      if (listener.protocol != Protocol::websocket_echo) {
        out << YAML::Key << "handshake_timeout" << YAML::Value
            << format_duration(tls.handshake_timeout);
      }
      out << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_connections" << YAML::Value
      << config.limits.max_connections;
  out << YAML::Key << "reserved_descriptors" << YAML::Value
      << config.limits.reserved_descriptors;
  out << YAML::Key << "on_insufficient" << YAML::Value
      << to_string(config.limits.on_insufficient);
  out << YAML::EndMap;
  out << YAML::Key << "shutdown" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "drain_timeout" << YAML::Value
      << format_duration(config.shutdown.drain_timeout);
  out << YAML::EndMap;
  out << YAML::Key << "logging" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "level" << YAML::Value << config.logging.level;
  out << YAML::Key << "format" << YAML::Value
      << to_string(config.logging.format);
  out << YAML::EndMap;
  out << YAML::Key << "admin" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "address" << YAML::Value << config.admin.address;
  out << YAML::Key << "port" << YAML::Value << config.admin.port;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<ListenerConfig> default_listeners() {
  ListenerConfig echo;
  ListenerConfig ws;
  ws.name = "ws";
  ws.protocol = Protocol::websocket_echo;
  ws.port = 7001;
  return {echo, ws};
}

std::string format_duration(Duration d) {
  const Duration::rep ms = d.count();
  if (ms == 0) {
    return "0s";
  }
  if (ms % 3'600'000 == 0) {
    return std::to_string(ms / 3'600'000) + "h";
  }
  if (ms % 60'000 == 0) {
    return std::to_string(ms / 60'000) + "m";
  }
  if (ms % 1000 == 0) {
    return std::to_string(ms / 1000) + "s";
  }
  return std::to_string(ms) + "ms";
}

std::string to_string(Protocol p) {
  switch (p) {
    case Protocol::tcp_echo: return "tcp-echo";
    case Protocol::websocket_echo: return "websocket-echo";
  }
  return "unknown";
}

std::string to_string(Sharding s) {
  switch (s) {
    case Sharding::reuseport: return "reuseport";
    case Sharding::dispatch: return "dispatch";
  }
  return "unknown";
}

std::string to_string(OnInsufficient o) {
  switch (o) {
    case OnInsufficient::warn: return "warn";
    case OnInsufficient::fail: return "fail";
  }
  return "unknown";
}

std::string to_string(TlsVersion v) {
  switch (v) {
    case TlsVersion::tls1_2: return "1.2";
    case TlsVersion::tls1_3: return "1.3";
  }
  return "unknown";
}

std::string to_string(LogFormat f) {
  switch (f) {
    case LogFormat::text: return "text";
    case LogFormat::json: return "json";
  }
  return "unknown";
}

}  // namespace shoal
