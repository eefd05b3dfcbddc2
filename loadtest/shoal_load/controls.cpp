#include "controls.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "engine.hpp"
#include "options.hpp"

namespace shoal::load {

namespace {

// The spec's absolute bounds; a listener's own controls.max_size and
// max_delay may be lower, which only the server knows (it answers 400).
constexpr std::uint64_t max_size_bytes = 67'108'864;
constexpr std::int64_t max_delay_ms = 3'600'000;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Query decoding as the server's: %XX is a byte, '+' a space. A '%' not
// followed by two hex digits stays as it is (and then fails the value's
// own syntax if it is in one of ours).
std::string decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// [0-9]+ no greater than `max`; nullopt otherwise (overflow included).
std::optional<std::uint64_t> digits(std::string_view s, std::uint64_t max) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v > max) return std::nullopt;
  return v;
}

[[noreturn]] void bad(const std::string& name, const std::string& value, const std::string& expected) {
  throw UsageError(name + "=" + value + ": " + expected +
                   " (the server would refuse the upgrade with 400)");
}

bool valid_close_code(std::uint64_t c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

}  // namespace

Controls parse_controls(std::string_view target) {
  Controls c;
  const auto q = target.find('?');
  if (q == std::string_view::npos) return c;
  std::string_view query = target.substr(q + 1);
  bool seen_size = false, seen_delay = false, seen_close_after = false, seen_close_code = false;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const std::string name = decode(item.substr(0, eq));
    const std::string value = eq == std::string_view::npos ? std::string() : decode(item.substr(eq + 1));
    auto once = [&](bool& seen) {
      if (seen) throw UsageError(name + "= is given twice (the server would refuse the upgrade with 400)");
      seen = true;
    };
    if (name == "size") {
      once(seen_size);
      const auto v = digits(value, max_size_bytes);
      if (!v) bad(name, value, "expected a number of bytes, 0-" + std::to_string(max_size_bytes));
      c.size = *v;
    } else if (name == "delay") {
      once(seen_delay);
      const auto unit_at = std::find_if(value.begin(), value.end(), [](char ch) { return ch < '0' || ch > '9'; });
      const std::string_view num(value.data(), static_cast<std::size_t>(unit_at - value.begin()));
      const std::string_view unit(value.data() + num.size(), value.size() - num.size());
      std::int64_t ms_per_unit = 0;
      if (unit.empty() || unit == "s") ms_per_unit = 1000;
      else if (unit == "ms") ms_per_unit = 1;
      else if (unit == "m") ms_per_unit = 60'000;
      else if (unit == "h") ms_per_unit = 3'600'000;
      const auto n = ms_per_unit ? digits(num, static_cast<std::uint64_t>(max_delay_ms / ms_per_unit)) : std::nullopt;
      if (!n) bad(name, value, "expected a duration like 250ms, 5s, 2m or 1h, at most 1h");
      c.delay_ns = static_cast<std::int64_t>(*n) * ms_per_unit * 1'000'000;
      c.delay_text = value;
    } else if (name == "close_after") {
      once(seen_close_after);
      const auto v = digits(value, 4'294'967'295u);
      if (!v) bad(name, value, "expected a number of echoes, 0-4294967295");
      c.close_after = static_cast<std::uint32_t>(*v);
    } else if (name == "close_code") {
      once(seen_close_code);
      const auto v = digits(value, 4999);
      if (!v || !valid_close_code(*v)) bad(name, value, "expected a close code 1000-1003, 1007-1014 or 3000-4999");
      c.close_code = static_cast<std::uint16_t>(*v);
    }
  }
  if (seen_close_code && !seen_close_after) {
    throw UsageError("close_code= needs close_after= (the server would refuse the upgrade with 400)");
  }
  return c;
}

std::size_t first_repeat_mismatch(const char* echo, std::size_t n, std::uint64_t echo_pos, const Pattern& pat,
                                  std::uint64_t msg_off, std::uint64_t msg_len) {
  if (msg_len == 0) return 0;  // nothing to repeat: any byte is one too many
  std::size_t done = 0;
  while (done < n) {
    const std::uint64_t in_msg = (echo_pos + done) % msg_len;
    // A run that neither wraps round the message nor leaves the pattern's
    // contiguous window.
    const std::size_t take = static_cast<std::size_t>(
        std::min<std::uint64_t>({n - done, msg_len - in_msg, Pattern::max_window}));
    const char* want = pat.at(msg_off + in_msg);
    if (std::memcmp(echo + done, want, take) != 0) {
      std::size_t i = 0;
      while (echo[done + i] == want[i]) ++i;
      return done + i;
    }
    done += take;
  }
  return n;
}

void ControlCounts::add(const ControlCounts& o) {
  resized += o.resized;
  not_resized += o.not_resized;
  delayed += o.delayed;
  early += o.early;
  closed_as_asked += o.closed_as_asked;
  not_closed_as_asked += o.not_closed_as_asked;
  close_unfinished += o.close_unfinished;
}

nlohmann::json to_json(const ControlCounts& c) {
  return {{"resized", c.resized},
          {"not_resized", c.not_resized},
          {"delayed", c.delayed},
          {"early", c.early},
          {"closed_as_asked", c.closed_as_asked},
          {"not_closed_as_asked", c.not_closed_as_asked},
          {"close_unfinished", c.close_unfinished}};
}

ControlCounts control_counts_from_json(const nlohmann::json& j) {
  ControlCounts c;
  if (!j.is_object()) return c;
  c.resized = j.value("resized", std::uint64_t{0});
  c.not_resized = j.value("not_resized", std::uint64_t{0});
  c.delayed = j.value("delayed", std::uint64_t{0});
  c.early = j.value("early", std::uint64_t{0});
  c.closed_as_asked = j.value("closed_as_asked", std::uint64_t{0});
  c.not_closed_as_asked = j.value("not_closed_as_asked", std::uint64_t{0});
  c.close_unfinished = j.value("close_unfinished", std::uint64_t{0});
  return c;
}

}  // namespace shoal::load
