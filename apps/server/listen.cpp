#include "listen.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

#include "didmark/error.hpp"

namespace didmark::server {

ListenAddress parse_listen_address(std::string_view s) {
  const std::string shown(s.substr(0, 200));
  const auto fail = [&](const char* why) {
    DIDMARK_THROW(Errc::invalid_argument, "--listen '", shown, "': ", why,
                  " (give HOST:PORT, e.g. 127.0.0.1:50551, [::1]:50551 or 0.0.0.0:50551)");
  };
  const std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) fail("no port");
  const std::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.empty()) fail("no host (say 0.0.0.0 or [::] for every interface)");
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    fail("the port is not a number from 0 to 65535");
  const int p = std::stoi(std::string(port));
  if (p > 65535) fail("the port is not a number from 0 to 65535");

  ListenAddress a;
  a.host = std::string(host);
  a.port = p;
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') fail("an IPv6 address must be in brackets, [ADDR]:PORT");
    const std::string addr(host.substr(1, host.size() - 2));
    in6_addr v6{};
    if (inet_pton(AF_INET6, addr.c_str(), &v6) != 1) fail("not an IPv6 address");
    a.loopback = IN6_IS_ADDR_LOOPBACK(&v6);
    return a;
  }
  if (host.find(':') != std::string_view::npos) fail("an IPv6 address must be in brackets, [ADDR]:PORT");
  const std::string h(host);
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    a.loopback = (ntohl(v4.s_addr) >> 24) == 127;
    return a;
  }
  const bool name_chars = std::all_of(h.begin(), h.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  });
  if (!name_chars || h.size() > 253) fail("not an IP address or host name");
  // Only "localhost" is taken as loopback by name; any other name may resolve anywhere.
  std::string lower = h;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  a.loopback = lower == "localhost";
  return a;
}

}  // namespace didmark::server
