// A Shard is one io_context run by exactly one thread (optionally pinned to a
// CPU), with the connections it serves and their counters. Code running on a
// shard touches only that shard's state: no mutex and no atomic
// read-modify-write per message. Work for another shard is posted to its
// executor.
//
// Ownership: the Server owns its shards, and a shard its connections: each
// socket is registered once with the shard's own epoll (Poller, below), and a
// connection lives until it retires itself, then is deleted on the shard's
// next turn. The per-listener lists index the open connections, for idle
// sweeps and for closing them on drain.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/system/error_code.hpp>

#include "runtime/active_count.hpp"
#include "runtime/deadline_queue.hpp"
#include "protocol/cidr.hpp"
#include "runtime/shared_value.hpp"
#include "runtime/client_limits.hpp"
#include "runtime/close_reason.hpp"
#include "config/config.hpp"
#include "runtime/ready_wait.hpp"

namespace shoal::pubsub {
class ChannelTable;
}

namespace shoal {

// Sockets and timers typed with the concrete executor: no type-erased
// executor (a heap-allocated copy in every handler that stores one).
using executor_type = boost::asio::io_context::executor_type;
using tcp_socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, executor_type>;
using tcp_acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, executor_type>;
using steady_timer = boost::asio::basic_waitable_timer<
    std::chrono::steady_clock, boost::asio::wait_traits<std::chrono::steady_clock>, executor_type>;

// A counter with one writer (the owning shard) and any number of readers
// (scrapes, the status page, the least-loaded choice). A relaxed load and
// store is a plain mov on x86: no lock prefix, yet a concurrent read is
// well-defined and sees a recent value.
class ShardCounter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  // For gauges and timestamps kept by the owning shard.
  void set(std::uint64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }
  std::uint64_t load() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// Why a connection was refused before it was served. Counted per listener.
enum class RejectReason : std::uint8_t {
  limit,             // max_connections (listener or process) reached
  fd_exhausted,      // accept failed: EMFILE/ENFILE/ENOBUFS/ENOMEM
  handshake_failed,  // bad or timed-out HTTP upgrade / TLS handshake
  origin,            // Origin not in allowed_origins
  per_ip_limit,      // max_connections_per_ip reached for the client's address
  rate_limit,        // above max_new_connections_per_second (and its burst)
  proxy_protocol,    // PROXY header missing, malformed, too long, or from an untrusted peer
  count_
};
const char* to_string(RejectReason r);

// WebSocket close codes counted by shoal_websocket_close_codes_total{code}:
// the codes of RFC 6455 §7.4.1 we send or receive, and "other".
inline constexpr std::uint16_t kCountedCloseCodes[] = {1000, 1001, 1002, 1003, 1005, 1006,
                                                       1007, 1008, 1009, 1010, 1011};
inline constexpr std::size_t kCloseCodeSlots = std::size(kCountedCloseCodes) + 1;
// Index into ListenerStats::close_codes; the last slot is "other".
constexpr std::size_t close_code_slot(std::uint16_t code) {
  for (std::size_t i = 0; i < std::size(kCountedCloseCodes); ++i)
    if (kCountedCloseCodes[i] == code) return i;
  return kCloseCodeSlots - 1;
}

// Per-process, per-listener admission state shared by every shard: one
// atomic increment per *connection* (never per message).
struct ListenerShared {
  std::atomic<std::uint64_t> active{0};
  // 0 = no per-listener limit. Atomic: a reload (SIGHUP) changes it while
  // acceptors read it.
  std::atomic<std::uint64_t> max_connections{0};
  // Per-client limits (client_limits.hpp); a reload changes them too.
  std::atomic<std::uint64_t> max_connections_per_ip{0};  // 0: none, nothing counted
  PerIpCounts per_ip;
  NewConnectionRate new_connections;
  // The balancers allowed to send a PROXY header (proxy_trusted); a reload
  // swaps it while acceptors read it.
  SharedValue<const CidrSet> proxy_trusted{std::make_shared<const CidrSet>(loopback_cidrs())};
  // Who answers, for HTTP echo: set before the shards start, never changed.
  std::string name;      // the listener's
  std::string instance;  // effective_instance()
  std::string hostname;
};

// The admission counts one accepted connection holds (the process's and the
// listener's active count, and its per-IP entry) from the acceptor's
// admission until a Connection takes them over, which then gives them back
// in its destructor. Should the session never start (under `dispatch`, a
// start posted to a shard that stops first and destroys the handler unrun),
// the guard's destructor gives them back instead.
//
// Move-only; any thread (the counts are atomics), one owner at a time.
class AdmissionGuard {
 public:
  AdmissionGuard() = default;
  AdmissionGuard(ListenerShared& listener, ActiveCount& process_active,
                 PerIpCounts::Entry* client = nullptr) noexcept
      : listener_(&listener), process_active_(&process_active), client_(client) {}
  AdmissionGuard(AdmissionGuard&& other) noexcept
      : listener_(std::exchange(other.listener_, nullptr)),
        process_active_(std::exchange(other.process_active_, nullptr)),
        client_(std::exchange(other.client_, nullptr)) {}
  AdmissionGuard& operator=(AdmissionGuard&& other) noexcept {
    if (this != &other) {
      give_back();
      listener_ = std::exchange(other.listener_, nullptr);
      process_active_ = std::exchange(other.process_active_, nullptr);
      client_ = std::exchange(other.client_, nullptr);
    }
    return *this;
  }
  ~AdmissionGuard() { give_back(); }

