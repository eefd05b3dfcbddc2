// In-process tests of Connection's one way to end and of the admission
// guard, on a Shard that is never started: everything runs on this thread,
// which stands in for the shard's.
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <gtest/gtest.h>

#include "runtime/close_reason.hpp"
#include "config/config.hpp"
#include "runtime/shard.hpp"

namespace shoal {
namespace {

namespace asio = boost::asio;

Config one_listener() {
  Config c;
  c.listeners.resize(1);
  return c;
}

// What a server holds for one listener, and a shard that serves it.
struct Fixture {
  Config config = one_listener();
  ListenerShared shared;
  ActiveCount process_active;
  std::unique_ptr<Shard> shard =
      std::make_unique<Shard>(0, config, std::vector<ListenerShared*>{&shared}, process_active);

  // The counts admit() takes for one connection.
  void admit() {
    ASSERT_TRUE(process_active.acquire(1000));
    shared.active.fetch_add(1);
  }
  std::uint64_t closed(CloseReason r) const {
    return shard->slot(0).stats.closed[static_cast<int>(r)].load();
  }
  std::uint64_t closed_total() const {
    std::uint64_t n = 0;
    for (int r = 0; r < static_cast<int>(CloseReason::count_); ++r)
      n += shard->slot(0).stats.closed[r].load();
    return n;
  }
};

// A session whose part of closing does nothing at all: before Connection
// owned "close once, unlink, count", such a session kept close_all spinning.
class InertSession final : public Connection {
 public:
  InertSession(Shard& shard, PerIpCounts::Entry* client, int* hooks)
      : Connection(shard, 0, client), hooks_(hooks) {}
  using Connection::fail;
  using Connection::touch;
  using Connection::wait_for_peer_to_read;

