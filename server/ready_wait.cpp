#include "ready_wait.hpp"

#include <boost/asio/detail/epoll_reactor.hpp>

namespace shoal {
namespace ready_wait_detail {

namespace {

// The socket's descriptor and its reactor registration are in basic_socket's
// protected impl_; a pointer to that member, formed in a derived class, is
// the standard way to reach it.
struct SocketAccess : tcp_socket {
  static auto& implementation(tcp_socket& s) { return (s.*&SocketAccess::impl_).get_implementation(); }
};

}  // namespace

void start(Shard& shard, tcp_socket& socket, boost::asio::detail::reactor_op& op) {
  auto& impl = SocketAccess::implementation(socket);
  shard.reactor().start_op(boost::asio::detail::epoll_reactor::read_op, impl.socket_, impl.reactor_data_, &op,
                           /*is_continuation=*/false, /*allow_speculative=*/true);
}

}  // namespace ready_wait_detail
}  // namespace shoal
