// Unit tests of config.cpp: the shipped file, parsing, round-tripping, and the
// exact text of each kind of error. YAML texts start right after R"( so that
// their first line is line 1 of the expected positions.
#include "config/config.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shoal {
namespace {

using namespace std::chrono_literals;

// what() of the ConfigError thrown, or a marker that fails the comparison.
std::string error_of(const std::string& yaml, const std::string& source = {}) {
  try {
    parse_config(yaml, source);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

std::string file_error_of(const std::string& path) {
  try {
    load_config_file(path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Config, ShippedFileEqualsBuiltInDefaults) {
  EXPECT_EQ(load_config_file(SHOAL_SOURCE_DIR "/config/shoal.yaml"), Config{});
}

// How config/shoal.yaml documents a key (its header says the same): the key's
// line, `key: value` or `- key: value`, possibly commented out by "# " put
// where its indentation ends ("    # tls:", "    #   certificate: c.pem");
// prose never starts a line with a lower-case `word:` (a list of choices is
// "* choice: ..."). The comment lines right above a key document it: they
// contain "Default: <default_text>." and, case aside, its range_text, as
// describe_keys() gives them.
struct DocumentedKey {
  std::size_t line = 0;  // 1-based
  std::string doc;       // the comment lines above it, joined by spaces
};

std::map<std::string, DocumentedKey> keys_in_shipped_file() {
  std::ifstream in(SHOAL_SOURCE_DIR "/config/shoal.yaml");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  EXPECT_FALSE(lines.empty());

  struct Parsed {
    std::size_t column = 0;
    std::string key;
    bool item = false;
  };
  const auto parse = [](const std::string& line) -> std::optional<Parsed> {
    std::string text = line;
    const std::size_t indent = text.find_first_not_of(' ');
    if (indent == std::string::npos) return std::nullopt;
    if (text.compare(indent, 2, "# ") == 0) text.erase(indent, 2);
    Parsed parsed;
    parsed.column = text.find_first_not_of(' ');
    if (parsed.column == std::string::npos) return std::nullopt;
    if (text.compare(parsed.column, 2, "- ") == 0) {
      parsed.item = true;
      parsed.column += 2;
    }
    std::size_t end = parsed.column;
    while (end < text.size() && ((text[end] >= 'a' && text[end] <= 'z') || text[end] == '_')) ++end;
    if (end == parsed.column || end >= text.size() || text[end] != ':' ||
        (end + 1 < text.size() && text[end + 1] != ' ')) {
      return std::nullopt;
    }
    parsed.key = text.substr(parsed.column, end - parsed.column);
    return parsed;
  };
  const auto is_comment = [](const std::string& line) {
    const std::size_t at = line.find_first_not_of(' ');
    return at != std::string::npos && line[at] == '#';
  };

  struct Open {
    std::size_t column;
    std::string path;
    bool sequence = false;
  };
  std::vector<Open> open;
  std::map<std::string, DocumentedKey> keys;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::optional<Parsed> parsed = parse(lines[i]);
    if (!parsed) continue;
    while (!open.empty() && open.back().column >= parsed->column) open.pop_back();
    std::string path = parsed->key;
    if (!open.empty()) {
      open.back().sequence = open.back().sequence || parsed->item;
      path = open.back().path + (open.back().sequence ? "[]." : ".") + parsed->key;
    }
    open.push_back({parsed->column, path});
    DocumentedKey key{i + 1, {}};
    for (std::size_t j = i; j > 0 && is_comment(lines[j - 1]) && !parse(lines[j - 1]); --j) {
      const std::string& line = lines[j - 1];
      key.doc = line.substr(line.find_first_not_of(" #")) + " " + key.doc;
    }
    keys.emplace(path, key);  // the first one documents it
  }
  return keys;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

TEST(Config, EveryKeyIsDocumentedInTheShippedFileWithItsDefaultAndRange) {
  const std::map<std::string, DocumentedKey> documented = keys_in_shipped_file();
  for (const KeyDoc& key : describe_keys()) {
    const auto found = documented.find(key.path);
    if (found == documented.end()) {
      ADD_FAILURE() << key.path << " is not in config/shoal.yaml";
      continue;
    }
    if (key.section) continue;
    const std::string& doc = found->second.doc;
    EXPECT_NE(doc.find("Default: " + key.default_text + "."), std::string::npos)
        << key.path << " (line " << found->second.line << ") does not say \"Default: "
        << key.default_text << ".\": " << doc;
    EXPECT_NE(lower(doc).find(lower(key.range_text)), std::string::npos)
        << key.path << " (line " << found->second.line << ") does not say \"" << key.range_text
        << "\": " << doc;
  }
}

TEST(Config, EveryKeyInTheShippedFileIsKnown) {
  std::vector<std::string> known;
  for (const KeyDoc& key : describe_keys()) known.push_back(key.path);
  for (const auto& [path, key] : keys_in_shipped_file()) {
    EXPECT_NE(std::find(known.begin(), known.end(), path), known.end())
        << "config/shoal.yaml line " << key.line << ": " << path << " is not a key";
  }
}

TEST(Config, DescribeKeys) {
  const std::vector<KeyDoc> keys = describe_keys();
  const auto find = [&](const std::string& path) {
    const auto at = std::find_if(keys.begin(), keys.end(),
                                 [&](const KeyDoc& k) { return k.path == path; });
    return at == keys.end() ? KeyDoc{} : *at;
  };
  EXPECT_EQ(find("shards"), (KeyDoc{"shards", "auto", "auto or 1-1024", false,
                                    "event loops, each on its own thread", false}));
  EXPECT_EQ(find("listeners[].port").range_text, "0-65535");
  EXPECT_EQ(find("listeners[].port").default_text, "7000");
  EXPECT_EQ(find("listeners[].websocket.ping_interval").default_text, "30s");
  EXPECT_EQ(find("listeners[].websocket.ping_interval").range_text, "0-8760h");
  EXPECT_EQ(find("limits.max_connections").range_text, ">= 1");
  EXPECT_EQ(find("logging.format").range_text, "one of text, json");
  EXPECT_TRUE(find("logging").section);
  EXPECT_TRUE(find("logging").live);
  EXPECT_FALSE(find("listeners[].tls").live);  // turning it on or off
  EXPECT_TRUE(find("listeners[].tls.certificate").live);
  EXPECT_EQ(find("instance").default_text, "the host name");
  EXPECT_EQ(find("instance").range_text,
            "1-64 characters, each an ASCII letter, a digit or one of _ . : -");
  EXPECT_FALSE(find("instance").live);
  EXPECT_EQ(find("listeners[].websocket.http_echo").default_text, "true");
  EXPECT_EQ(find("listeners[].websocket.max_body_bytes").default_text, "65536");
  EXPECT_EQ(find("listeners[].websocket.max_body_bytes").range_text, "0-67108864");
  EXPECT_TRUE(find("listeners[].websocket.controls").section);
  EXPECT_FALSE(find("listeners[].websocket.controls").live);
  EXPECT_EQ(find("listeners[].websocket.controls.enabled").default_text, "true");
  EXPECT_EQ(find("listeners[].websocket.controls.max_delay").default_text, "10s");
  EXPECT_EQ(find("listeners[].websocket.controls.max_delay").range_text, "0-1h");
  EXPECT_EQ(find("listeners[].websocket.controls.max_size").default_text, "1048576");
  EXPECT_EQ(find("listeners[].websocket.controls.max_size").range_text, "0-67108864");
  EXPECT_FALSE(find("listeners[].websocket.controls.max_size").live);
  EXPECT_TRUE(find("listeners[].pubsub").section);
  EXPECT_FALSE(find("listeners[].pubsub").live);
  EXPECT_EQ(find("listeners[].pubsub.echo_to_sender").default_text, "false");
  EXPECT_EQ(find("listeners[].pubsub.max_queued_bytes").default_text, "1048576");
  EXPECT_EQ(find("listeners[].pubsub.max_queued_bytes").range_text, "1024-1073741824");
  EXPECT_EQ(find("listeners[].pubsub.slow_consumer").default_text, "close");
  EXPECT_EQ(find("listeners[].pubsub.slow_consumer").range_text, "one of close, drop");
  EXPECT_EQ(find("listeners[].pubsub.redis").default_text, "none");
  EXPECT_EQ(find("listeners[].pubsub.redis").range_text, "redis://HOST:PORT, or empty for none");
  EXPECT_EQ(find("listeners[].pubsub.redis_required").default_text, "false");
  EXPECT_EQ(find("listeners[].protocol").range_text,
            "one of tcp-echo, websocket-echo, websocket-pubsub");
  for (const KeyDoc& key : keys) {
    EXPECT_FALSE(key.doc.empty()) << key.path;
    EXPECT_EQ(std::count_if(keys.begin(), keys.end(),
                            [&](const KeyDoc& k) { return k.path == key.path; }),
              1)
        << key.path;
  }
}

// What Server::apply_reload applies on SIGHUP: the limits, the timeouts,
// logging, and the TLS files and settings.
TEST(ConfigReload, LiveChangesNeedNoRestart) {
  const Config running;
  Config next = running;
  next.limits.max_connections = 5;
  next.limits.on_insufficient = OnInsufficient::fail;
  next.logging.level = "debug";
  next.logging.format = LogFormat::json;
  next.shutdown.drain_timeout = 1s;
  for (ListenerConfig& l : next.listeners) {
    l.max_connections = 1;
    l.max_connections_per_ip = 2;
    l.max_new_connections_per_second = 3;
    l.new_connections_burst = 4;
    l.idle_timeout = 1s;
    l.write_timeout = 2s;
  }
  EXPECT_EQ(restart_required(running, next), std::vector<std::string>{});

  Config with_tls = running;
  with_tls.listeners[0].tls = TlsConfig{"a.pem", "a.key"};
  Config renewed = with_tls;
  renewed.listeners[0].tls = TlsConfig{"b.pem", "b.key", TlsVersion::tls1_3, 1s};
  EXPECT_EQ(restart_required(with_tls, renewed), std::vector<std::string>{});
}

TEST(ConfigReload, RestartOnlyChangesAreNamedPerKeyInConfigOrder) {
  const Config running;
  Config next = running;
  next.admin.port = 7071;
  next.limits.reserved_descriptors = 10;
  next.listeners[1].websocket.permessage_deflate.enabled = true;
  next.listeners[1].websocket.ping_interval = 5s;
  next.listeners[1].websocket.allowed_origins = {"https://example.com"};
  next.listeners[0].port = 7100;
  next.listeners[0].backlog = 10;
  next.sharding = Sharding::dispatch;
  next.cpu_affinity = true;
  next.shards = 4;
  next.logging.level = "debug";  // live: not named
  EXPECT_EQ(restart_required(running, next),
            (std::vector<std::string>{"shards", "cpu_affinity", "sharding", "listeners[0].port",
                                      "listeners[0].backlog",
                                      "listeners[1].websocket.ping_interval",
                                      "listeners[1].websocket.allowed_origins",
                                      "listeners[1].websocket.permessage_deflate.enabled",
                                      "limits.reserved_descriptors", "admin.port"}));
  Config renamed = running;
  renamed.listeners[1].name = "wss";
  renamed.listeners[1].protocol = Protocol::tcp_echo;
  renamed.admin.address = "::1";
  EXPECT_EQ(restart_required(running, renamed),
            (std::vector<std::string>{"listeners[1].name", "listeners[1].protocol",
                                      "admin.address"}));
}

// Like the other websocket keys, sessions read these on their own shards;
// the instance name is in every answer and label from start-up on.
TEST(ConfigReload, InstanceHttpEchoAndControlsNeedARestart) {
  const Config running;
  Config next = running;
  next.instance = "edge-2";
  next.listeners[1].websocket.http_echo = false;
  next.listeners[1].websocket.max_body_bytes = 1;
  next.listeners[1].websocket.controls.enabled = false;
  next.listeners[1].websocket.controls.max_delay = 1s;
  next.listeners[1].websocket.controls.max_size = 2;
  EXPECT_EQ(restart_required(running, next),
            (std::vector<std::string>{"instance", "listeners[1].websocket.http_echo",
                                      "listeners[1].websocket.max_body_bytes",
                                      "listeners[1].websocket.controls.enabled",
                                      "listeners[1].websocket.controls.max_delay",
                                      "listeners[1].websocket.controls.max_size"}));
  EXPECT_EQ(apply_live(running, next), running);
  // From a file, as a SIGHUP reads it.
  EXPECT_EQ(restart_required(running, parse_config("instance: edge-2\n")),
            std::vector<std::string>{"instance"});
}

TEST(ConfigReload, ListenerCountChangeIsReportedOnce) {
  const Config running;
  Config next = running;
  next.listeners.pop_back();
  next.listeners[0].port = 7100;  // not compared once the count differs
  next.shards = 2;
  next.admin.port = 0;
  EXPECT_EQ(restart_required(running, next),
            (std::vector<std::string>{"shards", "listeners (added or removed)", "admin.port"}));
}

TEST(ConfigReload, TlsTurnedOnOrOff) {
  const Config plain;
  Config with_tls = plain;
  with_tls.listeners[1].tls = TlsConfig{"c.pem", "k.pem"};
  EXPECT_EQ(restart_required(plain, with_tls),
            std::vector<std::string>{"listeners[1].tls (turned on)"});
  EXPECT_EQ(restart_required(with_tls, plain),
            std::vector<std::string>{"listeners[1].tls (turned off)"});
}

TEST(Config, DefaultListenersServeTcpAndWebSocketEchoSideBySide) {
  const Config config;
  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[0].name, "echo");
  EXPECT_EQ(config.listeners[0].protocol, Protocol::tcp_echo);
  EXPECT_EQ(config.listeners[0].address, "0.0.0.0");
  EXPECT_EQ(config.listeners[0].port, 7000);
  EXPECT_EQ(config.listeners[1].name, "ws");
  EXPECT_EQ(config.listeners[1].protocol, Protocol::websocket_echo);
  EXPECT_EQ(config.listeners[1].port, 7001);
  EXPECT_EQ(config.listeners[1].websocket.path, "/");
  EXPECT_FALSE(config.listeners[1].websocket.permessage_deflate.enabled);
  EXPECT_EQ(config.admin.address, "127.0.0.1");
  EXPECT_EQ(config.admin.port, 7070);
}

TEST(Config, WebSocketOptions) {
  const Config config = parse_config(R"(listeners:
  - name: ws
    protocol: websocket-echo
    port: 9001
    websocket:
      path: /echo
      max_message_bytes: 65536
      handshake_timeout: 2s
      ping_interval: 0
      allowed_origins: [https://example.com]
      subprotocols: [chat, echo]
      permessage_deflate: {enabled: true, server_max_window_bits: 10}
admin:
  port: 0
)");
  const WebSocketConfig& ws = config.listeners.at(0).websocket;
  EXPECT_EQ(ws.path, "/echo");
  EXPECT_EQ(ws.max_message_bytes, 65536u);
  EXPECT_EQ(ws.handshake_timeout, 2s);
  EXPECT_EQ(ws.ping_interval, 0s);
  EXPECT_EQ(ws.allowed_origins, std::vector<std::string>{"https://example.com"});
  EXPECT_EQ(ws.subprotocols, (std::vector<std::string>{"chat", "echo"}));
  EXPECT_TRUE(ws.permessage_deflate.enabled);
  EXPECT_EQ(ws.permessage_deflate.server_max_window_bits, 10);
  EXPECT_EQ(ws.permessage_deflate.client_max_window_bits, 15);
  EXPECT_EQ(config.admin.port, 0);
  EXPECT_EQ(parse_config(to_yaml(config)), config);
}

// HTTP echo and response controls (issue 18): on by default, so that a
// websocket-echo port answers curl as well as a WebSocket client.
TEST(Config, HttpEchoAndControlsDefaults) {
  const Config defaults;
  const WebSocketConfig& ws = defaults.listeners.at(1).websocket;
  EXPECT_TRUE(ws.http_echo);
  EXPECT_EQ(ws.max_body_bytes, 65536u);
  EXPECT_TRUE(ws.controls.enabled);
  EXPECT_EQ(ws.controls.max_delay, 10s);
  EXPECT_EQ(ws.controls.max_size, 1048576u);
  // The shipped file and a websocket map that leaves them out agree.
  const Config parsed = parse_config(
      "listeners:\n  - protocol: websocket-echo\n    websocket:\n      path: /\n"
      "      controls:\n");
  EXPECT_EQ(parsed.listeners.at(0).websocket, WebSocketConfig{});
}

TEST(Config, HttpEchoAndControls) {
  const Config config = parse_config(R"(listeners:
  - name: ws
    protocol: websocket-echo
    port: 9001
    websocket:
      http_echo: false
      max_body_bytes: 0
      controls:
        enabled: false
        max_delay: 250ms
        max_size: 67108864
  - name: wide
    protocol: websocket-echo
    port: 9002
    websocket: {max_body_bytes: 67108864, controls: {max_delay: 1h, max_size: 0}}
  - name: seconds
    protocol: websocket-echo
    port: 9003
    websocket: {controls: {max_delay: 3600}}
admin:
  port: 0
)");
  const WebSocketConfig& ws = config.listeners.at(0).websocket;
  EXPECT_FALSE(ws.http_echo);
  EXPECT_EQ(ws.max_body_bytes, 0u);
  EXPECT_FALSE(ws.controls.enabled);
  EXPECT_EQ(ws.controls.max_delay, 250ms);
  EXPECT_EQ(ws.controls.max_size, 67108864u);
  const WebSocketConfig& wide = config.listeners.at(1).websocket;
  EXPECT_TRUE(wide.http_echo);
  EXPECT_EQ(wide.max_body_bytes, 67108864u);
  EXPECT_TRUE(wide.controls.enabled);  // the keys left out keep their defaults
  EXPECT_EQ(wide.controls.max_delay, 1h);
  EXPECT_EQ(wide.controls.max_size, 0u);
  EXPECT_EQ(config.listeners.at(2).websocket.controls.max_delay, 1h);

  const std::string yaml = to_yaml(config);
  EXPECT_EQ(parse_config(yaml), config) << yaml;
  EXPECT_NE(yaml.find(R"(      http_echo: false
      max_body_bytes: 0
      controls:
        enabled: false
        max_delay: 250ms
        max_size: 67108864
)"),
            std::string::npos)
      << yaml;
}

TEST(ConfigError, HttpEchoAndControls) {
  const auto ws_error = [](const std::string& websocket_map) {
    return error_of("listeners:\n  - protocol: websocket-echo\n    websocket:\n" +
                    websocket_map);
  };
  EXPECT_EQ(ws_error("      http_echo: yes\n"),
            R"(listeners[0].websocket.http_echo: expected true or false, got "yes" (line 4, column 18))");
  EXPECT_EQ(ws_error("      http_echo:\n"),
            "listeners[0].websocket.http_echo: expected true or false, got null (line 4, column 7)");
  EXPECT_EQ(ws_error("      max_body_bytes: 67108865\n"),
            "listeners[0].websocket.max_body_bytes: 67108865 is out of range (0-67108864) "
            "(line 4, column 23)");
  EXPECT_EQ(ws_error("      max_body_bytes: -1\n"),
            "listeners[0].websocket.max_body_bytes: -1 is out of range (0-67108864) "
            "(line 4, column 23)");
  EXPECT_EQ(ws_error("      max_body_bytes: 64KiB\n"),
            R"(listeners[0].websocket.max_body_bytes: expected an integer, got "64KiB" (line 4, column 23))");
  EXPECT_EQ(ws_error("      controls: on\n"),
            "listeners[0].websocket.controls: expected a map (line 4, column 17)");
  EXPECT_EQ(ws_error("      controls:\n        max_dealy: 1s\n"),
            R"(listeners[0].websocket.controls.max_dealy: unknown key; did you mean "max_delay"? (line 5, column 9))");
  EXPECT_EQ(ws_error("      controls:\n        status: 200\n"),
            "listeners[0].websocket.controls.status: unknown key; known keys: enabled, "
            "max_delay, max_size (line 5, column 9)");
  EXPECT_EQ(ws_error("      controls:\n        enabled: 1\n"),
            R"(listeners[0].websocket.controls.enabled: expected true or false, got "1" (line 5, column 18))");
  EXPECT_EQ(ws_error("      controls:\n        max_delay: 61m\n"),
            "listeners[0].websocket.controls.max_delay: 61m is out of range (0-1h) "
            "(line 5, column 20)");
  EXPECT_EQ(ws_error("      controls:\n        max_delay: 3601\n"),
            "listeners[0].websocket.controls.max_delay: 3601 is out of range (0-1h) "
            "(line 5, column 20)");
  EXPECT_EQ(ws_error("      controls:\n        max_delay: 3600001ms\n"),
            "listeners[0].websocket.controls.max_delay: 3600001ms is out of range (0-1h) "
            "(line 5, column 20)");
  EXPECT_EQ(ws_error("      controls:\n        max_delay: 8761h\n"),
            "listeners[0].websocket.controls.max_delay: 8761h is out of range (0-1h) "
            "(line 5, column 20)");
  EXPECT_EQ(ws_error("      controls:\n        max_delay: 1.5s\n"),
            "listeners[0].websocket.controls.max_delay: expected a duration like 30s, 250ms, "
            R"(5m or 1h, got "1.5s" (line 5, column 20))");
  EXPECT_EQ(ws_error("      controls:\n        max_size: 67108865\n"),
            "listeners[0].websocket.controls.max_size: 67108865 is out of range (0-67108864) "
            "(line 5, column 19)");
  EXPECT_EQ(ws_error("      controls:\n        max_size: 1MiB\n"),
            R"(listeners[0].websocket.controls.max_size: expected an integer, got "1MiB" (line 5, column 19))");
  EXPECT_EQ(ws_error("      controls:\n        max_size: 1\n        max_size: 2\n"),
            "listeners[0].websocket.controls.max_size: key given twice (line 6, column 9)");
  // Only a WebSocket listener takes them, like every websocket key.
  EXPECT_EQ(error_of("listeners:\n  - websocket: {http_echo: false}\n"),
            "listeners[0].websocket: only a websocket-echo or websocket-pubsub listener takes "
            "websocket options (line 2, column 16)");
}

// Empty is the host name; anything else goes unescaped into a header, JSON
// and a Prometheus label.
TEST(Config, Instance) {
  EXPECT_EQ(Config{}.instance, "");
  EXPECT_EQ(parse_config("instance: edge-1\n").instance, "edge-1");
  EXPECT_EQ(parse_config("instance: A.b:c_d-9\n").instance, "A.b:c_d-9");
  EXPECT_EQ(parse_config("instance: " + std::string(64, 'x') + "\n").instance,
            std::string(64, 'x'));
  EXPECT_EQ(parse_config("instance: 1234\n").instance, "1234");
  EXPECT_EQ(parse_config("instance: \"\"\n"), Config{});
  EXPECT_EQ(parse_config("instance:\n"), Config{});

  Config named;
  named.instance = "eu-west-1a:shoal.3";
  EXPECT_EQ(effective_instance(named), "eu-west-1a:shoal.3");
  EXPECT_EQ(parse_config(to_yaml(named)), named);
  // Empty: the host name, the name HTTP echo gives as server.hostname.
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(effective_instance(Config{}), host[0] != '\0' ? std::string(host) : "shoald");
}

TEST(ConfigError, Instance) {
  EXPECT_EQ(error_of("instance: edge 1\n"),
            R"(instance: "edge 1" is not an instance name (1-64 characters, each an ASCII )"
            R"(letter, a digit or one of _ . : -) (line 1, column 11))");
  EXPECT_EQ(error_of("shards: 2\ninstance: " + std::string(65, 'x') + "\n"),
            "instance: \"" + std::string(65, 'x') +
                "\" is not an instance name (1-64 characters, each an ASCII letter, a digit or "
                "one of _ . : -) (line 2, column 11)");
  for (const char* bad : {"a/b", "\"a\\\"b\"", "caf\u00e9", "<x>", "a,b", "'x=1'"}) {
    const std::string error = error_of(std::string("instance: ") + bad + "\n");
    EXPECT_EQ(error.rfind("instance: ", 0), 0u) << bad << ": " << error;
    EXPECT_NE(error.find("is not an instance name"), std::string::npos) << bad << ": " << error;
    EXPECT_NE(error.find("(line 1, column 11)"), std::string::npos) << bad << ": " << error;
  }
  EXPECT_EQ(error_of("instance: \"a\\tb\"\n"),
            "instance: must not contain control characters (line 1, column 11)");
  EXPECT_EQ(error_of("instance: [a]\n"),
            "instance: expected a string, got a sequence (line 1, column 11)");
  EXPECT_EQ(error_of("instnce: a\n"),
            R"(instnce: unknown key; did you mean "instance"? (line 1, column 1))");
}

TEST(ConfigError, WebSocketOptionsOnATcpListener) {
  EXPECT_EQ(error_of("listeners:\n  - websocket:\n      path: /\n    protocol: tcp-echo\n"),
            "listeners[0].websocket: only a websocket-echo or websocket-pubsub listener takes "
            "websocket options (line 3, column 7)");
  EXPECT_EQ(error_of("listeners:\n  - protocol: websocket-echo\n    websocket: {path: echo}\n"),
            R"(listeners[0].websocket.path: "echo" is not a path (it must start with /) (line 3, column 23))");
  EXPECT_EQ(error_of("listeners:\n  - protocol: websocket-echo\n    websocket: {permessage_deflate: {server_max_window_bits: 16}}\n"),
            "listeners[0].websocket.permessage_deflate.server_max_window_bits: 16 is out of range (9-15) "
            "(line 3, column 62)");
}

TEST(Config, TlsOptions) {
  const Config config = parse_config(R"(listeners:
  - name: tls
    port: 7443
    tls:
      certificate: /etc/shoal/tls/chain.pem
      private_key: /etc/shoal/tls/key.pem
      min_version: 1.3
      ktls: off
      handshake_timeout: 2s
  - name: wss
    protocol: websocket-echo
    port: 7444
    tls: {certificate: c.pem, private_key: k.pem}
  - name: plain
    port: 7000
    tls:
admin:
  port: 0
)");
  ASSERT_TRUE(config.listeners.at(0).tls);
  const TlsConfig& tls = *config.listeners[0].tls;
  EXPECT_EQ(tls.certificate, "/etc/shoal/tls/chain.pem");
  EXPECT_EQ(tls.private_key, "/etc/shoal/tls/key.pem");
  EXPECT_EQ(tls.min_version, TlsVersion::tls1_3);
  EXPECT_EQ(tls.handshake_timeout, 2s);
  EXPECT_EQ(tls.ktls, KtlsMode::off);
  // Where the files were named, for errors found when they are loaded.
  EXPECT_EQ(tls.certificate_mark.text, " (line 5, column 20)");
  EXPECT_EQ(tls.private_key_mark.text, " (line 6, column 20)");

  ASSERT_TRUE(config.listeners.at(1).tls);
  EXPECT_EQ(config.listeners[1].tls->certificate, "c.pem");
  EXPECT_EQ(config.listeners[1].tls->min_version, TlsVersion::tls1_2);  // the default
  EXPECT_EQ(config.listeners[1].tls->handshake_timeout, 10s);
  EXPECT_EQ(config.listeners[1].tls->ktls, KtlsMode::auto_);  // the default
  // `tls:` left empty is no TLS, like any section whose keys are commented out.
  EXPECT_FALSE(config.listeners.at(2).tls);
  EXPECT_FALSE(Config{}.listeners[0].tls);

  // Round trip; the marks are not part of the value.
  EXPECT_EQ(parse_config(to_yaml(config)), config);
  const std::string yaml = to_yaml(config);
  EXPECT_NE(yaml.find(R"(    tls:
      certificate: /etc/shoal/tls/chain.pem
      private_key: /etc/shoal/tls/key.pem
      min_version: 1.3
      ktls: off
      handshake_timeout: 2s
)"),
            std::string::npos)
      << yaml;
  // A websocket-echo listener's is websocket.handshake_timeout: not written.
  EXPECT_NE(yaml.find(R"(    tls:
      certificate: c.pem
      private_key: k.pem
      min_version: 1.2
      ktls: auto
  - name: plain)"),
            std::string::npos)
      << yaml;
}

TEST(ConfigError, TlsOptions) {
  EXPECT_EQ(error_of("listeners:\n  - tls: {private_key: k.pem}\n"),
            "listeners[0].tls: certificate is required (a PEM file) (line 2, column 10)");
  EXPECT_EQ(error_of("listeners:\n  - tls: {}\n"),
            "listeners[0].tls: certificate is required (a PEM file) (line 2, column 10)");
  EXPECT_EQ(error_of("listeners:\n  - tls:\n      certificate: c.pem\n"),
            "listeners[0].tls: private_key is required (a PEM file) (line 3, column 7)");
  EXPECT_EQ(error_of("listeners:\n  - tls: {certificate: \"\", private_key: k.pem}\n"),
            "listeners[0].tls.certificate: must not be empty (line 2, column 24)");
  EXPECT_EQ(error_of("listeners:\n  - tls: {certificate: c, private_key: k, min_version: 1.1}\n"),
            R"(listeners[0].tls.min_version: "1.1" is not one of 1.2, 1.3 (line 2, column 56))");
  EXPECT_EQ(error_of("listeners:\n  - tls: {certificate: c, private_key: k, ktls: on}\n"),
            R"(listeners[0].tls.ktls: "on" is not one of auto, off (line 2, column 49))");
  EXPECT_EQ(error_of("listeners:\n  - tls: {certificate: c, private_key: k, handshake_timeout: soon}\n"),
            R"(listeners[0].tls.handshake_timeout: expected a duration like 30s, 250ms, 5m or 1h, got "soon" (line 2, column 62))");
  EXPECT_EQ(error_of("listeners:\n  - tls: {certifcate: c}\n"),
            R"(listeners[0].tls.certifcate: unknown key; did you mean "certificate"? (line 2, column 11))");
  EXPECT_EQ(error_of("listeners:\n  - tls: on\n"),
            "listeners[0].tls: expected a map (line 2, column 10)");
  // The protocol may come after the tls map.
  EXPECT_EQ(error_of("listeners:\n  - tls: {certificate: c, private_key: k, handshake_timeout: 1s}\n"
                     "    protocol: websocket-echo\n"),
            "listeners[0].tls.handshake_timeout: a websocket-echo listener's TLS handshake is "
            "covered by websocket.handshake_timeout (line 2, column 62)");
}

TEST(ConfigError, AdminPortCollidingWithAListener) {
  EXPECT_EQ(error_of("listeners:\n  - port: 7070\nadmin:\n  port: 7070\n"),
            R"(admin: 127.0.0.1:7070 is already used by listener "echo" (line 4, column 3))");
  EXPECT_EQ(error_of("listeners:\n  - port: 7070\n"),
            R"(admin: the default 127.0.0.1:7070 is already used by listener "echo"; set admin.port (0 turns it off))");
  EXPECT_EQ(error_of("admin:\n  port: 65536\n"),
            "admin.port: 65536 is not a port (0-65535) (line 2, column 9)");
}

TEST(Config, EmptyDocumentGivesDefaults) {
  EXPECT_EQ(parse_config(""), Config{});
  EXPECT_EQ(parse_config("~"), Config{});
  EXPECT_EQ(parse_config("null\n"), Config{});
  EXPECT_EQ(parse_config("# nothing but a comment\n"), Config{});
  EXPECT_EQ(parse_config("---\n"), Config{});
}

TEST(Config, EmptySectionsGiveDefaults) {
  EXPECT_EQ(parse_config("limits:\nshutdown:\nlogging:\n"), Config{});
  EXPECT_EQ(parse_config("limits: {}\n"), Config{});
}

TEST(Config, FullFile) {
  const Config config = parse_config(R"(shards: 8
cpu_affinity: true
sharding: dispatch
listeners:
  - name: public
    protocol: tcp-echo
    address: 0.0.0.0
    port: 7000
    backlog: 1024
    max_connections: 5000
    idle_timeout: 250ms
  - name: local6
    address: "::1"
    port: 7001
    idle_timeout: 2m
limits:
  max_connections: 20000
  reserved_descriptors: 128
  on_insufficient: fail
shutdown:
  drain_timeout: 45
logging:
  level: debug
  format: json
)");
  EXPECT_EQ(config.shards, 8u);
  EXPECT_TRUE(config.cpu_affinity);
  EXPECT_EQ(config.sharding, Sharding::dispatch);
  ASSERT_EQ(config.listeners.size(), 2u);

  const ListenerConfig& first = config.listeners[0];
  EXPECT_EQ(first.name, "public");
  EXPECT_EQ(first.protocol, Protocol::tcp_echo);
  EXPECT_EQ(first.address, "0.0.0.0");
  EXPECT_EQ(first.port, 7000);
  EXPECT_EQ(first.backlog, 1024);
  EXPECT_EQ(first.max_connections, 5000u);
  EXPECT_EQ(first.idle_timeout, 250ms);

  // Keys left out take the ListenerConfig defaults.
  const ListenerConfig& second = config.listeners[1];
  EXPECT_EQ(second.name, "local6");
  EXPECT_EQ(second.address, "::1");
  EXPECT_EQ(second.port, 7001);
  EXPECT_EQ(second.backlog, 4096);
  EXPECT_EQ(second.max_connections, 0u);
  EXPECT_EQ(second.idle_timeout, 2min);

  EXPECT_EQ(config.limits.max_connections, 20000u);
  EXPECT_EQ(config.limits.reserved_descriptors, 128u);
  EXPECT_EQ(config.limits.on_insufficient, OnInsufficient::fail);
  EXPECT_EQ(config.shutdown.drain_timeout, 45s);
  EXPECT_EQ(config.logging.level, "debug");
  EXPECT_EQ(config.logging.format, LogFormat::json);
}

TEST(Config, MissingKeysKeepDefaults) {
  Config expected;
  expected.logging.level = "warn";
  EXPECT_EQ(parse_config("logging:\n  level: warn\n"), expected);

  // A listeners list replaces the default listeners; each entry's missing
  // keys take the defaults.
  Config one_listener;
  one_listener.listeners = {ListenerConfig{}};
  one_listener.listeners[0].port = 0;
  EXPECT_EQ(parse_config("listeners:\n  - port: 0\n"), one_listener);
  one_listener.listeners[0].port = 7000;
  EXPECT_EQ(parse_config("listeners:\n  - {}\n"), one_listener);
}

TEST(Config, Shards) {
  EXPECT_EQ(parse_config("shards: auto").shards, 0u);
  EXPECT_EQ(parse_config("shards: 1").shards, 1u);
  EXPECT_EQ(parse_config("shards: 1024").shards, 1024u);
}

TEST(Config, Durations) {
  const auto drain = [](const std::string& text) {
    return parse_config("shutdown:\n  drain_timeout: " + text + "\n")
        .shutdown.drain_timeout;
  };
  EXPECT_EQ(drain("30s"), 30s);
  EXPECT_EQ(drain("250ms"), 250ms);
  EXPECT_EQ(drain("1500ms"), 1500ms);
  EXPECT_EQ(drain("5m"), 5min);
  EXPECT_EQ(drain("1h"), 1h);
  EXPECT_EQ(drain("90"), 90s);
  EXPECT_EQ(drain("0"), 0ms);
  EXPECT_EQ(drain("8760h"), 8760h);
}

TEST(Config, FormatDuration) {
  EXPECT_EQ(format_duration(30000ms), "30s");
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(format_duration(5min), "5m");
  EXPECT_EQ(format_duration(90min), "90m");
  EXPECT_EQ(format_duration(2h), "2h");
  EXPECT_EQ(format_duration(61s), "61s");
  EXPECT_EQ(format_duration(1ms), "1ms");
}

TEST(Config, EnumNames) {
  EXPECT_EQ(to_string(Protocol::tcp_echo), "tcp-echo");
  EXPECT_EQ(to_string(Sharding::reuseport), "reuseport");
  EXPECT_EQ(to_string(Sharding::dispatch), "dispatch");
  EXPECT_EQ(to_string(OnInsufficient::warn), "warn");
  EXPECT_EQ(to_string(OnInsufficient::fail), "fail");
  EXPECT_EQ(to_string(LogFormat::text), "text");
  EXPECT_EQ(to_string(LogFormat::json), "json");
  EXPECT_EQ(to_string(Protocol::websocket_echo), "websocket-echo");
  EXPECT_EQ(to_string(TlsVersion::tls1_3), "1.3");
  EXPECT_EQ(to_string(Protocol::websocket_pubsub), "websocket-pubsub");
  EXPECT_EQ(to_string(SlowConsumer::close), "close");
  EXPECT_EQ(to_string(SlowConsumer::drop), "drop");
}

TEST(Config, ToYamlRoundTrips) {
  EXPECT_EQ(parse_config(to_yaml(Config{})), Config{});

  Config config;
  config.shards = 3;
  config.cpu_affinity = true;
  config.sharding = Sharding::dispatch;
  config.listeners[0].idle_timeout = 1500ms;
  config.listeners[0].max_connections = 18446744073709551615u;
  config.listeners[0].max_connections_per_ip = 18446744073709551615u;
  config.listeners[0].max_new_connections_per_second = 1'000'000;
  config.listeners[0].new_connections_burst = 7;
  // Names that are YAML keywords or syntax must come back as the same strings.
  for (const char* name : {"true", "null", "~", "123", "a: b", "#x", " x"}) {
    ListenerConfig listener;
    listener.name = name;
    listener.address = "::1";
    listener.port = static_cast<std::uint16_t>(8000 + config.listeners.size());
    config.listeners.push_back(listener);
  }
  config.listeners.back().address = "::";
  config.listeners.back().port = 9000;
  config.limits.max_connections = 1;
  config.limits.reserved_descriptors = 0;
  config.limits.on_insufficient = OnInsufficient::fail;
  config.shutdown.drain_timeout = 0ms;
  config.logging.level = "off";
  config.logging.format = LogFormat::json;
  const std::string yaml = to_yaml(config);
  EXPECT_EQ(parse_config(yaml), config) << yaml;
}

TEST(Config, ToYamlKeyOrderAndFormats) {
  EXPECT_EQ(to_yaml(Config{}), R"(instance: ""
shards: auto
cpu_affinity: false
sharding: reuseport
listeners:
  - name: echo
    protocol: tcp-echo
    address: 0.0.0.0
    port: 7000
    backlog: 4096
    max_connections: 0
    max_connections_per_ip: 0
    max_new_connections_per_second: 0
    new_connections_burst: 0
    idle_timeout: 5m
    write_timeout: 10s
    proxy_protocol: off
    proxy_trusted: ["127.0.0.0/8", "::1/128"]
  - name: ws
    protocol: websocket-echo
    address: 0.0.0.0
    port: 7001
    backlog: 4096
    max_connections: 0
    max_connections_per_ip: 0
    max_new_connections_per_second: 0
    new_connections_burst: 0
    idle_timeout: 5m
    proxy_protocol: off
    proxy_trusted: ["127.0.0.0/8", "::1/128"]
    websocket:
      path: /
      max_message_bytes: 1048576
      max_header_bytes: 8192
      handshake_timeout: 10s
      ping_interval: 30s
      pong_timeout: 10s
      write_timeout: 10s
      allowed_origins: []
      subprotocols: []
      permessage_deflate:
        enabled: false
        server_max_window_bits: 15
        client_max_window_bits: 15
      http_echo: true
      max_body_bytes: 65536
      controls:
        enabled: true
        max_delay: 10s
        max_size: 1048576
limits:
  max_connections: 1000000
  reserved_descriptors: 64
  on_insufficient: warn
shutdown:
  drain_timeout: 30s
  drain_spread: 10s
logging:
  level: info
  format: text
admin:
  address: 127.0.0.1
  port: 7070
)");
}

TEST(Config, ListenersThatDoNotConflict) {
  const Config config = parse_config(R"(listeners:
  - {name: a, address: 127.0.0.1, port: 7000}
  - {name: b, address: 127.0.0.1, port: 7001}
  - {name: c, address: 127.0.0.2, port: 7000}
  - {name: d, address: "::1", port: 7000}
  - {name: e, address: 0.0.0.0, port: 7002}
  - {name: f, address: "::1", port: 7002}
  - {name: g, address: 0.0.0.0, port: 0}
  - {name: h, address: 0.0.0.0, port: 0}
)");
  EXPECT_EQ(config.listeners.size(), 8u);
}

// Errors: each kind with its exact message.

TEST(ConfigError, WrongType) {
  EXPECT_EQ(
      error_of(R"(listeners:
  - name: echo
    port: abc
)"),
      R"(listeners[0].port: expected an integer, got "abc" (line 3, column 11))");
  EXPECT_EQ(
      error_of("cpu_affinity: yes\n"),
      R"(cpu_affinity: expected true or false, got "yes" (line 1, column 15))");
  EXPECT_EQ(error_of("limits: 5\n"),
            "limits: expected a map (line 1, column 9)");
  EXPECT_EQ(error_of("listeners: echo\n"),
            "listeners: expected a sequence (line 1, column 12)");
  EXPECT_EQ(error_of("listeners:\n  - echo\n"),
            "listeners[0]: expected a map (line 2, column 5)");
  EXPECT_EQ(
      error_of("shards: many\n"),
      R"(shards: expected an integer or auto, got "many" (line 1, column 9))");
  EXPECT_EQ(error_of("limits:\n  max_connections: [1]\n"),
            "limits.max_connections: expected an integer, got a sequence "
            "(line 2, column 20)");
  EXPECT_EQ(
      error_of("- shards\n"),
      "expected a map at the top level, got a sequence (line 1, column 1)");
}

TEST(ConfigError, PortOutOfRangeNamesFileLineAndColumn) {
  EXPECT_EQ(error_of(R"(shards: auto
listeners:
  - name: echo
    address: 0.0.0.0
    port: 7000
  - name: other
    address: 127.0.0.1
    # A port number has 16 bits.
    backlog: 128
    max_connections: 10
    idle_timeout: 1m
    port: 70000
)",
                     "shoal.yaml"),
            "shoal.yaml: listeners[1].port: 70000 is not a port (0-65535) "
            "(line 12, column 11)");
  EXPECT_EQ(
      error_of("listeners:\n  - port: -1\n"),
      "listeners[0].port: -1 is not a port (0-65535) (line 2, column 11)");
}

TEST(ConfigError, OutOfRange) {
  EXPECT_EQ(error_of("listeners:\n  - backlog: 0\n"),
            "listeners[0].backlog: 0 is out of range (1-1048576) "
            "(line 2, column 14)");
  EXPECT_EQ(error_of("shards: 0\n"),
            "shards: 0 is out of range (1-1024) (line 1, column 9)");
  EXPECT_EQ(error_of("shards: 1025\n"),
            "shards: 1025 is out of range (1-1024) (line 1, column 9)");
  EXPECT_EQ(error_of("limits:\n  max_connections: 0\n"),
            "limits.max_connections: 0 is out of range (>= 1) "
            "(line 2, column 20)");
  EXPECT_EQ(error_of("limits:\n  reserved_descriptors: 1000001\n"),
            "limits.reserved_descriptors: 1000001 is out of range "
            "(0-1000000) (line 2, column 25)");
  EXPECT_EQ(error_of("listeners:\n  - max_connections: 99999999999999999999\n"),
            "listeners[0].max_connections: 99999999999999999999 is out of "
            "range (>= 0) (line 2, column 22)");
}

TEST(Config, PerClientLimits) {
  const Config config = parse_config(R"(listeners:
  - name: public
    port: 7000
    max_connections_per_ip: 50
    max_new_connections_per_second: 200
    new_connections_burst: 1000
  - name: internal
    port: 7001
    max_new_connections_per_second: 20
)");
  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[0].max_connections_per_ip, 50u);
  EXPECT_EQ(config.listeners[0].max_new_connections_per_second, 200u);
  EXPECT_EQ(config.listeners[0].new_connections_burst, 1000u);
  // Off unless asked for: one address may stand for many clients.
  EXPECT_EQ(config.listeners[1].max_connections_per_ip, 0u);
  EXPECT_EQ(config.listeners[1].max_new_connections_per_second, 20u);
  EXPECT_EQ(config.listeners[1].new_connections_burst, 0u);  // the rate
}

TEST(ConfigError, PerClientLimits) {
  EXPECT_EQ(error_of("listeners:\n  - max_connections_per_ip: -1\n"),
            "listeners[0].max_connections_per_ip: -1 is out of range (>= 0) "
            "(line 2, column 29)");
  EXPECT_EQ(error_of("listeners:\n  - max_new_connections_per_second: 1000001\n"),
            "listeners[0].max_new_connections_per_second: 1000001 is out of "
            "range (0-1000000) (line 2, column 37)");
  EXPECT_EQ(error_of("listeners:\n  - max_new_connections_per_second: 10/s\n"),
            "listeners[0].max_new_connections_per_second: expected an integer, "
            "got \"10/s\" (line 2, column 37)");
  EXPECT_EQ(error_of("listeners:\n  - new_connections_burst: 2000000\n"),
            "listeners[0].new_connections_burst: 2000000 is out of range "
            "(0-1000000) (line 2, column 28)");
  // A burst without a rate would silently do nothing.
  EXPECT_EQ(error_of("listeners:\n  - port: 7000\n    new_connections_burst: 10\n"),
            "listeners[0].new_connections_burst: has no effect without "
            "max_new_connections_per_second (line 3, column 28)");
  // Stated as 0 alongside no rate is the default spelled out: fine.
  EXPECT_NO_THROW(parse_config("listeners:\n  - new_connections_burst: 0\n"));
}

TEST(ConfigError, TooManyListeners) {
  std::string yaml = "listeners: [";
  for (std::size_t i = 0; i <= kMaxListeners; ++i) yaml += "{},";
  yaml.back() = ']';
  EXPECT_EQ(error_of(yaml), "listeners: at most 65535 listeners, got 65536 (line 1, column 12)");
}

TEST(ConfigError, NotOneOf) {
  EXPECT_EQ(
      error_of(R"(shards: auto
cpu_affinity: false
sharding: foo
)"),
      R"(sharding: "foo" is not one of reuseport, dispatch (line 3, column 11))");
  EXPECT_EQ(
      error_of("limits:\n  on_insufficient: abort\n"),
      R"(limits.on_insufficient: "abort" is not one of warn, fail (line 2, column 20))");
  EXPECT_EQ(
      error_of("logging:\n  level: verbose\n"),
      R"(logging.level: "verbose" is not one of trace, debug, info, warn, error, critical, off (line 2, column 10))");
  EXPECT_EQ(
      error_of("logging:\n  format: xml\n"),
      R"(logging.format: "xml" is not one of text, json (line 2, column 11))");
  EXPECT_EQ(
      error_of("listeners:\n  - protocol: udp-echo\n"),
      R"(listeners[0].protocol: "udp-echo" is not one of tcp-echo, websocket-echo, )"
      R"(websocket-pubsub (line 2, column 15))");
}

TEST(ConfigError, UnknownKeyWithSuggestion) {
  EXPECT_EQ(
      error_of(R"(listeners:
  - name: echo
    address: 127.0.0.1
    prot: 7000
)"),
      R"(listeners[0].prot: unknown key; did you mean "port"? (line 4, column 5))");
  EXPECT_EQ(error_of("shard: 4\n"),
            R"(shard: unknown key; did you mean "shards"? (line 1, column 1))");
  EXPECT_EQ(
      error_of("logging:\n  lvl: info\n"),
      R"(logging.lvl: unknown key; did you mean "level"? (line 2, column 3))");
}

TEST(ConfigError, UnknownKeyWithoutSuggestion) {
  EXPECT_EQ(error_of(R"(listeners:
  - name: echo
    port: 7000
    zzzzz: 1
)"),
            "listeners[0].zzzzz: unknown key; known keys: name, protocol, "
            "address, port, backlog, max_connections, "
            "max_connections_per_ip, max_new_connections_per_second, "
            "new_connections_burst, idle_timeout, write_timeout, proxy_protocol, proxy_trusted, "
            "websocket, pubsub, tls "
            "(line 4, column 5)");
  EXPECT_EQ(error_of("shutdown:\n  grace: 5s\n"),
            "shutdown.grace: unknown key; known keys: drain_timeout, drain_spread "
            "(line 2, column 3)");
}

TEST(ConfigError, ListenerWriteTimeoutIsForTcpEchoOnly) {
  EXPECT_EQ(error_of("listeners:\n  - protocol: websocket-echo\n    write_timeout: 1s\n"),
            "listeners[0].write_timeout: a websocket-echo listener sets "
            "websocket.write_timeout instead (line 3, column 20)");
  const Config c = parse_config("listeners:\n  - write_timeout: 750ms\n");
  EXPECT_EQ(c.listeners[0].write_timeout, 750ms);
  EXPECT_EQ(parse_config(to_yaml(c)), c);
}

TEST(ConfigError, KeyGivenTwice) {
  EXPECT_EQ(error_of("shards: 1\nshards: 2\n"),
            "shards: key given twice (line 2, column 1)");
}

TEST(ConfigError, DuplicateAddressAndPort) {
  EXPECT_EQ(
      error_of(R"(listeners:
  - name: echo
    address: 127.0.0.1
    port: 7000
  - name: other
    address: 127.0.0.1
    port: 7001
    # Same address and port as "echo".
  - name: third
    address: 127.0.0.1
    port: 7000
)"),
      R"(listeners[2]: 127.0.0.1:7000 is already used by listener "echo" (line 9, column 5))");
  EXPECT_EQ(
      error_of(R"(listeners:
  - {name: a, address: "::1", port: 80}
  - {name: b, address: "0:0::1", port: 80}
)"),
      R"(listeners[1]: [0:0::1]:80 is already used by listener "a" on [::1]:80 (line 3, column 5))");
}

TEST(ConfigError, WildcardAddressConflicts) {
  EXPECT_EQ(
      error_of(R"(listeners:
  - name: any
    address: 0.0.0.0
    port: 7000
  - name: local
    address: 127.0.0.1
    port: 7000
)"),
      R"(listeners[1]: 127.0.0.1:7000 is already used by listener "any" on 0.0.0.0:7000 (line 5, column 5))");
  EXPECT_EQ(
      error_of(R"(listeners:
  - {name: local, address: 127.0.0.1, port: 7000}
  - {name: any, address: 0.0.0.0, port: 7000}
)"),
      R"(listeners[1]: 0.0.0.0:7000 is already used by listener "local" on 127.0.0.1:7000 (line 3, column 5))");
  EXPECT_EQ(
      error_of(R"(listeners:
  - {name: v6, address: "::", port: 7000}
  - {name: v4, address: 127.0.0.1, port: 7000}
)"),
      R"(listeners[1]: 127.0.0.1:7000 is already used by listener "v6" on [::]:7000 (line 3, column 5))");
}

TEST(ConfigError, DuplicateName) {
  EXPECT_EQ(
      error_of(R"(listeners:
  - name: echo
    port: 7000
  - name: echo
    port: 7001
)"),
      R"(listeners[1].name: "echo" is already used by listeners[0] (line 4, column 11))");
  // Two listeners without a name both get the default one.
  EXPECT_EQ(
      error_of("listeners:\n  - port: 7000\n  - port: 7001\n"),
      R"(listeners[1].name: "echo" is already used by listeners[0] (line 3, column 5))");
}

TEST(ConfigError, MalformedYaml) {
  EXPECT_EQ(error_of(R"(shards: 4
sharding: reuseport
logging: level: info
)"),
            "syntax error: illegal map value (line 3, column 15)");
  EXPECT_EQ(error_of(R"(listeners:
  - name: echo
   port: 7000
)",
                     "bad.yaml"),
            "bad.yaml: syntax error: end of sequence not found "
            "(line 3, column 4)");
  EXPECT_EQ(error_of("shards: *nowhere\n"),
            "syntax error: the referenced anchor is not defined "
            "(line 1, column 9)");
}

TEST(ConfigError, MoreThanOneDocument) {
  EXPECT_EQ(error_of("shards: 1\n---\nshards: 2\n"),
            "expected one YAML document, found 2 (line 3, column 1)");
}

// yaml-cpp 0.7's LoadAll() loops forever on these (found by fuzzing).
TEST(ConfigError, StrayFlowIndicatorIsASyntaxErrorNotAHang) {
  EXPECT_EQ(error_of(","), "syntax error: unexpected \",\" (line 1, column 1)");
  EXPECT_EQ(error_of("- a\n,\n- b\n"), "syntax error: unexpected \",\" (line 2, column 1)");
}

// Found by fuzzing: such a name loaded and was printed back as another.
TEST(ConfigError, StringsAreOneLineOfUtf8Text) {
  EXPECT_EQ(error_of("listeners:\n  - name: \"a\\0b\"\n"),
            "listeners[0].name: must not contain control characters (line 2, column 11)");
  EXPECT_EQ(error_of("listeners:\n  - name: a\xff" "b\n"),
            "listeners[0].name: must be UTF-8 text (line 2, column 11)");
  EXPECT_EQ(error_of("listeners:\n  - name: ws\n    protocol: websocket-echo\n"
                     "    websocket: {subprotocols: [\"chat\\tv2\"]}\n"),
            "listeners[0].websocket.subprotocols[0]: must not contain control characters "
            "(line 4, column 32)");
  EXPECT_EQ(parse_config("listeners:\n  - name: \u00e9cho\n").listeners.at(0).name, "\u00e9cho");
  // An error message shows such bytes escaped, and stays whole.
  EXPECT_EQ(error_of("\"\\x01\u00e9\": 1\n").substr(0, 23), "\"\\x01\u00e9\": unknown key; ");
  EXPECT_EQ(error_of("a: \"\\\x01\"\n"),
            "syntax error: unknown escape character: \\x01 (line 1, column 7)");
}

TEST(ConfigError, BadDuration) {
  EXPECT_EQ(error_of("shutdown:\n  drain_timeout: 1.5s\n"),
            "shutdown.drain_timeout: expected a duration like 30s, 250ms, 5m "
            R"(or 1h, got "1.5s" (line 2, column 18))");
  EXPECT_EQ(error_of("shutdown:\n  drain_timeout: -5s\n"),
            "shutdown.drain_timeout: expected a duration like 30s, 250ms, 5m "
            R"(or 1h, got "-5s" (line 2, column 18))");
  EXPECT_EQ(error_of("listeners:\n  - idle_timeout: 2d\n"),
            "listeners[0].idle_timeout: expected a duration like 30s, 250ms, "
            R"(5m or 1h, got "2d" (line 2, column 19))");
  EXPECT_EQ(error_of("shutdown:\n  drain_timeout: 5 s\n"),
            "shutdown.drain_timeout: expected a duration like 30s, 250ms, 5m "
            R"(or 1h, got "5 s" (line 2, column 18))");
  // An empty value points at its key.
  EXPECT_EQ(error_of("shutdown:\n  drain_timeout:\n"),
            "shutdown.drain_timeout: expected a duration like 30s, 250ms, 5m "
            "or 1h, got null (line 2, column 3)");
  EXPECT_EQ(error_of("shutdown:\n  drain_timeout: 8761h\n"),
            "shutdown.drain_timeout: 8761h is out of range (0-8760h) "
            "(line 2, column 18)");
}

TEST(ConfigError, BadAddress) {
  EXPECT_EQ(
      error_of("listeners:\n  - address: 999.1.1.1\n"),
      R"(listeners[0].address: "999.1.1.1" is not an IP address (line 2, column 14))");
  EXPECT_EQ(
      error_of("listeners:\n  - address: localhost\n"),
      R"(listeners[0].address: "localhost" is not an IP address (line 2, column 14))");
}

TEST(ConfigError, EmptyValues) {
  EXPECT_EQ(error_of("listeners:\n  - name: \"\"\n"),
            "listeners[0].name: must not be empty (line 2, column 11)");
  EXPECT_EQ(error_of("listeners: []\n"),
            "listeners: must list at least one listener (line 1, column 12)");
}

TEST(ConfigError, MissingFile) {
  EXPECT_EQ(
      file_error_of("/nonexistent/shoal.yaml"),
      R"(cannot read config file "/nonexistent/shoal.yaml": No such file or directory)");
  EXPECT_EQ(file_error_of(SHOAL_SOURCE_DIR "/config"),
            "cannot read config file \"" SHOAL_SOURCE_DIR
            "/config\": Is a directory");
}

TEST(ConfigError, FileErrorsNameTheFile) {
  const std::string path = testing::TempDir() + "config_test_bad.yaml";
  {
    std::ofstream out(path);
    out << "sharding: sideways\n";
  }
  EXPECT_EQ(
      file_error_of(path),
      path +
          R"(: sharding: "sideways" is not one of reuseport, dispatch (line 1, column 11))");
  std::remove(path.c_str());
}

TEST(ConfigError, OnlyConfigErrorEscapes) {
  for (const char* text : {"{{{", "[a, b]: 1", "? [a]\n: 1",
                           "shards: !!binary x", "listeners:\n  - [1]\n",
                           "\"\\xzz\"", "a: &x [*x]", "listeners:\n  -\n"}) {
    EXPECT_THROW(parse_config(text), ConfigError) << text;
  }
}

}  // namespace
}  // namespace shoal

