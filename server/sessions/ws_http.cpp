// WebSocket session, the HTTP phase: HTTP echo of every request that is not
// an upgrade (websocket.http_echo), with its response controls, and the
// browser page.
//
// Decisions:
// - in_ holds the bytes from the start of the first unanswered request;
//   each answered request is consumed from its front, so pipelined requests
//   are answered one at a time and in order. A request is parsed whole (head
//   and body) each time more of it comes: bounded by max_header_bytes and
//   max_body_bytes, and simpler than keeping a parser across reads.
// - Nothing more is read while an answer waits for its delay= or for the
//   kernel: the requests behind it wait in in_ or in the socket (TCP flow
//   control bounds them).
// - Keep-alive: each answer restarts websocket.handshake_timeout for the
//   next request; a connection idle past it closes without counting as a
//   failed handshake.
// - An upgrade may follow on the same connection: its head goes to the
//   upgrade checks as on a fresh one, and HttpSide is freed.
#include <spdlog/spdlog.h>

#include "protocol/browser_page.hpp"
#include "sessions/ws_session.hpp"

namespace shoal::ws {

namespace {

// A chunked body carries chunk headers beyond max_body_bytes; more than
// this beyond the head and body limits is refused rather than gathered.
constexpr std::size_t kChunkingSlack = 16 * 1024;

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace

bool WsSession::serve_http() {
  for (;;) {
    if (in_.empty()) {
      in_.release();
      head_end_.reset();
      http_->body_wait = false;
      return true;
    }
    const std::string_view bytes(reinterpret_cast<const char*>(in_.data()), in_.size());
    if (!http_->body_wait) {
      RequestHeadEnd end_of_head;
      const std::size_t end = end_of_head.feed(bytes);
      if (end == RequestHeadEnd::npos) {
        head_end_ = end_of_head;  // read_request feeds on from here
        if (in_.size() > static_cast<std::size_t>(cfg().max_header_bytes)) {
          reject(kRequestHeaderTooLarge);
          return false;
        }
        return true;
      }
      if (is_upgrade_attempt(bytes.substr(0, end))) {
        upgrade(bytes.data(), bytes.size(), end);
        return false;
      }
    }
    // A body still coming is parsed again once it can be whole, not on every
    // read: with a large max_body_bytes each read would parse all of it anew.
    if (http_->body_wait && in_.size() < http_->parse_at &&
        !(bytes.size() >= 4 && bytes.substr(bytes.size() - 4) == "\r\n\r\n"))
      return true;
    HttpParse parse = parse_http_request(bytes, cfg());
    switch (parse.state) {
      case HttpParse::State::need_more:
        http_->body_wait = true;
        http_->parse_at = parse.whole_size != 0 ? parse.whole_size : 2 * in_.size();
        if (in_.size() > cfg().max_header_bytes + cfg().max_body_bytes + kChunkingSlack) {
          refuse(http_error_response(413, "request body over max_body_bytes", {},
                                     shard_.slot(listener_index_).shared->instance, true),
                 RejectReason::handshake_failed);
          return false;
        }
        if (parse.expect_continue && !http_->continue_sent) {
          http_->continue_sent = true;
          if (!send(reinterpret_cast<const unsigned char*>(kContinue.data()), kContinue.size()))
            return false;
        }
        return true;
      case HttpParse::State::error:
        if (spdlog::should_log(spdlog::level::debug))
          spdlog::debug("conn {}: HTTP request refused: {} {}", id_string(), parse.status, parse.reason);
        if (parse.status == 413) {
          refuse(http_error_response(413, parse.reason, {},
                                     shard_.slot(listener_index_).shared->instance, true),
                 RejectReason::handshake_failed);
        } else {
          reject(parse.status == 431 ? kRequestHeaderTooLarge
                                     : UpgradeReject{400, "Bad Request", parse.reason, {},
                                                     UpgradeReject::Why::handshake_failed});
        }
        return false;
      case HttpParse::State::done:
        break;
    }
    http_->body_wait = false;
    http_->continue_sent = false;
    in_.consume(parse.consumed);
    if (!answer_http(parse.request)) return false;
  }
}

bool WsSession::answer_http(const HttpRequest& request) {
  const ListenerShared& who = *shard_.slot(listener_index_).shared;
  const bool close_after = !request.keep_alive;
  ListenerStats& st = stats();
  std::string response;
  std::int64_t delay_ms = 0;
  if (is_browser_page(request)) {
    response = http_page_response(browser_page(cfg().path), request.head, close_after, who.instance);
    st.http_requests.add();
  } else {
    auto controls = parse_controls(request.target, cfg().controls, /*websocket=*/false);
    if (const auto* bad = std::get_if<ControlError>(&controls)) {
      st.control_errors[static_cast<std::size_t>(bad->parameter)].add();
      response = http_error_response(400, bad->message, control_name(bad->parameter), who.instance,
                                     close_after);
    } else {
      const EchoControls& c = std::get<EchoControls>(controls);
      if (c.delay_ms) st.controls[static_cast<std::size_t>(Control::delay)].add();
      if (c.status) st.controls[static_cast<std::size_t>(Control::status)].add();
      if (c.size) st.controls[static_cast<std::size_t>(Control::size)].add();
      delay_ms = c.delay_ms.value_or(0);
      EchoContext context;
      context.instance = who.instance;
      context.hostname = who.hostname;
      context.listener = who.name;
      context.shard = shard_.id();
      context.client_address = http_->peer.address().to_string();
      context.client_port = http_->peer.port();
      context.tls = io_.tls() ? &http_->tls : nullptr;
      response = http_echo_response(request, context, c, close_after);
      st.http_requests.add();
    }
  }
  http_->served = true;
  touch();
  const std::int64_t now = Shard::now_ms();
  const std::int64_t timeout = cfg().handshake_timeout.count();
  if (delay_ms > 0) {
    http_->delayed = std::move(response);
    http_->delayed_until = precise_now_ms() + delay_ms;
    http_->close_after_delayed = close_after;
    deadline_ms_ = timeout > 0 ? http_->delayed_until + timeout : kNever;
    arm(http_->delayed_until);
    return false;
  }
  deadline_ms_ = timeout > 0 ? now + timeout : kNever;
  arm(deadline_ms_);
  return send_http(response, close_after);
}

bool WsSession::send_http(const std::string& response, bool close_after) {
  if (close_after) {
    phase_ = Phase::closing;  // the answer is this connection's ending
    close(CloseReason::peer_closed);
    in_.release();
    http_.reset();
  }
  if (!send(reinterpret_cast<const unsigned char*>(response.data()), response.size())) return false;
  if (close_after) {
    finish(/*then_linger=*/true);
    return false;
  }
  if (write_blocked()) {
    wait_write();  // on_writable serves on once the answer is out
    return false;
  }
  return true;
}

// Phase::request's timer: a delayed answer due, or the deadline.
void WsSession::on_http_timer(std::int64_t now) {
  if (http_->delayed_until != 0 && now >= http_->delayed_until) {
    const std::string response = std::move(http_->delayed);
    http_->delayed.clear();
    http_->delayed_until = 0;
    const std::int64_t timeout = cfg().handshake_timeout.count();
    deadline_ms_ = timeout > 0 ? now + timeout : kNever;
    arm(deadline_ms_);
    if (!send_http(response, http_->close_after_delayed)) return;
    if (serve_http()) read_request();
    return;
  }
  if (http_->delayed_until != 0) {
    arm(std::min(http_->delayed_until, deadline_ms_));
    return;
  }
  if (now >= deadline_ms_) {
    // An idle keep-alive connection has failed nothing; one that stopped
    // inside a request has.
    if (!http_->served || !in_.empty()) count_handshake_failed();
    spdlog::debug("conn {}: {} timeout", id_string(), http_->served ? "keep-alive" : "handshake");
    close(CloseReason::idle_timeout);
    return;
  }
  arm(deadline_ms_);
}

}  // namespace shoal::ws