  // The per-IP entry the connection will hold (set once per-IP admission
  // counted it).
  void hold_client(PerIpCounts::Entry* client) noexcept { client_ = client; }
  // Whether the guard still holds counts.
  bool holds() const noexcept { return listener_ != nullptr; }
  // Hands the counts over to the Connection about to be constructed with
  // the returned per-IP entry (nullptr: none); the guard then holds nothing.
  [[nodiscard]] PerIpCounts::Entry* release() noexcept {
    listener_ = nullptr;
    process_active_ = nullptr;
    return std::exchange(client_, nullptr);
  }

 private:
  // In Connection::~Connection's order: the per-IP slot first.
  void give_back() noexcept {
    if (listener_ == nullptr) return;
    if (client_ != nullptr) listener_->per_ip.release(client_);
    listener_->active.fetch_sub(1, std::memory_order_relaxed);
    process_active_->release();
    listener_ = nullptr;
  }

  ListenerShared* listener_ = nullptr;
  ActiveCount* process_active_ = nullptr;
  PerIpCounts::Entry* client_ = nullptr;
};

// Response controls counted by name: delay, status, size, close_after,
// close_code (http_echo.hpp's Control order).
inline constexpr std::size_t kControlSlots = 5;

// Counters of one listener on one shard, written only by that shard.
struct alignas(64) ListenerStats {
  ShardCounter accepted;  // by this shard's acceptor (dispatch: one shard accepts for all)
  ShardCounter served;    // connections this shard has served
  ShardCounter active;
  ShardCounter rejected[static_cast<int>(RejectReason::count_)];
  ShardCounter bytes_received;
  ShardCounter bytes_sent;
  // TCP echo counts each read as a message received and each echo as sent;
  // WebSocket counts whole messages.
  ShardCounter messages_received;
  ShardCounter messages_sent;
  ShardCounter closed[static_cast<int>(CloseReason::count_)];
  // WebSocket close codes sent or received (see kCountedCloseCodes).
  ShardCounter close_codes[kCloseCodeSlots];
  // Open TLS connections whose records the kernel encrypts (kTLS).
  ShardCounter ktls_connections;
  // HTTP echo (websocket-echo listeners): answers given (the page
  // included, errors not), and the response controls used and refused, by
  // Control (protocol/http_echo.hpp).
  ShardCounter http_requests;
  // websocket-pubsub: subscribers now (up and down), messages published by
  // this shard's clients, deliveries to them, and slow consumers' messages
  // dropped (slow_consumer: drop) or connections closed (close).
  ShardCounter pubsub_subscribers;
  ShardCounter pubsub_published;
  ShardCounter pubsub_deliveries;
  ShardCounter pubsub_dropped;
  ShardCounter pubsub_slow_closed;
  ShardCounter controls[kControlSlots];
  ShardCounter control_errors[kControlSlots];
};

// Upper bounds, in seconds, of the shoal_shard_loop_lag_seconds buckets; a
// last, implicit +Inf bucket follows. From half a millisecond (a loop that is
// merely busy) to 5 s (a loop that is stuck).
inline constexpr double kLoopLagBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1.0,   2.5,  5.0};
inline constexpr std::size_t kLoopLagSlots = std::size(kLoopLagBuckets) + 1;

