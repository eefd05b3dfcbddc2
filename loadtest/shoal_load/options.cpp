#include "options.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include <boost/program_options.hpp>
#include <yaml-cpp/yaml.h>

#include "pubsub.hpp"
#include "tls_client.hpp"

namespace shoal::load {

namespace po = boost::program_options;
namespace ip = boost::asio::ip;

namespace {

constexpr const char* usage_head =
    "Usage: shoal-load [OPTIONS] TARGET\n"
    "\n"
    "Drives a TCP or WebSocket echo server with many connections, checks every\n"
    "echoed byte, and reports throughput, latency percentiles and failures.\n"
    "\n"
    "TARGET is tcp://HOST:PORT or ws://HOST:PORT/PATH?QUERY, or over TLS\n"
    "tls://HOST:PORT or wss://HOST:PORT/PATH?QUERY (the server's certificate is verified\n"
    "against the system's trust store, or --ca FILE, unless --insecure; the TLS\n"
    "handshake counts as part of connecting). By default only loopback\n"
    "hosts (127.0.0.0/8, ::1, localhost) are accepted: a safety default so that a\n"
    "mistyped address never floods another machine (--allow-remote lifts it).\n"
    "\n"
    "Closed loop (default): every active connection keeps --pipeline messages in\n"
    "flight. Open loop (--rate M): M messages/s in total on a fixed schedule;\n"
    "latency is measured from each message's intended send time (as wrk2 does).\n"
    "\n"
    "A ws:// or wss:// target's path and query go into the upgrade request as\n"
    "written. When the query asks shoald's response controls for size=BYTES,\n"
    "delay=DURATION or close_after=N (close_code=CODE), every echo is checked\n"
    "for them too: exactly BYTES long, the message repeated or cut; no sooner\n"
    "than DURATION after its message was sent; the server's close (CODE, default\n"
    "1000) after exactly N echoes. The summary counts what was and was not as\n"
    "asked.\n"
    "\n"
    "Pubsub (--mode pubsub): against a websocket-pubsub listener. TARGET (or\n"
    "--subscribe-url / --publish-url, each repeatable) is ws:// or wss://\n"
    "HOST:PORT/PATH?channel=NAME. --subscribers S connections subscribe and\n"
    "--publishers P publish, spread over --channels K (NAME-0 .. NAME-(K-1) when\n"
    "K > 1); each publisher sends --rate messages/s (or as fast as its socket\n"
    "takes them), up to --messages each, for --duration. Every subscriber must\n"
    "get every message of its channel's publishers exactly once and in order;\n"
    "latency is publish to delivery.\n"
    "\n"
    "Durations take ms, s, m, h (a bare number is seconds); counts take k and m.\n"
    "Exit status: 0 all good; 1 an echoed byte differed; 2 fewer connections\n"
    "were established than asked; 3 other failures (connections lost, echoes\n"
    "missing); 4 the hard time limit was hit; 5 an echo or a close was not what\n"
    "the target URL's size=, delay= or close_after= asked; 6 pubsub: a delivery\n"
    "missing, duplicated, out of order or from another channel; 64 usage\n"
    "error; 130 interrupted.\n"
    "\n"
    "Ctrl-C once ends the traffic and reports; twice closes at once.\n";

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The scenario's keys become "--key=value" arguments, parsed after the
// command line so that the command line wins (program_options keeps the
// first value stored).
std::vector<std::string> scenario_args(const std::string& path, std::string& description) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw UsageError("scenario " + path + ": " + e.what());
  }
  if (!root.IsMap()) throw UsageError("scenario " + path + ": expected a map of option: value");
  std::vector<std::string> args;
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>();
    std::replace(key.begin(), key.end(), '_', '-');
    const YAML::Node& v = kv.second;
    if (key == "description") {
      description = v.as<std::string>();
      continue;
    }
    if (key == "text" || key == "binary") {
      if (v.as<bool>()) args.push_back("--payload=" + key);
      continue;
    }
    if (key == "insecure") {
      if (v.as<bool>()) args.push_back("--insecure");
      continue;
    }
    if (key == "quiet" || key == "allow-remote") {
      throw UsageError("scenario " + path + ": '" + key + "' is a command-line option only");
    }
    if (v.IsSequence()) {
      for (const auto& item : v) args.push_back("--" + key + "=" + item.as<std::string>());
    } else if (v.IsScalar()) {
      args.push_back("--" + key + "=" + v.as<std::string>());
    } else {
      throw UsageError("scenario " + path + ": '" + key + "' must be a value");
    }
  }
  return args;
}

