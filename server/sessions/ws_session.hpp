// One WebSocket connection (RFC 6455) on shoal's own engine, for every
// websocket-echo listener: ws:// and wss://, with or without
// permessage-deflate. Private to sessions/; start_websocket_session()
// (websocket_session.hpp) is the way in.
//
// The session is split by phase, one file each:
// - ws_upgrade.cpp: the TLS handshake (wss), reading the HTTP upgrade and
//   answering it (the decision is protocol/upgrade.hpp's, pure);
// - ws_open.cpp: the echo. One read into the shard's scratch buffer, every
//   frame it brought handled by WsEchoEngine (protocol/ws_echo.hpp, on the
//   frame codec), the echoes of one read gathered into one write: one send()
//   in plaintext, one TLS write over TLS. Keepalive pings;
// - ws_closing.cpp: every ending (closing handshake, failing, refusing,
//   lingering to the peer's EOF) and the deadlines.
// Below the engine sits the Transport (plaintext or TLS through OpenSSL),
// and above it nothing else: no Beast stream.
//
// Memory while idle: this object (size asserted in ws_session.cpp's
// neighbour, ws_open.cpp) and, over TLS, OpenSSL's SSL object with its
// record buffers released; with permessage-deflate and context takeover,
// the zlib state (protocol/permessage_deflate.hpp). The message, input and
// output buffers hold memory only while bytes are in flight.
//
// Ownership: the shard's (Connection::retire()), indexed by its listener
// list while open. All calls on the owning shard's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "config/config.hpp"
#include "protocol/byte_buffer.hpp"
#include "protocol/http_echo.hpp"
#include "protocol/permessage_deflate.hpp"
#include "protocol/upgrade.hpp"
#include "protocol/ws_echo.hpp"
#include "pubsub/hub.hpp"
#include "runtime/ready_wait.hpp"
#include "runtime/shard.hpp"
#include "sessions/session_timer.hpp"
#include "sessions/ws_controls.hpp"
#include "sessions/transport.hpp"
#include "tls/tls.hpp"

namespace shoal::ws {

using error_code = boost::system::error_code;

inline constexpr std::uint16_t kNoStatus = 1005;  // close frame without a code
inline constexpr std::uint16_t kAbnormal = 1006;  // TCP ended without a close frame

class WsSession final : public Connection {
 public:
  // `tls`: null for ws://; else the certificate this session keeps for life.
  // Its `websocket:` settings are its listener's, from the shard's slot.
  WsSession(Shard& shard, std::size_t listener_index, PerIpCounts::Entry* client);
  ~WsSession() override;

  // Adopts the accepted socket and starts; the shard owns the session from
  // here. `tls`: null for ws://; else the certificate this session keeps
  // for life.
  void start(tcp_socket socket, const boost::asio::ip::tcp::endpoint& peer, TlsSettingsPtr tls);

 private:
  enum class Phase : std::uint8_t {
    tls_handshake,  // wss: the TLS handshake
    request,        // reading the HTTP upgrade request
    open,           // echoing
    closing,        // our close frame or error response sent; awaiting the end
    linger,         // half-closed: discarding what the peer sends until its EOF
    done,           // socket closed
  };

  // Bytes wait for the kernel: ours in out_, or sealed ones in the transport.
  bool write_blocked() const noexcept { return !out_.empty() || io_.output_pending(); }
  ListenerStats& stats() noexcept { return shard_.slot(listener_index_).stats; }
  const WebSocketConfig& cfg() const noexcept { return *shard_.slot(listener_index_).websocket; }
  void count_close_code(std::uint16_t code) noexcept {
    stats().close_codes[close_code_slot(code)].add();
  }
  void count_handshake_failed() noexcept {
    stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
  }

  // Waiting, on the shard's poller. One readiness wait and one write wait
  // at most, each completing into the handler of the phase the session is
  // in then.
  void on_poll_readable() override { on_ready({}); }
  void on_poll_writable() override { on_writable({}); }
  void wait_read() { wait_readable(); }
  void wait_write() { wait_writable(); }
  void on_ready(const error_code& ec);
  void on_writable(const error_code& ec);

  // What only the HTTP phase needs (websocket.http_echo): freed at the
  // upgrade, so an open WebSocket does not keep it.
  struct HttpSide {
    boost::asio::ip::tcp::endpoint peer;  // the client (PROXY header's, when one came)
    TlsDetails tls;
    std::string delayed;               // an answer waiting for its delay=
    std::int64_t delayed_until = 0;    // 0: none waits
    bool close_after_delayed = false;  // that answer ends the connection
    bool served = false;               // a request was answered (an idle keep-alive is no failed handshake)
    bool body_wait = false;            // in_ holds a whole head whose body has not all come
    // body_wait: in_'s size at which to parse again (the request's whole
    // size when its length is known; else twice the last try, or a read
    // ending in a blank line): each byte is parsed a bounded number of times.
    std::size_t parse_at = 0;
    bool continue_sent = false;        // 100 Continue went for the request in in_
  };

