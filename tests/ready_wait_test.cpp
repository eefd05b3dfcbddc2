// ReadyWait and read_hinted on real loopback sockets: what the sessions rely
// on when they wait for the next edge instead of calling async_wait.
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include "runtime/ready_wait.hpp"

namespace shoal {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// What a wait reports back, and whether its owner is still alive.
struct Probe {
  int calls = 0;
  boost::system::error_code ec;
};
struct Owner {
  std::shared_ptr<Probe> probe;
};
void on_ready(Owner owner, const boost::system::error_code& ec) {
  ++owner.probe->calls;
  owner.probe->ec = ec;
}
using Wait = ReadyWait<Owner, &on_ready>;

struct Pair {
  explicit Pair(asio::io_context& ioc) : server(ioc.get_executor()), client(ioc.get_executor()) {
    tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    server.non_blocking(true);
    enable_read_hints(server.native_handle());
  }
  ReadySocket server;
  ReadySocket client;
};

// Reads what the server side holds; `more` as read_hinted says.
std::string drain(ReadySocket& s, bool& more) {
  char buf[256];
  const long n = read_hinted(s.native_handle(), buf, sizeof buf, more);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Lets the first, speculative wait after registration complete (see the
// first test), then queues the wait that must sleep until the next edge.
void wait_past_first_completion(asio::io_context& ioc, Wait& wait, ReadySocket& s,
                                const std::shared_ptr<Probe>& probe) {
  wait.start(reactor_of(ioc), s, Owner{probe});
  ioc.run_for(50ms);
  wait.start(reactor_of(ioc), s, Owner{probe});
}

TEST(ReadyWait, CompletesOnTheNextEdgeAndNotBefore) {
  asio::io_context ioc(1);
  Pair p(ioc);
  auto probe = std::make_shared<Probe>();
  Wait wait;

  // The first wait after registration is speculative: Asio has not seen an
  // edge yet, so it completes once, and the read finds nothing.
  wait.start(reactor_of(ioc), p.server, Owner{probe});
  ioc.run_for(50ms);
  ASSERT_EQ(probe->calls, 1);
  EXPECT_FALSE(probe->ec);
  bool more = true;
  EXPECT_EQ(drain(p.server, more), "");

  // Now the socket is known empty: the wait sleeps until bytes come.
  wait.start(reactor_of(ioc), p.server, Owner{probe});
  ioc.restart();
  ioc.run_for(100ms);
  EXPECT_EQ(probe->calls, 1) << "completed with nothing to read";

  ASSERT_EQ(::send(p.client.native_handle(), "ping", 4, 0), 4);
  ioc.restart();
  ioc.run_for(100ms);
  EXPECT_EQ(probe->calls, 2);
  EXPECT_FALSE(probe->ec);
  EXPECT_EQ(drain(p.server, more), "ping");
  EXPECT_FALSE(more) << "TCP_INQ: the kernel holds nothing more";
}

TEST(ReadyWait, ReadHintedCountsAPendingFinAsMore) {
  asio::io_context ioc(1);
  Pair p(ioc);
  ASSERT_EQ(::send(p.client.native_handle(), "bye", 3, 0), 3);
  p.client.shutdown(tcp::socket::shutdown_send);
  std::this_thread::sleep_for(20ms);
  bool more = false;
  EXPECT_EQ(drain(p.server, more), "bye");
  EXPECT_TRUE(more) << "the FIN behind the bytes is still to be read";
  char c;
  EXPECT_EQ(read_hinted(p.server.native_handle(), &c, 1, more), 0) << "then EOF";
}

TEST(ReadyWait, CloseCompletesAPendingWaitWithOperationAborted) {
  asio::io_context ioc(1);
  Pair p(ioc);
  auto probe = std::make_shared<Probe>();
  Wait wait;
  wait_past_first_completion(ioc, wait, p.server, probe);
  p.server.close();
  ioc.restart();
  ioc.run_for(50ms);
  ASSERT_EQ(probe->calls, 2);
  EXPECT_EQ(probe->ec, asio::error::operation_aborted);
}

TEST(ReadyWait, AWaitPendingWhenTheContextGoesReleasesItsOwnerUncalled) {
  auto probe = std::make_shared<Probe>();
  auto wait = std::make_unique<Wait>();
  {
    asio::io_context ioc(1);
    Pair p(ioc);
    wait_past_first_completion(ioc, *wait, p.server, probe);
    ASSERT_EQ(probe->calls, 1);
    EXPECT_EQ(probe.use_count(), 2) << "the pending wait holds its owner";
    // The sockets go first (as a session's members would), then the context
    // with the wait still queued.
  }
  EXPECT_EQ(probe->calls, 1) << "not called on destruction";
  EXPECT_EQ(probe.use_count(), 1) << "the owner was released";
}

}  // namespace
}  // namespace shoal