std::vector<ip::address> parse_sources(const std::vector<std::string>& specs) {
  std::vector<ip::address> out;
  for (const auto& spec_all : specs) {
    std::size_t start = 0;
    while (start <= spec_all.size()) {
      const auto comma = spec_all.find(',', start);
      const std::string spec = spec_all.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? spec_all.size() + 1 : comma + 1;
      if (spec.empty() || spec == "auto") continue;
      const auto dash = spec.find('-');
      boost::system::error_code ec1, ec2;
      if (dash == std::string::npos) {
        auto a = ip::make_address(spec, ec1);
        if (ec1) throw UsageError("--source: '" + spec + "' is not an IP address");
        out.push_back(a);
        continue;
      }
      auto a = ip::make_address_v4(spec.substr(0, dash), ec1);
      auto b = ip::make_address_v4(spec.substr(dash + 1), ec2);
      if (ec1 || ec2 || b.to_uint() < a.to_uint() || b.to_uint() - a.to_uint() > 65535) {
        throw UsageError("--source: '" + spec + "' is not an IPv4 range A-B");
      }
      for (auto v = a.to_uint(); v <= b.to_uint(); ++v) out.emplace_back(ip::address_v4(v));
    }
  }
  return out;
}

}  // namespace

bool is_loopback(const ip::address& a) {
  if (a.is_v4()) return (a.to_v4().to_uint() >> 24) == 127;
  const auto v6 = a.to_v6();
  if (v6.is_loopback()) return true;
  return v6.is_v4_mapped() && (ip::make_address_v4(ip::v4_mapped, v6).to_uint() >> 24) == 127;
}

double parse_duration_s(const std::string& text) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (...) {
    throw UsageError("'" + text + "' is not a duration (e.g. 500ms, 10s, 2m)");
  }
  const std::string unit = lower(text.substr(used));
  double mult = 0;
  if (unit.empty() || unit == "s") mult = 1;
  else if (unit == "ms") mult = 1e-3;
  else if (unit == "us") mult = 1e-6;
  else if (unit == "m" || unit == "min") mult = 60;
  else if (unit == "h") mult = 3600;
  if (mult == 0 || !(v >= 0) || !std::isfinite(v)) {
    throw UsageError("'" + text + "' is not a duration (e.g. 500ms, 10s, 2m)");
  }
  return v * mult;
}

double parse_count(const std::string& text) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (...) {
    throw UsageError("'" + text + "' is not a number (e.g. 1000, 10k, 1.5m)");
  }
  const std::string unit = lower(text.substr(used));
  double mult = 0;
  if (unit.empty()) mult = 1;
  else if (unit == "k") mult = 1e3;
  else if (unit == "m") mult = 1e6;
  if (mult == 0 || !(v >= 0) || !std::isfinite(v)) {
    throw UsageError("'" + text + "' is not a number (e.g. 1000, 10k, 1.5m)");
  }
  return v * mult;
}

