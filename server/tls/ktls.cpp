#include "tls/ktls.hpp"

#include <fstream>
#include <iterator>
#include <sstream>

namespace shoal {

KtlsSupport ktls_support(std::string_view ulp, bool readable) {
  KtlsSupport s;
  if (!readable) {
    s.detail = "tcp_available_ulp cannot be read";
    return s;
  }
  std::istringstream words{std::string(ulp)};
  std::string word;
  std::string listed;
  while (words >> word) {
    if (word == "tls") s.available = true;
    listed += listed.empty() ? word : " " + word;
  }
  s.detail = "tcp_available_ulp: " + (listed.empty() ? std::string("(empty)") : listed);
  return s;
}

KtlsSupport probe_ktls(const char* path) {
  std::ifstream in(path);
  if (!in) return ktls_support({}, false);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ktls_support(text, true);
}

}  // namespace shoal
