#include "pubsub.hpp"

#include <algorithm>
#include <cstring>

#include "engine.hpp"

namespace shoal::load::pubsub {

namespace {

void put_be64(char* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

std::uint64_t get_be64(const char* in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

void put_hex64(char* out, std::uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = digits[v & 0xf];
    v >>= 4;
  }
}

bool get_hex64(const char* in, std::uint64_t& v) {
  v = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = in[i];
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else return false;
    v = (v << 4) | d;
  }
  return true;
}

}  // namespace

void write_header(char* out, const Header& h, bool text) {
  if (text) {
    put_hex64(out, h.publisher);
    put_hex64(out + 16, h.seq);
    put_hex64(out + 32, static_cast<std::uint64_t>(h.sent_ns));
  } else {
    put_be64(out, h.publisher);
    put_be64(out + 8, h.seq);
    put_be64(out + 16, static_cast<std::uint64_t>(h.sent_ns));
  }
}

bool read_header(const char* in, bool text, Header& h) {
  if (!text) {
    h.publisher = get_be64(in);
    h.seq = get_be64(in + 8);
    h.sent_ns = static_cast<std::int64_t>(get_be64(in + 16));
    return true;
  }
  std::uint64_t ts = 0;
  if (!get_hex64(in, h.publisher) || !get_hex64(in + 16, h.seq) || !get_hex64(in + 32, ts)) return false;
  h.sent_ns = static_cast<std::int64_t>(ts);
  return true;
}

std::uint64_t padding_offset(std::uint64_t publisher, std::uint64_t seq) {
  return (publisher * 7919u + seq * 104729u) % Pattern::period;
}

void build_message(std::string& out, const Header& h, std::size_t size, bool text, const Pattern& pat) {
  const std::size_t head = header_size(text);
  out.resize(size);
  write_header(out.data(), h, text);
  const std::uint64_t off = padding_offset(h.publisher, h.seq);
  for (std::size_t done = 0; head + done < size;) {
    const std::size_t take = std::min(size - head - done, Pattern::max_window);
    std::memcpy(out.data() + head + done, pat.at(off + done), take);
    done += take;
  }
}

std::size_t first_padding_mismatch(const char* p, std::size_t n, std::uint64_t pos, std::uint64_t offset,
                                   const Pattern& pat) {
  // Split at max_window so that each compared stretch of the pattern is
  // contiguous.
  for (std::size_t done = 0; done < n;) {
    const std::size_t take = std::min(n - done, Pattern::max_window);
    const char* want = pat.at(offset + pos + done);
    if (std::memcmp(p + done, want, take) != 0) {
      std::size_t i = 0;
      while (p[done + i] == want[i]) ++i;
      return done + i;
    }
    done += take;
  }
  return n;
}

SeqTracker::Arrival SeqTracker::accept_out_of_order(std::uint64_t seq) {
  if (seq > next_) {
    gaps_.emplace_back(next_, seq);
    if (gaps_.size() > max_gaps) gaps_.erase(gaps_.begin());
    next_ = seq + 1;
    return Arrival::ahead;
  }
  // Below next_: owed (late), or had already. The gap whose start is the
  // last at or below seq is the only one that can hold it.
  auto it = std::upper_bound(gaps_.begin(), gaps_.end(), seq,
                             [](std::uint64_t s, const auto& g) { return s < g.first; });
  if (it == gaps_.begin()) return Arrival::duplicate;
  --it;
  if (seq >= it->second) return Arrival::duplicate;
  const auto [first, end] = *it;
  if (first == seq && end == seq + 1) {
    gaps_.erase(it);
  } else if (first == seq) {
    it->first = seq + 1;
  } else if (end == seq + 1) {
    it->second = seq;
  } else {
    it->second = seq;
    gaps_.insert(it + 1, {seq + 1, end});
  }
  return Arrival::late;
}

std::uint64_t SeqTracker::owed() const {
  std::uint64_t n = 0;
  for (const auto& [first, end] : gaps_) n += end - first;
  return n;
}

void Counts::add(const Counts& o) {
  delivered += o.delivered;
  duplicated += o.duplicated;
  reordered += o.reordered;
  foreign += o.foreign;
  publisher_received += o.publisher_received;
  complete += o.complete;
  if (subscribers.size() < o.subscribers.size()) subscribers.resize(o.subscribers.size());
  for (std::size_t i = 0; i < o.subscribers.size(); ++i) subscribers[i] += o.subscribers[i];
  if (published.size() < o.published.size()) published.resize(o.published.size());
  for (std::size_t i = 0; i < o.published.size(); ++i) published[i] += o.published[i];
}

std::uint64_t Counts::expected() const {
  std::uint64_t n = 0;
  for (std::size_t k = 0; k < subscribers.size() && k < published.size(); ++k) n += subscribers[k] * published[k];
  return n;
}

nlohmann::json to_json(const Counts& c) {
  return {{"delivered", c.delivered},
          {"duplicated", c.duplicated},
          {"reordered", c.reordered},
          {"foreign", c.foreign},
          {"publisher_received", c.publisher_received},
          {"complete", c.complete},
          {"subscribers", c.subscribers},
          {"published", c.published}};
}

Counts counts_from_json(const nlohmann::json& j) {
  Counts c;
  c.delivered = j.value("delivered", std::uint64_t{0});
  c.duplicated = j.value("duplicated", std::uint64_t{0});
  c.reordered = j.value("reordered", std::uint64_t{0});
  c.foreign = j.value("foreign", std::uint64_t{0});
  c.publisher_received = j.value("publisher_received", std::uint64_t{0});
  c.complete = j.value("complete", std::uint64_t{0});
  if (j.contains("subscribers")) c.subscribers = j["subscribers"].get<std::vector<std::uint64_t>>();
  if (j.contains("published")) c.published = j["published"].get<std::vector<std::uint64_t>>();
  return c;
}

}  // namespace shoal::load::pubsub