Target parse_target(const std::string& url) {
  Target t;
  t.url = url;
  std::string rest;
  const std::string scheme = lower(url.substr(0, url.find("://")));
  if (url.find("://") == std::string::npos ||
      (scheme != "tcp" && scheme != "tls" && scheme != "ws" && scheme != "wss")) {
    throw UsageError("target '" + url +
                     "': expected tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH");
  }
  t.proto = scheme == "ws" || scheme == "wss" ? Target::Proto::ws : Target::Proto::tcp;
  t.tls = scheme == "tls" || scheme == "wss";
  rest = url.substr(scheme.size() + 3);
  // The authority ends at the path or, with no path, at the query
  // ("ws://127.0.0.1:7001?delay=5ms" asks for "/?delay=5ms", as a browser's
  // WebSocket does).
  const auto slash = rest.find_first_of("/?#");
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) t.path = rest[slash] == '/' ? rest.substr(slash) : "/" + rest.substr(slash);
  if (t.proto == Target::Proto::tcp && slash != std::string::npos && t.path != "/") {
    throw UsageError("target " + url + ": a " + scheme + ":// target takes no path");
  }
  if (t.proto == Target::Proto::ws) {
    for (const char ch : t.path) {
      const auto u = static_cast<unsigned char>(ch);
      if (ch == '#') {
        throw UsageError("target " + url + ": a WebSocket URL has no fragment (#...); percent-encode a '#' as %23");
      }
      if (u <= 0x20 || u >= 0x7f) {
        throw UsageError("target " + url +
                         ": spaces, control characters and non-ASCII bytes cannot go on the request line; "
                         "percent-encode them");
      }
    }
    try {
      t.controls = parse_controls(t.path);
    } catch (const UsageError& e) {
      throw UsageError("target " + url + ": " + e.what());
    }
  }
  std::string host, port;
  if (!hostport.empty() && hostport.front() == '[') {
    const auto close = hostport.find(']');
    if (close == std::string::npos || close + 1 >= hostport.size() || hostport[close + 1] != ':') {
      throw UsageError("target " + url + ": expected [IPv6]:PORT");
    }
    host = hostport.substr(1, close - 1);
    port = hostport.substr(close + 2);
  } else {
    const auto colon = hostport.rfind(':');
    if (colon == std::string::npos) throw UsageError("target " + url + ": no port");
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  t.host = hostport;
  t.name = host;
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 1 || p > 65535) {
    throw UsageError("target " + url + ": '" + port + "' is not a port (1-65535)");
  }
  t.port = static_cast<std::uint16_t>(p);
  if (lower(host) == "localhost") {
    t.address = ip::make_address_v4("127.0.0.1");
  } else {
    boost::system::error_code ec;
    t.address = ip::make_address(host, ec);
    if (ec) {
      throw UsageError("target " + url + ": '" + host +
                       "' is not an IP address (host names other than localhost are not resolved)");
    }
  }
  return t;
}

std::string path_for_channel(const Target& t, const std::string& channel) {
  return t.path.substr(0, t.channel_at) + channel + t.path.substr(t.channel_at + t.channel_len);
}

namespace {

bool channel_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == ':' || c == '-';
}

// Finds channel=NAME in the query of a pubsub URL; returns NAME.
std::string find_channel(Target& t) {
  const auto q = t.path.find('?');
  if (q == std::string::npos) throw UsageError("--mode pubsub: " + t.url + " has no ?channel=NAME");
  std::size_t start = q + 1;
  std::string found;
  while (start <= t.path.size()) {
    auto amp = t.path.find('&', start);
    if (amp == std::string::npos) amp = t.path.size();
    if (t.path.compare(start, 8, "channel=") == 0 && start + 8 <= amp) {
      if (t.channel_at != std::string::npos) throw UsageError("--mode pubsub: " + t.url + " gives channel= twice");
      t.channel_at = start + 8;
      t.channel_len = amp - t.channel_at;
      found = t.path.substr(t.channel_at, t.channel_len);
    }
    start = amp + 1;
  }
  if (t.channel_at == std::string::npos) throw UsageError("--mode pubsub: " + t.url + " has no ?channel=NAME");
  // The server's rule; a value it would refuse with 400 is refused here,
  // since no connection could subscribe.
  if (found.empty() || found.size() > 64 || !std::all_of(found.begin(), found.end(), channel_char)) {
    throw UsageError("--mode pubsub: " + t.url + ": the channel must be 1-64 of A-Z a-z 0-9 _ . : -");
  }
  return found;
}

}  // namespace

double Options::derived_max_time_s() const {
  if (max_time_s > 0) return max_time_s;
  const double connect_s = static_cast<double>(connections) / (connect_rate > 0 ? connect_rate : 5000.0);
  const double settle = mode == Mode::pubsub ? pubsub.settle_s : 0.0;
  return connect_s + connect_timeout_s + settle + warmup_s + duration_s + timeout_s + hold_s + 30.0;
}

