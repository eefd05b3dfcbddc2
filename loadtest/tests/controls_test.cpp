// Unit tests of what shoal-load reads from a ws:// target URL: the path and
// query it sends, the response controls it then expects (parse_controls),
// and the rule an echo resized by size= must follow (first_repeat_mismatch).
#include <string>

#include <gtest/gtest.h>

#include "controls.hpp"
#include "engine.hpp"
#include "options.hpp"

namespace shoal::load {
namespace {

std::string usage_error(const std::string& url) {
  try {
    parse_target(url);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Target, PathAndQueryGoOnTheRequestLineAsWritten) {
  EXPECT_EQ(parse_target("ws://127.0.0.1:7001").path, "/");
  EXPECT_EQ(parse_target("ws://127.0.0.1:7001/").path, "/");
  EXPECT_EQ(parse_target("ws://127.0.0.1:7001/a/b%20c/?x=1&y=%2F&delay=5ms").path, "/a/b%20c/?x=1&y=%2F&delay=5ms");
  // No path before the query: the request asks for "/?..." as a browser does.
  const Target t = parse_target("ws://127.0.0.1:7001?delay=5ms");
  EXPECT_EQ(t.path, "/?delay=5ms");
  EXPECT_EQ(t.port, 7001);
  EXPECT_EQ(t.host, "127.0.0.1:7001");
  EXPECT_EQ(parse_target("wss://[::1]:7443?size=10").path, "/?size=10");
  EXPECT_EQ(parse_target("wss://[::1]:7443?size=10").port, 7443);
}

TEST(Target, WhatCannotGoOnTheRequestLineIsRefused) {
  EXPECT_NE(usage_error("ws://127.0.0.1:7001/#frag").find("no fragment"), std::string::npos);
  EXPECT_NE(usage_error("ws://127.0.0.1:7001#frag").find("no fragment"), std::string::npos);
  EXPECT_NE(usage_error("ws://127.0.0.1:7001/a b").find("percent-encode"), std::string::npos);
  EXPECT_NE(usage_error("ws://127.0.0.1:7001/\xc3\xa9").find("percent-encode"), std::string::npos);
  EXPECT_NE(usage_error("tcp://127.0.0.1:7000?x=1").find("takes no path"), std::string::npos);
  // A bad control names the parameter and the target.
  const std::string e = usage_error("ws://127.0.0.1:7001/?size=big");
  EXPECT_NE(e.find("ws://127.0.0.1:7001/?size=big"), std::string::npos) << e;
  EXPECT_NE(e.find("size=big"), std::string::npos) << e;
}

TEST(Controls, NoneWithoutTheirParameters) {
  EXPECT_FALSE(parse_controls("/").any());
  EXPECT_FALSE(parse_controls("/?x=1&status=500&sized=3&&=&a").any());
  EXPECT_FALSE(parse_controls("/size=10").any());  // in the path, not the query
}

TEST(Controls, ValuesAsTheServerReadsThem) {
  const Controls c = parse_controls("/echo?x=1&size=300&delay=250ms&close_after=5&close_code=4000");
  ASSERT_TRUE(c.size && c.delay_ns && c.close_after);
  EXPECT_EQ(*c.size, 300u);
  EXPECT_EQ(*c.delay_ns, 250'000'000);
  EXPECT_EQ(c.delay_text, "250ms");
  EXPECT_EQ(*c.close_after, 5u);
  EXPECT_EQ(c.close_code, 4000);
  EXPECT_EQ(parse_controls("/?close_after=0").close_code, 1000);  // the default
  EXPECT_EQ(*parse_controls("/?close_after=4294967295").close_after, 4294967295u);
  EXPECT_EQ(*parse_controls("/?size=0").size, 0u);
  EXPECT_EQ(*parse_controls("/?size=67108864").size, 67108864u);
  // Durations: ms, s, m, h, or a plain number of seconds.
  EXPECT_EQ(*parse_controls("/?delay=2").delay_ns, 2'000'000'000);
  EXPECT_EQ(*parse_controls("/?delay=3s").delay_ns, 3'000'000'000);
  EXPECT_EQ(*parse_controls("/?delay=2m").delay_ns, 120'000'000'000);
  EXPECT_EQ(*parse_controls("/?delay=1h").delay_ns, 3'600'000'000'000);
  EXPECT_EQ(*parse_controls("/?delay=0").delay_ns, 0);
  // Percent-decoded, names too.
  EXPECT_EQ(*parse_controls("/?si%7Ae=%31%30").size, 10u);
  EXPECT_EQ(parse_controls("/?delay=5%6Ds").delay_text, "5ms");
}

TEST(Controls, BadValuesAreUsageErrorsNamingTheParameter) {
  const struct {
    const char* target;
    const char* says;
  } cases[] = {
      {"/?size=", "size=: expected a number of bytes"},
      {"/?size=-1", "size=-1"},
      {"/?size=1k", "size=1k"},
      {"/?size=67108865", "size=67108865"},
      {"/?size=99999999999999999999999", "size=9999"},
      {"/?size", "size=:"},
      {"/?delay=5", nullptr},
      {"/?delay=1.5s", "delay=1.5s: expected a duration"},
      {"/?delay=5us", "delay=5us"},
      {"/?delay=61m", "delay=61m"},
      {"/?delay=2h", "delay=2h"},
      {"/?delay=ms", "delay=ms"},
      {"/?delay=%2B5ms", "delay=+5ms"},
      {"/?delay=+5ms", "delay= 5ms"},  // a + is a space
      {"/?close_after=4294967296", "close_after=4294967296"},
      {"/?close_after=x", "close_after=x"},
      {"/?close_after=1&close_code=1004", "close_code=1004"},
      {"/?close_after=1&close_code=1005", "close_code=1005"},
      {"/?close_after=1&close_code=1015", "close_code=1015"},
      {"/?close_after=1&close_code=5000", "close_code=5000"},
      {"/?close_after=1&close_code=2999", "close_code=2999"},
      {"/?close_code=1000", "close_code= needs close_after="},
      {"/?size=1&size=1", "size= is given twice"},
      {"/?delay=1ms&delay=1ms", "delay= is given twice"},
      {"/?close_after=1&close_after=2", "close_after= is given twice"},
      {"/?close_after=1&close_code=1000&close_code=1001", "close_code= is given twice"},
  };
  for (const auto& c : cases) {
    if (!c.says) {
      EXPECT_NO_THROW(parse_controls(c.target)) << c.target;
      continue;
    }
    try {
      parse_controls(c.target);
      ADD_FAILURE() << c.target << ": no error";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << c.target << ": " << e.what();
    }
  }
  for (const unsigned code : {1000u, 1001u, 1002u, 1003u, 1007u, 1014u, 3000u, 4999u}) {
    EXPECT_EQ(parse_controls("/?close_after=1&close_code=" + std::to_string(code)).close_code, code);
  }
}

// The sent message is `len` pattern bytes from `off`; an echo of it resized
// to n bytes is the message repeated or cut.
std::string repeated(const Pattern& pat, std::uint64_t off, std::uint64_t len, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s.push_back(pat.at(off + i % len)[0]);
  return s;
}

TEST(Controls, AResizedEchoIsTheMessageRepeatedOrCut) {
  const Pattern pat(false);
  const std::uint64_t off = 12345;
  for (const std::uint64_t len : {1u, 7u, 64u, 1000u}) {
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{63}, std::size_t{5000}}) {
      const std::string echo = repeated(pat, off, len, n);
      EXPECT_EQ(first_repeat_mismatch(echo.data(), echo.size(), 0, pat, off, len), n) << len << " " << n;
      // Any split of the echo into pieces checks the same.
      for (std::size_t cut = 0; cut <= n; cut += 997) {
        EXPECT_EQ(first_repeat_mismatch(echo.data(), cut, 0, pat, off, len), cut);
        EXPECT_EQ(first_repeat_mismatch(echo.data() + cut, n - cut, cut, pat, off, len), n - cut);
      }
      if (n == 0) continue;
      // One byte wrong anywhere is found where it is.
      for (const std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
        std::string bad = echo;
        bad[at] = static_cast<char>(bad[at] ^ 0x20);
        EXPECT_EQ(first_repeat_mismatch(bad.data(), bad.size(), 0, pat, off, len), at) << len << " " << n;
      }
    }
  }
  // Past the pattern's contiguous window and round its period.
  const std::uint64_t big = Pattern::max_window + 10;
  const std::string echo = repeated(pat, Pattern::period - 3, big, 3 * big + 5);
  EXPECT_EQ(first_repeat_mismatch(echo.data(), echo.size(), 0, pat, Pattern::period - 3, big), echo.size());
  // The message itself at its own length passes; another connection's
  // bytes (another offset) do not.
  const std::string other = repeated(pat, off + 1, 64, 64);
  EXPECT_LT(first_repeat_mismatch(other.data(), other.size(), 0, pat, off, 64), other.size());
  // Nothing repeats an empty message.
  EXPECT_EQ(first_repeat_mismatch("x", 1, 0, pat, off, 0), 0u);
}

TEST(Controls, CountsTravelAsJson) {
  ControlCounts a;
  a.resized = 1;
  a.not_resized = 2;
  a.delayed = 3;
  a.early = 4;
  a.closed_as_asked = 5;
  a.not_closed_as_asked = 6;
  a.close_unfinished = 7;
  ControlCounts b = control_counts_from_json(to_json(a));
  b.add(a);
  EXPECT_EQ(b.resized, 2u);
  EXPECT_EQ(b.not_resized, 4u);
  EXPECT_EQ(b.delayed, 6u);
  EXPECT_EQ(b.early, 8u);
  EXPECT_EQ(b.closed_as_asked, 10u);
  EXPECT_EQ(b.not_closed_as_asked, 12u);
  EXPECT_EQ(b.close_unfinished, 14u);
  EXPECT_EQ(b.failures(), 4u + 8u + 12u);
}

}  // namespace
}  // namespace shoal::load
