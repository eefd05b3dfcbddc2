// Start-up preflight: what the host allows (open-files limit, somaxconn, cgroup
// memory and CPU quota) against what the Config asks for. The arithmetic is the
// pure function run_preflight(), unit-tested with injected limits; the host is
// read by read_host_limits() and changed only by raise_nofile_limit().
//
// Thread safety: call from the main thread before any shard starts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tls/ktls.hpp"

#include "config/config.hpp"

namespace shoal {

// What the host allows, as read at start-up (or injected by a test).
struct HostLimits {
  std::uint64_t nofile_soft = 0;
  std::uint64_t nofile_hard = 0;
  std::optional<int> somaxconn;                      // net.core.somaxconn
  std::optional<std::uint64_t> memory_limit_bytes;   // cgroup memory.max, if set
  unsigned usable_cpus = 1;                          // affinity ∩ cgroup quota
  KtlsSupport ktls;                                  // the kernel's `tls` ULP
};

// Estimated memory one connection costs the process and the kernel (socket
// structures, descriptor, session object), used only against a cgroup memory
// limit. Deliberately generous: an idle socket's kernel state is ~2-3 KiB.
inline constexpr std::uint64_t kEstimatedBytesPerConnection = 8 * 1024;
// The same for a TLS connection: OpenSSL's SSL object with its record
// buffers released while idle (a few KiB, README "TLS"), plus the record
// buffers of connections that have a record in flight. Used when any
// listener has TLS, since the preflight cannot know how the connections
// will split.
inline constexpr std::uint64_t kEstimatedBytesPerTlsConnection = 16 * 1024;

struct PreflightFinding {
  enum class Severity { ok, warning, error };
  Severity severity = Severity::ok;
  std::string what;  // one line: what was checked and its result
  std::string fix;   // the exact setting to change; empty when nothing to do
};

struct PreflightResult {
  std::uint64_t fd_limit = 0;             // soft limit after raising to hard
  std::uint64_t connection_capacity = 0;  // fd_limit - reserved_descriptors
  std::uint64_t configured_max_connections = 0;
  std::uint64_t effective_max_connections = 0;  // capped when on_insufficient=warn
  unsigned shards = 0;                          // resolved from `auto`
  std::vector<PreflightFinding> findings;
  bool ok = true;  // false: on_insufficient=fail and a limit is insufficient

  // The readable block printed at start-up and by `shoald --check`.
  std::string report() const;
};

// Pure: no system calls. `limits` describes the host *after* the soft
// open-files limit was raised to the hard one.
PreflightResult run_preflight(const Config& config, const HostLimits& limits);

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
std::uint64_t raise_nofile_limit();

// Reads RLIMIT_NOFILE, /proc/sys/net/core/somaxconn, the cgroup (v2, then v1)
// memory limit and the usable CPU count.
HostLimits read_host_limits();

// CPUs this process may run on: sched_getaffinity, capped by a cgroup CPU
// quota (cpu.max, or cpu.cfs_quota_us/cpu.cfs_period_us), at least 1.
unsigned usable_cpu_count();

// Parses cgroup v2 "cpu.max" content ("max 100000" or "150000 100000") into
// a CPU count rounded up; nullopt when unlimited or malformed. Pure.
std::optional<unsigned> cpus_from_cgroup_cpu_max(const std::string& content);

// Parses cgroup "memory.max"/"memory.limit_in_bytes" content; nullopt for
// "max" or values so large they mean "no limit". Pure.
std::optional<std::uint64_t> bytes_from_cgroup_memory_max(const std::string& content);

}  // namespace shoal