// How often each shard's loop-lag timer fires, and how long a shard may go
// without running it before /healthz calls the shard stuck. 2 s is twenty
// missed ticks: far beyond any legitimate handler (they run for
// microseconds), yet well inside the 10 s a liveness probe usually waits.
inline constexpr std::chrono::milliseconds kLoopLagPeriod{100};
inline constexpr std::chrono::milliseconds kLoopHealthDeadline{2000};

// The health of one shard's event loop, written only by that shard's thread
// (the loop-lag timer, the idle sweep and the run loop's exception guard) and
// read by the admin thread. Bucket counts are per bucket, not cumulative: the
// scrape adds them up.
struct alignas(64) LoopStats {
  ShardCounter lag_buckets[kLoopLagSlots];
  ShardCounter lag_sum_ns;    // sum of every measured lag
  ShardCounter lag_last_ns;   // the latest tick's lag
  ShardCounter lag_avg_ns;    // moving average, weight 1/8 per tick (~the last second)
  ShardCounter last_tick_ms;  // Shard::now_ms() of the latest tick, or of start(); 0 before
  ShardCounter ticks;         // loop-lag timer ticks run
  ShardCounter sweeps;        // idle-sweep timer ticks run
  ShardCounter exceptions;    // exceptions that escaped a handler
};

class Shard;

