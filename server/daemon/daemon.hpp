// shoald's command line and process life: options, config, preflight, the
// server, signals and the ordered stop. main() only calls shoald_main().
#pragma once

#include <functional>

namespace shoal {

class Server;

// Extension points for test builds only (tests/shoald_faults_main.cpp
// injects faults through them); shoald itself passes none.
struct Hooks {
  // Called on the main thread once the server is ready, before the signal
  // loop starts.
  std::function<void(Server&)> started;
};

// Exit status: 0 after a clean stop (or --check/--version/--help), 1 on an
// invalid config, an insufficient host under `on_insufficient: fail` or a
// failed bind, 2 on a command-line error.
int shoald_main(int argc, char** argv, const Hooks& hooks = {});

}  // namespace shoal
