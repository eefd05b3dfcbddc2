#include "worker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>
#include <thread>

#include "engine.hpp"
#include "wire.hpp"

namespace shoal::load {

namespace {

double cpu_seconds_self() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int worker_main(const Options& o, unsigned index, int result_fd, int control_fd, std::int64_t t0) {
  // Never outlive the parent, and never outlive the run's hard limit.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm(static_cast<unsigned>(std::ceil(o.derived_max_time_s())) + 15);
  signal(SIGINT, SIG_IGN);  // the parent decides what a Ctrl-C means
  signal(SIGPIPE, SIG_IGN);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  int notify[2];
  if (pipe2(notify, O_CLOEXEC | O_NONBLOCK) != 0) return 70;

  const Pattern pattern(o.text);
  const unsigned threads = o.threads;
  std::vector<std::vector<std::uint32_t>> ids(threads);
  std::vector<std::uint64_t> active_in(threads, 0);
  const std::uint64_t active = o.active_count();
  {
    std::uint64_t k = 0;
    for (std::uint64_t id = index; id < o.connections; id += o.workers, ++k) {
      ids[k % threads].push_back(static_cast<std::uint32_t>(id));
      if (o.sends(id)) active_in[k % threads]++;
    }
  }
  std::vector<std::unique_ptr<Engine>> engines;
  for (unsigned t = 0; t < threads; ++t) {
    Engine::Setup s;
    s.options = &o;
    s.pattern = &pattern;
    if (o.mode == Mode::pubsub) {
      s.rate = o.rate * static_cast<double>(active_in[t]);  // --rate is each publisher's
    } else {
      s.rate = (o.rate > 0 && active > 0) ? o.rate * static_cast<double>(active_in[t]) / static_cast<double>(active) : 0;
    }
    s.connect_rate = o.connect_rate > 0 ? o.connect_rate * static_cast<double>(ids[t].size()) / static_cast<double>(o.connections) : 0;
    s.ids = std::move(ids[t]);
    s.notify_fd = notify[1];
    engines.push_back(std::make_unique<Engine>(std::move(s)));
  }
  std::vector<std::thread> runners;
  for (auto& e : engines) runners.emplace_back([&e] { e->run(); });
  for (auto& e : engines) e->start_connecting();

  auto send = [&](const nlohmann::json& j) { return write_all(result_fd, j.dump() + "\n"); };

  enum class Phase { connecting, waiting_go, traffic, held, closing };
  Phase phase = Phase::connecting;
  std::int64_t next_tick = t0 + ns_per_s;
  std::int64_t sec = 1;
  std::int64_t drain_deadline = INT64_MAX;
  const auto drain_ns = static_cast<std::int64_t>(o.timeout_s * 1e9);
  Counters last_total;
  LineReader control;
  bool parent_gone = false;

  // A snapshot that is not back in time (a busy or starved engine thread)
  // stays pending and is taken at a later tick; until then the engine's last
  // totals stand in, so that no count is lost or counted twice.
  std::vector<std::optional<std::future<Snapshot>>> pending(engines.size());
  std::vector<Snapshot> last(engines.size());
  auto do_tick = [&] {
    Histogram hist;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    for (std::size_t i = 0; i < engines.size(); ++i) {
      if (!pending[i]) pending[i] = engines[i]->snapshot();
    }
    for (std::size_t i = 0; i < engines.size(); ++i) {
      if (pending[i]->wait_until(deadline) != std::future_status::ready) continue;
      last[i] = pending[i]->get();
      pending[i].reset();
      hist.merge(last[i].interval);
      last[i].interval = {};
    }
    Snapshot sum;
    for (const auto& s : last) {
      sum.total.add(s.total);
      sum.open += s.open;
      sum.inflight += s.inflight;
    }
    Counters delta = sum.total;
    delta.connects -= last_total.connects;
    delta.msgs_sent -= last_total.msgs_sent;
    delta.msgs_recv -= last_total.msgs_recv;
    delta.bytes_sent -= last_total.bytes_sent;
    delta.bytes_recv -= last_total.bytes_recv;
    delta.pings -= last_total.pings;
    for (std::size_t i = 0; i < error_kind_count; ++i) delta.errors[i] -= last_total.errors[i];
    last_total = sum.total;
    return send({{"type", "tick"}, {"sec", sec}, {"open", sum.open}, {"inflight", sum.inflight},
                 {"delta", to_json(delta)}, {"hist", to_json(hist.to_sparse())}});
  };

  while (phase != Phase::closing) {
    const std::int64_t now = now_ns();
    const std::int64_t wake = std::min(next_tick, drain_deadline);
    const int timeout_ms = static_cast<int>(std::clamp<std::int64_t>((wake - now) / 1'000'000 + 1, 0, 1000));
    pollfd fds[2] = {{control_fd, POLLIN, 0}, {notify[0], POLLIN, 0}};
    const int pr = poll(fds, 2, timeout_ms);
    if (pr > 0 && (fds[1].revents & POLLIN)) {
      char junk[256];
      while (::read(notify[0], junk, sizeof junk) > 0) {
      }
    }
    if (pr > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (!control.read_from(control_fd)) parent_gone = true;
      std::string line;
      while (control.next_line(line)) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        if (cmd == "go" && phase == Phase::waiting_go) {
          std::int64_t t_go = 0, t_measure = 0, t_end = 0;
          in >> t_go >> t_measure >> t_end;
          for (auto& e : engines) e->go(t_go, t_measure, t_end);
          drain_deadline = t_end + drain_ns;
          phase = Phase::traffic;
        } else if (cmd == "stop") {
          if (phase == Phase::connecting || phase == Phase::waiting_go) {
            phase = Phase::closing;
          } else if (phase == Phase::traffic) {
            for (auto& e : engines) e->stop_traffic();
            drain_deadline = std::min(drain_deadline, now_ns() + drain_ns);
          }
        } else if (cmd == "close") {
          phase = Phase::closing;
        }
      }
      if (parent_gone) phase = Phase::closing;
    }
    if (phase == Phase::connecting &&
        std::all_of(engines.begin(), engines.end(), [](auto& e) { return e->connect_done(); })) {
      phase = Phase::waiting_go;
      if (!send({{"type", "connected"}})) phase = Phase::closing;
    }
    if (phase == Phase::traffic &&
        (now_ns() >= drain_deadline || std::all_of(engines.begin(), engines.end(), [](auto& e) { return e->drained(); }))) {
      phase = Phase::held;
      drain_deadline = INT64_MAX;
      if (!send({{"type", "held"}})) phase = Phase::closing;
    }
    if (now_ns() >= next_tick) {
      if (!do_tick()) phase = Phase::closing;
      ++sec;
      next_tick += ns_per_s;
      // After a stall, skip the seconds already gone rather than burst.
      while (next_tick < now_ns() - ns_per_s) {
        next_tick += ns_per_s;
        ++sec;
      }
    }
  }

