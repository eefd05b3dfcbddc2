#include "daemon/preflight.hpp"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

namespace shoal {

namespace {

using Severity = PreflightFinding::Severity;

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kGiB = 1024 * kMiB;
// Report lines are aligned on this column so the block reads as a table.
constexpr std::size_t kLabelWidth = 16;
constexpr std::size_t kReportWidth = 80;

// The configured numbers are user input; saturating keeps a silly value from
// wrapping around into a small, plausible-looking one.
std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return b > std::numeric_limits<std::uint64_t>::max() - a
             ? std::numeric_limits<std::uint64_t>::max()
             : a + b;
}

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
  return b != 0 && a > std::numeric_limits<std::uint64_t>::max() / b
             ? std::numeric_limits<std::uint64_t>::max()
             : a * b;
}

std::string num(std::uint64_t n) { return std::to_string(n); }

std::string labeled(std::string_view label, const std::string& text) {
  std::string line(label);
  line.resize(std::max(kLabelWidth, label.size() + 1), ' ');
  return line + text;
}

// Exact where the value is a whole number of GiB, MiB or KiB, otherwise bytes,
// so no number in the report is rounded.
std::string format_bytes(std::uint64_t bytes) {
  if (bytes != 0 && bytes % kGiB == 0) return num(bytes / kGiB) + " GiB";
  if (bytes != 0 && bytes % kMiB == 0) return num(bytes / kMiB) + " MiB";
  if (bytes != 0 && bytes % 1024 == 0) return num(bytes / 1024) + " KiB";
  return num(bytes) + " bytes";
}

std::string on_insufficient_name(OnInsufficient o) {
  return o == OnInsufficient::fail ? "fail" : "warn";
}

// One line per way of running shoald; `needed` covers the configured
// connections plus the reserve, i.e. what makes the whole configuration fit.
std::string nofile_fix(std::uint64_t needed) {
  const std::string n = num(needed);
  return "LimitNOFILE=" + n + " in the systemd unit's [Service] section\n" +
         "docker run --ulimit nofile=" + n + ":" + n + "\n" +
         "ulimit -n " + n + " in the shell that starts shoald";
}

std::string somaxconn_fix(int backlog) {
  const std::string n = std::to_string(backlog);
  return "sysctl -w net.core.somaxconn=" + n + "\n" +
         "echo 'net.core.somaxconn = " + n + "' > /etc/sysctl.d/90-shoal.conf";
}

std::string memory_fix(std::uint64_t needed_bytes) {
  // Both systemd's "M" and docker's "m" are MiB; rounding up keeps it enough.
  const std::uint64_t mib = needed_bytes / kMiB + (needed_bytes % kMiB != 0 ? 1 : 0);
  return "MemoryMax=" + num(mib) + "M in the systemd unit's [Service] section\n" +
         "docker run --memory=" + num(mib) + "m";
}

void add(PreflightResult& result, Severity severity, std::string what,
         std::string fix = {}) {
  result.findings.push_back({severity, std::move(what), std::move(fix)});
}

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

// Wraps `text` at spaces to kReportWidth: the first line starts with
// `first`, the rest with `indent`. Text that fits is kept exactly, so the
// aligned label columns survive; a word longer than a line is left whole.
void append_wrapped(std::string& out, const std::string& first,
                    const std::string& indent, std::string_view text) {
  const std::string* prefix = &first;
  while (prefix->size() + text.size() > kReportWidth) {
    const std::size_t room = kReportWidth - std::min(kReportWidth, prefix->size());
    std::size_t cut = text.rfind(' ', room);
    if (cut == std::string_view::npos || cut == 0) cut = text.find(' ', room);
    if (cut == std::string_view::npos) break;
    out += *prefix;
    out += text.substr(0, cut);
    out += '\n';
    text = trim(text.substr(cut));
    prefix = &indent;
  }
  out += *prefix;
  out += text;
  out += '\n';
}

// --- host reading -----------------------------------------------------------

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return content.str();
}

template <typename T>
std::optional<T> parse_number(std::string_view s) {
  T value{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty()) {
    return std::nullopt;
  }
  return value;
}

bool has_controller(std::string_view controllers, std::string_view wanted) {
  std::size_t start = 0;
  while (start <= controllers.size()) {
    auto end = controllers.find(',', start);
    if (end == std::string_view::npos) end = controllers.size();
    if (controllers.substr(start, end - start) == wanted) return true;
    start = end + 1;
  }
  return false;
}

