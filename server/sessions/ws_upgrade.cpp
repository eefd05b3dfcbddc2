// WebSocket session, first phase: the TLS handshake (wss://), then the
// HTTP upgrade read, decided (protocol/upgrade.hpp) and answered.
//
// Decisions:
// - The request is read like any other bytes, into the shard's scratch
//   buffer: whatever came after its blank line in the same read is the
//   client's first frames and goes to the engine, for ws:// and wss:// alike
//   (TLS cannot peek; one path for both keeps them equal).
// - A request that comes in pieces is gathered in in_, and each piece is
//   searched once for its blank line (RequestHeadEnd); one that has not ended
//   within max_header_bytes is refused with 431 without waiting for more.
// - websocket.handshake_timeout covers the TLS handshake and the upgrade
//   together; a client that connects and leaves without a byte (a port
//   check) has not failed a handshake, one that sent anything has.
#include <algorithm>
#include <cstring>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include "sessions/tcp_echo_session.hpp"
#include "sessions/ws_session.hpp"

namespace shoal::ws {

namespace {

template <typename... Args>
void log_debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::debug)) spdlog::debug(fmt, std::forward<Args>(args)...);
}

}  // namespace

WsSession::WsSession(Shard& shard, std::size_t listener_index, PerIpCounts::Entry* client)
    : Connection(shard, listener_index, client),
      engine_(static_cast<std::uint64_t>(cfg().max_message_bytes)) {}

WsSession::~WsSession() {
  if (ktls_) stats().ktls_connections.sub();
  delete engine_.compression();  // the agreed permessage-deflate, if any
}

void WsSession::start(tcp_socket socket, const boost::asio::ip::tcp::endpoint& peer,
                      TlsSettingsPtr tls) {
  error_code ec;
  const int fd = release_socket(socket, ec);
  if (fd < 0 || !adopt_socket(fd, ec)) {
    end_with_error(ec, "setup");
    return;
  }
  io_.set_fd(fd);
  if (cfg().http_echo && shard_.slot(listener_index_).pubsub == nullptr) {
    http_ = std::make_unique<HttpSide>();
    http_->peer = peer;
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("conn {}: accepted from {} ({})", id_string(), peer.address().to_string(),
                  tls ? "wss" : "websocket");
  }
  if (cfg().handshake_timeout.count() > 0) {
    deadline_ms_ = Shard::now_ms() + cfg().handshake_timeout.count();
    arm(deadline_ms_);
  }
  if (tls) {
    if (!io_.start_tls(std::move(tls))) {
      end_with_error(boost::asio::error::no_memory, "tls setup");
      return;
    }
    if (http_) io_.tls_stream().capture_details(&http_->tls);
    phase_ = Phase::tls_handshake;
    do_tls_handshake();
    return;
  }
  phase_ = Phase::request;
  read_request();
}

void WsSession::do_tls_handshake() {
  switch (io_.handshake()) {
    case Transport::Io::done:
      break;
    case Transport::Io::want_read:
      wait_read();
      return;
    case Transport::Io::want_write:
      wait_write();
      return;
    case Transport::Io::eof:
    case Transport::Io::failed: {
      const Transport::HandshakeEnd end = io_.handshake_end();
      if (end.failed) {
        count_handshake_failed();
        log_debug("conn {}: TLS handshake failed: {}", id_string(), io_.error().message());
      }
      close(end.reason);
      return;
    }
  }
  TlsStream& tls = io_.tls_stream();
  if (tls.ktls_send()) {
    ktls_ = true;
    stats().ktls_connections.add();
  }
  log_debug("conn {}: {} established{}", id_string(), tls.version(), ktls_ ? " (kTLS)" : "");
  phase_ = Phase::request;
  read_request();
}

void WsSession::read_request() {
  const std::size_t limit = static_cast<std::size_t>(cfg().max_header_bytes);
  char* const buf = shard_.scratch();
  for (;;) {
    std::size_t got = 0;
    bool more = true;
    switch (io_.read(buf, Shard::scratch_size, got, more)) {
      case Transport::Io::done:
        break;
      case Transport::Io::want_read:
        wait_read();
        return;
      case Transport::Io::want_write:
        wait_write();
        return;
      case Transport::Io::eof:
        if (!in_.empty()) count_handshake_failed();
        close(CloseReason::peer_closed);
        return;
      case Transport::Io::failed:
        if (!in_.empty()) count_handshake_failed();
        end_with_error(io_.error(), "read request");
        return;
    }
    const std::size_t before = in_.size();
    if (http_ && http_->body_wait) {  // a head is in; its body is coming
      in_.append(buf, got);
      if (!serve_http()) return;
    } else if (const std::size_t end = head_end_.feed(std::string_view(buf, got));
               end != RequestHeadEnd::npos) {
      if (before == 0) {
        // The usual case: the whole request in one read, decided in place.
        if (!handle_request(buf, got, end)) return;
      } else {
        in_.append(buf, got);
        if (!handle_request(reinterpret_cast<const char*>(in_.data()), in_.size(), before + end))
          return;
      }
    } else {
      in_.append(buf, got);
      if (in_.size() > limit) {
        reject(kRequestHeaderTooLarge);
        return;
      }
    }
    if (!more) {
      wait_read();
      return;
    }
  }
}

