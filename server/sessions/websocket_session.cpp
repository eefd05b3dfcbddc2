// WebSocket echo (RFC 6455), one connection's whole life: the HTTP upgrade,
// echo of whole messages, keepalive, failing and closing.
//
// Decisions, each explained where it is made:
// - Two echo paths. Plaintext listeners without permessage-deflate (the
//   usual case) answer the upgrade themselves and echo with WsEchoEngine
//   (ws_echo.hpp): one recv() into the shard's scratch buffer, every frame
//   it brought parsed and echoed into one send(), nothing held while idle
//   but the session and its RawEcho (sizes asserted with the classes).
//   Beast's stream (below) serves TLS and permessage-deflate, whose state
//   it keeps.
// - The upgrade request is read with MSG_PEEK and only its own bytes are
//   taken from the socket, so the first frame sent in the same segment stays
//   in the kernel for Beast (Beast's accept(buffers) would copy the request
//   into its 1,536-byte read buffer and refuse any longer request).
// - Every requirement of RFC 6455 §4.2.1 is checked here, with the status an
//   operator expects; Beast's accept(request) then only writes the 101.
// - Beast reads through WsSocket, a thin layer over the shard's socket that
//   follows frame boundaries in the bytes Beast reads. It tells the session
//   when Beast's internal read buffer is empty, which is when an idle
//   connection may park on async_wait(read) instead of holding a composed
//   read and a prepared buffer. Its teardown only half-closes: after a
//   completed closing handshake the session closes the socket at once; after
//   failing a connection or refusing an upgrade it drains the peer to EOF
//   under a deadline (no RST over our close frame or error response).
// - One timer per session, re-armed only when a deadline moves earlier:
//   handshake_timeout, then keepalive (ping after ping_interval of silence,
//   close after pong_timeout more; pong_timeout 0 is no pong deadline, a
//   ping every ping_interval, and idle_timeout alone bounds a silent peer),
//   write_timeout while an echo is in flight, and the closing handshake.
//   Beast's own timeouts stay off, so both engines keep the same rules.
// - Echo is read -> write -> read: one message in flight per connection.
//   The echo's write completes into WsSocket's gather buffer, so the echoes
//   of all the frames one socket read brought leave in one send (see
//   WsSocket); gathered bytes not yet sent count as a write in progress.
#include "sessions/websocket_session.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/associator.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include "runtime/ready_wait.hpp"
#include "protocol/ws_echo.hpp"

namespace shoal {
namespace ws_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using error_code = boost::system::error_code;

// Follows the client's frame boundaries through the bytes Beast reads from
// the socket. Beast reads ahead into its own buffer (up to 1,536 bytes), so
// after a message completes the next frames may already be there, invisible
// to the socket: waiting for readability then would stall the connection.
// The bytes read are exactly those Beast consumed when they end at the end of
// the last message Beast handed over; only then is its buffer empty.
class FrameTracker {
 public:
  void observe(const unsigned char* p, std::size_t n) noexcept {
    while (n > 0) {
      if (remain_ > 0) {
        const std::size_t k = remain_ < n ? static_cast<std::size_t>(remain_) : n;
        remain_ -= k;
        p += k;
        n -= k;
        if (remain_ == 0) end_frame();
        continue;
      }
      at_message_end_ = false;
      header_[header_len_++] = *p++;
      --n;
      if (header_len_ == 2) {
        const unsigned len7 = header_[1] & 0x7fu;
        header_need_ = static_cast<std::uint8_t>(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) +
                                                 ((header_[1] & 0x80u) ? 4 : 0));
      }
      if (header_len_ >= 2 && header_len_ == header_need_) {
        std::uint64_t len = header_[1] & 0x7fu;
        if (len == 126) {
          len = (std::uint64_t{header_[2]} << 8) | header_[3];
        } else if (len == 127) {
          len = 0;
          for (int i = 2; i < 10; ++i) len = (len << 8) | header_[i];
        }
        // FIN set on a data or continuation frame (opcode bit 3 clear).
        ends_message_ = (header_[0] & 0x80u) && !(header_[0] & 0x08u);
        header_len_ = 0;
        remain_ = len;
        if (remain_ == 0) end_frame();
      }
    }
  }

  // Data messages whose final frame has been read entirely.
  std::uint64_t messages_ended() const noexcept { return messages_; }
  // The bytes read so far end exactly at the end of such a message.
  bool at_message_end() const noexcept { return at_message_end_; }

 private:
  void end_frame() noexcept {
    if (ends_message_) {
      ++messages_;
      at_message_end_ = true;
    }
  }

  std::uint64_t remain_ = 0;    // payload bytes of the current frame still to come
  std::uint64_t messages_ = 0;
  unsigned char header_[14] = {};
  std::uint8_t header_len_ = 0;
  std::uint8_t header_need_ = 2;
  bool ends_message_ = false;
  bool at_message_end_ = true;
};

class WsSocket;

// What both stream layers (WsSocket, WssSocket) learn from the bytes Beast
// reads: the frame boundaries, and when the peer last sent anything.
struct ReadTracking {
  template <typename Buffers>
  void observe(const Buffers& buffers, std::size_t n) noexcept {
    last_read_ms = Shard::now_ms();
    for (auto it = asio::buffer_sequence_begin(buffers), end = asio::buffer_sequence_end(buffers);
         it != end && n > 0; ++it) {
      const asio::const_buffer b(*it);
      const std::size_t k = std::min(n, b.size());
      tracker.observe(static_cast<const unsigned char*>(b.data()), k);
      n -= k;
    }
  }

  FrameTracker tracker;
  std::int64_t last_read_ms = 0;  // the peer's last bytes (keepalive)
};

// Completion handler of a socket read issued by Beast: shows the bytes to
// the tracker, then hands over to Beast's operation (whose associated
// executor, allocator and cancellation slot it forwards).
template <typename Buffers, typename Handler>
struct ReadObserver {
  ReadTracking* layer;
  Buffers buffers;
  Handler handler;

  void operator()(const error_code& ec, std::size_t n);
};

// Operations of the layer that wait until the gather buffer has gone out.
// Each has a Beast handler (`handler`, whose associators the waiter
// forwards), resume() (buffer empty: go on; may run inside the initiating
// function, so it never invokes the handler inline) and fail(ec) (posts).
template <typename Buffers, typename Handler>
struct ReadAfterFlush {
  WsSocket* layer;
  Buffers buffers;
  Handler handler;
  void resume();
  void fail(const error_code& ec);
};

template <typename Buffers, typename Handler>
struct WriteAfterFlush {
  WsSocket* layer;
  Buffers buffers;
  Handler handler;
  void resume();
  void fail(const error_code& ec);
};

template <typename Handler>
struct WriteDone {
  WsSocket* layer;
  std::size_t n;
  Handler handler;
  void resume();
  void fail(const error_code& ec);
};

template <typename Handler>
struct TeardownAfterFlush {
  WsSocket* layer;
  Handler handler;
  void resume();
  void fail(const error_code& ec);
};

// Completion of a wait for writability while an operation waits for the
// gather buffer to drain.
template <typename Op>
struct FlushWaiter {
  WsSocket* layer;
  Op op;
  void operator()(const error_code& ec);
};

// The stream layer under Beast's websocket::stream: the shard's socket, typed
// with the io_context executor, plus the frame tracker and a gather buffer.
// Lives inside Beast's stream implementation object.
//
// Gathering writes: while the session has an echo in flight and more of the
// client's bytes are already in Beast's read buffer (gather(true)), a small
// write Beast issues is copied into the gather buffer and completes
// at once (posted), with no system call, so the session goes on to the next
// message already in Beast's read buffer. The gathered bytes leave in one
// send when a read needs the socket (before it is issued), when the session
// parks (flush()), on teardown, with any write that is not gathered (the
// last echo of a batch, ping, pong, close) and before the buffer would pass
// kGatherBound. With nothing gathered, a write goes straight to the socket.
// Whatever the kernel does not take waits for writability and holds up the
// operation that asked for the flush, so the buffer never grows past the
// bound while a client does not read; the session counts pending bytes as a
// write in progress (write_timeout). The buffer's memory is given back when
// the session parks.
class WsSocket : public ReadTracking {
 public:
  using executor_type = shoal::executor_type;
  using next_layer_type = tcp_socket;

  // Per-connection cap on gathered bytes, and the largest write gathered
  // (larger ones go straight to the socket after a flush, without a copy).
  static constexpr std::size_t kGatherBound = 64 * 1024;
  static constexpr std::size_t kGatherMaxWrite = 16 * 1024;

  explicit WsSocket(tcp_socket&& socket) : socket_(std::move(socket)) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  tcp_socket& next_layer() noexcept { return socket_; }
  const tcp_socket& next_layer() const noexcept { return socket_; }

