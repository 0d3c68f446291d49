#pragma once
/// \file error.hpp
/// One error type for the whole library.
///
/// Failures come in two kinds, kept apart (after FaissAssert):
///  * bad input from the caller (a shape that does not match, a corrupt file, a key of the
///    wrong length) throws didmark::Error with a code that says which kind, and a message
///    that names the thing that is wrong and where;
///  * a broken internal invariant throws Error with Errc::internal (a bug in didmark).
///
/// At the edges the code is mapped once: the CLI to an exit status, the server to a gRPC
/// status, Python to an exception class. Inside the library, code just throws.

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace didmark {

/// What kind of failure. Stable values: they cross process boundaries.
enum class Errc : int {
  invalid_argument = 1,  ///< the caller passed something unusable (shape, dtype, option)
  not_found = 2,         ///< a named file, tensor, key or DID does not exist
  unsupported = 3,       ///< valid, but not built in or not implemented (e.g. no CUDA)
  corrupt_input = 4,     ///< a file or message is malformed or inconsistent
  device_failure = 5,    ///< CUDA / cuBLAS reported an error
  io_error = 6,          ///< the operating system refused a read, write or rename
  permission = 7,        ///< a secret file is readable by others, or access was denied
  internal = 8,          ///< an invariant of didmark itself broke: a bug
};

/// Short stable name of a code ("invalid_argument", ...), used in JSON output.
std::string_view errc_name(Errc code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Errc code, std::string message, std::string where = {})
      : std::runtime_error(std::move(message)), code_(code), where_(std::move(where)) {}

  Errc code() const noexcept { return code_; }
  /// "file:line (function)" of the throw site; empty when thrown from outside the library.
  const std::string& where() const noexcept { return where_; }

 private:
  Errc code_;
  std::string where_;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_error(Errc code, std::string message, const char* file, int line,
                              const char* function);
}  // namespace detail

}  // namespace didmark

/// Throw didmark::Error(code, message built from the remaining arguments).
#define DIDMARK_THROW(code, ...) \
  ::didmark::detail::throw_error((code), ::didmark::detail::concat(__VA_ARGS__), __FILE__, __LINE__, __func__)

/// State a precondition in the caller's words: DIDMARK_EXPECTS(n > 0, invalid_argument, "...").
#define DIDMARK_EXPECTS(cond, code, ...)                     \
  do {                                                       \
    if (!(cond)) DIDMARK_THROW(::didmark::Errc::code, __VA_ARGS__); \
  } while (0)

/// An invariant of didmark itself; failing it is a bug, reported as Errc::internal.
#define DIDMARK_ASSERT(cond)                                                          \
  do {                                                                                \
    if (!(cond)) DIDMARK_THROW(::didmark::Errc::internal, "internal check failed: " #cond); \
  } while (0)
