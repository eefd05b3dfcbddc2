// `shoald --probe ADDRESS:PORT`: asks a running shoald's admin port for
// /healthz and exits 0 on 200. The container HEALTHCHECK uses it, so the
// runtime image needs no curl.
#pragma once

#include <chrono>
#include <string>

namespace shoal {

// Returns the process exit status: 0 healthy, 1 unhealthy or unreachable
// (with the reason on stderr), 2 for a malformed target.
int probe_health(const std::string& target, std::chrono::milliseconds timeout);

}  // namespace shoal
