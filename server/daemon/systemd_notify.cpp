#include "daemon/systemd_notify.hpp"

#include <systemd/sd-daemon.h>

#include <spdlog/spdlog.h>

namespace shoal {

SystemdNotifier::SystemdNotifier() {
  std::uint64_t usec = 0;
  // unset_environment = 0: a reload or a test may look again.
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_period_ = std::chrono::microseconds(usec / 2);
  }
}

void SystemdNotifier::send(const std::string& state) {
  const int rc = sd_notify(0, state.c_str());
  if (rc < 0) spdlog::warn("sd_notify failed: {}", std::strerror(-rc));
}

void SystemdNotifier::ready(const std::string& status) { send("READY=1\nSTATUS=" + status); }
void SystemdNotifier::status(const std::string& status) { send("STATUS=" + status); }
void SystemdNotifier::reloading() { send("RELOADING=1\nSTATUS=reloading configuration"); }
void SystemdNotifier::stopping() { send("STOPPING=1\nSTATUS=draining"); }
void SystemdNotifier::watchdog() { send("WATCHDOG=1"); }

}  // namespace shoal
