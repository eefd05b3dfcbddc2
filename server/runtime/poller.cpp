// The shard's own epoll (shard.hpp, Poller) and the connection's side of it.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <boost/asio/detail/epoll_reactor.hpp>
#include <spdlog/spdlog.h>

#include "runtime/shard.hpp"

namespace shoal {

namespace {

// Registered once per socket: both directions, the peer's half-close as
// readable, edge-triggered (each edge is reported once; a session reads or
// writes until the kernel says it cannot, then parks).
constexpr std::uint32_t kSocketEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

// Events taken per epoll_wait(): what a full batch leaves stays ready, and
// the next epoll_wait() returns it at once, after Asio's handlers and the
// turn had their go.
constexpr int kEventsPerWait = 256;

// Asio's own handlers (timers, accepts) run per pass of the loop, between
// two batches of socket events, beside what Shard::post() queued.
constexpr std::size_t kAsioHandlersPerPass = 4;

// Asio's epoll descriptor, private in its reactor: an explicit
// instantiation may name a private member (the standard's one exception to
// access checking), and this one hands its pointer out. Read against Boost
// 1.81 (ready_wait.hpp asserts the version).
struct AsioEpollFd {
  friend int Reactor::*asio_epoll_fd_member(AsioEpollFd);
};
template <int Reactor::*Member>
struct ExposeAsioEpollFd {
  friend int Reactor::*asio_epoll_fd_member(AsioEpollFd) { return Member; }
};
template struct ExposeAsioEpollFd<&Reactor::epoll_fd_>;

// The poller whose loop runs on this thread: notify() from it sets a flag,
// from any other thread it writes the eventfd.
thread_local Poller* loop_poller = nullptr;

}  // namespace

Poller::Poller()
    : epfd_(::epoll_create1(EPOLL_CLOEXEC)), wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (epfd_ < 0 || wake_fd_ < 0) {
    const int err = errno;
    if (epfd_ >= 0) ::close(epfd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    throw std::system_error(err, std::system_category(), "the shard's epoll");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &wake_fd_;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    const int err = errno;
    ::close(epfd_);
    ::close(wake_fd_);
    throw std::system_error(err, std::system_category(), "the shard's wake-up eventfd");
  }
}

Poller::~Poller() {
  ::close(wake_fd_);
  ::close(epfd_);
}

void Poller::start(boost::asio::io_context& context, Reactor& reactor) {
  context_ = &context;
  asio_fd_ = reactor.*asio_epoll_fd_member(AsioEpollFd{});
  // Level-triggered: readable for as long as Asio has events to take, so a
  // poll() that leaves some behind is called again.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &asio_fd_;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, asio_fd_, &ev) != 0)
    throw std::system_error(errno, std::system_category(), "nesting Asio's epoll in the shard's");
}

void Poller::notify() noexcept {
  posted_.fetch_add(1, std::memory_order_release);
  if (loop_poller == this) {
    asio_due_ = true;
    return;
  }
  if (wake_armed_.exchange(true, std::memory_order_acq_rel)) return;  // a wake-up is on its way
  const std::uint64_t one = 1;
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void Poller::stop() noexcept {
  stopping_.store(true, std::memory_order_release);
  notify();
}

void Poller::run() {
  loop_poller = this;
  // Again after an exception from a handler: what it left queued.
  asio_due_ = true;
  epoll_event events[kEventsPerWait];
  for (;;) {
    if (asio_due_) {
      asio_due_ = false;
      // A bounded share: poll() would also run what these handlers queue,
      // and an acceptor with a full backlog queues its next accept each
      // time. Under a burst of 19,000 wss connections that kept every
      // upgrade waiting ~0.9 s behind new handshakes, all 19,000 holding
      // their handshake state at once (15 KB each instead of 1.7 KB).
      // What Shard::post() queued since the last pass runs in full (pubsub
      // sends the other shards one handler per message: a fixed share fell
      // behind), plus a few of Asio's own (timers, accepts).
      const std::size_t budget =
          kAsioHandlersPerPass + posted_.exchange(0, std::memory_order_acquire);
      std::size_t ran = 0;
      while (ran < budget && context_->poll_one() != 0) ++ran;
      if (ran == budget) asio_due_ = true;  // more after the sockets' turn
    }
    turn();
    if (stopping_.load(std::memory_order_acquire)) break;
    // More to do already (connections the handlers just queued, Asio
    // handlers left for the next pass): look, but do not sleep. What a full
    // batch left is still ready, and returns at once.
    const int timeout = queued_.empty() && dead_.empty() && !asio_due_ ? -1 : 0;
    const int n = ::epoll_wait(epfd_, events, kEventsPerWait, timeout);
    if (n < 0) {
      if (errno != EINTR) spdlog::error("shard epoll_wait: {}", std::strerror(errno));
      continue;
    }
    for (int i = 0; i < n; ++i) {
      void* const ptr = events[i].data.ptr;
      if (ptr == &asio_fd_) {
        asio_due_ = true;
        continue;
      }
      if (ptr == &wake_fd_) {
        // Cleared before the read: a post after it writes again (at worst
        // one wake-up for nothing), and its handler is queued before.
        wake_armed_.store(false, std::memory_order_release);
        std::uint64_t count;
        (void)!::read(wake_fd_, &count, sizeof count);
        asio_due_ = true;
        continue;
      }
      auto* const c = static_cast<Connection*>(ptr);
      // An exception ends that connection only: the rest of the batch must
      // still run (each edge is reported once).
      try {
        c->on_events(events[i].events);
      } catch (const std::exception& e) {
        spdlog::error("conn {}: unhandled exception: {}", c->id_string(), e.what());
        c->close(CloseReason::error);
        c->retire();
      }
    }
  }
}

void Poller::shutdown(std::vector<ListenerSlot>& slots) {
  const auto destroy = [](List& list) {
    while (!list.empty()) {
      Connection& c = list.front();
      list.pop_front();
      if (c.fd_ >= 0) ::close(c.fd_);  // leaves our epoll with it
      c.fd_ = -1;
      c.retired_ = true;
      delete &c;
    }
  };
  for (auto& slot : slots) {
    destroy(slot.connections);
    destroy(slot.writers);
  }
  destroy(closing_);
  destroy(dead_);
  queued_.clear();
}

bool Poller::add(Connection& c, int fd) noexcept {
  epoll_event ev{};
  ev.events = kSocketEvents;
  ev.data.ptr = &c;
  return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void Poller::remove(int fd) noexcept {
  // Before close(): a descriptor shared with another process (none is, but
  // nothing here depends on it) would otherwise keep reporting its events
  // to a connection that is gone.
  epoll_event ev{};
  (void)::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
}

// Both wait for the loop's next turn, after this pass's events and handlers.
void Poller::queue(Connection& c) { queued_.push_back(&c); }
void Poller::bury(Connection& c) { dead_.push_back(c); }

void Poller::turn() {
  if (queued_.empty() && dead_.empty()) return;
  std::vector<Connection*> run;
  run.swap(queued_);
  for (Connection* c : run) {
    c->queued_ = false;
    if (c->retired_) continue;
    try {
      c->run_ready();
    } catch (const std::exception& e) {
      spdlog::error("conn {}: unhandled exception: {}", c->id_string(), e.what());
      c->close(CloseReason::error);
      c->retire();
    }
  }
  // Keep the vector's memory for the next turn.
  if (queued_.empty()) {
    run.clear();
    queued_.swap(run);
  }
  List dead;
  dead.swap(dead_);
  while (!dead.empty()) {
    Connection& c = dead.front();
    dead.pop_front();
    if (c.queued_) {
      // Queued again after it retired (by another session, in this turn):
      // the next turn drops it from the queue, then deletes it.
      dead_.push_back(c);
      continue;
    }
    delete &c;
  }
}

// --- Connection ----------------------------------------------------------

bool Connection::adopt_socket(int fd, boost::system::error_code& ec) noexcept {
  fd_ = fd;
  int on = 1;
  if (::ioctl(fd, FIONBIO, &on) != 0 || ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) {
    ec.assign(errno, boost::system::system_category());
    return false;
  }
  enable_read_hints(fd);  // reads say when the socket is empty
  if (!shard_.poller().add(*this, fd)) {
    ec.assign(errno, boost::system::system_category());
    return false;
  }
  registered_ = true;
  return true;
}

void Connection::queue_turn() {
  if (queued_) return;
  queued_ = true;
  shard_.poller().queue(*this);
}

void Connection::wait_readable() {
  if (retired_) return;
  read_parked_ = true;
  if (readable_) queue_turn();
}

void Connection::wait_writable() {
  if (retired_) return;
  write_parked_ = true;
  if (writable_) queue_turn();
}

void Connection::read_again() {
  if (retired_) return;
  read_parked_ = true;
  readable_ = true;
  queue_turn();
}

void Connection::on_events(std::uint32_t events) {
  if (retired_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable_ = true;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writable_ = true;
  run_ready();
}

void Connection::run_ready() {
  if (write_parked_ && writable_) {
    write_parked_ = false;
    writable_ = false;
    on_poll_writable();
    if (retired_) return;
  }
  if (read_parked_ && readable_) {
    read_parked_ = false;
    readable_ = false;
    on_poll_readable();
  }
}

void Connection::retire() {
  if (retired_) return;
  retired_ = true;
  read_parked_ = false;
  write_parked_ = false;
  if (fd_ >= 0) {
    if (registered_) shard_.poller().remove(fd_);
    ::close(fd_);
    fd_ = -1;
  }
  unlink();  // from a listener's list, or the poller's closing list
  shard_.poller().bury(*this);
}

}  // namespace shoal
