#pragma once
// Output hygiene: text that came from a file or a client (tensor names, dtypes, paths, DIDs,
// cells) made safe to print on a terminal, in a log line or in a JSON message.
#include <cstddef>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace didmark::detail {

/// Longest quoted text an error message carries by default (bytes of the original).
inline constexpr std::size_t kMaxQuotedBytes = 256;

/// `s` with every byte that could act on a terminal or forge a line escaped, so that the
/// result is one line of printable text:
///  * C0 controls (newline, CR, tab, ESC, BEL, NUL, ...) and DEL as \xNN;
///  * C1 controls (U+0080..U+009F) and the bidirectional overrides and isolates
///    (U+202A..U+202E, U+2066..U+2069), which reorder what a terminal shows, as \u{NNNN};
///  * bytes that are not valid UTF-8 as \xNN;
///  * a backslash as \\ (so an escape in the output always means an escaped byte).
/// Valid UTF-8 text is kept as it is. When `s` is longer than `max_bytes`, the first
/// `max_bytes` bytes are kept (cut at a character boundary) and "... (N bytes)" is added.
std::string printable(std::string_view s, std::size_t max_bytes = std::numeric_limits<std::size_t>::max());

/// printable() bounded to kMaxQuotedBytes: the form every error message uses to quote a
/// name, dtype, path or DID read from a file.
inline std::string quoted(std::string_view s) { return printable(s, kMaxQuotedBytes); }

/// A bounded list for messages: the first `max_items` items, quoted ('a', 'b', 'c'), then
/// "and N more" for the rest.
std::string bounded_list(const std::vector<std::string>& items, std::size_t max_items = 8);

}  // namespace didmark::detail
