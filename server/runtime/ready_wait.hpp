// Waiting for a socket to become readable without re-arming epoll.
//
// socket.async_wait(wait_read) costs one epoll_ctl(EPOLL_CTL_MOD) each time
// it starts: Asio cannot know whether the edge it waits for was already
// spent, so it re-arms the descriptor (epoll_reactor::start_op, the
// non-speculative branch). At 20,000 messages/s nearly every message is its
// own wake-up, and that call is one system call in four (epoll_wait, recv,
// send, epoll_ctl); the yardstick and Tokio register a socket once.
//
// Asio already registers every socket once, edge-triggered, for EPOLLIN. A
// read operation started with speculation allowed is only queued, with no
// system call, when the last read on that socket left it empty, and the next
// edge completes it. ReadyWait is such an operation that reads nothing: it
// completes when the socket is readable or has failed, and its owner reads
// into the shard's scratch buffer itself, so an idle connection still holds
// no buffer. It lives inside its session: no allocation per wait either.
//
// The rules this puts on the caller, which edge triggering needs:
// - start() only after a read that found the socket empty: EAGAIN, or a
//   read_hinted() that says the kernel holds nothing more. (A read shorter
//   than asked for is not enough: a FIN that came with the last bytes makes
//   no edge of its own, and the wait would never see it.) A caller that
//   stops reading a busy socket, to be fair to the others, posts its
//   continuation instead; a wait would see no new edge and hang.
// - One wait at a time, and the object outlives it: it holds its owner (the
//   session, by unique_ptr or shared_ptr) until it completes, like the
//   handler of an async_wait would.
// - A readiness Asio learnt of while no wait was pending (data that came
//   during a blocked write, the first bytes after accept) completes the next
//   wait at once, through Asio's speculative path: at worst one recv that
//   finds nothing.
//
// Cancellation and close work as for any Asio operation: close() or
// cancel() on the socket completes the wait with operation_aborted. When the
// io_context is destroyed with the wait pending, the owner is released
// without a call, as an uninvoked handler would be.
//
// This uses Asio's reactor through its detail interface (reactor_op and
// epoll_reactor::start_op), read against Boost 1.81, the only Boost this
// project builds with; the static_assert below stops a silent change.
#pragma once

#include <utility>

#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <boost/version.hpp>

static_assert(BOOST_VERSION / 100 == 1081,
              "ready_wait.hpp relies on Boost 1.81's epoll_reactor; re-read it for this Boost");

namespace boost::asio::detail {
class epoll_reactor;
}  // namespace boost::asio::detail

namespace shoal {

using Reactor = boost::asio::detail::epoll_reactor;
using ReadySocket =
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;

// The reactor behind `context`: a lookup under a lock, so keep the result.
Reactor& reactor_of(boost::asio::io_context& context);

// Reads that say whether the socket is empty, so that draining it costs one
// recv, not a second that finds EAGAIN. enable_read_hints() turns on TCP_INQ;
// read_hinted() is recv(MSG_DONTWAIT) (same result, same errno) that also
// sets `more`: whether the kernel still holds bytes or a FIN not yet read.
// Where the option is missing, `more` stays true and the caller reads on
// until EAGAIN.
void enable_read_hints(int fd) noexcept;
long read_hinted(int fd, void* buf, std::size_t len, bool& more) noexcept;

namespace ready_wait_detail {
// Queues `op` as a speculative read operation on `socket`, whose io_context
// runs `reactor` (ready_wait.cpp).
void start(Reactor& reactor, ReadySocket& socket, boost::asio::detail::reactor_op& op);
// The same for a descriptor registered with `reactor` directly;
// `descriptor_data` points to its Reactor::per_descriptor_data.
void start(Reactor& reactor, int fd, void* descriptor_data, boost::asio::detail::reactor_op& op);
}  // namespace ready_wait_detail

// OnReady(owner, ec) runs on the socket's shard once it is readable (ec is
// clear) or the wait was cancelled or failed.
template <class Owner, void (*OnReady)(Owner, const boost::system::error_code&)>
class ReadyWait final : private boost::asio::detail::reactor_op {
 public:
  ReadyWait() : reactor_op(boost::system::error_code(), &ReadyWait::perform_ready, &ReadyWait::finish) {}
  ReadyWait(const ReadyWait&) = delete;
  ReadyWait& operator=(const ReadyWait&) = delete;

  // Whether a wait is pending (it holds its owner until it completes).
  bool waiting() const noexcept { return static_cast<bool>(owner_); }

  // `reactor` is reactor_of(the socket's io_context).
  void start(Reactor& reactor, ReadySocket& socket, Owner owner) {
    owner_ = std::move(owner);
    ec_ = boost::system::error_code();
    ready_wait_detail::start(reactor, socket, *this);
  }
  // On a descriptor registered with `reactor` by its owner (the shard's
  // poller): `descriptor_data` points to its Reactor::per_descriptor_data.
  void start(Reactor& reactor, int fd, void* descriptor_data, Owner owner) {
    owner_ = std::move(owner);
    ec_ = boost::system::error_code();
    ready_wait_detail::start(reactor, fd, descriptor_data, *this);
  }

 private:
  // Called by the reactor when an edge came (or speculatively, when one may
  // have come unseen). "Exhausted" tells Asio not to try again before the
  // next edge: the owner reads until the socket is empty.
  static status perform_ready(reactor_op*) { return done_and_exhausted; }

  static void finish(void* owner, boost::asio::detail::scheduler_operation* base,
                     const boost::system::error_code&, std::size_t) {
    auto* const self = static_cast<ReadyWait*>(base);
    Owner keep = std::move(self->owner_);
    // No owner: the io_context is being destroyed. Releasing `keep` may
    // delete the session and this object with it; nothing touches it after.
    if (owner == nullptr) return;
    const boost::system::error_code ec = self->ec_;
    OnReady(std::move(keep), ec);
  }

  Owner owner_{};
};

}  // namespace shoal
