// Unit tests of the pubsub mode's message format and sequence check
// (shoal_load/pubsub.hpp).
#include "pubsub.hpp"

#include <gtest/gtest.h>

#include "engine.hpp"

namespace shoal::load::pubsub {
namespace {

using Arrival = SeqTracker::Arrival;

TEST(PubSubMessage, HeaderRoundTripsBinaryAndText) {
  for (const bool text : {false, true}) {
    const Pattern pat(text);
    const Header h{123456789, end_flag | 42, 987654321012345};
    std::string m;
    build_message(m, h, 200, text, pat);
    ASSERT_EQ(m.size(), 200u);
    Header back;
    ASSERT_TRUE(read_header(m.data(), text, back));
    EXPECT_EQ(back.publisher, h.publisher);
    EXPECT_EQ(back.seq, h.seq);
    EXPECT_EQ(back.sent_ns, h.sent_ns);
    const std::size_t head = header_size(text);
    EXPECT_EQ(first_padding_mismatch(m.data() + head, m.size() - head, 0, padding_offset(h.publisher, h.seq), pat),
              m.size() - head);
    if (text) {
      for (char c : m) EXPECT_TRUE(c > 0x20 && c < 0x7f) << static_cast<int>(c);  // ASCII: valid UTF-8
    }
  }
}

TEST(PubSubMessage, PaddingOfAnotherMessageIsCaught) {
  const Pattern pat(false);
  std::string a, b;
  build_message(a, {1, 7, 0}, 100, false, pat);
  build_message(b, {1, 8, 0}, 100, false, pat);
  // b's padding read as a's: differs early (the offsets are far apart).
  EXPECT_LT(first_padding_mismatch(b.data() + 24, 76, 0, padding_offset(1, 7), pat), 8u);
  // One flipped byte, found where it is, also when checked in two pieces.
  a[90] ^= 0x01;
  const auto off = padding_offset(1, 7);
  EXPECT_EQ(first_padding_mismatch(a.data() + 24, 76, 0, off, pat), 66u);
  EXPECT_EQ(first_padding_mismatch(a.data() + 24, 30, 0, off, pat), 30u);
  EXPECT_EQ(first_padding_mismatch(a.data() + 54, 46, 30, off, pat), 36u);
}

TEST(PubSubMessage, TextHeaderMustBeHex) {
  const Pattern pat(true);
  std::string m;
  build_message(m, {1, 2, 3}, 64, true, pat);
  m[5] = 'g';
  Header h;
  EXPECT_FALSE(read_header(m.data(), true, h));
}

TEST(SeqTracker, InOrderNeedsNoGaps) {
  SeqTracker t;
  for (std::uint64_t s = 0; s < 1000; ++s) EXPECT_EQ(t.accept(s), Arrival::in_order);
  EXPECT_TRUE(t.complete(1000));
  EXPECT_FALSE(t.complete(1001));
  EXPECT_EQ(t.owed(), 0u);
}

TEST(SeqTracker, GapThenLateFillsAndDuplicates) {
  SeqTracker t;
  EXPECT_EQ(t.accept(0), Arrival::in_order);
  EXPECT_EQ(t.accept(5), Arrival::ahead);  // 1-4 owed
  EXPECT_EQ(t.owed(), 4u);
  EXPECT_FALSE(t.complete(6));
  EXPECT_EQ(t.accept(3), Arrival::late);  // splits 1-4 into 1-2 and 4
  EXPECT_EQ(t.accept(3), Arrival::duplicate);
  EXPECT_EQ(t.accept(0), Arrival::duplicate);
  EXPECT_EQ(t.accept(5), Arrival::duplicate);
  EXPECT_EQ(t.accept(1), Arrival::late);
  EXPECT_EQ(t.accept(4), Arrival::late);
  EXPECT_EQ(t.owed(), 1u);
  EXPECT_EQ(t.accept(2), Arrival::late);
  EXPECT_EQ(t.owed(), 0u);
  EXPECT_TRUE(t.complete(6));
  EXPECT_EQ(t.accept(6), Arrival::in_order);
}

TEST(SeqTracker, SwappedPairIsOneLate) {
  SeqTracker t;
  EXPECT_EQ(t.accept(0), Arrival::in_order);
  EXPECT_EQ(t.accept(2), Arrival::ahead);
  EXPECT_EQ(t.accept(1), Arrival::late);
  EXPECT_EQ(t.accept(3), Arrival::in_order);
  EXPECT_TRUE(t.complete(4));
}

TEST(SeqTracker, GapsAreBounded) {
  SeqTracker t;
  // Every other message lost: one gap each, at most max_gaps kept.
  for (std::uint64_t s = 1; s < 2 * (SeqTracker::max_gaps + 10); s += 2) t.accept(s);
  EXPECT_EQ(t.owed(), SeqTracker::max_gaps);
  // The newest gaps are still known; the oldest forgotten.
  EXPECT_EQ(t.accept(t.next() - 2), Arrival::late);
  EXPECT_EQ(t.accept(0), Arrival::duplicate);
}

TEST(PubSubCounts, ExpectedIsSubscribersTimesPublishedPerChannel) {
  Counts a, b;
  a.subscribers = {2, 1};
  a.published = {10, 0};
  b.subscribers = {1, 3};
  b.published = {5, 7};
  b.delivered = 4;
  a.add(b);
  EXPECT_EQ(a.delivered, 4u);
  EXPECT_EQ(a.expected(), 3u * 15u + 4u * 7u);
  const Counts c = counts_from_json(to_json(a));
  EXPECT_EQ(c.expected(), a.expected());
  EXPECT_EQ(c.delivered, 4u);
}

}  // namespace
}  // namespace shoal::load::pubsub
