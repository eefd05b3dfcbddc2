#include "protocol/ws_echo.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace shoal {

namespace op = ws::opcode;
namespace cc = ws::close_code;

void WsEchoEngine::append_frame(ByteBuffer& out, unsigned opcode, const void* payload, std::size_t n,
                                bool compressed) {
  unsigned char* p = out.prepare(Codec::max_send_header + n);
  const std::size_t h = Codec::put_header(p, true, compressed, static_cast<std::uint8_t>(opcode), n);
  if (n != 0) std::memcpy(p + h, payload, n);
  out.commit(h + n);
}

void WsEchoEngine::append_close(ByteBuffer& out, std::uint16_t code, std::string_view reason) {
  unsigned char payload[ws::max_control_payload];
  append_frame(out, op::close, payload, ws::put_close_payload(payload, code, reason));
}

WsEchoResult& WsEchoEngine::fail(WsEchoResult& r, std::uint16_t code, const char* why, ByteBuffer& out) {
  r.end = WsEchoResult::End::fail;
  r.code = code;
  r.why = why;
  // After our own close frame nothing more is sent.
  if (!closing_) append_close(out, code);
  message_.release();
  opcode_ = 0;
  compressed_ = false;
  frame_checked_ = 0;
  utf8_.reset();
  return r;
}

bool WsEchoEngine::check_partial_text(const unsigned char* payload, std::size_t have,
                                      const ws::MaskKey& key) noexcept {
  // The frame stays masked in the input, so that unmasking it whole once it
  // is complete (in place, or into its echo) works as for any frame; what
  // is checked now is unmasked into a copy, a piece at a time, and never
  // checked again (frame_checked_).
  unsigned char piece[512];
  std::size_t at = frame_checked_;
  have = std::min<std::size_t>(have, UINT32_MAX);
  while (at < have) {
    const std::size_t k = std::min(sizeof piece, have - at);
    ws::apply_mask(piece, payload + at, k, key, at);
    if (!utf8_.feed(piece, k)) return false;
    at += k;
  }
  frame_checked_ = static_cast<std::uint32_t>(at);
  return true;
}

namespace {

// An EchoShaper's message or its deflated echo, off the buffers feed() uses;
// one per thread, never held across a feed.
ByteBuffer& shaping_buffer() {
  thread_local ByteBuffer buffer;
  return buffer;
}

}  // namespace

void WsEchoEngine::append_message(ByteBuffer& out, unsigned opcode, const unsigned char* payload,
                                  std::size_t n) {
  if (compression_ == nullptr) {
    append_frame(out, opcode, payload, n);
    return;
  }
  thread_local ByteBuffer deflated;  // beside shaping_buffer(), which may hold `payload`
  deflated.clear();
  compression_->deflate(payload, n, deflated);
  append_frame(out, opcode, deflated.data(), deflated.size(), /*compressed=*/true);
  if (deflated.capacity() > 1024 * 1024) deflated.release();
}

bool WsEchoEngine::shape(WsEchoResult& r, EchoShaper& shaper, unsigned opcode,
                         const unsigned char* message, std::size_t n, ByteBuffer& out) {
  ++r.messages;
  r.message_bytes += n;
  if (shaper.on_message(*this, opcode, message, n, out)) return true;
  r.stopped = true;
  return false;
}

