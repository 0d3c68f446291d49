// CSV (RFC 4180) reading that records where every field is, and writing that splices edited
// cells into the original bytes; decimal cells as integer mantissas at their own scale.
#include <algorithm>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/atomic_file.hpp"
#include "common/printable.hpp"
#include "common/regular_file.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

struct Cursor {
  const char* d;
  std::size_t n;
  std::size_t pos;
  int64_t line = 1;
  std::size_t line_start = 0;
  const std::string* source;
  char delim = ',';
  std::size_t max_fields = kCsvMaxColumns;  // a record with more is refused as soon as seen
  std::size_t max_bytes = kCsvMaxRecordBytes;
  const char* hint = "";                     // what is likely wrong, for field-count errors
  std::size_t overflow = 0;                  // fields of the last record beyond max_fields + 1 (not stored)

  int64_t column() const { return static_cast<int64_t>(pos - line_start) + 1; }
};

/// The first delimiter, '\n' or '"' at or after p (n when none): 16 bytes at a time where
/// SSE2 is.
inline std::size_t find_special(const char* d, std::size_t p, std::size_t n, char delim) {
#if defined(__SSE2__)
  const __m128i sep = _mm_set1_epi8(delim), nl = _mm_set1_epi8('\n'), quote = _mm_set1_epi8('"');
  for (; p + 16 <= n; p += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d + p));
    const __m128i hit =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, sep), _mm_cmpeq_epi8(v, nl)), _mm_cmpeq_epi8(v, quote));
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return p + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
  }
#endif
  while (p < n && d[p] != delim && d[p] != '\n' && d[p] != '"') ++p;
  return p;
}

std::string delimiter_name(char d) {
  switch (d) {
    case ',': return "','";
    case ';': return "';'";
    case '\t': return "tab";
    case '|': return "'|'";
    default: return "'" + detail::printable(std::string_view(&d, 1)) + "'";
  }
}

[[noreturn]] void fail_at(const Cursor& c, int64_t line, int64_t column, std::size_t field, const std::string& what) {
  DIDMARK_THROW(Errc::corrupt_input, *c.source, ": malformed CSV at line ", line, ", column ", column, " (field ",
                field, "): ", what, c.hint);
}

/// Parse one record starting at c.pos; field starts (absolute) go to `starts`, and the end
/// of the last field's content is returned. c.pos ends past the record's line break.
/// At most c.max_fields + 1 field starts are stored; further fields are only counted, in
/// c.overflow (the caller reports a record with too many). A record longer than c.max_bytes
/// is refused.
std::size_t parse_record(Cursor& c, std::vector<std::size_t>& starts) {
  starts.clear();
  c.overflow = 0;
  const char* d = c.d;
  const std::size_t n = c.n;
  const std::size_t record_start = c.pos;
  const int64_t record_line = c.line;
  auto check_length = [&] {
    if (c.pos - record_start > c.max_bytes)
      fail_at(c, record_line, 1, starts.size() + c.overflow,
              detail::concat("the record is longer than ", c.max_bytes, " bytes (kCsvMaxRecordBytes)"));
  };
  for (;;) {
    const std::size_t field_start = c.pos;
    if (starts.size() <= c.max_fields)
      starts.push_back(field_start);
    else
      ++c.overflow;
    const std::size_t field_no = starts.size() + c.overflow;
    if (c.pos < n && d[c.pos] == '"') {
      const int64_t qline = c.line, qcol = c.column();
      ++c.pos;
      for (;;) {
        if (c.pos >= n) fail_at(c, qline, qcol, field_no, "quoted field is never closed");
        const char ch = d[c.pos];
        if (ch == '"') {
          if (c.pos + 1 < n && d[c.pos + 1] == '"') {
            c.pos += 2;
            continue;
          }
          ++c.pos;
          break;
        }
        if (ch == '\n') {
          ++c.line;
          c.line_start = c.pos + 1;
          check_length();
        }
        ++c.pos;
      }
      check_length();
      if (c.pos >= n) return c.pos;
      const char ch = d[c.pos];
      if (ch == c.delim) {
        ++c.pos;
        continue;
      }
      if (ch == '\r' && c.pos + 1 == n) return c.pos;  // a CR ends the file
      if (ch == '\n' || (ch == '\r' && c.pos + 1 < n && d[c.pos + 1] == '\n')) {
        const std::size_t end = c.pos;
        c.pos += ch == '\r' ? 2 : 1;
        ++c.line;
        c.line_start = c.pos;
        return end;
      }
      fail_at(c, c.line, c.column(), field_no,
              detail::concat("unexpected character '", detail::printable(std::string_view(&ch, 1)),
                             "' after a closing quote (expected ", delimiter_name(c.delim), " or a line break)"));
    }
    const std::size_t p = find_special(d, c.pos, n, c.delim);
    c.pos = p;
    check_length();
    if (p < n && d[p] == '"')
      fail_at(c, c.line, c.column(), field_no, "quote inside an unquoted field (quote the whole field)");
    if (p >= n) return (p > field_start && d[p - 1] == '\r') ? p - 1 : p;  // a CR ends the file
    if (d[p] == c.delim) {
      ++c.pos;
      continue;
    }
    // '\n': a '\r' just before it (inside this field) belongs to the line break.
    const std::size_t end = (p > field_start && d[p - 1] == '\r') ? p - 1 : p;
    ++c.pos;
    ++c.line;
    c.line_start = c.pos;
    return end;
  }
}

