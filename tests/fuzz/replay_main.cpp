// Replays inputs through a fuzz target's LLVMFuzzerTestOneInput without
// libFuzzer, for the normal (GCC) build: ctest runs each target over its
// seed corpus and over every past finding (tests/fuzz/regressions/<target>/),
// so what fuzzing once found stays fixed. Arguments are files or
// directories (every regular file in them whose name does not start with a
// dot, in name order). A finding aborts, which fails the test; so does an
// input that runs longer than kInputSeconds (a hang, as libFuzzer's
// -timeout would call it), a named path that does not exist, or nothing to
// replay.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

constexpr unsigned kInputSeconds = 60;

void on_alarm(int) {
  static const char msg[] = "replay: the input above ran for too long (a hang)\n";
  (void)!::write(2, msg, sizeof msg - 1);
  std::abort();
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg(argv[i]);
    if (fs::is_directory(arg)) {
      std::vector<fs::path> files;
      for (const auto& entry : fs::directory_iterator(arg))
        if (entry.is_regular_file() && entry.path().filename().string().front() != '.')
          files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(arg)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
      return 2;
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no inputs\n");
    return 2;
  }
  std::signal(SIGALRM, on_alarm);
  for (const fs::path& p : inputs) {
    std::ifstream in(p, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
      return 2;
    }
    std::printf("replay %s (%zu bytes)\n", p.c_str(), bytes.size());
    std::fflush(stdout);
    ::alarm(kInputSeconds);
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    ::alarm(0);
  }
  std::printf("replayed %zu inputs\n", inputs.size());
  return 0;
}
