#include "admin/admin_server.hpp"

#include <pthread.h>

#include <cerrno>
#include <optional>
#include <system_error>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "admin/metrics.hpp"
#include "runtime/server.hpp"
#include "shoal/version.hpp"

namespace shoal {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr const char* kAllow = "GET, HEAD";

// The status page: one JSON object an operator can read with curl | jq.
nlohmann::ordered_json build_status(const Server& server) {
  using json = nlohmann::ordered_json;
  const std::int64_t now = Shard::now_ms();
  const double uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - server.started_at()).count();

  json shards = json::array();
  bool all_healthy = true;
  for (const auto& shard : server.shards()) {
    const LoopStats& loop = shard->loop_stats();
    const bool healthy = shard->loop_answered(now);
    all_healthy = all_healthy && healthy;
    const std::uint64_t ticks = loop.ticks.load();
    shards.push_back({
        {"id", shard->id()},
        {"connections", shard->active_connections()},
        {"served", shard->served_connections()},
        {"loop_lag_ms_last", static_cast<double>(loop.lag_last_ns.load()) / 1e6},
        // A moving average with weight 1/8 per 100 ms tick: about the last
        // second, which is what an operator looking at the page wants.
        {"loop_lag_ms_avg", static_cast<double>(loop.lag_avg_ns.load()) / 1e6},
        {"loop_lag_ticks", ticks},
        {"ms_since_loop_answered", shard->ms_since_last_tick(now)},
        {"handler_exceptions", loop.exceptions.load()},
        {"healthy", healthy},
    });
  }

  // The limits in force: the last accepted reload's, not the start-up ones.
  const RunningState running = server.running();
  const PreflightResult& preflight = running.preflight;
  json listeners = json::array();
  const auto& configs = running.config.listeners;
  const auto& bound = server.bound();
  for (std::size_t li = 0; li < bound.size() && li < configs.size(); ++li) {
    std::uint64_t active = 0, accepted = 0, ktls = 0;
    for (const auto& shard : server.shards()) {
      active += shard->slot(li).stats.active.load();
      accepted += shard->slot(li).stats.accepted.load();
      ktls += shard->slot(li).stats.ktls_connections.load();
    }
    json entry = {
        {"name", bound[li].name},
        {"protocol", to_string(bound[li].protocol)},
        {"address", bound[li].endpoint.address().to_string()},
        {"port", bound[li].endpoint.port()},
        {"active", active},
        {"accepted", accepted},
        {"max_connections", configs[li].max_connections},
        {"max_connections_per_ip", configs[li].max_connections_per_ip},
        {"max_new_connections_per_second", configs[li].max_new_connections_per_second},
    };
    // TLS listeners: how many open connections the kernel encrypts (kTLS).
    if (configs[li].tls) entry["ktls_connections"] = ktls;
    listeners.push_back(std::move(entry));
  }

  const std::optional<ProcessStats> process = read_process_stats();
  return {
      {"instance", server.instance()},
      {"version", kVersion},
      {"commit", kGitCommit},
      {"uptime_seconds", uptime},
      {"ready", server.ready()},
      {"draining", server.draining()},
      {"healthy", all_healthy},
      {"connections", server.active_connections()},
      {"shards", std::move(shards)},
      {"listeners", std::move(listeners)},
      {"limits",
       {
           {"max_connections", preflight.effective_max_connections},
           {"configured_max_connections", preflight.configured_max_connections},
           {"capacity", preflight.connection_capacity},
           {"fd_limit", preflight.fd_limit},
           {"open_fds", process ? static_cast<std::uint64_t>(process->open_fds) : 0},
       }},
  };
}

}  // namespace

struct AdminServer::Impl {
  Impl(const AdminConfig& c, const Server& s) : config(c), server(s), metrics(s) {}

  void do_accept();
  void on_accept(const beast::error_code& ec, tcp::socket socket);
  Reply handle(std::string_view method, std::string_view target) const;

