// The browser page in a real browser: the built shoald with three
// websocket-echo listeners (plain, permessage-deflate, wss:// with a
// throwaway certificate made by `openssl`), and Debian's headless Chromium
// driven over the DevTools protocol by tests/browser/drive.py: the page at
// GET /.ws opens its WebSocket on the listener's path, the typed message comes
// back, #extensions shows what was negotiated (Chromium always offers
// permessage-deflate; the listeners without it decline and the echo still
// works), the page's own query reaches the upgrade (/.ws?delay=300ms delays
// the echo), a close from the page reads 1000, and a screenshot lands in
// build/tests/browser-output/ for a person to look at.
//
// No skip when Chromium is missing: deploy/install-deps.sh installs it, and a
// page nobody ran in a browser is what this test exists to rule out. Every
// step is bounded: drive.py under timeout(1), its own waits shorter.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "shoald_process.hpp"
#include "test_certs.hpp"

namespace shoal::test {
namespace {

// Every listener upgrades on /echo, not the default "/", so that a page
// that ignored its listener's path would fail.
std::string browser_yaml(const CertFiles& cert) {
  const std::string ws = "    websocket:\n      path: /echo\n";
  return "shards: 2\n"
         "listeners:\n" +
         loopback_listener("ws", "websocket-echo", ws) +
         loopback_listener("deflate", "websocket-echo",
                           ws + "      permessage_deflate:\n        enabled: true\n") +
         loopback_listener("wss", "websocket-echo",
                           ws + "    tls:\n"
                                "      certificate: " + cert.certificate + "\n"
                                "      private_key: " + cert.private_key + "\n") +
         "shutdown: {drain_timeout: 1s}\n";
}

class BrowserChromium : public ::testing::Test {
 protected:
  BrowserChromium() : cert_(make_cert(dir_, "page")), shoald_({.yaml = browser_yaml(cert_)}) {}

  // Runs drive.py against `page_url`; the screenshot goes to
  // browser-output/<name>.png. Returns drive.py's output.
  std::string drive(const std::string& name, const std::string& page_url,
                    const std::string& extensions) {
    const std::string shot = std::string(SHOAL_BROWSER_OUTPUT_DIR) + "/" + name + ".png";
    std::filesystem::create_directories(SHOAL_BROWSER_OUTPUT_DIR);
    std::filesystem::remove(shot);  // a stale one from an earlier run proves nothing
    const RunResult r = run_command("timeout 110 /usr/bin/python3 " SHOAL_SOURCE_DIR
                                    "/tests/browser/drive.py '" + page_url + "' " + extensions +
                                    " '" + shot + "' 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("ALL OK"), std::string::npos) << r.output;
    std::ifstream in(shot, std::ios::binary);
    const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << shot;
    EXPECT_GT(png.size(), 5000u) << shot << ": too small to show the page";
    return r.output;
  }

  std::string port(const std::string& listener) { return std::to_string(shoald_.port(listener)); }

  TempDir dir_;
  CertFiles cert_;
  ShoaldProcess shoald_;
};

TEST_F(BrowserChromium, EchoesWithoutDeflateWhenTheListenerDeclinesIt) {
  const std::string out = drive("ws", "http://127.0.0.1:" + port("ws") + "/.ws", "none");
  EXPECT_NE(out.find("websocket url: ws://127.0.0.1:" + port("ws") + "/echo\n"), std::string::npos)
      << out;
}

TEST_F(BrowserChromium, ThePagesQueryReachesTheUpgradeWithItsControls) {
  // /.ws?delay=300ms: the page's socket asks for it, every echo waits.
  const std::string out =
      drive("ws-delay", "http://127.0.0.1:" + port("ws") + "/.ws?delay=300ms", "none");
  EXPECT_NE(out.find("websocket url: ws://127.0.0.1:" + port("ws") + "/echo?delay=300ms\n"),
            std::string::npos)
      << out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("echo after (\\d+) ms"))) << out;
  // The page's times are whole milliseconds, each rounded.
  EXPECT_GE(std::stoi(m[1]), 299) << out;
}

TEST_F(BrowserChromium, NegotiatesPermessageDeflateWithChromium) {
  const std::string out =
      drive("deflate", "http://127.0.0.1:" + port("deflate") + "/.ws", "permessage-deflate");
  EXPECT_NE(out.find("websocket url: ws://127.0.0.1:" + port("deflate") + "/echo\n"), std::string::npos)
      << out;
}

TEST_F(BrowserChromium, OverHttpsThePageConnectsWithWss) {
  const std::string out = drive("wss", "https://127.0.0.1:" + port("wss") + "/.ws", "none");
  EXPECT_NE(out.find("websocket url: wss://127.0.0.1:" + port("wss") + "/echo\n"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace shoal::test
