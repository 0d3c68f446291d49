#pragma once
// --listen HOST:PORT, checked before gRPC sees it: gRPC itself wraps ports over 65535 and
// takes a missing port for 443, which put servers where nobody meant them.

#include <optional>
#include <string>
#include <string_view>

namespace didmark::server {

struct ListenAddress {
  std::string host;  ///< as given; IPv6 literals keep their brackets ("[::1]")
  int port = 0;      ///< 0..65535 (0: any free port)
  /// 127.0.0.0/8, ::1 or "localhost": only this machine can connect.
  bool loopback = false;
  std::string text() const { return host + ":" + std::to_string(port); }
};

/// Parse HOST:PORT: HOST an IPv4 address, a bracketed IPv6 address or a host name (letters,
/// digits, '-', '.'); PORT decimal 0..65535. didmark::Error (invalid_argument) naming what
/// is wrong otherwise: no port, an empty host, a port out of range, stray characters.
ListenAddress parse_listen_address(std::string_view s);

}  // namespace didmark::server
