// yaml-cpp is used only to tokenize: every scalar is read as text and
// converted here, so that each error can name the key path, the text that was
// found and where it is, instead of yaml-cpp's generic "bad conversion".
#include "config/config.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>
#include <boost/asio/ip/address.hpp>

#include "protocol/cidr.hpp"
#include "protocol/utf8.hpp"

namespace shoal {
namespace {

namespace ip = boost::asio::ip;

constexpr std::uint64_t max_u64 = std::numeric_limits<std::uint64_t>::max();

// Far below the ~292 years at which steady_clock::now() + timeout overflows in
// nanoseconds; "never" is spelled 0, not a huge value.
constexpr Duration max_duration = std::chrono::hours(8760);

// New connections per second and burst: far above what one listener accepts,
// low enough that the token bucket's arithmetic in nanoseconds stays exact.
constexpr std::uint64_t kMaxConnectionRate = 1'000'000;


// The names each enum is written as, indexed by its value: the parser reads
// them, to_yaml writes them and to_string returns them.
constexpr std::array<std::string_view, 4> proxy_protocol_names = {"off", "v1", "v2", "any"};
constexpr std::array<std::string_view, 3> protocol_names = {"tcp-echo", "websocket-echo",
                                                            "websocket-pubsub"};
constexpr std::array<std::string_view, 2> sharding_names = {"reuseport",
                                                            "dispatch"};
constexpr std::array<std::string_view, 2> on_insufficient_names = {"warn",
                                                                   "fail"};
constexpr std::array<std::string_view, 2> log_format_names = {"text", "json"};
constexpr std::array<std::string_view, 2> tls_version_names = {"1.2", "1.3"};
constexpr std::array<std::string_view, 2> ktls_names = {"auto", "off"};
constexpr std::array<std::string_view, 2> slow_consumer_names = {"close", "drop"};
constexpr std::array<std::string_view, 7> log_level_names = {
    "trace", "debug", "info", "warn", "error", "critical", "off"};

template <typename Enum, std::size_t N>
std::string name_of(const std::array<std::string_view, N>& names, Enum value) {
  const auto index = static_cast<std::size_t>(value);
  return index < N ? std::string(names[index]) : "unknown";
}

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

std::string join(std::span<const std::string_view> words) {
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

std::string unknown_key_problem(std::string_view key,
                                std::span<const std::string_view> known) {
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
template <typename Fn>
void for_each_entry(const YAML::Node& map, const std::string& path,
                    std::span<const std::string_view> known, Fn&& fn) {
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

// "0-65535", or ">= 1" when only the minimum is a bound.
std::string bounds_text(std::uint64_t min, std::uint64_t max) {
  if (max == max_u64) {
    return ">= " + std::to_string(min);
  }
  return std::to_string(min) + "-" + std::to_string(max);
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
    fail(field, node.Scalar() + " " + std::string(out_of_range) + " (" +
                    bounds_text(min, max) + ")");
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

std::size_t read_choice(const Field& field,
                        std::span<const std::string_view> choices) {
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

[[noreturn]] void fail_duration(const Field& field) {
  fail(field, "expected a duration like 30s, 250ms, 5m or 1h, got " +
                  describe(field.node));
}

// [0-9]+ followed by ms, s, m, h or nothing (seconds), at most `max`.
Duration read_duration(const Field& field, Duration max = max_duration) {
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
  const auto max_ms = static_cast<std::uint64_t>(max.count());
  if (error == std::errc::result_out_of_range || count > max_ms / ms_per_unit) {
    fail(field, text + " is out of range (0-" + format_duration(max) + ")");
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

// --- The schema: one row per key ---------------------------------------------
//
// Each map of the file (the top level, a listener, its websocket and tls maps,
// ...) is a Section: its rows in config order, then the checks that involve
// more than one key. A row alone decides that its key exists, how it is read,
// written back by to_yaml, documented and reloaded, so that a key cannot be
// known and yet never parsed or printed.

// Whether a SIGHUP applies a changed value. A section's rows decide for it,
// except that turning TLS on or off and adding or removing a listener need a
// restart.
enum class Reload { live, restart, per_key };

// The listener being written, for the keys that only one protocol takes.
struct Scope {
  const ListenerConfig* listener = nullptr;
};

bool tcp_echo_only(const Scope& scope) {
  return scope.listener->protocol == Protocol::tcp_echo;
}
// websocket-echo and websocket-pubsub: both speak WebSocket through the same
// engine and take the `websocket:` map.
bool speaks_websocket(Protocol protocol) {
  return protocol == Protocol::websocket_echo || protocol == Protocol::websocket_pubsub;
}
bool websocket_only(const Scope& scope) { return speaks_websocket(scope.listener->protocol); }
bool pubsub_only(const Scope& scope) {
  return scope.listener->protocol == Protocol::websocket_pubsub;
}

// The entries a map gave, nested ones under their relative path
// ("tls.handshake_timeout"). The checks between keys run on them once the
// whole map is read, since the keys come in any order.
class Given {
 public:
  void add(std::string path, const Field& field) {
    fields_.emplace_back(std::move(path), field);
  }
  void add_nested(std::string_view key, const Given& nested) {
    for (const auto& [path, field] : nested.fields_) {
      add(std::string(key) + "." + path, field);
    }
  }
  const Field* find(std::string_view path) const {
    for (const auto& [name, field] : fields_) {
      if (name == path) return &field;
    }
    return nullptr;
  }

 private:
  std::vector<std::pair<std::string, Field>> fields_;
};

// How one type of value is read, written and described.
template <typename T>
struct Codec {
  std::function<T(const Field&)> read;
  std::function<void(YAML::Emitter&, const T&)> emit;
  std::function<std::string(const T&)> text;  // a default, in describe_keys()
  std::string range;
};

// What a row does with the section S it belongs to; leaf() for a value,
// nested(), optional_section() and listener_list() for what holds keys.
template <typename S>
struct Kind {
  std::function<void(const Field&, S&, Given& nested)> read;
  std::function<void(YAML::Emitter&, std::string_view key, const S&, const Scope&)> emit;
  std::function<void(const S& running, const S& next, const std::string& path, Reload,
                     std::vector<std::string>& restart)>
      changes;
  std::function<void(const std::string& path, Reload, std::string_view doc,
                     std::vector<KeyDoc>& out)>
      describe;
  // Copies what reloads live from `next` into `running`.
  std::function<void(S& running, const S& next, Reload)> apply;
};

template <typename S>
struct Key {
  std::string_view name;
  Kind<S> kind;
  Reload reload;
  std::string_view doc;
  bool (*emit_when)(const Scope&) = nullptr;  // to_yaml writes the key only when true
};

template <typename S>
struct Section {
  std::vector<Key<S>> keys;
  void (*check)(const Field& map, const Given&, S&) = nullptr;

  std::vector<std::string_view> names() const {
    std::vector<std::string_view> out;
    for (const Key<S>& key : keys) out.push_back(key.name);
    return out;
  }
};

std::string child_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// Reads a map's entries over the values already in `out`.
template <typename S>
void read_entries(const Field& map, const Section<S>& section, S& out, Given& given) {
  const std::vector<std::string_view> names = section.names();
  for_each_entry(map.node, map.path, names, [&](std::string_view name, const Field& value) {
    const Key<S>& key = section.keys[static_cast<std::size_t>(
        std::find(names.begin(), names.end(), name) - names.begin())];
    Given nested;
    key.kind.read(value, out, nested);
    given.add(std::string(name), value);
    given.add_nested(name, nested);
  });
  if (section.check) section.check(map, given, out);
}

template <typename S>
void read_map(const Field& field, const Section<S>& section, S& out, Given& given) {
  if (!field.node.IsMap()) {
    fail(field, "expected a map");
  }
  read_entries(field, section, out, given);
}

template <typename S>
void emit_map(YAML::Emitter& out, const Section<S>& section, const S& value,
              const Scope& scope) {
  out << YAML::BeginMap;
  for (const Key<S>& key : section.keys) {
    if (!key.emit_when || key.emit_when(scope)) key.kind.emit(out, key.name, value, scope);
  }
  out << YAML::EndMap;
}

template <typename S>
void collect_changes(const Section<S>& section, const S& running, const S& next,
                     const std::string& path, std::vector<std::string>& restart) {
  for (const Key<S>& key : section.keys) {
    key.kind.changes(running, next, child_path(path, key.name), key.reload, restart);
  }
}

template <typename S>
void apply_section(const Section<S>& section, S& running, const S& next) {
  for (const Key<S>& key : section.keys) key.kind.apply(running, next, key.reload);
}

// Appends the section's keys; returns whether all of them reload live.
template <typename S>
bool describe_section(const Section<S>& section, const std::string& path,
                      std::vector<KeyDoc>& out) {
  bool live = true;
  for (const Key<S>& key : section.keys) {
    const std::size_t at = out.size();
    key.kind.describe(child_path(path, key.name), key.reload, key.doc, out);
    live = live && out[at].live;
  }
  return live;
}

void emit_key(YAML::Emitter& out, std::string_view key) {
  out << YAML::Key << std::string(key) << YAML::Value;
}

template <typename S, typename T>
Kind<S> leaf(T S::*member, Codec<T> codec) {
  Kind<S> kind;
  kind.read = [member, read = codec.read](const Field& field, S& s, Given&) {
    s.*member = read(field);
  };
  kind.emit = [member, emit = codec.emit](YAML::Emitter& out, std::string_view key,
                                          const S& s, const Scope&) {
    emit_key(out, key);
    emit(out, s.*member);
  };
  kind.changes = [member](const S& running, const S& next, const std::string& path,
                          Reload reload, std::vector<std::string>& restart) {
    if (reload == Reload::restart && !(running.*member == next.*member)) {
      restart.push_back(path);
    }
  };
  kind.describe = [member, codec](const std::string& path, Reload reload,
                                  std::string_view doc, std::vector<KeyDoc>& out) {
    out.push_back({path, codec.text(S{}.*member), codec.range, reload == Reload::live,
                   std::string(doc), false});
  };
  kind.apply = [member](S& running, const S& next, Reload reload) {
    if (reload == Reload::live) running.*member = next.*member;
  };
  return kind;
}

KeyDoc section_doc(const std::string& path, std::string_view doc) {
  return {path, {}, {}, false, std::string(doc), true};
}

// A map that may be left empty (all of its keys commented out) for its
// defaults.
template <typename S, typename T>
Kind<S> nested(T S::*member, const Section<T>& (*schema)()) {
  Kind<S> kind;
  kind.read = [member, schema](const Field& field, S& s, Given& nested) {
    if (!field.node.IsNull()) read_map(field, schema(), s.*member, nested);
  };
  kind.emit = [member, schema](YAML::Emitter& out, std::string_view key, const S& s,
                               const Scope& scope) {
    emit_key(out, key);
    emit_map(out, schema(), s.*member, scope);
  };
  kind.changes = [member, schema](const S& running, const S& next, const std::string& path,
                                  Reload, std::vector<std::string>& restart) {
    collect_changes(schema(), running.*member, next.*member, path, restart);
  };
  kind.describe = [schema](const std::string& path, Reload, std::string_view doc,
                           std::vector<KeyDoc>& out) {
    const std::size_t at = out.size();
    out.push_back(section_doc(path, doc));
    const bool live = describe_section(schema(), path, out);
    out[at].live = live;
  };
  kind.apply = [member, schema](S& running, const S& next, Reload) {
    apply_section(schema(), running.*member, next.*member);
  };
  return kind;
}

// A map whose presence is itself a setting (tls): left empty it is absent,
// and any map, even {}, is read from the section's defaults.
template <typename S, typename T>
Kind<S> optional_section(std::optional<T> S::*member, const Section<T>& (*schema)()) {
  Kind<S> kind;
  kind.read = [member, schema](const Field& field, S& s, Given& nested) {
    if (field.node.IsNull()) {
      (s.*member).reset();
      return;
    }
    T value;
    read_map(field, schema(), value, nested);
    s.*member = std::move(value);
  };
  kind.emit = [member, schema](YAML::Emitter& out, std::string_view key, const S& s,
                               const Scope& scope) {
    if (!(s.*member)) return;
    emit_key(out, key);
    emit_map(out, schema(), *(s.*member), scope);
  };
  kind.changes = [member, schema](const S& running, const S& next, const std::string& path,
                                  Reload, std::vector<std::string>& restart) {
    const std::optional<T>& was = running.*member;
    const std::optional<T>& want = next.*member;
    if (was.has_value() != want.has_value()) {
      restart.push_back(path + (want ? " (turned on)" : " (turned off)"));
    } else if (was) {
      collect_changes(schema(), *was, *want, path, restart);
    }
  };
  kind.describe = [schema](const std::string& path, Reload, std::string_view doc,
                           std::vector<KeyDoc>& out) {
    out.push_back(section_doc(path, doc));
    describe_section(schema(), path, out);
  };
  // Turned on or off: a restart does it, the running state stays.
  kind.apply = [member, schema](S& running, const S& next, Reload) {
    std::optional<T>& was = running.*member;
    const std::optional<T>& want = next.*member;
    if (was && want) apply_section(schema(), *was, *want);
  };
  return kind;
}

// --- Codecs --------------------------------------------------------------------

template <typename T>
Codec<T> integer(std::uint64_t min, std::uint64_t max,
                 std::string_view out_of_range = "is out of range") {
  return {[=](const Field& field) {
            return static_cast<T>(read_integer(field, min, max, out_of_range));
          },
          [](YAML::Emitter& out, const T& value) { out << value; },
          [](const T& value) { return std::to_string(value); }, bounds_text(min, max)};
}

Codec<unsigned> shard_count() {
  return {read_shards,
          [](YAML::Emitter& out, const unsigned& shards) {
            if (shards == 0) {
              out << "auto";
            } else {
              out << shards;
            }
          },
          [](const unsigned& shards) {
            return shards == 0 ? std::string("auto") : std::to_string(shards);
          },
          "auto or 1-1024"};
}

Codec<Duration> duration(Duration max = max_duration) {
  return {[max](const Field& field) { return read_duration(field, max); },
          [](YAML::Emitter& out, const Duration& value) { out << format_duration(value); },
          format_duration, "0-" + format_duration(max)};
}

Codec<bool> boolean() {
  return {read_bool, [](YAML::Emitter& out, const bool& value) { out << value; },
          [](const bool& value) { return std::string(value ? "true" : "false"); },
          "true or false"};
}

std::string identity(const std::string& text) { return text; }

void emit_string(YAML::Emitter& out, const std::string& text) { out << text; }

template <typename Enum>
Codec<Enum> choice(std::span<const std::string_view> names) {
  const auto text = [names](const Enum& value) {
    return std::string(names[static_cast<std::size_t>(value)]);
  };
  return {[names](const Field& field) { return static_cast<Enum>(read_choice(field, names)); },
          [text](YAML::Emitter& out, const Enum& value) { out << text(value); }, text,
          "one of " + join(names)};
}

// A choice kept as its name (logging.level, which spdlog parses).
Codec<std::string> named_choice(std::span<const std::string_view> names) {
  return {[names](const Field& field) { return std::string(names[read_choice(field, names)]); },
          emit_string, identity, "one of " + join(names)};
}

// One line of text; `check` rejects what the key does not take.
Codec<std::string> text(void (*check)(const Field&, const std::string&), std::string range) {
  return {[check](const Field& field) {
            std::string value = read_string(field);
            check(field, value);
            return value;
          },
          emit_string, identity, std::move(range)};
}

void not_empty(const Field& field, const std::string& value) {
  if (value.empty()) {
    fail(field, "must not be empty");
  }
}

void http_path(const Field& field, const std::string& value) {
  if (value.empty() || value.front() != '/') {
    fail(field, quote(value) + " is not a path (it must start with /)");
  }
}

void ip_address(const Field& field, const std::string& value) {
  boost::system::error_code error;
  ip::make_address(value, error);
  if (error) {
    fail(field, quote(value) + " is not an IP address");
  }
}

// The instance name goes unescaped into an HTTP header (X-Shoal-Instance),
// JSON strings and Prometheus label values, so it keeps to characters that
// need quoting in none of them. Empty (or left out) is the host name.
constexpr std::size_t kMaxInstanceBytes = 64;
constexpr std::string_view instance_range =
    "1-64 characters, each an ASCII letter, a digit or one of _ . : -";

void instance_name(const Field& field, const std::string& value) {
  const bool allowed = std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == ':' || c == '-';
  });
  if (value.size() > kMaxInstanceBytes || !allowed) {
    fail(field, quote(value) + " is not an instance name (" + std::string(instance_range) + ")");
  }
}

Codec<std::string> instance_text() {
  Codec<std::string> codec = text(instance_name, std::string(instance_range));
  codec.text = [](const std::string& name) {
    return name.empty() ? std::string("the host name") : name;
  };
  return codec;
}

Codec<std::uint16_t> port_number() { return integer<std::uint16_t>(0, 65535, "is not a port"); }

Codec<std::string> ip_address_text() { return text(ip_address, "an IP address"); }

Codec<std::vector<std::string>> string_list() {
  return {read_string_list,
          // Quoted: an origin or an IPv6 range holds ':', which other YAML
          // readers take for a mapping inside a flow sequence.
          [](YAML::Emitter& out, const std::vector<std::string>& list) {
            out << YAML::Flow << YAML::BeginSeq;
            for (const std::string& item : list) out << YAML::DoubleQuoted << item;
            out << YAML::EndSeq;
          },
          [](const std::vector<std::string>& list) {
            std::vector<std::string_view> words(list.begin(), list.end());
            return "[" + join(words) + "]";
          },
          "a list of strings"};
}

// proxy_trusted: each entry a CIDR range CidrSet takes; an empty list
// would trust no balancer at all, so it is refused.
Codec<std::vector<std::string>> cidr_list() {
  Codec<std::vector<std::string>> codec = string_list();
  codec.read = [](const Field& field) {
    std::vector<std::string> list = read_string_list(field);
    if (list.empty()) fail(field, "must list at least one address range");
    for (std::size_t i = 0; i < list.size(); ++i) {
      try {
        CidrSet::parse(list[i]);
      } catch (const std::invalid_argument& e) {
        const YAML::Node item = field.node[i];
        fail(field.path + "[" + std::to_string(i) + "]", item.Mark(), e.what());
      }
    }
    return list;
  };
  codec.range = "a list of CIDR ranges";
  return codec;
}

// A TLS file, with where it was named for the errors found when it loads.
Kind<TlsConfig> tls_file(std::string TlsConfig::*file, SourceMark TlsConfig::*mark) {
  Codec<std::string> codec = text(not_empty, "a file path");
  codec.text = [](const std::string& path) {
    return path.empty() ? std::string("none (required)") : path;
  };
  Kind<TlsConfig> kind = leaf(file, std::move(codec));
  kind.read = [read = kind.read, mark](const Field& field, TlsConfig& tls, Given& nested) {
    read(field, tls, nested);
    (tls.*mark).text = position(field.mark);
  };
  return kind;
}

// --- The sections ----------------------------------------------------------------

const Section<WebSocketConfig::Deflate>& deflate_section() {
  using D = WebSocketConfig::Deflate;
  static const Section<D> section{{
      {"enabled", leaf(&D::enabled, boolean()), Reload::restart,
       "negotiate permessage-deflate (RFC 7692) with clients that offer it"},
      {"server_max_window_bits", leaf(&D::server_max_window_bits, integer<int>(9, 15)),
       Reload::restart, "LZ77 window of what we send, in bits"},
      {"client_max_window_bits", leaf(&D::client_max_window_bits, integer<int>(9, 15)),
       Reload::restart, "LZ77 window we ask the client to use, in bits"},
  }};
  return section;
}

// Bodies and sized echoes are held whole in memory, per request or message.
constexpr std::uint64_t kMaxControlBytes = 64ULL * 1024 * 1024;

const Section<WebSocketConfig::Controls>& controls_section() {
  using K = WebSocketConfig::Controls;
  static const Section<K> section{{
      {"enabled", leaf(&K::enabled, boolean()), Reload::restart,
       "act on the control parameters; false: they are only echoed"},
      {"max_delay", leaf(&K::max_delay, duration(std::chrono::hours(1))), Reload::restart,
       "largest delay= accepted; larger gets 400"},
      {"max_size", leaf(&K::max_size, integer<std::uint64_t>(0, kMaxControlBytes)),
       Reload::restart, "largest size= accepted, in bytes; larger gets 400"},
  }};
  return section;
}

const Section<WebSocketConfig>& websocket_section() {
  using W = WebSocketConfig;
  static const Section<W> section{{
      {"path", leaf(&W::path, text(http_path, "a path starting with /")), Reload::restart,
       "request path that upgrades; an upgrade elsewhere gets 404"},
      {"max_message_bytes", leaf(&W::max_message_bytes, integer<std::uint64_t>(1, 1ULL << 31)),
       Reload::restart, "largest message after reassembly; larger closes with 1009"},
      {"max_header_bytes",
       leaf(&W::max_header_bytes, integer<std::uint64_t>(1024, 1024 * 1024)), Reload::restart,
       "largest request head, upgrade or HTTP echo; larger gets 431"},
      {"handshake_timeout", leaf(&W::handshake_timeout, duration()), Reload::restart,
       "time to complete the upgrade, and TLS when on; also each wait for an HTTP request"},
      {"ping_interval", leaf(&W::ping_interval, duration()), Reload::restart,
       "ping a peer silent this long; 0 turns keepalive pings off"},
      {"pong_timeout", leaf(&W::pong_timeout, duration()), Reload::restart,
       "close a pinged peer without a pong this long; 0: no pong deadline"},
      {"write_timeout", leaf(&W::write_timeout, duration()), Reload::restart,
       "close a peer that does not take our echo this long"},
      {"allowed_origins", leaf(&W::allowed_origins, string_list()), Reload::restart,
       "Origin values accepted; empty: any"},
      {"subprotocols", leaf(&W::subprotocols, string_list()), Reload::restart,
       "subprotocols offered, in order of preference"},
      {"permessage_deflate", nested(&W::permessage_deflate, deflate_section), Reload::per_key,
       "compression (RFC 7692)"},
      {"http_echo", leaf(&W::http_echo, boolean()), Reload::restart,
       "answer requests that are not upgrades with a JSON echo, and GET /.ws with a page"},
      {"max_body_bytes", leaf(&W::max_body_bytes, integer<std::uint64_t>(0, kMaxControlBytes)),
       Reload::restart, "largest HTTP echo request body; larger gets 413"},
      {"controls", nested(&W::controls, controls_section), Reload::per_key,
       "response controls: delay=, status=, size=, close_after= in the query"},
  }};
  return section;
}

// pubsub.redis: "redis://HOST:PORT" and nothing else, since the bridge
// (pubsub/redis_bridge.hpp) speaks plain RESP to one address: no
// credentials, no TLS, and no database (pub/sub channels span databases).
// HOST is a name, an IPv4 address or a bracketed IPv6 address; the port is
// required so that a file says which Redis it means. Returns what is wrong,
// or nothing.
std::string redis_url_problem(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (url.substr(0, 9) == "rediss://") return "TLS to Redis (rediss://) is not supported";
  if (url.substr(0, scheme.size()) != scheme) return "it must start with redis://";
  std::string_view rest = url.substr(scheme.size());
  if (rest.find('@') != std::string_view::npos) {
    return "credentials (USER:PASSWORD@) are not supported";
  }
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    return "nothing may follow HOST:PORT (no database or path)";
  }
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return "the [ of an IPv6 address has no ]";
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (after.empty() || after.front() != ':') return "it has no :PORT after the host";
    port = after.substr(1);
    boost::system::error_code error;
    ip::make_address_v6(std::string(host), error);
    if (error || host.empty()) return quote(host) + " is not an IPv6 address";
  } else {
    const std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return "it has no :PORT after the host";
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.empty()) return "the host is empty";
    if (host.find(':') != std::string_view::npos) {
      return "an IPv6 address must be in brackets: redis://[" + std::string(host) + "]:PORT";
    }
    const bool numeric = std::all_of(host.begin(), host.end(),
                                     [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
    if (numeric) {
      boost::system::error_code error;
      ip::make_address_v4(std::string(host), error);
      if (error) return quote(host) + " is not an IPv4 address";
    } else {
      // RFC 1123 host names: dot-separated labels of letters, digits and
      // inner hyphens, each 1-63 bytes.
      bool valid = host.size() <= 253;
      std::size_t label = 0;
      for (std::size_t i = 0; valid && i <= host.size(); ++i) {
        if (i == host.size() || host[i] == '.') {
          valid = label >= 1 && label <= 63 && host[i - 1] != '-' && host[i - label] != '-';
          label = 0;
          continue;
        }
        const char c = host[i];
        valid = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-';
        ++label;
      }
      if (!valid) return quote(host) + " is not a host name or IP address";
    }
  }
  const std::optional<Integer> number = parse_integer(port);
  if (port.empty() || port.front() == '+' || port.front() == '-' || !number ||
      !in_range(*number, 1, 65535)) {
    return "port " + quote(port) + " is not 1-65535";
  }
  return {};
}

constexpr std::string_view redis_range = "redis://HOST:PORT, or empty for none";

void redis_url(const Field& field, const std::string& value) {
  if (value.empty()) return;  // none: this instance alone
  if (const std::string problem = redis_url_problem(value); !problem.empty()) {
    fail(field, quote(value) + " is not a Redis URL: " + problem);
  }
}

Codec<std::string> redis_text() {
  Codec<std::string> codec = text(redis_url, std::string(redis_range));
  codec.text = [](const std::string& url) { return url.empty() ? std::string("none") : url; };
  return codec;
}

// Below 1 KiB a queue holds hardly one message; above 1 GiB one subscriber
// that stops reading can take the host's memory.
constexpr std::uint64_t kMaxQueuedBytes = 1024ULL * 1024 * 1024;

void check_pubsub(const Field&, const Given& given, PubSubConfig& pubsub) {
  if (const Field* field = given.find("redis_required");
      field && pubsub.redis_required && pubsub.redis.empty()) {
    fail(*field, "true needs pubsub.redis (redis://HOST:PORT): there is no Redis to require");
  }
}

// The hub and its Redis bridge are built once at start-up, so none of these
// reload live.
const Section<PubSubConfig>& pubsub_section() {
  using P = PubSubConfig;
  static const Section<P> section{
      {
          {"echo_to_sender", leaf(&P::echo_to_sender, boolean()), Reload::restart,
           "deliver a publisher's messages to itself too"},
          {"max_queued_bytes",
           leaf(&P::max_queued_bytes, integer<std::uint64_t>(1024, kMaxQueuedBytes)),
           Reload::restart, "bytes queued to a subscriber above which it is a slow consumer"},
          {"slow_consumer", leaf(&P::slow_consumer, choice<SlowConsumer>(slow_consumer_names)),
           Reload::restart, "what a slow consumer gets: close (1008) or its messages dropped"},
          {"redis", leaf(&P::redis, redis_text()), Reload::restart,
           "Redis that links the instances' channels; empty: this instance alone"},
          {"redis_required", leaf(&P::redis_required, boolean()), Reload::restart,
           "/readyz is not ready while Redis is unreachable"},
      },
      check_pubsub};
  return section;
}

void check_tls(const Field& map, const Given&, TlsConfig& tls) {
  if (tls.certificate.empty()) {
    fail(map, "certificate is required (a PEM file)");
  }
  if (tls.private_key.empty()) {
    fail(map, "private_key is required (a PEM file)");
  }
}

// The files are read again on every SIGHUP (tls.hpp), so all of these apply
// live; only turning TLS on or off needs a restart.
const Section<TlsConfig>& tls_section() {
  static const Section<TlsConfig> section{
      {
          {"certificate", tls_file(&TlsConfig::certificate, &TlsConfig::certificate_mark),
           Reload::live, "PEM file: the certificate, then any intermediates"},
          {"private_key", tls_file(&TlsConfig::private_key, &TlsConfig::private_key_mark),
           Reload::live, "PEM file: its unencrypted private key"},
          {"min_version", leaf(&TlsConfig::min_version, choice<TlsVersion>(tls_version_names)),
           Reload::live, "oldest TLS version accepted"},
          {"ktls", leaf(&TlsConfig::ktls, choice<KtlsMode>(ktls_names)), Reload::live,
           "kernel TLS after the handshake: auto (when the kernel offers it) or off"},
          {"handshake_timeout", leaf(&TlsConfig::handshake_timeout, duration()), Reload::live,
           "time for a tcp-echo client to complete the TLS handshake", tcp_echo_only},
      },
      check_tls};
  return section;
}

// After all keys, since `protocol` may come after the keys it restricts.
void check_listener(const Field&, const Given& given, ListenerConfig& listener) {
  const bool websocket = speaks_websocket(listener.protocol);
  const std::string protocol = to_string(listener.protocol);
  if (const Field* field = given.find("websocket"); field && !websocket) {
    fail(*field, "only a websocket-echo or websocket-pubsub listener takes websocket options");
  }
  if (const Field* field = given.find("pubsub");
      field && listener.protocol != Protocol::websocket_pubsub) {
    fail(*field, "only a websocket-pubsub listener takes pubsub options");
  }
  if (const Field* field = given.find("write_timeout"); field && websocket) {
    fail(*field, "a " + protocol + " listener sets websocket.write_timeout instead");
  }
  if (const Field* field = given.find("new_connections_burst");
      field && listener.new_connections_burst != 0 &&
      listener.max_new_connections_per_second == 0) {
    fail(*field, "has no effect without max_new_connections_per_second");
  }
  if (const Field* field = given.find("tls.handshake_timeout"); field && websocket) {
    fail(*field, "a " + protocol +
                     " listener's TLS handshake is covered by websocket.handshake_timeout");
  }
}

// Apart from websocket and pubsub (read by sessions and the hub on their own
// shards without synchronisation), what a reload can change is what Server::apply_reload
// hands to the shards: limits and timeouts.
const Section<ListenerConfig>& listener_section() {
  using C = ListenerConfig;
  static const Section<C> section{
      {
          {"name", leaf(&C::name, text(not_empty, "a non-empty string")), Reload::restart,
           "unique name, used in logs and metrics"},
          {"protocol", leaf(&C::protocol, choice<Protocol>(protocol_names)), Reload::restart,
           "what is spoken on the connections"},
          {"address", leaf(&C::address, ip_address_text()), Reload::restart,
           "address to bind"},
          {"port", leaf(&C::port, port_number()),
           Reload::restart, "TCP port; 0 lets the kernel pick one"},
          {"backlog", leaf(&C::backlog, integer<int>(1, 1'048'576)), Reload::restart,
           "queue of connections not yet accepted"},
          {"max_connections", leaf(&C::max_connections, integer<std::uint64_t>(0, max_u64)),
           Reload::live, "connections open at once on this listener; 0: no limit of its own"},
          {"max_connections_per_ip",
           leaf(&C::max_connections_per_ip, integer<std::uint64_t>(0, max_u64)), Reload::live,
           "connections open at once from one client address; 0: no limit"},
          {"max_new_connections_per_second",
           leaf(&C::max_new_connections_per_second,
                integer<std::uint64_t>(0, kMaxConnectionRate)),
           Reload::live, "new connections served per second; 0: no limit"},
          {"new_connections_burst",
           leaf(&C::new_connections_burst, integer<std::uint64_t>(0, kMaxConnectionRate)),
           Reload::live, "new connections at once above the rate; 0: the rate"},
          {"idle_timeout", leaf(&C::idle_timeout, duration()), Reload::live,
           "close a connection silent both ways this long; 0: never"},
          {"write_timeout", leaf(&C::write_timeout, duration()), Reload::live,
           "tcp-echo: close a peer that does not take our echo this long; 0: never",
           tcp_echo_only},
          {"proxy_protocol",
           leaf(&C::proxy_protocol, choice<ProxyProtocol>(proxy_protocol_names)),
           Reload::restart, "PROXY protocol header required from the balancer in front"},
          {"proxy_trusted", leaf(&C::proxy_trusted, cidr_list()), Reload::live,
           "balancer addresses allowed to send a PROXY header"},
          {"websocket", nested(&C::websocket, websocket_section), Reload::per_key,
           "options of a websocket-echo or websocket-pubsub listener", websocket_only},
          {"pubsub", nested(&C::pubsub, pubsub_section), Reload::per_key,
           "channels of a websocket-pubsub listener", pubsub_only},
          {"tls", optional_section(&C::tls, tls_section), Reload::per_key,
           "TLS on the connections; absent: plaintext"},
      },
      check_listener};
  return section;
}

// A bound listener, for the conflict checks between listeners.
struct Bound {
  std::string path;
  ip::address address;
};

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
    ListenerConfig listener;
    Given given;
    read_map(entry_field, listener_section(), listener, given);
    const ip::address address = normalize(ip::make_address(listener.address));
    for (std::size_t j = 0; j < listeners.size(); ++j) {
      if (listeners[j].name == listener.name) {
        const Field* name = given.find("name");
        fail(entry_field.path + ".name", name ? name->mark : entry_field.mark,
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

Kind<Config> listener_list() {
  Kind<Config> kind;
  kind.read = [](const Field& field, Config& config, Given&) {
    config.listeners = read_listeners(field);
  };
  kind.emit = [](YAML::Emitter& out, std::string_view key, const Config& config,
                 const Scope&) {
    emit_key(out, key);
    out << YAML::BeginSeq;
    for (const ListenerConfig& listener : config.listeners) {
      emit_map(out, listener_section(), listener, Scope{&listener});
    }
    out << YAML::EndSeq;
  };
  // Listeners are matched by position: which one a connection belongs to is
  // its index (shard.hpp), so a changed count needs a restart whatever moved.
  kind.changes = [](const Config& running, const Config& next, const std::string& path,
                    Reload, std::vector<std::string>& restart) {
    if (running.listeners.size() != next.listeners.size()) {
      restart.push_back(path + " (added or removed)");
      return;
    }
    for (std::size_t i = 0; i < next.listeners.size(); ++i) {
      collect_changes(listener_section(), running.listeners[i], next.listeners[i],
                      path + "[" + std::to_string(i) + "]", restart);
    }
  };
  kind.describe = [](const std::string& path, Reload, std::string_view doc,
                     std::vector<KeyDoc>& out) {
    out.push_back(section_doc(path, doc));
    describe_section(listener_section(), path + "[]", out);
  };
  kind.apply = [](Config& running, const Config& next, Reload) {
    if (running.listeners.size() != next.listeners.size()) return;
    for (std::size_t i = 0; i < next.listeners.size(); ++i) {
      apply_section(listener_section(), running.listeners[i], next.listeners[i]);
    }
  };
  return kind;
}

const Section<LimitsConfig>& limits_section() {
  using C = LimitsConfig;
  static const Section<C> section{{
      {"max_connections", leaf(&C::max_connections, integer<std::uint64_t>(1, max_u64)),
       Reload::live, "client connections open at once across all listeners"},
      {"reserved_descriptors",
       leaf(&C::reserved_descriptors, integer<std::uint64_t>(0, 1'000'000)), Reload::restart,
       "descriptors kept for everything but client connections"},
      {"on_insufficient", leaf(&C::on_insufficient, choice<OnInsufficient>(on_insufficient_names)),
       Reload::live, "what to do when the host cannot honour max_connections"},
  }};
  return section;
}

const Section<ShutdownConfig>& shutdown_section() {
  static const Section<ShutdownConfig> section{{
      {"drain_timeout", leaf(&ShutdownConfig::drain_timeout, duration()), Reload::live,
       "how long a stop waits for open connections to close"},
      {"drain_spread", leaf(&ShutdownConfig::drain_spread, duration()), Reload::live,
       "window over which a stop closes WebSocket connections (1001); capped by drain_timeout"},
  }};
  return section;
}

const Section<LoggingConfig>& logging_section() {
  static const Section<LoggingConfig> section{{
      {"level", leaf(&LoggingConfig::level, named_choice(log_level_names)), Reload::live,
       "least severe messages written"},
      {"format", leaf(&LoggingConfig::format, choice<LogFormat>(log_format_names)),
       Reload::live, "text lines or JSON lines"},
  }};
  return section;
}

const Section<AdminConfig>& admin_section() {
  static const Section<AdminConfig> section{{
      {"address", leaf(&AdminConfig::address, ip_address_text()),
       Reload::restart, "address of the admin HTTP port"},
      {"port", leaf(&AdminConfig::port, port_number()),
       Reload::restart, "admin HTTP port; 0 turns it off"},
  }};
  return section;
}

// The admin port must not collide with a listener, whether it was written
// out or is the default.
void check_config(const Field&, const Given& given, Config& config) {
  if (config.admin.port == 0) {
    return;
  }
  const ip::address admin_address = normalize(ip::make_address(config.admin.address));
  ListenerConfig as_listener;
  as_listener.address = config.admin.address;
  as_listener.port = config.admin.port;
  for (const ListenerConfig& l : config.listeners) {
    if (!conflicts(as_listener, admin_address, l, normalize(ip::make_address(l.address)))) {
      continue;
    }
    const std::string problem =
        endpoint(as_listener, admin_address) + " is already used by listener " + quote(l.name);
    if (const Field* admin = given.find("admin")) {
      fail("admin", admin->mark, problem);
    }
    fail("admin", YAML::Mark::null_mark(),
         "the default " + problem + "; set admin.port (0 turns it off)");
  }
}

const Section<Config>& config_section() {
  using C = Config;
  static const Section<C> section{
      {
          {"instance", leaf(&C::instance, instance_text()), Reload::restart,
           "name of this shoald in HTTP echo, /status and shoal_build_info"},
          {"shards", leaf(&C::shards, shard_count()), Reload::restart,
           "event loops, each on its own thread"},
          {"cpu_affinity", leaf(&C::cpu_affinity, boolean()), Reload::restart,
           "pin shard N to the N-th CPU this process may run on"},
          {"sharding", leaf(&C::sharding, choice<Sharding>(sharding_names)), Reload::restart,
           "how connections reach the shards"},
          {"listeners", listener_list(), Reload::per_key, "the sockets to listen on"},
          {"limits", nested(&C::limits, limits_section), Reload::per_key,
           "connection limits"},
          {"shutdown", nested(&C::shutdown, shutdown_section), Reload::per_key,
           "the drain on SIGTERM"},
          {"logging", nested(&C::logging, logging_section), Reload::per_key, "log output"},
          {"admin", nested(&C::admin, admin_section), Reload::per_key,
           "the admin HTTP port: /metrics, /healthz, /readyz, /status"},
      },
      check_config};
  return section;
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
  Given given;
  read_entries(Field{root, {}, root.Mark()}, config_section(), config, given);
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
  emit_map(out, config_section(), config, Scope{});
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> restart_required(const Config& running, const Config& next) {
  std::vector<std::string> restart;
  collect_changes(config_section(), running, next, {}, restart);
  return restart;
}

Config apply_live(const Config& running, const Config& next) {
  Config out = running;
  apply_section(config_section(), out, next);
  return out;
}

std::vector<KeyDoc> describe_keys() {
  std::vector<KeyDoc> out;
  describe_section(config_section(), {}, out);
  return out;
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
std::string to_string(Protocol p) { return name_of(protocol_names, p); }
std::string to_string(ProxyProtocol p) { return name_of(proxy_protocol_names, p); }
std::string to_string(Sharding s) { return name_of(sharding_names, s); }
std::string to_string(OnInsufficient o) { return name_of(on_insufficient_names, o); }
std::string to_string(TlsVersion v) { return name_of(tls_version_names, v); }
std::string to_string(KtlsMode m) { return name_of(ktls_names, m); }
std::string to_string(LogFormat f) { return name_of(log_format_names, f); }
std::string to_string(SlowConsumer s) { return name_of(slow_consumer_names, s); }

}  // namespace shoal

namespace shoal {

std::string effective_instance(const Config& config) {
  if (!config.instance.empty()) return config.instance;
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "shoald";
  return name;
}

}  // namespace shoal