 private:
  void on_close(CloseReason) override { ++*hooks_; }
  void on_poll_readable() override {}
  void on_poll_writable() override {}
  int* hooks_;
};

TEST(Connection, CloseCountsOnceUnlinksAndRunsTheHookOnce) {
  Fixture f;
  f.admit();
  int hooks = 0;
  {
    InertSession s(*f.shard, nullptr, &hooks);
    EXPECT_FALSE(s.closed());
    EXPECT_EQ(f.shard->active_connections(), 1u);
    s.close(CloseReason::idle_timeout);
    s.close(CloseReason::drain);
    s.fail(asio::error::connection_reset, "read");
    EXPECT_TRUE(s.closed());
    const auto in_lists = [&f] {
      return !f.shard->slot(0).connections.empty() || !f.shard->slot(0).writers.empty();
    };
    EXPECT_FALSE(in_lists());
    // Still ending (its hook did not retire it): the poller keeps it where
    // shutdown finds it, in no listener list.
    EXPECT_TRUE(s.is_linked());
    // A closed connection stays out of the lists whatever it does next.
    s.touch();
    s.wait_for_peer_to_read();
    EXPECT_FALSE(in_lists());
    EXPECT_EQ(hooks, 1);
    EXPECT_EQ(f.closed(CloseReason::idle_timeout), 1u);
    EXPECT_EQ(f.closed_total(), 1u);
  }
  EXPECT_EQ(f.shard->active_connections(), 0u);
  EXPECT_EQ(f.process_active.load(), 0u);
  EXPECT_EQ(f.shared.active.load(), 0u);
}

TEST(Connection, CloseAllTerminatesWhenSessionsDoNothingThemselves) {
  Fixture f;
  int hooks = 0;
  std::vector<std::unique_ptr<InertSession>> sessions;
  for (int i = 0; i < 5; ++i) {
    f.admit();
    sessions.push_back(std::make_unique<InertSession>(*f.shard, nullptr, &hooks));
  }
  sessions[1]->wait_for_peer_to_read();  // one in the writers list
  f.shard->close_all(CloseReason::drain);
  EXPECT_EQ(hooks, 5);
  EXPECT_EQ(f.closed(CloseReason::drain), 5u);
  EXPECT_TRUE(f.shard->slot(0).connections.empty());
  EXPECT_TRUE(f.shard->slot(0).writers.empty());
  f.shard->close_all(CloseReason::drain);  // nothing left: counts nothing
  EXPECT_EQ(f.closed_total(), 5u);
  sessions.clear();
  EXPECT_EQ(f.process_active.load(), 0u);
}

TEST(Connection, FailClassifiesTheError) {
  Fixture f;
  int hooks = 0;
  const std::pair<boost::system::error_code, CloseReason> cases[] = {
      {asio::error::connection_reset, CloseReason::reset},
      {asio::error::broken_pipe, CloseReason::reset},
      {asio::error::eof, CloseReason::peer_closed},
      {asio::ssl::error::stream_truncated, CloseReason::peer_closed},
      {asio::error::timed_out, CloseReason::error},
  };
  for (const auto& [ec, reason] : cases) {
    f.admit();
    InertSession s(*f.shard, nullptr, &hooks);
    const std::uint64_t before = f.closed(reason);
    s.fail(ec, "read");
    EXPECT_EQ(f.closed(reason), before + 1) << ec.message();
  }
}

TEST(CloseReason, ClassifyGivesEachErrorItsReason) {
  EXPECT_EQ(classify(asio::error::connection_reset), CloseReason::reset);
  EXPECT_EQ(classify(asio::error::broken_pipe), CloseReason::reset);
  EXPECT_EQ(classify(asio::error::connection_aborted), CloseReason::reset);
  EXPECT_EQ(classify(asio::error::eof), CloseReason::peer_closed);
  EXPECT_EQ(classify(asio::ssl::error::stream_truncated), CloseReason::peer_closed);
  EXPECT_EQ(classify(boost::system::error_code(1, asio::error::get_ssl_category())),
            CloseReason::protocol_error);
  EXPECT_EQ(classify(asio::error::operation_aborted), CloseReason::error);
  EXPECT_EQ(classify(asio::error::timed_out), CloseReason::error);
  EXPECT_TRUE(is_expected_ending(asio::error::operation_aborted));
  EXPECT_TRUE(is_expected_ending(asio::error::eof));
  EXPECT_FALSE(is_expected_ending(asio::error::timed_out));
}

// --- the admission guard -------------------------------------------------------

TEST(AdmissionGuard, GivesTheCountsBackUnlessReleased) {
  Fixture f;
  const auto ip = asio::ip::make_address("192.0.2.7");
  {
    f.admit();
    AdmissionGuard g(f.shared, f.process_active, f.shared.per_ip.try_acquire(ip, 10));
    EXPECT_EQ(f.shared.per_ip.count(ip), 1u);
  }
  EXPECT_EQ(f.process_active.load(), 0u);
  EXPECT_EQ(f.shared.active.load(), 0u);
  EXPECT_EQ(f.shared.per_ip.count(ip), 0u);

  f.admit();
  AdmissionGuard g(f.shared, f.process_active, f.shared.per_ip.try_acquire(ip, 10));
  AdmissionGuard moved = std::move(g);  // the moved-from guard holds nothing
  EXPECT_FALSE(g.holds());
  EXPECT_TRUE(moved.holds());
  int hooks = 0;
  {
    // The connection takes the counts over, and gives them back when it ends.
    InertSession s(*f.shard, moved.release(), &hooks);
    EXPECT_FALSE(moved.holds());
    EXPECT_EQ(f.process_active.load(), 1u);
    EXPECT_EQ(f.shared.per_ip.count(ip), 1u);
  }
  EXPECT_EQ(f.process_active.load(), 0u);
  EXPECT_EQ(f.shared.active.load(), 0u);
  EXPECT_EQ(f.shared.per_ip.count(ip), 0u);
}

// dispatch: a session start posted to another shard that stops before
// running it. Destroying the shard destroys the handler, and the guard in it
// gives the counts back.
TEST(AdmissionGuard, SessionStartDestroyedUnrunAtShutdownLeaksNothing) {
  Fixture f;
  const auto ip = asio::ip::make_address("192.0.2.8");
  bool ran = false;
  for (int i = 0; i < 3; ++i) {
    f.admit();
    AdmissionGuard g(f.shared, f.process_active, f.shared.per_ip.try_acquire(ip, 10));
    f.shard->post([&ran, g = std::move(g)]() mutable {
      (void)g.release();
      ran = true;
    });
  }
  EXPECT_EQ(f.process_active.load(), 3u);
  f.shard->stop_and_join();
  EXPECT_EQ(f.process_active.load(), 3u) << "stop() destroys no handler";
  f.shard.reset();
  EXPECT_FALSE(ran);
  EXPECT_EQ(f.process_active.load(), 0u);
  EXPECT_EQ(f.shared.active.load(), 0u);
  EXPECT_EQ(f.shared.per_ip.count(ip), 0u);
}

}  // namespace
}  // namespace shoal