namespace shoal {
namespace {

TEST(ConfigReload, ApplyLiveTakesTheLiveKeysAndKeepsTheRest) {
  const Config running;
  Config next;
  next.shards = 4;                                  // restart
  next.limits.max_connections = 5;                  // live
  next.shutdown.drain_spread = std::chrono::seconds(2);  // live
  next.listeners[0].port = 9999;                    // restart
  next.listeners[0].max_connections = 7;            // live
  next.listeners[1].websocket.ping_interval = std::chrono::seconds(1);  // restart
  next.listeners[1].idle_timeout = std::chrono::seconds(9);             // live

  const Config applied = apply_live(running, next);
  EXPECT_EQ(applied.shards, 0u);
  EXPECT_EQ(applied.limits.max_connections, 5u);
  EXPECT_EQ(applied.shutdown.drain_spread, std::chrono::seconds(2));
  EXPECT_EQ(applied.listeners[0].port, 7000);
  EXPECT_EQ(applied.listeners[0].max_connections, 7u);
  EXPECT_EQ(applied.listeners[1].websocket.ping_interval, std::chrono::seconds(30));
  EXPECT_EQ(applied.listeners[1].idle_timeout, std::chrono::seconds(9));
  // What was kept is exactly what restart_required names.
  EXPECT_EQ(restart_required(running, next),
            (std::vector<std::string>{"shards", "listeners[0].port",
                                      "listeners[1].websocket.ping_interval"}));
  EXPECT_TRUE(restart_required(applied, next) == restart_required(running, next));

  // Listeners added: none of the listener keys apply, the others still do.
  Config more = next;
  more.listeners.push_back(more.listeners[0]);
  more.listeners.back().name = "third";
  more.listeners.back().port = 7002;
  const Config kept = apply_live(running, more);
  EXPECT_EQ(kept.listeners, running.listeners);
  EXPECT_EQ(kept.limits.max_connections, 5u);
}

}  // namespace
}  // namespace shoal

