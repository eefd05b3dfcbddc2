#include "results.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

#include <unistd.h>

#include "wire.hpp"

namespace shoal::load {

HostKernelSample sample_host_kernel() {
  HostKernelSample k;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("Slab:", 0) == 0) {
      k.slab_bytes = std::stoull(line.substr(5)) * 1024;
      break;
    }
  }
  std::ifstream sockstat("/proc/net/sockstat");
  while (std::getline(sockstat, line)) {
    if (line.rfind("TCP:", 0) != 0) continue;
    std::istringstream words(line.substr(4));
    std::string key;
    std::uint64_t value = 0;
    while (words >> key >> value) {
      if (key == "inuse") k.tcp_inuse = value;
      if (key == "mem") k.tcp_mem_pages = value;
    }
  }
  return k;
}

namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string thousands(std::uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string s;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return s;
}

double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

nlohmann::json percentiles_json(const Histogram& h) {
  return {{"count", h.count()},
          {"min_us", us(h.min())},
          {"mean_us", h.mean() / 1000.0},
          {"p50_us", us(h.percentile(50))},
          {"p90_us", us(h.percentile(90))},
          {"p99_us", us(h.percentile(99))},
          {"p99_9_us", us(h.percentile(99.9))},
          {"p99_99_us", us(h.percentile(99.99))},
          {"max_us", us(h.max())}};
}

std::string percentiles_line(const Histogram& h) {
  if (h.count() == 0) return "-";
  return "p50 " + fmt_duration_ns(static_cast<double>(h.percentile(50))) +
         "  p90 " + fmt_duration_ns(static_cast<double>(h.percentile(90))) +
         "  p99 " + fmt_duration_ns(static_cast<double>(h.percentile(99))) +
         "  p99.9 " + fmt_duration_ns(static_cast<double>(h.percentile(99.9))) +
         "  p99.99 " + fmt_duration_ns(static_cast<double>(h.percentile(99.99))) +
         "  max " + fmt_duration_ns(static_cast<double>(h.max())) + "  (n=" + thousands(h.count()) + ")";
}

std::string errors_line(const Counters& c) {
  std::string s;
  for (std::size_t i = 0; i < error_kind_count; ++i) {
    if (!c.errors[i]) continue;
    if (!s.empty()) s += ", ";
    s += std::string(error_kind_names[i]) + " " + thousands(c.errors[i]);
  }
  return s.empty() ? "none" : s;
}

std::string mode_line(const Options& o) {
  std::string s = o.rate > 0 ? "open loop, " + fmt_rate(o.rate) + " msgs/s in total"
                             : "closed loop, " + std::to_string(o.pipeline) + " in flight per connection";
  if (o.messages > 0) s += " (" + thousands(o.messages) + " per connection in all)";
  s += ", " + std::to_string(o.size) + "-byte " + (o.text ? "text" : "binary") + " messages, " +
       thousands(o.active_count()) + " active";
  return s;
}

// One clause per control the target URL asked for; empty when none.
std::string controls_line(const Controls& c, const ControlCounts& n) {
  std::string s;
  auto clause = [&](const std::string& t) { s += (s.empty() ? "" : "; ") + t; };
  if (c.size) {
    clause("size=" + std::to_string(*c.size) + ": " + thousands(n.resized) + " echoes resized as asked, " +
           thousands(n.not_resized) + " not");
  }
  if (c.delay_ns) {
    clause("delay=" + c.delay_text + ": " + thousands(n.delayed) + " at or after " + c.delay_text + ", " +
           thousands(n.early) + " early");
  }
  if (c.close_after) {
    std::string t = "close_after=" + std::to_string(*c.close_after) + ": " + thousands(n.closed_as_asked) +
                    " connections closed with " + std::to_string(c.close_code) + " after " +
                    std::to_string(*c.close_after) + " echoes, " + thousands(n.not_closed_as_asked) + " not";
    if (n.close_unfinished) {
      t += " (" + thousands(n.close_unfinished) + " still open at the end with fewer echoes)";
    }
    clause(t);
  }
  return s;
}

nlohmann::json controls_json(const Controls& c, const ControlCounts& n) {
  if (!c.any()) return nullptr;
  nlohmann::json j = nlohmann::json::object();
  if (c.size) j["size"] = {{"bytes", *c.size}, {"resized", n.resized}, {"not_resized", n.not_resized}};
  if (c.delay_ns) {
    j["delay"] = {{"given", c.delay_text},
                  {"delay_us", static_cast<double>(*c.delay_ns) / 1000.0},
                  {"at_or_after", n.delayed},
                  {"early", n.early}};
  }
  if (c.close_after) {
    j["close_after"] = {{"echoes", *c.close_after},
                        {"close_code", c.close_code},
                        {"closed_as_asked", n.closed_as_asked},
                        {"not", n.not_closed_as_asked},
                        {"unfinished", n.close_unfinished}};
  }
  return j;
}

