#include "engine.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "controls.hpp"
#include "runtime/ready_wait.hpp"
#include "tls_client.hpp"
#include "ws_frame.hpp"

namespace shoal::load {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
// Sockets and timers typed with the io_context's own executor: no
// type-erased executor copy per operation.
using socket_t = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using timer_t = asio::basic_waitable_timer<std::chrono::steady_clock,
                                           asio::wait_traits<std::chrono::steady_clock>,
                                           asio::io_context::executor_type>;

Pattern::Pattern(bool text) : bytes_(period + max_window) {
  std::mt19937 rng(0x5ba1u);
  static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (std::size_t i = 0; i < period; ++i) {
    const auto r = rng();
    bytes_[i] = text ? letters[r % 64] : static_cast<char>(r & 0xff);
  }
  for (std::size_t i = period; i < bytes_.size(); ++i) bytes_[i] = bytes_[i - period];
}

namespace {

ErrorKind classify(int err) {
  switch (err) {
    case ECONNREFUSED: return ErrorKind::refused;
    case ETIMEDOUT: return ErrorKind::timeout;
    case ECONNRESET: case EPIPE: case ECONNABORTED: return ErrorKind::reset;
    case EADDRNOTAVAIL: case EADDRINUSE: return ErrorKind::ports_exhausted;
    case EMFILE: case ENFILE: return ErrorKind::fd_limit;
    default: return ErrorKind::other;
  }
}

std::chrono::steady_clock::time_point to_tp(std::int64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}

// Send times of the messages in flight on one connection, oldest first.
class TsRing {
 public:
  bool empty() const { return count_ == 0; }
  std::uint32_t size() const { return count_; }
  std::int64_t front() const { return buf_[head_]; }
  bool push(std::int64_t ts, std::uint32_t max) {
    if (count_ == cap_) {
      if (cap_ >= max) return false;
      grow();
    }
    buf_[(head_ + count_) & (cap_ - 1)] = ts;
    ++count_;
    return true;
  }
  std::int64_t pop() {
    const std::int64_t v = buf_[head_];
    head_ = (head_ + 1) & (cap_ - 1);
    --count_;
    return v;
  }
  void clear() { head_ = count_ = 0; }

 private:
  void grow() {
    const std::uint32_t ncap = cap_ ? cap_ * 2 : 4;
    std::unique_ptr<std::int64_t[]> nb(new std::int64_t[ncap]);
    for (std::uint32_t i = 0; i < count_; ++i) nb[i] = buf_[(head_ + i) & (cap_ - 1)];
    buf_ = std::move(nb);
    cap_ = ncap;
    head_ = 0;
  }
  std::unique_ptr<std::int64_t[]> buf_;
  std::uint32_t cap_ = 0, head_ = 0, count_ = 0;
};

// tls_handshaking: TCP connected, TLS handshake under way (tls://, wss://);
// handshaking: the WebSocket upgrade.
enum class State : std::uint8_t { idle, connecting, tls_handshaking, handshaking, open, closed };

// --mode pubsub: a connection's part. Publishers number their messages;
// subscribers keep, per publisher of their channel, the sequence check and
// the count its end message gave.
struct PubSubConn {
  struct Stream {
    pubsub::SeqTracker seq;
    std::uint64_t end = UINT64_MAX;  // messages the publisher said it sent; UINT64_MAX: not said yet
    bool done = false;
  };
  bool publisher = false;
  std::uint64_t index = 0;    // publisher j or subscriber i
  std::uint64_t channel = 0;
  std::uint64_t sent = 0;     // publisher: messages queued
  bool ended = false;         // publisher: its end message is queued
  std::vector<Stream> streams;  // subscriber: by publisher j / channels
  std::uint64_t streams_done = 0;
  bool counted_waiting = false;  // subscriber: in the engine's subscribers_waiting
  char head[pubsub::text_header] = {};  // the message's header as it arrives
  pubsub::Header header;
  std::uint64_t pad_offset = 0;
};

struct Conn;
// What a read wait holds: the engine and the connection.
struct ReadOwner {
  Engine::Impl* engine = nullptr;
  Conn* conn = nullptr;
};
void on_read_ready(ReadOwner owner, const boost::system::error_code& ec);  // after Engine::Impl

struct Conn {
  explicit Conn(asio::io_context& ioc) : sock(ioc.get_executor()) {}
  socket_t sock;
  std::uint32_t id = 0;
  State state = State::idle;
  bool active = false;
  bool read_armed = false;     // read_wait is pending (or its completion is)
  bool write_armed = false;
  bool dirty = false;
  bool msg_bad = false;
  bool closing = false;        // we sent a WebSocket close
  bool write_wants_read = false;  // TLS: SSL_write said WANT_READ; retried after the next read
  bool in_pending = false;     // counted in the engine's connects in progress
  bool read_wants_write = false;  // TLS: SSL_read said WANT_WRITE; retried when writable
  bool close_judged = false;   // close_after=: this connection's close is counted as asked or not
  std::uint8_t target = 0;     // index into the engine's targets (pubsub: one of its URLs)
  std::uint32_t port_attempt = 0;  // explicit source ports: candidate index
  std::uint8_t connect_retries = 0;
  std::uint64_t salt = 0;      // pattern offset of this connection's stream
  std::int64_t t_start = 0;    // connect started
  std::int64_t t_connected = 0;  // TCP connected; then TLS up (the upgrade is timed from there)
  std::uint64_t gen_off = 0;   // payload bytes queued
  std::uint64_t wr_off = 0;    // TCP: payload bytes written
  std::uint64_t recv_off = 0;  // payload bytes of whole messages verified (WS) / received (TCP)
  std::uint64_t cur = 0;       // bytes of the current message received
  std::uint64_t msgs_done = 0;
  TsRing inflight;
  std::string out;             // WS: frames not yet written
  std::size_t out_pos = 0;
  std::string hs;              // WS: handshake key, then response bytes
  std::string key;
  SSL* ssl = nullptr;          // tls:// and wss://, from TCP connect to the hand-over or close_socket()
  std::unique_ptr<TlsRecordIo> records;  // TLS 1.3 after the hand-over (tls_client.hpp)
  ws::FrameParser parser;
  std::unique_ptr<PubSubConn> ps;  // --mode pubsub only
  // Waits for the next edge without an epoll_ctl per wait (ready_wait.hpp):
  // the client must not cost more system calls per message than a server.
  shoal::ReadyWait<ReadOwner, &on_read_ready> read_wait;
};

}  // namespace

struct Engine::Impl {
  Impl(Engine& owner, Setup s)
      : self(owner), setup(std::move(s)), o(*setup.options), pat(*setup.pattern), ioc(1),
        reactor(shoal::reactor_of(ioc)), guard(asio::make_work_guard(ioc)), connect_timer(ioc.get_executor()),
        phase_timer(ioc.get_executor()), pace_timer(ioc.get_executor()), sweep_timer(ioc.get_executor()),
        rng(0x9e3779b9u ^ (setup.ids.empty() ? 0u : setup.ids.front())) {
    is_ws = o.target.proto == Target::Proto::ws;
    controlled = is_ws && ctl.any();
    pubsub = o.mode == Mode::pubsub;
    special_frames = controlled || pubsub;
    if (pubsub) {
      for (const auto& t : o.pubsub.subscribe) targets.push_back(&t);
      for (const auto& t : o.pubsub.publish) targets.push_back(&t);
      fin.pubsub.subscribers.assign(o.pubsub.channels, 0);
      fin.pubsub.published.assign(o.pubsub.channels, 0);
    } else {
      targets.push_back(&o.target);
    }
    tls = o.target.tls;
    if (tls) {
      for (const Target* t : targets) tls_ctx.push_back(std::make_unique<TlsClientContext>(o, *t));
    }
    size = o.size;
    msg_op = o.text ? ws::Opcode::text : ws::Opcode::binary;
    active_limit = o.active_count();
    conns.reserve(setup.ids.size());
    for (auto id : setup.ids) {
      auto c = std::make_unique<Conn>(ioc);
      c->id = id;
      c->active = o.sends(id);
      c->salt = (static_cast<std::uint64_t>(id) * 7919u) % Pattern::period;
      if (pubsub) init_pubsub(*c);
      conns.push_back(std::move(c));
    }
    if (!o.sources.empty()) {
      // Spread ids over the source addresses.
      sources = o.sources;
    }
    max_inflight = o.rate > 0 ? 65536u : std::max(4u, o.pipeline);
    pace_interval = setup.rate > 0 ? 1e9 / setup.rate : 0;
  }