// websocket-pubsub listeners (issue 20): the `pubsub:` map beside the
// `websocket:` one.
namespace shoal {
namespace {

using namespace std::chrono_literals;

std::string pubsub_error(const std::string& pubsub_map) {
  return error_of("listeners:\n  - protocol: websocket-pubsub\n    pubsub:\n" + pubsub_map);
}

std::string redis_error(const std::string& url) {
  return pubsub_error("      redis: " + url + "\n");
}

// A default Config plus a third listener that serves channels.
Config with_pubsub_listener() {
  Config config;
  ListenerConfig ps;
  ps.name = "ps";
  ps.protocol = Protocol::websocket_pubsub;
  ps.port = 7002;
  config.listeners.push_back(ps);
  return config;
}

TEST(Config, PubSubDefaults) {
  const PubSubConfig defaults;
  EXPECT_FALSE(defaults.echo_to_sender);
  EXPECT_EQ(defaults.max_queued_bytes, 1048576u);
  EXPECT_EQ(defaults.slow_consumer, SlowConsumer::close);
  EXPECT_EQ(defaults.redis, "");
  EXPECT_FALSE(defaults.redis_required);
  // Selected by name; the pubsub map left out, or left empty, is the defaults.
  for (const char* yaml : {"listeners:\n  - protocol: websocket-pubsub\n",
                           "listeners:\n  - protocol: websocket-pubsub\n    pubsub:\n",
                           "listeners:\n  - protocol: websocket-pubsub\n    pubsub: {}\n"}) {
    const ListenerConfig l = parse_config(yaml).listeners.at(0);
    EXPECT_EQ(l.protocol, Protocol::websocket_pubsub) << yaml;
    EXPECT_EQ(l.pubsub, PubSubConfig{}) << yaml;
    EXPECT_EQ(l.websocket, WebSocketConfig{}) << yaml;
  }
  // No default listener serves channels.
  for (const ListenerConfig& l : Config{}.listeners) EXPECT_NE(l.protocol, Protocol::websocket_pubsub);
}

TEST(Config, PubSubOptions) {
  const Config config = parse_config(R"(listeners:
  - name: rooms
    protocol: websocket-pubsub
    port: 7002
    max_connections_per_ip: 10
    proxy_protocol: v2
    websocket:
      path: /rooms
      max_message_bytes: 65536
      ping_interval: 20s
      write_timeout: 5s
      http_echo: false
    pubsub:
      echo_to_sender: true
      max_queued_bytes: 1024
      slow_consumer: drop
      redis: redis://10.0.0.5:6380
      redis_required: true
    tls: {certificate: c.pem, private_key: k.pem}
  - name: local
    protocol: websocket-pubsub
    port: 7003
    pubsub: {max_queued_bytes: 1073741824, redis: "redis://[::1]:6379"}
admin:
  port: 0
)");
  ASSERT_EQ(config.listeners.size(), 2u);
  const ListenerConfig& rooms = config.listeners[0];
  EXPECT_EQ(rooms.protocol, Protocol::websocket_pubsub);
  EXPECT_EQ(rooms.max_connections_per_ip, 10u);
  EXPECT_EQ(rooms.proxy_protocol, ProxyProtocol::v2);
  // The websocket map is the one a websocket-echo listener takes.
  EXPECT_EQ(rooms.websocket.path, "/rooms");
  EXPECT_EQ(rooms.websocket.max_message_bytes, 65536u);
  EXPECT_EQ(rooms.websocket.ping_interval, 20s);
  EXPECT_EQ(rooms.websocket.write_timeout, 5s);
  EXPECT_FALSE(rooms.websocket.http_echo);
  EXPECT_TRUE(rooms.pubsub.echo_to_sender);
  EXPECT_EQ(rooms.pubsub.max_queued_bytes, 1024u);
  EXPECT_EQ(rooms.pubsub.slow_consumer, SlowConsumer::drop);
  EXPECT_EQ(rooms.pubsub.redis, "redis://10.0.0.5:6380");
  EXPECT_TRUE(rooms.pubsub.redis_required);
  ASSERT_TRUE(rooms.tls);
  EXPECT_EQ(rooms.tls->certificate, "c.pem");
  // Keys left out keep their defaults.
  const PubSubConfig& local = config.listeners[1].pubsub;
  EXPECT_FALSE(local.echo_to_sender);
  EXPECT_EQ(local.max_queued_bytes, 1073741824u);
  EXPECT_EQ(local.slow_consumer, SlowConsumer::close);
  EXPECT_EQ(local.redis, "redis://[::1]:6379");
  EXPECT_FALSE(local.redis_required);
  EXPECT_EQ(parse_config(to_yaml(config)), config);
}

TEST(Config, RedisUrls) {
  for (const char* url : {"redis://127.0.0.1:6379", "redis://[::1]:6380",
                          "redis://[2001:db8::7]:1", "redis://localhost:6379",
                          "redis://cache-1.internal.example:65535", "redis://REDIS:6379"}) {
    const Config c = parse_config(std::string("listeners:\n  - protocol: websocket-pubsub\n"
                                              "    pubsub:\n      redis: \"") +
                                  url + "\"\n");
    EXPECT_EQ(c.listeners.at(0).pubsub.redis, url);
  }
  // Empty, written out, is none.
  EXPECT_EQ(parse_config("listeners:\n  - protocol: websocket-pubsub\n    pubsub:\n"
                         "      redis: \"\"\n")
                .listeners.at(0)
                .pubsub,
            PubSubConfig{});
}

TEST(Config, PubSubToYaml) {
  Config config = with_pubsub_listener();
  PubSubConfig& ps = config.listeners[2].pubsub;
  ps.echo_to_sender = true;
  ps.max_queued_bytes = 4096;
  ps.slow_consumer = SlowConsumer::drop;
  ps.redis = "redis://127.0.0.1:6379";
  ps.redis_required = true;
  config.listeners[2].websocket.path = "/ps";
  const std::string yaml = to_yaml(config);
  EXPECT_EQ(parse_config(yaml), config) << yaml;
  EXPECT_NE(yaml.find(R"(  - name: ps
    protocol: websocket-pubsub
    address: 0.0.0.0
    port: 7002
    backlog: 4096
    max_connections: 0
    max_connections_per_ip: 0
    max_new_connections_per_second: 0
    new_connections_burst: 0
    idle_timeout: 5m
    proxy_protocol: off
    proxy_trusted: ["127.0.0.0/8", "::1/128"]
    websocket:
      path: /ps
)"),
            std::string::npos)
      << yaml;
  EXPECT_NE(yaml.find(R"(        max_size: 1048576
    pubsub:
      echo_to_sender: true
      max_queued_bytes: 4096
      slow_consumer: drop
      redis: redis://127.0.0.1:6379
      redis_required: true
limits:
)"),
            std::string::npos)
      << yaml;
  // Only the pubsub listener gets a pubsub map, and only tcp-echo a
  // write_timeout of its own.
  EXPECT_EQ(yaml.find("pubsub:"), yaml.rfind("pubsub:")) << yaml;
  EXPECT_EQ(yaml.find("\n    write_timeout:"), yaml.rfind("\n    write_timeout:")) << yaml;

  // The defaults, as --print-config shows them.
  const std::string plain = to_yaml(with_pubsub_listener());
  EXPECT_NE(plain.find(R"(    pubsub:
      echo_to_sender: false
      max_queued_bytes: 1048576
      slow_consumer: close
      redis: ""
      redis_required: false
)"),
            std::string::npos)
      << plain;
  EXPECT_EQ(parse_config(plain), with_pubsub_listener());
}

// What a user gets who uncomments the example in the shipped file.
TEST(Config, ShippedPubSubExampleLoads) {
  std::ifstream in(SHOAL_SOURCE_DIR "/config/shoal.yaml");
  std::string yaml = "listeners:\n";
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line == "  # - name: pubsub") inside = true;
    if (!inside) continue;
    if (line.rfind("  #", 0) != 0) break;
    yaml += line.size() > 4 ? "  " + line.substr(4) + "\n" : "\n";
  }
  ASSERT_NE(yaml, "listeners:\n") << "no pubsub example in config/shoal.yaml";
  const Config config = parse_config(yaml);
  ASSERT_EQ(config.listeners.size(), 1u) << yaml;
  const ListenerConfig& l = config.listeners[0];
  EXPECT_EQ(l.name, "pubsub");
  EXPECT_EQ(l.protocol, Protocol::websocket_pubsub);
  EXPECT_EQ(l.port, 7002);
  EXPECT_EQ(l.websocket, WebSocketConfig{});
  PubSubConfig expected;
  expected.redis = "redis://127.0.0.1:6379";
  EXPECT_EQ(l.pubsub, expected);
}

