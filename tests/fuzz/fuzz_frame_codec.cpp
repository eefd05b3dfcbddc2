// Fuzz target: WsEchoEngine and the frame codec, pure (no server, no
// socket). The input's first byte picks the engine: bit 0 a compression hook
// (a toy one, see below), bit 1 closing() before the first byte, bits 2-3
// max_message_bytes (4096, 64, 1 MiB, none); the next two pick two cuts of
// the rest, which is what a client sends after its upgrade.
//
// The same bytes are fed whole and in three reads, keeping what a read did
// not consume in front of the next one as the session does, and:
//   - no feed() consumes more than it was given, or reads past it (each
//     read is in a buffer of exactly its size, for AddressSanitizer);
//   - both ways give the same bytes out and the same ending: where a read
//     cuts a frame never changes what the client gets;
//   - what comes out is well-formed server frames as the codec's client
//     role decodes them: FIN, RSV1 only on a data frame when there is a
//     hook, uncompressed text in UTF-8, a close frame only at the end and
//     only when feed() said the connection ends, with a valid close code
//     (and no frame at all after closing());
//   - the messages and bytes feed() counts are the echoes that came out.
// A violation prints why and aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "protocol/frame_codec.hpp"
#include "protocol/ws_echo.hpp"

namespace {

using namespace shoal;

[[noreturn]] void fail(const char* why) {
  std::fprintf(stderr, "fuzz_frame_codec: %s\n", why);
  std::abort();
}

// A stand-in for permessage-deflate that every outcome is easy to reach
// with: 'Z' then the message reversed; or 'R', a count and a byte (that
// byte, count times: bigger inflated than compressed); anything else is
// invalid.
class ToyCompression : public MessageCompression {
 public:
  Inflate inflate(const unsigned char* in, std::size_t n, ByteBuffer& out, std::uint64_t limit) override {
    if (n >= 1 && in[0] == 'Z') {
      if (limit != 0 && n - 1 > limit) return Inflate::too_big;
      for (std::size_t i = n; i > 1; --i) out.append(in + i - 1, 1);
      return Inflate::ok;
    }
    if (n == 3 && in[0] == 'R') {
      if (limit != 0 && in[1] > limit) return Inflate::too_big;
      for (unsigned i = 0; i < in[1]; ++i) out.append(in + 2, 1);
      return Inflate::ok;
    }
    return Inflate::invalid;
  }
  void deflate(const unsigned char* in, std::size_t n, ByteBuffer& out) override {
    out.append("Z", 1);
    for (std::size_t i = n; i > 0; --i) out.append(in + i - 1, 1);
  }
};

struct Run {
  std::string out;
  WsEchoResult::End end = WsEchoResult::End::none;
  std::uint16_t code = 0;
  std::uint64_t messages = 0;
  std::uint64_t message_bytes = 0;
};

// Feeds wire[0, n) in reads that end at `cuts` (ascending) and at n.
Run feed(const unsigned char* wire, std::size_t n, const std::vector<std::size_t>& cuts, bool hook,
         bool closing, std::uint64_t limit) {
  ToyCompression toy;
  WsEchoEngine engine(limit, hook ? &toy : nullptr);
  if (closing) engine.closing();
  Run run;
  ByteBuffer out;
  std::vector<unsigned char> pending;
  std::size_t at = 0;
  std::vector<std::size_t> ends(cuts);
  ends.push_back(n);
  for (const std::size_t end : ends) {
    pending.insert(pending.end(), wire + at, wire + end);
    at = end;
    // Exactly the bytes of this read, so that reading past them is caught.
    const std::size_t size = pending.size();
    std::unique_ptr<unsigned char[]> read(new unsigned char[size == 0 ? 1 : size]);
    if (size != 0) std::memcpy(read.get(), pending.data(), size);
    const WsEchoResult r = engine.feed(read.get(), size, out);
    if (r.consumed > size) fail("feed() consumed more than it was given");
    run.messages += r.messages;
    run.message_bytes += r.message_bytes;
    if (r.end != WsEchoResult::End::none) {
      run.end = r.end;
      run.code = r.code;
      break;
    }
    // What was not consumed stays, as feed() left it.
    pending.assign(read.get() + r.consumed, read.get() + size);
  }
  run.out.assign(reinterpret_cast<const char*>(out.data()), out.size());
  return run;
}

// Checks the server's frames in `run.out` with the codec's client role.
void check_output(const Run& run, bool hook, bool closing) {
  const auto* p = reinterpret_cast<const unsigned char*>(run.out.data());
  const std::size_t n = run.out.size();
  if (closing && n != 0) fail("a frame was sent after closing()");
  const ws::Extensions ext{.deflate = hook};
  std::size_t pos = 0;
  std::uint64_t messages = 0, bytes = 0;
  bool closed = false;
  while (pos < n) {
    if (closed) fail("a frame after our close frame");
    const ws::HeaderResult d = ws::ClientCodec::decode_header(p + pos, n - pos, ext);
    if (d.status == ws::Decode::error) fail(d.why);
    if (d.status == ws::Decode::need_more) fail("a partial frame header at the end of the output");
    const ws::FrameHeader& f = d.header;
    if (!f.fin) fail("a server frame without FIN");
    if (n - pos - f.size < f.length) fail("a partial frame payload at the end of the output");
    const unsigned char* payload = p + pos + f.size;
    const std::size_t size = static_cast<std::size_t>(f.length);
    pos += f.size + size;
    switch (f.opcode) {
      case ws::opcode::text:
      case ws::opcode::binary:
        ++messages;
        if (f.rsv1) {
          // The toy's deflate output: 'Z' and the inflated bytes.
          if (size == 0 || payload[0] != 'Z') fail("a compressed echo the hook did not write");
          bytes += size - 1;
        } else {
          if (f.opcode == ws::opcode::text && scan_utf8(payload, size).status != Utf8::valid)
            fail("an echoed text message that is not UTF-8");
          bytes += size;
        }
        break;
      case ws::opcode::pong:
        break;
      case ws::opcode::close: {
        closed = true;
        const ws::CloseResult c = ws::parse_close(payload, size);
        if (!c.ok) fail("our close frame does not parse");
        if (size == 0) fail("our close frame has no code");
        if (run.end == WsEchoResult::End::none) fail("a close frame while feed() went on");
        const std::uint16_t want = run.code == ws::close_code::no_status ? ws::close_code::normal : run.code;
        if (c.code != want) fail("our close code is not the one feed() reported");
        break;
      }
      default:
        fail("a server frame with an opcode we never send");
    }
  }
  if (!closing && run.end != WsEchoResult::End::none && !closed) fail("the connection ends without our close frame");
  if (messages != run.messages) fail("feed() counted other messages than it echoed");
  if (bytes != run.message_bytes) fail("feed() counted other bytes than it echoed");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const bool hook = data[0] & 1u;
  const bool closing = data[0] & 2u;
  static constexpr std::uint64_t kLimits[4] = {4096, 64, 1u << 20, 0};
  const std::uint64_t limit = kLimits[(data[0] >> 2) & 3u];
  const unsigned char* wire = data + 3;
  const std::size_t n = size - 3;
  std::size_t a = n * data[1] / 256, b = n * data[2] / 256;
  if (a > b) std::swap(a, b);

  const Run whole = feed(wire, n, {}, hook, closing, limit);
  check_output(whole, hook, closing);
  const Run pieces = feed(wire, n, {a, b}, hook, closing, limit);
  if (pieces.out != whole.out) fail("the output depends on where the reads cut the input");
  if (pieces.end != whole.end || pieces.code != whole.code) fail("the ending depends on where the reads cut the input");
  if (pieces.messages != whole.messages || pieces.message_bytes != whole.message_bytes)
    fail("the counts depend on where the reads cut the input");
  return 0;
}
