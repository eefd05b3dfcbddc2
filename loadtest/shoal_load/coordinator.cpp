#include "coordinator.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "wire.hpp"
#include "worker.hpp"

namespace shoal::load {

namespace {

volatile sig_atomic_t g_signals = 0;
void on_signal(int) { g_signals = g_signals + 1; }

struct ServerSample {
  std::uint64_t rss = 0;  // bytes
  // RssAnon: the private memory of the server. VmRSS also counts the pages
  // of code and libraries the first connections fault in (about 2.6 MiB for
  // shoald, once), which would read as per-connection memory.
  std::uint64_t anon = 0;
  HostKernelSample kernel;
  double cpu_s = 0;
  std::vector<std::uint64_t> rss_each;  // bytes, per process in the order given
};

ServerSample sample_server(const std::vector<pid_t>& pids) {
  ServerSample s;
  static const long ticks = sysconf(_SC_CLK_TCK);
  for (pid_t pid : pids) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    std::uint64_t rss = 0;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) rss = std::stoull(line.substr(6)) * 1024;
      if (line.rfind("RssAnon:", 0) == 0) {
        s.anon += std::stoull(line.substr(8)) * 1024;
        break;  // after VmRSS in the file
      }
    }
    s.rss += rss;
    s.rss_each.push_back(rss);
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto paren = content.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(content.substr(paren + 2));
    std::string field;
    long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stoll(field);
      if (i == 15) stime = std::stoll(field);
    }
    s.cpu_s += static_cast<double>(utime + stime) / static_cast<double>(ticks);
  }
  s.kernel = sample_host_kernel();
  return s;
}

struct WorkerProc {
  pid_t pid = -1;
  int result_fd = -1;
  int control_fd = -1;
  LineReader reader;
  bool connected = false;
  bool held = false;
  bool final_seen = false;
  bool eof = false;
  std::int64_t last_sec = 0;
};

}  // namespace