// The cgroup a process belongs to, relative to a hierarchy's mount point, as
// /proc/self/cgroup names it: "0::/PATH" for v2 (empty `v1_controller`),
// "N:CONTROLLERS:/PATH" for the v1 hierarchy that holds `v1_controller`.
std::optional<std::string> own_cgroup_path(std::string_view v1_controller) {
  const auto content = read_file("/proc/self/cgroup");
  if (!content) return std::nullopt;
  std::istringstream lines(*content);
  std::string line;
  while (std::getline(lines, line)) {
    const auto first_colon = line.find(':');
    if (first_colon == std::string::npos) continue;
    const auto second_colon = line.find(':', first_colon + 1);
    if (second_colon == std::string::npos) continue;
    const std::string_view id(line.data(), first_colon);
    const std::string_view controllers(line.data() + first_colon + 1,
                                       second_colon - first_colon - 1);
    const bool wanted = v1_controller.empty()
                            ? id == "0" && controllers.empty()
                            : has_controller(controllers, v1_controller);
    if (wanted) return line.substr(second_colon + 1);
  }
  return std::nullopt;
}

// Limits nest: a parent cgroup's limit binds every child, so the effective one
// is the smallest set anywhere between the process's cgroup and the mount
// point. Directories that are not visible (a cgroup namespace, a path from
// another mount) simply yield nothing, and the walk ends at the mount point.
template <typename T>
std::optional<T> min_limit_up_to(const std::filesystem::path& mount,
                                 const std::string& cgroup_path,
                                 std::optional<T> (*read_dir)(const std::filesystem::path&)) {
  std::filesystem::path dir = mount;
  for (const auto& part : std::filesystem::path(cgroup_path).relative_path().lexically_normal()) {
    // A cgroup outside our cgroup namespace shows up as "/../.."; it cannot
    // be followed, so only the mount point is read.
    if (part == "..") {
      dir = mount;
      break;
    }
    if (!part.empty() && part != ".") dir /= part;
  }

  std::optional<T> result;
  for (;;) {
    if (const auto value = read_dir(dir)) result = result ? std::min(*result, *value) : *value;
    if (dir == mount || dir.parent_path() == dir) break;
    dir = dir.parent_path();
  }
  return result;
}

template <typename T>
std::optional<T> parse_file(const std::filesystem::path& path,
                            std::optional<T> (*parse)(const std::string&)) {
  const auto content = read_file(path);
  return content ? parse(*content) : std::nullopt;
}

std::optional<std::uint64_t> v2_memory(const std::filesystem::path& dir) {
  return parse_file(dir / "memory.max", bytes_from_cgroup_memory_max);
}

std::optional<std::uint64_t> v1_memory(const std::filesystem::path& dir) {
  return parse_file(dir / "memory.limit_in_bytes", bytes_from_cgroup_memory_max);
}

std::optional<unsigned> v2_cpus(const std::filesystem::path& dir) {
  return parse_file(dir / "cpu.max", cpus_from_cgroup_cpu_max);
}

std::optional<unsigned> v1_cpus(const std::filesystem::path& dir) {
  const auto quota = read_file(dir / "cpu.cfs_quota_us");
  const auto period = read_file(dir / "cpu.cfs_period_us");
  if (!quota || !period) return std::nullopt;
  // v1 spells "unlimited" as a quota of -1; cpu.max spells it "max".
  const std::string_view quota_value = trim(*quota);
  return cpus_from_cgroup_cpu_max(std::string(quota_value == "-1" ? "max" : quota_value) +
                                  " " + std::string(trim(*period)));
}

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";

// A pure v2 host mounts the unified hierarchy at /sys/fs/cgroup itself. On a
// hybrid host it sits elsewhere, without the memory and cpu controllers, and
// the v1 hierarchies are the ones that limit the process.
bool unified_cgroup_at_root() {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(kCgroupRoot) / "cgroup.controllers", ec);
}

template <typename T>
std::optional<T> cgroup_limit(std::optional<T> (*read_v2)(const std::filesystem::path&),
                              const char* v1_controller,
                              std::optional<T> (*read_v1)(const std::filesystem::path&)) {
  if (unified_cgroup_at_root()) {
    if (const auto path = own_cgroup_path("")) {
      if (auto limit = min_limit_up_to(kCgroupRoot, *path, read_v2)) return limit;
    }
  }
  return min_limit_up_to(std::filesystem::path(kCgroupRoot) / v1_controller,
                         own_cgroup_path(v1_controller).value_or("/"), read_v1);
}