  template <typename MutableBuffers, typename Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (pending() == 0) {
      start_read(buffers, std::forward<Handler>(handler));
      return;
    }
    after_flush(ReadAfterFlush<MutableBuffers, std::decay_t<Handler>>{this, buffers,
                                                                      std::forward<Handler>(handler)});
  }

  template <typename ConstBuffers, typename Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    const std::size_t have = pending();
    if (!gather_ && have == 0) {  // nothing to gather with: straight to the socket
      socket_.async_write_some(buffers, std::forward<Handler>(handler));
      return;
    }
    const std::size_t n = asio::buffer_size(buffers);
    if (n <= kGatherMaxWrite && have + n <= kGatherBound) {
      append(buffers, n);
      if (gather_) {
        asio::post(get_executor(),
                   beast::bind_front_handler(std::forward<Handler>(handler), error_code{}, n));
      } else {
        after_flush(WriteDone<std::decay_t<Handler>>{this, n, std::forward<Handler>(handler)});
      }
      return;
    }
    if (have == 0) {
      socket_.async_write_some(buffers, std::forward<Handler>(handler));
      return;
    }
    after_flush(WriteAfterFlush<ConstBuffers, std::decay_t<Handler>>{this, buffers,
                                                                     std::forward<Handler>(handler)});
  }

  // Whether writes are gathered (an echo in flight) or written through.
  void gather(bool on) noexcept { gather_ = on; }

  // Gathered bytes not yet taken by the kernel, and since when there are some.
  std::size_t pending() const noexcept { return out_.size() - head_; }
  std::int64_t pending_since_ms() const noexcept { return pending_since_ms_; }

  // Sends what the kernel takes now (non-blocking); an error is the
  // connection's end. Bytes it does not take stay pending.
  error_code flush() noexcept {
    while (head_ < out_.size()) {
      const ssize_t r = ::send(socket_.native_handle(), out_.data() + head_, out_.size() - head_,
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r > 0) {
        head_ += static_cast<std::size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return {};
      return error_code(r < 0 ? errno : EPIPE, boost::system::system_category());
    }
    out_.clear();
    head_ = 0;
    return {};
  }

  // Gives the gather buffer's memory back when it is empty (going idle).
  void release() noexcept {
    if (pending() == 0) {
      out_.clear();
      out_.shrink_to_fit();
      head_ = 0;
    }
  }

  // Flushes; when the kernel does not take everything, waits for
  // writability and flushes again until the buffer is empty, then resumes
  // the operation (or fails it with the send error).
  template <typename Op>
  void after_flush(Op&& op) {
    const error_code ec = flush();
    if (ec) {
      op.fail(ec);
    } else if (pending() == 0) {
      op.resume();
    } else {
      socket_.async_wait(asio::socket_base::wait_write,
                         FlushWaiter<std::decay_t<Op>>{this, std::forward<Op>(op)});
    }
  }

  template <typename MutableBuffers, typename Handler>
  void start_read(const MutableBuffers& buffers, Handler&& handler) {
    socket_.async_read_some(buffers, ReadObserver<MutableBuffers, std::decay_t<Handler>>{
                                         this, buffers, std::forward<Handler>(handler)});
  }

 private:
  template <typename ConstBuffers>
  void append(const ConstBuffers& buffers, std::size_t n) {
    if (pending() == 0) {
      out_.clear();
      head_ = 0;
      pending_since_ms_ = Shard::now_ms();
    }
    std::size_t at = out_.size();
    out_.resize(at + n);
    for (auto it = asio::buffer_sequence_begin(buffers), end = asio::buffer_sequence_end(buffers);
         it != end; ++it) {
      const asio::const_buffer b(*it);
      std::memcpy(out_.data() + at, b.data(), b.size());
      at += b.size();
    }
  }

  tcp_socket socket_;
  std::vector<char> out_;  // gathered bytes; [head_, size) not yet sent
  std::size_t head_ = 0;
  std::int64_t pending_since_ms_ = 0;
  bool gather_ = false;
};

template <typename Buffers, typename Handler>
void ReadObserver<Buffers, Handler>::operator()(const error_code& ec, std::size_t n) {
  if (n > 0) layer->observe(buffers, n);
  std::move(handler)(ec, n);
}

template <typename Buffers, typename Handler>
void ReadAfterFlush<Buffers, Handler>::resume() {
  layer->start_read(buffers, std::move(handler));
}
template <typename Buffers, typename Handler>
void ReadAfterFlush<Buffers, Handler>::fail(const error_code& ec) {
  asio::post(layer->get_executor(), beast::bind_front_handler(std::move(handler), ec, std::size_t{0}));
}

template <typename Buffers, typename Handler>
void WriteAfterFlush<Buffers, Handler>::resume() {
  layer->next_layer().async_write_some(buffers, std::move(handler));
}
template <typename Buffers, typename Handler>
void WriteAfterFlush<Buffers, Handler>::fail(const error_code& ec) {
  asio::post(layer->get_executor(), beast::bind_front_handler(std::move(handler), ec, std::size_t{0}));
}

template <typename Handler>
void WriteDone<Handler>::resume() {
  asio::post(layer->get_executor(), beast::bind_front_handler(std::move(handler), error_code{}, n));
}
template <typename Handler>
void WriteDone<Handler>::fail(const error_code& ec) {
  asio::post(layer->get_executor(), beast::bind_front_handler(std::move(handler), ec, std::size_t{0}));
}

template <typename Handler>
void TeardownAfterFlush<Handler>::resume() {
  error_code ignored;
  layer->next_layer().shutdown(asio::socket_base::shutdown_send, ignored);
  asio::post(layer->get_executor(), beast::bind_front_handler(std::move(handler), error_code{}));
}
template <typename Handler>
void TeardownAfterFlush<Handler>::fail(const error_code&) {
  resume();  // a failed flush still half-closes: the half-close is best effort
}

template <typename Op>
void FlushWaiter<Op>::operator()(const error_code& ec) {
  if (ec) {
    op.fail(ec);
    return;
  }
  layer->after_flush(std::move(op));
}

// Beast's closing handshake ends with a teardown of the next layer, found by
// argument-dependent lookup. Ours sends what is gathered (the close frame
// among it), half-closes and completes; the session then reads the peer to
// EOF under its own deadline, so a peer that never closes cannot hold a
// Beast operation (Beast 1.81 has no timeout on this step: "TODO There
// should be a timeout on this").
template <typename Handler>
void async_teardown(beast::role_type, WsSocket& s, Handler&& handler) {
  s.after_flush(TeardownAfterFlush<std::decay_t<Handler>>{&s, std::forward<Handler>(handler)});
}

// --- wss:// -------------------------------------------------------------------

template <typename Handler>
struct TlsTeardown;

// Completion of a write from a copy of Beast's buffers: frees the copy, then
// hands over to Beast's operation (whose associators it forwards).
template <typename Handler>
struct OwnedBufferWrite {
  std::unique_ptr<char[]> bytes;
  Handler handler;
  void operator()(const error_code& ec, std::size_t n) {
    bytes.reset();
    std::move(handler)(ec, n);
  }
};

// The stream layer under Beast's websocket::stream for wss://: Asio's
// ssl::stream over the shard's socket (and the TLS settings it was made
// with, kept alive), the bytes that came after the upgrade request in the
// session's last TLS read (Beast reads them before anything else), and the
// same read tracking as WsSocket.
//
// Unlike WsSocket it gathers no echoes across messages: a TLS record cannot
// be sent with a raw send(), and a connection waits in a Beast read, not in
// async_wait, since OpenSSL and Asio may hold bytes the socket no longer
// shows. It does put each Beast write (frame header and payload) into one
// TLS record: Asio's ssl::stream writes only the first buffer of a sequence
// per call, which would cost a record and a send for the 2-byte header.
class WssSocket : public ReadTracking {
 public:
  using executor_type = shoal::executor_type;
  using next_layer_type = ssl::stream<tcp_socket>;

  // Most plaintext one TLS record carries.
  static constexpr std::size_t kRecordBytes = 16 * 1024;

  WssSocket(tcp_socket&& socket, TlsSettingsPtr tls)
      : tls_(std::move(tls)), stream_(std::move(socket), *tls_->context) {}

  executor_type get_executor() noexcept { return stream_.get_executor(); }
  next_layer_type& next_layer() noexcept { return stream_; }
  const next_layer_type& next_layer() const noexcept { return stream_; }
  tcp_socket& tcp() noexcept { return stream_.next_layer(); }

  template <typename MutableBuffers, typename Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (prefix_at_ < prefix_.size()) {
      const std::size_t n = asio::buffer_copy(
          buffers, asio::const_buffer(prefix_.data() + prefix_at_, prefix_.size() - prefix_at_));
      observe(buffers, n);
      prefix_at_ += n;
      if (prefix_at_ == prefix_.size()) {
        std::string().swap(prefix_);
        prefix_at_ = 0;
      }
      asio::post(get_executor(),
                 beast::bind_front_handler(std::forward<Handler>(handler), error_code{}, n));
      return;
    }
    stream_.async_read_some(buffers, ReadObserver<MutableBuffers, std::decay_t<Handler>>{
                                         this, buffers, std::forward<Handler>(handler)});
  }

  template <typename ConstBuffers, typename Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    const auto first = asio::buffer_sequence_begin(buffers);
    const std::size_t total = asio::buffer_size(buffers);
    if (first == asio::buffer_sequence_end(buffers) || asio::const_buffer(*first).size() == total) {
      stream_.async_write_some(buffers, std::forward<Handler>(handler));
      return;
    }
    // The copy lives as long as the write, and no longer: an idle
    // connection holds none.
    const std::size_t n = std::min(total, kRecordBytes);
    std::unique_ptr<char[]> bytes(new char[n]);
    asio::buffer_copy(asio::buffer(bytes.get(), n), buffers);
    const asio::const_buffer copy(bytes.get(), n);
    stream_.async_write_some(copy, OwnedBufferWrite<std::decay_t<Handler>>{
                                       std::move(bytes), std::forward<Handler>(handler)});
  }

  // Bytes read with the upgrade request that belong to the frames after it.
  void set_prefix(std::string bytes) {
    prefix_ = std::move(bytes);
    prefix_at_ = 0;
  }

  // Sends close_notify without waiting for the peer's: the peer's is marked
  // as received, so that SSL_shutdown is done once ours is written.
  template <typename Handler>
  void async_close_notify(Handler&& handler) {
    SSL* const ssl = stream_.native_handle();
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN);
    stream_.async_shutdown(std::forward<Handler>(handler));
  }

  // WsSocket's gathering interface: nothing is ever gathered here.
  void gather(bool) noexcept {}
  std::size_t pending() const noexcept { return 0; }
  std::int64_t pending_since_ms() const noexcept { return 0; }
  error_code flush() noexcept { return {}; }
  void release() noexcept {}

 private:
  TlsSettingsPtr tls_;  // before stream_: its context must outlive the SSL object
  next_layer_type stream_;
  std::string prefix_;
  std::size_t prefix_at_ = 0;
};

// Beast's teardown after a closing handshake: close_notify, then the TCP
// half-close, as for plaintext; the session then closes or lingers.
template <typename Handler>
struct TlsTeardown {
  WssSocket* layer;
  Handler handler;
  void operator()(const error_code&) {
    error_code ignored;
    layer->tcp().shutdown(asio::socket_base::shutdown_send, ignored);
    std::move(handler)(error_code{});
  }
};

template <typename Handler>
void async_teardown(beast::role_type, WssSocket& s, Handler&& handler) {
  s.async_close_notify(TlsTeardown<std::decay_t<Handler>>{&s, std::forward<Handler>(handler)});
}

}  // namespace ws_detail
}  // namespace shoal

