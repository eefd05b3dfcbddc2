// What the network fuzz targets of tests/fuzz/ share: an in-process shoald
// (one shard with three WebSocket listeners, and the admin port) kept for the
// life of the fuzzing process, a loopback client with hard time bounds, and
// checkers of what the server may send back (HTTP responses, WebSocket
// frames, UTF-8).
//
// A violated expectation is a finding: fail() prints why and aborts, which
// libFuzzer (or the replay main) reports with the input that caused it.
//
// Thread safety: called from the fuzzing thread only; the server runs on
// its own shard and admin threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin/admin_server.hpp"
#include "config/config.hpp"
#include "protocol/utf8.hpp"

namespace shoal::fuzz {

[[noreturn]] void fail(const std::string& why);

// The WebSocket listeners of the fuzzing server, chosen by an input's first
// byte (modulo count).
enum Listener : std::size_t {
  kPlain,    // the defaults, with a small message limit so that 1009 is reachable
  kDeflate,  // permessage-deflate enabled
  kStrict,   // a path, allowed origins, subprotocols and a small header limit
  kListenerCount,
};
inline constexpr std::uint64_t kMaxMessageBytes = 4096;

// Started on first use, never stopped (the process exits under it).
class FuzzServer {
 public:
  static FuzzServer& get();

  std::uint16_t ws_port(std::size_t listener) const { return ws_ports_.at(listener); }
  const WebSocketConfig& ws_config(std::size_t listener) const;
  std::uint16_t admin_port() const { return admin_port_; }
  const AdminServer& admin() const { return *admin_; }

  // Aborts when a handler threw on the shard since the last call: the shard
  // catches and logs it to keep serving, which would hide it from the fuzzer.
  void check_no_handler_exception();

 private:
  FuzzServer();
  struct Parts;
  Parts* parts_;  // deliberately leaked, see get()
  const AdminServer* admin_ = nullptr;
  std::vector<std::uint16_t> ws_ports_;
  std::uint16_t admin_port_ = 0;
  std::uint64_t exceptions_seen_ = 0;
};

// What a connection brought back.
struct Reply {
  std::string bytes;    // everything the server sent
  bool reset = false;   // ended by a reset: bytes in flight may be lost
  // Only with a `ready` predicate: whether it held before our EOF, and if
  // not, whether the server closed first (else it stalled for kStallMs).
  bool ready = false;
  bool closed_before_ready = false;
};

// Connects to 127.0.0.1:port and sends `out` while reading what comes back.
// When all is sent and `ready` is given, keeps reading until ready(bytes so
// far) holds, the server closes, or kStallMs pass. Then half-closes and reads
// until the server closes; fail()s when it has not within kHangMs.
inline constexpr int kStallMs = 3000;
inline constexpr int kHangMs = 5000;
Reply converse(std::uint16_t port, std::string_view out,
               const std::function<bool(std::string_view)>& ready = {});

// --- HTTP responses ----------------------------------------------------------

struct HttpHead {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> fields;  // names lower-cased
  std::size_t size = 0;  // bytes up to and including the blank line
  // The value of the only field named `name`; fail()s when repeated.
  std::optional<std::string> field(std::string_view name) const;
};
// Parses a response head from the front of `s`; nullopt when the blank line
// has not come. fail()s when what came is not a well-formed HTTP/1.x head.
std::optional<HttpHead> parse_head(std::string_view s);

// --- WebSocket frames ----------------------------------------------------------

struct Frame {
  bool fin = false;
  std::uint8_t rsv = 0;  // RSV1..3 as bits 2..0 (4: RSV1)
  std::uint8_t opcode = 0;
  bool masked = false;
  bool minimal_length = true;  // the length in its shortest encoding
  std::uint64_t length = 0;
  std::string payload;  // unmasked
};

// The complete frames at the front of `s`, and how many bytes they span.
struct Frames {
  std::vector<Frame> frames;
  std::size_t consumed = 0;
};
Frames split_frames(std::string_view s);

struct Message {
  bool text = false;
  bool compressed = false;
  std::string payload;  // as sent (compressed when `compressed`)
};

// What a client's bytes ask of a WebSocket echo server, frame by frame, as
// far as they keep to RFC 6455 and the listener's limits.
struct ClientModel {
  std::vector<Message> messages;  // complete data messages before anything invalid or a close
  std::size_t pings = 0;          // pings among those frames
  enum class Expect {
    // The bytes end inside a frame: the server may wait for more.
    nothing,
    // Every byte is a complete, valid, uncompressed frame, none a close, and
    // a message left open is still valid so far: the server must echo every
    // message and answer every ping without waiting for more, and not close.
    echo_all,
    // As echo_all, but with compressed messages the model cannot check: the
    // server must echo them all or close.
    echo_or_close,
    // A complete frame breaks the rules, or is a close: after echoing what
    // came before, the server must close (a close frame, or the socket).
    close,
  } expect = Expect::nothing;
};
ClientModel model_client(std::string_view bytes, bool deflate, std::uint64_t max_message);

// What a server sent after its 101, checked against RFC 6455 (unmasked,
// known opcodes, control frames whole and short, a valid close code, no
// frame after the close, fragments in order, text in UTF-8 unless
// compressed, RSV1 only on the first frame of a message when deflate was
// negotiated, no message above `max_message`). fail()s on a violation, and
// when `complete` (the server closed cleanly) and the bytes end inside a
// frame or message.
struct ServerStream {
  std::vector<Message> messages;
  std::size_t pongs = 0;
  bool closed = false;  // sent a close frame
};
ServerStream check_server_frames(std::string_view bytes, bool deflate, std::uint64_t max_message,
                                 bool complete);

// The echo oracle: each message the server sent is the client's message of
// the same rank (type and, when neither is compressed, payload), and there
// are no more of them than the client sent.
void check_echoes(const ServerStream& server, const ClientModel& client);

// Whether the server has done what `client.expect` asks, judged on the bytes
// received so far (a response head, then frames); a null function when it
// asks nothing. For converse()'s `ready`.
std::function<bool(std::string_view)> reacted(const ClientModel& client, bool deflate,
                                              std::uint64_t max_message);

// Checks the frames that followed a 101 (from `head_size` on in r.bytes)
// against the client's: well formed, echoes of the client's messages, and
// the reaction `client.expect` asks for (r.ready from reacted()).
void check_after_upgrade(const Reply& r, std::size_t head_size, const ClientModel& client, bool deflate,
                         std::uint64_t max_message);

// A printable excerpt of bytes for failure messages.
std::string excerpt(std::string_view s, std::size_t max = 200);

}  // namespace shoal::fuzz
