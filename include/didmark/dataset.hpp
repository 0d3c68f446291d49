#pragma once
/// \file dataset.hpp
/// Watermarks in datasets: tabular records (CSV) and float arrays (embeddings, features).
///
/// Tables (after Agrawal & Kiernan 2002). A keyed hash of each row's identity (the text of
/// one or more key columns) decides whether the row carries a mark (about 1 row in
/// `gamma`), in which numeric column, in which of the `bits` low-order bits of the cell's
/// decimal mantissa, and which payload bit it carries (XOR a keyed mask bit, so that a
/// table's own bit statistics never look like a mark). Only those cells change, by at most
/// 2^(bits-1) units in their last decimal place; every other byte of the file is kept.
/// Verification is blind: among the rows that should carry a mark, the number of cells whose
/// bit matches is tested with an exact binomial tail (no normal approximation), and the
/// payload is decoded by majority vote. Rows are found by their identity, never by position,
/// so subsets, shuffles, reordered columns and appended rows keep the mark.
///
/// Arrays (N x D). Every row gets its own spread-spectrum carrier, keyed by the row's
/// identity (an id array, or the row index when the caller promises a fixed order):
/// x_r += alpha_r * c_r * s_b with alpha_r = strength * RMS(x_r). The test statistic adds
/// each row's normalized correlation, so any subset of rows in any order verifies, with a
/// Hoeffding bound on the p-value. Cosine similarity to the original rows is reported
/// (>= 0.999 per row at the default strength).
///
/// Nothing about the parameters is written into the output: verification must be given the
/// same key columns, column set, gamma and bits as the embed (the defaults are the same).
///
/// Example:
/// \code
///   auto table = didmark::CsvTable::read("people.csv");
///   auto mark = didmark::embed_table(table, key, payload, {});
///   table.write("people.marked.csv", mark.edits);
///   auto marked = didmark::CsvTable::read("people.marked.csv");
///   didmark::Claim claim{key, payload};
///   auto v = didmark::verify_table(marked, std::span(&claim, 1), {})[0];
///   if (v.detected) ...   // p_value <= 1e-9
/// \endcode

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/limits.hpp"
#include "didmark/tensor.hpp"
#include "didmark/watermark.hpp"

namespace didmark {

// ---- CSV --------------------------------------------------------------------------------

/// A replacement of one cell's bytes (as they appear in the file, quotes included).
struct CellEdit {
  int64_t row = 0;  ///< data row (0 = the first line after the header)
  int column = 0;   ///< column index in the file
  std::string raw;  ///< new bytes of the cell
};

/// How a CSV file is read.
struct CsvOptions {
  /// Field separator: ',', ';', '\t' or '|'; 0 (the default) detects it from the header
  /// line: the candidate that splits the header into the most fields and the next lines
  /// (up to 16) into as many, ',' when none occurs. CsvTable::delimiter() says which was
  /// used and CsvTable::detected_delimiter() whether it was detected.
  char delimiter = 0;
  /// Most columns (kCsvMaxColumns by default).
  std::size_t max_columns = kCsvMaxColumns;
  /// Longest record in bytes (kCsvMaxRecordBytes by default).
  std::size_t max_record_bytes = kCsvMaxRecordBytes;
};

/// The delimiters CsvOptions::delimiter accepts (besides 0 for detection).
inline constexpr std::string_view kCsvDelimiters = ",;\t|";

/// A CSV table (RFC 4180): the file's bytes plus the position of every field.
///
/// Fields are separated by the delimiter (',' unless another is given or detected: ';', tab
/// and '|' are the others) and records by LF or CRLF (mixed is fine); a field may be quoted
/// with '"' and then hold delimiters, line breaks and doubled quotes. The first record is
/// the header. A UTF-8 byte order mark is kept and ignored. Every record must have as many
/// fields as the header. Malformed input throws Errc::corrupt_input naming the source, the
/// line and the column (both 1-based; the column counts bytes within the line) and the
/// field number, and saying what is likely wrong (CR-only line breaks, another delimiter);
/// messages quote at most a few names and count the rest. At most CsvOptions::max_columns
/// columns and max_record_bytes per record are read (kCsvMaxColumns, kCsvMaxRecordBytes),
/// so no line can make the reader balloon. Writing replaces only edited cells: all other
/// bytes are copied as read.
class CsvTable {
 public:
  CsvTable() = default;
  /// Parse `text`; `source` names it in error messages.
  static CsvTable parse(std::string text, std::string source = "<memory>", const CsvOptions& options = {});
  /// Read and parse a file (Errc::not_found / io_error when it cannot be read; FIFOs, devices
  /// and folders are refused without blocking, Errc::invalid_argument).
  static CsvTable read(const std::filesystem::path& path, const CsvOptions& options = {});