namespace boost::asio {
template <template <typename, typename> class Associator, typename Buffers, typename Handler,
          typename DefaultCandidate>
struct associator<Associator, shoal::ws_detail::ReadObserver<Buffers, Handler>, DefaultCandidate> {
  using type = typename Associator<Handler, DefaultCandidate>::type;
  static type get(const shoal::ws_detail::ReadObserver<Buffers, Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const shoal::ws_detail::ReadObserver<Buffers, Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
template <template <typename, typename> class Associator, typename Handler, typename DefaultCandidate>
struct associator<Associator, shoal::ws_detail::OwnedBufferWrite<Handler>, DefaultCandidate> {
  using type = typename Associator<Handler, DefaultCandidate>::type;
  static type get(const shoal::ws_detail::OwnedBufferWrite<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const shoal::ws_detail::OwnedBufferWrite<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
template <template <typename, typename> class Associator, typename Handler, typename DefaultCandidate>
struct associator<Associator, shoal::ws_detail::TlsTeardown<Handler>, DefaultCandidate> {
  using type = typename Associator<Handler, DefaultCandidate>::type;
  static type get(const shoal::ws_detail::TlsTeardown<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const shoal::ws_detail::TlsTeardown<Handler>& h, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
template <template <typename, typename> class Associator, typename Op, typename DefaultCandidate>
struct associator<Associator, shoal::ws_detail::FlushWaiter<Op>, DefaultCandidate> {
  using Handler = decltype(Op::handler);
  using type = typename Associator<Handler, DefaultCandidate>::type;
  static type get(const shoal::ws_detail::FlushWaiter<Op>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.op.handler);
  }
  static auto get(const shoal::ws_detail::FlushWaiter<Op>& h, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.op.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.op.handler, c);
  }
};
}  // namespace boost::asio

namespace shoal {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = boost::asio::ssl;
using error_code = boost::system::error_code;
using ws_detail::WsSocket;
using ws_detail::WssSocket;

// permessage-deflate is compiled in (deflateSupported = true) so that config
// can turn it on; when off, Beast holds only an empty pointer for it.
template <typename Layer>
using ws_stream = websocket::stream<Layer, true>;

constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

// A message is read in steps of at most this many bytes. Beast would
// otherwise prepare the whole announced frame length at once (up to
// max_message_bytes), so a client could make us allocate 1 MiB by sending a
// 10-byte header; stepping makes memory follow the bytes really received.
constexpr std::size_t kReadStep = 64 * 1024;

// Beast uses its write buffer only to compress (and to mask, as a client):
// an uncompressed echo goes out as one frame, header and payload gathered,
// straight from our message buffer. 4 KiB per connection while deflate is
// negotiated is small next to the zlib state (tens of KiB).
constexpr std::size_t kDeflateWriteBuffer = 4096;

// wss: the upgrade request is read through TLS in reads of at most this many
// bytes (a request is usually a few hundred).
constexpr std::size_t kTlsRequestRead = 4096;

// Bound on a closing handshake or linger when handshake_timeout is 0.
constexpr std::int64_t kFallbackClosingMs = 10'000;

constexpr std::uint16_t kNoStatus = 1005;  // close frame without a code
constexpr std::uint16_t kAbnormal = 1006;  // TCP ended without a close frame

template <typename... Args>
void log_debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::debug)) spdlog::debug(fmt, std::forward<Args>(args)...);
}

// --- RFC 6455 §4.2.1 helpers -------------------------------------------------

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// Sec-WebSocket-Key: the canonical base64 of exactly 16 bytes, i.e. 22
// characters, the last of which carries 2 bits ("AQgw"), then "==".
bool valid_key(std::string_view k) {
  if (k.size() != 24 || k[22] != '=' || k[23] != '=') return false;
  for (std::size_t i = 0; i < 22; ++i)
    if (!is_base64_char(k[i])) return false;
  return std::string_view("AQgw").find(k[21]) != std::string_view::npos;
}

bool has_token(const http::fields& f, http::field name, std::string_view token) {
  auto range = f.equal_range(name);
  for (auto it = range.first; it != range.second; ++it)
    if (http::token_list{it->value()}.exists(beast::string_view(token.data(), token.size())))
      return true;
  return false;
}

std::size_t count_of(const http::fields& f, http::field name) {
  return static_cast<std::size_t>(f.count(name));
}

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// The first of the server's subprotocols, in its order of preference, that
// the client offered (Sec-WebSocket-Protocol may be repeated and is a
// comma-separated list); none when they share none.
const std::string* choose_subprotocol(const http::fields& f, const std::vector<std::string>& ours) {
  if (ours.empty()) return nullptr;
  auto range = f.equal_range(http::field::sec_websocket_protocol);
  for (const std::string& candidate : ours) {
    for (auto it = range.first; it != range.second; ++it) {
      for (auto token : http::token_list{it->value()})
        if (sv(token) == candidate) return &candidate;
    }
  }
  return nullptr;
}

std::string http_error(unsigned status, std::string_view phrase, std::string_view body,
                       std::string_view extra_headers) {
  std::string r;
  r.reserve(160 + body.size() + extra_headers.size());
  r.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(phrase).append("\r\n");
  r.append("Server: shoal\r\nContent-Type: text/plain\r\nConnection: close\r\n");
  r.append(extra_headers);
  r.append("Content-Length: ").append(std::to_string(body.size() + 1)).append("\r\n\r\n");
  r.append(body).append("\n");
  return r;
}

// True when a text message, every byte of which Beast has already validated,
// ends inside a multi-byte UTF-8 sequence. Beast 1.81 checks the end of the
// sequence only when the final frame carries payload, so a message whose
// final fragment is empty ("\xe2\x82" then an empty FIN continuation) gets
// through it.
bool ends_inside_utf8_sequence(const unsigned char* p, std::size_t n) {
  std::size_t continuation = 0;
  while (n > 0 && continuation < 3 && (p[n - 1] & 0xC0u) == 0x80u) {
    --n;
    ++continuation;
  }
  if (n == 0) return continuation > 0;
  const unsigned lead = p[n - 1];
  const std::size_t need = lead < 0x80u            ? 0
                           : (lead & 0xE0u) == 0xC0u ? 1
                           : (lead & 0xF0u) == 0xE0u ? 2
                           : (lead & 0xF8u) == 0xF0u ? 3
                                                     : 4;
  return continuation < need;
}

// Advances a matcher of "\r\n\r\n" (state 4: found) over one byte.
inline std::uint8_t crlf2_step(std::uint8_t s, char c) {
  if (c == '\r') return s == 2 ? 3 : 1;
  if (c == '\n') return s == 1 ? 2 : s == 3 ? 4 : 0;
  return 0;
}

// --- the session -------------------------------------------------------------

// The session is a template on the layer under Beast's stream: WsSocket for
// ws:// and WssSocket for wss://. Everything about the WebSocket protocol is
// shared; what TLS changes is chosen with `if constexpr (kTls)`, so the
// plaintext instantiation carries no TLS code:
// - the TLS handshake runs first, under the same handshake_timeout as the
//   upgrade;
// - the upgrade request is read through TLS (MSG_PEEK cannot see through
//   it): only whole reads can be taken, so the bytes after the request are
//   handed to WssSocket, which gives them to Beast first;
// - an idle connection waits in a Beast read rather than in async_wait on the
//   socket (OpenSSL and Asio's ssl::stream buffer bytes the socket no longer
//   shows), so a keepalive pong is taken by Beast;
// - responses and close frames the session writes itself go through TLS
//   asynchronously, and every "half-close" is close_notify, then the TCP
//   half-close (WssSocket::async_close_notify); lingering after it reads the
//   raw socket, as for plaintext.

// Memory per connection, asserted after the class (GCC 12, x86-64): the
// session is 288 bytes, plus make_shared's control block. The raw engine adds
// its RawEcho (248 bytes) and nothing else while idle: the message and
// gather buffers are released and the connection waits in a ReadyWait. With
// Beast, its stream implementation (the socket and WsSocket, Beast's
// 1,536-byte read buffer among it; ~2.3 KiB) is a separate allocation, and an
// idle connection waits with async_wait instead of a Beast read.
template <typename Layer>
class WebSocketSession final : public Connection,
                               public std::enable_shared_from_this<WebSocketSession<Layer>> {
 public:
  static constexpr bool kTls = std::is_same_v<Layer, WssSocket>;

  // `layer_args` follow the socket into the Layer's constructor (WssSocket:
  // the TLS settings).
  template <typename... LayerArgs>
  WebSocketSession(Shard& shard, std::size_t listener_index, tcp_socket socket,
                   PerIpCounts::Entry* client, const WebSocketConfig& config,
                   LayerArgs&&... layer_args)
      : Connection(shard, listener_index, client), cfg_(&config), timer_(shard.executor()) {
    if constexpr (!kTls) {
      if (!config.permessage_deflate.enabled) {
        raw_ = std::make_unique<RawEcho>(std::move(socket),
                                         static_cast<std::uint64_t>(config.max_message_bytes));
        return;
      }
    }
    ws_.emplace(std::move(socket), std::forward<LayerArgs>(layer_args)...);
  }

  void start(const asio::ip::tcp::endpoint& peer);

 private:
  void on_close(CloseReason reason) override;
  void configure_beast();
  enum class Phase : std::uint8_t {
    handshake,  // reading and answering the HTTP upgrade
    open,       // echoing
    closing,    // close handshake or error response sent; draining to EOF
    done,       // socket closed
  };

  using std::enable_shared_from_this<WebSocketSession<Layer>>::shared_from_this;

  tcp_socket& socket() noexcept {
    if constexpr (kTls) {
      return ws_->next_layer().tcp();
    } else {
      return raw_ ? raw_->socket : ws_->next_layer().next_layer();
    }
  }
  // When the client last sent anything.
  std::int64_t last_read_ms() const noexcept {
    return raw_ ? raw_->last_read_ms : ws_->next_layer().last_read_ms;
  }
  ListenerStats& stats() noexcept { return shard_.slot(listener_index_).stats; }
  void count_close_code(std::uint16_t code) noexcept { stats().close_codes[close_code_slot(code)].add(); }

  // Handshake.
  void wait_request();
  void on_request_readable(const error_code& ec);
  void on_tls_handshake(const error_code& ec);
  void read_request_tls();
  void on_request_read_tls(const error_code& ec, std::size_t have, std::size_t n);
  void finish_response_tls(std::int64_t deadline_ms);
  void handle_request(const char* data, std::size_t size);
  void reject(unsigned status, std::string_view phrase, std::string_view body,
              std::string_view extra_headers = {}, RejectReason why = RejectReason::handshake_failed);
  void on_accepted(const error_code& ec);
  // The 101 without Beast (see raw_), then the echo.
  void accept_raw(std::string_view key, const std::string* subprotocol);

  // Echo.
  void park();
  void on_readable(const error_code& ec);
  bool take_pong();
  void do_read();
  void on_read(const error_code& ec, std::size_t n);
  void on_read_failed(const error_code& ec);
  void on_write(const error_code& ec, std::size_t n);
  void on_control(websocket::frame_type kind);
  void send_ping();
  void on_pong();
  // `in_beast_read`: called from inside a Beast read (its control callback).
  void fail_connection(std::uint16_t code, const char* why, bool in_beast_read = false);

  // Echo without Beast (plaintext without deflate, once open): the client's
  // bytes are read into the shard's scratch buffer, parsed by WsEchoEngine,
  // and every echo of one read leaves in one send().
  void raw_wait_read();
  static void raw_ready(std::shared_ptr<WebSocketSession> self, const error_code& ec) {
    self->raw_on_readable(ec);
  }
  void raw_on_readable(const error_code& ec);
  void raw_wait_write();
  void raw_on_writable(const error_code& ec);
  // Sends n bytes; what the kernel does not take waits in raw_->out. False:
  // the connection ended (a send error).
  bool raw_send(const unsigned char* bytes, std::size_t n);
  // Sends what waits in raw_->out; false as raw_send.
  bool raw_flush();
  // Sends from `bytes` until all n are out or the kernel takes no more;
  // `sent` says how many went. False: a send error ended the connection.
  bool raw_send_some(const unsigned char* bytes, std::size_t n, std::size_t& sent);
  // After our last frame (a close frame): the closing deadline, then, once
  // the kernel has taken every byte, the half-close and a linger
  // (`then_linger`: a failed connection) or the close (a finished closing
  // handshake).
  void raw_finish(bool then_linger);

  // Endings. A session that ends itself in its own way (an error response,
  // a close frame and a linger) starts that ending first and then calls
  // close(reason) to be counted: on_close() leaves a closing phase alone.
  void start_ws_close(std::uint16_t code, const char* why);
  void on_ws_closed(const error_code& ec);
  // wss: writes bytes the session built itself (an error response, a close
  // frame) through TLS, then finish_response_tls(deadline_ms).
  void write_then_finish_tls(std::unique_ptr<std::string> bytes, std::int64_t deadline_ms);
  // After our last bytes (`ec`: how writing them went): the TCP half-close,
  // then linger.
  void half_close_and_linger(const error_code& ec, std::int64_t deadline_ms);
  void linger(std::int64_t deadline_ms);
  void on_linger_readable(const error_code& ec);
  void end_with_error(const error_code& ec, const char* op);
  void hard_close();

  // Deadlines.
  std::int64_t closing_deadline() const;
  void arm(std::int64_t at_ms);
  void on_timer(const error_code& ec);
  void schedule_open_deadlines(std::int64_t now);
  // Since when a write has been in progress: Beast's, or gathered bytes the
  // kernel has not taken yet; kNever when none.
  std::int64_t write_since() const noexcept;

  // Plaintext listeners without permessage-deflate do without Beast's
  // stream (~2.3 KiB per connection with its buffers): the session reads
  // the upgrade itself as for any listener, answers it (accept_raw), and the
  // echo runs on WsEchoEngine (ws_echo.hpp). This is all such a connection
  // holds besides the session, 88 bytes of it the wait for the next read
  // (Asio's reactor_op 72, the owner 16), kept here rather than allocated
  // per wait.
  struct RawEcho {
    RawEcho(tcp_socket&& s, std::uint64_t max_message_bytes)
        : socket(std::move(s)), engine(max_message_bytes) {}
    tcp_socket socket;
    ReadyWait<std::shared_ptr<WebSocketSession>, &WebSocketSession::raw_ready> read_wait;
    WsEchoEngine engine;
    ByteBuffer in;   // the start of a frame that a read did not complete
    ByteBuffer out;  // our frames the kernel has not taken yet
    std::int64_t out_since_ms = 0;
    std::int64_t last_read_ms = 0;
    bool finishing = false;           // in raw_finish(): our last frame is out
    bool linger_after_flush = false;  // raw_finish(): after a failure
  };
  static_assert(sizeof(RawEcho) <= 248, "RawEcho grew: it is in every idle ws:// connection");

  const WebSocketConfig* cfg_;
  std::optional<ws_stream<Layer>> ws_;  // TLS or deflate; else raw_
  std::unique_ptr<RawEcho> raw_;
  beast::flat_buffer buffer_;  // the message being echoed; no memory while idle
  steady_timer timer_;
  std::unique_ptr<std::string> partial_;  // request bytes, when the request came in pieces
  std::int64_t deadline_ms_ = kNever;     // handshake or closing deadline
  std::int64_t timer_at_ms_ = 0;          // when the timer fires; 0: not armed
  std::int64_t write_started_ms_ = 0;
  std::int64_t ping_sent_ms_ = 0;  // 0: no pong awaited
  std::uint64_t messages_read_ = 0;
  Phase phase_ = Phase::handshake;
  bool writing_ = false;
  bool ping_in_flight_ = false;
  bool close_code_seen_ = false;
  std::uint8_t crlf2_state_ = 0;  // "\r\n\r\n" matcher over partial_
};

// --- handshake ---------------------------------------------------------------

// Beast's stream (TLS or permessage-deflate listeners).
template <typename Layer>
void WebSocketSession<Layer>::configure_beast() {
  // Beast's buffers and limits, set deliberately:
  // - read_message_max: larger messages fail with 1009 before any payload
  //   is buffered (Beast checks the announced length of each frame).
  // - auto_fragment off: an echo is one frame, written with one gathered
  //   send, whatever the size; with it on Beast cuts frames at the write
  //   buffer size (a system call per 4 KiB).
  // - write_buffer_bytes: only used to compress (see kDeflateWriteBuffer).
  // - Beast's read buffer is fixed (1,536 bytes, inside its stream); our
  //   message buffer is a flat_buffer grown in kReadStep steps and released
  //   whenever the connection goes idle.
  ws_->read_message_max(static_cast<std::size_t>(cfg_->max_message_bytes));
  // Off, as Beast's default: its keep_alive_pings pings at half idle_timeout
  // and closes at idle_timeout, another rule than ping_interval and
  // pong_timeout, which the session's own timer applies to both engines.
  ws_->set_option(websocket::stream_base::timeout{websocket::stream_base::none(),
                                                  websocket::stream_base::none(), false});
  ws_->auto_fragment(false);
  ws_->write_buffer_bytes(kDeflateWriteBuffer);
  if (cfg_->permessage_deflate.enabled) {
    websocket::permessage_deflate pmd;
    pmd.server_enable = true;
    pmd.server_max_window_bits = cfg_->permessage_deflate.server_max_window_bits;
    pmd.client_max_window_bits = cfg_->permessage_deflate.client_max_window_bits;
    ws_->set_option(pmd);
  }
  // The callback lives in Beast's stream, which this session owns; it runs
  // inside our own read operations.
  ws_->control_callback(
      [this](websocket::frame_type kind, beast::string_view) { on_control(kind); });
}

template <typename Layer>
void WebSocketSession<Layer>::start(const asio::ip::tcp::endpoint& peer) {
  error_code ec;
  // The handshake and the linger use synchronous non-blocking calls.
  socket().non_blocking(true, ec);
  if (!ec) socket().set_option(asio::ip::tcp::no_delay(true), ec);
  if (ec) {
    end_with_error(ec, "setup");
    return;
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("conn {}: accepted from {} (websocket)", id_string(),
                  peer.address().to_string());
  }

  if (ws_) configure_beast();

  if (cfg_->handshake_timeout.count() > 0) {
    deadline_ms_ = Shard::now_ms() + cfg_->handshake_timeout.count();
    arm(deadline_ms_);
  }
  if constexpr (kTls) {
    ws_->next_layer().next_layer().async_handshake(
        ssl::stream_base::server,
        [self = shared_from_this()](const error_code& e) { self->on_tls_handshake(e); });
  } else {
    wait_request();
  }
}

// wss: a client that connects and goes without sending a byte (a port
// check) has not failed a handshake; one that sent anything has.
template <typename Layer>
void WebSocketSession<Layer>::on_tls_handshake(const error_code& ec) {
  if (closed() || phase_ != Phase::handshake) return;
  if (ec) {
    const bool sent_nothing =
        BIO_number_read(SSL_get_rbio(ws_->next_layer().next_layer().native_handle())) == 0;
    const CloseReason reason = classify(ec);
    if (!(sent_nothing && (reason == CloseReason::reset || reason == CloseReason::peer_closed))) {
      stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
      log_debug("conn {}: TLS handshake failed: {}", id_string(), ec.message());
    }
    // Anything but the peer leaving is a failed handshake, whatever the
    // error's category.
    close(reason == CloseReason::error ? CloseReason::protocol_error : reason);
    return;
  }
  read_request_tls();
}

// wss: the request is read through TLS in pieces of up to kTlsRequestRead
// bytes into partial_; the bytes after its blank line, if the same read
// brought any, are the first frames and go to WssSocket for Beast.
template <typename Layer>
void WebSocketSession<Layer>::read_request_tls() {
  if (!partial_) partial_ = std::make_unique<std::string>();
  const std::size_t have = partial_->size();
  const std::size_t limit = static_cast<std::size_t>(cfg_->max_header_bytes);
  // One byte more than the limit tells "too large" from "exactly at it".
  const std::size_t want = std::min(limit + 1 - have, kTlsRequestRead);
  partial_->resize(have + want);
  ws_->next_layer().next_layer().async_read_some(
      asio::buffer(partial_->data() + have, want),
      [self = shared_from_this(), have](const error_code& ec, std::size_t n) {
        self->on_request_read_tls(ec, have, n);
      });
}

template <typename Layer>
void WebSocketSession<Layer>::on_request_read_tls(const error_code& ec, std::size_t have,
                                                  std::size_t n) {
  if (closed() || phase_ != Phase::handshake) return;
  partial_->resize(have + n);
  if (ec) {
    if (classify(ec) == CloseReason::peer_closed) {
      if (have + n > 0) stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
      close(CloseReason::peer_closed);
      return;
    }
    end_with_error(ec, "read request");
    return;
  }
  const std::size_t limit = static_cast<std::size_t>(cfg_->max_header_bytes);
  std::uint8_t state = crlf2_state_;
  std::size_t end = 0;
  for (std::size_t i = have; i < have + n; ++i) {
    state = crlf2_step(state, (*partial_)[i]);
    if (state == 4) {
      end = i + 1;
      break;
    }
  }
  if (end == 0) {
    if (partial_->size() > limit) {
      reject(431, "Request Header Fields Too Large", "request header too large");
      return;
    }
    crlf2_state_ = state;
    read_request_tls();
    return;
  }
  if (end < partial_->size()) ws_->next_layer().set_prefix(partial_->substr(end));
  partial_->resize(end);
  const std::unique_ptr<std::string> request = std::move(partial_);
  handle_request(request->data(), request->size());
}

template <typename Layer>
void WebSocketSession<Layer>::wait_request() {
  socket().async_wait(asio::socket_base::wait_read,
                      [self = shared_from_this()](const error_code& ec) { self->on_request_readable(ec); });
}

// The request is peeked, and only its own bytes are taken, up to and
// including the blank line: whatever follows (the first frames) stays in the
// kernel for Beast. A request that arrives in pieces is taken piece by piece
// into partial_ (none of its bytes can be frame bytes: its end has not come).
template <typename Layer>
void WebSocketSession<Layer>::on_request_readable(const error_code& wait_ec) {
  if (closed() || phase_ != Phase::handshake) return;
  if (wait_ec) {
    end_with_error(wait_ec, "wait");
    return;
  }
  const std::size_t have = partial_ ? partial_->size() : 0;
  const std::size_t limit = static_cast<std::size_t>(cfg_->max_header_bytes);
  // One byte more than the limit tells "too large" from "exactly at it".
  const std::size_t want = std::min(limit + 1 - have, Shard::scratch_size);
  char* const buf = shard_.scratch();
  const ssize_t peeked = ::recv(socket().native_handle(), buf, want, MSG_PEEK);
  if (peeked < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      wait_request();
      return;
    }
    end_with_error(error_code(errno, boost::system::system_category()), "read request");
    return;
  }
  if (peeked == 0) {
    if (have > 0) stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
    close(CloseReason::peer_closed);
    return;
  }
  const std::size_t n = static_cast<std::size_t>(peeked);
  std::uint8_t state = crlf2_state_;
  std::size_t take = n;
  bool complete = false;
  for (std::size_t i = 0; i < n; ++i) {
    state = crlf2_step(state, buf[i]);
    if (state == 4) {
      take = i + 1;
      complete = true;
      break;
    }
  }
  if (!complete && have + n > limit) {
    reject(431, "Request Header Fields Too Large", "request header too large");
    return;
  }
  const ssize_t got = ::recv(socket().native_handle(), buf, take, 0);
  if (got != static_cast<ssize_t>(take)) {
    end_with_error(got < 0 ? error_code(errno, boost::system::system_category())
                           : error_code(asio::error::eof),
                   "read request");
    return;
  }
  if (!complete) {
    if (!partial_) partial_ = std::make_unique<std::string>();
    partial_->append(buf, take);
    crlf2_state_ = state;
    wait_request();
    return;
  }
  if (!partial_) {
    handle_request(buf, take);  // the usual case: the whole request at once
    return;
  }
  partial_->append(buf, take);
  const std::unique_ptr<std::string> request = std::move(partial_);
  handle_request(request->data(), request->size());
}

template <typename Layer>
void WebSocketSession<Layer>::handle_request(const char* data, std::size_t size) {
  http::request_parser<http::empty_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(cfg_->max_header_bytes));
  error_code ec;
  parser.put(asio::buffer(data, size), ec);
  if (ec == http::error::header_limit) {
    reject(431, "Request Header Fields Too Large", "request header too large");
    return;
  }
  if (ec || !parser.is_header_done()) {
    reject(400, "Bad Request", "malformed HTTP request");
    return;
  }
  if (!parser.is_done()) {
    reject(400, "Bad Request", "an upgrade request has no body");
    return;
  }
  http::request<http::empty_body>& req = parser.get();

