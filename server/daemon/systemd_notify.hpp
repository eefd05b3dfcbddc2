// systemd service notifications (sd_notify from libsystemd): READY, STATUS,
// RELOADING, STOPPING and the watchdog keep-alive. Every call is a no-op when
// shoald was not started by systemd (no NOTIFY_SOCKET), so the daemon and the
// container image use the same code path.
//
// Thread safety: call from the main thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace shoal {

class SystemdNotifier {
 public:
  SystemdNotifier();

  // Listeners are bound and every shard runs.
  void ready(const std::string& status);
  // One line for `systemctl status`.
  void status(const std::string& status);
  void reloading();
  void stopping();
  void watchdog();

  // Half of WatchdogSec= when the watchdog is on: how often to ping.
  std::optional<std::chrono::microseconds> watchdog_period() const { return watchdog_period_; }

 private:
  void send(const std::string& state);
  std::optional<std::chrono::microseconds> watchdog_period_;
};

}  // namespace shoal
