// run_preflight() against injected host limits, the cgroup parsers, and a
// light check that reading the real host works. Configs are built in C++ so
// these tests do not depend on the YAML parser.
#include "daemon/preflight.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>

namespace shoal {
namespace {

using Severity = PreflightFinding::Severity;

// A host where the default Config (1000000 connections, 64 reserved, one
// listener with backlog 4096) fits everywhere.
HostLimits ample_host() {
  HostLimits limits;
  limits.nofile_soft = 2'000'000;
  limits.nofile_hard = 2'000'000;
  limits.somaxconn = 4096;
  limits.memory_limit_bytes = std::nullopt;
  limits.usable_cpus = 4;
  return limits;
}

HostLimits nofile_host(std::uint64_t nofile) {
  HostLimits limits = ample_host();
  limits.nofile_soft = nofile;
  limits.nofile_hard = nofile;
  return limits;
}

Config fail_config() {
  Config config;
  config.limits.on_insufficient = OnInsufficient::fail;
  return config;
}

std::size_t count(const PreflightResult& result, Severity severity) {
  return static_cast<std::size_t>(
      std::count_if(result.findings.begin(), result.findings.end(),
                    [&](const PreflightFinding& f) { return f.severity == severity; }));
}

// The first non-ok finding whose text mentions `needle`; fails the test
// (and returns an empty finding) when there is none.
PreflightFinding problem(const PreflightResult& result, const std::string& needle) {
  for (const PreflightFinding& f : result.findings) {
    if (f.severity != Severity::ok && f.what.find(needle) != std::string::npos) return f;
  }
  ADD_FAILURE() << "no warning or error mentions \"" << needle << "\" in:\n"
                << result.report();
  return {};
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

void expect_nofile_fix(const std::string& fix, const std::string& needed) {
  EXPECT_TRUE(contains(fix, "LimitNOFILE=" + needed)) << fix;
  EXPECT_TRUE(contains(fix, "[Service]")) << fix;
  EXPECT_TRUE(contains(fix, "--ulimit nofile=" + needed + ":" + needed)) << fix;
  EXPECT_TRUE(contains(fix, "ulimit -n " + needed)) << fix;
}

TEST(RunPreflight, AmpleLimitsPassWithOnlyOkFindings) {
  const Config config;
  const PreflightResult result = run_preflight(config, ample_host());

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.fd_limit, 2'000'000U);
  EXPECT_EQ(result.connection_capacity, 2'000'000U - 64);
  EXPECT_EQ(result.configured_max_connections, 1'000'000U);
  EXPECT_EQ(result.effective_max_connections, 1'000'000U);
  ASSERT_FALSE(result.findings.empty());
  for (const PreflightFinding& f : result.findings) {
    EXPECT_EQ(f.severity, Severity::ok) << f.what;
    EXPECT_TRUE(f.fix.empty()) << f.fix;
  }
  // One finding per check: open files, capacity, max_connections, shards,
  // somaxconn (one per listener: echo and ws), memory.
  EXPECT_EQ(result.findings.size(), 7U);
}

TEST(RunPreflight, InsufficientOpenFilesUnderWarnCapsToCapacity) {
  const Config config;
  const PreflightResult result = run_preflight(config, nofile_host(20'000));

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.connection_capacity, 19'936U);
  EXPECT_EQ(result.configured_max_connections, 1'000'000U);
  EXPECT_EQ(result.effective_max_connections, 19'936U);
  EXPECT_EQ(count(result, Severity::warning), 1U);
  EXPECT_EQ(count(result, Severity::error), 0U);

  const PreflightFinding finding = problem(result, "max_connections");
  EXPECT_EQ(finding.severity, Severity::warning);
  EXPECT_TRUE(contains(finding.what, "19936")) << finding.what;
  expect_nofile_fix(finding.fix, "1000064");
}

TEST(RunPreflight, InsufficientOpenFilesUnderFailIsAnError) {
  const PreflightResult result = run_preflight(fail_config(), nofile_host(20'000));

  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.connection_capacity, 19'936U);
  EXPECT_EQ(result.effective_max_connections, 1'000'000U);
  EXPECT_EQ(count(result, Severity::error), 1U);

  const PreflightFinding finding = problem(result, "max_connections");
  EXPECT_EQ(finding.severity, Severity::error);
  expect_nofile_fix(finding.fix, "1000064");
}

TEST(RunPreflight, FixUsesConfiguredMaxPlusReserve) {
  Config config;
  config.limits.max_connections = 50'000;
  config.limits.reserved_descriptors = 100;
  const PreflightResult result = run_preflight(config, nofile_host(1024));

  EXPECT_EQ(result.connection_capacity, 924U);
  EXPECT_EQ(result.effective_max_connections, 924U);
  expect_nofile_fix(problem(result, "max_connections").fix, "50100");
}

TEST(RunPreflight, ExactFitIsOk) {
  Config config;
  config.limits.max_connections = 19'936;
  const PreflightResult result = run_preflight(config, nofile_host(20'000));

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.effective_max_connections, 19'936U);
  EXPECT_EQ(count(result, Severity::warning) + count(result, Severity::error), 0U);
}

TEST(RunPreflight, ReserveAtOrAboveTheLimitIsZeroCapacityError) {
  for (const std::uint64_t nofile : {64U, 32U}) {
    SCOPED_TRACE(nofile);
    // Zero capacity is an error even under warn.
    const Config config;
    const PreflightResult result = run_preflight(config, nofile_host(nofile));

    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.connection_capacity, 0U);
    const PreflightFinding finding = problem(result, "capacity 0");
    EXPECT_EQ(finding.severity, Severity::error);
    expect_nofile_fix(finding.fix, "1000064");
  }
}

TEST(RunPreflight, ZeroCapacityIsAnErrorUnderFailToo) {
  const PreflightResult result = run_preflight(fail_config(), nofile_host(10));

  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.connection_capacity, 0U);
  EXPECT_EQ(problem(result, "capacity 0").severity, Severity::error);
}

TEST(RunPreflight, SomaxconnBelowBacklogWarnsNamingListenerAndSysctl) {
  Config config;
  config.listeners.resize(1);  // "echo" keeps its backlog of 4096
  ListenerConfig small;
  small.name = "small";
  small.port = 7001;
  small.backlog = 128;
  config.listeners.push_back(small);
  HostLimits limits = ample_host();
  limits.somaxconn = 1024;

  const PreflightResult result = run_preflight(config, limits);

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(count(result, Severity::warning), 1U);
  const PreflightFinding finding = problem(result, "somaxconn");
  EXPECT_EQ(finding.severity, Severity::warning);
  EXPECT_TRUE(contains(finding.what, "\"echo\"")) << finding.what;
  EXPECT_TRUE(contains(finding.what, "1024")) << finding.what;
  EXPECT_TRUE(contains(finding.what, "4096")) << finding.what;
  EXPECT_TRUE(contains(finding.fix, "sysctl -w net.core.somaxconn=4096")) << finding.fix;
  EXPECT_TRUE(contains(finding.fix, "/etc/sysctl.d/")) << finding.fix;
  // The listener that fits gets its own ok line.
  EXPECT_TRUE(contains(result.report(), "1024 >= backlog 128 (listener \"small\")"))
      << result.report();
}

TEST(RunPreflight, SomaxconnIsOnlyAWarningEvenUnderFail) {
  HostLimits limits = ample_host();
  limits.somaxconn = 128;
  const PreflightResult result = run_preflight(fail_config(), limits);

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(problem(result, "somaxconn").severity, Severity::warning);
}

TEST(RunPreflight, UnknownSomaxconnIsNotAProblem) {
  HostLimits limits = ample_host();
  limits.somaxconn = std::nullopt;
  const PreflightResult result = run_preflight(Config{}, limits);

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(count(result, Severity::warning), 0U);
  EXPECT_TRUE(contains(result.report(), "somaxconn")) << result.report();
}

TEST(RunPreflight, SmallCgroupMemoryWarnsUnderWarnWithHowManyFit) {
  HostLimits limits = ample_host();
  limits.memory_limit_bytes = 256ULL * 1024 * 1024;  // fits 32768 at 8 KiB each
  const PreflightResult result = run_preflight(Config{}, limits);

  EXPECT_TRUE(result.ok);
  // Memory never caps: the per-connection figure is only an estimate.
  EXPECT_EQ(result.effective_max_connections, 1'000'000U);
  const PreflightFinding finding = problem(result, "memory");
  EXPECT_EQ(finding.severity, Severity::warning);
  EXPECT_TRUE(contains(finding.what, "32768")) << finding.what;
  EXPECT_TRUE(contains(finding.what, "1000000")) << finding.what;
  EXPECT_TRUE(contains(finding.fix, "MemoryMax=")) << finding.fix;
  EXPECT_TRUE(contains(finding.fix, "docker run --memory")) << finding.fix;
}

TEST(RunPreflight, SmallCgroupMemoryIsAnErrorUnderFail) {
  HostLimits limits = ample_host();
  limits.memory_limit_bytes = 256ULL * 1024 * 1024;
  const PreflightResult result = run_preflight(fail_config(), limits);

  EXPECT_FALSE(result.ok);
  const PreflightFinding finding = problem(result, "memory");
  EXPECT_EQ(finding.severity, Severity::error);
  EXPECT_TRUE(contains(finding.what, "32768")) << finding.what;
}

TEST(RunPreflight, MemoryIsCheckedAgainstTheCappedMax) {
  // 20000 open files cap the default config to 19936 connections, which need
  // ~156 MiB; a 256 MiB limit is then enough.
  HostLimits limits = nofile_host(20'000);
  limits.memory_limit_bytes = 256ULL * 1024 * 1024;
  const PreflightResult result = run_preflight(Config{}, limits);

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(count(result, Severity::warning), 1U);  // the open-files cap only
  EXPECT_TRUE(contains(result.report(), "32768")) << result.report();
}

TEST(RunPreflight, ATlsListenerCountsWhatATlsConnectionCosts) {
  // 19936 connections fit 256 MiB at 8 KiB each, but not at 16 KiB (TLS):
  // 256 MiB holds 16384 of those.
  HostLimits limits = nofile_host(20'000);
  limits.memory_limit_bytes = 256ULL * 1024 * 1024;
  Config config;
  config.listeners[0].tls = TlsConfig{};
  const PreflightResult result = run_preflight(config, limits);

  const PreflightFinding finding = problem(result, "memory");
  EXPECT_EQ(finding.severity, Severity::warning);
  EXPECT_TRUE(contains(finding.what, "16384 connections at")) << finding.what;
  EXPECT_TRUE(contains(finding.what, "each (TLS)")) << finding.what;
}

TEST(RunPreflight, AutoShardsResolveToUsableCpus) {
  HostLimits limits = ample_host();
  limits.usable_cpus = 3;
  const PreflightResult result = run_preflight(Config{}, limits);

  EXPECT_EQ(result.shards, 3U);
  EXPECT_EQ(count(result, Severity::warning), 0U);
  EXPECT_TRUE(contains(result.report(), "3 (auto: 3 usable CPUs)")) << result.report();
}

TEST(RunPreflight, ExplicitShardsWithinCpusAreKept) {
  Config config;
  config.shards = 2;
  const PreflightResult result = run_preflight(config, ample_host());

  EXPECT_EQ(result.shards, 2U);
  EXPECT_EQ(count(result, Severity::warning), 0U);
}

TEST(RunPreflight, MoreShardsThanCpusWarnsButKeepsThem) {
  Config config;
  config.shards = 8;
  config.limits.on_insufficient = OnInsufficient::fail;
  HostLimits limits = ample_host();
  limits.usable_cpus = 2;
  const PreflightResult result = run_preflight(config, limits);

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.shards, 8U);
  const PreflightFinding finding = problem(result, "shards");
  EXPECT_EQ(finding.severity, Severity::warning);
  EXPECT_TRUE(contains(finding.what, "8")) << finding.what;
  EXPECT_TRUE(contains(finding.what, "2 usable CPUs")) << finding.what;
  EXPECT_FALSE(finding.fix.empty());
}

TEST(RunPreflight, PerListenerMaxConnectionsAreNotSummed) {
  Config config;
  config.limits.max_connections = 1000;
  config.listeners[0].max_connections = 1000;
  ListenerConfig second;
  second.name = "second";
  second.port = 7001;
  second.max_connections = 1000;
  config.listeners.push_back(second);
  const PreflightResult result = run_preflight(config, nofile_host(1500));

  EXPECT_TRUE(result.ok);
  EXPECT_EQ(count(result, Severity::warning), 0U);
}

TEST(PreflightReport, ContainsTheKeyNumbers) {
  HostLimits limits = nofile_host(20'000);
  limits.usable_cpus = 2;
  const PreflightResult result = run_preflight(Config{}, limits);
  const std::string report = result.report();

  for (const char* expected :
       {"preflight", "soft=20000", "hard=20000", "19936", "64 reserved", "1000000",
        "2 (auto: 2 usable CPUs)", "4096", "\"echo\"", "no cgroup limit", "WARNING: ",
        "fix: LimitNOFILE=1000064", "fix: docker run --ulimit nofile=1000064:1000064",
        "fix: ulimit -n 1000064"}) {
    EXPECT_TRUE(contains(report, expected)) << "missing \"" << expected << "\" in:\n"
                                            << report;
  }
  EXPECT_FALSE(contains(report, "ERROR")) << report;
}

TEST(PreflightReport, ShowsErrorsAndFitsIn80Columns) {
  Config config = fail_config();
  config.listeners[0].name = "a-listener-with-a-rather-long-name-for-wrapping";
  HostLimits limits = nofile_host(20'000);
  limits.somaxconn = 128;
  limits.memory_limit_bytes = 64ULL * 1024 * 1024;
  const std::string report = run_preflight(config, limits).report();

  EXPECT_TRUE(contains(report, "ERROR: ")) << report;
  EXPECT_TRUE(contains(report, "WARNING: ")) << report;
  EXPECT_TRUE(contains(report, "FAILED")) << report;
  std::size_t start = 0;
  while (start < report.size()) {
    auto end = report.find('\n', start);
    if (end == std::string::npos) end = report.size();
    EXPECT_LE(end - start, 80U) << report.substr(start, end - start);
    start = end + 1;
  }
}

TEST(CgroupCpuMax, Parses) {
  EXPECT_EQ(cpus_from_cgroup_cpu_max("max 100000"), std::nullopt);
  EXPECT_EQ(cpus_from_cgroup_cpu_max("max 100000\n"), std::nullopt);
  EXPECT_EQ(cpus_from_cgroup_cpu_max("150000 100000"), 2U);
  EXPECT_EQ(cpus_from_cgroup_cpu_max("50000 100000\n"), 1U);
  EXPECT_EQ(cpus_from_cgroup_cpu_max("200000 100000"), 2U);
  EXPECT_EQ(cpus_from_cgroup_cpu_max("400000 100000\n"), 4U);
}

TEST(CgroupCpuMax, MalformedIsNullopt) {
  for (const char* text : {"", "\n", "max", "150000", "abc 100000", "150000 abc",
                           "150000 0", "-1 100000", "1.5 100000", "150000 100000 7"}) {
    EXPECT_EQ(cpus_from_cgroup_cpu_max(text), std::nullopt) << '"' << text << '"';
  }
}

TEST(CgroupMemoryMax, Parses) {
  EXPECT_EQ(bytes_from_cgroup_memory_max("max\n"), std::nullopt);
  EXPECT_EQ(bytes_from_cgroup_memory_max("max"), std::nullopt);
  EXPECT_EQ(bytes_from_cgroup_memory_max("1073741824\n"), 1073741824U);
  EXPECT_EQ(bytes_from_cgroup_memory_max("536870912"), 536870912U);
  // cgroup v1's "unlimited", and anything at or above 2^62.
  EXPECT_EQ(bytes_from_cgroup_memory_max("9223372036854771712\n"), std::nullopt);
  EXPECT_EQ(bytes_from_cgroup_memory_max("4611686018427387904"), std::nullopt);
  EXPECT_EQ(bytes_from_cgroup_memory_max("4611686018427387903"), 4611686018427387903U);
}

TEST(CgroupMemoryMax, MalformedIsNullopt) {
  for (const char* text : {"", "\n", "maximum", "12abc", "-1", "1.5", "1 2",
                           "99999999999999999999999"}) {
    EXPECT_EQ(bytes_from_cgroup_memory_max(text), std::nullopt) << '"' << text << '"';
  }
}

TEST(HostLimitsTest, ReadsThisHost) {
  const HostLimits limits = read_host_limits();
  EXPECT_GT(limits.nofile_soft, 0U);
  EXPECT_GE(limits.nofile_hard, limits.nofile_soft);
  EXPECT_GE(limits.usable_cpus, 1U);
}

TEST(HostLimitsTest, UsableCpusWithinHardwareConcurrency) {
  const unsigned cpus = usable_cpu_count();
  EXPECT_GE(cpus, 1U);
  const unsigned hardware = std::thread::hardware_concurrency();
  if (hardware != 0) {
    EXPECT_LE(cpus, hardware);
  }
}

TEST(HostLimitsTest, RaiseNofileLeavesSoftAtHard) {
  const std::uint64_t raised = raise_nofile_limit();
  const HostLimits limits = read_host_limits();
  EXPECT_EQ(raised, limits.nofile_soft);
  EXPECT_GE(raised, 1U);
  // Below the hard limit only where the hard limit is "unlimited" and the
  // kernel's fs.nr_open caps the soft one.
  EXPECT_LE(raised, limits.nofile_hard);
}


// --- kTLS --------------------------------------------------------------------

TEST(Ktls, OfferedOnlyWhenTheKernelListsTheTlsUlp) {
  EXPECT_TRUE(ktls_support("espintcp mptcp tls\n", true).available);
  EXPECT_TRUE(ktls_support("tls", true).available);
  EXPECT_EQ(ktls_support("espintcp mptcp tls\n", true).detail, "tcp_available_ulp: espintcp mptcp tls");
  // This workplace's kernel: no tls ULP.
  const KtlsSupport none = ktls_support("espintcp mptcp\n", true);
  EXPECT_FALSE(none.available);
  EXPECT_EQ(none.detail, "tcp_available_ulp: espintcp mptcp");
  // A word that merely contains "tls" is not the ULP.
  EXPECT_FALSE(ktls_support("mytls tls2", true).available);
  EXPECT_EQ(ktls_support("", true).detail, "tcp_available_ulp: (empty)");
  const KtlsSupport unreadable = ktls_support({}, false);
  EXPECT_FALSE(unreadable.available);
  EXPECT_EQ(unreadable.detail, "tcp_available_ulp cannot be read");
  EXPECT_FALSE(probe_ktls("/nonexistent/tcp_available_ulp").available);
}

TEST(Ktls, UsedWhenAutoAndOfferedNeverWhenOff) {
  const KtlsSupport offered = ktls_support("tls", true);
  const KtlsSupport absent = ktls_support("mptcp", true);
  EXPECT_TRUE(use_ktls(KtlsMode::auto_, offered));
  EXPECT_FALSE(use_ktls(KtlsMode::auto_, absent));
  EXPECT_FALSE(use_ktls(KtlsMode::off, offered));
  EXPECT_FALSE(use_ktls(KtlsMode::off, absent));
}

// The preflight's kTLS finding (empty when there is none).
std::string ktls_line(const PreflightResult& result) {
  for (const PreflightFinding& f : result.findings)
    if (contains(f.what, "ktls")) return f.what;
  return {};
}

TEST(RunPreflight, SaysWhichPathTlsConnectionsTakeWhenAListenerHasTls) {
  Config config;
  // No TLS listener: nothing said about kTLS.
  for (const PreflightFinding& f : run_preflight(config, ample_host()).findings)
    EXPECT_FALSE(contains(f.what, "ktls")) << f.what;

  config.listeners[0].tls = TlsConfig{.certificate = "c.pem", .private_key = "k.pem"};
  HostLimits host = ample_host();
  host.ktls = ktls_support("espintcp mptcp", true);
  std::string report = ktls_line(run_preflight(config, host));
  EXPECT_TRUE(contains(report, "not offered by this kernel (tcp_available_ulp: espintcp mptcp)"))
      << report;
  EXPECT_TRUE(contains(report, "user space")) << report;

  host.ktls = ktls_support("mptcp tls", true);
  report = ktls_line(run_preflight(config, host));
  EXPECT_TRUE(contains(report, "available (tcp_available_ulp: mptcp tls)")) << report;
  EXPECT_TRUE(contains(report, "handed to the kernel")) << report;

  config.listeners[0].tls->ktls = KtlsMode::off;
  report = ktls_line(run_preflight(config, host));
  EXPECT_TRUE(contains(report, "off (tls.ktls: off)")) << report;
  EXPECT_TRUE(run_preflight(config, host).ok);
}

}  // namespace
}  // namespace shoal