  // RFC 6455 §4.2.1, in order. Beast checks some of these again in
  // accept(); we check them all first so that each gets its own status.
  if (req.method() != http::verb::get) {
    reject(405, "Method Not Allowed", "a WebSocket upgrade is a GET", "Allow: GET\r\n");
    return;
  }
  if (req.version() < 11) {
    reject(400, "Bad Request", "a WebSocket upgrade needs HTTP/1.1 or higher");
    return;
  }
  const bool upgrade_websocket = has_token(req, http::field::upgrade, "websocket");
  const bool connection_upgrade = has_token(req, http::field::connection, "upgrade");
  if (!upgrade_websocket && !connection_upgrade &&
      count_of(req, http::field::sec_websocket_key) == 0) {
    reject(400, "Bad Request", "this port speaks WebSocket only");
    return;
  }
  if (count_of(req, http::field::host) != 1) {
    reject(400, "Bad Request", "one Host header is required");
    return;
  }
  if (!upgrade_websocket) {
    reject(400, "Bad Request", "Upgrade: websocket is required");
    return;
  }
  if (!connection_upgrade) {
    reject(400, "Bad Request", "Connection: Upgrade is required");
    return;
  }
  if (count_of(req, http::field::sec_websocket_key) != 1 ||
      !valid_key(sv(req[http::field::sec_websocket_key]))) {
    reject(400, "Bad Request", "Sec-WebSocket-Key must be the base64 of 16 bytes");
    return;
  }
  if (count_of(req, http::field::sec_websocket_version) != 1 ||
      req[http::field::sec_websocket_version] != "13") {
    reject(426, "Upgrade Required", "this server speaks WebSocket version 13",
           "Sec-WebSocket-Version: 13\r\n");
    return;
  }
  {
    const std::string_view target = sv(req.target());
    const std::string_view path = target.substr(0, target.find('?'));
    if (path != cfg_->path) {
      reject(404, "Not Found", "no WebSocket endpoint at this path");
      return;
    }
  }
  if (!cfg_->allowed_origins.empty()) {
    bool allowed = false;
    if (count_of(req, http::field::origin) == 1) {
      const std::string_view origin = sv(req[http::field::origin]);
      for (const auto& o : cfg_->allowed_origins)
        if (iequals_ascii(origin, o)) allowed = true;
    }
    if (!allowed) {
      reject(403, "Forbidden", "origin not allowed", {}, RejectReason::origin);
      return;
    }
  }
  const std::string* subprotocol = choose_subprotocol(req, cfg_->subprotocols);