// Base of every protocol session: its place in the shard's activity-ordered
// list for the listener, the accounting that ends with the connection, and
// the one way to end it (Beast examples' single fail(); GUIDE 21): close()
// unlinks, counts and logs exactly once, then hands over to the session's
// on_close() for its part (closing the socket, a close frame, close_notify).
// A session cannot forget a step, and the shard's loops over its lists
// always make progress.
//
// Thread safety: the owning shard's thread only.
class Connection
    : public boost::intrusive::list_base_hook<
          boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
 public:
  // `client` is the listener's per-IP count this connection holds (released
  // when it ends), or nullptr when per-IP limiting was off at accept. The
  // connection takes over the admission counts (AdmissionGuard::release()).
  Connection(Shard& shard, std::size_t listener_index, PerIpCounts::Entry* client);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  virtual ~Connection();

  // Ends the connection for `reason`. The first call unlinks it from the
  // shard's lists, counts closed{reason}, logs "conn ID: closed (REASON)" at
  // debug and calls on_close(reason); later calls do nothing. Pending
  // operations complete with operation_aborted once on_close has closed the
  // socket.
  void close(CloseReason reason);

  // Whether close() has run: the connection is counted and out of the lists.
  bool closed() const noexcept { return closed_; }

  // "shard:sequence", unique within the process, for log lines.
  std::string id_string() const;

 protected:
  // The session's part of close(), called once, after the connection was
  // unlinked and counted: close the socket, or start an orderly ending
  // (WebSocket close frame, TLS close_notify) under the session's own
  // deadline.
  virtual void on_close(CloseReason reason) = 0;

  // Ends the connection after `op` failed with `ec`: close(classify(ec)),
  // with "conn ID: OP failed: MESSAGE" at debug unless the error is an
  // expected ending (is_expected_ending). Nothing once closed.
  void fail(const boost::system::error_code& ec, const char* op);

  // Marks traffic: moves this connection to the back of the idle list.
  void touch() noexcept;
  // Marks a write the peer has not taken yet: moves this connection to the
  // back of the listener's writers list, where the sweep closes it after
  // write_timeout. The next touch() moves it back.
  void wait_for_peer_to_read() noexcept;

  // --- the socket, on the shard's poller -----------------------------------
  // Takes `fd` (a connected TCP socket) for this connection: non-blocking,
  // TCP_NODELAY, TCP_INQ, and registered once with the shard's epoll,
  // edge-triggered for reading and writing (Poller). False, with `ec` set:
  // the socket is unusable; the caller ends the connection.
  bool adopt_socket(int fd, boost::system::error_code& ec) noexcept;
  int fd() const noexcept { return fd_; }
  // Parks until the socket is readable (writable): on_poll_readable()
  // (on_poll_writable()) runs on the next edge, or on the shard's next turn
  // when one came while nothing was parked. Edge-triggered: park on reading
  // only after a read found the socket empty (EAGAIN, or a read_hinted() that
  // says the kernel holds nothing more), on writing only after the kernel
  // refused bytes. At most one of each is parked; parking twice is parking
  // once.
  void wait_readable();
  void wait_writable();
  // on_poll_readable() on the shard's next turn, without an edge: for a
  // session that stops reading a busy socket to let the others run.
  void read_again();
  // Closes the socket, leaves every list, and has the shard delete this
  // connection on its next turn (never inside the caller's method). Nothing
  // it parked runs after. A later close() only counts.
  void retire();
  bool retired() const noexcept { return retired_; }

  // The parked waits, from the poller: the socket is readable (or at its
  // end, or failed: the next read says) / writable (or failed).
  virtual void on_poll_readable() = 0;
  virtual void on_poll_writable() = 0;

  // Declared in this order, across access sections, so that what follows
  // is tail padding a derived class can use.
  Shard& shard_;

 private:
  friend class Shard;
  friend class Poller;
  // The poller's edge (EPOLL* bits) or its turn: runs what is parked and ready.
  void on_events(std::uint32_t events);
  void run_ready();
  void queue_turn();

  std::int64_t last_activity_ms_ = 0;
  PerIpCounts::Entry* client_;

 protected:
  std::uint32_t seq_;
  std::uint16_t listener_index_;  // config validation: at most kMaxListeners

 private:
  bool closed_ : 1 = false;      // close() has run
  bool retired_ : 1 = false;     // retire() has run: deleted on the next turn
  bool registered_ : 1 = false;  // fd_ is in the shard's epoll
  bool read_parked_ : 1 = false;
  bool write_parked_ : 1 = false;
  bool readable_ : 1 = false;    // an edge came for reading that no parked wait took
  bool writable_ : 1 = false;
  bool queued_ : 1 = false;      // in the poller's turn queue

 protected:
  int fd_ = -1;
};
static_assert(kMaxListeners <= 0xffff);
// vtable pointer 8, list hook 16, shard 8, activity clock 8, per-IP entry 8,
// sequence 4, listener index 2, flags 1, socket 4 (GCC 12, x86-64): 4 bytes
// of tail padding are left for a derived class. Per-connection memory is a
// product figure (DESIGN.md, "Connections"): grow it on purpose.
static_assert(sizeof(Connection) <= 64, "Connection grew: it is in every connection");


// Per listener on one shard: its counters, its connections (least recently
// active first), those blocked on a peer that does not read (oldest write
// first), and their timeouts. A connection is in exactly one of the lists
// until it closes.
struct ListenerSlot {
  using list_type = boost::intrusive::list<Connection, boost::intrusive::constant_time_size<false>>;
  ListenerStats stats;
  list_type connections;
  list_type writers;
  std::int64_t idle_timeout_ms = 0;
  std::int64_t write_timeout_ms = 0;
  ListenerShared* shared = nullptr;
  pubsub::ChannelTable* pubsub = nullptr;  // websocket-pubsub listeners: this shard's channels
  // websocket-echo and websocket-pubsub listeners: their `websocket:` block,
  // in the config the shard was built from (which outlives every session).
  const WebSocketConfig* websocket = nullptr;
};

