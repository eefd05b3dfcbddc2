// WebSocket session, the open phase: the echo, keepalive pings, and the
// waits every phase shares.
//
// Decisions:
// - One read into the shard's scratch buffer, every frame it brought
//   parsed and answered by WsEchoEngine into one output buffer per shard,
//   and that buffer written at once: one send() in plaintext, one TLS write
//   (records of up to 16 KiB) over TLS. Many echoes leave in one system
//   call, and nothing is allocated per message.
// - A frame cut by the end of a read is carried in in_; up to
//   kCarryInScratch it goes back into the scratch buffer for the next read,
//   a larger one (a big message) grows in place by kReadStep per read, so
//   memory follows the bytes that really came, never an announced length.
// - What the kernel does not take waits in out_, and nothing more is read
//   until it has gone: a client that does not read is held by TCP flow
//   control and bounded by write_timeout, not by our memory.
// - Idle, a connection holds its registration and no buffer; a busy one yields
//   after kReadsPerWakeup reads so that it cannot hold the shard.
#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "sessions/ws_session.hpp"

namespace shoal::ws {

namespace {

constexpr std::size_t kCarryInScratch = 16 * 1024;
constexpr std::size_t kReadStep = 64 * 1024;
constexpr int kReadsPerWakeup = 4;

// Where the frames one read produces are built: one per thread, and so one
// per shard, never held across an asynchronous operation.
ByteBuffer& echo_out() {
  thread_local ByteBuffer out;
  return out;
}

}  // namespace

// --- waiting -----------------------------------------------------------------
// Parked on the shard's poller (Connection::wait_readable, wait_writable):
// reading only once a read found the socket empty. A pubsub subscriber may
// be parked on a read when a delivery's write completes and reads on: parking
// twice is parking once.

void WsSession::on_ready(const error_code& ec) {
  if (phase_ == Phase::done) return;
  if (ec) {
    end_with_error(ec, "wait");
    return;
  }
  switch (phase_) {
    case Phase::tls_handshake: do_tls_handshake(); return;
    case Phase::request: read_request(); return;
    case Phase::open:
    case Phase::closing: on_readable(); return;
    case Phase::linger: on_linger_readable(); return;
    case Phase::done: return;
  }
}

void WsSession::on_writable(const error_code& ec) {
  if (phase_ == Phase::done) return;
  if (ec) {
    end_with_error(ec, "write");
    return;
  }
  if (phase_ == Phase::tls_handshake) {
    do_tls_handshake();
    return;
  }
  if (!flush()) return;
  if (write_blocked()) {
    wait_write();
    return;
  }
  if (finishing_) {
    finish(linger_after_flush_);
    return;
  }
  if (phase_ == Phase::request) {
    // An HTTP answer has gone (or TLS had to write before reading on).
    if (!http_ || (http_->delayed_until == 0 && serve_http())) read_request();
    return;
  }
  if (phase_ == Phase::open) {
    touch();  // the client took its echoes
    schedule_open_deadlines(Shard::now_ms());
  }
  on_readable();  // what came meanwhile, or a wait for more
}

// --- echo --------------------------------------------------------------------

void WsSession::on_readable() {
  if (write_blocked()) {  // a ping or close frame still waits for the kernel
    wait_write();
    return;
  }
  // Response controls (websocket-echo) or the channel (websocket-pubsub):
  // the engine hands them each message. Neither, the usual case, is the
  // plain echo.
  WsControls* const ctl = phase_ == Phase::open ? controls() : nullptr;
  EchoShaper* const shaper = phase_ == Phase::open ? shaper_.get() : nullptr;
  if (ctl != nullptr) {
    if (ctl->close_due() || ctl->queue_full()) {
      paused_ = true;  // release_delayed() reads on
      return;
    }
    ctl->begin_feed(precise_now_ms());  // delay= counts from here, and must not end early
  }
  unsigned char* const scratch = reinterpret_cast<unsigned char*>(shard_.scratch());
  ByteBuffer& out = echo_out();
  out.clear();
  WsEchoResult seen;
  error_code read_error;
  bool eof = false;
  bool drained = false;     // a read found the socket empty
  bool want_write = false;  // TLS must send before it can read on
  for (int round = 0; round < kReadsPerWakeup; ++round) {
    const bool in_scratch = in_.size() <= kCarryInScratch;
    std::size_t have = 0;
    unsigned char* buf;
    std::size_t room;
    if (in_scratch) {
      have = in_.size();
      if (have != 0) std::memcpy(scratch, in_.data(), have);
      in_.clear();
      buf = scratch + have;
      room = Shard::scratch_size - have;
    } else {
      buf = in_.prepare(kReadStep);
      room = kReadStep;
    }
    std::size_t got = 0;
    bool more = true;
    // Whole frames a stopped feed left (or that came with the request) go
    // to the engine before anything more is read.
    const bool carried = unfed_;
    const Transport::Io io = carried ? Transport::Io::done : io_.read(buf, room, got, more);
    if (io != Transport::Io::done) {
      switch (io) {
        case Transport::Io::eof: eof = true; break;
        case Transport::Io::failed: read_error = io_.error(); break;
        case Transport::Io::want_write: want_write = true; break;
        default: drained = true; break;
      }
      if (in_scratch && have != 0) in_.append(scratch, have);  // the carried bytes go back
      break;
    }
    if (!carried) last_read_ms_ = Shard::now_ms();
    unfed_ = false;
    unsigned char* data;
    std::size_t n;
    if (in_scratch) {
      data = scratch;
      n = have + got;
    } else {
      in_.commit(got);
      data = in_.data();
      n = in_.size();
    }
    const WsEchoResult r = engine_.feed(data, n, out, shaper);
    seen.messages += r.messages;
    seen.message_bytes += r.message_bytes;
    seen.ping = seen.ping || r.ping;
    seen.pong = seen.pong || r.pong;
    if (r.end != WsEchoResult::End::none) {
      seen.end = r.end;
      seen.code = r.code;
      seen.why = r.why;
      in_.release();
      break;
    }
    if (in_scratch) {
      if (r.consumed < n) in_.append(data + r.consumed, n - r.consumed);
    } else {
      in_.consume(r.consumed);
    }
    if (r.stopped) {  // the shaper's bound, or close_after: the rest is fed later
      unfed_ = !in_.empty();
      break;
    }
    if (io != Transport::Io::done) break;
    if (!more) {  // the kernel has nothing more, not even a FIN
      drained = true;
      break;
    }
  }

  if (seen.messages != 0) {
    ListenerStats& st = stats();
    st.messages_received.add(seen.messages);
    st.bytes_received.add(seen.message_bytes);
    if (member() == nullptr) {  // echoes; a subscriber's sends are counted as delivered
      st.messages_sent.add(seen.messages);
      st.bytes_sent.add(seen.message_bytes);
    }
  }
  if (phase_ == Phase::open && (seen.messages != 0 || seen.ping)) touch();
  if (seen.pong) on_pong();
  if (!out.empty()) {
    if (!send(out.data(), out.size())) return;
    out.clear();
  }
  if (out.capacity() > 4 * kReadStep) out.release();  // after a large message

  switch (seen.end) {
    case WsEchoResult::End::peer_close:
      if (controls()) controls()->drop_queue();  // the client is done: delayed echoes are not sent
      if (!close_code_seen_) {
        close_code_seen_ = true;
        count_close_code(seen.code);
      }
      if (phase_ == Phase::open) {
        // Our answer, with the same code, is in the kernel (or waits).
        count_close_code(seen.code == kNoStatus ? 1000 : seen.code);
        finish(/*then_linger=*/false);
        close(CloseReason::peer_closed);
        return;
      }
      finish(/*then_linger=*/false);
      return;
    case WsEchoResult::End::fail:
      if (phase_ != Phase::open) {  // a broken close handshake
        hard_close();
        return;
      }
      spdlog::debug("conn {}: failed with close {}: {}", id_string(), seen.code, seen.why);
      count_close_code(seen.code);
      finish(/*then_linger=*/true);
      close(CloseReason::protocol_error);
      return;
    case WsEchoResult::End::none:
      break;
  }
  if (read_error) {
    end_with_error(read_error, "read");
    return;
  }
  if (eof) {
    end_with_error(boost::asio::error::eof, "read");
    return;
  }
  if (ctl != nullptr && phase_ == Phase::open) {
    if (ctl->close_due() && ctl->queue_empty()) {
      close(CloseReason::close_after);  // the Nth echo is out (or in out_, ahead of the close)
      if (phase_ == Phase::done) return;
    } else if (ctl->close_due() || ctl->queue_full()) {
      paused_ = true;  // nothing more is read until delayed echoes have left
      if (ctl->delaying()) arm(ctl->next_due());
      if (write_blocked() || want_write) wait_write();
      return;
    } else if (ctl->delaying()) {
      arm(ctl->next_due());
    }
  }
  if (write_blocked() || want_write) {
    // The client is slow to take its echoes: nothing more is read until
    // it has (write_timeout bounds the wait).
    schedule_open_deadlines(Shard::now_ms());
    wait_write();
    return;
  }
  if (in_.empty() && in_.capacity() != 0) in_.release();
  if (drained) {
    wait_read();
  } else {
    // Still busy after these rounds: come back after the shard's other
    // ready handlers (a wait would not fire: no new edge need come).
    read_again();  // on_ready() reads on while open or closing
  }
}

// The delayed echoes that are due, then close_after's close once the last
// is out; reading resumes when the queue has room again.
void WsSession::release_delayed(std::int64_t now) {
  ByteBuffer& out = echo_out();
  out.clear();
  controls()->release_due(now, out);
  if (!out.empty()) {
    const bool sent = send(out.data(), out.size());
    out.clear();
    if (!sent) return;
    touch();
  }
  if (controls()->close_due() && controls()->queue_empty()) {
    close(CloseReason::close_after);
    return;  // start_ws_close resumes reading for the client's close
  }
  if (paused_ && !controls()->queue_full() && !controls()->close_due()) {
    paused_ = false;
    on_readable();
  }
}

// A subscriber's message: sent now, or queued behind what the kernel has
// not taken, up to pubsub.max_queued_bytes; past it the subscriber is a
// slow consumer (closed with 1008, or the message dropped). The frame is
// the one every subscriber gets: sent uncompressed even where
// permessage-deflate was agreed (RSV1 clear is always allowed).
bool WsSession::deliver(const pubsub::Published& message) {
  if (phase_ != Phase::open) return false;
  const PubSubConfig& config = shard_.slot(listener_index_).pubsub->config();
  // What waits goes first, as far as the kernel takes it now: one
  // publisher's read can bring many messages before this subscriber's
  // write wait completes, and a subscriber that reads is not slow.
  if (write_blocked() && !flush()) return false;
  const std::size_t waiting = out_.size() + io_.output_pending_bytes();
  if (waiting + message.frame.size() > config.max_queued_bytes) {
    ListenerStats& st = stats();
    if (config.slow_consumer == SlowConsumer::drop) {
      st.pubsub_dropped.add();
      return false;
    }
    st.pubsub_slow_closed.add();
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("conn {}: slow consumer: {} bytes unsent", id_string(), waiting);
    close(CloseReason::slow_consumer);
    return false;
  }
  if (!send(message.frame.data(), message.frame.size())) return false;
  ListenerStats& st = stats();
  st.messages_sent.add();
  st.bytes_sent.add(message.payload_size);
  touch();
  if (write_blocked()) wait_write();
  return true;
}

bool WsSession::send(const unsigned char* bytes, std::size_t n) {
  const bool was_blocked = write_blocked();
  if (!out_.empty()) {  // behind what already waits
    out_.append(bytes, n);
    return true;
  }
  std::size_t sent = 0;
  const Transport::Io io = io_.write(bytes, n, sent);
  if (io == Transport::Io::failed || io == Transport::Io::eof) {
    end_with_error(io_.error() ? io_.error() : error_code(boost::asio::error::broken_pipe), "write");
    return false;
  }
  if (sent < n) out_.append(bytes + sent, n - sent);
  if (!was_blocked && write_blocked()) out_since_ms_ = Shard::now_ms();
  return true;
}

bool WsSession::flush() {
  if (io_.output_pending()) {
    const Transport::Io io = io_.flush_output();
    if (io == Transport::Io::failed) {
      end_with_error(io_.error(), "write");
      return false;
    }
    if (io_.output_pending()) return true;
  }
  if (out_.empty()) return true;
  std::size_t sent = 0;
  const Transport::Io io = io_.write(out_.data(), out_.size(), sent);
  if (io == Transport::Io::failed || io == Transport::Io::eof) {
    end_with_error(io_.error() ? io_.error() : error_code(boost::asio::error::broken_pipe), "write");
    return false;
  }
  out_.consume(sent);
  if (out_.empty()) out_.release();
  return true;
}

// The next ping is due ping_interval after this pong, which is usually
// earlier than the pong deadline the timer is armed for.
void WsSession::on_pong() {
  // Only while open: ping_sent_ms_ shares its place with the closing deadline.
  if (phase_ != Phase::open || ping_sent_ms_ == 0) return;  // unsolicited
  ping_sent_ms_ = 0;
  schedule_open_deadlines(Shard::now_ms());
}

void WsSession::send_ping() {
  ping_sent_ms_ = Shard::now_ms();
  // Nothing is added behind echoes a client has not taken: pong_timeout or
  // write_timeout ends such a connection.
  if (write_blocked()) return;
  static constexpr unsigned char kPingFrame[2] = {0x89, 0x00};
  // Sent while parked in a read wait: what the kernel does not take goes
  // with the next wake-up (a second wait must not start beside the first).
  send(kPingFrame, sizeof kPingFrame);
}

// 216 bytes with GCC 12 on x86-64: Connection 64 (its tail padding holds the
// request-head state, the phase and the flags), Transport 16, the engine 32,
// the HTTP side, shaper and both buffers a pointer each (32), the deadline
// node 48, three timestamps 24. Idle, that is all the connection owns: the
// shard's poller holds its socket, and loadtest/bench.sh's memory rows
// measure the malloc chunk (224) plus the shard's share.
static_assert(sizeof(WsSession) <= 216, "WsSession grew: it is in every WebSocket connection");

}  // namespace shoal::ws