  // Subscriber i on channel i % K through subscribe URL i % U; publisher j
  // on channel j % K through publish URL j % V.
  void init_pubsub(Conn& c) {
    const PubSubOptions& p = o.pubsub;
    auto s = std::make_unique<PubSubConn>();
    s->publisher = c.id >= p.subscribers;
    s->index = s->publisher ? c.id - p.subscribers : c.id;
    s->channel = s->index % p.channels;
    c.target = static_cast<std::uint8_t>(s->publisher ? p.subscribe.size() + s->index % p.publish.size()
                                                      : s->index % p.subscribe.size());
    if (!s->publisher) s->streams.resize(p.publishers_on(s->channel));
    c.ps = std::move(s);
  }

  // A read wait lives in its Conn, so its completion must run before the
  // Conn goes. run() returning normally means none is pending; after an
  // early end (an exception out of run()) the sockets are closed here and
  // the aborted waits complete before the members are destroyed.
  ~Impl() {
    closing_all = true;  // nothing posted below may start a connect
    for (timer_t* t : {&connect_timer, &phase_timer, &pace_timer, &sweep_timer}) t->cancel();
    for (auto& c : conns) {
      c->state = State::closed;
      SSL_free(c->ssl);
      c->ssl = nullptr;
      c->records.reset();  // on any thread: it only forgets its keys
      boost::system::error_code ignored;
      c->sock.close(ignored);
    }
    ioc.restart();
    ioc.poll();
  }

  Engine& self;
  Setup setup;
  const Options& o;
  const Pattern& pat;
  const Controls& ctl = o.target.controls;
  asio::io_context ioc;
  shoal::Reactor& reactor;
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  timer_t connect_timer, phase_timer, pace_timer, sweep_timer;
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<asio::ip::address> sources;
  // Where connections go (echo: the target; pubsub: the subscribe URLs,
  // then the publish URLs), and over TLS a context for each.
  std::vector<const Target*> targets;
  bool tls = false;  // tls:// and wss://
  std::vector<std::unique_ptr<TlsClientContext>> tls_ctx;
  std::minstd_rand rng;
  bool is_ws = false;
  // The target URL asks for response controls: echoes go through
  // CheckedWsHandler. Fixed for the run, so a run without controls never
  // reaches any of their code.
  bool controlled = false;
  // --mode pubsub, fixed for the run like `controlled`.
  bool pubsub = false;
  // controlled or pubsub: frames go to a handler other than WsHandler.
  bool special_frames = false;
  // Subscribers open that have not had every message their channel's
  // publishers said they sent: the drain waits for them as for echoes.
  std::uint64_t subscribers_waiting = 0;
  std::string message;  // pubsub: the next message, built before framing
  // close_after=: connections that have had their N echoes and wait for
  // the server's close; the drain waits for them as for echoes.
  std::uint64_t closes_awaited = 0;
  std::size_t size = 64;
  ws::Opcode msg_op = ws::Opcode::binary;
  std::uint64_t active_limit = 0;
  std::uint32_t max_inflight = 16;

  // Connect phase.
  std::size_t next_connect = 0;
  std::size_t pending = 0;
  std::size_t finished_connects = 0;
  std::int64_t connect_start = 0;

  // Traffic.
  bool traffic_started = false;
  bool sending = false;
  bool closing_all = false;
  std::int64_t t_measure = INT64_MAX, t_end = INT64_MAX;
  double pace_interval = 0;
  std::int64_t pace_start = 0;
  std::uint64_t pace_events = 0;
  std::vector<Conn*> active_list;
  std::vector<Conn*> dirty;

  // Statistics (this thread only).
  FinalStats fin;
  Histogram interval_hist;
  std::uint64_t open = 0;
  std::uint64_t inflight_total = 0;

  char rbuf[Pattern::max_window];

  void notify() {
    const char b = 1;
    if (setup.notify_fd >= 0) {
      [[maybe_unused]] auto r = ::write(setup.notify_fd, &b, 1);
    }
  }

  void sample(const std::string& s) {
    if (sampling()) fin.samples.push_back(s);
  }
  bool sampling() const { return fin.samples.size() < 8; }

  // ---- connecting -------------------------------------------------------

  void start_connecting() {
    connect_start = now_ns();
    sweep();
    pump_connects();
    check_connect_done();
  }

  void pump_connects() {
    if (closing_all) return;
    const std::int64_t now = now_ns();
    while (next_connect < conns.size() && pending < o.connect_concurrency) {
      if (setup.connect_rate > 0) {
        const auto due = connect_start + static_cast<std::int64_t>(static_cast<double>(next_connect) * 1e9 / setup.connect_rate);
        if (due > now) {
          connect_timer.expires_at(to_tp(due));
          connect_timer.async_wait([this](boost::system::error_code ec) {
            if (!ec) pump_connects();
          });
          return;
        }
      }
      start_connect(*conns[next_connect++]);
    }
  }