TEST(ConfigError, PubSubOptions) {
  EXPECT_EQ(pubsub_error("      echo_to_sender: yes\n"),
            R"(listeners[0].pubsub.echo_to_sender: expected true or false, got "yes" (line 4, column 23))");
  EXPECT_EQ(pubsub_error("      max_queued_bytes: 1023\n"),
            "listeners[0].pubsub.max_queued_bytes: 1023 is out of range (1024-1073741824) "
            "(line 4, column 25)");
  EXPECT_EQ(pubsub_error("      max_queued_bytes: 1073741825\n"),
            "listeners[0].pubsub.max_queued_bytes: 1073741825 is out of range (1024-1073741824) "
            "(line 4, column 25)");
  EXPECT_EQ(pubsub_error("      max_queued_bytes: -1\n"),
            "listeners[0].pubsub.max_queued_bytes: -1 is out of range (1024-1073741824) "
            "(line 4, column 25)");
  EXPECT_EQ(pubsub_error("      max_queued_bytes: 1MiB\n"),
            R"(listeners[0].pubsub.max_queued_bytes: expected an integer, got "1MiB" (line 4, column 25))");
  EXPECT_EQ(pubsub_error("      slow_consumer: block\n"),
            R"(listeners[0].pubsub.slow_consumer: "block" is not one of close, drop (line 4, column 22))");
  EXPECT_EQ(pubsub_error("      slow_consumer:\n"),
            "listeners[0].pubsub.slow_consumer: expected one of close, drop, got null "
            "(line 4, column 7)");
  EXPECT_EQ(pubsub_error("      redis_required: 1\n"),
            R"(listeners[0].pubsub.redis_required: expected true or false, got "1" (line 4, column 23))");
  EXPECT_EQ(pubsub_error("      redis: [redis://h:1]\n"),
            "listeners[0].pubsub.redis: expected a string, got a sequence (line 4, column 14)");
  // Nothing to require: named at the key that asks, in either order.
  EXPECT_EQ(pubsub_error("      redis_required: true\n"),
            "listeners[0].pubsub.redis_required: true needs pubsub.redis (redis://HOST:PORT): "
            "there is no Redis to require (line 4, column 23)");
  EXPECT_EQ(pubsub_error("      redis_required: true\n      redis: \"\"\n"),
            "listeners[0].pubsub.redis_required: true needs pubsub.redis (redis://HOST:PORT): "
            "there is no Redis to require (line 4, column 23)");
  EXPECT_EQ(pubsub_error("      redis_required: false\n"), "<no error>");
  EXPECT_EQ(pubsub_error("      echo_to_self: true\n"),
            R"(listeners[0].pubsub.echo_to_self: unknown key; did you mean "echo_to_sender"? (line 4, column 7))");
  EXPECT_EQ(pubsub_error("      channel: news\n"),
            "listeners[0].pubsub.channel: unknown key; known keys: echo_to_sender, "
            "max_queued_bytes, slow_consumer, redis, redis_required (line 4, column 7)");
  EXPECT_EQ(pubsub_error("      slow_consumer: drop\n      slow_consumer: close\n"),
            "listeners[0].pubsub.slow_consumer: key given twice (line 5, column 7)");
  EXPECT_EQ(error_of("listeners:\n  - protocol: websocket-pubsub\n    pubsub: on\n"),
            "listeners[0].pubsub: expected a map (line 3, column 13)");
}

