// A worker process: its share of the connections on -t engine threads,
// driven by the parent over a control pipe and reporting on a result pipe
// (see wire.hpp). Runs in the forked child; returns the child's exit code.
#pragma once

#include <cstdint>

#include "options.hpp"

namespace shoal::load {

int worker_main(const Options& o, unsigned index, int result_fd, int control_fd, std::int64_t t0);

}  // namespace shoal::load