  void start_connect(Conn& c) {
    c.state = State::connecting;
    c.t_start = now_ns();
    boost::system::error_code ec;
    const Target& target = *targets[c.target];
    const auto& addr = target.address;
    c.sock.open(addr.is_v4() ? tcp::v4() : tcp::v6(), ec);
    if (ec) {
      fail_connect(c, classify(ec.value()), "socket: " + ec.message());
      return;
    }
    if (!sources.empty()) {
      // Our own port choice: id -> (source address, port), unique within
      // the run; a port someone else holds is skipped (bounded retries).
      const int one = 1;
      ::setsockopt(c.sock.native_handle(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      const auto& src = sources[c.id % sources.size()];
      const std::uint32_t range = static_cast<std::uint32_t>(o.port_hi - o.port_lo) + 1u;
      const std::uint32_t base = c.id / static_cast<std::uint32_t>(sources.size()) + o.port_offset;
      for (std::uint32_t k = 0; k < 64; ++k, ++c.port_attempt) {
        const auto port = static_cast<std::uint16_t>(o.port_lo + (base + c.port_attempt * 4099u) % range);
        c.sock.bind(tcp::endpoint(src, port), ec);
        if (ec != boost::system::errc::address_in_use) break;
      }
      if (ec) {
        fail_connect(c, classify(ec.value()), "bind " + src.to_string() + ": " + ec.message());
        return;
      }
    }
    ++pending;
    c.in_pending = true;
    c.sock.async_connect(tcp::endpoint(addr, target.port), [this, &c](boost::system::error_code cec) {
      // Over TLS the handshake is part of connecting, and of what
      // --connect-concurrency bounds: without that, TCP connects (which the
      // kernel completes at once) would pile up handshakes faster than the
      // server does them, and each would wait behind all the others.
      if (!tls || cec) leave_pending(c);
      on_connect(c, cec);
      pump_connects();
    });
  }

  void leave_pending(Conn& c) {
    if (!c.in_pending) return;
    c.in_pending = false;
    --pending;
  }

  void on_connect(Conn& c, boost::system::error_code ec) {
    if (c.state != State::connecting) return;  // timed out meanwhile
    if (ec == boost::system::errc::address_not_available && !sources.empty() && c.connect_retries < 8) {
      // The 4-tuple is taken (a TIME_WAIT of an earlier run, another
      // program): the next port.
      boost::system::error_code ignored;
      c.sock.close(ignored);
      ++c.port_attempt;
      ++c.connect_retries;
      const std::int64_t first = c.t_start;
      start_connect(c);
      c.t_start = first;
      return;
    }
    if (ec) {
      fail_connect(c, classify(ec.value()), "connect: " + ec.message());
      return;
    }
    const std::int64_t now = now_ns();
    c.t_connected = now;
    boost::system::error_code ignored;
    c.sock.non_blocking(true, ignored);
    c.sock.set_option(tcp::no_delay(true), ignored);
    if (tls) {
      start_tls(c);
      return;
    }
    fin.connect.record(static_cast<std::uint64_t>(now - c.t_start));
    shoal::enable_read_hints(c.sock.native_handle());
    transport_ready(c);
  }

  // ---- TLS ------------------------------------------------------------------
  //
  // The handshake is part of connecting: the connect figure runs to the end
  // of it, the connect deadline covers it, and only then is the connection
  // established (tls://) or does the upgrade start (wss://). It is driven by
  // the same waits as the traffic: SSL_connect again on each readiness.

  void start_tls(Conn& c) {
    std::string error;
    c.ssl = tls_ctx[c.target]->make(c.sock.native_handle(), error);
    if (!c.ssl) {
      fail_connect(c, ErrorKind::tls, "tls: " + error);
      return;
    }
    c.state = State::tls_handshaking;
    tls_handshake_step(c);
  }

  void tls_handshake_step(Conn& c) {
    const int r = SSL_connect(c.ssl);
    const int saved = errno;
    if (r == 1) {
      const std::int64_t now = now_ns();
      fin.tls_handshake.record(static_cast<std::uint64_t>(now - c.t_connected));
      fin.connect.record(static_cast<std::uint64_t>(now - c.t_start));
      c.t_connected = now;
      c.records = tls_ctx[c.target]->hand_over(c.ssl);
      if (c.records) {
        SSL_free(c.ssl);
        c.ssl = nullptr;
        // Our own recv from now on, told when the socket is empty, as the
        // plaintext path is: no recv per wakeup that finds EAGAIN.
        shoal::enable_read_hints(c.sock.native_handle());
      }
      leave_pending(c);
      pump_connects();
      transport_ready(c);
      // What came after the server's Finished (TLS 1.3 session tickets,
      // early echoes) is in the kernel, or in OpenSSL's buffer for a
      // connection that stays on it, and its edge was spent on the
      // handshake. Drain it before waiting.
      if (c.state != State::closed) on_readable(c);
      return;
    }
    const int err = SSL_get_error(c.ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
      arm_read(c);
      return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      arm_write(c);
      return;
    }
    fail_connect(c, tls_error_kind(err, saved), "tls handshake failed: " + tls_failure(c.ssl, err, saved));
  }

  // A system call's failure (a reset) is counted as such; the rest as TLS.
  static ErrorKind tls_error_kind(int ssl_error, int saved_errno) {
    if (ssl_error == SSL_ERROR_SYSCALL && saved_errno != 0 && ERR_peek_error() == 0) return classify(saved_errno);
    return ErrorKind::tls;
  }

  // ---- after TCP (and TLS) ---------------------------------------------------

  void transport_ready(Conn& c) {
    if (!is_ws) {
      established(c);
      return;
    }
    unsigned char raw[16];
    for (auto& b : raw) b = static_cast<unsigned char>(rng() & 0xff);
    c.key = ws::base64_encode(raw, sizeof raw);
    const Target& target = *targets[c.target];
    if (pubsub) {
      c.out = ws::upgrade_request(target.host, path_for_channel(target, o.pubsub.channel_name(c.ps->channel)), c.key);
    } else {
      c.out = ws::upgrade_request(target.host, target.path, c.key);
    }
    c.out_pos = 0;
    c.state = State::handshaking;
    flush(c);
    if (c.state == State::handshaking) arm_read(c);
  }

  void fail_connect(Conn& c, ErrorKind kind, const std::string& what) {
    fin.total.errors[static_cast<std::size_t>(kind)]++;
    if (fin.total.errors[static_cast<std::size_t>(kind)] == 1) {
      sample("connection " + std::to_string(c.id) + ": " + what);
    }
    close_socket(c);
    ++finished_connects;
    check_connect_done();
  }

  void established(Conn& c) {
    c.state = State::open;
    ++open;
    ++fin.established;
    fin.total.connects++;
    if (open > fin.peak_open) fin.peak_open = open;
    ++finished_connects;
    check_connect_done();
    if (controlled && ctl.close_after && *ctl.close_after == 0) ++closes_awaited;  // due at once
    if (pubsub) {
      established_pubsub(c);
    } else if (traffic_started && c.active) {
      active_list.push_back(&c);
      if (sending && pace_interval == 0) {
        for (unsigned k = 0; k < o.pipeline; ++k) queue_message(c, now_ns());
        flush(c);
      }
    }
    if (c.state == State::open) arm_read(c);
  }

  void check_connect_done() {
    if (finished_connects == conns.size() && !self.connect_done_.load(std::memory_order_relaxed)) {
      self.connect_done_.store(true, std::memory_order_release);
      notify();
    }
  }

  // Every 100 ms: connect/handshake deadlines and late echoes.
  void sweep() {
    if (closing_all) return;
    const std::int64_t now = now_ns();
    const auto connect_deadline = static_cast<std::int64_t>(o.connect_timeout_s * 1e9);
    const auto echo_deadline = static_cast<std::int64_t>(o.timeout_s * 1e9);
    // Once every connection is up (or given up), only the active ones can
    // be late. Walking all of a worker's 18,000 ten times a second was
    // 2.5 % of the client's CPU in the 114,000-connection run, in bursts
    // that delayed the echoes it measures.
    const bool connecting = finished_connects < conns.size();
    const std::size_t n = connecting ? conns.size() : active_list.size();
    for (std::size_t i = 0; i < n; ++i) {
      Conn& c = connecting ? *conns[i] : *active_list[i];
      if ((c.state == State::connecting || c.state == State::tls_handshaking || c.state == State::handshaking) &&
          now - c.t_start > connect_deadline) {
        fail_connect(c, ErrorKind::timeout,
                     c.state == State::connecting        ? "connect timed out"
                     : c.state == State::tls_handshaking ? "TLS handshake timed out"
                                                         : "WebSocket upgrade timed out");
      } else if (c.state == State::open && !c.inflight.empty() && now - c.inflight.front() > echo_deadline) {
        fail(c, ErrorKind::timeout, "no echo within the timeout");
      }
    }
    sweep_timer.expires_at(to_tp(now + 100'000'000));
    sweep_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) sweep();
    });
  }

  // ---- failures and closing -------------------------------------------

  // `as_asked`: the server closed as close_after= asked, so the messages
  // still in flight were never going to be echoed and are not unanswered.
  void close_socket(Conn& c, bool as_asked = false) {
    if (c.in_pending) {
      // Failed (or timed out) before its connect completed: a slot frees.
      leave_pending(c);
      if (!closing_all) asio::post(ioc, [this] { pump_connects(); });
    }
    const bool was_open = c.state == State::open;
    c.state = State::closed;
    // SSL_set_fd's socket BIO does not own the descriptor: the socket
    // closes it below.
    SSL_free(c.ssl);
    c.ssl = nullptr;
    c.records.reset();
    c.write_wants_read = c.read_wants_write = false;
    boost::system::error_code ignored;
    c.sock.close(ignored);
    if (was_open) --open;
    inflight_total -= c.inflight.size();
    if (!as_asked) fin.unanswered += c.inflight.size();
    c.inflight.clear();
    if (c.ps && c.ps->counted_waiting) {
      c.ps->counted_waiting = false;  // what it lacks is counted missing, by the parent
      --subscribers_waiting;
    }
    std::string().swap(c.out);
    std::string().swap(c.hs);
    check_drained();
  }

