// The response controls a ws:// or wss:// target URL may ask shoald for
// (size=, delay=, close_after=, close_code=, in the query of the upgrade
// URL), what shoal-load expects of every echo because of them, and the
// counts of echoes and connections that did or did not get it.
//
// Pure values and functions: parsed once in the parent from the target URL,
// read by every engine thread, counted per engine and summed in the parent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace shoal::load {

class Pattern;  // engine.hpp

struct Controls {
  std::optional<std::uint64_t> size;         // size=BYTES: every echo exactly this long
  std::optional<std::int64_t> delay_ns;      // delay=DURATION: no echo sooner than this after its send
  std::string delay_text;                    // delay= as written in the URL, for the report
  std::optional<std::uint32_t> close_after;  // close_after=N: the server closes after N echoes
  std::uint16_t close_code = 1000;           // close_code=CODE (only with close_after)

  bool any() const { return size || delay_ns || close_after; }
};

// The controls in a request target (PATH?QUERY, as it goes on the request
// line), with the server's rules: names and values percent-decoded ('+' is
// a space); size 0-67108864 decimal bytes; delay [0-9]+ with ms, s, m, h or
// no unit (seconds), at most 1h; close_after 0-4294967295; close_code
// 1000-1003, 1007-1014 or 3000-4999, and only with close_after; none given
// twice. Other parameters (status= among them) are left to the server.
// Throws UsageError (options.hpp) naming the parameter: the server would
// refuse such an upgrade with 400, so no echo of it could be checked.
Controls parse_controls(std::string_view target);

// Whether `n` echo bytes at `echo` are the message repeated or cut: the
// byte at echo position p is the message's byte p % msg_len. `echo_pos` is
// the position of echo[0] in the echo; the message is `msg_len` pattern
// bytes from stream offset `msg_off`. Returns the index of the first byte
// that differs, or n when none does. The sent payload is ASCII (--text) or
// binary, so size='s text rule (cut at a code point boundary, filled with
// spaces) gives exactly this repetition too.
std::size_t first_repeat_mismatch(const char* echo, std::size_t n, std::uint64_t echo_pos, const Pattern& pat,
                                  std::uint64_t msg_off, std::uint64_t msg_len);

// What the checks found, per engine, then summed.
struct ControlCounts {
  std::uint64_t resized = 0, not_resized = 0;   // size=
  std::uint64_t delayed = 0, early = 0;         // delay=
  std::uint64_t closed_as_asked = 0, not_closed_as_asked = 0;  // close_after=
  // close_after=: still open at the end with fewer than N echoes, so
  // neither (the run did not send enough).
  std::uint64_t close_unfinished = 0;

  void add(const ControlCounts& o);
  std::uint64_t failures() const { return not_resized + early + not_closed_as_asked; }
};

nlohmann::json to_json(const ControlCounts& c);
ControlCounts control_counts_from_json(const nlohmann::json& j);

}  // namespace shoal::load