// The shard's own epoll, and the loop of the shard's thread around it. A
// connection registers its socket once, edge-triggered for EPOLLIN | EPOLLOUT
// | EPOLLRDHUP, with its own address as the event's data, and keeps no Asio
// object: no socket (40 bytes), no reactor state per descriptor (168), no wait
// operation (80), no shared_ptr control block.
//
// Asio's epoll is nested in this one (level-triggered), with an eventfd that
// other threads write after posting to the shard: the thread blocks in one
// epoll_wait() for sockets, Asio's timers and acceptors, and posted work, and
// runs Asio's handlers only when Asio's side has something, a few per pass
// (an acceptor with a full backlog must not keep the sockets waiting). A
// wake-up for sockets costs that one system call, as in the yardstick; the other
// nesting (this epoll inside Asio's) cost a second epoll_wait() and Asio's
// operation dispatch per wake-up, +36 % server CPU at 20,000 msgs/s.
//
// What this asks of the code around it: work handed to the shard's
// io_context from another thread goes through Shard::post() (which wakes
// the loop); a plain asio::post() from another thread would wait for the
// next event. Handlers Asio queues itself outside its handlers (a timer's
// aborted wait, when a session moves its deadline) run on the loop's next
// visit to Asio: they do nothing.
//
// Ownership: the poller deletes the connections that retired, on the loop's
// turn after the events and handlers of the pass that retired them, so that
// a session can retire from inside its own methods and an event already
// fetched for it finds it still there; and at shutdown(), every connection of
// the shard (Shard's destructor).
//
// Thread safety: the shard's thread only, but notify() (any thread).
class Poller {
 public:
  Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;
  ~Poller();

  // Nests the epoll of `reactor` (Asio's, behind `context`) in this one.
  void start(boost::asio::io_context& context, Reactor& reactor);
  // The shard thread's loop: until stop(). Exceptions from Asio's handlers
  // come out; call it again.
  void run();
  // Makes run() return at its next pass (after io_context::stop(), which
  // keeps Asio's handlers from running). Any thread.
  void stop() noexcept;
  // One more handler is queued on the context (Shard::post()): the loop
  // runs it before it sleeps again. Any thread (another one: one eventfd
  // write until the loop takes it).
  void notify() noexcept;
  // Deletes every connection still alive. After the shard's thread stopped.
  void shutdown(std::vector<ListenerSlot>& slots);

  int fd() const noexcept { return epfd_; }
  bool add(Connection& c, int fd) noexcept;
  void remove(int fd) noexcept;
  // Runs `c` on the next turn (its parked waits that are ready).
  void queue(Connection& c);
  // Deletes `c` on the next turn.
  void bury(Connection& c);
  // Keeps a closed connection that is still ending (a close frame, a
  // linger) where shutdown() finds it.
  void keep_closing(Connection& c) noexcept { closing_.push_back(c); }

 private:
  using List = boost::intrusive::list<Connection, boost::intrusive::constant_time_size<false>>;
  void turn();

  int epfd_ = -1;
  int wake_fd_ = -1;  // eventfd: other threads posted
  int asio_fd_ = -1;  // Asio's epoll (not ours to close)
  boost::asio::io_context* context_ = nullptr;
  std::atomic<bool> stopping_{false};    // stop(): checked each pass without Asio's lock
  std::atomic<bool> wake_armed_{false};  // wake_fd_ written, not yet read
  std::atomic<std::size_t> posted_{0};   // handlers Shard::post() queued since the last pass
  bool asio_due_ = true;                 // poll() before the next epoll_wait()
  std::vector<Connection*> queued_;      // to run on the next turn
  List closing_;                         // closed, still ending
  List dead_;                            // retired: deleted on the next turn
};

class Shard {
 public:
  Shard(unsigned id, const Config& config, std::vector<ListenerShared*> listeners,
        ActiveCount& process_active);
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  ~Shard();

