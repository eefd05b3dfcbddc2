// The pubsub mode's pieces that need no socket: the message every publisher
// sends, the check of one publisher's sequence as one subscriber sees it,
// and the counts that engines, workers and the parent add up.
//
// A message is a header of publisher index, sequence number and send time
// (CLOCK_MONOTONIC ns: publisher and subscriber share the host), then
// padding to --size from the Pattern at an offset fixed by (publisher,
// sequence), so that a subscriber can check every byte of what it got
// without having seen it sent. Binary messages carry the three fields as
// 8-byte big-endian numbers (24 bytes); text messages, which must be UTF-8,
// as 16 lower-case hex digits each (48 bytes).
//
// Pure values and functions; a SeqTracker belongs to one connection (one
// engine thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal::load {

class Pattern;  // engine.hpp

namespace pubsub {

inline constexpr std::size_t binary_header = 24;
inline constexpr std::size_t text_header = 48;
inline std::size_t header_size(bool text) { return text ? text_header : binary_header; }

// A sequence number with this bit set is the publisher's last word: it sent
// (seq & ~end_flag) messages, 0 to that minus one. Subscribers learn from it
// when they have everything, so a run ends as soon as the last delivery is
// in instead of waiting out --timeout.
inline constexpr std::uint64_t end_flag = std::uint64_t{1} << 63;

struct Header {
  std::uint64_t publisher = 0;
  std::uint64_t seq = 0;
  std::int64_t sent_ns = 0;
};

// Writes header_size(text) bytes at `out`.
void write_header(char* out, const Header& h, bool text);
// Reads header_size(text) bytes; false when text digits are not hex.
bool read_header(const char* in, bool text, Header& h);

// Pattern offset of the padding of message `seq` of `publisher`.
std::uint64_t padding_offset(std::uint64_t publisher, std::uint64_t seq);

// The whole message: header, then padding to `size` (>= header_size).
void build_message(std::string& out, const Header& h, std::size_t size, bool text, const Pattern& pat);

// The first byte of `n` padding bytes at padding position `pos` (0 = the
// byte after the header) that is not the pattern's; n when all are.
std::size_t first_padding_mismatch(const char* p, std::size_t n, std::uint64_t pos, std::uint64_t offset,
                                   const Pattern& pat);

// One publisher's messages as one subscriber receives them. accept() says
// for each sequence number whether it came in order, skipped ahead (the
// ones between are owed), filled an owed place late (reordered), or came
// again (duplicate). The owed places are kept as ranges, none while every
// message comes in order, and at most max_gaps of them: past that the
// oldest range is forgotten, and a late arrival into it counts as a
// duplicate (a stream with over a thousand separate gaps has failed the
// run many times over already).
class SeqTracker {
 public:
  enum class Arrival { in_order, ahead, late, duplicate };
  static constexpr std::size_t max_gaps = 1024;

  Arrival accept(std::uint64_t seq) {
    if (seq == next_) {
      ++next_;
      return Arrival::in_order;
    }
    return accept_out_of_order(seq);
  }
  // One past the highest sequence number seen.
  std::uint64_t next() const { return next_; }
  // Every message 0..n-1 has come, no other.
  bool complete(std::uint64_t n) const { return next_ == n && gaps_.empty(); }
  // Places below next() still owed.
  std::uint64_t owed() const;

 private:
  Arrival accept_out_of_order(std::uint64_t seq);
  std::uint64_t next_ = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps_;  // [first, end), ascending, disjoint
};

// What the subscribers of one engine (then worker, then run) saw, and the
// per-channel figures the parent turns into the expected count: each
// subscriber of channel k should get every message published on k.
struct Counts {
  std::uint64_t delivered = 0;   // well-formed messages from a publisher of the subscriber's channel
  std::uint64_t duplicated = 0;  // of those, a sequence number the subscriber already had
  std::uint64_t reordered = 0;   // of those, one that came after a later one of its publisher
  std::uint64_t foreign = 0;     // from no publisher of the channel (another channel's, or past its end)
  std::uint64_t publisher_received = 0;  // messages publishers got (other publishers', echo_to_sender) and dropped
  std::uint64_t complete = 0;    // subscribers that got everything, as their publishers' end said
  std::vector<std::uint64_t> subscribers;  // per channel: subscribers established
  std::vector<std::uint64_t> published;    // per channel: messages sent by its publishers

  void add(const Counts& o);
  // Σ over channels of subscribers × published.
  std::uint64_t expected() const;
};

nlohmann::json to_json(const Counts& c);
Counts counts_from_json(const nlohmann::json& j);

}  // namespace pubsub
}  // namespace shoal::load