  if (raw_) {
    accept_raw(sv(req[http::field::sec_websocket_key]), subprotocol);
    return;
  }

  // Beast's accept() answers 400 to anything but HTTP/1.1; RFC 6455 asks
  // for 1.1 or higher, so a later version is answered as 1.1.
  if (req.version() > 11) req.version(11);
  // Beast reads only the first Connection and Upgrade fields, so a request
  // that spreads their tokens over several fields (as RFC 9110 §5.3
  // allows) got Beast's own 400 after passing the checks above (found by
  // fuzzing); and it answers "Expect: 100-continue" with a 100 before the
  // 101, which no WebSocket client awaits (and there is no body to
  // continue). Everything it checks was checked above, so it gets the
  // request in the one form it reads.
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::upgrade, "websocket");
  req.erase(http::field::expect);
  // The decorator is stored inline in Beast's stream (one pointer captured).
  ws_->set_option(websocket::stream_base::decorator([subprotocol](websocket::response_type& res) {
    res.set(http::field::server, "shoal");
    if (subprotocol) res.set(http::field::sec_websocket_protocol, *subprotocol);
  }));
  // Beast builds the 101 from `req` before async_accept returns, so the
  // parser may go out of scope; the handshake deadline still covers the write.
  ws_->async_accept(req, [self = shared_from_this()](const error_code& e) { self->on_accepted(e); });
}

template <typename Layer>
void WebSocketSession<Layer>::reject(unsigned status, std::string_view phrase, std::string_view body,
                              std::string_view extra_headers, RejectReason why) {
  stats().rejected[static_cast<int>(why)].add();
  log_debug("conn {}: upgrade refused: {} {}", id_string(), status, body);
  phase_ = Phase::closing;  // the response below is this session's ending
  close(CloseReason::protocol_error);
  partial_.reset();
  auto response = std::make_unique<std::string>(http_error(status, phrase, body, extra_headers));
  if constexpr (kTls) {
    write_then_finish_tls(std::move(response),
                          deadline_ms_ != kNever ? deadline_ms_ : closing_deadline());
    return;
  }
  // Usually the kernel takes it all at once.
  error_code ec;
  std::size_t sent = socket().write_some(asio::buffer(*response), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    sent = 0;
  } else if (ec) {
    hard_close();
    return;
  }
  const std::int64_t deadline = deadline_ms_ != kNever ? deadline_ms_ : closing_deadline();
  if (sent == response->size()) {
    error_code ignored;
    socket().shutdown(asio::socket_base::shutdown_send, ignored);
    linger(deadline);
    return;
  }
  phase_ = Phase::closing;
  const asio::const_buffer rest(response->data() + sent, response->size() - sent);
  asio::async_write(socket(), rest,
                    [self = shared_from_this(), r = std::move(response), deadline](
                        const error_code& e, std::size_t) { self->half_close_and_linger(e, deadline); });
}

// wss: after an error response or a close frame written by the session:
// close_notify and the TCP half-close, then lingering to the peer's EOF, all
// before `deadline_ms`.
template <typename Layer>
void WebSocketSession<Layer>::write_then_finish_tls(std::unique_ptr<std::string> bytes,
                                                   std::int64_t deadline_ms) {
  phase_ = Phase::closing;
  const asio::const_buffer buffer(bytes->data(), bytes->size());
  asio::async_write(ws_->next_layer().next_layer(), buffer,
                    [self = shared_from_this(), b = std::move(bytes), deadline_ms](
                        const error_code& e, std::size_t) {
                      if (self->phase_ == Phase::done) return;
                      if (e) {
                        self->hard_close();
                        return;
                      }
                      self->finish_response_tls(deadline_ms);
                    });
}

