#include "runtime/drain_spread.hpp"

#include <memory>

namespace shoal {
namespace {

class SpreadClose : public std::enable_shared_from_this<SpreadClose> {
 public:
  SpreadClose(Shard& shard, std::vector<std::size_t> listeners, std::chrono::milliseconds spread)
      : shard_(shard),
        listeners_(std::move(listeners)),
        spread_(spread),
        start_(std::chrono::steady_clock::now()),
        timer_(shard.executor()) {
    for (const std::size_t li : listeners_) {
      const ListenerSlot& slot = shard_.slot(li);
      total_ += static_cast<std::uint64_t>(std::distance(slot.connections.begin(), slot.connections.end()));
      total_ += static_cast<std::uint64_t>(std::distance(slot.writers.begin(), slot.writers.end()));
    }
  }

  void step() {
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    // Due by now, on a straight line from 0 at the start to all at the end.
    std::uint64_t due = total_;
    if (elapsed < spread_) {
      const auto e = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
      const auto s = std::chrono::duration_cast<std::chrono::microseconds>(spread_).count();
      due = total_ * static_cast<std::uint64_t>(e) / static_cast<std::uint64_t>(s) + 1;
    }
    while (closed_ < due && close_one()) ++closed_;
    if (closed_ >= total_) return;
    timer_.expires_after(kSpreadStep);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->step();
    });
  }

 private:
  // The least recently active first: idle ones before busy ones, and a
  // writer blocked on a peer that does not read last of all.
  bool close_one() {
    for (const auto list_of : {&ListenerSlot::connections, &ListenerSlot::writers}) {
      for (const std::size_t li : listeners_) {
        ListenerSlot::list_type& list = shard_.slot(li).*list_of;
        if (!list.empty()) {
          list.front().close(CloseReason::drain);
          return true;
        }
      }
    }
    closed_ = total_;  // the rest ended by themselves
    return false;
  }

  Shard& shard_;
  std::vector<std::size_t> listeners_;
  std::chrono::milliseconds spread_;
  std::chrono::steady_clock::time_point start_;
  steady_timer timer_;
  std::uint64_t total_ = 0;
  std::uint64_t closed_ = 0;
};

}  // namespace

void spread_close(Shard& shard, const std::vector<std::size_t>& listeners,
                  std::chrono::milliseconds spread) {
  auto work = std::make_shared<SpreadClose>(shard, listeners, spread);
  work->step();
}

}  // namespace shoal
