// The browser page (protocol/browser_page.hpp) as text: self-contained (a
// page that fetched a script or a font would break behind a proxy with no
// way out, which is where people open it), every element id the page's
// interface names is there, and the listener's path is written into the
// script so that no path can end the string or the <script> element.
// tests/browser_test.cpp runs it in a real Chromium.
#include "protocol/browser_page.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <regex>
#include <string>
#include <string_view>

#include "protocol/utf8.hpp"

namespace shoal {
namespace {

std::size_t count(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// The literal the page assigns to WS_PATH, between its quotes.
std::string ws_path_literal(const std::string& page) {
  static const std::regex re("const WS_PATH = \"([^\"\\\\]*(?:\\\\.[^\"\\\\]*)*)\";");
  std::smatch m;
  if (!std::regex_search(page, m, re)) return "(no WS_PATH)";
  return m[1];
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// What a JavaScript engine makes of the literal, as UTF-8, for the escapes
// the page may use (\uXXXX, surrogate pairs); any other backslash fails.
std::string js_unescape(std::string_view lit) {
  std::string out;
  for (std::size_t i = 0; i < lit.size();) {
    if (lit[i] != '\\') {
      out += lit[i++];
      continue;
    }
    if (i + 6 > lit.size() || lit[i + 1] != 'u') return "(bad escape)";
    std::uint32_t unit = std::stoul(std::string(lit.substr(i + 2, 4)), nullptr, 16);
    i += 6;
    if (unit >= 0xD800 && unit < 0xDC00 && i + 6 <= lit.size() && lit[i] == '\\') {
      const std::uint32_t low = std::stoul(std::string(lit.substr(i + 2, 4)), nullptr, 16);
      unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
      i += 6;
    }
    append_utf8(out, unit);
  }
  return out;
}

TEST(BrowserPage, IsOneHtmlDocumentInUtf8) {
  const std::string page = browser_page("/");
  EXPECT_EQ(page.rfind("<!doctype html>", 0), 0u);
  EXPECT_NE(page.find("<meta charset=\"utf-8\">"), std::string::npos);
  EXPECT_EQ(check_utf8(page), Utf8::valid);
  EXPECT_NE(page.find("</html>"), std::string::npos);
}

TEST(BrowserPage, LoadsNothingFromElsewhere) {
  const std::string page = browser_page("/ws");
  // Not one absolute URL anywhere: no script, style sheet, font, image or
  // link that a browser behind a closed proxy would wait for.
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_EQ(page.find("//cdn"), std::string::npos);
  static const std::regex external(R"(<img|<iframe|<object|<embed|@import|url\()", std::regex::icase);
  std::smatch m;
  EXPECT_FALSE(std::regex_search(page, m, external)) << "found " << m.str(0);
  // The one reference is the empty data: icon (no /favicon.ico request).
  static const std::regex reference(R"re((src|href)\s*=\s*"([^"]*)")re", std::regex::icase);
  std::size_t references = 0;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), reference); it != std::sregex_iterator();
       ++it) {
    EXPECT_EQ((*it)[2].str(), "data:,") << it->str(0);
    ++references;
  }
  EXPECT_EQ(references, 1u);
  static const std::regex any_reference(R"((src|href)\s*=)", std::regex::icase);
  EXPECT_EQ(std::distance(std::sregex_iterator(page.begin(), page.end(), any_reference),
                          std::sregex_iterator()),
            1);
  EXPECT_EQ(count(page, "<link"), 1u);
  // One script, inline.
  EXPECT_EQ(count(page, "<script"), 1u);
  EXPECT_NE(page.find("<script>\n"), std::string::npos);
  EXPECT_EQ(count(page, "</script>"), 1u);
}

TEST(BrowserPage, HasEveryElementTheInterfaceNames) {
  const std::string page = browser_page("/ws");
  for (const char* id : {"url", "connect", "close", "message", "send", "log", "status", "close-code",
                         "extensions"}) {
    EXPECT_EQ(count(page, std::string("id=\"") + id + "\""), 1u) << id;
  }
  // Before the script runs the status already reads as it will at first.
  EXPECT_NE(page.find("<dd id=\"status\">connecting</dd>"), std::string::npos);
}

TEST(BrowserPage, ConnectsToTheListenersPathWithThePagesQuery) {
  const std::string page = browser_page("/echo/v1");
  EXPECT_EQ(ws_path_literal(page), "/echo/v1");
  // Same host and port, wss:// under https://, and the page's query (where
  // ?delay=100ms is) carried over to the upgrade.
  EXPECT_NE(page.find("location.protocol === \"https:\" ? \"wss://\" : \"ws://\""), std::string::npos);
  EXPECT_NE(page.find("location.host + WS_PATH +\n  location.search"), std::string::npos);
}

TEST(BrowserPage, HostilePathStaysInsideItsString) {
  const std::string hostile =
      "/\"; alert(1); \"</script><script>alert(2)</script><!-- '\\\n\r\t&amp;<>"
      "\xe2\x80\xa8\xe2\x80\xa9 caf\xc3\xa9 \xf0\x9f\x90\x9f %2F?x=1#y";
  const std::string page = browser_page(hostile);
  // The element is never ended early, no comment opened, no second script.
  EXPECT_EQ(count(page, "</script"), 1u);
  EXPECT_EQ(count(page, "<script"), 1u);
  EXPECT_EQ(page.find("<!--"), std::string::npos);
  EXPECT_EQ(page.find("alert(1); \""), std::string::npos);
  // JavaScript line terminators, raw, would end the literal in old engines.
  EXPECT_EQ(page.find("\xe2\x80\xa8"), std::string::npos);
  EXPECT_EQ(page.find("\xe2\x80\xa9"), std::string::npos);

  const std::string lit = ws_path_literal(page);
  // Only plain ASCII and \u escapes in the literal ...
  for (const char c : lit) {
    const auto u = static_cast<unsigned char>(c);
    EXPECT_TRUE(u > 0x20 && u < 0x7f && c != '"' && c != '<' && c != '>' && c != '&' && c != '\'')
        << "raw byte " << static_cast<int>(u);
  }
  // ... and a JavaScript engine reads the path back exactly.
  EXPECT_EQ(js_unescape(lit), hostile);
}

TEST(BrowserPage, InvalidUtf8BecomesReplacementCharacters) {
  const std::string page = browser_page("/a\xff\xc3");
  EXPECT_EQ(check_utf8(page), Utf8::valid);
  EXPECT_EQ(ws_path_literal(page), "/a\\ufffd\\ufffd");
}

}  // namespace
}  // namespace shoal
