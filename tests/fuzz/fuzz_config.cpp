// Fuzz target: the config loader. Any bytes are either a Config or a
// ConfigError whose message names the source and is one line of text; never another exception, a
// crash or a hang. A Config that loads also survives the round trip that
// `shoald --print-config` promises: to_yaml() reads back to the same Config.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "config/config.hpp"
#include "fuzz_support.hpp"
#include "protocol/utf8.hpp"

using shoal::fuzz::excerpt;
using shoal::fuzz::fail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  shoal::Config config;
  try {
    config = shoal::parse_config(text, "fuzz.yaml");
  } catch (const shoal::ConfigError& e) {
    const std::string what = e.what();
    if (what.rfind("fuzz.yaml: ", 0) != 0 || what.size() <= 11)
      fail("a config error that does not name its source: " + excerpt(what));
    // One line of text an operator can read, whatever bytes it is about.
    const bool control = std::any_of(what.begin(), what.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    });
    if (control || shoal::check_utf8(what) != shoal::Utf8::valid)
      fail("a config error that is not one line of UTF-8 text: " + excerpt(what));
    return 0;
  } catch (const std::exception& e) {
    fail(std::string("parse_config threw something other than ConfigError: ") + e.what());
  }

  const std::string yaml = shoal::to_yaml(config);
  shoal::Config again;
  try {
    again = shoal::parse_config(yaml);
  } catch (const std::exception& e) {
    fail(std::string("to_yaml() of a loaded config does not load: ") + e.what() + "\n" + yaml);
  }
  if (!(again == config)) fail("to_yaml() of a loaded config loads as a different config:\n" + yaml);
  if (shoal::to_yaml(again) != yaml) fail("to_yaml() is not stable across a round trip:\n" + yaml);
  return 0;
}
