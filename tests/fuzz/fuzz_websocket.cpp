// Fuzz target: a WebSocket echo connection after a valid opening handshake.
// The input's first byte picks the listener (even: the defaults, odd:
// permessage-deflate negotiated); the rest is what the client sends after
// its upgrade request. Whatever it is, the server answers with well-formed
// frames only, echoes exactly the client's valid messages, reacts without
// waiting for more bytes when the input asks for a reaction (echo, pong,
// close), and closes after our EOF: never a crash, a hang or unbounded
// memory (libFuzzer's -rss_limit_mb).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"

using namespace shoal::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  FuzzServer& server = FuzzServer::get();
  const bool deflate = data[0] & 1u;
  const std::size_t listener = deflate ? kDeflate : kPlain;
  const std::string_view frames(reinterpret_cast<const char*>(data + 1), size - 1);

  std::string out =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  if (deflate) out += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
  out += "\r\n";
  out += frames;

  const ClientModel client = model_client(frames, deflate, kMaxMessageBytes);
  const Reply r = converse(server.ws_port(listener), out, reacted(client, deflate, kMaxMessageBytes));
  const auto head = parse_head(r.bytes);
  if (!head) fail("no response to a valid upgrade request; got " + excerpt(r.bytes));
  if (head->status != 101) fail("a valid upgrade request was refused: " + excerpt(r.bytes));
  const std::string ext = head->field("sec-websocket-extensions").value_or("");
  if ((ext.find("permessage-deflate") != std::string::npos) != deflate)
    fail("permessage-deflate " + std::string(deflate ? "not " : "") + "negotiated: " + excerpt(r.bytes));
  check_after_upgrade(r, head->size, client, deflate, kMaxMessageBytes);
  server.check_no_handler_exception();
  return 0;
}