  for (auto& e : engines) e->close_all();
  for (auto& r : runners) r.join();

  FinalStats all;
  for (auto& e : engines) {
    FinalStats& f = e->final_stats();
    all.total.add(f.total);
    all.window.add(f.window);
    all.latency.merge(f.latency);
    all.connect.merge(f.connect);
    all.handshake.merge(f.handshake);
    all.tls_handshake.merge(f.tls_handshake);
    all.established += f.established;
    all.lost += f.lost;
    all.unanswered += f.unanswered;
    all.skipped += f.skipped;
    all.peak_open += f.peak_open;
    all.controls.add(f.controls);
    all.pubsub.add(f.pubsub);
    for (auto& s : f.samples) {
      if (all.samples.size() < 8) all.samples.push_back(s);
    }
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const nlohmann::json fin = {
      {"type", "final"},
      {"total", to_json(all.total)},
      {"window", to_json(all.window)},
      {"latency", to_json(all.latency.to_sparse())},
      {"connect", to_json(all.connect.to_sparse())},
      {"handshake", to_json(all.handshake.to_sparse())},
      {"tls_handshake", to_json(all.tls_handshake.to_sparse())},
      {"established", all.established},
      {"lost", all.lost},
      {"unanswered", all.unanswered},
      {"skipped", all.skipped},
      {"peak_open", all.peak_open},
      {"controls", to_json(all.controls)},
      {"pubsub", pubsub::to_json(all.pubsub)},
      {"samples", all.samples},
      {"cpu_s", cpu_seconds_self()},
      {"max_rss_kb", ru.ru_maxrss},
  };
  send(fin);
  close(result_fd);
  return 0;
}

}  // namespace shoal::load
