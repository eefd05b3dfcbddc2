// Closing a draining shard's WebSocket connections without a reconnect storm.
//
// When an instance drains, every WebSocket client it closes reconnects, to
// the instances that stay. Closed in one turn of the loop, they all arrive
// there at once; spread_close() closes them (1001, going away) evenly over
// a window instead, least recently active first, so the reconnects arrive
// at the rate the window allows. TCP echo connections have no way to be told
// to go: they are left to end by themselves within the drain timeout.
//
// Thread safety: call on the shard's own thread (post it there). The work
// lives in a handler on the shard's timer; it ends by itself when every
// connection it counted is closed, or with the shard's io_context.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

#include "runtime/shard.hpp"

namespace shoal {

// How often the closes are paced: fine enough that a 1 s window is ten
// steps, coarse enough that the timer costs nothing.
inline constexpr std::chrono::milliseconds kSpreadStep{10};

// Closes the connections of `listeners` (indexes of websocket listeners)
// open on `shard` now, `spread` apart from the first to the last; 0 closes
// them all now.
void spread_close(Shard& shard, const std::vector<std::size_t>& listeners,
                  std::chrono::milliseconds spread);

}  // namespace shoal