bool WsEchoEngine::echo_compressed(WsEchoResult& r, unsigned opcode, const unsigned char* in, std::size_t n,
                                   ByteBuffer& out, EchoShaper* shaper) {
  // The message is inflated into `out`, behind the echoes so far, checked
  // there, and deflated from there into message_ (whose compressed input,
  // for a message in pieces, has been read by then); the frame then takes
  // the inflated bytes' place. `out` and message_ are the only buffers, and
  // one never reads from the other while it grows.
  const std::size_t mark = out.size();
  switch (compression_->inflate(in, n, out, max_)) {
    case MessageCompression::Inflate::ok:
      break;
    case MessageCompression::Inflate::too_big:
      out.resize(mark);
      fail(r, cc::too_big, "message over max_message_bytes once inflated", out);
      return false;
    case MessageCompression::Inflate::invalid:
      out.resize(mark);
      fail(r, cc::invalid_payload, "compressed message does not inflate", out);
      return false;
  }
  const std::size_t size = out.size() - mark;
  if (max_ != 0 && size > max_) {  // a hook that did not keep to its limit
    out.resize(mark);
    fail(r, cc::too_big, "message over max_message_bytes once inflated", out);
    return false;
  }
  if (opcode == op::text) {
    Utf8Validator v;
    if (!v.feed(out.data() + mark, size) || !v.complete()) {
      out.resize(mark);
      fail(r, cc::invalid_payload, "text message not UTF-8", out);
      return false;
    }
  }
  if (shaper != nullptr) {
    // The shaper appends to `out`: the message moves out of its way first.
    ByteBuffer& message = shaping_buffer();
    message.clear();
    message.append(out.data() + mark, size);
    out.resize(mark);
    message_.release();
    const bool go_on = shape(r, *shaper, opcode, message.data(), message.size(), out);
    if (message.capacity() > 1024 * 1024) message.release();
    return go_on;
  }
  message_.clear();
  compression_->deflate(out.data() + mark, size, message_);
  out.resize(mark);
  append_frame(out, opcode, message_.data(), message_.size(), /*compressed=*/true);
  message_.release();
  ++r.messages;
  r.message_bytes += size;
  return true;
}

WsEchoResult WsEchoEngine::feed(unsigned char* data, std::size_t n, ByteBuffer& out,
                                EchoShaper* shaper) {
  // Chosen once per read, so that the plain echo's loop has no test of its
  // own for the shaper: a connection without controls pays nothing per message.
  return shaper != nullptr ? run<true>(data, n, out, shaper) : run<false>(data, n, out, nullptr);
}