  unsigned id() const noexcept { return id_; }
  boost::asio::io_context& context() noexcept { return ioc_; }
  executor_type executor() noexcept { return ioc_.get_executor(); }
  // The shard's own epoll, where every connection's socket is registered.
  Poller& poller() noexcept { return poller_; }
  // Every session deadline of this shard, on one timer (deadline_queue.hpp).
  DeadlineQueue& deadlines() noexcept { return deadlines_; }

  // Starts the thread; pins it to `cpu` when cpu >= 0.
  void start(int cpu);
  // Stops the loop and joins its thread. Handlers still queued are neither
  // run nor destroyed here: io_context::stop() only makes the loop return.
  // They are destroyed, with the sessions and admission guards they own,
  // when the context is (~Shard).
  void stop_and_join();

  // Posts `fn` to run on this shard's thread, and wakes its loop. Any
  // thread: this is how other threads hand the shard work (Poller).
  template <typename F>
  void post(F&& fn) {
    boost::asio::post(ioc_, std::forward<F>(fn));
    poller_.notify();
  }

  // Closes every connection with `reason`. Shard thread only.
  void close_all(CloseReason reason);

  // Applies a reloaded listener idle_timeout and write_timeout (0 = never).
  // Shard thread only.
  void set_timeouts(std::size_t listener_index, std::int64_t idle_ms, std::int64_t write_ms);

  ListenerSlot& slot(std::size_t listener_index) noexcept { return slots_[listener_index]; }
  const ListenerSlot& slot(std::size_t listener_index) const noexcept { return slots_[listener_index]; }
  std::size_t listener_count() const noexcept { return slots_.size(); }

  // Connections this shard serves now / has served since start (any thread).
  std::uint64_t active_connections() const noexcept { return active_.load(); }
  std::uint64_t served_connections() const noexcept;

  // Scratch buffer for a read that is echoed at once; never held across an
  // asynchronous operation. Shard thread only.
  char* scratch() noexcept { return scratch_.get(); }
  static constexpr std::size_t scratch_size = 64 * 1024;

  // Monotonic milliseconds from a coarse clock (a few ns to read).
  static std::int64_t now_ms() noexcept;

  // The loop's health counters (any thread may read them).
  const LoopStats& loop_stats() const noexcept { return loop_; }
  // Whether the loop ran its lag timer within kLoopHealthDeadline of
  // `now_ms` (a Shard::now_ms() value); also false before start(). Any thread.
  bool loop_answered(std::int64_t now_ms) const noexcept;
  // Milliseconds since the loop last ran its lag timer. Any thread.
  std::int64_t ms_since_last_tick(std::int64_t now_ms) const noexcept;

 private:
  friend class Connection;
  // close(), and then an unlink should `c` somehow still be in a list
  // (asserted in debug builds): a loop that takes the front always ends.
  static void close_and_unlink(Connection& c, CloseReason reason);
  void schedule_sweep();
  std::int64_t sweep_period() const;
  void sweep();
  void schedule_lag_tick();
  void on_lag_tick();

  unsigned id_;
  std::vector<ListenerSlot> slots_;
  ActiveCount& process_active_;
  ShardCounter active_;
  std::uint32_t next_seq_ = 0;
  std::unique_ptr<char[]> scratch_;
  std::int64_t sweep_period_ms_ = 0;
  std::uint64_t sweep_generation_ = 0;
  LoopStats loop_;
  // ~Shard shuts it down first, which deletes the connections while the
  // context and the deadline queue they use are still there.
  Poller poller_;
  // Declared after the slots: destroying the context destroys pending
  // handlers, and with them what they own that unlinks from the slots.
  boost::asio::io_context ioc_{1};
  boost::asio::executor_work_guard<executor_type> work_{ioc_.get_executor()};
  // After the context, whose timer service its timer uses. The sessions
  // whose deadlines it holds are deleted before (~Shard: poller_.shutdown()).
  DeadlineQueue deadlines_{ioc_.get_executor()};
  steady_timer sweep_timer_{ioc_.get_executor()};
  steady_timer lag_timer_{ioc_.get_executor()};
  std::thread thread_;
};

}  // namespace shoal