  void fail(Conn& c, ErrorKind kind, const std::string& what) {
    if (c.state == State::closed) return;
    if (c.state != State::open) {
      fail_connect(c, kind, what);
      return;
    }
    if (controlled && ctl.close_after && !c.close_judged) {
      judge_close(c, false, "ended before the server's close (" + what + ")");
    }
    fin.total.errors[static_cast<std::size_t>(kind)]++;
    ++fin.lost;
    sample("connection " + std::to_string(c.id) + ": " + what);
    close_socket(c);
  }

  // close_after=: counts this connection's close once, as asked or not.
  void judge_close(Conn& c, bool as_asked, const std::string& why) {
    if (c.close_judged) return;
    c.close_judged = true;
    if (c.msgs_done >= *ctl.close_after) --closes_awaited;  // counted when its Nth echo came
    if (as_asked) {
      ++fin.controls.closed_as_asked;
    } else {
      ++fin.controls.not_closed_as_asked;
      sample("connection " + std::to_string(c.id) + ": close_after=" + std::to_string(*ctl.close_after) + ": " + why);
    }
    check_drained();
  }

  void fail_errno(Conn& c, int err, const char* op) {
    fail(c, classify(err), std::string(op) + ": " + std::strerror(err));
  }

  // ---- traffic ------------------------------------------------------------