TEST(ConfigError, RedisUrl) {
  const auto bad = [](const std::string& url, const std::string& problem) {
    return "listeners[0].pubsub.redis: \"" + url + "\" is not a Redis URL: " + problem +
           " (line 4, column 14)";
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://h:6379", "it must start with redis://"},
      {"h:6379", "it must start with redis://"},
      {"REDIS://h:6379", "it must start with redis://"},
      {"rediss://h:6380", "TLS to Redis (rediss://) is not supported"},
      {"redis://h", "it has no :PORT after the host"},
      {"redis://", "it has no :PORT after the host"},
      {"redis://:6379", "the host is empty"},
      {"redis://h:", R"(port "" is not 1-65535)"},
      {"redis://h:0", R"(port "0" is not 1-65535)"},
      {"redis://h:65536", R"(port "65536" is not 1-65535)"},
      {"redis://h:-1", R"(port "-1" is not 1-65535)"},
      {"redis://h:+1", R"(port "+1" is not 1-65535)"},
      {"redis://h:x", R"(port "x" is not 1-65535)"},
      {"redis://u:secret@h:6379", "credentials (USER:PASSWORD@) are not supported"},
      {"redis://h:6379/0", "nothing may follow HOST:PORT (no database or path)"},
      {"redis://h:6379?db=1", "nothing may follow HOST:PORT (no database or path)"},
      {"redis://::1:6379", "an IPv6 address must be in brackets: redis://[::1]:PORT"},
      {"redis://[::1:6379", "the [ of an IPv6 address has no ]"},
      {"redis://[::1]", "it has no :PORT after the host"},
      {"redis://[::1]6379", "it has no :PORT after the host"},
      {"redis://[]:6379", R"("" is not an IPv6 address)"},
      {"redis://[10.0.0.1]:6379", R"("10.0.0.1" is not an IPv6 address)"},
      {"redis://999.1.1.1:6379", R"("999.1.1.1" is not an IPv4 address)"},
      {"redis://6379:6379", R"("6379" is not an IPv4 address)"},
      {"redis://-h:6379", R"("-h" is not a host name or IP address)"},
      {"redis://h-:6379", R"("h-" is not a host name or IP address)"},
      {"redis://a..b:6379", R"("a..b" is not a host name or IP address)"},
      {"redis://.h:6379", R"(".h" is not a host name or IP address)"},
      {"redis://h_1:6379", R"("h_1" is not a host name or IP address)"},
      {"redis://h 1:6379", R"("h 1" is not a host name or IP address)"},
      {"redis://" + std::string(64, 'a') + ":6379",
       "\"" + std::string(64, 'a') + "\" is not a host name or IP address"},
  };
  for (const auto& [url, problem] : cases) {
    EXPECT_EQ(redis_error("\"" + url + "\""), bad(url, problem)) << url;
  }
  // Plain (unquoted) YAML reads the same.
  EXPECT_EQ(redis_error("redis://h"), bad("redis://h", "it has no :PORT after the host"));
}