  int64_t rows() const noexcept { return rows_; }
  int columns() const noexcept { return static_cast<int>(header_.size()); }
  /// Column names, unquoted.
  const std::vector<std::string>& header() const noexcept { return header_; }
  /// Index of the column named `name` (exact match), or nullopt.
  std::optional<int> column_index(std::string_view name) const;
  /// The field separator used: ',', ';', '\t' or '|'.
  char delimiter() const noexcept { return delimiter_; }
  /// True when delimiter() was detected from the header line (CsvOptions::delimiter was 0).
  bool detected_delimiter() const noexcept { return detected_delimiter_; }
  /// Numbers may use ',' as their decimal point (the delimiter is not ','): pass this to
  /// DecimalCell::parse.
  bool decimal_comma() const noexcept { return delimiter_ != ','; }
  /// The column names for a message: the first `max` quoted (control characters escaped,
  /// long names cut), then "and N more".
  std::string describe_columns(std::size_t max = 8) const;

  /// The bytes of a data cell as in the file (quotes included).
  std::string_view raw_cell(int64_t row, int column) const;
  /// The value of a data cell: quotes removed and doubled quotes undone.
  std::string cell(int64_t row, int column) const;
  /// 1-based line number where data row `row` starts.
  int64_t line_of(int64_t row) const;
  /// The whole input.
  const std::string& text() const noexcept { return text_; }
  const std::string& source() const noexcept { return source_; }

  /// The table's bytes with `edits` applied (edits need not be sorted; one per cell).
  std::string render(std::span<const CellEdit> edits) const;
  /// render() to a file, atomically; refuses to replace an existing file unless `overwrite`.
  void write(const std::filesystem::path& path, std::span<const CellEdit> edits, bool overwrite = false) const;

 private:
  std::string text_;
  std::string source_;
  char delimiter_ = ',';
  bool detected_delimiter_ = false;
  std::vector<std::string> header_;
  int64_t rows_ = 0;
  std::size_t bom_ = 0;
  std::vector<uint64_t> row_start_;  ///< rows + 1: byte offset of each data record (last: end)
  /// rows * (columns + 1): field starts relative to the record start; entry `columns` is the
  /// end of the record's last field (before its line break).
  std::vector<uint32_t> field_pos_;
  std::vector<int64_t> row_line_;  ///< 1-based line of each data record
};

/// A plain decimal number as written in a CSV cell: [+|-] digits [. digits], at most 18
/// digits in all, no exponent, no spaces; with `decimal_comma`, ',' may be the decimal point
/// instead ("12,5", as files delimited by ';' write them), and format() writes it back.
/// The watermark works on the integer `mantissa` (all digits, the decimal point removed) at
/// the cell's own scale: '12.345' is 12345 with 3 decimals, '-007' is 7 with a '-' sign and
/// an integer width of 3.
struct DecimalCell {
  uint64_t mantissa = 0;
  int decimals = 0;    ///< digits after the point (the point is kept even with 0 of them)
  /// Minimum digits before the point: the count written when the integer part has leading
  /// zeros ('007' -> 3), else 1 ('12', '0.5'), or 0 for '.5'.
  int int_digits = 0;
  char sign = 0;       ///< 0, '+' or '-'
  bool point = false;  ///< the text has a decimal point
  char point_char = '.';  ///< the decimal point as written: '.' or ','

