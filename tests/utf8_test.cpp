// The UTF-8 checks (protocol/utf8.hpp): the streaming validator agrees with
// the whole-string scan however the text is cut, and both refuse what RFC
// 3629 refuses.
#include "protocol/utf8.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace shoal {
namespace {

const unsigned char* u(const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); }

struct Case {
  std::string text;
  Utf8 status;
};
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"", Utf8::valid},
      {"plain ascii, more than eight bytes long", Utf8::valid},
      {"caf\xc3\xa9", Utf8::valid},
      {"\xe2\x82\xac euro", Utf8::valid},
      {"\xf0\x9f\x90\x9f fish", Utf8::valid},
      {"\xef\xbf\xbf", Utf8::valid},          // U+FFFF
      {"\xf4\x8f\xbf\xbf", Utf8::valid},      // U+10FFFF
      {"\xed\x9f\xbf", Utf8::valid},          // U+D7FF, just below the surrogates
      {"caf\xc3", Utf8::incomplete},
      {"\xf0\x9f\x90", Utf8::incomplete},
      {"\x80", Utf8::invalid},                // a stray continuation
      {"\xc0\xaf", Utf8::invalid},            // overlong
      {"\xc1\xbf", Utf8::invalid},            // overlong
      {"\xe0\x9f\xbf", Utf8::invalid},        // overlong
      {"\xf0\x8f\xbf\xbf", Utf8::invalid},    // overlong
      {"\xed\xa0\x80", Utf8::invalid},        // a surrogate
      {"\xf4\x90\x80\x80", Utf8::invalid},    // above U+10FFFF
      {"\xf5\x80\x80\x80", Utf8::invalid},
      {"\xff", Utf8::invalid},
      {"ok \xe2\x82\x28 then", Utf8::invalid},
      {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited", Utf8::invalid},
  };
  return c;
}

TEST(Utf8, ScanAndTheValidatorAgreeOnEveryCase) {
  for (const Case& c : cases()) {
    EXPECT_EQ(scan_utf8(u(c.text), c.text.size()).status, c.status) << c.text;
    Utf8Validator v;
    const bool ok = v.feed(u(c.text), c.text.size());
    EXPECT_EQ(ok, c.status != Utf8::invalid) << c.text;
    EXPECT_EQ(v.complete(), c.status == Utf8::valid) << c.text;
  }
}

TEST(Utf8, TheValidatorGivesTheSameVerdictHoweverTheTextIsCut) {
  for (const Case& c : cases()) {
    const std::string& t = c.text;
    for (std::size_t cut1 = 0; cut1 <= t.size(); ++cut1) {
      for (std::size_t cut2 = cut1; cut2 <= t.size(); ++cut2) {
        Utf8Validator v;
        bool ok = v.feed(u(t), cut1);
        ok = v.feed(u(t) + cut1, cut2 - cut1) && ok;
        ok = v.feed(u(t) + cut2, t.size() - cut2) && ok;
        ASSERT_EQ(ok, c.status != Utf8::invalid) << t << " cut at " << cut1 << "," << cut2;
        ASSERT_EQ(v.complete(), c.status == Utf8::valid) << t;
      }
    }
  }
}

TEST(Utf8, TheValidatorFailsAtTheFirstByteThatProvesIt) {
  const std::string t = "fine \xe2\x82\x28 and more";
  const std::size_t bad = 7;  // the 0x28
  for (std::size_t k = 0; k <= t.size(); ++k) {
    Utf8Validator v;
    EXPECT_EQ(v.feed(u(t), k), k <= bad) << k;
  }
  Utf8Validator v;
  EXPECT_FALSE(v.feed(u(t), t.size()));
  EXPECT_FALSE(v.feed(u(std::string("a")), 1)) << "invalid stays invalid";
  v.reset();
  EXPECT_TRUE(v.complete());
}

TEST(Utf8, ScanSaysWhereTheValidPartEnds) {
  const std::string t = "abc\xc3\xa9\xe2\x82";
  EXPECT_EQ(scan_utf8(u(t), t.size()).end, 5u);
  const std::string bad = "0123456789\xc0\xaf";
  EXPECT_EQ(scan_utf8(u(bad), bad.size()).end, 10u);
}

TEST(Utf8, PrefixNeverSplitsACharacter) {
  const std::string t = "ab\xe2\x82\xac" "cd";  // 7 bytes, the euro sign at 2..4
  EXPECT_EQ(utf8_prefix(u(t), t.size(), 10), 7u);
  EXPECT_EQ(utf8_prefix(u(t), t.size(), 5), 5u);
  EXPECT_EQ(utf8_prefix(u(t), t.size(), 4), 2u);
  EXPECT_EQ(utf8_prefix(u(t), t.size(), 3), 2u);
  EXPECT_EQ(utf8_prefix(u(t), t.size(), 2), 2u);
  EXPECT_EQ(utf8_prefix(u(t), t.size(), 0), 0u);
}

}  // namespace
}  // namespace shoal
