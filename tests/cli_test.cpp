// shoald's command line: what an operator sees from --check, --print-config,
// --version and a bad configuration, from the real binary.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

TEST(Cli, VersionAndHelp) {
  auto v = run_shoald({"--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.output.find("shoald 0."), std::string::npos) << v.output;

  auto h = run_shoald({"--help"});
  EXPECT_EQ(h.exit_code, 0);
  for (const char* opt : {"--config", "--check", "--print-config", "--log-level", "--version"})
    EXPECT_NE(h.output.find(opt), std::string::npos) << opt;
}

TEST(Cli, UnknownOptionIsAUsageError) {
  auto r = run_shoald({"--frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("frobnicate"), std::string::npos) << r.output;
}

TEST(Cli, CheckOnTheShippedConfigPrintsThePreflightAndSucceeds) {
  auto r = run_shoald({"--check", "--config", SHOAL_SOURCE_DIR "/config/shoal.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("preflight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("is ok"), std::string::npos) << r.output;
}

TEST(Cli, CheckOnABadConfigNamesKeyAndLineAndFails) {
  const auto path = write_temp_file("shards: 2\nlisteners:\n  - name: echo\n    port: 70000\n");
  auto r = run_shoald({"--check", "--config", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("listeners[0].port"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("line 4"), std::string::npos) << r.output;
}

TEST(Cli, MissingConfigFileFails) {
  auto r = run_shoald({"--config", "/nonexistent/shoal.yaml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent/shoal.yaml"), std::string::npos) << r.output;
}

TEST(Cli, PrintConfigWithoutConfigIsTheDefaultsAndEqualsTheShippedFile) {
  auto r = run_shoald({"--print-config"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(parse_config(r.output), Config{});
  EXPECT_EQ(load_config_file(SHOAL_SOURCE_DIR "/config/shoal.yaml"), parse_config(r.output));
}

TEST(Cli, LogLevelOverrideIsValidated) {
  auto r = run_shoald({"--print-config", "--log-level", "debug"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(parse_config(r.output).logging.level, "debug");
  auto bad = run_shoald({"--print-config", "--log-level", "loud"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("loud"), std::string::npos) << bad.output;
}

TEST(Cli, InsufficientLimitsUnderFailExitNamingTheSettingToChange) {
  const auto path = write_temp_file(
      "listeners:\n  - name: echo\n    address: 127.0.0.1\n    port: 0\n"
      "limits:\n  max_connections: 100000000\n  on_insufficient: fail\n");
  auto check = run_shoald({"--check", "--config", path});
  EXPECT_EQ(check.exit_code, 1) << check.output;
  EXPECT_NE(check.output.find("LimitNOFILE="), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("--ulimit nofile="), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("ulimit -n"), std::string::npos) << check.output;

  auto start = run_shoald({"--config", path});
  EXPECT_EQ(start.exit_code, 1) << start.output;
  EXPECT_NE(start.output.find("LimitNOFILE="), std::string::npos) << start.output;
}

TEST(Cli, InsufficientLimitsUnderWarnCapAndStart) {
  ShoaldProcess shoald({.yaml = "listeners:\n  - name: echo\n    address: 127.0.0.1\n    port: 0\n"
                                "limits:\n  max_connections: 100000000\n"});
  const auto out = shoald.output();
  EXPECT_NE(out.find("LimitNOFILE="), std::string::npos) << out;
  EXPECT_EQ(out.find("max_connections 100000000\n"), std::string::npos);
}

TEST(Cli, PortInUseIsAStartupErrorNotASilentFailure) {
  // An acceptor without SO_REUSEPORT holds the port: shoald must not start.
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor holder(
      ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = holder.local_endpoint().port();
  const auto path = write_temp_file("listeners:\n  - name: echo\n    address: 127.0.0.1\n    port: " +
                                    std::to_string(port) + "\n");
  auto r = run_shoald({"--config", path});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("bind"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(std::to_string(port)), std::string::npos) << r.output;
}

}  // namespace
}  // namespace shoal::test