  void go(std::int64_t t_go, std::int64_t measure, std::int64_t end) {
    t_measure = measure;
    t_end = end;
    phase_timer.expires_at(to_tp(t_go));
    phase_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) begin_traffic();
    });
  }

  void begin_traffic() {
    if (closing_all || traffic_started) return;
    traffic_started = true;
    sending = true;
    for (auto& cp : conns) {
      if (cp->active && cp->state == State::open) active_list.push_back(cp.get());
    }
    const std::int64_t now = now_ns();
    if (pace_interval == 0 && pubsub) {
      for (Conn* c : active_list) publish_burst(*c);
    } else if (pace_interval == 0) {
      for (Conn* c : active_list) {
        for (unsigned k = 0; k < o.pipeline && c->state == State::open; ++k) queue_message(*c, now);
        flush(*c);
      }
    } else {
      pace_start = now;
      pace_events = 0;
      pace();
    }
    phase_timer.expires_at(to_tp(t_end));
    phase_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) end_traffic();
    });
    if (t_end <= now) end_traffic();
  }

  void end_traffic() {
    sending = false;
    pace_timer.cancel();
    if (pubsub) finish_publishing();
    check_drained();
  }

  void check_drained() {
    if (traffic_started && !sending && inflight_total == 0 && closes_awaited == 0 && subscribers_waiting == 0 &&
        !self.drained_.load(std::memory_order_relaxed)) {
      self.drained_.store(true, std::memory_order_release);
      notify();
    }
  }

  // Open loop: event e is due at pace_start + e * interval and goes to the
  // next active connection in turn (pubsub: the next publisher). Chosen once
  // per wakeup, so that the echo's loop has no test for pubsub.
  void pace() {
    if (pubsub) {
      pace_as<true>();
    } else {
      pace_as<false>();
    }
  }

  template <bool PubSub>
  void pace_as() {
    if (!sending || active_list.empty()) return;
    const std::int64_t now = now_ns();
    for (;;) {
      const auto due = pace_start + static_cast<std::int64_t>(static_cast<double>(pace_events) * pace_interval);
      if (due > now) {
        for (Conn* c : dirty) {
          c->dirty = false;
          flush(*c);
        }
        dirty.clear();
        if (due >= t_end) return;
        pace_timer.expires_at(to_tp(due));
        pace_timer.async_wait([this](boost::system::error_code ec) {
          if (!ec) pace();
        });
        return;
      }
      if (due >= t_end) {
        sending = false;
        if constexpr (PubSub) finish_publishing();
        break;
      }
      // Skip connections that died; give up on this event if all did.
      Conn* target = nullptr;
      for (std::size_t tries = 0; tries < active_list.size(); ++tries) {
        Conn* c = active_list[(pace_events + tries) % active_list.size()];
        if (c->state == State::open) {
          target = c;
          break;
        }
      }
      ++pace_events;
      if (!target) continue;
      bool queued;
      if constexpr (PubSub) {
        queued = queue_publish(*target, due);
      } else {
        queued = queue_message(*target, due);
      }
      if (queued && !target->dirty) {
        target->dirty = true;
        dirty.push_back(target);
      }
    }
    for (Conn* c : dirty) {
      c->dirty = false;
      flush(*c);
    }
    dirty.clear();
    check_drained();
  }

  bool queue_message(Conn& c, std::int64_t ts) {
    if (o.messages > 0 && c.gen_off / size >= o.messages) return false;  // --messages: this one is done
    if (!c.inflight.push(ts, max_inflight)) {
      ++fin.skipped;
      return false;
    }
    ++inflight_total;
    fin.total.msgs_sent++;
    fin.total.bytes_sent += size;
    if (ts >= t_measure && ts < t_end) {
      fin.window.msgs_sent++;
      fin.window.bytes_sent += size;
    }
    if (is_ws) {
      std::uint64_t off = c.salt + c.gen_off;
      const std::uint32_t key = static_cast<std::uint32_t>(rng()) ^ (static_cast<std::uint32_t>(rng()) << 16);
      if (size <= Pattern::max_window) {
        ws::append_client_frame(c.out, msg_op, std::string_view(pat.at(off), size), key);
      } else {
        std::string payload;
        payload.reserve(size);
        for (std::size_t done = 0; done < size;) {
          const std::size_t take = std::min(size - done, Pattern::max_window);
          payload.append(pat.at(off + done), take);
          done += take;
        }
        ws::append_client_frame(c.out, msg_op, payload, key);
      }
    }
    c.gen_off += size;
    return true;
  }

  void flush(Conn& c) {
    if (c.write_armed || c.state == State::closed) return;
    if (c.records) {
      flush_records(c);
      return;
    }
    if (c.ssl) {
      flush_tls(c);
      return;
    }
    const int fd = c.sock.native_handle();
    if (is_ws || c.state == State::handshaking) {
      while (c.out_pos < c.out.size()) {
        const ssize_t n = ::send(fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          c.out_pos += static_cast<std::size_t>(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          arm_write(c);
          return;
        }
        fail_errno(c, n < 0 ? errno : EPIPE, "send");
        return;
      }
      c.out.clear();
      c.out_pos = 0;
      return;
    }
    while (c.wr_off < c.gen_off) {
      const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(c.gen_off - c.wr_off, Pattern::max_window));
      const ssize_t n = ::send(fd, pat.at(c.salt + c.wr_off), chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.wr_off += static_cast<std::uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        arm_write(c);
        return;
      }
      fail_errno(c, n < 0 ? errno : EPIPE, "send");
      return;
    }
  }

  // The same bytes as the plaintext path, through SSL_write. A write that
  // OpenSSL could not finish (WANT_WRITE) is retried with the same bytes
  // from the same offset, and at least as many: what OpenSSL requires.
  void flush_tls(Conn& c) {
    if (c.write_wants_read || c.state == State::tls_handshaking) return;
    for (;;) {
      const bool framed = is_ws || c.state == State::handshaking;
      const char* p;
      std::size_t len;
      if (framed) {
        if (c.out_pos >= c.out.size()) {
          c.out.clear();
          c.out_pos = 0;
          return;
        }
        p = c.out.data() + c.out_pos;
        len = c.out.size() - c.out_pos;
      } else {
        if (c.wr_off >= c.gen_off) return;
        len = static_cast<std::size_t>(std::min<std::uint64_t>(c.gen_off - c.wr_off, Pattern::max_window));
        p = pat.at(c.salt + c.wr_off);
      }
      const int n = SSL_write(c.ssl, p, static_cast<int>(std::min<std::size_t>(len, 1u << 30)));
      if (n > 0) {
        if (framed) {
          c.out_pos += static_cast<std::size_t>(n);
        } else {
          c.wr_off += static_cast<std::uint64_t>(n);
        }
        continue;
      }
      const int saved = errno;
      const int err = SSL_get_error(c.ssl, n);
      if (err == SSL_ERROR_WANT_WRITE) {
        arm_write(c);
        return;
      }
      if (err == SSL_ERROR_WANT_READ) {
        c.write_wants_read = true;  // the read wait is armed; on_readable flushes again
        return;
      }
      fail(c, tls_error_kind(err, saved), "send: tls: " + tls_failure(c.ssl, err, saved));
      return;
    }
  }

  // The same plaintext as flush_tls, sealed by the connection's TlsRecordIo;
  // ciphertext the kernel does not take waits there, and nothing more is
  // sealed until it has gone.
  void flush_records(Conn& c) {
    const int fd = c.sock.native_handle();
    int err = 0;
    TlsRecordIo::Write w = c.records->flush(fd, err);
    while (w == TlsRecordIo::Write::done) {
      if (is_ws || c.state == State::handshaking) {
        if (c.out_pos >= c.out.size()) {
          c.out.clear();
          c.out_pos = 0;
          return;
        }
        w = c.records->write(fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, err);
        c.out.clear();
        c.out_pos = 0;
      } else {
        if (c.wr_off >= c.gen_off) return;
        const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(c.gen_off - c.wr_off, Pattern::max_window));
        w = c.records->write(fd, pat.at(c.salt + c.wr_off), len, err);
        c.wr_off += len;
      }
    }
    if (w == TlsRecordIo::Write::blocked) {
      arm_write(c);
      return;
    }
    fail_errno(c, err, "send");
  }

  void arm_write(Conn& c) {
    if (c.write_armed) return;
    c.write_armed = true;
    c.sock.async_wait(socket_t::wait_write, [this, &c](boost::system::error_code ec) {
      c.write_armed = false;
      if (ec || c.state == State::closed) return;
      if (c.state == State::tls_handshaking) {
        tls_handshake_step(c);
      } else if (c.read_wants_write) {
        c.read_wants_write = false;
        on_readable(c);
      } else {
        flush(c);
        // A publisher as fast as its socket allows: the socket took the
        // last burst, so the next.
        if (c.ps && c.ps->publisher && pace_interval == 0 && sending && !c.write_armed) publish_burst(c);
      }
    });
  }

  // Only once a read found the socket empty: the wait is for the next edge.
  void arm_read(Conn& c) {
    if (c.read_armed || c.state == State::closed) return;
    c.read_armed = true;
    c.read_wait.start(reactor, c.sock, ReadOwner{this, &c});
  }

  void read_ready(Conn& c, const boost::system::error_code& ec) {
    c.read_armed = false;
    if (c.state == State::closed) return;
    if (ec) {
      fail(c, classify(ec.value()), "wait: " + ec.message());
      return;
    }
    on_readable(c);
  }

  // Asio's reactor is edge-triggered: read until the socket is empty (EAGAIN,
  // or read_hinted says the kernel holds nothing more) before waiting.
  void on_readable(Conn& c) {
    if (c.records) {
      on_readable_records(c);
      return;
    }
    if (c.ssl) {
      on_readable_tls(c);
      return;
    }
    const int fd = c.sock.native_handle();
    for (;;) {
      bool more = true;
      const long n = shoal::read_hinted(fd, rbuf, sizeof rbuf, more);
      if (n > 0) {
        on_bytes(c, rbuf, static_cast<std::size_t>(n), now_ns());
        if (c.state == State::closed) return;
        if (!more) break;  // nothing left, not even a FIN
        continue;
      }
      if (n == 0) {
        on_end_of_stream(c);
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail_errno(c, errno, "recv");
      return;
    }
    flush(c);
    arm_read(c);
  }

  // SSL_read until OpenSSL says WANT_READ: it found the socket empty (and
  // its own read-ahead buffer too), which is what the edge-triggered wait
  // needs before it starts.
  void on_readable_tls(Conn& c) {
    if (c.state == State::tls_handshaking) {
      tls_handshake_step(c);
      return;
    }
    for (;;) {
      const int n = SSL_read(c.ssl, rbuf, static_cast<int>(sizeof rbuf));
      if (n > 0) {
        on_bytes(c, rbuf, static_cast<std::size_t>(n), now_ns());
        if (c.state == State::closed) return;
        continue;
      }
      const int saved = errno;
      const int err = SSL_get_error(c.ssl, n);
      if (err == SSL_ERROR_WANT_READ) break;
      if (err == SSL_ERROR_WANT_WRITE) {
        c.read_wants_write = true;
        arm_write(c);
        return;
      }
      // close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a bare FIN.
      if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && saved == 0 && ERR_peek_error() == 0)) {
        tls_clear_errors();
        on_end_of_stream(c);
        return;
      }
      if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        fail_errno(c, saved, "recv");
        return;
      }
      fail(c, ErrorKind::tls, "recv: tls: " + tls_failure(c.ssl, err, saved));
      return;
    }
    c.write_wants_read = false;
    flush(c);
    arm_read(c);
  }

  // Records opened from what each recv brings, until the socket is empty.
  void on_readable_records(Conn& c) {
    const int fd = c.sock.native_handle();
    for (;;) {
      const TlsRecordIo::Read r = c.records->read(fd, rbuf, sizeof rbuf);
      if (r.plain != 0) {
        on_bytes(c, rbuf, r.plain, now_ns());
        if (c.state == State::closed) return;
      }
      using Status = TlsRecordIo::Read::Status;
      if (r.status == Status::data) continue;
      if (r.status == Status::drained) break;
      if (r.status == Status::end) {
        on_end_of_stream(c);
      } else if (r.error != 0) {
        fail_errno(c, r.error, "recv");
      } else {
        fail(c, ErrorKind::tls, std::string("recv: tls: ") + r.why);
      }
      return;
    }
    flush(c);  // a KeyUpdate's answer too
    arm_read(c);
  }

  void on_bytes(Conn& c, const char* p, std::size_t n, std::int64_t now) {
    if (c.state == State::handshaking) {
      on_handshake_bytes(c, p, n, now);
    } else if (is_ws) {
      on_ws_bytes(c, p, n, now);
    } else {
      on_tcp_bytes(c, p, n, now);
    }
  }

  void on_end_of_stream(Conn& c) {
    if (c.closing) {
      close_socket(c);
    } else {
      fail(c, c.state == State::handshaking ? ErrorKind::bad_handshake : ErrorKind::closed,
           "server closed the connection");
    }
  }

  void on_handshake_bytes(Conn& c, const char* p, std::size_t n, std::int64_t now) {
    c.hs.append(p, n);
    const auto end = c.hs.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c.hs.size() > 16384) fail(c, ErrorKind::bad_handshake, "upgrade response head over 16 KiB");
      return;
    }
    const std::string problem = ws::check_upgrade_response(std::string_view(c.hs).substr(0, end + 4), c.key);
    if (!problem.empty()) {
      fail(c, ErrorKind::bad_handshake, "WebSocket upgrade: " + problem);
      return;
    }
    fin.handshake.record(static_cast<std::uint64_t>(now - c.t_connected));
    std::string rest = c.hs.substr(end + 4);
    std::string().swap(c.hs);
    std::string().swap(c.key);
    established(c);
    if (!rest.empty() && c.state == State::open) on_ws_bytes(c, rest.data(), rest.size(), now);
  }

  void on_tcp_bytes(Conn& c, const char* p, std::size_t n, std::int64_t now) {
    while (n > 0) {
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, size - c.cur));
      if (std::memcmp(p, pat.at(c.salt + c.recv_off), take) != 0) {
        if (!c.msg_bad) describe_mismatch(c, p, take);
        c.msg_bad = true;
      }
      p += take;
      n -= take;
      c.cur += take;
      c.recv_off += take;
      if (c.cur == size) {
        c.cur = 0;
        const bool bad = c.msg_bad;
        c.msg_bad = false;
        complete_message(c, now, bad, size);
        if (c.state == State::closed) return;
      }
    }
  }

  void describe_mismatch(Conn& c, const char* p, std::size_t n) {
    if (fin.samples.size() >= 8) return;
    const char* want = pat.at(c.salt + c.recv_off);
    std::size_t i = 0;
    while (i < n && p[i] == want[i]) ++i;
    char buf[160];
    std::snprintf(buf, sizeof buf, "connection %u: mismatch at stream byte %llu: expected 0x%02x, got 0x%02x",
                  c.id, static_cast<unsigned long long>(c.recv_off + i),
                  static_cast<unsigned>(static_cast<unsigned char>(want[i])),
                  static_cast<unsigned>(static_cast<unsigned char>(p[i])));
    sample(buf);
  }

  struct WsHandler {
    Impl& e;
    Conn& c;
    std::int64_t now;
    void on_message_begin(ws::Opcode op) {
      c.cur = 0;
      c.msg_bad = false;
      if (op != e.msg_op) {
        c.msg_bad = true;
        e.sample("connection " + std::to_string(c.id) + ": echo has the wrong opcode");
      }
    }
    void on_message_data(const char* p, std::size_t n) {
      if (c.msg_bad) {
        c.cur += n;
        return;
      }
      if (c.cur + n > e.size) {
        c.msg_bad = true;
        e.sample("connection " + std::to_string(c.id) + ": echoed message longer than sent");
      } else {
        // Split at max_window so that the pattern window stays contiguous.
        std::size_t done = 0;
        while (done < n && !c.msg_bad) {
          const std::size_t take = std::min(n - done, Pattern::max_window);
          if (std::memcmp(p + done, e.pat.at(c.salt + c.recv_off + c.cur + done), take) != 0) {
            c.msg_bad = true;
            e.sample("connection " + std::to_string(c.id) + ": mismatch in message " + std::to_string(c.msgs_done));
          }
          done += take;
        }
      }
      c.cur += n;
    }
    void on_message_end() {
      bool bad = c.msg_bad;
      if (c.cur != e.size) {
        if (!bad) e.sample("connection " + std::to_string(c.id) + ": echoed message shorter than sent");
        bad = true;
      }
      c.msg_bad = false;
      c.cur = 0;
      c.recv_off += e.size;
      e.complete_message(c, now, bad, e.size);
    }
    void on_control(ws::Opcode op, std::string_view payload) {
      if (op == ws::Opcode::ping) {
        e.fin.total.pings++;
        ws::append_client_frame(c.out, ws::Opcode::pong, payload, static_cast<std::uint32_t>(e.rng()));
      } else if (op == ws::Opcode::close) {
        if (!c.closing) {
          c.closing = true;
          ws::append_client_frame(c.out, ws::Opcode::close, payload.substr(0, 2), static_cast<std::uint32_t>(e.rng()));
          e.flush(c);
          unsigned code = payload.size() >= 2 ? (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]) : 1005;
          e.fail(c, ErrorKind::closed, "server sent WebSocket close " + std::to_string(code));
        } else {
          e.close_socket(c);
        }
      }
    }
  };

  // The echo checks of a target URL's response controls (controls.hpp), a
  // handler of their own so that WsHandler, which every run without them
  // uses, has no branch for them. The parser goes by each frame's length,
  // so an echo of another size than the message is read whole either way.
  struct CheckedWsHandler {
    Impl& e;
    Conn& c;
    std::int64_t now;
    WsHandler plain() { return WsHandler{e, c, now}; }
    void on_message_begin(ws::Opcode op) { plain().on_message_begin(op); }
    void on_message_data(const char* p, std::size_t n) {
      if (!e.ctl.size) {
        plain().on_message_data(p, n);
        return;
      }
      if (!c.msg_bad) {
        const std::size_t at = first_repeat_mismatch(p, n, c.cur, e.pat, c.salt + c.recv_off, e.size);
        if (at < n) {
          c.msg_bad = true;
          if (e.sampling()) e.sample("connection " + std::to_string(c.id) + ": echo " + std::to_string(c.msgs_done + 1) +
                   ": byte " + std::to_string(c.cur + at) + " is not the message repeated");
        }
      }
      c.cur += n;
    }
    void on_message_end() {
      bool bad = c.msg_bad;
      const std::uint64_t len = c.cur;
      auto which = [&] { return "connection " + std::to_string(c.id) + ": echo " + std::to_string(c.msgs_done + 1); };
      if (e.ctl.size) {
        // A wrong length alone is the control not done, not a corrupted
        // echo: the bytes there are still the message repeated.
        if (!bad && len == *e.ctl.size) {
          ++e.fin.controls.resized;
        } else {
          ++e.fin.controls.not_resized;
          if (!bad && e.sampling()) e.sample(which() + " is " + std::to_string(len) + " bytes, not size=" + std::to_string(*e.ctl.size));
        }
      } else if (len != e.size) {
        if (!bad && e.sampling()) e.sample(which() + (len > e.size ? " is longer than sent" : " is shorter than sent"));
        bad = true;
      }
      if (e.ctl.delay_ns && !c.inflight.empty()) {
        // From the (intended) send time, which is never later than the
        // send, to the read: the client's own lag can hide an early echo
        // but never make a punctual one look early.
        const std::int64_t waited = now - c.inflight.front();
        if (waited >= *e.ctl.delay_ns) {
          ++e.fin.controls.delayed;
        } else {
          ++e.fin.controls.early;
          if (e.sampling()) e.sample(which() + " came " + fmt_ms(waited) + " after its message, before delay=" + e.ctl.delay_text);
        }
      }
      c.msg_bad = false;
      c.cur = 0;
      c.recv_off += e.size;
      e.complete_message(c, now, bad, len);
      if (e.ctl.close_after && c.state == State::open && !c.close_judged) {
        const std::uint32_t n = *e.ctl.close_after;
        if (c.msgs_done == n) {
          ++e.closes_awaited;
        } else if (c.msgs_done > n) {
          e.judge_close(c, false, "echo " + std::to_string(c.msgs_done) + " arrived; the server should have closed after " +
                                      std::to_string(n));
        }
      }
    }
    void on_control(ws::Opcode op, std::string_view payload) {
      if (op == ws::Opcode::close && e.ctl.close_after && !c.closing && !c.close_judged) {
        const unsigned code = payload.size() >= 2 ? (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]) : 1005;
        const std::string_view reason = payload.size() > 2 ? payload.substr(2) : std::string_view();
        const std::uint32_t n = *e.ctl.close_after;
        if (code == e.ctl.close_code && c.msgs_done == n && reason == "close_after") {
          e.judge_close(c, true, {});
          c.closing = true;
          ws::append_client_frame(c.out, ws::Opcode::close, payload.substr(0, 2), static_cast<std::uint32_t>(e.rng()));
          e.flush(c);
          if (c.state != State::closed) e.close_socket(c, true);
          return;
        }
        e.judge_close(c, false, "closed with " + std::to_string(code) + " \"" + std::string(reason) + "\" after " +
                                    std::to_string(c.msgs_done) + " echoes, not " + std::to_string(e.ctl.close_code) +
                                    " \"close_after\" after " + std::to_string(n));
      }
      plain().on_control(op, payload);
    }
  };

  static std::string fmt_ms(std::int64_t ns) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3fms", static_cast<double>(ns) / 1e6);
    return b;
  }

  void on_ws_bytes(Conn& c, const char* p, std::size_t n, std::int64_t now) {
    ws::ParseError err;
    if (special_frames) {
      if (controlled) {
        CheckedWsHandler h{*this, c, now};
        err = c.parser.feed(p, n, h);
      } else {
        err = feed_pubsub(c, p, n, now);
      }
    } else {
      WsHandler h{*this, c, now};
      err = c.parser.feed(p, n, h);
    }
    if (err != ws::ParseError::none && c.state != State::closed) {
      fail(c, ErrorKind::protocol, std::string("WebSocket frame: ") + ws::to_string(err));
    }
  }

  // `bytes`: the echo's length (what size= asked for, with controls).
  void complete_message(Conn& c, std::int64_t now, bool bad, std::uint64_t bytes) {
    if (c.state == State::closed) return;
    ++c.msgs_done;
    if (c.inflight.empty()) {
      fin.total.errors[static_cast<std::size_t>(ErrorKind::mismatch)]++;
      sample("connection " + std::to_string(c.id) + ": an echo arrived with nothing in flight");
      return;
    }
    const std::int64_t ts = c.inflight.pop();
    --inflight_total;
    const auto lat = static_cast<std::uint64_t>(now > ts ? now - ts : 0);
    interval_hist.record(lat);
    fin.total.msgs_recv++;
    fin.total.bytes_recv += bytes;
    if (ts >= t_measure && ts < t_end) fin.latency.record(lat);
    if (now >= t_measure && now < t_end) {
      fin.window.msgs_recv++;
      fin.window.bytes_recv += bytes;
    }
    if (bad) {
      fin.total.errors[static_cast<std::size_t>(ErrorKind::mismatch)]++;
      if (now >= t_measure && now < t_end) fin.window.errors[static_cast<std::size_t>(ErrorKind::mismatch)]++;
    }
    if (sending && pace_interval == 0 && c.active) {
      queue_message(c, now);
    } else if (!sending) {
      check_drained();
    }
  }

  // ---- pubsub -------------------------------------------------------------

  void established_pubsub(Conn& c) {
    PubSubConn& s = *c.ps;
    if (s.publisher) {
      if (traffic_started) {
        active_list.push_back(&c);
        if (sending && pace_interval == 0) publish_burst(c);
      }
      return;
    }
    ++fin.pubsub.subscribers[s.channel];
    if (s.streams.empty()) {
      ++fin.pubsub.complete;  // a channel without publishers: nothing to wait for
    } else {
      s.counted_waiting = true;
      ++subscribers_waiting;
    }
  }

  // One message of publisher `c`, sent at (or, open loop, due at) `ts`.
  bool queue_publish(Conn& c, std::int64_t ts) {
    PubSubConn& s = *c.ps;
    if (s.ended || (o.messages > 0 && s.sent >= o.messages)) return false;
    pubsub::build_message(message, {s.index, s.sent, ts}, size, o.text, pat);
    ws::append_client_frame(c.out, msg_op, message,
                            static_cast<std::uint32_t>(rng()) ^ (static_cast<std::uint32_t>(rng()) << 16));
    ++s.sent;
    ++fin.pubsub.published[s.channel];
    fin.total.msgs_sent++;
    fin.total.bytes_sent += size;
    if (ts >= t_measure && ts < t_end) {
      fin.window.msgs_sent++;
      fin.window.bytes_sent += size;
    }
    return true;
  }

  // Closed loop: a publisher sends as fast as its socket takes it, about
  // 64 KiB at a time. A burst the socket took at once is followed by the
  // next through the io_context, so that the thread's reads (the
  // subscribers') go on in between; one it did not take, when the socket
  // is writable again (arm_write).
  void publish_burst(Conn& c) {
    if (!sending || c.state != State::open || c.write_armed) return;
    const std::int64_t now = now_ns();
    if (now >= t_end) return;  // end_traffic, due now, sends the end message
    while (c.out.size() - c.out_pos < 65536 && queue_publish(c, now)) {
    }
    flush(c);
    if (c.state == State::open && !c.write_armed && sending && !c.ps->ended &&
        (o.messages == 0 || c.ps->sent < o.messages)) {
      asio::post(ioc, [this, &c] { publish_burst(c); });
    }
  }

  // Traffic over: each publisher's last word, how many it sent, so that its
  // subscribers know when they have everything.
  void finish_publishing() {
    for (Conn* c : active_list) {
      PubSubConn& s = *c->ps;
      if (s.ended || c->state != State::open) continue;
      s.ended = true;
      pubsub::build_message(message, {s.index, pubsub::end_flag | s.sent, now_ns()}, size, o.text, pat);
      ws::append_client_frame(c->out, msg_op, message, static_cast<std::uint32_t>(rng()));
      flush(*c);
    }
  }

  // What a subscriber checks of each message as its bytes come: the header
  // first, then the padding against the pattern that header names.
  struct SubscriberHandler {
    Impl& e;
    Conn& c;
    std::int64_t now;
    WsHandler plain() { return WsHandler{e, c, now}; }
    void on_message_begin(ws::Opcode op) {
      c.cur = 0;
      c.msg_bad = false;
      if (op != e.msg_op) {
        c.msg_bad = true;
        e.sample("subscriber " + std::to_string(c.ps->index) + ": a message of the wrong opcode (" +
                 (op == ws::Opcode::text ? "text" : "binary") + ")");
      }
    }
    void on_message_data(const char* p, std::size_t n) {
      PubSubConn& s = *c.ps;
      const std::size_t head = pubsub::header_size(e.o.text);
      if (c.cur < head) {
        const std::size_t take = std::min<std::size_t>(n, head - c.cur);
        std::memcpy(s.head + c.cur, p, take);
        c.cur += take;
        p += take;
        n -= take;
        if (c.cur == head && !c.msg_bad) {
          if (pubsub::read_header(s.head, e.o.text, s.header)) {
            s.pad_offset = pubsub::padding_offset(s.header.publisher, s.header.seq);
          } else {
            c.msg_bad = true;
            e.sample("subscriber " + std::to_string(s.index) + ": a message whose header is not hex digits");
          }
        }
      }
      if (n == 0) return;
      if (!c.msg_bad) {
        if (c.cur + n > e.size) {
          c.msg_bad = true;
          e.sample("subscriber " + std::to_string(s.index) + ": a message longer than --size");
        } else if (pubsub::first_padding_mismatch(p, n, c.cur - head, s.pad_offset, e.pat) < n) {
          c.msg_bad = true;
          e.sample("subscriber " + std::to_string(s.index) + ": message " + std::to_string(s.header.seq) +
                   " of publisher " + std::to_string(s.header.publisher) + " differs from what was sent");
        }
      }
      c.cur += n;
    }
    void on_message_end() {
      bool bad = c.msg_bad;
      if (!bad && c.cur != e.size) {
        e.sample("subscriber " + std::to_string(c.ps->index) + ": a message shorter than --size");
        bad = true;
      }
      c.msg_bad = false;
      c.cur = 0;
      if (bad) {
        e.fin.total.errors[static_cast<std::size_t>(ErrorKind::mismatch)]++;
        return;
      }
      e.on_delivery(c, now);
    }
    void on_control(ws::Opcode op, std::string_view payload) { plain().on_control(op, payload); }
  };

  // A publisher is subscribed too: what other publishers of its channel
  // send (and, with echo_to_sender, its own) is read and dropped.
  struct PublisherHandler {
    Impl& e;
    Conn& c;
    std::int64_t now;
    void on_message_begin(ws::Opcode) { ++e.fin.pubsub.publisher_received; }
    void on_message_data(const char*, std::size_t) {}
    void on_message_end() {}
    void on_control(ws::Opcode op, std::string_view payload) { WsHandler{e, c, now}.on_control(op, payload); }
  };

  ws::ParseError feed_pubsub(Conn& c, const char* p, std::size_t n, std::int64_t now) {
    if (c.ps->publisher) {
      PublisherHandler h{*this, c, now};
      return c.parser.feed(p, n, h);
    }
    SubscriberHandler h{*this, c, now};
    return c.parser.feed(p, n, h);
  }

  // A well-formed message at subscriber `c` (its header in c.ps->header).
  void on_delivery(Conn& c, std::int64_t now) {
    PubSubConn& s = *c.ps;
    const pubsub::Header& h = s.header;
    const PubSubOptions& p = o.pubsub;
    const bool ours = h.publisher < p.publishers && h.publisher % p.channels == s.channel;
    if (!ours) {
      ++fin.pubsub.foreign;
      if (fin.pubsub.foreign == 1) {
        sample("subscriber " + std::to_string(s.index) + " of " + p.channel_name(s.channel) +
               ": a message of publisher " + std::to_string(h.publisher) + ", which publishes on " +
               (h.publisher < p.publishers ? p.channel_name(h.publisher % p.channels) : std::string("no channel")));
      }
      return;
    }
    PubSubConn::Stream& st = s.streams[h.publisher / p.channels];
    if (h.seq & pubsub::end_flag) {
      if (st.end == UINT64_MAX) {
        st.end = h.seq & ~pubsub::end_flag;
        stream_maybe_done(c, st);
      }
      return;
    }
    if (h.seq >= st.end) {
      ++fin.pubsub.foreign;
      sample("subscriber " + std::to_string(s.index) + ": message " + std::to_string(h.seq) + " of publisher " +
             std::to_string(h.publisher) + ", which said it sent " + std::to_string(st.end));
      return;
    }
    ++fin.pubsub.delivered;
    const auto lat = static_cast<std::uint64_t>(now > h.sent_ns ? now - h.sent_ns : 0);
    interval_hist.record(lat);
    fin.total.msgs_recv++;
    fin.total.bytes_recv += size;
    if (h.sent_ns >= t_measure && h.sent_ns < t_end) fin.latency.record(lat);
    if (now >= t_measure && now < t_end) {
      fin.window.msgs_recv++;
      fin.window.bytes_recv += size;
    }
    switch (st.seq.accept(h.seq)) {
      case pubsub::SeqTracker::Arrival::in_order: break;
      case pubsub::SeqTracker::Arrival::ahead: break;  // the skipped ones: late or missing, later
      case pubsub::SeqTracker::Arrival::late:
        ++fin.pubsub.reordered;
        if (fin.pubsub.reordered == 1) {
          sample("subscriber " + std::to_string(s.index) + ": message " + std::to_string(h.seq) + " of publisher " +
                 std::to_string(h.publisher) + " came after a later one");
        }
        break;
      case pubsub::SeqTracker::Arrival::duplicate:
        ++fin.pubsub.duplicated;
        if (fin.pubsub.duplicated == 1) {
          sample("subscriber " + std::to_string(s.index) + ": message " + std::to_string(h.seq) + " of publisher " +
                 std::to_string(h.publisher) + " came twice");
        }
        break;
    }
    if (st.end != UINT64_MAX) stream_maybe_done(c, st);
  }

  void stream_maybe_done(Conn& c, PubSubConn::Stream& st) {
    if (st.done || !st.seq.complete(st.end)) return;
    st.done = true;
    PubSubConn& s = *c.ps;
    if (++s.streams_done < s.streams.size()) return;
    ++fin.pubsub.complete;
    if (s.counted_waiting) {
      s.counted_waiting = false;
      --subscribers_waiting;
      check_drained();
    }
  }

  void close_all() {
    closing_all = true;
    sending = false;
    connect_timer.cancel();
    phase_timer.cancel();
    pace_timer.cancel();
    sweep_timer.cancel();
    for (auto& cp : conns) {
      Conn& c = *cp;
      if (c.state == State::closed || c.state == State::idle) continue;
      if (c.state == State::open) {
        if (controlled && ctl.close_after && !c.close_judged) {
          if (c.msgs_done >= *ctl.close_after) {
            judge_close(c, false, "still open at the end, " + std::to_string(c.msgs_done) + " echoes in");
          } else {
            ++fin.controls.close_unfinished;
          }
        }
        if (!c.inflight.empty()) {
          fin.total.errors[static_cast<std::size_t>(ErrorKind::timeout)]++;
          sample("connection " + std::to_string(c.id) + ": " + std::to_string(c.inflight.size()) +
                 " echoes missing at the end");
        }
        // No write of ours is half done (OpenSSL would refuse another).
        const bool can_write = !c.write_armed && !c.write_wants_read;
        if (is_ws && can_write) {
          // Best effort: a close frame (1000) in the same flight as the FIN.
          c.out.erase(0, c.out_pos);
          c.out_pos = 0;
          ws::append_client_frame(c.out, ws::Opcode::close, std::string_view("\x03\xe8", 2),
                                  static_cast<std::uint32_t>(rng()));
          if (c.ssl) {
            SSL_write(c.ssl, c.out.data(), static_cast<int>(c.out.size()));
          } else if (!c.records) {
            ::send(c.sock.native_handle(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          }
        }
        if (c.records && can_write) {
          // Sealed with a close_notify after it, in one send.
          c.records->close(c.sock.native_handle(), c.out.data(), c.out.size());
        }
        if (c.ssl && can_write) {
          SSL_shutdown(c.ssl);  // best effort: close_notify before the FIN
          tls_clear_errors();
        }
      } else {
        // Still connecting at the very end: the deadline of the run.
        fin.total.errors[static_cast<std::size_t>(ErrorKind::timeout)]++;
        ++finished_connects;
      }
      close_socket(c);
    }
    guard.reset();
  }

  Snapshot snapshot() {
    Snapshot s;
    s.total = fin.total;
    s.interval = interval_hist.to_sparse();
    interval_hist.reset();
    s.open = open;
    s.inflight = inflight_total;
    return s;
  }
};

namespace {
void on_read_ready(ReadOwner owner, const boost::system::error_code& ec) {
  owner.engine->read_ready(*owner.conn, ec);
}
}  // namespace

Engine::Engine(Setup setup) : impl_(std::make_unique<Impl>(*this, std::move(setup))) {}
Engine::~Engine() = default;

void Engine::run() { impl_->ioc.run(); }

void Engine::start_connecting() {
  asio::post(impl_->ioc, [this] { impl_->start_connecting(); });
}

void Engine::go(std::int64_t t_go, std::int64_t t_measure, std::int64_t t_end) {
  asio::post(impl_->ioc, [this, t_go, t_measure, t_end] { impl_->go(t_go, t_measure, t_end); });
}

void Engine::stop_traffic() {
  asio::post(impl_->ioc, [this] {
    if (!impl_->traffic_started) {
      impl_->traffic_started = true;
      impl_->phase_timer.cancel();
    }
    impl_->t_end = std::min(impl_->t_end, now_ns());
    impl_->end_traffic();
  });
}

void Engine::close_all() {
  asio::post(impl_->ioc, [this] { impl_->close_all(); });
}

std::future<Snapshot> Engine::snapshot() {
  auto p = std::make_shared<std::promise<Snapshot>>();
  auto f = p->get_future();
  asio::post(impl_->ioc, [this, p] { p->set_value(impl_->snapshot()); });
  return f;
}

FinalStats& Engine::final_stats() { return impl_->fin; }

}  // namespace shoal::load