TEST(ConfigError, PubSubMapOnlyOnAPubSubListener) {
  EXPECT_EQ(error_of("listeners:\n  - pubsub: {echo_to_sender: true}\n"),
            "listeners[0].pubsub: only a websocket-pubsub listener takes pubsub options "
            "(line 2, column 13)");
  // The protocol may come after the map; an empty map is still one.
  EXPECT_EQ(error_of("listeners:\n  - pubsub:\n      redis: redis://h:1\n"
                     "    protocol: websocket-echo\n"),
            "listeners[0].pubsub: only a websocket-pubsub listener takes pubsub options "
            "(line 3, column 7)");
  EXPECT_EQ(error_of("listeners:\n  - pubsub:\n    port: 7100\n"),
            "listeners[0].pubsub: only a websocket-pubsub listener takes pubsub options "
            "(line 2, column 5)");
  // As on websocket-echo: the websocket map's timeouts, not the listener's
  // or the TLS map's.
  EXPECT_EQ(error_of("listeners:\n  - protocol: websocket-pubsub\n    write_timeout: 1s\n"),
            "listeners[0].write_timeout: a websocket-pubsub listener sets "
            "websocket.write_timeout instead (line 3, column 20)");
  EXPECT_EQ(error_of("listeners:\n  - protocol: websocket-pubsub\n"
                     "    tls: {certificate: c, private_key: k, handshake_timeout: 1s}\n"),
            "listeners[0].tls.handshake_timeout: a websocket-pubsub listener's TLS handshake is "
            "covered by websocket.handshake_timeout (line 3, column 62)");
  // The websocket map's checks apply to a pubsub listener too.
  EXPECT_EQ(error_of("listeners:\n  - protocol: websocket-pubsub\n    websocket: {path: rooms}\n"),
            R"(listeners[0].websocket.path: "rooms" is not a path (it must start with /) (line 3, column 23))");
}