  AdminConfig config;
  const Server& server;
  Metrics metrics;
  int sessions = 0;  // admin thread only
  std::chrono::milliseconds retry_delay{0};
  bool stopped = false;
  // Declared after what sessions use: destroying the context destroys the
  // pending handlers and with them the sessions.
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer retry_timer{ioc};
  std::thread thread;
};

namespace {

// One admin connection: read a request, answer it, repeat while keep-alive.
// Owned by its pending operation, like every session in shoal.
class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(tcp::socket socket, AdminServer::Impl& admin)
      : stream_(std::move(socket)), admin_(admin) {
    ++admin_.sessions;
  }
  ~AdminSession() { --admin_.sessions; }

  void run() { do_read(); }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(kMaxRequestBytes));
    parser_->body_limit(kMaxRequestBytes);
    // One deadline for the whole request; it also closes an idle
    // keep-alive connection.
    stream_.expires_after(kRequestTimeout);
    header_bytes_ = 0;
    read_header();
  }

  // The header is read part by part and its bytes counted here: Beast's
  // header_limit alone is no exact bound, as it may measure the request line
  // and the fields separately depending on how the bytes arrive, so a header
  // that came in pieces passed at up to twice kMaxRequestBytes (found by
  // fuzzing). The parser is not eager, so a part that completes the header
  // ends there; the body is then read with the parser's body_limit.
  void read_header() {
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                            self->on_header_part(ec, n);
                          });
  }

  void on_header_part(beast::error_code ec, std::size_t n) {
    header_bytes_ += n;
    // Not done yet: everything still buffered belongs to the header too.
    const std::size_t at_least = header_bytes_ + (parser_->is_header_done() ? 0 : buffer_.size());
    if (!ec && at_least > kMaxRequestBytes) ec = http::error::header_limit;
    if (ec || parser_->is_done()) {
      on_read(ec);
    } else if (!parser_->is_header_done()) {
      read_header();
    } else {
      http::async_read(stream_, buffer_, *parser_,
                       [self = shared_from_this()](beast::error_code e, std::size_t) { self->on_read(e); });
    }
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream) {
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      return;
    }
    if (ec) {
      // A malformed or oversized request gets an answer before the close;
      // timeouts and resets just close.
      if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
        send_error(http::status::request_header_fields_too_large);
      } else if (ec == http::error::body_limit) {
        send_error(http::status::payload_too_large);
      } else if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
        send_error(http::status::bad_request);
      }
      return;
    }
    const auto& req = parser_->get();
    const bool head = req.method() == http::verb::head;
    AdminServer::Reply reply = admin_.handle(req.method_string(), req.target());

    res_ = http::response<http::string_body>{};
    res_.version(req.version());
    res_.result(static_cast<unsigned>(reply.status));
    res_.keep_alive(req.keep_alive());
    fill(reply);
    if (head) {
      res_.content_length(reply.body.size());
    } else {
      res_.body() = std::move(reply.body);
      res_.prepare_payload();
    }
    do_write();
  }

  void fill(const AdminServer::Reply& reply) {
    res_.set(http::field::server, std::string("shoald/") + kVersion);
    res_.set(http::field::content_type, reply.content_type);
    res_.set(http::field::cache_control, "no-store");
    if (reply.status == 405) res_.set(http::field::allow, kAllow);
  }

  void send_error(http::status status) {
    res_ = http::response<http::string_body>{};
    res_.version(11);
    res_.result(status);
    res_.keep_alive(false);
    AdminServer::Reply reply;
    reply.status = static_cast<int>(status);
    reply.body = std::string(http::obsolete_reason(status)) + "\n";
    fill(reply);
    res_.body() = std::move(reply.body);
    res_.prepare_payload();
    do_write();
  }

  void do_write() {
    stream_.expires_after(kRequestTimeout);
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_write(ec);
    });
  }

  void on_write(beast::error_code ec) {
    if (ec) return;
    if (!res_.keep_alive()) {
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      return;
    }
    do_read();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{2 * kMaxRequestBytes};  // headers + body
  std::optional<http::request_parser<http::string_body>> parser_;
  std::size_t header_bytes_ = 0;  // of the request being read
  http::response<http::string_body> res_;
  AdminServer::Impl& admin_;
};

}  // namespace