template <bool kShaped>
WsEchoResult WsEchoEngine::run(unsigned char* data, std::size_t n, ByteBuffer& out,
                               EchoShaper* shaper) {
  WsEchoResult r;
  std::size_t pos = 0;
  const ws::Extensions ext{.deflate = compression_ != nullptr};
  while (pos < n) {
    unsigned char* const p = data + pos;
    const std::size_t avail = n - pos;
    const ws::HeaderResult d = Codec::decode_header(p, avail, ext);
    if (d.status == ws::Decode::error) return fail(r, d.code, d.why, out);
    if (d.status == ws::Decode::need_more) break;
    const ws::FrameHeader& f = d.header;
    const bool control = ws::is_control(f.opcode);
    const bool start = f.opcode != op::continuation;
    if (!control) {
      if (!start && opcode_ == 0) return fail(r, cc::protocol_error, "continuation frame without a message", out);
      if (start && opcode_ != 0) return fail(r, cc::protocol_error, "new message inside a fragmented one", out);
      const std::uint64_t so_far = start ? 0 : message_.size();
      // A compressed message is held to the limit once inflated; its
      // compressed form may be a little longer than the limit when the data
      // does not compress (deflate's stored blocks: 5 bytes per 64 KiB).
      const bool deflated = start ? f.rsv1 : compressed_;
      const std::uint64_t bound = deflated ? max_ + max_ / 64 + 1024 : max_;
      if (max_ != 0 && (f.length > bound || so_far + f.length > bound))
        return fail(r, cc::too_big, "message over max_message_bytes", out);
    }
    // Uncompressed text is checked as it comes, compressed text once inflated.
    const bool plain_text = start ? (f.opcode == op::text && !f.rsv1) : (opcode_ == op::text && !compressed_);

    if (avail - f.size < f.length) {
      // Not all here yet: the caller keeps the bytes and reads more. Text
      // that is already not UTF-8 fails now rather than when the rest comes.
      if (plain_text && !closing_) {
        if (start && frame_checked_ == 0) utf8_.reset();
        if (!check_partial_text(p + f.size, avail - f.size, f.key))
          return fail(r, cc::invalid_payload, "text message not UTF-8", out);
      }
      break;
    }
    unsigned char* const payload = p + f.size;
    const std::size_t size = static_cast<std::size_t>(f.length);
    const std::size_t checked = frame_checked_;
    frame_checked_ = 0;
    pos += f.size + size;

    if (control) {
      ws::apply_mask(payload, size, f.key);
      if (f.opcode == op::ping) {
        if (!closing_) {
          append_frame(out, op::pong, payload, size);
          r.ping = true;
        }
        continue;
      }
      if (f.opcode == op::pong) {
        if (!closing_) r.pong = true;
        continue;
      }
      const ws::CloseResult c = ws::parse_close(payload, size);
      if (!c.ok) return fail(r, c.error, c.why, out);
      // The answer carries the same code (1000 when the client gave none).
      if (!closing_) append_close(out, c.code == cc::no_status ? cc::normal : c.code);
      r.end = WsEchoResult::End::peer_close;
      r.code = c.code;
      r.consumed = pos;
      return r;
    }

    if (closing_) continue;  // our close is sent: data is dropped

    if (start && plain_text && checked == 0) utf8_.reset();
    if (start && f.fin) {
      if (f.rsv1) {
        ws::apply_mask(payload, size, f.key);
        if (!echo_compressed(r, f.opcode, payload, size, out, kShaped ? shaper : nullptr)) {
          if (r.stopped) r.consumed = pos;
          return r;
        }
        continue;
      }
      if constexpr (kShaped) {
        ws::apply_mask(payload, size, f.key);
        if (plain_text && (!utf8_.feed(payload + checked, size - checked) || !utf8_.complete()))
          return fail(r, cc::invalid_payload, "text message not UTF-8", out);
        if (!shape(r, *shaper, f.opcode, payload, size, out)) {
          r.consumed = pos;
          return r;
        }
        continue;
      }
      // A whole message in one frame, the usual case: unmasked straight
      // into its echo, and only the text not checked yet is checked.
      unsigned char* const o = out.prepare(Codec::max_send_header + size);
      const std::size_t h = Codec::put_header(o, true, false, f.opcode, size);
      ws::apply_mask(o + h, payload, size, f.key);
      if (plain_text && (!utf8_.feed(o + h + checked, size - checked) || !utf8_.complete()))
        return fail(r, cc::invalid_payload, "text message not UTF-8", out);
      out.commit(h + size);
      ++r.messages;
      r.message_bytes += size;
      continue;
    }

    // A message in pieces.
    if (start) {
      opcode_ = f.opcode;
      compressed_ = f.rsv1;
      message_.clear();
    }
    unsigned char* const dst = message_.prepare(size);
    ws::apply_mask(dst, payload, size, f.key);
    if (plain_text && !utf8_.feed(dst + checked, size - checked))
      return fail(r, cc::invalid_payload, "text message not UTF-8", out);
    message_.commit(size);
    if (!f.fin) continue;
    const unsigned message_opcode = opcode_;
    bool go_on = true;
    if (compressed_) {
      opcode_ = 0;
      compressed_ = false;
      if (!echo_compressed(r, message_opcode, message_.data(), message_.size(), out,
                           kShaped ? shaper : nullptr)) {
        if (r.stopped) r.consumed = pos;
        return r;
      }
    } else {
      if (plain_text && !utf8_.complete())
        return fail(r, cc::invalid_payload, "text message ends inside a UTF-8 sequence", out);
      opcode_ = 0;
      if constexpr (kShaped) {
        go_on = shape(r, *shaper, message_opcode, message_.data(), message_.size(), out);
      } else {
        append_frame(out, message_opcode, message_.data(), message_.size());
        ++r.messages;
        r.message_bytes += message_.size();
      }
    }
    message_.release();
    if (kShaped && !go_on) {
      r.consumed = pos;
      return r;
    }
  }
  r.consumed = pos;
  return r;
}

}  // namespace shoal
