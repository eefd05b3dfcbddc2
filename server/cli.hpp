// shoald's command line and process life: options, config, preflight, the
// server, signals and the ordered stop. main() only calls shoald_main().
#pragma once

namespace shoal {

// Exit status: 0 after a clean stop (or --check/--version/--help), 1 on an
// invalid config, an insufficient host under `on_insufficient: fail` or a
// failed bind, 2 on a command-line error.
int shoald_main(int argc, char** argv);

}  // namespace shoal
