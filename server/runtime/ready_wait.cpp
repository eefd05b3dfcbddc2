#include "runtime/ready_wait.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>

#include <boost/asio/detail/epoll_reactor.hpp>

namespace shoal {
namespace ready_wait_detail {

namespace {

// The socket's descriptor and its reactor registration are in basic_socket's
// protected impl_; a pointer to that member, formed in a derived class, is
// the standard way to reach it.
struct SocketAccess : ReadySocket {
  static auto& implementation(ReadySocket& s) { return (s.*&SocketAccess::impl_).get_implementation(); }
};

}  // namespace

void start(Reactor& reactor, ReadySocket& socket, boost::asio::detail::reactor_op& op) {
  auto& impl = SocketAccess::implementation(socket);
  reactor.start_op(Reactor::read_op, impl.socket_, impl.reactor_data_, &op, /*is_continuation=*/false,
                   /*allow_speculative=*/true);
}

void start(Reactor& reactor, int fd, void* descriptor_data, boost::asio::detail::reactor_op& op) {
  reactor.start_op(Reactor::read_op, fd, *static_cast<Reactor::per_descriptor_data*>(descriptor_data), &op,
                   /*is_continuation=*/false, /*allow_speculative=*/true);
}

}  // namespace ready_wait_detail

void enable_read_hints(int fd) noexcept {
  const int on = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_INQ, &on, sizeof on);
}

long read_hinted(int fd, void* buf, std::size_t len, bool& more) noexcept {
  iovec iov{buf, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
  more = true;
  if (n > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
        int inq = 0;
        std::memcpy(&inq, CMSG_DATA(c), sizeof inq);
        more = inq != 0;  // the kernel reports a pending FIN as 1
      }
    }
  }
  return n;
}

Reactor& reactor_of(boost::asio::io_context& context) { return boost::asio::use_service<Reactor>(context); }

}  // namespace shoal
