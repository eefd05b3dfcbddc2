// The shard's own epoll (shard.hpp, Poller) and the connection's side of it.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <boost/asio/detail/epoll_reactor.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "runtime/shard.hpp"

namespace shoal {

namespace {

// Registered once per socket: both directions, the peer's half-close as
// readable, edge-triggered (each edge is reported once; a session reads or
// writes until the kernel says it cannot, then parks).
constexpr std::uint32_t kSocketEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

// Events taken per epoll_wait(): a full batch means more may be ready, and
// the poller comes back after the shard's other handlers instead of waiting
// for an edge that need not come.
constexpr int kEventsPerWait = 256;

}  // namespace

struct Poller::ReactorLink {
  Reactor::per_descriptor_data data = nullptr;
};

Poller::Poller() : epfd_(::epoll_create1(EPOLL_CLOEXEC)), link_(std::make_unique<ReactorLink>()) {
  if (epfd_ < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
}

Poller::~Poller() {
  if (epfd_ >= 0) ::close(epfd_);
}

void Poller::start(boost::asio::io_context& context, Reactor& reactor) {
  context_ = &context;
  if (reactor.register_descriptor(epfd_, link_->data) != 0)
    throw std::system_error(errno, std::system_category(), "registering the shard's epoll with Asio");
  reactor_ = &reactor;
  // The first wait completes at once (a descriptor just registered may be
  // ready): the loop's first turn looks, finds nothing, and parks.
  wait_.start(reactor, epfd_, &link_->data, this);
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
  if (reactor_ != nullptr) {
    // The pending wait is aborted into the stopped context, which destroys
    // it with itself (it is part of this object: the poller outlives it).
    reactor_->deregister_descriptor(epfd_, link_->data, /*closing=*/false);
    reactor_->cleanup_descriptor_data(link_->data);
    reactor_ = nullptr;
  }
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

void Poller::queue(Connection& c) {
  queued_.push_back(&c);
  post_turn();
}

void Poller::bury(Connection& c) {
  dead_.push_back(c);
  post_turn();
}

void Poller::on_ready(Poller* self, const boost::system::error_code& ec) {
  if (ec) return;  // shutdown()
  self->run_events();
}

void Poller::run_events() {
  epoll_event events[kEventsPerWait];
  int n;
  do {
    n = ::epoll_wait(epfd_, events, kEventsPerWait, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    spdlog::error("shard epoll_wait: {}", std::strerror(errno));
    n = 0;
  }
  for (int i = 0; i < n; ++i) {
    auto* const c = static_cast<Connection*>(events[i].data.ptr);
    // An exception ends that connection only: the rest of the batch, and
    // the wait below, must still run (each edge is reported once).
    try {
      c->on_events(events[i].events);
    } catch (const std::exception& e) {
      spdlog::error("conn {}: unhandled exception: {}", c->id_string(), e.what());
      c->close(CloseReason::error);
      c->retire();
    }
  }
  if (n == kEventsPerWait) {
    boost::asio::post(*context_, [this] { run_events(); });
    return;
  }
  // Empty now: the next event makes the next edge.
  wait_.start(*reactor_, epfd_, &link_->data, this);
}

void Poller::post_turn() {
  if (turn_posted_) return;
  turn_posted_ = true;
  boost::asio::post(*context_, [this] { turn(); });
}

void Poller::turn() {
  turn_posted_ = false;
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