nlohmann::json pubsub_json(const Results& r) {
  const Options& o = *r.options;
  const PubSubOptions& p = o.pubsub;
  nlohmann::json sub = nlohmann::json::array(), pub = nlohmann::json::array();
  for (const auto& t : p.subscribe) sub.push_back(t.url);
  for (const auto& t : p.publish) pub.push_back(t.url);
  std::uint64_t published = 0;
  for (auto n : r.pubsub.published) published += n;
  return {{"subscribers", p.subscribers},
          {"publishers", p.publishers},
          {"channels", p.channels},
          {"channel", p.channel},
          {"rate_per_publisher", o.rate},
          {"messages_per_publisher", o.messages},
          {"settle_s", p.settle_s},
          {"subscribe_urls", sub},
          {"publish_urls", pub},
          {"published", published},
          {"expected", r.expected()},
          {"delivered", r.pubsub.delivered},
          {"missing", r.missing()},
          {"extra", r.extra()},
          {"duplicated", r.pubsub.duplicated},
          {"reordered", r.pubsub.reordered},
          {"foreign", r.pubsub.foreign},
          {"subscribers_complete", r.pubsub.complete},
          {"publisher_received", r.pubsub.publisher_received},
          {"deliveries_per_s", r.msgs_per_s()},
          {"published_per_s", r.sent_per_s()}};
}

std::string pubsub_traffic_line(const Options& o) {
  const PubSubOptions& p = o.pubsub;
  std::string s = "pubsub, " + thousands(p.subscribers) + " subscriber(s) and " + thousands(p.publishers) +
                  " publisher(s) on " + thousands(p.channels) + " channel(s) (" +
                  (p.channels == 1 ? p.channel : p.channel_name(0) + " .. " + p.channel_name(p.channels - 1)) + "), ";
  s += o.rate > 0 ? fmt_rate(o.rate) + " msgs/s per publisher" : "publishers as fast as their sockets take it";
  if (o.messages > 0) s += " (" + thousands(o.messages) + " each in all)";
  s += ", " + std::to_string(o.size) + "-byte " + (o.text ? "text" : "binary") + " messages";
  if (p.subscribe.size() != 1 || p.publish.size() != 1 || p.subscribe[0].url != p.publish[0].url) {
    s += "; subscribers at";
    for (const auto& t : p.subscribe) s += " " + t.url;
    s += ", publishers at";
    for (const auto& t : p.publish) s += " " + t.url;
  }
  return s;
}