template <typename Layer>
void WebSocketSession<Layer>::finish_response_tls(std::int64_t deadline_ms) {
  phase_ = Phase::closing;
  deadline_ms_ = deadline_ms;
  if (deadline_ms != kNever) arm(deadline_ms);
  ws_->next_layer().async_close_notify([self = shared_from_this(), deadline_ms](const error_code& e) {
    self->half_close_and_linger(e, deadline_ms);
  });
}

template <typename Layer>
void WebSocketSession<Layer>::on_accepted(const error_code& ec) {
  if (closed()) return;
  if (ec) {
    stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
    end_with_error(ec, "accept");
    return;
  }
  phase_ = Phase::open;
  deadline_ms_ = kNever;
  const std::int64_t now = Shard::now_ms();
  ws_->next_layer().last_read_ms = now;
  log_debug("conn {}: websocket open", id_string());
  touch();
  schedule_open_deadlines(now);
  park();
}

// --- echo --------------------------------------------------------------------

// Idle: no Beast operation, no message buffer, one socket wait. Only called
// when Beast's read buffer is empty (FrameTracker), else a frame already read
// would wait for the next bytes from the client.
template <typename Layer>
void WebSocketSession<Layer>::park() {
  auto& layer = ws_->next_layer();
  if (const error_code ec = layer.flush()) {
    end_with_error(ec, "write");
    return;
  }
  if (layer.pending() != 0) {
    // The client is slow to take its echoes: a read sends them first and
    // waits until they are gone (write_timeout bounds the wait).
    schedule_open_deadlines(Shard::now_ms());
    do_read();
    return;
  }
  layer.release();
  buffer_.shrink_to_fit();  // empty here: gives its memory back
  if constexpr (kTls) {
    do_read();
  } else {
    socket().async_wait(asio::socket_base::wait_read,
                        [self = shared_from_this()](const error_code& ec) { self->on_readable(ec); });
  }
}

template <typename Layer>
void WebSocketSession<Layer>::on_readable(const error_code& ec) {
  if (closed() || phase_ != Phase::open) return;  // a closing handshake reads now
  if (ec) {
    end_with_error(ec, "wait");
    return;
  }
  ws_->next_layer().last_read_ms = Shard::now_ms();
  // The answer to our keepalive ping is taken here, so that a live idle
  // connection stays parked instead of holding a Beast read until its next
  // message.
  if (ping_sent_ms_ != 0 && take_pong()) {
    park();
    return;
  }
  do_read();
}

// Takes one complete, well-formed pong frame (FIN, no RSV bits, masked,
// payload <= 125) from the socket, if that is what comes next. Beast's read
// buffer is empty (we were parked) and a pong changes no Beast state.
template <typename Layer>
bool WebSocketSession<Layer>::take_pong() {
  unsigned char b[6 + 125];
  const ssize_t n = ::recv(socket().native_handle(), b, sizeof b, MSG_PEEK);
  if (n < 6 || b[0] != 0x8A || !(b[1] & 0x80u)) return false;
  const std::size_t total = 6 + (b[1] & 0x7fu);
  if ((b[1] & 0x7fu) > 125 || static_cast<std::size_t>(n) < total) return false;
  if (::recv(socket().native_handle(), b, total, 0) != static_cast<ssize_t>(total)) return false;
  on_pong();
  return true;
}

template <typename Layer>
void WebSocketSession<Layer>::do_read() {
  ws_->async_read_some(buffer_, kReadStep,
                      [self = shared_from_this()](const error_code& ec, std::size_t n) {
                        self->on_read(ec, n);
                      });
}

template <typename Layer>
void WebSocketSession<Layer>::on_read(const error_code& ec, std::size_t) {
  if (closed()) return;
  if (ec) {
    on_read_failed(ec);
    return;
  }
  if (!ws_->is_message_done()) {
    do_read();
    return;
  }
  if (ws_->got_text() && ends_inside_utf8_sequence(static_cast<const unsigned char*>(buffer_.data().data()),
                                                   buffer_.size())) {
    fail_connection(1007, "text message ends inside a UTF-8 sequence");
    return;
  }
  ++messages_read_;
  ListenerStats& s = stats();
  s.messages_received.add();
  s.bytes_received.add(buffer_.size());
  touch();

  const std::int64_t now = Shard::now_ms();
  writing_ = true;
  write_started_ms_ = now;
  if (cfg_->write_timeout.count() > 0) arm(now + cfg_->write_timeout.count());
  ws_->text(ws_->got_text());
  // Gathered only when more of the client's bytes are already in Beast's
  // buffer: the echo of the last one goes out with the gathered ones (or
  // alone, with no copy, as for one message in flight).
  const auto& t = ws_->next_layer().tracker;
  ws_->next_layer().gather(!(t.at_message_end() && t.messages_ended() == messages_read_));
  ws_->async_write(buffer_.data(), [self = shared_from_this()](const error_code& e, std::size_t n) {
    self->on_write(e, n);
  });
}

template <typename Layer>
void WebSocketSession<Layer>::on_write(const error_code& ec, std::size_t n) {
  writing_ = false;
  ws_->next_layer().gather(false);
  if (closed()) return;
  if (ec) {
    end_with_error(ec, "write");
    return;
  }
  ListenerStats& s = stats();
  s.messages_sent.add();
  s.bytes_sent.add(n);
  touch();
  buffer_.consume(buffer_.size());
  const auto& t = ws_->next_layer().tracker;
  if (t.at_message_end() && t.messages_ended() == messages_read_) {
    park();
  } else {
    do_read();  // the next frames are already in Beast's buffer
  }
}

// Beast ends a failed read after it has sent its close frame and our
// teardown has half-closed, so the code it sent follows from the error.
template <typename Layer>
void WebSocketSession<Layer>::on_read_failed(const error_code& ec) {
  using wse = websocket::error;
  if (ec == wse::closed) {
    // The client's close, echoed by Beast (counted in on_control). With
    // both close frames exchanged the client sends nothing more, and RFC
    // 6455 §7.1.1 asks the server to close TCP at once.
    close(CloseReason::peer_closed);
    return;
  }
  if (ec == wse::message_too_big || ec == websocket::condition::protocol_violation) {
    const std::uint16_t code = ec == wse::message_too_big    ? 1009
                               : ec == wse::bad_frame_payload ? 1007
                                                              : 1002;
    count_close_code(code);
    log_debug("conn {}: failed with close {}: {}", id_string(), code, ec.message());
    linger(closing_deadline());
    close(CloseReason::protocol_error);
    return;
  }
  end_with_error(ec, "read");
}

template <typename Layer>
void WebSocketSession<Layer>::on_control(websocket::frame_type kind) {
  switch (kind) {
    case websocket::frame_type::ping:
      touch();  // the client keeping its connection alive is activity
      break;
    case websocket::frame_type::pong:
      on_pong();
      break;
    case websocket::frame_type::close: {
      if (close_code_seen_) break;
      close_code_seen_ = true;
      const std::uint16_t code = ws_->reason().code;
      count_close_code(code == websocket::close_code::none ? kNoStatus : code);
      // Beast 1.81 takes any code from 3000 up as valid; RFC 6455 §7.4
      // defines none above 4999, so such a close fails the connection.
      if (code >= 5000) {
        fail_connection(1002, "close code above 4999", true);
        break;
      }
      // Beast answers a client's close with the same code (1000 for none),
      // unless we started the closing handshake ourselves.
      if (phase_ == Phase::open) count_close_code(code == websocket::close_code::none ? 1000 : code);
      break;
    }
  }
}

// Fails the connection (RFC 6455 §7.1.7) for a reason Beast does not see:
// our close frame, then the half-close, as Beast does for the ones it
// detects. Beast has no call for this, so the 4-byte frame is written here
// directly, which is safe only while no Beast write is in flight; otherwise
// the socket just closes. A Beast operation still running afterwards fails
// on the half-closed socket and finds the session closed.
template <typename Layer>
void WebSocketSession<Layer>::fail_connection(std::uint16_t code, const char* why,
                                              [[maybe_unused]] bool in_beast_read) {
  log_debug("conn {}: failed with close {}: {}", id_string(), code, why);
  phase_ = Phase::closing;  // what follows is this session's ending
  close(CloseReason::protocol_error);
  if constexpr (kTls) {
    // Through TLS the frame is an asynchronous write, which must not meet
    // Beast's: inside a Beast read (which goes on to answer the close
    // frame), the connection just closes.
    if (writing_ || ping_in_flight_ || in_beast_read) {
      hard_close();
      return;
    }
    count_close_code(code);
    const std::int64_t deadline = closing_deadline();
    deadline_ms_ = deadline;
    arm(deadline);
    write_then_finish_tls(
        std::make_unique<std::string>(std::initializer_list<char>{
            '\x88', '\x02', static_cast<char>(code >> 8), static_cast<char>(code & 0xff)}),
        deadline);
    return;
  }
  if (!writing_ && !ping_in_flight_ && !ws_->next_layer().flush() && ws_->next_layer().pending() == 0) {
    const unsigned char close_frame[4] = {0x88, 0x02, static_cast<unsigned char>(code >> 8),
                                          static_cast<unsigned char>(code & 0xff)};
    error_code ec;
    const std::size_t n = socket().write_some(asio::buffer(close_frame), ec);
    if (!ec && n == sizeof close_frame) {
      count_close_code(code);
      socket().shutdown(asio::socket_base::shutdown_send, ec);
      linger(closing_deadline());
      return;
    }
  }
  hard_close();
}

// The next ping is due ping_interval after this pong, which is usually
// earlier than the pong deadline the timer is armed for.
template <typename Layer>
void WebSocketSession<Layer>::on_pong() {
  if (ping_sent_ms_ == 0) return;  // unsolicited
  ping_sent_ms_ = 0;
  if (phase_ == Phase::open) schedule_open_deadlines(Shard::now_ms());
}

template <typename Layer>
void WebSocketSession<Layer>::send_ping() {
  ping_sent_ms_ = Shard::now_ms();
  if (raw_) {
    // Nothing is added behind echoes a client has not taken: pong_timeout
    // or write_timeout ends such a connection.
    if (raw_->out.empty()) {
      static constexpr unsigned char kPingFrame[2] = {0x89, 0x00};
      raw_send(kPingFrame, sizeof kPingFrame);
    }
    return;
  }
  if (ping_in_flight_) return;
  ping_in_flight_ = true;
  // Beast serialises the ping after a write in flight; nothing else is sent
  // while a client does not read, and pong_timeout then ends it.
  ws_->async_ping({}, [self = shared_from_this()](const error_code& ec) {
    self->ping_in_flight_ = false;
    if (ec && ec != asio::error::operation_aborted && !self->closed()) self->end_with_error(ec, "ping");
  });
}