std::string unquote(std::string_view raw) {
  if (raw.size() < 2 || raw.front() != '"') return std::string(raw);
  std::string out;
  out.reserve(raw.size() - 2);
  for (std::size_t i = 1; i + 1 < raw.size(); ++i) {
    out.push_back(raw[i]);
    if (raw[i] == '"') ++i;  // a doubled quote
  }
  return out;
}

bool only_line_breaks(const char* d, std::size_t from, std::size_t n) {
  for (std::size_t i = from; i < n; ++i)
    if (d[i] != '\n' && d[i] != '\r') return false;
  return true;
}

// Fields of one line split at `delim` outside quotes (a quick count for detection; a quoted
// field that spans lines just makes that line count oddly). `end` is past the line.
std::size_t count_fields(const char* d, std::size_t from, std::size_t n, char delim, std::size_t& end) {
  std::size_t fields = 1;
  bool quoted = false;
  std::size_t i = from;
  for (; i < n && (quoted || d[i] != '\n'); ++i) {
    if (d[i] == '"') quoted = !quoted;
    else if (!quoted && d[i] == delim) ++fields;
  }
  end = i < n ? i + 1 : n;
  return fields;
}

// The delimiter that splits the header into the most fields and most of the next lines into
// as many (a ';' in one header name does not outvote commas that agree on every line).
char detect_delimiter(const char* d, std::size_t from, std::size_t n) {
  constexpr std::size_t kSampleLines = 16;
  char best = ',';
  std::size_t best_agree = 0, best_fields = 1;
  for (char cand : kCsvDelimiters) {
    std::size_t end = from;
    const std::size_t fields = count_fields(d, from, n, cand, end);
    if (fields < 2) continue;
    std::size_t agree = 0;
    for (std::size_t k = 0, at = end; k < kSampleLines && at < n; ++k) {
      std::size_t next;
      if (count_fields(d, at, n, cand, next) == fields) ++agree;
      at = next;
    }
    if (agree > best_agree || (agree == best_agree && fields > best_fields)) {
      best = cand;
      best_agree = agree;
      best_fields = fields;
    }
  }
  return best;
}

}  // namespace

