#include "didmark/error.hpp"

namespace didmark {

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::unsupported: return "unsupported";
    case Errc::corrupt_input: return "corrupt_input";
    case Errc::device_failure: return "device_failure";
    case Errc::io_error: return "io_error";
    case Errc::permission: return "permission";
    case Errc::internal: return "internal";
  }
  return "unknown";
}

namespace detail {
void throw_error(Errc code, std::string message, const char* file, int line, const char* function) {
  std::string where = concat(file, ":", line, " (", function, ")");
  throw Error(code, std::move(message), std::move(where));
}
}  // namespace detail

}  // namespace didmark
