// shoald with faults injected on purpose, for the tests of what an operator
// relies on when something inside the daemon breaks. Built only under
// tests/, never installed: the real shoald has no such switches.
//
// SHOAL_FAULT_BLOCK_SHARD=SHARD:AFTER_MS:FOR_MS — AFTER_MS after start-up a
// handler on shard SHARD blocks its thread for FOR_MS (a handler stuck in a
// blocking call): /healthz must name the shard and the systemd watchdog must
// stop being fed until it answers again.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "daemon/daemon.hpp"
#include "runtime/server.hpp"

namespace {

shoal::Hooks hooks_from_environment() {
  shoal::Hooks hooks;
  const char* spec = std::getenv("SHOAL_FAULT_BLOCK_SHARD");
  if (spec == nullptr) return hooks;
  unsigned shard = 0;
  long after_ms = 0;
  long for_ms = 0;
  if (std::sscanf(spec, "%u:%ld:%ld", &shard, &after_ms, &for_ms) != 3) {
    std::fprintf(stderr, "SHOAL_FAULT_BLOCK_SHARD: expected SHARD:AFTER_MS:FOR_MS, got %s\n", spec);
    std::exit(2);
  }
  hooks.started = [shard, after_ms, for_ms](shoal::Server& server) {
    shoal::Shard& target = *server.shards().at(shard);
    auto timer = std::make_shared<shoal::steady_timer>(target.executor());
    target.post([timer, after_ms, for_ms] {
      timer->expires_after(std::chrono::milliseconds(after_ms));
      timer->async_wait([timer, for_ms](const boost::system::error_code& ec) {
        if (!ec) std::this_thread::sleep_for(std::chrono::milliseconds(for_ms));
      });
    });
  };
  return hooks;
}

}  // namespace

int main(int argc, char** argv) { return shoal::shoald_main(argc, argv, hooks_from_environment()); }