  // ws_upgrade.cpp
  void do_tls_handshake();
  void read_request();
  // `data[0, request_size)` is a request head, what follows up to `size`
  // came after it. True when more bytes are needed (read on).
  bool handle_request(const char* data, std::size_t size, std::size_t request_size);
  void upgrade(const char* data, std::size_t size, std::size_t request_size);
  void accept(const UpgradeAccept& accept, const char* rest, std::size_t rest_size);
  void reject(const UpgradeReject& reject);
  // Sends `response` as the connection's last bytes (counted as `why`).
  void refuse(const std::string& response, RejectReason why);

  // ws_http.cpp: HTTP echo of the requests gathered in in_; true when
  // more bytes are needed, false when it has taken over (an answer waits
  // for its delay or for the kernel, or the connection ends).
  bool serve_http();
  bool answer_http(const HttpRequest& request);
  bool send_http(const std::string& response, bool close_after);
  void on_http_timer(std::int64_t now);
  // The echoes and the close of a connection with response controls.
  void release_delayed(std::int64_t now);

  // ws_open.cpp
  void on_readable();
  // Queues n bytes behind what waits, or sends them; false: the connection
  // ended (a send error).
  bool send(const unsigned char* bytes, std::size_t n);
  // Sends what waits in out_; false as send().
  bool flush();
  void send_ping();
  void on_pong();

  WsControls* controls() const noexcept {
    return pubsub_ ? nullptr : static_cast<WsControls*>(shaper_.get());
  }
  pubsub::Member* member() const noexcept {
    return pubsub_ ? static_cast<pubsub::Member*>(shaper_.get()) : nullptr;
  }

  // websocket-pubsub (ws_open.cpp): a message of the channel, from any
  // shard's publisher or from Redis; false when not taken.
  static bool deliver_to(void* self, const pubsub::PublishedPtr& message) {
    return static_cast<WsSession*>(self)->deliver(*message);
  }
  bool deliver(const pubsub::Published& message);

  // ws_closing.cpp
  void on_close(CloseReason reason) override;
  void start_ws_close(std::uint16_t code, const char* why);
  // After our last frame: once the kernel has it, the half-close and a
  // linger (`then_linger`: a failed connection) or the close (a finished
  // closing handshake).
  void finish(bool then_linger);
  void linger();
  void on_linger_readable();
  void end_with_error(const error_code& ec, const char* op);
  void hard_close();
  std::int64_t closing_deadline() const;
  void arm(std::int64_t at_ms);
  void on_timer(const error_code& ec);
  void schedule_open_deadlines(std::int64_t now);

  // First, in Connection's tail padding: the phase and the flags.
  RequestHeadEnd head_end_;  // where the request's blank line is, across reads
  Phase phase_ = Phase::tls_handshake;
  bool finishing_ : 1 = false;           // in finish(): our last frame is out
  bool linger_after_flush_ : 1 = false;  // finish(): after a failure
  bool close_code_seen_ : 1 = false;
  bool unfed_ : 1 = false;    // in_ holds bytes no feed() has seen (came with the request)
  bool ktls_ : 1 = false;     // counted in ktls_connections
  bool pubsub_ : 1 = false;   // shaper_ is a pubsub::Member
  bool paused_ : 1 = false;   // controls_' queue is full: reading waits for the timer
  Transport io_;  // the socket, and over TLS the settings the session started with
  // Owns the agreed permessage-deflate (a MessageDeflate), else none.
  WsEchoEngine engine_;
  std::unique_ptr<HttpSide> http_;  // until the upgrade, with http_echo on
  // After the upgrade, what the engine hands each message to: the response
  // controls the URL asked for (websocket-echo), or the channel
  // subscribed to (websocket-pubsub, pubsub_ set). Null: the plain echo.
  std::unique_ptr<EchoShaper> shaper_;
  ByteBuffer in_;   // the request so far, then the start of a frame a read did not complete
  ByteBuffer out_;  // our bytes the kernel has not taken yet
  SessionTimer timer_;
  std::int64_t out_since_ms_ = 0;
  std::int64_t last_read_ms_ = 0;
  // One phase's or the other's: never both at once.
  union {
    std::int64_t deadline_ms_ = kNever;  // before open, and closing: handshake or closing deadline
    std::int64_t ping_sent_ms_;          // open: when our unanswered ping went, 0: none
  };
};

}  // namespace shoal::ws
