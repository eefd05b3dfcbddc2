#include "runtime/close_reason.hpp"

#include <boost/asio/error.hpp>
// Only the error categories: no ssl::stream, no OpenSSL state.
#include <boost/asio/ssl/error.hpp>

namespace shoal {

namespace asio = boost::asio;

const char* to_string(CloseReason r) {
  switch (r) {
    case CloseReason::peer_closed: return "peer_closed";
    case CloseReason::reset: return "reset";
    case CloseReason::idle_timeout: return "idle_timeout";
    case CloseReason::drain: return "drain";
    case CloseReason::error: return "error";
    case CloseReason::protocol_error: return "protocol_error";
    case CloseReason::write_timeout: return "write_timeout";
    case CloseReason::ping_timeout: return "ping_timeout";
    case CloseReason::close_after: return "close_after";
    case CloseReason::slow_consumer: return "slow_consumer";
    case CloseReason::count_: break;
  }
  return "unknown";
}

CloseReason classify(const boost::system::error_code& ec) noexcept {
  if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
      ec == asio::error::connection_aborted)
    return CloseReason::reset;
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
    return CloseReason::peer_closed;
  if (ec.category() == asio::error::get_ssl_category()) return CloseReason::protocol_error;
  return CloseReason::error;
}

bool is_expected_ending(const boost::system::error_code& ec) noexcept {
  if (ec == asio::error::operation_aborted) return true;
  const CloseReason r = classify(ec);
  return r == CloseReason::reset || r == CloseReason::peer_closed;
}

}  // namespace shoal