std::optional<Options> parse_options(int argc, char** argv) {
  po::options_description visible("Options");
  // Values are strings so that the scenario file and the command line go
  // through the same checks with the same messages.
  visible.add_options()
      ("help,h", "show this help")
      ("version", "show the version")
      ("mode", po::value<std::string>(), "echo (default) or pubsub (a websocket-pubsub listener: publishers and subscribers on channels)")
      ("subscribers", po::value<std::string>(), "pubsub: subscriber connections (default 1)")
      ("publishers", po::value<std::string>(), "pubsub: publisher connections (default: one per channel)")
      ("channels", po::value<std::string>(), "pubsub: channels, NAME-0 .. NAME-(K-1) when more than 1 (default 1)")
      ("subscribe-url", po::value<std::vector<std::string>>(), "pubsub: where subscribers connect (repeat: they take turns); default TARGET")
      ("publish-url", po::value<std::vector<std::string>>(), "pubsub: where publishers connect (repeat: they take turns); default TARGET")
      ("settle", po::value<std::string>(), "pubsub: wait between every connection up and the first message, for subscriptions to reach other instances (default 250ms)")
      ("scenario", po::value<std::string>(), "YAML file of options (loadtest/scenarios/); the command line overrides it")
      ("connections,c", po::value<std::string>(), "connections to open (default 1)")
      ("connect-rate", po::value<std::string>(), "new connections per second in total (default: as fast as allowed)")
      ("connect-concurrency", po::value<std::string>(), "connects in progress per thread (default 256)")
      ("source", po::value<std::vector<std::string>>(), "source addresses: A, A-B (IPv4 range) or a list; shoal-load then picks the source ports too. Default: auto (for loopback targets above 1,000 connections: 127.0.0.1, or several 127.0.0.x when one address has too few ports)")
      ("workers,w", po::value<std::string>(), "worker processes (default: enough that none holds more than --per-process sockets)")
      ("threads,t", po::value<std::string>(), "threads per worker (default 1)")
      ("per-process", po::value<std::string>(), "most sockets one worker holds (default 18000)")
      ("pipeline,p", po::value<std::string>(), "closed loop: messages in flight per connection (default 1)")
      ("rate,r", po::value<std::string>(), "open loop: messages per second in total (pubsub: per publisher)")
      ("size,s", po::value<std::string>(), "message size in bytes (default 64)")
      ("text", "WebSocket text messages (ASCII payload)")
      ("binary", "WebSocket binary messages (default)")
      ("active", po::value<std::string>(), "connections that send (default: all); the rest are held open")
      ("messages", po::value<std::string>(), "closed loop: each active connection sends this many messages in all, then stays open idle (pubsub: each publisher, with or without --rate) (default: no limit)")
      ("insecure,k", "tls://, wss://: accept the server's certificate unchecked (self-signed, expired, another name)")
      ("ca", po::value<std::string>(), "tls://, wss://: PEM file of the certificates to trust instead of the system's store")
      ("duration,d", po::value<std::string>(), "measured time (default 10s)")
      ("warmup", po::value<std::string>(), "traffic before measuring (default 0)")
      ("hold", po::value<std::string>(), "keep the connections open this long after the traffic (default 0)")
      ("connect-timeout", po::value<std::string>(), "deadline to connect (and upgrade) one connection (default 10s)")
      ("timeout", po::value<std::string>(), "an echo later than this is a timeout (default 5s)")
      ("max-time", po::value<std::string>(), "hard limit on the whole run (default: derived from the others)")
      ("json", po::value<std::string>(), "write the results as JSON")
      ("csv", po::value<std::string>(), "write the per-second series as CSV")
      ("report", po::value<std::string>(), "write a self-contained HTML report (inline SVG charts)")
      ("server-pid", po::value<std::vector<std::string>>(), "a server process on this host: sample its RSS and CPU (repeat or comma-separate for several)")
      ("quiet,q", "no live progress")
      ("allow-remote", "allow a target (and sources) outside loopback; not needed for local tests");
  po::options_description hidden;
  hidden.add_options()
      ("target", po::value<std::string>(), "")
      ("payload", po::value<std::string>(), "");
  po::options_description all;
  all.add(visible).add(hidden);
  po::positional_options_description pos;
  pos.add("target", 1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (vm.count("help")) {
    std::cout << usage_head << "\n" << visible << "\n";
    return std::nullopt;
  }
  if (vm.count("version")) {
    std::cout << "shoal-load 0.1.0\n";
    return std::nullopt;
  }

  Options o;
  o.scenario_name = "custom";
  bool cli_payload = vm.count("text") || vm.count("binary");
  if (vm.count("text") && vm.count("binary")) throw UsageError("--text and --binary exclude each other");
  if (vm.count("scenario")) {
    const std::string path = vm["scenario"].as<std::string>();
    if (!std::filesystem::exists(path)) throw UsageError("scenario " + path + ": no such file");
    o.scenario_name = std::filesystem::path(path).stem().string();
    auto args = scenario_args(path, o.scenario_description);
    try {
      po::store(po::command_line_parser(args).options(all).run(), vm);
    } catch (const po::error& e) {
      throw UsageError("scenario " + path + ": " + e.what());
    }
  }
  po::notify(vm);

  auto str = [&](const char* k) -> std::optional<std::string> {
    if (!vm.count(k)) return std::nullopt;
    return vm[k].as<std::string>();
  };
  auto count = [&](const char* k, double lo, double hi) -> std::optional<double> {
    auto s = str(k);
    if (!s) return std::nullopt;
    double v;
    try {
      v = parse_count(*s);
    } catch (const UsageError& e) {
      throw UsageError(std::string("--") + k + ": " + e.what());
    }
    if (v < lo || v > hi) {
      throw UsageError(std::string("--") + k + ": " + *s + " is out of range (" + std::to_string(static_cast<long long>(lo)) +
                       "-" + std::to_string(static_cast<long long>(hi)) + ")");
    }
    return v;
  };
  auto duration = [&](const char* k) -> std::optional<double> {
    auto s = str(k);
    if (!s) return std::nullopt;
    try {
      return parse_duration_s(*s);
    } catch (const UsageError& e) {
      throw UsageError(std::string("--") + k + ": " + e.what());
    }
  };

  if (auto m = str("mode")) {
    if (*m == "pubsub") o.mode = Mode::pubsub;
    else if (*m != "echo") throw UsageError("--mode: '" + *m + "' is not echo or pubsub");
  }
  const bool pubsub = o.mode == Mode::pubsub;
  if (!pubsub) {
    for (const char* k : {"subscribers", "publishers", "channels", "subscribe-url", "publish-url", "settle"}) {
      if (vm.count(k)) throw UsageError(std::string("--") + k + " is for --mode pubsub");
    }
  }
  o.allow_remote = vm.count("allow-remote") > 0;
  auto check_remote = [&](const Target& t) {
    if (!o.allow_remote && !is_loopback(t.address)) {
      throw UsageError("target " + t.url +
                       " is not a loopback address; shoal-load only contacts 127.0.0.0/8 and ::1 unless "
                       "--allow-remote is given (a safety default: load tests are for hosts you own)");
    }
  };
  auto target = str("target");
  if (!pubsub) {
    if (!target) throw UsageError("no target given (tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH)");
    o.target = parse_target(*target);
    check_remote(o.target);
  } else {
    PubSubOptions& ps = o.pubsub;
    for (const char* k : {"connections", "active", "pipeline"}) {
      if (vm.count(k)) throw UsageError(std::string("--") + k + " is for --mode echo; pubsub takes --subscribers and --publishers");
    }
    auto urls = [&](const char* k) {
      std::vector<Target> out;
      if (vm.count(k)) {
        for (const auto& u : vm[k].as<std::vector<std::string>>()) out.push_back(parse_target(u));
      } else if (target) {
        out.push_back(parse_target(*target));
      }
      if (out.empty()) throw UsageError(std::string("--mode pubsub: no target given (TARGET or --") + k + ")");
      if (out.size() > 64) throw UsageError(std::string("--") + k + ": at most 64 URLs");
      return out;
    };
    ps.subscribe = urls("subscribe-url");
    ps.publish = urls("publish-url");
    bool first = true;
    for (auto* list : {&ps.subscribe, &ps.publish}) {
      for (Target& t : *list) {
        if (t.proto != Target::Proto::ws) throw UsageError("--mode pubsub: " + t.url + " is not a ws:// or wss:// URL");
        if (t.controls.any()) {
          throw UsageError("--mode pubsub: " + t.url + ": size=, delay= and close_after= are echo controls");
        }
        check_remote(t);
        const std::string name = find_channel(t);
        if (first) {
          ps.channel = name;
          o.target = t;
          first = false;
        } else if (name != ps.channel) {
          throw UsageError("--mode pubsub: every URL must name the same channel (" + ps.channel + ", " + t.url + ")");
        } else if (t.tls != o.target.tls || t.address.is_v4() != o.target.address.is_v4()) {
          throw UsageError("--mode pubsub: " + t.url + ": every URL must be ws:// or every wss://, in one address family");
        }
      }
    }
    if (auto v = count("subscribers", 1, 10'000'000)) ps.subscribers = static_cast<std::uint64_t>(*v);
    if (auto v = count("channels", 1, 1'000'000)) ps.channels = static_cast<std::uint64_t>(*v);
    ps.publishers = ps.channels;
    if (auto v = count("publishers", 1, 1'000'000)) ps.publishers = static_cast<std::uint64_t>(*v);
    if (auto v = duration("settle")) ps.settle_s = *v;
    if (ps.channel_name(ps.channels - 1).size() > 64) {
      throw UsageError("--channels " + std::to_string(ps.channels) + ": the channel names " + ps.channel_name(0) +
                       " .. " + ps.channel_name(ps.channels - 1) + " pass the server's 64 bytes");
    }
    o.connections = ps.subscribers + ps.publishers;
  }

  if (auto v = count("connections", 1, 10'000'000)) o.connections = static_cast<std::uint64_t>(*v);
  if (auto v = count("connect-rate", 0, 1e9)) o.connect_rate = *v;
  if (auto v = count("connect-concurrency", 1, 1'000'000)) o.connect_concurrency = static_cast<unsigned>(*v);
  if (auto v = count("workers", 1, 256)) o.workers = static_cast<unsigned>(*v);
  if (auto v = count("threads", 1, 256)) o.threads = static_cast<unsigned>(*v);
  if (auto v = count("per-process", 1, 10'000'000)) o.per_process = static_cast<unsigned>(*v);
  if (auto v = count("pipeline", 1, 65536)) o.pipeline = static_cast<unsigned>(*v);
  if (auto v = count("rate", 0, 1e9)) o.rate = *v;
  if (auto v = count("size", 1, 16 * 1024 * 1024)) o.size = static_cast<std::size_t>(*v);
  if (auto v = count("active", 0, 1e9)) o.active = static_cast<std::uint64_t>(*v);
  if (auto v = count("messages", 0, 1e15)) o.messages = static_cast<std::uint64_t>(*v);
  if (auto v = duration("duration")) o.duration_s = *v;
  if (auto v = duration("warmup")) o.warmup_s = *v;
  if (auto v = duration("hold")) o.hold_s = *v;
  if (auto v = duration("connect-timeout")) o.connect_timeout_s = std::max(0.001, *v);
  if (auto v = duration("timeout")) o.timeout_s = std::max(0.001, *v);
  if (const auto& d = o.target.controls.delay_ns) {
    // An echo the server holds back on purpose is not late: the default
    // deadline moves past the delay, an explicit one must already be.
    const double delay_s = static_cast<double>(*d) / 1e9;
    if (!vm.count("timeout")) {
      o.timeout_s = std::max(o.timeout_s, delay_s + 5.0);
    } else if (o.timeout_s <= delay_s) {
      throw UsageError("--timeout " + vm["timeout"].as<std::string>() + " is not longer than the target's delay=" +
                       o.target.controls.delay_text + ": every echo would time out");
    }
  }
  if (auto v = duration("max-time")) o.max_time_s = *v;
  if (cli_payload) {
    o.text = vm.count("text") > 0;
  } else if (auto p = str("payload")) {
    o.text = *p == "text";
  }
  o.quiet = vm.count("quiet") > 0;
  if (auto v = str("json")) o.json_file = *v;
  if (auto v = str("csv")) o.csv_file = *v;
  if (auto v = str("report")) o.report_file = *v;
  if (vm.count("server-pid")) {
    for (const auto& s : vm["server-pid"].as<std::vector<std::string>>()) {
      std::size_t start = 0;
      while (start < s.size()) {
        auto comma = s.find(',', start);
        const std::string one = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        start = comma == std::string::npos ? s.size() : comma + 1;
        if (one.empty()) continue;
        char* end = nullptr;
        const long pid = std::strtol(one.c_str(), &end, 10);
        if (*end != '\0' || pid <= 0) throw UsageError("--server-pid: '" + one + "' is not a process id");
        if (!std::filesystem::exists("/proc/" + one + "/status")) {
          throw UsageError("--server-pid: no process " + one + " on this host");
        }
        o.server_pids.push_back(static_cast<pid_t>(pid));
      }
    }
  }
  if (vm.count("source")) o.sources = parse_sources(vm["source"].as<std::vector<std::string>>());
  for (const auto& s : o.sources) {
    if (s.is_v4() != o.target.address.is_v4()) {
      throw UsageError("--source " + s.to_string() + ": not the same address family as the target");
    }
    if (!o.allow_remote && !is_loopback(s)) {
      throw UsageError("--source " + s.to_string() + ": not a loopback address (see --allow-remote)");
    }
  }
  if (pubsub) {
    // The header: publisher, sequence and send time (pubsub.hpp).
    const std::size_t head = pubsub::header_size(o.text);
    if (o.size < head) {
      throw UsageError("--size " + std::to_string(o.size) + ": a pubsub message holds a " + std::to_string(head) +
                       "-byte header" + (o.text ? " (text: hex digits)" : ""));
    }
  } else {
    if (o.rate > 0 && o.active_count() == 0) throw UsageError("--rate needs at least one active connection");
    if (o.rate > 0 && o.messages > 0) throw UsageError("--messages is for the closed loop; --rate sets the open loop's total");
  }
  o.insecure = vm.count("insecure") > 0;
  if (auto v = str("ca")) o.ca_file = *v;
  if (!o.target.tls && (o.insecure || !o.ca_file.empty())) {
    throw UsageError(std::string(o.insecure ? "--insecure" : "--ca") + " is for tls:// and wss:// targets");
  }
  if (o.insecure && !o.ca_file.empty()) throw UsageError("--insecure and --ca exclude each other");
  if (!o.ca_file.empty()) {
    // Loaded here once, so that a bad file is a usage error before any
    // connection, not a handshake failure on every one.
    if (const std::string problem = check_ca_file(o.ca_file); !problem.empty()) {
      throw UsageError("--ca " + o.ca_file + ": " + problem);
    }
  }
  return o;
}

void plan(Options& o) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  // Each worker raises its soft limit to the hard one; keep room for its
  // pipes, epoll and timer descriptors.
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max > 256) {
    const auto cap = static_cast<unsigned>(std::min<rlim_t>(rl.rlim_max - 128, 100'000'000));
    if (o.per_process > cap) o.per_process = cap;
  }
  const auto needed = static_cast<unsigned>((o.connections + o.per_process - 1) / o.per_process);
  if (o.workers == 0) {
    o.workers = std::max(1u, needed);
  } else if (o.workers < needed) {
    std::cerr << "shoal-load: " << o.connections << " connections need " << needed
              << " worker processes (at most " << o.per_process << " sockets each); using " << needed << "\n";
    o.workers = needed;
  }

  // Ephemeral ports per source address. Half the range per address keeps
  // clear of the kernel's own picks for other programs.
  std::uint64_t lo = 32768, hi = 60999;
  if (std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range"); in) in >> lo >> hi;
  if (lo < 1024 || hi > 65535 || hi <= lo) lo = 32768, hi = 60999;
  o.port_lo = static_cast<std::uint16_t>(lo);
  o.port_hi = static_cast<std::uint16_t>(hi);
  const std::uint64_t per_source = std::max<std::uint64_t>(1, (hi - lo + 1) / 2);
  if (o.sources.empty()) {
    const std::uint64_t n = (o.connections + per_source - 1) / per_source;
    if (n > 1) {
      if (!o.target.address.is_v4()) {
        throw UsageError(std::to_string(o.connections) + " connections need " + std::to_string(n) +
                         " source addresses (" + std::to_string(per_source) +
                         " ports each), and IPv6 loopback has only ::1: use an IPv4 target");
      }
      if (!is_loopback(o.target.address)) {
        throw UsageError("more connections than one source address has ports: give --source");
      }
      for (std::uint64_t i = 1; i <= n; ++i) {
        o.sources.emplace_back(ip::address_v4((127u << 24) | static_cast<std::uint32_t>(i)));
      }
    } else if (is_loopback(o.target.address) && o.connections > 1000) {
      o.sources.push_back(o.target.address.is_v4() ? ip::address(ip::address_v4::loopback())
                                                   : ip::address(ip::address_v6::loopback()));
    }
  } else if (o.connections > 2 * per_source * o.sources.size()) {
    std::cerr << "shoal-load: warning: " << o.sources.size() << " source address(es) have about "
              << 2 * per_source * o.sources.size() << " ephemeral ports for " << o.connections << " connections\n";
  }
  o.explicit_ports = !o.sources.empty();
  o.port_offset = std::random_device{}() % 65536;
}

}  // namespace shoal::load