std::uint64_t nr_open() {
  // 1048576 is the kernel's default for fs.nr_open.
  const auto content = read_file("/proc/sys/fs/nr_open");
  if (!content) return 1048576;
  return parse_number<std::uint64_t>(trim(*content)).value_or(1048576);
}

std::uint64_t from_rlim(rlim_t value) {
  return value == RLIM_INFINITY ? std::numeric_limits<std::uint64_t>::max()
                                : static_cast<std::uint64_t>(value);
}

}  // namespace

PreflightResult run_preflight(const Config& config, const HostLimits& limits) {
  PreflightResult result;
  const LimitsConfig& cfg = config.limits;
  const bool fail = cfg.on_insufficient == OnInsufficient::fail;
  const Severity insufficient = fail ? Severity::error : Severity::warning;

  result.fd_limit = limits.nofile_soft;
  result.connection_capacity = result.fd_limit > cfg.reserved_descriptors
                                   ? result.fd_limit - cfg.reserved_descriptors
                                   : 0;
  result.configured_max_connections = cfg.max_connections;
  result.effective_max_connections = cfg.max_connections;
  // At least one connection's worth, so the fix is never "raise to what you
  // already have" when max_connections is 0.
  const std::uint64_t nofile_needed =
      saturating_add(std::max<std::uint64_t>(cfg.max_connections, 1), cfg.reserved_descriptors);

  add(result, Severity::ok,
      labeled("open files", "soft=" + num(limits.nofile_soft) + " hard=" +
                                num(limits.nofile_hard) +
                                (limits.nofile_soft < limits.nofile_hard
                                     ? " (soft below hard: not raised)"
                                     : "")));

  // Zero capacity is an error under either policy: capping to it would leave
  // a server that accepts nothing.
  if (result.connection_capacity == 0) {
    add(result, Severity::error,
        "capacity 0 connections: the open-files limit " + num(result.fd_limit) +
            " leaves nothing after " + num(cfg.reserved_descriptors) +
            " reserved descriptors",
        nofile_fix(nofile_needed));
  } else {
    add(result, Severity::ok,
        labeled("capacity", num(result.connection_capacity) + " connections (" +
                                num(result.fd_limit) + " - " +
                                num(cfg.reserved_descriptors) + " reserved)"));
  }

  // Only the process-wide max is compared: per-listener max_connections may
  // add up to more, since each is also capped by the process limit at run time.
  if (cfg.max_connections > result.connection_capacity) {
    const std::string needs = "needs " + num(nofile_needed) +
                              " open files, the limit is " + num(result.fd_limit);
    if (fail) {
      add(result, Severity::error,
          "max_connections " + num(cfg.max_connections) + " configured " + needs +
              " (on_insufficient: fail)",
          nofile_fix(nofile_needed));
    } else {
      result.effective_max_connections = result.connection_capacity;
      add(result, Severity::warning,
          "max_connections " + num(cfg.max_connections) + " configured -> " +
              num(result.effective_max_connections) + " effective (capped: warn); " + needs,
          nofile_fix(nofile_needed));
    }
  } else {
    add(result, Severity::ok,
        labeled("max_connections", num(cfg.max_connections) + " configured = effective (" +
                                       num(result.connection_capacity) + " capacity)"));
  }

  // A HostLimits with 0 CPUs can only be a bad injection; one shard still runs.
  const unsigned usable_cpus = std::max(limits.usable_cpus, 1U);
  const std::string cpus = num(usable_cpus) + (usable_cpus == 1 ? " usable CPU" : " usable CPUs");
  if (config.shards == 0) {
    result.shards = usable_cpus;
    add(result, Severity::ok, labeled("shards", num(result.shards) + " (auto: " + cpus + ")"));
  } else {
    result.shards = config.shards;
    if (config.shards > usable_cpus) {
      // Only a warning: oversubscribed shards still work, just with the
      // context switches and cache misses of sharing CPUs.
      add(result, Severity::warning,
          "shards " + num(config.shards) + " configured but only " + cpus +
              ": shards will share CPUs (oversubscribed)",
          "shards: auto (or at most " + num(usable_cpus) + ") in the config file");
    } else {
      add(result, Severity::ok,
          labeled("shards", num(result.shards) + " (configured; " + cpus + ")"));
    }
  }

  // Always a warning, never an error: the kernel caps the backlog silently and
  // the server works, it only refuses connections sooner under a burst.
  if (!limits.somaxconn) {
    add(result, Severity::ok,
        labeled("somaxconn", "unknown (/proc/sys/net/core/somaxconn unreadable)"));
  } else {
    const int somaxconn = *limits.somaxconn;
    for (const ListenerConfig& listener : config.listeners) {
      const std::string name = "listener \"" + listener.name + "\"";
      if (listener.backlog > somaxconn) {
        add(result, Severity::warning,
            "somaxconn " + std::to_string(somaxconn) + " < backlog " +
                std::to_string(listener.backlog) + " of " + name +
                ": the kernel silently caps the backlog at " + std::to_string(somaxconn),
            somaxconn_fix(listener.backlog));
      } else {
        add(result, Severity::ok,
            labeled("somaxconn", std::to_string(somaxconn) + " >= backlog " +
                                     std::to_string(listener.backlog) + " (" + name + ")"));
      }
    }
  }

  // Checked against the effective max: under warn that is what will actually
  // be accepted. The estimate is rough, so this never caps further.
  if (!limits.memory_limit_bytes) {
    add(result, Severity::ok, labeled("memory", "no cgroup limit"));
  } else {
    const std::uint64_t limit = *limits.memory_limit_bytes;
    const bool any_tls = std::any_of(config.listeners.begin(), config.listeners.end(),
                                     [](const ListenerConfig& l) { return l.tls.has_value(); });
    const std::uint64_t per =
        any_tls ? kEstimatedBytesPerTlsConnection : kEstimatedBytesPerConnection;
    const std::uint64_t fit = limit / per;
    const std::string fits = format_bytes(limit) + " cgroup limit fits " + num(fit) +
                             " connections at " + format_bytes(per) + " each" +
                             (any_tls ? " (TLS)" : "");
    if (result.effective_max_connections > fit) {
      const std::uint64_t needed =
          saturating_mul(result.effective_max_connections, per);
      add(result, insufficient,
          "memory " + fits + ", fewer than the " + num(result.effective_max_connections) +
              " allowed (on_insufficient: " + on_insufficient_name(cfg.on_insufficient) + ")",
          memory_fix(needed));
    } else {
      add(result, Severity::ok, labeled("memory", fits));
    }
  }

  // kTLS, said whenever a listener has TLS: which path established TLS
  // connections take on this host.
  if (std::any_of(config.listeners.begin(), config.listeners.end(),
                  [](const ListenerConfig& l) { return l.tls.has_value(); })) {
    const bool wanted = std::any_of(
        config.listeners.begin(), config.listeners.end(),
        [](const ListenerConfig& l) { return l.tls && l.tls->ktls == KtlsMode::auto_; });
    std::string what;
    if (!wanted) {
      what = "off (tls.ktls: off); TLS records are encrypted in user space";
    } else if (limits.ktls.available) {
      what = "available (" + limits.ktls.detail +
             "); established TLS connections are handed to the kernel";
    } else {
      what = "not offered by this kernel (" + limits.ktls.detail +
             "); TLS records are encrypted in user space by OpenSSL";
    }
    add(result, Severity::ok, labeled("ktls", what));
  }

  result.ok = std::none_of(result.findings.begin(), result.findings.end(),
                           [](const PreflightFinding& f) { return f.severity == Severity::error; });
  return result;
}

