// shoal-load: the load generator. Parses options, runs the load through the
// coordinator (which forks the workers) and writes the results.
#include <cstdio>
#include <iostream>

#include "coordinator.hpp"
#include "options.hpp"
#include "results.hpp"

int main(int argc, char** argv) {
  using namespace shoal::load;
  Options o;
  try {
    auto parsed = parse_options(argc, argv);
    if (!parsed) return 0;
    o = std::move(*parsed);
    plan(o);
  } catch (const UsageError& e) {
    std::cerr << "shoal-load: " << e.what() << "\n(try shoal-load --help)\n";
    return 64;
  } catch (const std::exception& e) {
    std::cerr << "shoal-load: " << e.what() << "\n";
    return 64;
  }
  try {
    Results r = run_load(o);
    std::cout << summary_text(r);
    std::cout.flush();
    if (!o.json_file.empty()) write_file(o.json_file, to_json(r).dump(2) + "\n");
    if (!o.csv_file.empty()) write_file(o.csv_file, csv_text(r));
    if (!o.report_file.empty()) write_file(o.report_file, html_report(r));
    return r.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "shoal-load: " << e.what() << "\n";
    return 70;
  }
}
