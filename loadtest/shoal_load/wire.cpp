#include "wire.hpp"

#include <unistd.h>

#include <cerrno>

namespace shoal::load {

nlohmann::json to_json(const Counters& c) {
  nlohmann::json errors = nlohmann::json::object();
  for (std::size_t i = 0; i < error_kind_count; ++i) errors[error_kind_names[i]] = c.errors[i];
  return {{"connects", c.connects}, {"msgs_sent", c.msgs_sent}, {"msgs_recv", c.msgs_recv},
          {"bytes_sent", c.bytes_sent}, {"bytes_recv", c.bytes_recv}, {"pings", c.pings},
          {"errors", errors}};
}

Counters counters_from_json(const nlohmann::json& j) {
  Counters c;
  c.connects = j.value("connects", std::uint64_t{0});
  c.msgs_sent = j.value("msgs_sent", std::uint64_t{0});
  c.msgs_recv = j.value("msgs_recv", std::uint64_t{0});
  c.bytes_sent = j.value("bytes_sent", std::uint64_t{0});
  c.bytes_recv = j.value("bytes_recv", std::uint64_t{0});
  c.pings = j.value("pings", std::uint64_t{0});
  if (j.contains("errors")) {
    for (std::size_t i = 0; i < error_kind_count; ++i) {
      c.errors[i] = j["errors"].value(error_kind_names[i], std::uint64_t{0});
    }
  }
  return c;
}

nlohmann::json to_json(const Histogram::Sparse& s) {
  nlohmann::json b = nlohmann::json::array();
  for (const auto& [i, n] : s.buckets) b.push_back({i, n});
  return {{"b", b}, {"min", s.min}, {"max", s.max}, {"sum", s.sum}};
}

Histogram::Sparse sparse_from_json(const nlohmann::json& j) {
  Histogram::Sparse s;
  for (const auto& p : j.at("b")) s.buckets.emplace_back(p.at(0).get<std::uint32_t>(), p.at(1).get<std::uint64_t>());
  s.min = j.value("min", std::uint64_t{0});
  s.max = j.value("max", std::uint64_t{0});
  s.sum = j.value("sum", std::uint64_t{0});
  return s;
}

bool write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

bool LineReader::read_from(int fd) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      buf_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
}

bool LineReader::next_line(std::string& line) {
  const auto nl = buf_.find('\n');
  if (nl == std::string::npos) return false;
  line.assign(buf_, 0, nl);
  buf_.erase(0, nl + 1);
  return true;
}

}  // namespace shoal::load
