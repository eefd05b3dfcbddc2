// Black-box tests of shoal-load: the built binary against the real shoald
// (plaintext, and TLS with a throwaway certificate the `openssl` command
// makes), the C yardstick, and small misbehaving servers run inside the
// test. Every server listens on 127.0.0.1 port 0; every run is short and
// bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "shoald_process.hpp"

namespace {

using namespace std::chrono_literals;
using shoal::test::RunResult;
using shoal::test::ShoaldProcess;
using shoal::test::run_command;
using shoal::test::run_program;
using shoal::test::write_temp_file;

// shoal-load with `args`, to its end (killed after `timeout`).
RunResult run_load(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 40s) {
  return run_program(SHOAL_LOAD_PATH, args, timeout);
}

std::string temp_path(const std::string& suffix) { return write_temp_file("", suffix); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::unique_ptr<ShoaldProcess> start_shoald(bool with_ws) {
  std::string yaml =
      "shards: 2\n"
      "listeners:\n"
      "  - name: echo\n"
      "    protocol: tcp-echo\n"
      "    address: 127.0.0.1\n"
      "    port: 0\n";
  if (with_ws) {
    yaml +=
        "  - name: ws\n"
        "    protocol: websocket-echo\n"
        "    address: 127.0.0.1\n"
        "    port: 0\n";
  }
  yaml += "admin:\n  port: 0\nshutdown:\n  drain_timeout: 1s\n";
  return std::make_unique<ShoaldProcess>(ShoaldProcess::Options{.yaml = yaml});
}

std::unique_ptr<ShoaldProcess> start_baseline() {
  return std::make_unique<ShoaldProcess>(ShoaldProcess::Options{
      .args = std::vector<std::string>{"-p", "0", "-w", "0", "-t", "2"},
      .binary = SHOAL_BASELINE_PATH});
}

std::string tcp_url(int port) { return "tcp://127.0.0.1:" + std::to_string(port); }
std::string ws_url(int port) { return "ws://127.0.0.1:" + std::to_string(port) + "/"; }

// A TCP "echo" server that misbehaves on every connection: it flips one bit
// of byte 100 of the stream, or it reads and never answers. shoal-load must
// notice either.
class BadEcho {
 public:
  enum class Fault { flip_byte_100, never_answer };
  explicit BadEcho(Fault fault) : fault_(fault) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 64) != 0) {
      throw std::runtime_error("bad echo server: bind/listen");
    }
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] {
      while (!stop_) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        std::lock_guard lock(mu_);
        sessions_.emplace_back([this, fd] { echo(fd); });
      }
    });
  }
  ~BadEcho() {
    stop_ = true;
    acceptor_.join();
    std::lock_guard lock(mu_);
    for (auto& t : sessions_) t.join();
    close(listen_fd_);
  }
  int port() const { return port_; }

 private:
  void echo(int fd) {
    std::uint64_t offset = 0;
    char buf[16384];
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (fault_ == Fault::never_answer) continue;
      if (offset <= 100 && offset + static_cast<std::uint64_t>(n) > 100) buf[100 - offset] ^= 0x01;
      offset += static_cast<std::uint64_t>(n);
      if (send(fd, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    close(fd);
  }
  Fault fault_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> sessions_;
};

// A port that refuses: bound, never listening.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~ClosedPort() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

void expect_documented_fields(const nlohmann::json& j) {
  for (const char* k : {"tool", "target", "protocol", "tls", "config", "ok", "exit_code", "connections",
                        "throughput", "messages", "latency", "connect_latency", "handshake_latency",
                        "tls_handshake_latency", "errors", "series", "latency_distribution", "client"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  for (const char* k : {"count", "p50_us", "p90_us", "p99_us", "p99_9_us", "p99_99_us", "max_us"}) {
    EXPECT_TRUE(j["latency"].contains(k)) << k;
  }
  for (const char* k : {"refused", "timeout", "reset", "closed", "bad_handshake", "tls", "ports_exhausted",
                        "fd_limit", "mismatch"}) {
    EXPECT_TRUE(j["errors"].contains(k)) << k;
  }
}

TEST(ShoalLoad, TcpEchoAgainstShoald) {
  auto server = start_shoald(false);
  const std::string json = temp_path(".json"), csv = temp_path(".csv"), html = temp_path(".html");
  const auto r = run_load({tcp_url(server->port("echo")), "-c", "200", "--pipeline", "4", "--duration",
                      "2s", "--json", json, "--csv", csv, "--report", html, "--server-pid",
                      std::to_string(server->pid())});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(json);
  expect_documented_fields(j);
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(j["connections"]["established"].get<int>(), 200);
  EXPECT_GT(j["throughput"]["msgs_per_s"].get<double>(), 0);
  EXPECT_GT(j["latency"]["count"].get<double>(), 0);
  EXPECT_GT(j["latency"]["p99_us"].get<double>(), 0);
  EXPECT_EQ(j["errors"]["mismatch"].get<int>(), 0);
  EXPECT_EQ(j["connect_latency"]["count"].get<int>(), 200);
  EXPECT_TRUE(j["server"].contains("bytes_per_connection"));
  // Private memory and the host kernel's share, sampled with RSS: the
  // server's RssAnon is never zero, and neither is the host's slab.
  EXPECT_GT(j["server"]["rss_anon_held_bytes"].get<double>(), 0);
  EXPECT_TRUE(j["server"]["anon_bytes_per_connection"].is_number());
  EXPECT_GT(j["server"]["kernel"]["slab_held_bytes"].get<double>(), 0);
  EXPECT_GE(j["server"]["kernel"]["tcp_inuse_held"].get<double>(), 200);  // our 200 at least, while held
  EXPECT_TRUE(j["server"]["under_load"]["anon_bytes_per_connection_median"].is_number());
  EXPECT_GE(j["series"].size(), 2u);
  std::ifstream csv_in(csv);
  std::string header;
  std::getline(csv_in, header);
  EXPECT_EQ(header.rfind("sec,phase,open,", 0), 0u) << header;
  std::stringstream html_text;
  html_text << std::ifstream(html).rdbuf();
  EXPECT_NE(html_text.str().find("<svg"), std::string::npos);
  EXPECT_NE(html_text.str().find("Latency distribution"), std::string::npos);
}

TEST(ShoalLoad, OpenLoopSendsAtTheRequestedRate) {
  auto server = start_shoald(false);
  const std::string json = temp_path(".json");
  const auto r = run_load({tcp_url(server->port("echo")), "-c", "20", "--rate", "4000", "--duration",
                      "2s", "--json", json, "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(json);
  const double sent = j["throughput"]["sent_msgs_per_s"].get<double>();
  EXPECT_NEAR(sent, 4000.0, 4000.0 * 0.05) << r.output;
  EXPECT_EQ(j["config"]["mode"], "open");
  EXPECT_GT(j["latency"]["count"].get<double>(), 7000);
}

TEST(ShoalLoad, CorruptingServerIsCaught) {
  BadEcho server(BadEcho::Fault::flip_byte_100);
  const std::string json = temp_path(".json");
  const auto r = run_load({tcp_url(server.port()), "-c", "4", "--pipeline", "2", "--duration", "1s",
                      "--json", json, "-q"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("mismatch"), std::string::npos) << r.output;
  const auto j = read_json(json);
  EXPECT_GE(j["errors"]["mismatch"].get<int>(), 4);
  EXPECT_FALSE(j["ok"].get<bool>());
}

// Late echoes are found while the run goes on, after the connect phase too
// (when only the active connections are checked), and end their connection:
// two active connections at 20 msgs/s for 2 s would send 40 messages; failed
// after 500 ms they send about 12. The idle ones are not counted as late.
TEST(ShoalLoad, UnansweredMessagesTimeOut) {
  BadEcho server(BadEcho::Fault::never_answer);
  const std::string json = temp_path(".json");
  const auto r = run_load({tcp_url(server.port()), "-c", "6", "--active", "2", "--rate", "20",
                      "--duration", "2s", "--timeout", "500ms", "--json", json, "-q"});
  EXPECT_EQ(r.exit_code, 3) << r.output;  // connections failed after being established
  const auto j = read_json(json);
  EXPECT_EQ(j["errors"]["timeout"].get<int>(), 2) << r.output;
  EXPECT_EQ(j["connections"]["established"].get<int>(), 6);
  EXPECT_LT(j["messages"]["sent"].get<int>(), 25) << r.output;
  EXPECT_FALSE(j["ok"].get<bool>());
}

TEST(ShoalLoad, ClosedPortIsRefused) {
  ClosedPort port;
  const std::string json = temp_path(".json");
  const auto r = run_load({tcp_url(port.port()), "-c", "5", "--duration", "1s", "--json", json, "-q"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  const auto j = read_json(json);
  EXPECT_EQ(j["errors"]["refused"].get<int>(), 5);
  EXPECT_EQ(j["connections"]["established"].get<int>(), 0);
}

TEST(ShoalLoad, WebSocketAgainstShoald) {
  auto server = start_shoald(true);
  const std::string json = temp_path(".json");
  const auto r = run_load({ws_url(server->port("ws")), "-c", "100", "--pipeline", "4", "--duration",
                      "2s", "--text", "--json", json, "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(json);
  EXPECT_EQ(j["protocol"], "websocket");
  EXPECT_EQ(j["connections"]["established"].get<int>(), 100);
  EXPECT_EQ(j["handshake_latency"]["count"].get<int>(), 100);
  EXPECT_GT(j["throughput"]["msgs_per_s"].get<double>(), 0);
  EXPECT_EQ(j["errors"]["mismatch"].get<int>(), 0);
}

TEST(ShoalLoad, BothProtocolsAgainstTheYardstick) {
  auto server = start_baseline();
  for (const auto& url : {tcp_url(server->port("tcp-echo")), ws_url(server->port("websocket-echo"))}) {
    const std::string json = temp_path(".json");
    // Explicit source addresses: shoal-load picks the source ports itself.
    const auto r = run_load({url, "-c", "100", "--pipeline", "8", "--size", "300", "--duration", "1s",
                        "--source", "127.0.0.1-127.0.0.2", "--json", json, "-q"});
    ASSERT_EQ(r.exit_code, 0) << url << "\n" << r.output;
    EXPECT_GT(read_json(json)["throughput"]["msgs_per_s"].get<double>(), 0);
  }
}

TEST(ShoalLoad, ScenarioWithOverrides) {
  auto server = start_shoald(false);
  const std::string json = temp_path(".json");
  const auto r = run_load({"--scenario", std::string(SHOAL_LOADTEST_DIR) + "/scenarios/echo-throughput.yaml",
                      tcp_url(server->port("echo")), "-c", "50", "--duration", "1s", "--warmup", "0", "--json", json,
                      "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(json);
  EXPECT_EQ(j["scenario"], "echo-throughput");
  EXPECT_EQ(j["config"]["connections"].get<int>(), 50);
  EXPECT_EQ(j["config"]["pipeline"].get<int>(), 16);  // from the file
}

// --- TLS: tls:// and wss:// ---------------------------------------------------

// A temporary directory with a self-signed certificate for 127.0.0.1 and
// localhost (EC P-256, as tests/tls_test.cpp makes them), removed at the end.
class SelfSigned {
 public:
  explicit SelfSigned(const std::string& cn = "shoal-load-test") {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/shoal-load-tls-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    const auto r = run_command("timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                               "-days 2 -subj /CN=" + cn + " -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
                               "-keyout '" + key() + "' -out '" + cert() + "' 2>&1");
    if (r.exit_code != 0) throw std::runtime_error("openssl req failed: " + r.output);
  }
  ~SelfSigned() { run_command("rm -rf '" + dir_ + "'"); }
  std::string cert() const { return dir_ + "/cert.pem"; }
  std::string key() const { return dir_ + "/key.pem"; }

 private:
  std::string dir_;
};

// shoald with a TLS echo listener "tls" and a wss listener "wss".
std::unique_ptr<ShoaldProcess> start_tls_shoald(const SelfSigned& c) {
  const std::string tls = "    tls:\n      certificate: " + c.cert() + "\n      private_key: " + c.key() + "\n";
  const std::string yaml = "shards: 2\nlisteners:\n" + shoal::test::loopback_listener("tls", "tcp-echo", tls) +
                           shoal::test::loopback_listener("wss", "websocket-echo", tls) +
                           "admin:\n  port: 0\nshutdown:\n  drain_timeout: 1s\n";
  return std::make_unique<ShoaldProcess>(ShoaldProcess::Options{.yaml = yaml});
}

std::string tls_url(int port) { return "tls://127.0.0.1:" + std::to_string(port); }
std::string wss_url(int port) { return "wss://127.0.0.1:" + std::to_string(port) + "/"; }

std::uint64_t error_total(const nlohmann::json& j) {
  std::uint64_t n = 0;
  for (const auto& [k, v] : j["errors"].items()) n += v.get<std::uint64_t>();
  return n;
}

// Every echo over TLS is checked as over plaintext: a TLS echo target and a
// wss target, closed loop with messages in flight, and open loop.
TEST(ShoalLoad, TlsEchoAndWssAgainstShoald) {
  SelfSigned cert;
  auto server = start_tls_shoald(cert);
  struct Case {
    std::string url;
    std::vector<std::string> args;
  };
  const std::vector<Case> cases = {
      {tls_url(server->port("tls")), {"-c", "50", "--pipeline", "8", "--size", "300", "--insecure"}},
      // Verified against the certificate itself, by name (SNI localhost).
      {"wss://localhost:" + std::to_string(server->port("wss")) + "/", {"-c", "50", "--pipeline", "8", "--ca", cert.cert()}},
      // Larger than a TLS record (16 KiB) and than one read: partial
      // writes and messages spread over several records.
      {wss_url(server->port("wss")), {"-c", "4", "--pipeline", "2", "--size", "100000", "--insecure", "-t", "2"}},
      {tls_url(server->port("tls")), {"-c", "20", "--rate", "2000", "--insecure"}},
  };
  for (const auto& c : cases) {
    const std::string json = temp_path(".json");
    std::vector<std::string> args = {c.url, "--duration", "1s", "--json", json, "-q"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const auto r = run_load(args);
    ASSERT_EQ(r.exit_code, 0) << c.url << "\n" << r.output;
    const auto j = read_json(json);
    expect_documented_fields(j);
    const int conns = std::stoi(c.args[1]);
    EXPECT_TRUE(j["tls"].get<bool>());
    EXPECT_EQ(j["connections"]["established"].get<int>(), conns) << c.url;
    EXPECT_EQ(j["tls_handshake_latency"]["count"].get<int>(), conns) << c.url;
    EXPECT_GT(j["messages"]["received"].get<std::uint64_t>(), 0u) << c.url;
    EXPECT_EQ(j["messages"]["received"], j["messages"]["sent"]) << c.url;
    EXPECT_EQ(j["messages"]["unanswered"].get<int>(), 0) << c.url;
    EXPECT_EQ(error_total(j), 0u) << c.url << "\n" << r.output;
  }
}

// A TLS echo server that is not shoald: Debian's Python (OpenSSL's own
// server code, with its default two session tickets under TLS 1.3) limited
// to `version` ("TLSv1_2" or "TLSv1_3"), printing the lines ShoaldProcess
// reads its port from.
std::unique_ptr<ShoaldProcess> start_python_tls_echo(const SelfSigned& c, const std::string& version) {
  static const char* script = R"py(
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, sys.argv[3])
listener = socket.create_server(("127.0.0.1", 0), backlog=128)
def echo(conn):
    try:
        with ctx.wrap_socket(conn, server_side=True) as s:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                s.sendall(data)
    except (OSError, ssl.SSLError):
        pass
print('listener "echo" (tcp-echo) listening on 127.0.0.1:%d' % listener.getsockname()[1], flush=True)
print("ready:", flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
)py";
  return std::make_unique<ShoaldProcess>(ShoaldProcess::Options{
      .args = std::vector<std::string>{"-c", script, c.cert(), c.key(), version}, .binary = "/usr/bin/python3"});
}

// A server that speaks only TLS 1.2 keeps shoal-load on OpenSSL's record
// layer, and one whose TLS 1.3 is OpenSSL's own (session tickets as it
// sends them) is followed after the hand-over: every echo checks out,
// messages of one record and of several.
TEST(ShoalLoad, TlsEchoAgainstAnotherServerInTls12AndTls13) {
  SelfSigned cert;
  for (const std::string version : {"TLSv1_2", "TLSv1_3"}) {
    auto server = start_python_tls_echo(cert, version);
    for (const std::string size : {"300", "40000"}) {
      const std::string json = temp_path(".json");
      const auto r = run_load({tls_url(server->port("echo")), "-c", "8", "--pipeline", "4", "--size", size,
                               "--duration", "1s", "--insecure", "--json", json, "-q"});
      ASSERT_EQ(r.exit_code, 0) << version << " " << size << "\n" << r.output;
      const auto j = read_json(json);
      EXPECT_EQ(j["connections"]["established"].get<int>(), 8) << version;
      EXPECT_GT(j["messages"]["received"].get<std::uint64_t>(), 0u) << version;
      EXPECT_EQ(j["messages"]["received"], j["messages"]["sent"]) << version;
      EXPECT_EQ(error_total(j), 0u) << version << " " << size << "\n" << r.output;
    }
  }
}

// --messages: each connection echoes exactly that many, then is held idle
// (how the bench measures idle TLS memory "after a handshake and one echo").
TEST(ShoalLoad, MessagesPerConnectionOverWss) {
  SelfSigned cert;
  auto server = start_tls_shoald(cert);
  const std::string json = temp_path(".json");
  const auto r = run_load({wss_url(server->port("wss")), "-c", "40", "--messages", "3", "--pipeline", "2",
                           "--duration", "1s", "--hold", "200ms", "--insecure", "--json", json, "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = read_json(json);
  EXPECT_EQ(j["messages"]["sent"].get<int>(), 120);
  EXPECT_EQ(j["messages"]["received"].get<int>(), 120);
  EXPECT_EQ(error_total(j), 0u);
}

// Without --insecure the server's certificate is checked: a self-signed one,
// or one the --ca file does not vouch for, fails every connection with a
// message that says why, and the run fails.
TEST(ShoalLoad, UnverifiableCertificateFailsClearly) {
  SelfSigned cert, other("someone-else");
  auto server = start_tls_shoald(cert);
  struct Case {
    std::string url;
    std::vector<std::string> extra;
  };
  const std::vector<Case> cases = {
      {tls_url(server->port("tls")), {}},  // the system's trust store
      {wss_url(server->port("wss")), {}},
      {tls_url(server->port("tls")), {"--ca", other.cert()}},
  };
  for (const auto& c : cases) {
    const std::string json = temp_path(".json");
    std::vector<std::string> args = {c.url, "-c", "3", "--duration", "500ms", "--json", json, "-q"};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    const auto r = run_load(args);
    EXPECT_EQ(r.exit_code, 2) << r.output;  // fewer connections than asked
    EXPECT_NE(r.output.find("tls handshake failed: certificate verify failed"), std::string::npos) << r.output;
    const auto j = read_json(json);
    EXPECT_EQ(j["errors"]["tls"].get<int>(), 3) << r.output;
    EXPECT_EQ(j["connections"]["established"].get<int>(), 0);
  }
  // The self-signed case names the cause.
  const auto r = run_load({tls_url(server->port("tls")), "-c", "1", "--duration", "0", "-q"});
  EXPECT_NE(r.output.find("(self-signed certificate)"), std::string::npos) << r.output;
}

// --- the target URL's path, query and response controls -------------------

// tests/controls_server.py: a WebSocket echo that does what size=, delay=
// and close_after= ask ("right"), gets each wrong ("wrong"), ignores them
// ("ignore") or corrupts the resized echoes ("corrupt"); its port is the
// listener "ws", and it prints "path: TARGET" for every upgrade.
std::unique_ptr<ShoaldProcess> start_controls_server(const std::string& mode) {
  return std::make_unique<ShoaldProcess>(ShoaldProcess::Options{
      .args = std::vector<std::string>{std::string(SHOAL_LOADTEST_DIR) + "/tests/controls_server.py", mode},
      .binary = "/usr/bin/python3"});
}

std::string ws_base(int port) { return "ws://127.0.0.1:" + std::to_string(port); }

// The upgrade asks for the URL's path and query byte for byte (nothing
// decoded or re-encoded), and for "/?QUERY" when the URL has a query but no
// path.
TEST(ShoalLoad, PathAndQueryReachTheServerAsWritten) {
  auto server = start_controls_server("ignore");
  for (const std::string target : {"/a%20b/c/?x=1&y=%2F&z&e=%C3%A9", "?x=2"}) {
    const auto r = run_load({ws_base(server->port("ws")) + target, "-c", "2", "--messages", "1", "--duration",
                             "200ms", "-q"});
    ASSERT_EQ(r.exit_code, 0) << target << "\n" << r.output;
    const std::string want = "path: " + std::string(target[0] == '?' ? "/" : "") + target + "\n";
    EXPECT_TRUE(server->wait_for_output(want, 5s)) << want << server->output();
  }
}

// shoald upgrades only on its websocket.path, whatever the query: the path
// shoal-load sends is the one in the URL.
TEST(ShoalLoad, PathDecidesTheUpgradeAtShoald) {
  const std::string yaml = "shards: 2\nlisteners:\n" +
                           shoal::test::loopback_listener("ws", "websocket-echo", "    websocket:\n      path: /echo\n") +
                           "admin:\n  port: 0\nshutdown:\n  drain_timeout: 1s\n";
  auto server = std::make_unique<ShoaldProcess>(ShoaldProcess::Options{.yaml = yaml});
  const std::string base = ws_base(server->port("ws"));
  auto r = run_load({base + "/echo?x=1", "-c", "3", "--messages", "2", "--duration", "200ms", "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const std::string wrong : {"/echo/?x=1", "/?echo", "/Echo"}) {
    r = run_load({base + wrong, "-c", "1", "--duration", "200ms", "-q"});
    EXPECT_EQ(r.exit_code, 2) << wrong << "\n" << r.output;
    EXPECT_NE(r.output.find("WebSocket upgrade: status 404"), std::string::npos) << wrong << "\n" << r.output;
  }
}

struct ControlRun {
  RunResult r;
  nlohmann::json j;
};

ControlRun run_controls(const std::string& url, std::vector<std::string> extra) {
  const std::string json = temp_path(".json");
  std::vector<std::string> args = {url, "--json", json, "-q"};
  args.insert(args.end(), extra.begin(), extra.end());
  ControlRun c;
  c.r = run_load(args);
  c.j = read_json(json);
  return c;
}

// A server that does what the controls ask: every echo is counted as asked,
// nothing as not, and the run passes; the close after N echoes is neither a
// failure nor leaves messages unanswered. Text and binary, an echo larger
// than the message (repeated) and smaller (cut).
TEST(ShoalLoad, ControlsDoneAsAskedAreCounted) {
  auto server = start_controls_server("right");
  struct Case {
    std::string query;
    std::string payload;
    std::uint64_t size;
  };
  for (const Case& k : {Case{"size=1000&delay=20ms&close_after=5&close_code=4001", "--text", 1000},
                        Case{"size=7&close_after=6", "--binary", 7}}) {
    const auto c = run_controls(ws_base(server->port("ws")) + "/?" + k.query,
                                {"-c", "4", "--pipeline", "2", "--size", "300", k.payload, "--duration", "1s"});
    ASSERT_EQ(c.r.exit_code, 0) << k.query << "\n" << c.r.output;
    const auto& ctl = c.j["controls"];
    const std::uint64_t received = c.j["messages"]["received"].get<std::uint64_t>();
    EXPECT_EQ(received, 4u * (k.query.find("close_after=5") != std::string::npos ? 5u : 6u)) << c.r.output;
    EXPECT_EQ(ctl["size"]["bytes"].get<std::uint64_t>(), k.size);
    EXPECT_EQ(ctl["size"]["resized"].get<std::uint64_t>(), received);
    EXPECT_EQ(ctl["size"]["not_resized"].get<int>(), 0);
    EXPECT_EQ(c.j["bytes"]["received"].get<std::uint64_t>(), received * k.size);
    EXPECT_EQ(ctl["close_after"]["closed_as_asked"].get<int>(), 4);
    EXPECT_EQ(ctl["close_after"]["not"].get<int>(), 0);
    EXPECT_EQ(c.j["connections"]["lost"].get<int>(), 0);
    EXPECT_EQ(c.j["messages"]["unanswered"].get<int>(), 0);
    EXPECT_EQ(error_total(c.j), 0u) << c.r.output;
    if (k.query.find("delay") != std::string::npos) {
      EXPECT_EQ(ctl["delay"]["at_or_after"].get<std::uint64_t>(), received);
      EXPECT_EQ(ctl["delay"]["early"].get<int>(), 0);
      EXPECT_GE(c.j["latency"]["min_us"].get<double>(), 20000.0);
      EXPECT_NE(c.r.output.find("controls     size=1000: 20 echoes resized as asked, 0 not; delay=20ms: 20 at or "
                                "after 20ms, 0 early; close_after=5: 4 connections closed with 4001 after 5 "
                                "echoes, 0 not"),
                std::string::npos)
          << c.r.output;
    } else {
      EXPECT_FALSE(ctl.contains("delay"));
    }
  }
}

// A server that gets each control wrong (echoes a byte short, at once, and
// (delay=1s: an echo that ignores it is early on however loaded a machine)
// closes with another code) or ignores them is caught, counted and fails
// the run with exit status 5; one that corrupts the resized echoes fails it
// with 1, as any changed byte does.
TEST(ShoalLoad, ControlsNotDoneAreCaught) {
  for (const std::string mode : {"wrong", "ignore"}) {
    auto server = start_controls_server(mode);
    const auto c = run_controls(ws_base(server->port("ws")) + "/?size=100&delay=1s&close_after=3&close_code=3000",
                                {"-c", "3", "--duration", "500ms"});
    EXPECT_EQ(c.r.exit_code, 5) << mode << "\n" << c.r.output;
    const auto& ctl = c.j["controls"];
    const std::uint64_t received = c.j["messages"]["received"].get<std::uint64_t>();
    EXPECT_GE(received, 9u) << mode;
    EXPECT_EQ(ctl["size"]["resized"].get<int>(), 0) << mode;
    EXPECT_EQ(ctl["size"]["not_resized"].get<std::uint64_t>(), received) << mode;
    EXPECT_EQ(ctl["delay"]["at_or_after"].get<int>(), 0) << mode;
    EXPECT_EQ(ctl["delay"]["early"].get<std::uint64_t>(), received) << mode;
    EXPECT_EQ(ctl["close_after"]["closed_as_asked"].get<int>(), 0) << mode;
    EXPECT_EQ(ctl["close_after"]["not"].get<int>(), 3) << mode;
    EXPECT_EQ(c.j["errors"]["mismatch"].get<int>(), 0) << mode;  // the bytes were the message's
    EXPECT_FALSE(c.j["ok"].get<bool>());
    EXPECT_NE(c.r.output.find("not resized to size=100"), std::string::npos) << c.r.output;
    EXPECT_NE(c.r.output.find("earlier than delay=1s"), std::string::npos) << c.r.output;
    EXPECT_NE(c.r.output.find("not closed with 3000 after close_after=3"), std::string::npos) << c.r.output;
  }
  auto server = start_controls_server("corrupt");
  const auto c = run_controls(ws_base(server->port("ws")) + "/?size=100", {"-c", "2", "--duration", "300ms"});
  EXPECT_EQ(c.r.exit_code, 1) << c.r.output;
  EXPECT_GT(c.j["errors"]["mismatch"].get<int>(), 0);
  EXPECT_EQ(c.j["errors"]["mismatch"], c.j["controls"]["size"]["not_resized"]);
  EXPECT_NE(c.r.output.find("is not the message repeated"), std::string::npos) << c.r.output;
}

// Without controls in the URL the report has none and says nothing of them.
TEST(ShoalLoad, NoControlsNoReport) {
  auto server = start_controls_server("right");
  const auto c = run_controls(ws_base(server->port("ws")) + "/?x=1", {"-c", "2", "--messages", "3", "--duration", "200ms"});
  ASSERT_EQ(c.r.exit_code, 0) << c.r.output;
  EXPECT_TRUE(c.j.contains("controls"));
  EXPECT_TRUE(c.j["controls"].is_null());
  EXPECT_EQ(c.r.output.find("controls"), std::string::npos) << c.r.output;
}

// shoald with a ws listener "ws" and a wss listener "wss" (the certificate
// of `c`), whose websocket: map has `websocket` in it.
std::unique_ptr<ShoaldProcess> start_controls_shoald(const SelfSigned& c, const std::string& websocket) {
  const std::string tls = "    tls:\n      certificate: " + c.cert() + "\n      private_key: " + c.key() + "\n";
  const std::string ws = "    websocket:\n" + websocket;
  const std::string yaml = "shards: 2\nlisteners:\n" + shoal::test::loopback_listener("ws", "websocket-echo", ws) +
                           shoal::test::loopback_listener("wss", "websocket-echo", ws + tls) +
                           "admin:\n  port: 0\nshutdown:\n  drain_timeout: 1s\n";
  return std::make_unique<ShoaldProcess>(ShoaldProcess::Options{.yaml = yaml});
}

// The real shoald does what each control asks, over ws:// and wss://, in
// text and binary, larger and smaller than the message: shoal-load counts
// every echo as asked and every connection closed as asked.
TEST(ShoalLoad, ControlsAgainstShoald) {
  SelfSigned cert;
  auto server = start_controls_shoald(cert, "      ping_interval: 0s\n");
  struct Case {
    std::string url;
    std::vector<std::string> args;
  };
  const std::string ws = ws_base(server->port("ws"));
  const std::string wss = "wss://127.0.0.1:" + std::to_string(server->port("wss"));
  const std::vector<Case> cases = {
      {ws + "/?size=1000", {"--size", "300", "--text", "--pipeline", "4"}},
      {ws + "/?x=1&size=7", {"--size", "300", "--binary", "--pipeline", "4"}},
      {wss + "/?size=100000", {"--size", "1000", "--insecure", "--pipeline", "2"}},
      {ws + "/?close_after=4&close_code=4000", {"--pipeline", "2"}},
      {wss + "/?close_after=3&size=10", {"--insecure", "--text"}},
      {ws + "/?close_after=0", {}},
  };
  for (const auto& k : cases) {
    std::vector<std::string> args = {"-c", "5", "--duration", "1s"};
    args.insert(args.end(), k.args.begin(), k.args.end());
    const auto c = run_controls(k.url, args);
    ASSERT_EQ(c.r.exit_code, 0) << k.url << "\n" << c.r.output;
    const auto& ctl = c.j["controls"];
    const std::uint64_t received = c.j["messages"]["received"].get<std::uint64_t>();
    EXPECT_EQ(error_total(c.j), 0u) << k.url << "\n" << c.r.output;
    EXPECT_EQ(c.j["connections"]["lost"].get<int>(), 0) << k.url;
    EXPECT_EQ(c.j["messages"]["unanswered"].get<int>(), 0) << k.url;
    if (ctl.contains("size")) {
      EXPECT_GT(received, 0u) << k.url;
      EXPECT_EQ(ctl["size"]["resized"].get<std::uint64_t>(), received) << k.url;
      EXPECT_EQ(c.j["bytes"]["received"].get<std::uint64_t>(), received * ctl["size"]["bytes"].get<std::uint64_t>())
          << k.url;
    }
    if (ctl.contains("close_after")) {
      const std::uint64_t n = ctl["close_after"]["echoes"].get<std::uint64_t>();
      EXPECT_EQ(ctl["close_after"]["closed_as_asked"].get<int>(), 5) << k.url << "\n" << c.r.output;
      EXPECT_EQ(received, 5 * n) << k.url;
    }
  }
}

// delay= at shoald: every echo no sooner than 25 ms after its message, in
// the closed loop with three in flight (with size= too) and in the open
// loop over wss://.
TEST(ShoalLoad, DelayAgainstShoald) {
  SelfSigned cert;
  auto server = start_controls_shoald(cert, "      ping_interval: 0s\n");
  const std::string ws = ws_base(server->port("ws"));
  const std::string wss = "wss://127.0.0.1:" + std::to_string(server->port("wss"));
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {ws + "?delay=25ms&size=64", {"--size", "64", "--pipeline", "3"}},
      {wss + "/?delay=25ms", {"--rate", "200", "--insecure"}},
  };
  for (const auto& [url, extra] : cases) {
    std::vector<std::string> args = {"-c", "5", "--duration", "1s"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto c = run_controls(url, args);
    EXPECT_EQ(c.r.exit_code, 0) << url << "\n" << c.r.output;
    const std::uint64_t received = c.j["messages"]["received"].get<std::uint64_t>();
    EXPECT_GT(received, 0u) << url;
    EXPECT_EQ(c.j["controls"]["delay"]["at_or_after"].get<std::uint64_t>(), received) << url;
    EXPECT_EQ(c.j["controls"]["delay"]["early"].get<int>(), 0) << url;
    EXPECT_GE(c.j["latency"]["min_us"].get<double>(), 25000.0) << url;
    EXPECT_EQ(error_total(c.j), 0u) << url;
  }
}

// With controls.enabled false shoald only passes the parameters on and
// echoes as ever: shoal-load reports every control as not done and fails.
TEST(ShoalLoad, ControlsOffAtShoaldAreCaught) {
  SelfSigned cert;
  auto server = start_controls_shoald(cert, "      controls:\n        enabled: false\n");
  const auto c = run_controls(ws_base(server->port("ws")) + "/?size=100&delay=1s&close_after=2",
                              {"-c", "3", "--duration", "500ms"});
  EXPECT_EQ(c.r.exit_code, 5) << c.r.output;
  const auto& ctl = c.j["controls"];
  const std::uint64_t received = c.j["messages"]["received"].get<std::uint64_t>();
  EXPECT_GT(received, 6u);
  EXPECT_EQ(ctl["size"]["not_resized"].get<std::uint64_t>(), received);
  EXPECT_EQ(ctl["delay"]["early"].get<std::uint64_t>(), received);
  EXPECT_EQ(ctl["close_after"]["not"].get<int>(), 3);
  EXPECT_EQ(c.j["errors"]["mismatch"].get<int>(), 0);
  // Over the listener's cap, shoald refuses the upgrade (400): every
  // connection fails to upgrade, and says why.
  auto capped = start_controls_shoald(cert, "      controls:\n        max_size: 1000\n");
  const auto r = run_load({ws_base(capped->port("ws")) + "/?size=1001", "-c", "2", "--duration", "200ms", "-q"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("WebSocket upgrade: status 400"), std::string::npos) << r.output;
}

TEST(ShoalLoad, ControlUsageErrors) {
  const struct {
    std::vector<std::string> args;
    std::string says;
  } cases[] = {
      {{"ws://127.0.0.1:7001/?size=1MB"}, "size=1MB: expected a number of bytes, 0-67108864"},
      {{"ws://127.0.0.1:7001/?delay=2h"}, "delay=2h: expected a duration like 250ms, 5s, 2m or 1h, at most 1h"},
      {{"ws://127.0.0.1:7001/?close_after=1&close_code=1005"}, "close_code=1005: expected a close code"},
      {{"ws://127.0.0.1:7001/?close_code=4000"}, "close_code= needs close_after="},
      {{"ws://127.0.0.1:7001/?size=1&size=2"}, "size= is given twice"},
      {{"ws://127.0.0.1:7001/#top"}, "a WebSocket URL has no fragment"},
      {{"ws://127.0.0.1:7001/?delay=2s", "--timeout", "2s"}, "--timeout 2s is not longer than the target's delay=2s"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"-c", "1", "--duration", "1s"});
    const auto r = run_load(args);
    EXPECT_EQ(r.exit_code, 64) << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << r.output;
  }
}

TEST(ShoalLoad, TargetAndTlsOptionUsageErrors) {
  const struct {
    std::vector<std::string> args;
    std::string says;
  } cases[] = {
      {{"http://127.0.0.1:7000"}, "expected tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH"},
      {{"127.0.0.1:7000"}, "expected tcp://HOST:PORT, tls://HOST:PORT"},
      {{"tls://127.0.0.1:7000/path"}, "a tls:// target takes no path"},
      {{"tcp://127.0.0.1:7000", "--insecure"}, "--insecure is for tls:// and wss:// targets"},
      {{"ws://127.0.0.1:7000/", "--ca", "/nonexistent.pem"}, "--ca is for tls:// and wss:// targets"},
      {{"wss://127.0.0.1:7000/", "--ca", "/nonexistent.pem"}, "--ca /nonexistent.pem: no such file"},
      {{"tls://127.0.0.1:7000", "--rate", "100", "--messages", "1"}, "--messages is for the closed loop"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"-c", "1", "--duration", "1s"});
    const auto r = run_load(args);
    EXPECT_EQ(r.exit_code, 64) << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << r.output;
  }
}

TEST(ShoalLoad, RefusesNonLoopbackTargets) {
  // Refused while parsing options: nothing is sent anywhere.
  const auto r = run_load({"tcp://192.0.2.1:7000", "-c", "1", "--duration", "1s"});
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("not a loopback address"), std::string::npos) << r.output;
}

// --- --mode pubsub ------------------------------------------------------------
//
// tests/pubsub_server.py: a pub/sub server that is not shoald, right or
// wrong on purpose (FAULT), with one or several listeners sharing its
// channels ("a", "b", ...), as instances joined by Redis would.

std::unique_ptr<ShoaldProcess> start_pubsub_standin(const std::vector<std::string>& args = {}) {
  std::vector<std::string> all = {std::string(SHOAL_LOADTEST_DIR) + "/tests/pubsub_server.py"};
  all.insert(all.end(), args.begin(), args.end());
  return std::make_unique<ShoaldProcess>(ShoaldProcess::Options{.args = all, .binary = "/usr/bin/python3"});
}

std::string channel_url(int port, const std::string& channel = "room") {
  return "ws://127.0.0.1:" + std::to_string(port) + "/?channel=" + channel;
}

struct PubSubRun {
  RunResult r;
  nlohmann::json j;  // the whole report
  nlohmann::json p;  // its "pubsub" part
  std::uint64_t get(const char* k) const { return p[k].get<std::uint64_t>(); }
};

PubSubRun run_pubsub(std::vector<std::string> args) {
  const std::string json = temp_path(".json");
  args.insert(args.begin(), {"--mode", "pubsub"});
  args.insert(args.end(), {"--json", json, "-q"});
  PubSubRun run;
  run.r = run_load(args);
  std::ifstream in(json);
  if (in) {
    run.j = nlohmann::json::parse(in);
    run.p = run.j["pubsub"];
  }
  return run;
}

// Every subscriber gets every message once, in order: the expected count is
// subscribers × published, and the report says so.
TEST(ShoalLoadPubSub, EveryMessageReachesEverySubscriber) {
  auto server = start_pubsub_standin();
  const auto run = run_pubsub({channel_url(server->port("a")), "--subscribers", "30", "--rate", "200", "--duration",
                               "1s"});
  ASSERT_EQ(run.r.exit_code, 0) << run.r.output;
  EXPECT_EQ(run.j["mode"], "pubsub");
  EXPECT_EQ(run.get("subscribers"), 30u);
  EXPECT_EQ(run.get("publishers"), 1u);
  EXPECT_EQ(run.j["connections"]["established"].get<int>(), 31);
  const std::uint64_t published = run.get("published");
  EXPECT_NEAR(static_cast<double>(published), 200.0, 20.0) << run.r.output;
  EXPECT_EQ(run.get("expected"), 30 * published);
  EXPECT_EQ(run.get("delivered"), 30 * published);
  for (const char* k : {"missing", "duplicated", "reordered", "foreign", "extra"}) EXPECT_EQ(run.get(k), 0u) << k;
  EXPECT_EQ(run.get("subscribers_complete"), 30u);
  EXPECT_NEAR(run.p["deliveries_per_s"].get<double>(), 6000.0, 900.0) << run.r.output;
  EXPECT_GT(run.j["latency"]["count"].get<std::uint64_t>(), 5000u);
  EXPECT_GT(run.j["latency"]["p99_us"].get<double>(), 0.0);
  EXPECT_NE(run.r.output.find("deliveries   expected " + std::to_string(30 * published / 1000) + ","),
            std::string::npos) << run.r.output;
  EXPECT_NE(run.r.output.find("missing 0, duplicated 0, reordered 0, foreign 0; 30 of 30 subscribers got everything"),
            std::string::npos) << run.r.output;
}

// Channels NAME-0 .. NAME-(K-1): subscriber i and publisher j on channel
// i % K and j % K; each subscriber counts only its own channel's
// publishers, and a message of another channel is caught.
TEST(ShoalLoadPubSub, ManyChannelsKeepApart) {
  auto server = start_pubsub_standin();
  const std::vector<std::string> args = {channel_url(server->port("a")), "--channels", "4", "--subscribers", "14",
                                         "--publishers", "8", "--rate", "50", "--duration", "1s", "--text", "-t", "2"};
  const auto run = run_pubsub(args);
  ASSERT_EQ(run.r.exit_code, 0) << run.r.output;
  EXPECT_EQ(run.get("channels"), 4u);
  EXPECT_EQ(run.p["channel"], "room");
  // 14 subscribers: 4 on room-0 and room-1, 3 on room-2 and room-3; two
  // publishers on each.
  const std::uint64_t expected = run.get("expected");
  EXPECT_NEAR(static_cast<double>(expected), 14.0 * 2 * 50, 14.0 * 2 * 8) << run.r.output;
  EXPECT_EQ(run.get("delivered"), expected);
  EXPECT_EQ(run.get("subscribers_complete"), 14u);
  EXPECT_GT(run.get("publisher_received"), 0u);  // each publisher hears the other one of its channel

  auto crosstalk = start_pubsub_standin({"crosstalk"});
  std::vector<std::string> bad = args;
  bad[0] = channel_url(crosstalk->port("a"));
  const auto wrong = run_pubsub(bad);
  EXPECT_EQ(wrong.r.exit_code, 6) << wrong.r.output;
  EXPECT_GT(wrong.get("foreign"), 0u);
  EXPECT_EQ(wrong.get("missing"), 0u);
  EXPECT_NE(wrong.r.output.find("which publishes on room-0"), std::string::npos) << wrong.r.output;
}

// Each way of getting deliveries wrong is counted as what it is and fails
// the run: 6 for missing, duplicated and reordered, 1 for changed bytes.
TEST(ShoalLoadPubSub, WrongDeliveriesAreCaught) {
  const struct {
    std::string fault;
    const char* count;
    int exit_code;
    std::string says;
  } cases[] = {
      {"drop", "missing", 6, "deliveries missing"},
      {"dup", "duplicated", 6, "deliveries duplicated"},
      {"reorder", "reordered", 6, "deliveries out of order"},
      {"corrupt", "missing", 1, "delivered message(s) differed from what was published"},
  };
  for (const auto& c : cases) {
    auto server = start_pubsub_standin({c.fault});
    const auto run = run_pubsub({channel_url(server->port("a")), "--subscribers", "3", "--rate", "100",
                                 "--duration", "500ms", "--timeout", "1s"});
    EXPECT_EQ(run.r.exit_code, c.exit_code) << c.fault << "\n" << run.r.output;
    // Every 10th message to the first subscriber: about 5 of 50.
    EXPECT_GE(run.get(c.count), 4u) << c.fault << "\n" << run.r.output;
    EXPECT_LE(run.get(c.count), 6u) << c.fault << "\n" << run.r.output;
    EXPECT_NE(run.r.output.find(c.says), std::string::npos) << c.fault << "\n" << run.r.output;
    EXPECT_FALSE(run.j["ok"].get<bool>());
    if (c.fault == "corrupt") {
      EXPECT_EQ(run.j["errors"]["mismatch"].get<std::uint64_t>(), run.get("missing"));
    } else {
      EXPECT_EQ(run.j["errors"]["mismatch"].get<int>(), 0) << c.fault;
    }
  }
}

// Subscribers at one listener, publishers at another: through a server
// that joins them every message arrives; through two that are not joined,
// none does, and the run says so.
TEST(ShoalLoadPubSub, SubscribersAndPublishersAtDifferentInstances) {
  auto joined = start_pubsub_standin({"--listeners", "2"});
  const auto run = run_pubsub({"--subscribe-url", channel_url(joined->port("a")), "--publish-url",
                               channel_url(joined->port("b")), "--subscribers", "10", "--publishers", "2",
                               "--rate", "100", "--duration", "1s"});
  ASSERT_EQ(run.r.exit_code, 0) << run.r.output;
  EXPECT_EQ(run.get("expected"), 10 * run.get("published"));
  EXPECT_EQ(run.get("delivered"), run.get("expected"));
  EXPECT_EQ(run.p["subscribe_urls"][0], channel_url(joined->port("a")));
  EXPECT_EQ(run.p["publish_urls"][0], channel_url(joined->port("b")));
  EXPECT_NE(run.r.output.find("subscribers at " + channel_url(joined->port("a")) + ", publishers at " +
                              channel_url(joined->port("b"))),
            std::string::npos) << run.r.output;

  auto other = start_pubsub_standin();
  const auto apart = run_pubsub({"--subscribe-url", channel_url(joined->port("a")), "--publish-url",
                                 channel_url(other->port("a")), "--subscribers", "4", "--rate", "100",
                                 "--duration", "300ms", "--timeout", "500ms"});
  EXPECT_EQ(apart.r.exit_code, 6) << apart.r.output;
  EXPECT_GT(apart.get("expected"), 0u);
  EXPECT_EQ(apart.get("missing"), apart.get("expected"));
  EXPECT_EQ(apart.get("delivered"), 0u);
}

// Without --rate publishers send as fast as their sockets take it, up to
// --messages each.
TEST(ShoalLoadPubSub, PublishersAsFastAsAllowed) {
  auto server = start_pubsub_standin();
  const auto run = run_pubsub({channel_url(server->port("a")), "--subscribers", "5", "--publishers", "2",
                               "--messages", "400", "--duration", "1s"});
  ASSERT_EQ(run.r.exit_code, 0) << run.r.output;
  EXPECT_EQ(run.get("published"), 800u);
  EXPECT_EQ(run.get("delivered"), 5u * 800u);
  EXPECT_EQ(run.j["messages"]["sent"].get<int>(), 800);
  // Each hears the other's 400, and the other's end if it comes before the
  // run closes (the subscribers' having everything ends the run).
  EXPECT_GE(run.get("publisher_received"), 800u);
  EXPECT_LE(run.get("publisher_received"), 802u);
}

TEST(ShoalLoadPubSub, UsageErrors) {
  const struct {
    std::vector<std::string> args;
    std::string says;
  } cases[] = {
      {{"--mode", "pubsub", "ws://127.0.0.1:7001/"}, "has no ?channel=NAME"},
      {{"--mode", "pubsub", "ws://127.0.0.1:7001/?channel=a/b"}, "the channel must be 1-64 of"},
      {{"--mode", "pubsub", "ws://127.0.0.1:7001/?channel=a&channel=b"}, "gives channel= twice"},
      {{"--mode", "pubsub", "tcp://127.0.0.1:7001"}, "is not a ws:// or wss:// URL"},
      {{"--mode", "pubsub", "ws://127.0.0.1:7001/?channel=a&size=10"}, "are echo controls"},
      {{"--mode", "pubsub", "ws://127.0.0.1:7001/?channel=a", "-c", "5"}, "--connections is for --mode echo"},
      {{"--mode", "pubsub", "ws://127.0.0.1:7001/?channel=a", "--size", "23"}, "holds a 24-byte header"},
      {{"--mode", "pubsub", "ws://127.0.0.1:7001/?channel=a", "--size", "40", "--text"}, "holds a 48-byte header"},
      {{"--mode", "pubsub", "--subscribe-url", "ws://127.0.0.1:7001/?channel=a", "--publish-url",
        "ws://127.0.0.1:7002/?channel=b"},
       "every URL must name the same channel"},
      {{"--mode", "pubsub", "--subscribe-url", "ws://127.0.0.1:7001/?channel=a"}, "no target given (TARGET or --publish-url)"},
      {{"--mode", "pubsub", "ws://127.0.0.1:7001/?channel=" + std::string(63, 'c'), "--channels", "2"},
       "--channels 2: the channel names"},
      {{"--mode", "pubsub", "ws://192.0.2.1:7001/?channel=a"}, "not a loopback address"},
      {{"--mode", "fanout", "ws://127.0.0.1:7001/?channel=a"}, "--mode: 'fanout' is not echo or pubsub"},
      {{"ws://127.0.0.1:7001/?channel=a", "--subscribers", "3"}, "--subscribers is for --mode pubsub"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"--duration", "1s"});
    const auto r = run_load(args);
    EXPECT_EQ(r.exit_code, 64) << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << c.says << "\n" << r.output;
  }
}

// --- --mode pubsub against shoald ---------------------------------------------

// shoald with a websocket-pubsub listener "ps" (and a websocket-echo "ws");
// `listener` holds more of the pubsub listener's keys (pubsub:, tls:).
std::unique_ptr<ShoaldProcess> start_pubsub_shoald(const std::string& listener = "") {
  const std::string yaml = "shards: 2\nlisteners:\n" +
                           shoal::test::loopback_listener("ps", "websocket-pubsub", listener) +
                           shoal::test::loopback_listener("ws", "websocket-echo") +
                           "admin:\n  port: 0\nshutdown:\n  drain_timeout: 1s\n";
  return std::make_unique<ShoaldProcess>(ShoaldProcess::Options{.yaml = yaml});
}

// One instance, one publisher, many subscribers over both shards: each gets
// every message once and in order, and shoald's CPU is measured.
TEST(ShoalLoadPubSub, OnePublisherManySubscribersAtShoald) {
  auto server = start_pubsub_shoald();
  const auto run = run_pubsub({channel_url(server->port("ps"), "news"), "--subscribers", "300", "--rate", "200",
                               "--duration", "1s", "-t", "2", "--server-pid", std::to_string(server->pid())});
  ASSERT_EQ(run.r.exit_code, 0) << run.r.output;
  const std::uint64_t published = run.get("published");
  EXPECT_NEAR(static_cast<double>(published), 200.0, 20.0) << run.r.output;
  EXPECT_EQ(run.get("expected"), 300 * published);
  EXPECT_EQ(run.get("delivered"), 300 * published);
  EXPECT_EQ(run.get("subscribers_complete"), 300u);
  EXPECT_EQ(run.get("publisher_received"), 0u);  // not back to the sender
  EXPECT_NEAR(run.p["deliveries_per_s"].get<double>(), 60000.0, 9000.0) << run.r.output;
  EXPECT_EQ(error_total(run.j), 0u) << run.r.output;
  EXPECT_GT(run.j["server"]["cpu_window_s"].get<double>(), 0.0);
}

// Many channels, two publishers on each, text messages: no delivery crosses
// a channel, and each publisher hears the other one of its channel.
TEST(ShoalLoadPubSub, ManyChannelsAtShoald) {
  auto server = start_pubsub_shoald();
  const auto run = run_pubsub({channel_url(server->port("ps"), "room"), "--channels", "50", "--subscribers", "200",
                               "--publishers", "100", "--rate", "20", "--duration", "1s", "--text", "-t", "2"});
  ASSERT_EQ(run.r.exit_code, 0) << run.r.output;
  const std::uint64_t published = run.get("published");
  EXPECT_NEAR(static_cast<double>(published), 2000.0, 200.0) << run.r.output;
  EXPECT_EQ(run.get("expected"), 4 * published);  // 4 subscribers per channel
  EXPECT_EQ(run.get("delivered"), run.get("expected"));
  EXPECT_EQ(run.get("subscribers_complete"), 200u);
  // Every message reaches the other publisher (and its end, unless the run
  // closed first).
  EXPECT_GE(run.get("publisher_received"), published);
  EXPECT_LE(run.get("publisher_received"), published + 100);
}

// echo_to_sender: true sends a publisher its own messages as well; the
// subscribers still get each once. Over wss:// too.
TEST(ShoalLoadPubSub, EchoToSenderOverWssAtShoald) {
  SelfSigned cert;
  auto server = start_pubsub_shoald("    pubsub:\n      echo_to_sender: true\n    tls:\n      certificate: " +
                                    cert.cert() + "\n      private_key: " + cert.key() + "\n");
  const auto run = run_pubsub({"wss://127.0.0.1:" + std::to_string(server->port("ps")) + "/?channel=me",
                               "--subscribers", "4", "--messages", "100", "--duration", "500ms", "--ca", cert.cert()});
  ASSERT_EQ(run.r.exit_code, 0) << run.r.output;
  EXPECT_TRUE(run.j["tls"].get<bool>());
  EXPECT_EQ(run.get("published"), 100u);
  EXPECT_EQ(run.get("delivered"), 400u);
  EXPECT_GE(run.get("publisher_received"), 100u);  // its 100, and its end unless the run closed first
  EXPECT_LE(run.get("publisher_received"), 101u);
}

// An echo listener is not a channel server: nothing reaches the subscribers,
// and the run says every delivery is missing.
TEST(ShoalLoadPubSub, EchoListenerFailsThePubSubRun) {
  auto server = start_pubsub_shoald();
  const auto run = run_pubsub({channel_url(server->port("ws")), "--subscribers", "3", "--rate", "50", "--duration",
                               "300ms", "--timeout", "500ms"});
  EXPECT_EQ(run.r.exit_code, 6) << run.r.output;
  EXPECT_GT(run.get("expected"), 0u);
  EXPECT_EQ(run.get("missing"), run.get("expected"));
  EXPECT_EQ(run.get("subscribers_complete"), 0u);
}

}  // namespace