bool WsSession::handle_request(const char* data, std::size_t size, std::size_t request_size) {
  if (http_ && !is_upgrade_attempt(std::string_view(data, request_size))) {
    // HTTP echo works on in_: the request, its body, and any behind it.
    if (data != reinterpret_cast<const char*>(in_.data())) in_.append(data, size);
    return serve_http();
  }
  upgrade(data, size, request_size);
  return false;
}

// `data[0, request_size)` is the request head; what follows up to `size` is
// the first frames.
void WsSession::upgrade(const char* data, std::size_t size, std::size_t request_size) {
  const UpgradeDecision decision = decide_upgrade(std::string_view(data, request_size), cfg());
  if (const auto* no = std::get_if<UpgradeReject>(&decision)) {
    reject(*no);
    return;
  }
  accept(std::get<UpgradeAccept>(decision), data + request_size, size - request_size);
}

void WsSession::accept(const UpgradeAccept& yes, const char* rest, std::size_t rest_size) {
  if (pubsub::ChannelTable* channels = shard_.slot(listener_index_).pubsub) {
    std::string error;
    std::optional<std::string> channel = pubsub::channel_of(yes.target, error);
    if (!channel) {
      log_debug("conn {}: upgrade refused: {}", id_string(), error);
      refuse(http_error_response(400, error, "channel", shard_.slot(listener_index_).shared->instance,
                                 /*close=*/true),
             RejectReason::handshake_failed);
      return;
    }
    shaper_ = std::make_unique<pubsub::Member>(*channels, std::move(*channel), this, &deliver_to);
    pubsub_ = true;
  }
  // Response controls in the URL (websocket-echo); without a '?' this is
  // one find().
  auto asked = pubsub_ ? std::variant<EchoControls, ControlError>(EchoControls{})
                       : parse_controls(yes.target, cfg().controls, /*websocket=*/true);
  if (const auto* bad = std::get_if<ControlError>(&asked)) {
    stats().control_errors[static_cast<std::size_t>(bad->parameter)].add();
    log_debug("conn {}: upgrade refused: {}", id_string(), bad->message);
    refuse(http_error_response(400, bad->message, control_name(bad->parameter),
                               shard_.slot(listener_index_).shared->instance, /*close=*/true),
           RejectReason::handshake_failed);
    return;
  }
  if (const EchoControls& c = std::get<EchoControls>(asked); c.any_websocket()) {
    ListenerStats& st = stats();
    if (c.delay_ms) st.controls[static_cast<std::size_t>(Control::delay)].add();
    if (c.size) st.controls[static_cast<std::size_t>(Control::size)].add();
    if (c.close_after) st.controls[static_cast<std::size_t>(Control::close_after)].add();
    if (c.close_after && c.close_code != 1000)
      st.controls[static_cast<std::size_t>(Control::close_code)].add();
    shaper_ = std::make_unique<WsControls>(c);
  }
  http_.reset();  // the HTTP phase is over
  std::string extensions;
  if (cfg().permessage_deflate.enabled && !yes.extensions.empty()) {
    const std::vector<std::string_view> offers(yes.extensions.begin(), yes.extensions.end());
    if (auto agreed = negotiate_deflate(offers, cfg().permessage_deflate)) {
      extensions = agreed->response;
      engine_.compression(new MessageDeflate(*agreed));  // deleted with the session
    }
  }
  const std::string response = accept_response(yes, extensions);

  // The frames that came with the request are fed before anything is read.
  ByteBuffer first;
  if (rest_size != 0) first.append(rest, rest_size);
  in_ = std::move(first);
  unfed_ = !in_.empty();

  phase_ = Phase::open;
  ping_sent_ms_ = 0;  // the open phase's half of the union: no pong awaited
  const std::int64_t now = Shard::now_ms();
  last_read_ms_ = now;
  log_debug("conn {}: websocket open{}", id_string(),
            engine_.compression() ? " (permessage-deflate)" : "");
  touch();
  if (!send(reinterpret_cast<const unsigned char*>(response.data()), response.size())) return;
  if (controls() && controls()->close_due()) {  // close_after=0: closed at once
    close(CloseReason::close_after);
    if (phase_ == Phase::done) return;
  }
  schedule_open_deadlines(now);
  if (write_blocked()) {
    wait_write();  // on_writable reads on once the 101 is out
    return;
  }
  on_readable();
}

void WsSession::reject(const UpgradeReject& no) {
  log_debug("conn {}: upgrade refused: {} {}", id_string(), no.status, no.body);
  refuse(reject_response(no), no.why == UpgradeReject::Why::origin ? RejectReason::origin
                                                                   : RejectReason::handshake_failed);
}

void WsSession::refuse(const std::string& response, RejectReason why) {
  stats().rejected[static_cast<int>(why)].add();
  phase_ = Phase::closing;  // the response below is this session's ending
  close(CloseReason::protocol_error);
  in_.release();
  http_.reset();
  if (!send(reinterpret_cast<const unsigned char*>(response.data()), response.size())) return;
  finish(/*then_linger=*/true);
}

}  // namespace shoal::ws