CsvTable CsvTable::parse(std::string text, std::string source, const CsvOptions& options) {
  CsvTable t;
  t.text_ = std::move(text);
  t.source_ = std::move(source);
  const char* d = t.text_.data();
  const std::size_t n = t.text_.size();
  Cursor c{d, n, 0, 1, 0, &t.source_};
  if (n >= 3 && std::memcmp(d, "\xEF\xBB\xBF", 3) == 0) c.pos = t.bom_ = 3;
  DIDMARK_EXPECTS(c.pos < n, corrupt_input, t.source_, ": empty CSV (no header line)");
  DIDMARK_EXPECTS(options.delimiter == 0 || kCsvDelimiters.find(options.delimiter) != std::string_view::npos,
                  invalid_argument, "CSV delimiter ", delimiter_name(options.delimiter),
                  " is not one of ',', ';', tab and '|'");
  t.detected_delimiter_ = options.delimiter == 0;
  t.delimiter_ = options.delimiter ? options.delimiter : detect_delimiter(d, c.pos, n);
  c.delim = t.delimiter_;
  c.max_fields = options.max_columns;
  c.max_bytes = options.max_record_bytes;

  std::vector<std::size_t> starts;
  const std::size_t header_begin = c.pos;
  const std::size_t header_end = parse_record(c, starts);
  DIDMARK_EXPECTS(starts.size() <= options.max_columns, corrupt_input, t.source_, ": the header has ",
                  starts.size() + c.overflow, " fields, more than the limit of ", options.max_columns,
                  " columns (kCsvMaxColumns)",
                  std::memchr(d + header_begin, '\r', header_end - header_begin)
                      ? "; its line breaks look like CR only (classic Mac): convert them to LF or CRLF"
                      : "");
  // A CR inside the header that does not end a line: the file's line breaks are CR only, so
  // the whole file reads as one header line.
  for (std::size_t i = header_begin; i < header_end; ++i)
    DIDMARK_EXPECTS(!(d[i] == '\r' && (i + 1 >= n || d[i + 1] != '\n')), corrupt_input, t.source_,
                    ": the header line holds a carriage return that ends no line: the file's line breaks are CR "
                    "only (classic Mac); convert them to LF or CRLF");
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const std::size_t e = i + 1 < starts.size() ? starts[i + 1] - 1 : header_end;
    t.header_.push_back(unquote(std::string_view(d + starts[i], e - starts[i])));
  }
  const std::size_t cols = starts.size();
  // What is likely wrong when records disagree with the header: a one-column header that
  // holds another delimiter (said in every error), or a detected delimiter (said when field
  // counts disagree).
  std::string hint, count_hint;
  if (cols == 1) {
    for (char other : kCsvDelimiters)
      if (other != t.delimiter_ && std::memchr(d + header_begin, other, header_end - header_begin)) {
        hint = "; the header is one column: is the delimiter " + delimiter_name(other) + "?";
        break;
      }
  } else if (t.detected_delimiter_) {
    count_hint = "; the delimiter " + delimiter_name(t.delimiter_) + " was detected from the header line";
  }
  c.hint = hint.c_str();
  c.max_fields = cols;

  // One record per line break at most, and one field per byte at most: reserve once.
  const auto newlines = static_cast<std::size_t>(std::count(d + c.pos, d + n, '\n'));
  t.row_start_.reserve(newlines + 2);
  t.field_pos_.reserve(std::min((newlines + 1) * (cols + 1), n - c.pos + 2 * (newlines + 1)));
  const int64_t first_line = c.line;
  bool multiline = false;
  while (c.pos < n) {
    // Blank lines at the very end are not records.
    if ((d[c.pos] == '\n' || d[c.pos] == '\r') && only_line_breaks(d, c.pos, n)) break;
    const std::size_t rs = c.pos;
    const int64_t line = c.line;
    const std::size_t end = parse_record(c, starts);
    if (starts.size() != cols) {
      const std::size_t fields = starts.size() + c.overflow;
      // Point at the first extra field, or at the end of a short record.
      const std::size_t at = starts.size() > cols ? starts[cols] : end;
      const std::size_t nl = std::string_view(d + rs, at - rs).rfind('\n');
      const std::size_t col0 = nl == std::string_view::npos ? at - rs : at - rs - nl - 1;
      DIDMARK_THROW(Errc::corrupt_input, t.source_, ": malformed CSV at line ",
                    line + std::count(d + rs, d + at, '\n'), ", column ", col0 + 1, " (field ",
                    std::min(fields, cols + 1), "): the record has ", fields, " field", fields == 1 ? "" : "s",
                    " but the header has ", cols, hint, count_hint);
    }
    DIDMARK_EXPECTS(end - rs < std::numeric_limits<uint32_t>::max(), corrupt_input, t.source_, ": line ", line,
                    " is longer than 4 GiB");
    if (line != first_line + t.rows_) multiline = true;
    t.row_start_.push_back(rs);
    for (std::size_t s : starts) t.field_pos_.push_back(static_cast<uint32_t>(s - rs));
    t.field_pos_.push_back(static_cast<uint32_t>(end - rs));
    t.row_line_.push_back(line);
    ++t.rows_;
  }
  t.row_start_.push_back(c.pos);
  if (!multiline) {
    // Lines follow from row numbers: keep just the first.
    t.row_line_.assign(1, first_line);
  }
  return t;
}

CsvTable CsvTable::read(const std::filesystem::path& path, const CsvOptions& options) {
  // Never blocks on a FIFO, never opens a device: only a regular file is read.
  std::string text = detail::read_regular_file(path);
  return parse(std::move(text), detail::printable(path.native(), 1024), options);
}

std::string CsvTable::describe_columns(std::size_t max) const { return detail::bounded_list(header_, max); }

std::optional<int> CsvTable::column_index(std::string_view name) const {
  for (std::size_t i = 0; i < header_.size(); ++i)
    if (header_[i] == name) return static_cast<int>(i);
  return std::nullopt;
}

std::string_view CsvTable::raw_cell(int64_t row, int column) const {
  const std::size_t cols = header_.size();
  const std::size_t base = static_cast<std::size_t>(row) * (cols + 1);
  const auto c = static_cast<std::size_t>(column);
  const std::size_t rs = row_start_[static_cast<std::size_t>(row)];
  const std::size_t b = rs + field_pos_[base + c];
  const std::size_t e = c + 1 < cols ? rs + field_pos_[base + c + 1] - 1 : rs + field_pos_[base + cols];
  return std::string_view(text_.data() + b, e - b);
}

