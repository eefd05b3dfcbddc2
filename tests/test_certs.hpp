// Test helper: a temporary directory removed with its files, and a
// throwaway self-signed EC certificate for 127.0.0.1 and localhost made
// there by Debian's `openssl`, for TLS listeners started by a test.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "shoald_process.hpp"

namespace shoal::test {

class TempDir {
 public:
  explicit TempDir(const std::string& stem = "shoal-test") {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/" + stem + "-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CertFiles {
  std::string certificate;
  std::string private_key;
};

// `stem`.crt and `stem`.key in `dir`.
inline CertFiles make_cert(const TempDir& dir, const std::string& stem) {
  CertFiles f{dir.file(stem + ".crt"), dir.file(stem + ".key")};
  const RunResult r = run_command(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
      " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout '" +
      f.private_key + "' -out '" + f.certificate + "' 2>&1");
  if (r.exit_code != 0) throw std::runtime_error("openssl req failed: " + r.output);
  return f;
}

}  // namespace shoal::test