// The hub and the Redis link are built at start-up.
TEST(ConfigReload, PubSubKeysNeedARestart) {
  const Config running = with_pubsub_listener();
  Config next = running;
  PubSubConfig& ps = next.listeners[2].pubsub;
  ps.echo_to_sender = true;
  ps.max_queued_bytes = 2048;
  ps.slow_consumer = SlowConsumer::drop;
  ps.redis = "redis://127.0.0.1:6379";
  ps.redis_required = true;
  next.listeners[2].websocket.ping_interval = 1s;
  next.listeners[2].idle_timeout = 1s;  // live: not named
  EXPECT_EQ(restart_required(running, next),
            (std::vector<std::string>{"listeners[2].websocket.ping_interval",
                                      "listeners[2].pubsub.echo_to_sender",
                                      "listeners[2].pubsub.max_queued_bytes",
                                      "listeners[2].pubsub.slow_consumer",
                                      "listeners[2].pubsub.redis",
                                      "listeners[2].pubsub.redis_required"}));
  Config applied = running;
  applied.listeners[2].idle_timeout = 1s;
  EXPECT_EQ(apply_live(running, next), applied);
  // From files, as a SIGHUP reads them.
  const std::string base = "listeners:\n  - protocol: websocket-pubsub\n    pubsub:\n";
  EXPECT_EQ(restart_required(parse_config(base), parse_config(base + "      redis: redis://r:1\n")),
            std::vector<std::string>{"listeners[0].pubsub.redis"});
  // Turning a websocket-echo listener into a pubsub one.
  Config switched;
  switched.listeners[1].protocol = Protocol::websocket_pubsub;
  EXPECT_EQ(restart_required(Config{}, switched),
            std::vector<std::string>{"listeners[1].protocol"});
}

}  // namespace
}  // namespace shoal