std::string CsvTable::cell(int64_t row, int column) const {
  DIDMARK_EXPECTS(row >= 0 && row < rows_ && column >= 0 && column < columns(), invalid_argument, "cell (", row, ", ",
                  column, ") is outside the table (", rows_, " rows, ", columns(), " columns)");
  return unquote(raw_cell(row, column));
}

int64_t CsvTable::line_of(int64_t row) const {
  if (row_line_.size() == static_cast<std::size_t>(rows_)) return row_line_[static_cast<std::size_t>(row)];
  return (row_line_.empty() ? 2 : row_line_[0]) + row;
}

namespace {
struct Splice {
  std::size_t begin, end;
  const std::string* raw;
};

std::vector<Splice> splices(const CsvTable& t, std::span<const CellEdit> edits) {
  std::vector<Splice> s;
  s.reserve(edits.size());
  for (const auto& e : edits) {
    DIDMARK_EXPECTS(e.row >= 0 && e.row < t.rows() && e.column >= 0 && e.column < t.columns(), invalid_argument,
                    "edit of cell (", e.row, ", ", e.column, ") is outside the table");
    const std::string_view raw = t.raw_cell(e.row, e.column);
    const auto b = static_cast<std::size_t>(raw.data() - t.text().data());
    s.push_back({b, b + raw.size(), &e.raw});
  }
  std::sort(s.begin(), s.end(), [](const Splice& a, const Splice& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < s.size(); ++i)
    DIDMARK_EXPECTS(s[i].begin >= s[i - 1].end && s[i].begin != s[i - 1].begin, invalid_argument,
                    "two edits of the same cell");
  return s;
}
}  // namespace

std::string CsvTable::render(std::span<const CellEdit> edits) const {
  const auto s = splices(*this, edits);
  std::string out;
  std::size_t extra = 0;
  for (const auto& sp : s) extra += sp.raw->size();
  out.reserve(text_.size() + extra);
  std::size_t at = 0;
  for (const auto& sp : s) {
    out.append(text_, at, sp.begin - at);
    out += *sp.raw;
    at = sp.end;
  }
  out.append(text_, at, std::string::npos);
  return out;
}

void CsvTable::write(const std::filesystem::path& path, std::span<const CellEdit> edits, bool overwrite) const {
  const auto s = splices(*this, edits);
  detail::AtomicFile f(path, overwrite);
  std::string buf;
  constexpr std::size_t kFlush = std::size_t{4} << 20;
  buf.reserve(kFlush + 4096);
  auto put = [&](const char* p, std::size_t len) {
    if (buf.size() + len > kFlush) {
      f.write(buf.data(), buf.size());
      buf.clear();
    }
    if (len >= kFlush) {
      f.write(p, len);
    } else {
      buf.append(p, len);
    }
  };
  std::size_t at = 0;
  for (const auto& sp : s) {
    put(text_.data() + at, sp.begin - at);
    put(sp.raw->data(), sp.raw->size());
    at = sp.end;
  }
  put(text_.data() + at, text_.size() - at);
  f.write(buf.data(), buf.size());
  f.commit();
}

// ---- decimal cells ----------------------------------------------------------------------

std::optional<DecimalCell> DecimalCell::parse(std::string_view s, bool decimal_comma) {
  DecimalCell c;
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) c.sign = s[i++];
  int digits = 0;
  uint64_t m = 0;
  const std::size_t int_begin = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    m = m * 10 + static_cast<uint64_t>(s[i] - '0');
    if (++digits > 18) return std::nullopt;
    ++i;
  }
  // Leading zeros ("007") set a width to keep; otherwise at least one digit ("0.5", "12").
  c.int_digits = digits > 1 && s[int_begin] == '0' ? digits : std::min(digits, 1);
  if (i < s.size() && (s[i] == '.' || (decimal_comma && s[i] == ','))) {
    c.point = true;
    c.point_char = s[i];
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      m = m * 10 + static_cast<uint64_t>(s[i] - '0');
      ++c.decimals;
      if (++digits > 18) return std::nullopt;
      ++i;
    }
  }
  if (i != s.size() || digits == 0) return std::nullopt;
  c.mantissa = m;
  return c;
}

std::string DecimalCell::format() const {
  std::string digits = std::to_string(mantissa);
  const auto need = static_cast<std::size_t>(int_digits + decimals);
  if (digits.size() < need) digits.insert(0, need - digits.size(), '0');
  std::string out;
  if (sign) out.push_back(sign);
  const std::size_t int_len = digits.size() - static_cast<std::size_t>(decimals);
  out.append(digits, 0, int_len);
  if (point) {
    out.push_back(point_char);
    out.append(digits, int_len, std::string::npos);
  }
  return out;
}

double DecimalCell::value() const {
  double v = static_cast<double>(mantissa);
  for (int i = 0; i < decimals; ++i) v /= 10.0;
  return sign == '-' ? -v : v;
}

}  // namespace didmark