std::string html_escape(const std::string& in) {
  std::string out;
  for (char c : in) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---- inline SVG line charts ------------------------------------------------

struct Line {
  std::string name, color;
  std::vector<std::pair<double, double>> pts;
};

struct Axis {
  std::vector<std::pair<double, std::string>> ticks;
  double lo = 0, hi = 1;
};

Axis linear_axis(double lo, double hi, const std::function<std::string(double)>& label) {
  Axis a;
  if (hi <= lo) hi = lo + 1;
  const double raw = (hi - lo) / 5;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  a.lo = std::floor(lo / step) * step;
  a.hi = std::ceil(hi / step) * step;
  for (double v = a.lo; v <= a.hi + step / 2; v += step) a.ticks.emplace_back(v, label(v));
  return a;
}

Axis log_axis(double lo, double hi, const std::function<std::string(double)>& label) {
  Axis a;
  lo = std::max(lo, 1e-9);
  hi = std::max(hi, lo * 10);
  const double dlo = std::floor(std::log10(lo)), dhi = std::ceil(std::log10(hi));
  a.lo = dlo;
  a.hi = std::max(dhi, dlo + 1);
  for (double d = a.lo; d <= a.hi; d += 1) a.ticks.emplace_back(d, label(std::pow(10, d)));
  return a;
}

std::string svg_chart(const std::string& title, const std::string& xlabel, const std::vector<Line>& lines,
                      const Axis& xa, const Axis& ya, bool log_y) {
  const double W = 820, H = 300, L = 78, R = 150, T = 30, B = 42;
  const double pw = W - L - R, ph = H - T - B;
  auto X = [&](double x) { return L + (x - xa.lo) / (xa.hi - xa.lo) * pw; };
  auto Y = [&](double y) {
    const double v = log_y ? std::log10(std::max(y, 1e-9)) : y;
    return T + ph - (std::clamp(v, ya.lo, ya.hi) - ya.lo) / (ya.hi - ya.lo) * ph;
  };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' viewBox='0 0 " << W << ' '
    << H << "' font-family='sans-serif' font-size='11'>\n";
  s << "<text x='" << L << "' y='18' font-size='14' font-weight='bold'>" << html_escape(title) << "</text>\n";
  s << "<rect x='" << L << "' y='" << T << "' width='" << pw << "' height='" << ph
    << "' fill='none' stroke='#999'/>\n";
  for (const auto& [v, label] : ya.ticks) {
    const double y = T + ph - (v - ya.lo) / (ya.hi - ya.lo) * ph;
    s << "<line x1='" << L << "' x2='" << L + pw << "' y1='" << y << "' y2='" << y << "' stroke='#eee'/>";
    s << "<text x='" << L - 6 << "' y='" << y + 4 << "' text-anchor='end'>" << html_escape(label) << "</text>\n";
  }
  for (const auto& [v, label] : xa.ticks) {
    const double x = X(v);
    s << "<line x1='" << x << "' x2='" << x << "' y1='" << T << "' y2='" << T + ph << "' stroke='#eee'/>";
    s << "<text x='" << x << "' y='" << T + ph + 15 << "' text-anchor='middle'>" << html_escape(label) << "</text>\n";
  }
  s << "<text x='" << L + pw / 2 << "' y='" << H - 6 << "' text-anchor='middle'>" << html_escape(xlabel) << "</text>\n";
  double ly = T + 10;
  for (const auto& line : lines) {
    if (line.pts.empty()) continue;
    s << "<polyline fill='none' stroke='" << line.color << "' stroke-width='1.8' points='";
    for (const auto& [x, y] : line.pts) s << fmt("%.1f", X(x)) << ',' << fmt("%.1f", Y(y)) << ' ';
    s << "'/>\n";
    s << "<line x1='" << L + pw + 10 << "' x2='" << L + pw + 28 << "' y1='" << ly << "' y2='" << ly
      << "' stroke='" << line.color << "' stroke-width='3'/>";
    s << "<text x='" << L + pw + 33 << "' y='" << ly + 4 << "'>" << html_escape(line.name) << "</text>\n";
    ly += 16;
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace

std::string fmt_duration_ns(double ns) {
  if (ns < 1e3) return fmt("%.0fns", ns);
  if (ns < 1e6) return fmt(ns < 1e4 ? "%.2fus" : "%.1fus", ns / 1e3);
  if (ns < 1e9) return fmt(ns < 1e7 ? "%.2fms" : "%.1fms", ns / 1e6);
  return fmt("%.2fs", ns / 1e9);
}

std::string fmt_rate(double v) {
  if (v < 1e3) return fmt("%.0f", v);
  if (v < 1e6) return fmt("%.1fk", v / 1e3);
  return fmt("%.2fM", v / 1e6);
}

void Results::decide_exit_code() {
  const Options& o = *options;
  verdict.clear();
  const auto mismatches = total.errors[static_cast<std::size_t>(ErrorKind::mismatch)];
  if (mismatches) {
    verdict.push_back(thousands(mismatches) + (o.mode == Mode::pubsub ? " delivered message(s) differed from what was published"
                                                                      : " echoed message(s) differed from what was sent"));
  }
  if (established < o.connections) {
    verdict.push_back("established " + thousands(established) + " of " + thousands(o.connections) + " connections");
  }
  if (hard_limit_hit) verdict.push_back("the hard time limit was hit; the run was cut short");
  if (lost) verdict.push_back(thousands(lost) + " connection(s) failed after being established");
  if (unanswered) verdict.push_back(thousands(unanswered) + " message(s) never echoed");
  if (workers_failed) verdict.push_back(std::to_string(workers_failed) + " worker process(es) failed");
  const Controls& ctl = o.target.controls;
  if (controls.not_resized) {
    verdict.push_back(thousands(controls.not_resized) + " echo(es) not resized to size=" + std::to_string(*ctl.size));
  }
  if (controls.early) verdict.push_back(thousands(controls.early) + " echo(es) earlier than delay=" + ctl.delay_text);
  if (controls.not_closed_as_asked) {
    verdict.push_back(thousands(controls.not_closed_as_asked) + " connection(s) not closed with " +
                      std::to_string(ctl.close_code) + " after close_after=" + std::to_string(*ctl.close_after) +
                      " echoes");
  }
  const bool ps = o.mode == Mode::pubsub;
  if (ps && missing()) verdict.push_back(thousands(missing()) + " of " + thousands(expected()) + " deliveries missing");
  if (ps && extra()) verdict.push_back(thousands(extra()) + " deliveries more than were published");
  if (ps && pubsub.duplicated) verdict.push_back(thousands(pubsub.duplicated) + " deliveries duplicated");
  if (ps && pubsub.reordered) verdict.push_back(thousands(pubsub.reordered) + " deliveries out of order");
  if (ps && pubsub.foreign) verdict.push_back(thousands(pubsub.foreign) + " deliveries from no publisher of the subscriber's channel");
  if (interrupted) verdict.push_back("interrupted");
  if (mismatches) exit_code = 1;
  else if (established < o.connections) exit_code = 2;
  else if (hard_limit_hit) exit_code = 4;
  else if (controls.failures()) exit_code = 5;
  else if (ps && pubsub_failures()) exit_code = 6;
  else if (lost || unanswered || workers_failed) exit_code = 3;
  else if (interrupted) exit_code = 130;
  else exit_code = 0;
}

nlohmann::json to_json(const Results& r) {
  const Options& o = *r.options;
  nlohmann::json sources = nlohmann::json::array();
  for (const auto& s : o.sources) sources.push_back(s.to_string());
  nlohmann::json j;
  j["tool"] = "shoal-load";
  j["version"] = "0.1.0";
  j["scenario"] = o.scenario_name;
  j["target"] = o.target.url;
  j["protocol"] = o.target.proto == Target::Proto::ws ? "websocket" : "tcp";
  j["mode"] = o.mode == Mode::pubsub ? "pubsub" : "echo";
  j["tls"] = o.target.tls;
  j["config"] = {{"connections", o.connections},
                 {"workers", o.workers},
                 {"threads", o.threads},
                 {"mode", o.rate > 0 ? "open" : "closed"},
                 {"pipeline", o.pipeline},
                 {"rate", o.rate},
                 {"size", o.size},
                 {"payload", o.text ? "text" : "binary"},
                 {"active", o.active_count()},
                 {"messages_per_connection", o.messages},
                 {"tls_verify", o.target.tls && !o.insecure},
                 {"tls_ca", o.ca_file},
                 {"connect_rate", o.connect_rate},
                 {"duration_s", o.duration_s},
                 {"warmup_s", o.warmup_s},
                 {"hold_s", o.hold_s},
                 {"timeout_s", o.timeout_s},
                 {"max_time_s", o.derived_max_time_s()},
                 {"sources", sources}};
  j["ok"] = r.exit_code == 0;
  j["exit_code"] = r.exit_code;
  j["verdict"] = r.verdict;
  j["elapsed_s"] = r.elapsed_s;
  j["measured_s"] = r.measured_s;
  j["connections"] = {{"requested", o.connections},
                      {"established", r.established},
                      {"peak_open", r.peak_open},
                      {"lost", r.lost},
                      {"connect_phase_s", r.connect_phase_s},
                      {"established_per_s", r.connect_phase_s > 0 ? static_cast<double>(r.established) / r.connect_phase_s : 0}};
  j["throughput"] = {{"msgs_per_s", r.msgs_per_s()},
                     {"sent_msgs_per_s", r.sent_per_s()},
                     {"bytes_per_s", r.measured_s > 0 ? static_cast<double>(r.window.bytes_recv) / r.measured_s : 0},
                     {"mb_per_s", r.measured_s > 0 ? static_cast<double>(r.window.bytes_recv) / r.measured_s / 1e6 : 0}};
  j["messages"] = {{"sent", r.total.msgs_sent},       {"received", r.total.msgs_recv},
                   {"window_sent", r.window.msgs_sent}, {"window_received", r.window.msgs_recv},
                   {"unanswered", r.unanswered},      {"skipped", r.skipped},
                   {"pings_answered", r.total.pings}};
  j["bytes"] = {{"sent", r.total.bytes_sent}, {"received", r.total.bytes_recv}};
  j["controls"] = controls_json(o.target.controls, r.controls);
  j["pubsub"] = o.mode == Mode::pubsub ? pubsub_json(r) : nlohmann::json();
  j["latency"] = percentiles_json(r.latency);
  j["connect_latency"] = percentiles_json(r.connect);
  j["handshake_latency"] = percentiles_json(r.handshake);
  j["tls_handshake_latency"] = percentiles_json(r.tls_handshake);
  nlohmann::json errors = nlohmann::json::object();
  for (std::size_t i = 0; i < error_kind_count; ++i) errors[error_kind_names[i]] = r.total.errors[i];
  j["errors"] = errors;
  j["error_samples"] = r.samples;
  j["client"] = {{"cpu_s", r.client_cpu_s}, {"max_rss_kb_per_worker", r.client_max_rss_kb}};
  if (r.server) {
    nlohmann::json pids = nlohmann::json::array();
    for (auto p : o.server_pids) pids.push_back(p);
    const double conns = static_cast<double>(std::max<std::uint64_t>(r.established, 1));
    const double delta = static_cast<double>(r.server_rss_held) - static_cast<double>(r.server_rss_before);
    j["server"] = {{"pids", pids},
                   {"rss_before_bytes", r.server_rss_before},
                   {"rss_held_bytes", r.server_rss_held},
                   {"rss_delta_bytes", delta},
                   {"bytes_per_connection", r.server_rss_held ? nlohmann::json(delta / conns) : nlohmann::json()},
                   {"rss_anon_before_bytes", r.server_anon_before},
                   {"rss_anon_held_bytes", r.server_anon_held},
                   {"anon_bytes_per_connection",
                    r.server_rss_held ? nlohmann::json((static_cast<double>(r.server_anon_held) -
                                                        static_cast<double>(r.server_anon_before)) / conns)
                                      : nlohmann::json()},
                   {"cpu_window_s", r.server_cpu_window_s},
                   {"cpu_ns_per_msg", r.window.msgs_recv ? r.server_cpu_window_s * 1e9 / static_cast<double>(r.window.msgs_recv) : 0.0}};
    // Each process on its own: which of a balancer and its backend holds
    // the memory.
    nlohmann::json each = nlohmann::json::array();
    for (std::size_t i = 0; i < o.server_pids.size(); ++i) {
      nlohmann::json e = {{"pid", o.server_pids[i]}};
      if (i < r.server_rss_before_each.size()) e["rss_before_bytes"] = r.server_rss_before_each[i];
      if (i < r.server_rss_held_each.size()) e["rss_held_bytes"] = r.server_rss_held_each[i];
      each.push_back(e);
    }
    j["server"]["processes"] = each;
    // The host's kernel, both ends of every loopback connection included.
    const auto per_conn = [&](std::uint64_t held, std::uint64_t before, double unit) {
      return r.server_rss_held ? nlohmann::json((static_cast<double>(held) - static_cast<double>(before)) * unit / conns)
                               : nlohmann::json();
    };
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    j["server"]["kernel"] = {
        {"slab_before_bytes", r.kernel_before.slab_bytes},
        {"slab_held_bytes", r.kernel_held.slab_bytes},
        {"slab_bytes_per_connection", per_conn(r.kernel_held.slab_bytes, r.kernel_before.slab_bytes, 1.0)},
        {"tcp_mem_pages_before", r.kernel_before.tcp_mem_pages},
        {"tcp_mem_pages_held", r.kernel_held.tcp_mem_pages},
        {"tcp_mem_bytes_per_connection", per_conn(r.kernel_held.tcp_mem_pages, r.kernel_before.tcp_mem_pages, page)},
        {"tcp_inuse_before", r.kernel_before.tcp_inuse},
        {"tcp_inuse_held", r.kernel_held.tcp_inuse}};
    // Under load: the measured seconds' medians and maxima, per connection.
    std::vector<double> anon, tcp_mem, slab;
    for (const auto& p : r.series) {
      if (p.phase != "measure" || !p.server_anon) continue;
      anon.push_back((static_cast<double>(*p.server_anon) - static_cast<double>(r.server_anon_before)) / conns);
      tcp_mem.push_back((static_cast<double>(p.kernel.tcp_mem_pages) - static_cast<double>(r.kernel_before.tcp_mem_pages)) * page / conns);
      slab.push_back((static_cast<double>(p.kernel.slab_bytes) - static_cast<double>(r.kernel_before.slab_bytes)) / conns);
    }
    const auto median = [](std::vector<double> v) {
      if (v.empty()) return nlohmann::json();
      std::sort(v.begin(), v.end());
      return nlohmann::json(v[v.size() / 2]);
    };
    const auto maximum = [](const std::vector<double>& v) {
      return v.empty() ? nlohmann::json() : nlohmann::json(*std::max_element(v.begin(), v.end()));
    };
    j["server"]["under_load"] = {{"anon_bytes_per_connection_median", median(anon)},
                                 {"anon_bytes_per_connection_max", maximum(anon)},
                                 {"tcp_mem_bytes_per_connection_median", median(tcp_mem)},
                                 {"slab_bytes_per_connection_median", median(slab)}};
  }
  nlohmann::json series = nlohmann::json::array();
  for (const auto& p : r.series) {
    nlohmann::json e = {{"sec", p.sec},
                        {"phase", p.phase},
                        {"open", p.open},
                        {"connects", p.delta.connects},
                        {"msgs_sent", p.delta.msgs_sent},
                        {"msgs_recv", p.delta.msgs_recv},
                        {"bytes_recv", p.delta.bytes_recv},
                        {"errors", p.delta.error_total()},
                        {"p50_us", us(p.hist.percentile(50))},
                        {"p90_us", us(p.hist.percentile(90))},
                        {"p99_us", us(p.hist.percentile(99))},
                        {"p99_9_us", us(p.hist.percentile(99.9))},
                        {"max_us", us(p.hist.max())}};
    if (p.server_rss) e["server_rss_bytes"] = *p.server_rss;
    if (p.server_anon) {
      e["server_anon_bytes"] = *p.server_anon;
      e["host_slab_bytes"] = p.kernel.slab_bytes;
      e["host_tcp_mem_pages"] = p.kernel.tcp_mem_pages;
    }
    series.push_back(e);
  }
  j["series"] = series;
  // The percentile spectrum, for plotting: [percentile, latency_us].
  nlohmann::json dist = nlohmann::json::array();
  if (r.latency.count()) {
    for (int k = 0; k <= 100; ++k) {
      const double q = 100.0 * (1.0 - std::pow(10.0, -k / 20.0));
      dist.push_back({q, us(r.latency.percentile(q))});
    }
    dist.push_back({100.0, us(r.latency.max())});
  }
  j["latency_distribution"] = dist;
  return j;
}

std::string summary_text(const Results& r) {
  const Options& o = *r.options;
  std::ostringstream s;
  s << "shoal-load " << o.target.url << "  (scenario: " << o.scenario_name << ")\n";
  s << "  connections  " << thousands(r.established) << "/" << thousands(o.connections) << " established, peak "
    << thousands(r.peak_open) << " open, " << thousands(r.lost) << " lost; " << o.workers << " worker(s) x "
    << o.threads << " thread(s)";
  if (!o.sources.empty()) s << ", " << o.sources.size() << " source addresses";
  s << "\n";
  s << "  connect      " << percentiles_line(r.connect) << "\n";
  s << "               all attempts done in " << fmt("%.2f", r.connect_phase_s) << " s ("
    << thousands(static_cast<std::uint64_t>(r.connect_phase_s > 0 ? static_cast<double>(r.established) / r.connect_phase_s : 0))
    << " established/s)\n";
  if (o.target.tls) s << "  tls          " << percentiles_line(r.tls_handshake) << " (part of connect)\n";
  if (o.target.proto == Target::Proto::ws) s << "  handshake    " << percentiles_line(r.handshake) << "\n";
  const bool ps = o.mode == Mode::pubsub;
  s << "  traffic      " << (ps ? pubsub_traffic_line(o) : mode_line(o)) << "\n";
  s << "  measured     " << fmt("%.1f", r.measured_s) << " s";
  if (o.warmup_s > 0) s << " after " << fmt("%.1f", o.warmup_s) << " s warm-up";
  if (o.hold_s > 0) s << ", then held " << fmt("%.1f", o.hold_s) << " s";
  s << " (run " << fmt("%.1f", r.elapsed_s) << " s)\n";
  if (ps) {
    if (r.measured_s > 0) {
      s << "  throughput   " << thousands(static_cast<std::uint64_t>(r.msgs_per_s())) << " deliveries/s, "
        << fmt("%.2f", static_cast<double>(r.window.bytes_recv) / r.measured_s / 1e6) << " MB/s; published "
        << thousands(static_cast<std::uint64_t>(r.sent_per_s())) << " msgs/s\n";
      s << "  latency      publish to delivery: " << percentiles_line(r.latency) << "\n";
    }
    s << "  deliveries   expected " << thousands(r.expected()) << ", delivered " << thousands(r.pubsub.delivered)
      << "; missing " << thousands(r.missing()) << ", duplicated " << thousands(r.pubsub.duplicated) << ", reordered "
      << thousands(r.pubsub.reordered) << ", foreign " << thousands(r.pubsub.foreign);
    if (r.extra()) s << ", " << thousands(r.extra()) << " more than published";
    s << "; " << thousands(r.pubsub.complete) << " of " << thousands(o.pubsub.subscribers)
      << " subscribers got everything\n";
  } else if (r.measured_s > 0 && o.active_count() > 0) {
    s << "  throughput   " << thousands(static_cast<std::uint64_t>(r.msgs_per_s())) << " msgs/s echoed, "
      << fmt("%.2f", static_cast<double>(r.window.bytes_recv) / r.measured_s / 1e6) << " MB/s; sent "
      << thousands(static_cast<std::uint64_t>(r.sent_per_s())) << " msgs/s\n";
    s << "  latency      " << percentiles_line(r.latency) << "\n";
  }
  if (const std::string c = controls_line(o.target.controls, r.controls); !c.empty()) {
    s << "  controls     " << c << "\n";
  }
  s << "  errors       " << errors_line(r.total);
  if (r.unanswered) s << "; " << thousands(r.unanswered) << " unanswered";
  if (r.skipped) s << "; " << thousands(r.skipped) << " not sent (connection backlog full)";
  s << "\n";
  for (const auto& e : r.samples) s << "               " << e << "\n";
  s << "  client       " << fmt("%.2f", r.client_cpu_s) << " CPU s (" << fmt("%.2f", r.elapsed_s > 0 ? r.client_cpu_s / r.elapsed_s : 0)
    << " cores avg), peak RSS " << r.client_max_rss_kb / 1024 << " MiB per worker\n";
  if (r.server && r.server_rss_held == 0) {
    s << "  server       RSS not sampled while holding (the run did not get that far)\n";
  } else if (r.server) {
    const double conns = static_cast<double>(std::max<std::uint64_t>(r.established, 1));
    const double delta = static_cast<double>(r.server_rss_held) - static_cast<double>(r.server_rss_before);
    s << "  server       RSS " << fmt("%.1f", static_cast<double>(r.server_rss_before) / 1048576.0) << " MiB -> "
      << fmt("%.1f", static_cast<double>(r.server_rss_held) / 1048576.0) << " MiB held: "
      << fmt("%.0f", delta / conns) << " bytes per connection";
    if (r.window.msgs_recv) {
      s << "; CPU " << fmt("%.2f", r.server_cpu_window_s) << " s in the window = "
        << fmt("%.0f", r.server_cpu_window_s * 1e9 / static_cast<double>(r.window.msgs_recv)) << " ns per message";
    }
    s << "\n";
    const double anon = static_cast<double>(r.server_anon_held) - static_cast<double>(r.server_anon_before);
    const double slab = static_cast<double>(r.kernel_held.slab_bytes) - static_cast<double>(r.kernel_before.slab_bytes);
    s << "               private (RssAnon) " << fmt("%.0f", anon / conns) << " bytes per connection; host kernel slab "
      << fmt("%.0f", slab / conns) << " bytes per connection (both ends on this host)\n";
  }
  if (r.exit_code == 0) {
    s << "  verdict      OK\n";
  } else {
    s << "  verdict      FAIL (exit " << r.exit_code << "):";
    for (const auto& v : r.verdict) s << " " << v << ";";
    s << "\n";
  }
  return s.str();
}

std::string csv_text(const Results& r) {
  std::ostringstream s;
  s << "sec,phase,open,connects,msgs_sent,msgs_recv,bytes_sent,bytes_recv,errors,p50_us,p90_us,p99_us,p99_9_us,max_us,"
       "server_rss_bytes\n";
  for (const auto& p : r.series) {
    s << p.sec << ',' << p.phase << ',' << p.open << ',' << p.delta.connects << ',' << p.delta.msgs_sent << ','
      << p.delta.msgs_recv << ',' << p.delta.bytes_sent << ',' << p.delta.bytes_recv << ',' << p.delta.error_total()
      << ',' << fmt("%.1f", us(p.hist.percentile(50))) << ',' << fmt("%.1f", us(p.hist.percentile(90))) << ','
      << fmt("%.1f", us(p.hist.percentile(99))) << ',' << fmt("%.1f", us(p.hist.percentile(99.9))) << ','
      << fmt("%.1f", us(p.hist.max())) << ',';
    if (p.server_rss) s << *p.server_rss;
    s << '\n';
  }
  return s.str();
}

std::string html_report(const Results& r) {
  const Options& o = *r.options;
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>shoal-load " << html_escape(o.target.url)
    << "</title>\n<style>body{font-family:sans-serif;margin:24px;max-width:900px}"
       "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
       "pre{background:#f6f6f6;padding:8px}.fail{color:#b00}.ok{color:#070}</style></head><body>\n";
  h << "<h1>shoal-load: " << html_escape(o.scenario_name) << "</h1>\n";
  h << "<p class='" << (r.exit_code == 0 ? "ok'>OK" : "fail'>FAIL") << "</p>\n";
  h << "<pre>" << html_escape(summary_text(r)) << "</pre>\n";

  auto xs = [&](auto get) {
    std::vector<std::pair<double, double>> v;
    for (const auto& p : r.series) v.emplace_back(static_cast<double>(p.sec), get(p));
    return v;
  };
  const double tmax = r.series.empty() ? 1.0 : static_cast<double>(r.series.back().sec);
  const Axis tx = linear_axis(0, tmax, [](double v) { return fmt("%.0f", v); });

  // Throughput.
  {
    std::vector<Line> lines = {
        {"echoed msgs/s", "#1f77b4", xs([](const SecondPoint& p) { return static_cast<double>(p.delta.msgs_recv); })},
        {"sent msgs/s", "#aec7e8", xs([](const SecondPoint& p) { return static_cast<double>(p.delta.msgs_sent); })}};
    double ymax = 1;
    for (const auto& l : lines)
      for (const auto& pt : l.pts) ymax = std::max(ymax, pt.second);
    h << svg_chart("Throughput", "seconds", lines, tx, linear_axis(0, ymax, [](double v) { return fmt_rate(v); }), false);
  }
  // Connections (and server RSS).
  {
    std::vector<Line> lines = {
        {"connections open", "#2ca02c", xs([](const SecondPoint& p) { return static_cast<double>(p.open); })}};
    double ymax = 1;
    for (const auto& pt : lines[0].pts) ymax = std::max(ymax, pt.second);
    h << svg_chart("Connections", "seconds", lines, tx, linear_axis(0, ymax, [](double v) { return fmt_rate(v); }), false);
    if (r.server) {
      std::vector<Line> mem = {{"server RSS (MiB)", "#9467bd", {}}};
      double mmax = 1;
      for (const auto& p : r.series) {
        if (!p.server_rss) continue;
        const double mib = static_cast<double>(*p.server_rss) / 1048576.0;
        mem[0].pts.emplace_back(static_cast<double>(p.sec), mib);
        mmax = std::max(mmax, mib);
      }
      h << svg_chart("Server memory", "seconds", mem, tx, linear_axis(0, mmax, [](double v) { return fmt("%.0f", v); }), false);
    }
  }
  // Latency percentiles over time (log scale), seconds with echoes only.
  {
    std::vector<Line> lines = {{"p50", "#1f77b4", {}}, {"p90", "#2ca02c", {}}, {"p99", "#ff7f0e", {}},
                               {"p99.9", "#d62728", {}}, {"max", "#7f7f7f", {}}};
    const double qs[] = {50, 90, 99, 99.9};
    double lo = 1e12, hi = 1;
    for (const auto& p : r.series) {
      if (!p.hist.count()) continue;
      for (int i = 0; i < 4; ++i) {
        const double v = us(p.hist.percentile(qs[i]));
        lines[static_cast<std::size_t>(i)].pts.emplace_back(static_cast<double>(p.sec), v);
        lo = std::min(lo, v);
      }
      const double mx = us(p.hist.max());
      lines[4].pts.emplace_back(static_cast<double>(p.sec), mx);
      hi = std::max(hi, mx);
    }
    if (lo > hi) lo = 1;
    h << svg_chart("Latency over time (per second, log scale)", "seconds", lines, tx,
                   log_axis(lo, hi, [](double v) { return fmt_duration_ns(v * 1000); }), true);
  }
  // Percentile spectrum of the measured window.
  if (r.latency.count()) {
    std::vector<Line> lines = {{"latency", "#d62728", {}}};
    double lo = 1e12, hi = 1;
    for (int k = 0; k <= 100; ++k) {
      const double x = k / 20.0;  // log10(1 / (1 - q))
      const double q = 100.0 * (1.0 - std::pow(10.0, -x));
      const double v = us(r.latency.percentile(q));
      lines[0].pts.emplace_back(x, v);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    Axis xa;
    xa.lo = 0;
    xa.hi = 5;
    const char* labels[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"};
    for (int i = 0; i <= 5; ++i) xa.ticks.emplace_back(i, labels[i]);
    h << svg_chart("Latency distribution (percentile spectrum, measured window)", "percentile", lines, xa,
                   log_axis(lo, hi, [](double v) { return fmt_duration_ns(v * 1000); }), true);
  }
  h << "<h2>Per second</h2>\n<table><tr><th>s</th><th>phase</th><th>open</th><th>msgs/s</th><th>p50</th><th>p99</th>"
       "<th>max</th><th>errors</th></tr>\n";
  for (const auto& p : r.series) {
    h << "<tr><td>" << p.sec << "</td><td>" << p.phase << "</td><td>" << p.open << "</td><td>"
      << thousands(p.delta.msgs_recv) << "</td><td>" << fmt_duration_ns(static_cast<double>(p.hist.percentile(50)))
      << "</td><td>" << fmt_duration_ns(static_cast<double>(p.hist.percentile(99))) << "</td><td>"
      << fmt_duration_ns(static_cast<double>(p.hist.max())) << "</td><td>" << p.delta.error_total() << "</td></tr>\n";
  }
  h << "</table>\n</body></html>\n";
  return h.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << content;
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

}  // namespace shoal::load