std::string PreflightResult::report() const {
  std::size_t warnings = 0;
  std::size_t errors = 0;
  for (const PreflightFinding& f : findings) {
    if (f.severity == Severity::warning) ++warnings;
    if (f.severity == Severity::error) ++errors;
  }
  auto count = [](std::size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  std::string out = "preflight: ";
  if (!ok) {
    out += "FAILED (" + count(errors, "error") +
           (warnings ? ", " + count(warnings, "warning") : "") + ")";
  } else if (warnings) {
    out += "ok (" + count(warnings, "warning") + ")";
  } else {
    out += "ok";
  }
  out += '\n';

  // Findings stay in check order so a problem sits among the lines it
  // concerns; problems are prefixed rather than moved to the end. Several
  // findings can share a fix (zero capacity and max_connections both need
  // more open files); it is spelled out once.
  std::vector<std::string> printed_fixes;
  for (const PreflightFinding& f : findings) {
    switch (f.severity) {
      case Severity::ok:
        append_wrapped(out, "  ", std::string(2 + kLabelWidth, ' '), f.what);
        break;
      case Severity::warning:
        append_wrapped(out, "  WARNING: ", std::string(11, ' '), f.what);
        break;
      case Severity::error:
        append_wrapped(out, "  ERROR: ", std::string(9, ' '), f.what);
        break;
    }
    if (f.fix.empty()) continue;
    if (std::find(printed_fixes.begin(), printed_fixes.end(), f.fix) != printed_fixes.end()) {
      out += "    fix: as above\n";
      continue;
    }
    printed_fixes.push_back(f.fix);
    std::istringstream fix_lines(f.fix);
    std::string fix_line;
    while (std::getline(fix_lines, fix_line)) {
      if (!fix_line.empty()) append_wrapped(out, "    fix: ", std::string(9, ' '), fix_line);
    }
  }
  return out;
}

std::uint64_t raise_nofile_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  // The kernel refuses a soft limit above fs.nr_open, infinity included.
  const rlim_t target = limit.rlim_max == RLIM_INFINITY
                            ? static_cast<rlim_t>(nr_open())
                            : limit.rlim_max;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < target) {
    rlimit raised = limit;
    raised.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit.rlim_cur = target;
  }
  return from_rlim(limit.rlim_cur);
}