Results run_load(const Options& o) {
  Results r;
  r.options = &o;
  r.server = !o.server_pids.empty();
  const std::int64_t t0 = now_ns();
  const auto hard_deadline = t0 + static_cast<std::int64_t>(o.derived_max_time_s() * 1e9);

  if (r.server) {
    const ServerSample before = sample_server(o.server_pids);
    r.server_rss_before = before.rss;
    r.server_rss_before_each = before.rss_each;
    r.server_anon_before = before.anon;
    r.kernel_before = before.kernel;
  }

  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<WorkerProc> workers(o.workers);
  std::vector<int> parent_fds;
  std::cout.flush();
  std::cerr.flush();
  for (unsigned w = 0; w < o.workers; ++w) {
    int res[2], ctl[2];
    if (pipe2(res, O_CLOEXEC) != 0 || pipe2(ctl, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    }
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      for (int fd : parent_fds) close(fd);
      close(res[0]);
      close(ctl[1]);
      const int rc = worker_main(o, w, res[1], ctl[0], t0);
      _exit(rc);
    }
    close(res[1]);
    close(ctl[0]);
    fcntl(res[0], F_SETFL, O_NONBLOCK);
    workers[w].pid = pid;
    workers[w].result_fd = res[0];
    workers[w].control_fd = ctl[1];
    parent_fds.push_back(res[0]);
    parent_fds.push_back(ctl[1]);
  }

  auto tell_all = [&](const std::string& line) {
    for (auto& w : workers) {
      if (!w.eof) write_all(w.control_fd, line + "\n");
    }
  };

  const bool tty = isatty(STDERR_FILENO) != 0;
  std::int64_t t_go = 0, t_measure = 0, t_end = 0, t_held = 0, t_close = 0, hold_until = 0;
  bool go_sent = false, close_sent = false, cpu_start_taken = false, cpu_end_taken = false;
  double cpu_start = 0;
  std::map<std::int64_t, SecondPoint> series;
  std::int64_t printed_sec = 0;
  Histogram so_far;
  int handled_signals = 0;
  std::vector<nlohmann::json> finals;

  auto phase_at = [&](std::int64_t t) -> std::string {
    if (!go_sent || t <= t_go) return "connect";
    if (t <= t_measure) return "warmup";
    if (t <= t_end) return "measure";
    if (!t_held || t <= t_held) return "drain";
    if (!t_close || t <= t_close) return "hold";
    return "close";
  };
  auto live = [&] {
    return static_cast<std::uint64_t>(std::count_if(workers.begin(), workers.end(), [](auto& w) { return !w.eof; }));
  };

  auto print_progress = [&](const SecondPoint& p) {
    if (o.quiet) return;
    const double rate = static_cast<double>(p.delta.msgs_recv);
    const double mb = static_cast<double>(p.delta.bytes_recv) / 1e6;
    char line[256];
    const std::string p99 = so_far.count() ? fmt_duration_ns(static_cast<double>(so_far.percentile(99))) : "-";
    std::snprintf(line, sizeof line, "[%4llds] %-7s conns %llu/%llu  msgs/s %s  MB/s %.1f  p99 %s  errors %llu",
                  static_cast<long long>(p.sec), p.phase.c_str(), static_cast<unsigned long long>(p.open),
                  static_cast<unsigned long long>(o.connections), fmt_rate(rate).c_str(), mb, p99.c_str(),
                  static_cast<unsigned long long>(r.total.error_total()));
    if (tty) {
      std::fprintf(stderr, "\r%-100s", line);
    } else {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  };

  auto handle = [&](WorkerProc& w, const std::string& line) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      return;
    }
    const std::string type = j.value("type", "");
    if (type == "connected") {
      w.connected = true;
    } else if (type == "held") {
      w.held = true;
    } else if (type == "tick") {
      const std::int64_t sec = j.value("sec", std::int64_t{0});
      w.last_sec = sec;
      SecondPoint& p = series[sec];
      p.sec = sec;
      p.open += j.value("open", std::uint64_t{0});
      p.reported++;
      const Counters d = counters_from_json(j["delta"]);
      p.delta.add(d);
      r.total.add(d);  // running totals for the progress line
      p.hist.merge(sparse_from_json(j["hist"]));
    } else if (type == "final") {
      w.final_seen = true;
      finals.push_back(std::move(j));
    }
  };

  for (;;) {
    // Finished seconds: print and stamp them in order.
    for (auto it = series.upper_bound(printed_sec); it != series.end(); ++it) {
      SecondPoint& p = it->second;
      const bool complete = p.reported >= live() || now_ns() > t0 + (p.sec + 2) * ns_per_s;
      if (!complete) break;
      p.phase = phase_at(t0 + p.sec * ns_per_s);
      if (r.server) {
        const ServerSample now_sample = sample_server(o.server_pids);
        p.server_rss = now_sample.rss;
        p.server_anon = now_sample.anon;
        p.kernel = now_sample.kernel;
      }
      if (p.phase == "warmup" || p.phase == "measure" || p.phase == "drain") so_far.merge(p.hist);
      print_progress(p);
      printed_sec = p.sec;
    }

    const std::int64_t now = now_ns();
    if (std::all_of(workers.begin(), workers.end(), [](auto& w) { return w.eof; })) break;

    if (now >= hard_deadline) {
      r.hard_limit_hit = true;
      for (auto& w : workers) {
        if (!w.eof) kill(w.pid, SIGKILL);
      }
      break;
    }
    if (g_signals > handled_signals) {
      handled_signals = g_signals;
      r.interrupted = true;
      if (handled_signals == 1) {
        tell_all("stop");
        if (go_sent && now < t_end) t_end = std::max(t_measure, now);  // the window ends here
        if (hold_until) hold_until = now;
      } else if (handled_signals == 2) {
        tell_all("close");
        close_sent = true;
      } else {
        for (auto& w : workers) {
          if (!w.eof) kill(w.pid, SIGKILL);
        }
      }
    }
    if (!go_sent && std::all_of(workers.begin(), workers.end(), [](auto& w) { return w.connected || w.eof; })) {
      go_sent = true;
      r.connect_phase_s = static_cast<double>(now - t0) / 1e9;
      t_go = now + 50'000'000;
      // Pubsub: a subscription made at one instance reaches the others
      // (through Redis) a little later; messages published before would
      // be missing there for no fault of the server's.
      if (o.mode == Mode::pubsub) t_go += static_cast<std::int64_t>(o.pubsub.settle_s * 1e9);
      t_measure = t_go + static_cast<std::int64_t>(o.warmup_s * 1e9);
      t_end = t_measure + static_cast<std::int64_t>(o.duration_s * 1e9);
      if (r.interrupted) t_end = t_measure = t_go;
      tell_all("go " + std::to_string(t_go) + " " + std::to_string(t_measure) + " " + std::to_string(t_end));
    }
    if (go_sent && r.server && !cpu_start_taken && now >= t_measure) {
      cpu_start_taken = true;
      cpu_start = sample_server(o.server_pids).cpu_s;
    }
    if (go_sent && r.server && cpu_start_taken && !cpu_end_taken && now >= t_end) {
      cpu_end_taken = true;
      r.server_cpu_window_s = sample_server(o.server_pids).cpu_s - cpu_start;
    }
    if (go_sent && !t_held && std::all_of(workers.begin(), workers.end(), [](auto& w) { return w.held || w.eof; })) {
      t_held = now;
      hold_until = r.interrupted ? now : now + static_cast<std::int64_t>(o.hold_s * 1e9);
    }
    if (t_held && !close_sent && now >= hold_until) {
      if (r.server) {
        const ServerSample held = sample_server(o.server_pids);
        r.server_rss_held = held.rss;
        r.server_rss_held_each = held.rss_each;
        r.server_anon_held = held.anon;
        r.kernel_held = held.kernel;
      }
      t_close = now;
      tell_all("close");
      close_sent = true;
    }

    // Wait for reports, at most until the next thing to do.
    std::int64_t wake = std::min(hard_deadline, now + 250'000'000);
    if (go_sent && !cpu_start_taken && r.server) wake = std::min(wake, t_measure);
    if (go_sent && !cpu_end_taken && r.server) wake = std::min(wake, t_end);
    if (t_held && !close_sent) wake = std::min(wake, hold_until);
    std::vector<pollfd> fds;
    std::vector<WorkerProc*> who;
    for (auto& w : workers) {
      if (w.eof) continue;
      fds.push_back({w.result_fd, POLLIN, 0});
      who.push_back(&w);
    }
    const int timeout_ms = static_cast<int>(std::clamp<std::int64_t>((wake - now) / 1'000'000 + 1, 0, 250));
    const int pr = poll(fds.data(), fds.size(), timeout_ms);
    if (pr <= 0) continue;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      WorkerProc& w = *who[i];
      const bool alive = w.reader.read_from(w.result_fd);
      std::string line;
      while (w.reader.next_line(line)) handle(w, line);
      if (!alive) w.eof = true;
    }
  }
  if (!o.quiet && tty) std::fprintf(stderr, "\n");

  for (auto& w : workers) {
    int status = 0;
    waitpid(w.pid, &status, 0);
    if (!w.final_seen || !WIFEXITED(status) || WEXITSTATUS(status) != 0) r.workers_failed++;
    close(w.result_fd);
    close(w.control_fd);
  }

  if (!finals.empty()) {
    Counters total;
    for (auto& j : finals) {
      total.add(counters_from_json(j["total"]));
      r.window.add(counters_from_json(j["window"]));
      r.latency.merge(sparse_from_json(j["latency"]));
      r.connect.merge(sparse_from_json(j["connect"]));
      r.handshake.merge(sparse_from_json(j["handshake"]));
      r.tls_handshake.merge(sparse_from_json(j["tls_handshake"]));
      r.established += j.value("established", std::uint64_t{0});
      r.lost += j.value("lost", std::uint64_t{0});
      r.unanswered += j.value("unanswered", std::uint64_t{0});
      r.skipped += j.value("skipped", std::uint64_t{0});
      r.peak_open += j.value("peak_open", std::uint64_t{0});
      if (j.contains("controls")) r.controls.add(control_counts_from_json(j["controls"]));
      if (j.contains("pubsub")) r.pubsub.add(pubsub::counts_from_json(j["pubsub"]));
      r.client_cpu_s += j.value("cpu_s", 0.0);
      r.client_max_rss_kb = std::max<std::uint64_t>(r.client_max_rss_kb, j.value("max_rss_kb", std::uint64_t{0}));
      for (auto& s : j["samples"]) {
        if (r.samples.size() < 10) r.samples.push_back(s.get<std::string>());
      }
    }
    r.total = total;
  } else {
    // No worker got to its final report (killed at the hard limit): keep
    // what the per-second reports said.
    r.established = r.total.connects;
    for (const auto& [sec, p] : series) r.peak_open = std::max(r.peak_open, p.open);
  }
  r.elapsed_s = static_cast<double>(now_ns() - t0) / 1e9;
  r.measured_s = go_sent ? static_cast<double>(t_end - t_measure) / 1e9 : 0;
  for (auto& [sec, p] : series) {
    if (p.phase.empty()) p.phase = phase_at(t0 + sec * ns_per_s);
    r.series.push_back(std::move(p));
  }
  r.decide_exit_code();
  return r;
}

}  // namespace shoal::load