  /// nullopt when `text` is not such a number. `decimal_comma`: accept ',' as the point too
  /// (CsvTable::decimal_comma()).
  static std::optional<DecimalCell> parse(std::string_view text, bool decimal_comma = false);
  /// The text of this number: same sign, same number of decimals, the same decimal point,
  /// the integer part zero-padded to int_digits. parse(format()) gives back the same
  /// mantissa and scale, and format() of an unchanged parse is the original text.
  std::string format() const;
  /// The value as a double (for reports).
  double value() const;
};

// ---- Tables -----------------------------------------------------------------------------

inline constexpr uint32_t kDefaultTableGamma = 10;
inline constexpr uint32_t kDefaultTableBits = 2;
inline constexpr uint32_t kMaxTableBits = 16;
inline constexpr int kMaxTableColumns = 256;

struct TableOptions {
  /// Columns whose text is the row's identity (a primary key, or several immutable columns
  /// together). Empty: the first column named id, key, uuid, pk or ending in '_id' /
  /// ' id' (case-insensitive), else the first column.
  std::vector<std::string> key_columns;
  /// Columns that may carry marks. Empty: every non-key column whose non-empty cells are
  /// plain decimal numbers (at least 95% of them, in a sample of up to 65536 rows).
  std::vector<std::string> columns;
  /// About 1 row in gamma carries a mark (>= 1).
  uint32_t gamma = kDefaultTableGamma;
  /// The mark goes into one of the `bits` lowest bits of the mantissa (1..16).
  uint32_t bits = kDefaultTableBits;
  /// Verification: `detected` when the p-value is at most this.
  double p_threshold = 1e-9;
};

struct TableEmbedReport {
  int64_t rows = 0;
  int64_t rows_selected = 0;   ///< rows the key picked (about rows / gamma)
  int64_t cells_marked = 0;    ///< selected cells that hold a number and now carry their bit
  int64_t cells_changed = 0;   ///< of those, the cells whose text changed (about half)
  int64_t cells_skipped = 0;   ///< selected cells that are empty or not a plain decimal number
  std::vector<std::string> key_columns;
  std::vector<std::string> columns;
  double mean_abs_change_units = 0;  ///< mean |change| of changed cells, in last-place units
  double max_relative_change = 0;    ///< max |change| / |value| over changed non-zero cells
  double mean_relative_change = 0;
  uint32_t gamma = 0, bits = 0;
  char delimiter = ',';  ///< the CSV's field separator
  double seconds = 0;
  std::string backend;
};

/// An embed's result: the report and the cell edits to write with CsvTable::write/render.
struct TableMark {
  TableEmbedReport report;
  std::vector<CellEdit> edits;
};

struct TableVerifyReport {
  bool detected = false;
  double z = 0;         ///< normal equivalent of the p-value: sqrt(-2 ln p)
  double p_value = 1;   ///< exact binomial tail P(X >= matches), X ~ Bin(marked_rows, 1/2)
  double log10_p = 0;
  int64_t rows = 0;         ///< data rows in the table
  int64_t marked_rows = 0;  ///< distinct row identities the key selects whose cell holds a number
  int64_t matches = 0;      ///< of those, cells whose bit agrees with the claimed payload
  int64_t duplicate_rows = 0;  ///< selected rows left out because their identity came earlier
  int bits = 0;             ///< payload length
  int bit_errors = 0;       ///< majority-decoded bits that differ from the claim (uncovered count)
  int bits_covered = 0;     ///< payload bits with at least one vote
  std::vector<uint8_t> decoded;
  std::vector<int32_t> votes;  ///< per payload bit: (#votes for 1) - (#votes for 0)
  int columns = 0;
  /// The columns the test used: the key column(s) and the columns that may carry the mark,
  /// and the CSV's field separator (',' ';' '\t' '|').
  std::vector<std::string> key_column_names;
  std::vector<std::string> mark_column_names;
  char delimiter = ',';
  double seconds = 0;
};

/// Mark a table. Returns the edits; `table` is not changed.
TableMark embed_table(const CsvTable& table, const WatermarkKey& key, const Payload& payload,
                      const TableOptions& options = {}, Backend& backend = default_backend());

/// Test every claim against the table (the table is scanned once for all of them).
std::vector<TableVerifyReport> verify_table(const CsvTable& table, std::span<const Claim> claims,
                                            const TableOptions& options = {}, Backend& backend = default_backend());

/// The key and candidate columns `options` resolve to on `table` (column indices), as
/// embed_table and verify_table use them. Throws Errc::invalid_argument naming a missing
/// column, or when no column is left to mark.
struct TableColumns {
  std::vector<int> key;
  std::vector<int> marked;
};
TableColumns resolve_table_columns(const CsvTable& table, const TableOptions& options);

// ---- Float arrays -----------------------------------------------------------------------

/// Default per-row relative change: cosine similarity to the original row is about
/// 1 / sqrt(1 + s^2) = 0.99955 at s = 0.03.
inline constexpr double kDefaultArrayStrength = 0.03;

struct ArrayOptions {
  /// Per-row relative change ||dx_r|| / ||x_r|| (0 < strength <= 0.2).
  double strength = kDefaultArrayStrength;
  /// Embed reports within_budget = false when a marked row's cosine falls below this.
  double min_cosine = 0.999;
  /// Verification: `detected` when the p-value bound is at most this.
  double p_threshold = 1e-9;
};

struct ArrayEmbedReport {
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t rows_marked = 0;
  int64_t rows_skipped = 0;  ///< all-zero rows and rows holding NaN/Inf (copied unchanged)
  double relative_change = 0;       ///< sqrt(sum ||dx||^2 / sum ||x||^2) over marked rows
  double mean_row_change = 0;       ///< mean of ||dx_r|| / ||x_r||
  double max_row_change = 0;
  double min_cosine = 1;            ///< over marked rows, as stored (after rounding)
  double mean_cosine = 1;
  bool within_budget = true;        ///< every marked row's cosine >= options.min_cosine
  double expected_z = 0;            ///< strength * sqrt(rows_marked * dim)
  std::vector<float> row_cosine;    ///< per row (1 for skipped rows)
  std::vector<float> row_change;    ///< per row ||dx_r|| / ||x_r|| (0 for skipped rows)
  double strength = 0;
  double seconds = 0;
  std::string backend;
};

struct ArrayVerifyReport {
  bool detected = false;
  double z = 0;        ///< sum of the rows' normalized correlations / sqrt(rows)
  double p_value = 1;  ///< Hoeffding bound exp(-z^2/2)
  double log10_p = 0;
  int64_t rows = 0;            ///< rows counted
  int64_t rows_skipped = 0;    ///< all-zero or non-finite rows
  int64_t duplicate_rows = 0;  ///< rows whose id came earlier (left out)
  int64_t dim = 0;
  int bits = 0;
  int bit_errors = 0;
  std::vector<float> soft_bits;
  std::vector<uint8_t> decoded;
  double seconds = 0;
};

/// Mark the rows of a 2-D array (f32, f64, f16 or bf16; a 1-D array is one row per element
/// and refused). `ids` gives each row's identity (size N); empty means the row index, for
/// arrays whose order is fixed. dst may alias src. Host views (and device views on the CUDA
/// backend).
ArrayEmbedReport embed_array(const TensorView& src, const TensorView& dst, std::span<const int64_t> ids,
                             const WatermarkKey& key, const Payload& payload, const ArrayOptions& options = {},
                             Backend& backend = default_backend());

/// Test every claim against the array, reading it once. Rows with a repeated id count once.
std::vector<ArrayVerifyReport> verify_array(const TensorView& x, std::span<const int64_t> ids,
                                            std::span<const Claim> claims, const ArrayOptions& options = {},
                                            Backend& backend = default_backend());

/// Elements (rows * dim) an array needs at `strength` so that an intact mark is provable at
/// p <= p_threshold: (provable_z / strength)^2 (the z threshold plus a margin of 2, so that
/// the marked array is detected 97.7% of the time). 80,000 at the defaults; keep several
/// times that after the attacks one expects (a 10% subset needs 10x).
int64_t array_min_elements(double strength = kDefaultArrayStrength, double p_threshold = 1e-9);

// ---- Built-in synthetic data (demos, tests, benchmarks) ------------------------------------

/// A customer-like table of `rows` rows: id (unique integer), name (some quoted, with commas
/// and doubled quotes), city, age, income (2 decimals), score (3 decimals), visits; LF line
/// breaks. Deterministic for a seed.
std::string synthetic_table_csv(int64_t rows, uint64_t seed = 1);

/// An embedding-like rows x dim f32 array (row-major): Gaussian rows scaled to unit norm.
std::vector<float> synthetic_embeddings(int64_t rows, int64_t dim, uint64_t seed = 1);

}  // namespace didmark