HostLimits read_host_limits() {
  HostLimits limits;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    limits.nofile_soft = from_rlim(nofile.rlim_cur);
    limits.nofile_hard = from_rlim(nofile.rlim_max);
  }
  if (const auto content = read_file("/proc/sys/net/core/somaxconn")) {
    limits.somaxconn = parse_number<int>(trim(*content));
  }
  limits.memory_limit_bytes = cgroup_limit(v2_memory, "memory", v1_memory);
  limits.usable_cpus = usable_cpu_count();
  limits.ktls = probe_ktls();
  return limits;
}

unsigned usable_cpu_count() {
  unsigned cpus = 0;
  // cpu_set_t covers 1024 CPUs; larger hosts need a bigger, allocated set.
  for (int size = CPU_SETSIZE; size <= 1 << 20 && cpus == 0; size *= 2) {
    cpu_set_t* set = CPU_ALLOC(size);
    if (set == nullptr) break;
    const std::size_t bytes = CPU_ALLOC_SIZE(size);
    CPU_ZERO_S(bytes, set);
    const int rc = sched_getaffinity(0, bytes, set);
    const int error = errno;
    if (rc == 0) cpus = static_cast<unsigned>(CPU_COUNT_S(bytes, set));
    CPU_FREE(set);
    if (rc != 0 && error != EINVAL) break;
  }
  if (cpus == 0) cpus = std::thread::hardware_concurrency();
  if (const auto quota = cgroup_limit(v2_cpus, "cpu", v1_cpus)) cpus = std::min(cpus, *quota);
  return std::max(cpus, 1U);
}

std::optional<unsigned> cpus_from_cgroup_cpu_max(const std::string& content) {
  std::istringstream fields(content);
  std::string quota_text;
  std::string period_text;
  std::string extra;
  if (!(fields >> quota_text >> period_text) || (fields >> extra)) return std::nullopt;
  if (quota_text == "max") return std::nullopt;
  const auto quota = parse_number<std::uint64_t>(quota_text);
  const auto period = parse_number<std::uint64_t>(period_text);
  if (!quota || !period || *quota == 0 || *period == 0) return std::nullopt;
  // Rounded up: a 1.5-CPU quota still lets two threads make progress.
  const std::uint64_t cpus = *quota / *period + (*quota % *period != 0 ? 1 : 0);
  return static_cast<unsigned>(
      std::min<std::uint64_t>(cpus, std::numeric_limits<unsigned>::max()));
}

std::optional<std::uint64_t> bytes_from_cgroup_memory_max(const std::string& content) {
  const std::string_view value = trim(content);
  if (value == "max") return std::nullopt;
  const auto bytes = parse_number<std::uint64_t>(value);
  // cgroup v1 spells "no limit" as a page-rounded LONG_MAX
  // (9223372036854771712); no real limit comes near 2^62.
  if (!bytes || *bytes >= (std::uint64_t{1} << 62)) return std::nullopt;
  return bytes;
}

}  // namespace shoal