// --- echo without Beast ------------------------------------------------------

// Where the frames one read produces are built: one per thread, and so one
// per shard (each shard is one thread), never held across an asynchronous
// operation. Whatever the kernel does not take is copied to the
// connection's own RawEcho::out.
ByteBuffer& echo_out() {
  thread_local ByteBuffer out;
  return out;
}

// A frame cut by the end of a read stays in RawEcho::in. Up to this size it
// goes back into the shard's scratch buffer for the next read; a larger one
// (a big message) grows in place, by kReadStep per read.
constexpr std::size_t kCarryInScratch = 16 * 1024;
// Reads per readiness event, so that one busy client cannot hold the shard.
constexpr int kReadsPerWakeup = 4;

// RFC 6455 §4.2.2: the 101 with Sec-WebSocket-Accept, the base64 of the
// SHA-1 of the key and the protocol's GUID (OpenSSL computes both). It goes
// out with a direct send; what the kernel does not take waits like an echo.
template <typename Layer>
void WebSocketSession<Layer>::accept_raw(std::string_view key, const std::string* subprotocol) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char keyed[64];  // a valid key is 24 characters
  std::memcpy(keyed, key.data(), key.size());
  std::memcpy(keyed + key.size(), kGuid.data(), kGuid.size());
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(keyed, key.size() + kGuid.size(), digest);
  char accept[32];  // 28 characters and a NUL
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(accept), digest, SHA_DIGEST_LENGTH);

  std::string response;
  response.reserve(192);
  response += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: ";
  response += accept;
  response += "\r\nServer: shoal\r\n";
  if (subprotocol) {
    response += "Sec-WebSocket-Protocol: ";
    response += *subprotocol;
    response += "\r\n";
  }
  response += "\r\n";

  phase_ = Phase::open;
  deadline_ms_ = kNever;
  const std::int64_t now = Shard::now_ms();
  raw_->last_read_ms = now;
  enable_read_hints(raw_->socket.native_handle());
  log_debug("conn {}: websocket open", id_string());
  touch();
  if (!raw_send(reinterpret_cast<const unsigned char*>(response.data()), response.size())) return;
  schedule_open_deadlines(now);
  if (raw_->out.empty()) {
    raw_wait_read();
  } else {
    raw_wait_write();
  }
}

// Only once a read found the socket empty (ready_wait.hpp).
template <typename Layer>
void WebSocketSession<Layer>::raw_wait_read() {
  raw_->read_wait.start(shard_.reactor(), raw_->socket, shared_from_this());
}

template <typename Layer>
void WebSocketSession<Layer>::raw_wait_write() {
  raw_->socket.async_wait(asio::socket_base::wait_write,
                          [self = shared_from_this()](const error_code& ec) { self->raw_on_writable(ec); });
}

template <typename Layer>
void WebSocketSession<Layer>::raw_on_readable(const error_code& wait_ec) {
  if (phase_ == Phase::done) return;
  if (wait_ec) {
    end_with_error(wait_ec, "wait");
    return;
  }
  RawEcho& x = *raw_;
  if (!x.out.empty()) {  // a ping or close frame still waits for the kernel
    raw_wait_write();
    return;
  }
  const int fd = x.socket.native_handle();
  unsigned char* const scratch = reinterpret_cast<unsigned char*>(shard_.scratch());
  ByteBuffer& out = echo_out();
  out.clear();
  WsEchoResult seen;
  error_code read_error;
  bool eof = false;
  bool drained = false;  // a read found the socket empty
  for (int round = 0; round < kReadsPerWakeup; ++round) {
    const bool in_scratch = x.in.size() <= kCarryInScratch;
    std::size_t have = 0;
    unsigned char* buf;
    std::size_t room;
    if (in_scratch) {
      have = x.in.size();
      if (have != 0) std::memcpy(scratch, x.in.data(), have);
      x.in.clear();
      buf = scratch + have;
      room = Shard::scratch_size - have;
    } else {
      buf = x.in.prepare(kReadStep);
      room = kReadStep;
    }
    bool more = true;
    const long got = read_hinted(fd, buf, room, more);
    if (got <= 0) {
      if (in_scratch && have != 0) x.in.append(scratch, have);  // put back
      if (got == 0) {
        eof = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        read_error = error_code(errno, boost::system::system_category());
      } else {
        drained = true;
      }
      break;
    }
    x.last_read_ms = Shard::now_ms();
    unsigned char* data;
    std::size_t n;
    if (in_scratch) {
      data = scratch;
      n = have + static_cast<std::size_t>(got);
    } else {
      x.in.commit(static_cast<std::size_t>(got));
      data = x.in.data();
      n = x.in.size();
    }
    const WsEchoResult r = x.engine.feed(data, n, out);
    seen.messages += r.messages;
    seen.message_bytes += r.message_bytes;
    seen.ping = seen.ping || r.ping;
    seen.pong = seen.pong || r.pong;
    if (r.end != WsEchoResult::End::none) {
      seen.end = r.end;
      seen.code = r.code;
      seen.why = r.why;
      x.in.release();
      break;
    }
    if (in_scratch) {
      if (r.consumed < n) x.in.append(data + r.consumed, n - r.consumed);
    } else {
      x.in.consume(r.consumed);
    }
    if (!more) {  // the kernel has nothing more, not even a FIN
      drained = true;
      break;
    }
  }

  if (seen.messages != 0) {
    ListenerStats& st = stats();
    st.messages_received.add(seen.messages);
    st.bytes_received.add(seen.message_bytes);
    st.messages_sent.add(seen.messages);
    st.bytes_sent.add(seen.message_bytes);
  }
  if (phase_ == Phase::open && (seen.messages != 0 || seen.ping)) touch();
  if (seen.pong) on_pong();
  if (!out.empty()) {
    if (!raw_send(out.data(), out.size())) return;
    out.clear();
  }
  if (out.capacity() > 4 * kReadStep) out.release();  // after a large message

  switch (seen.end) {
    case WsEchoResult::End::peer_close:
      if (!close_code_seen_) {
        close_code_seen_ = true;
        count_close_code(seen.code);
      }
      if (phase_ == Phase::open) {
        // Our answer, with the same code, is in the kernel (or waits).
        count_close_code(seen.code == kNoStatus ? 1000 : seen.code);
        raw_finish(/*then_linger=*/false);
        close(CloseReason::peer_closed);
        return;
      }
      raw_finish(/*then_linger=*/false);
      return;
    case WsEchoResult::End::fail:
      if (phase_ != Phase::open) {  // a broken close handshake
        hard_close();
        return;
      }
      log_debug("conn {}: failed with close {}: {}", id_string(), seen.code, seen.why);
      count_close_code(seen.code);
      raw_finish(/*then_linger=*/true);
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
    end_with_error(asio::error::eof, "read");
    return;
  }
  if (!x.out.empty()) {
    // The client is slow to take its echoes: nothing more is read until
    // it has (write_timeout bounds the wait).
    if (phase_ == Phase::open) schedule_open_deadlines(Shard::now_ms());
    raw_wait_write();
    return;
  }
  if (x.in.empty() && x.in.capacity() != 0) x.in.release();
  if (drained) {
    raw_wait_read();
  } else {
    // Still busy after these rounds: come back after the shard's other
    // ready handlers (a wait would not fire: no new edge need come).
    asio::post(shard_.executor(), [self = shared_from_this()] { self->raw_on_readable({}); });
  }
}

template <typename Layer>
bool WebSocketSession<Layer>::raw_send(const unsigned char* bytes, std::size_t n) {
  RawEcho& x = *raw_;
  if (!x.out.empty()) {  // behind what already waits
    x.out.append(bytes, n);
    return true;
  }
  std::size_t sent = 0;
  if (!raw_send_some(bytes, n, sent)) return false;
  if (sent < n) {
    x.out_since_ms = Shard::now_ms();
    x.out.append(bytes + sent, n - sent);
  }
  return true;
}

