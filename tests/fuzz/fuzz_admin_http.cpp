// Fuzz target: the admin port's HTTP request path. The input is everything
// a client sends (one or more pipelined requests, or garbage). The server
// answers each request the way AdminServer::handle() routes it, in order,
// with well-formed responses (a body of Content-Length bytes, none for
// HEAD), answers a malformed or oversized request with 400/413/431 and then
// closes, and closes after our EOF: never a crash or a hang.
//
// The requests are split here with Beast's parser under the server's limits
// (the server reads with the same parser), which tells which responses
// answer HEAD and what each request must get.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "admin/admin_server.hpp"
#include "fuzz_support.hpp"

using namespace shoal::fuzz;
namespace http = boost::beast::http;

namespace {

struct Request {
  bool head = false;
  bool keep_alive = false;
  int expected_status = 0;  // 0: any of 200/503 (health and readiness change)
};

struct Requests {
  std::vector<Request> good;  // complete and well-formed, in order
  bool all_good = false;      // the input is exactly these requests
};

Requests split_requests(std::string_view in, const shoal::AdminServer& admin) {
  Requests out;
  while (!in.empty()) {
    // The header alone first, to measure it against the documented limit
    // (Beast's own header_limit is no exact bound, see admin_server.cpp).
    http::request_parser<http::string_body> parser;
    parser.header_limit(std::numeric_limits<std::uint32_t>::max());
    parser.body_limit(shoal::kMaxRequestBytes);
    boost::system::error_code ec;
    std::size_t used = parser.put(boost::asio::buffer(in.data(), in.size()), ec);
    if (ec || !parser.is_header_done() || used > shoal::kMaxRequestBytes) return out;
    parser.eager(true);
    while (!parser.is_done()) {
      const std::size_t n = parser.put(boost::asio::buffer(in.data() + used, in.size() - used), ec);
      used += n;
      if (ec || n == 0) break;
    }
    if (!parser.is_done()) return out;  // malformed, oversized or incomplete
    const auto& req = parser.get();
    Request r;
    r.head = req.method() == http::verb::head;
    r.keep_alive = req.keep_alive();
    const std::string_view method(req.method_string().data(), req.method_string().size());
    const std::string_view target(req.target().data(), req.target().size());
    const int status = admin.handle(method, target).status;
    r.expected_status = status == 200 || status == 503 ? 0 : status;
    out.good.push_back(r);
    in.remove_prefix(used);
    if (!r.keep_alive) return out;  // the server closes after answering it
  }
  out.all_good = true;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzServer& server = FuzzServer::get();
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const Requests requests = split_requests(in, server.admin());
  const Reply r = converse(server.admin_port(), in);

  std::string_view rest = r.bytes;
  std::size_t answered = 0;
  while (!rest.empty()) {
    const auto head = parse_head(rest);
    if (!head) {
      if (!r.reset) fail("a truncated response head: " + excerpt(rest));
      break;
    }
    const auto length = head->field("content-length");
    if (!length || length->empty() || length->find_first_not_of("0123456789") != std::string::npos)
      fail("a response without a valid Content-Length: " + excerpt(rest));
    const bool answers_head = answered < requests.good.size() && requests.good[answered].head;
    const std::size_t total = head->size + (answers_head ? 0 : std::stoul(*length));
    if (rest.size() < total) {
      if (!r.reset) fail("a truncated response body: " + excerpt(rest));
      break;
    }
    if (answered < requests.good.size()) {
      const int want = requests.good[answered].expected_status;
      if (want != 0 ? head->status != want : head->status != 200 && head->status != 503)
        fail("request " + std::to_string(answered) + " got status " + std::to_string(head->status) +
             ", not " + (want != 0 ? std::to_string(want) : "200 or 503"));
    } else if (head->status != 400 && head->status != 413 && head->status != 431) {
      fail("a bad request got status " + std::to_string(head->status));
    } else if (requests.all_good) {
      fail("a response to no request: " + excerpt(rest));
    }
    ++answered;
    rest.remove_prefix(total);
  }
  if (answered > requests.good.size() + 1)
    fail("more responses (" + std::to_string(answered) + ") than requests (" +
         std::to_string(requests.good.size()) + ")");
  if (!r.reset && answered < requests.good.size())
    fail("the server closed after " + std::to_string(answered) + " of " +
         std::to_string(requests.good.size()) + " requests");
  server.check_no_handler_exception();
  return 0;
}