void AdminServer::Impl::do_accept() {
  acceptor.async_accept([this](const beast::error_code& ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void AdminServer::Impl::on_accept(const beast::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
  if (ec) {
    const int v = ec.value();
    if (v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM) {
      // Out of descriptors: wait and retry instead of spinning.
      retry_delay = retry_delay.count() == 0 ? std::chrono::milliseconds(10)
                                             : std::min(retry_delay * 2, std::chrono::milliseconds(1000));
      retry_timer.expires_after(retry_delay);
      retry_timer.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec) do_accept();
      });
      return;
    }
    do_accept();
    return;
  }
  retry_delay = std::chrono::milliseconds(0);
  if (sessions >= kMaxAdminConnections) {
    beast::error_code ignored;
    socket.close(ignored);
  } else {
    std::make_shared<AdminSession>(std::move(socket), *this)->run();
  }
  do_accept();
}

AdminServer::Reply AdminServer::Impl::handle(std::string_view method, std::string_view target) const {
  Reply r;
  if (method != "GET" && method != "HEAD") {
    r.status = 405;
    r.body = "method not allowed: use GET or HEAD\n";
    return r;
  }
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/metrics") {
    r.content_type = Metrics::kContentType;
    r.body = metrics.scrape();
  } else if (path == "/healthz") {
    const std::int64_t now = Shard::now_ms();
    for (const auto& shard : server.shards()) {
      if (!shard->loop_answered(now)) {
        r.body += "shard " + std::to_string(shard->id()) + ": event loop has not answered for " +
                  std::to_string(shard->ms_since_last_tick(now)) + " ms\n";
      }
    }
    r.status = r.body.empty() ? 200 : 503;
    if (r.body.empty()) r.body = "ok\n";
  } else if (path == "/readyz") {
    if (server.draining()) {
      r.status = 503;
      r.body = "draining\n";
    } else if (!server.ready()) {
      r.status = 503;
      r.body = "starting\n";
    } else {
      r.body = "ready\n";
    }
  } else if (path == "/status") {
    r.content_type = "application/json";
    r.body = build_status(server).dump(2) + "\n";
  } else {
    r.status = 404;
    r.body = "not found; try /metrics, /healthz, /readyz or /status\n";
  }
  return r;
}

AdminServer::AdminServer(const AdminConfig& config, const Server& server)
    : impl_(std::make_unique<Impl>(config, server)) {}

AdminServer::~AdminServer() { stop(); }

void AdminServer::start() {
  Impl& m = *impl_;
  const std::string where = "admin port on " + m.config.address + ":" + std::to_string(m.config.port);
  beast::error_code ec;
  const auto address = asio::ip::make_address(m.config.address, ec);
  if (ec) throw std::system_error(ec, where + ": address");
  const tcp::endpoint endpoint(address, m.config.port);
  auto check = [&](const char* what) {
    if (ec) throw std::system_error(ec, where + ": " + what);
  };
  m.acceptor.open(endpoint.protocol(), ec);
  check("socket");
  m.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  check("SO_REUSEADDR");
  m.acceptor.bind(endpoint, ec);
  check("bind");
  m.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  check("listen");

  m.do_accept();
  m.thread = std::thread([&m] {
    pthread_setname_np(pthread_self(), "admin");
    for (;;) {
      try {
        m.ioc.run();
        break;
      } catch (const std::exception& e) {
        spdlog::error("admin: unhandled exception in a handler: {}", e.what());
      } catch (...) {
        spdlog::error("admin: unhandled non-standard exception in a handler");
      }
    }
  });
}

boost::asio::ip::tcp::endpoint AdminServer::local_endpoint() const {
  return impl_->acceptor.local_endpoint();
}

void AdminServer::stop() {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  m.ioc.stop();
  if (m.thread.joinable()) m.thread.join();
  beast::error_code ignored;
  m.acceptor.close(ignored);
}

AdminServer::Reply AdminServer::handle(std::string_view method, std::string_view target) const {
  return impl_->handle(method, target);
}

}  // namespace shoal