template <typename Layer>
bool WebSocketSession<Layer>::raw_send_some(const unsigned char* bytes, std::size_t n, std::size_t& sent) {
  const int fd = raw_->socket.native_handle();
  while (sent < n) {
    const ssize_t r = ::send(fd, bytes + sent, n - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0) {
      sent += static_cast<std::size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    end_with_error(error_code(r < 0 ? errno : EPIPE, boost::system::system_category()), "write");
    return false;
  }
  return true;
}

template <typename Layer>
bool WebSocketSession<Layer>::raw_flush() {
  RawEcho& x = *raw_;
  std::size_t sent = 0;
  if (!raw_send_some(x.out.data(), x.out.size(), sent)) return false;
  x.out.consume(sent);
  if (x.out.empty()) x.out.release();
  return true;
}

template <typename Layer>
void WebSocketSession<Layer>::raw_on_writable(const error_code& ec) {
  if (phase_ == Phase::done) return;
  if (ec) {
    end_with_error(ec, "write");
    return;
  }
  if (!raw_flush()) return;
  if (!raw_->out.empty()) {
    raw_wait_write();
    return;
  }
  if (raw_->finishing) {
    raw_finish(raw_->linger_after_flush);
    return;
  }
  if (phase_ == Phase::open) {
    touch();  // the client took its echoes
    schedule_open_deadlines(Shard::now_ms());
  }
  raw_on_readable({});  // what came meanwhile, or a wait for more
}

template <typename Layer>
void WebSocketSession<Layer>::raw_finish(bool then_linger) {
  if (!raw_->finishing) {
    raw_->finishing = true;
    raw_->linger_after_flush = then_linger;
    if (phase_ == Phase::open) {  // else our own close started the deadline
      phase_ = Phase::closing;
      deadline_ms_ = closing_deadline();
      arm(deadline_ms_);
    }
  }
  if (!raw_->out.empty()) {
    raw_wait_write();  // raw_on_writable comes back here
    return;
  }
  if (raw_->linger_after_flush) {
    error_code ignored;
    raw_->socket.shutdown(asio::socket_base::shutdown_send, ignored);
    linger(deadline_ms_);
    return;
  }
  hard_close();  // both close frames exchanged (RFC 6455 §7.1.1)
}

// --- endings -----------------------------------------------------------------

// Closed by the shard (idle sweep, drain) or by a deadline or error of the
// session's own. An open WebSocket is told why with a close frame (1001
// going away) for drain and idle_timeout when nothing is being written;
// otherwise, or before the upgrade is done, the socket closes. A session
// already ending in its own way (closing) is left to it.
template <typename Layer>
void WebSocketSession<Layer>::on_close(CloseReason reason) {
  if (phase_ == Phase::closing || phase_ == Phase::done) return;
  const bool writing = raw_ ? !raw_->out.empty() : writing_;
  if (phase_ == Phase::open && !writing &&
      (reason == CloseReason::drain || reason == CloseReason::idle_timeout)) {
    start_ws_close(websocket::close_code::going_away,
                   reason == CloseReason::drain ? "going away" : "idle timeout");
    return;
  }
  hard_close();
}

template <typename Layer>
void WebSocketSession<Layer>::start_ws_close(std::uint16_t code, const char* why) {
  phase_ = Phase::closing;
  deadline_ms_ = closing_deadline();
  arm(deadline_ms_);
  count_close_code(code);
  if (raw_) {
    // Then the client's close is awaited by the read in progress (the
    // engine now drops data frames), bounded by the deadline.
    raw_->engine.closing();
    const std::size_t n = std::min<std::size_t>(std::strlen(why), 123);
    unsigned char frame[4 + 123] = {0x88, static_cast<unsigned char>(2 + n),
                                    static_cast<unsigned char>(code >> 8),
                                    static_cast<unsigned char>(code & 0xff)};
    std::memcpy(frame + 4, why, n);
    raw_send(frame, 4 + n);
    return;
  }
  ws_->async_close(websocket::close_reason(static_cast<websocket::close_code>(code), why),
                  [self = shared_from_this()](const error_code& ec) { self->on_ws_closed(ec); });
}

template <typename Layer>
void WebSocketSession<Layer>::on_ws_closed(const error_code& ec) {
  if (phase_ == Phase::done) return;
  if (ec) {
    hard_close();
    return;
  }
  if (!close_code_seen_) {
    close_code_seen_ = true;
    const std::uint16_t code = ws_->reason().code;
    count_close_code(code == websocket::close_code::none ? kNoStatus : code);
  }
  hard_close();  // both close frames exchanged (see on_read_failed)
}

// After failing a connection or refusing an upgrade, and the half-close:
// read and discard until the peer closes too, or the deadline. The peer may
// still be sending (the rest of an oversized message, a request body), and
// closing with unread bytes would send a reset, which can destroy the close
// frame or the error response before the peer reads it.
template <typename Layer>
void WebSocketSession<Layer>::half_close_and_linger(const error_code& ec, std::int64_t deadline_ms) {
  if (phase_ == Phase::done) return;
  if (ec) {
    hard_close();
    return;
  }
  error_code ignored;
  socket().shutdown(asio::socket_base::shutdown_send, ignored);
  linger(deadline_ms);
}

template <typename Layer>
void WebSocketSession<Layer>::linger(std::int64_t deadline_ms) {
  phase_ = Phase::closing;
  deadline_ms_ = deadline_ms;
  if (deadline_ms != kNever) arm(deadline_ms);
  socket().async_wait(asio::socket_base::wait_read, [self = shared_from_this()](const error_code& ec) {
    self->on_linger_readable(ec);
  });
}

template <typename Layer>
void WebSocketSession<Layer>::on_linger_readable(const error_code& wait_ec) {
  if (phase_ == Phase::done) return;
  if (wait_ec) {
    hard_close();
    return;
  }
  for (int round = 0; round < 4; ++round) {
    error_code ec;
    socket().read_some(asio::buffer(shard_.scratch(), Shard::scratch_size), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      linger(deadline_ms_);
      return;
    }
    if (ec) {  // EOF (the peer closed too) or an error: done
      hard_close();
      return;
    }
  }
  linger(deadline_ms_);
}

template <typename Layer>
void WebSocketSession<Layer>::end_with_error(const error_code& ec, const char* op) {
  if (closed()) {
    hard_close();
    return;
  }
  const CloseReason reason = classify(ec);
  if (phase_ == Phase::open && (reason == CloseReason::peer_closed || reason == CloseReason::reset))
    count_close_code(kAbnormal);  // TCP ended without a close frame
  fail(ec, op);  // on_close() closes the socket
}

template <typename Layer>
void WebSocketSession<Layer>::hard_close() {
  phase_ = Phase::done;
  timer_at_ms_ = 0;
  timer_.cancel();
  error_code ignored;
  socket().close(ignored);  // pending operations complete with operation_aborted
}

// --- deadlines ---------------------------------------------------------------

// The closing handshake gets as long as the opening one (Beast's rule too).
// A closing connection has left the shard's idle list, so it is bounded even
// when handshake_timeout is 0 (no limit on the upgrade).
template <typename Layer>
std::int64_t WebSocketSession<Layer>::closing_deadline() const {
  const auto t = cfg_->handshake_timeout.count();
  return Shard::now_ms() + (t > 0 ? t : kFallbackClosingMs);
}

// The timer only ever moves earlier: a deadline later than the armed expiry
// is found when the timer fires and recomputes. So an echo costs no timer
// operation unless its write deadline is the earliest one.
template <typename Layer>
void WebSocketSession<Layer>::arm(std::int64_t at_ms) {
  if (phase_ == Phase::done || at_ms == kNever) return;
  if (timer_at_ms_ != 0 && timer_at_ms_ <= at_ms) return;
  timer_at_ms_ = at_ms;
  // Absolute: Shard::now_ms() and steady_clock count from the same origin
  // (CLOCK_MONOTONIC), so sessions that arm the same millisecond share one
  // expiry, and the reactor runs them all from one wakeup.
  timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::milliseconds(at_ms)));
  timer_.async_wait([self = shared_from_this()](const error_code& ec) { self->on_timer(ec); });
}

template <typename Layer>
void WebSocketSession<Layer>::on_timer(const error_code& ec) {
  if (ec) return;  // re-armed or closed
  // The timer fired at its expiry by CLOCK_MONOTONIC, which the coarse clock
  // of now_ms() may still trail by a tick: what was due is due.
  const std::int64_t now = std::max(Shard::now_ms(), timer_at_ms_);
  timer_at_ms_ = 0;
  switch (phase_) {
    case Phase::done:
      return;
    case Phase::handshake:
      if (now >= deadline_ms_) {
        // A client that trickles its request, or sends none.
        stats().rejected[static_cast<int>(RejectReason::handshake_failed)].add();
        log_debug("conn {}: handshake timeout", id_string());
        close(CloseReason::idle_timeout);
        return;
      }
      arm(deadline_ms_);
      return;
    case Phase::closing:
      if (now >= deadline_ms_) {
        hard_close();
        return;
      }
      arm(deadline_ms_);
      return;
    case Phase::open:
      break;
  }
  const std::int64_t write_timeout = cfg_->write_timeout.count();
  if (write_timeout > 0 && now - write_since() >= write_timeout) {
    log_debug("conn {}: write timeout", id_string());
    close(CloseReason::write_timeout);
    return;
  }
  const std::int64_t ping_interval = cfg_->ping_interval.count();
  if (ping_interval > 0) {
    const std::int64_t last = last_read_ms();
    if (ping_sent_ms_ != 0 && last > ping_sent_ms_) ping_sent_ms_ = 0;  // the peer spoke
    const std::int64_t pong_timeout = cfg_->pong_timeout.count();
    if (ping_sent_ms_ == 0) {
      if (now - last >= ping_interval) send_ping();
    } else if (pong_timeout == 0) {
      // No pong deadline: the peer is pinged on, and only idle_timeout ends
      // it (0 means "no limit" like every duration in the config).
      if (now - ping_sent_ms_ >= ping_interval) send_ping();
    } else {
      if (now - ping_sent_ms_ >= pong_timeout) {
        log_debug("conn {}: no pong within {} ms", id_string(), pong_timeout);
        close(CloseReason::ping_timeout);
        return;
      }
    }
  }
  schedule_open_deadlines(now);
}

template <typename Layer>
std::int64_t WebSocketSession<Layer>::write_since() const noexcept {
  std::int64_t since = writing_ ? write_started_ms_ : kNever;
  if (raw_) return raw_->out.empty() ? since : std::min(since, raw_->out_since_ms);
  const auto& layer = ws_->next_layer();
  if (layer.pending() != 0) since = std::min(since, layer.pending_since_ms());
  return since;
}

template <typename Layer>
void WebSocketSession<Layer>::schedule_open_deadlines(std::int64_t now) {
  std::int64_t next = kNever;
  const std::int64_t write_timeout = cfg_->write_timeout.count();
  if (write_timeout > 0 && write_since() != kNever) next = write_since() + write_timeout;
  const std::int64_t ping_interval = cfg_->ping_interval.count();
  if (ping_interval > 0) {
    const std::int64_t pong_timeout = cfg_->pong_timeout.count();
    const std::int64_t keepalive = ping_sent_ms_ == 0 ? last_read_ms() + ping_interval
                                   : pong_timeout > 0 ? ping_sent_ms_ + pong_timeout
                                                      : ping_sent_ms_ + ping_interval;
    next = std::min(next, keepalive);
  }
  if (next != kNever) arm(std::max(next, now));
}

static_assert(sizeof(WebSocketSession<WsSocket>) <= 288,
              "WebSocketSession grew: it is in every WebSocket connection");
static_assert(sizeof(WebSocketSession<WssSocket>) <= 288,
              "WebSocketSession grew: it is in every WebSocket connection");

}  // namespace

void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const asio::ip::tcp::endpoint& peer,
                             const WebSocketConfig& config) {
  std::make_shared<WebSocketSession<WsSocket>>(shard, listener_index, std::move(socket), client,
                                               config)
      ->start(peer);
}

void start_websocket_session(Shard& shard, std::size_t listener_index, tcp_socket socket,
                             PerIpCounts::Entry* client, const asio::ip::tcp::endpoint& peer,
                             const WebSocketConfig& config, TlsSettingsPtr tls) {
  std::make_shared<WebSocketSession<WssSocket>>(shard, listener_index, std::move(socket), client,
                                                config, std::move(tls))
      ->start(peer);
}

}  // namespace shoal
