// The parent process: forks the workers, paces the run's phases (connect,
// go, hold, close) over their control pipes, merges their per-second and
// final reports, prints live progress and samples the server's RSS and CPU.
#pragma once

#include "options.hpp"
#include "results.hpp"

namespace shoal::load {

Results run_load(const Options& o);

}  // namespace shoal::load
