// What a worker process tells the parent, one JSON object per line on its
// own pipe, and the helpers both sides use to write and read it.
//
//   {"type":"connected"}                        every connect attempt finished
//   {"type":"tick","sec":N,...}                 the second (N-1, N] since t0
//   {"type":"held"}                             traffic over, echoes drained
//   {"type":"final",...}                        everything, just before exit
//
// The parent answers on a second pipe with lines "go T_GO T_MEASURE T_END",
// "stop" and "close".
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common.hpp"
#include "engine.hpp"
#include "histogram.hpp"

namespace shoal::load {

nlohmann::json to_json(const Counters& c);
Counters counters_from_json(const nlohmann::json& j);
nlohmann::json to_json(const Histogram::Sparse& s);
Histogram::Sparse sparse_from_json(const nlohmann::json& j);

// Writes the whole buffer (blocking); false if the pipe is gone.
bool write_all(int fd, const std::string& data);

// Splits what arrives on a pipe into lines.
class LineReader {
 public:
  // Reads what is available; false on EOF or error.
  bool read_from(int fd);
  bool next_line(std::string& line);

 private:
  std::string buf_;
};

}  // namespace shoal::load
