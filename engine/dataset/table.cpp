// Table marks (after Agrawal & Kiernan 2002), written once against the dataset op table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "backend/dataset_ops.hpp"
#include "common/thread_pool.hpp"
#include "didmark/dataset.hpp"
#include "common/strings.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kRowsPerTask = 1 << 15;
constexpr int64_t kNumericSample = 1 << 16;
constexpr double kNumericShare = 0.95;
constexpr uint64_t kMaxMantissa = 999'999'999'999'999'999ull;  // 18 digits

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }



int find_column(const CsvTable& t, const std::string& name, const char* what) {
  const auto i = t.column_index(name);
  DIDMARK_EXPECTS(i.has_value(), invalid_argument, what, " '", name, "' is not a column of ", t.source(),
                  " (columns: ", t.describe_columns(), ")");
  return *i;
}

/// The text of a cell as a number's candidate: quotes removed (a quoted number stays a
/// number); nullopt when the quoted text holds a quote itself.
std::optional<std::string_view> cell_text(std::string_view raw) {
  if (raw.size() >= 2 && raw.front() == '"') {
    raw = raw.substr(1, raw.size() - 2);
    if (raw.find('"') != std::string_view::npos) return std::nullopt;
  }
  return raw;
}

std::optional<DecimalCell> number_of(std::string_view raw, bool decimal_comma) {
  const auto text = cell_text(raw);
  if (!text) return std::nullopt;
  return DecimalCell::parse(*text, decimal_comma);
}

void check_options(const TableOptions& o) {
  DIDMARK_EXPECTS(o.gamma >= 1, invalid_argument, "gamma must be at least 1 (1 row in gamma carries a mark)");
  DIDMARK_EXPECTS(o.bits >= 1 && o.bits <= kMaxTableBits, invalid_argument, "bits must be in 1..", kMaxTableBits,
                  ", got ", o.bits);
  DIDMARK_EXPECTS(o.p_threshold > 0 && o.p_threshold < 1, invalid_argument, "p threshold must be in (0, 1), got ",
                  o.p_threshold);
}

void check_payload(const Payload& p) {
  DIDMARK_EXPECTS(!p.bits.empty() && p.bits.size() <= kMaxPayloadBits, invalid_argument, "payload has ",
                  p.bits.size(), " bits; 1..", kMaxPayloadBits, " are supported");
}

/// Row identities: the key columns' unquoted text, hashed (table_math.hpp).
std::vector<uint64_t> row_ids(Backend& backend, const CsvTable& t, const std::vector<int>& key) {
  std::vector<uint64_t> ids(static_cast<std::size_t>(t.rows()));
  const int64_t tasks = (t.rows() + kRowsPerTask - 1) / kRowsPerTask;
  backend.host_pool().parallel_for(tasks, [&](int, int64_t task) {
    const int64_t r1 = std::min(t.rows(), (task + 1) * kRowsPerTask);
    std::string scratch;
    for (int64_t r = task * kRowsPerTask; r < r1; ++r) {
      uint64_t h = dataset::kIdentitySeed;
      for (std::size_t k = 0; k < key.size(); ++k) {
        if (k > 0) h = dataset::identity_separator(h);
        std::string_view raw = t.raw_cell(r, key[k]);
        if (raw.size() >= 2 && raw.front() == '"') {
          raw = raw.substr(1, raw.size() - 2);
          if (raw.find('"') != std::string_view::npos) {
            scratch = t.cell(r, key[k]);
            raw = scratch;
          }
        }
        h = dataset::identity_update(h, raw.data(), raw.size());
      }
      ids[static_cast<std::size_t>(r)] = dataset::identity_finish(h);
    }
  });
  return ids;
}

struct Keyed {
  dataset::TableSpec spec;
  std::vector<uint64_t> col_keys;
};

Keyed keyed(const WatermarkKey& key, const CsvTable& t, const std::vector<int>& marked, const TableOptions& o,
            uint32_t num_bits) {
  // derive_carrier mixes all 256 key bits into a 64-bit Philox key and a 64-bit stream.
  const detail::CarrierSpec c = derive_carrier(key, std::string_view("didmark/table/v1"), num_bits);
  Keyed k;
  k.spec = dataset::TableSpec{c.key, c.stream, o.gamma, o.bits, num_bits, static_cast<uint32_t>(marked.size())};
  for (int col : marked) {
    const std::string& name = t.header()[static_cast<std::size_t>(col)];
    const uint64_t h = dataset::identity_finish(dataset::identity_update(dataset::kIdentitySeed, name.data(), name.size()));
    const detail::u32x4 r = detail::philox4x32_10(
        {static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32), c.stream.x, c.stream.y ^ 0x40000000u}, c.key);
    k.col_keys.push_back((static_cast<uint64_t>(r.x) << 32) | r.y);
  }
  return k;
}

std::vector<uint32_t> select_rows(Backend& backend, const std::vector<uint64_t>& ids, const Keyed& k) {
  std::vector<uint32_t> slots(ids.size());
  backend.dataset_ops().table_select(ids, k.spec, k.col_keys, slots);
  return slots;
}

}  // namespace

TableColumns resolve_table_columns(const CsvTable& t, const TableOptions& o) {
  TableColumns tc;
  DIDMARK_EXPECTS(t.columns() >= 2, invalid_argument, t.source(),
                  ": a table needs a key column and at least one column to mark (it has ", t.columns(), ")");
  if (o.key_columns.empty()) {
    int pick = 0;
    for (int i = 0; i < t.columns(); ++i) {
      const std::string h = detail::ascii_lower(t.header()[static_cast<std::size_t>(i)]);
      if (h == "id" || h == "key" || h == "uuid" || h == "pk" || h.ends_with("_id") || h.ends_with(" id")) {
        pick = i;
        break;
      }
    }
    tc.key.push_back(pick);
  } else {
    for (const auto& name : o.key_columns) {
      const int i = find_column(t, name, "key column");
      DIDMARK_EXPECTS(std::find(tc.key.begin(), tc.key.end(), i) == tc.key.end(), invalid_argument, "key column '",
                      name, "' is named twice");
      tc.key.push_back(i);
    }
  }
  auto is_key = [&](int i) { return std::find(tc.key.begin(), tc.key.end(), i) != tc.key.end(); };
  if (!o.columns.empty()) {
    for (const auto& name : o.columns) {
      const int i = find_column(t, name, "column");
      DIDMARK_EXPECTS(!is_key(i), invalid_argument, "column '", name,
                      "' is a key column: the row identity cannot also carry the mark");
      if (std::find(tc.marked.begin(), tc.marked.end(), i) == tc.marked.end()) tc.marked.push_back(i);
    }
  } else {
    const int64_t n = std::min(t.rows(), kNumericSample);
    for (int c = 0; c < t.columns(); ++c) {
      if (is_key(c)) continue;
      int64_t nonempty = 0, numeric = 0;
      for (int64_t s = 0; s < n; ++s) {
        const int64_t r = n == t.rows() ? s : static_cast<int64_t>(static_cast<double>(s) * static_cast<double>(t.rows()) / static_cast<double>(n));
        const std::string_view raw = t.raw_cell(r, c);
        if (raw.empty() || raw == "\"\"") continue;
        ++nonempty;
        numeric += number_of(raw, t.decimal_comma()).has_value() ? 1 : 0;
      }
      if (numeric > 0 && static_cast<double>(numeric) >= kNumericShare * static_cast<double>(nonempty))
        tc.marked.push_back(c);
    }
    DIDMARK_EXPECTS(!tc.marked.empty(), invalid_argument, t.source(),
                    ": no numeric column to mark (plain decimal numbers such as 12 or -3.50); name one with "
                    "--columns (columns: ", t.describe_columns(), ")");
  }
  DIDMARK_EXPECTS(static_cast<int>(tc.marked.size()) <= kMaxTableColumns, invalid_argument, tc.marked.size(),
                  " columns to mark; at most ", kMaxTableColumns, " are supported");
  return tc;
}

TableMark embed_table(const CsvTable& table, const WatermarkKey& key, const Payload& payload,
                      const TableOptions& options, Backend& backend) {
  const auto t0 = Clock::now();
  check_options(options);
  check_payload(payload);
  const TableColumns cols = resolve_table_columns(table, options);
  const auto ids = row_ids(backend, table, cols.key);
  const Keyed k = keyed(key, table, cols.marked, options, static_cast<uint32_t>(payload.size()));
  const auto slots = select_rows(backend, ids, k);

  struct Part {
    std::vector<CellEdit> edits;
    int64_t selected = 0, marked = 0, changed = 0, skipped = 0;
    double abs_units = 0, rel_sum = 0, rel_max = 0;
    int64_t rel_count = 0;
  };
  const int64_t tasks = (table.rows() + kRowsPerTask - 1) / kRowsPerTask;
  std::vector<Part> parts(static_cast<std::size_t>(tasks));
  backend.host_pool().parallel_for(tasks, [&](int, int64_t task) {
    Part& p = parts[static_cast<std::size_t>(task)];
    const int64_t r1 = std::min(table.rows(), (task + 1) * kRowsPerTask);
    for (int64_t r = task * kRowsPerTask; r < r1; ++r) {
      const uint32_t s = slots[static_cast<std::size_t>(r)];
      if (!dataset::slot_selected(s)) continue;
      ++p.selected;
      const int col = cols.marked[dataset::slot_column(s)];
      const std::string_view raw = table.raw_cell(r, col);
      auto num = number_of(raw, table.decimal_comma());
      const uint32_t j = dataset::slot_low_bit(s);
      const uint64_t want = payload.bits[dataset::slot_payload(s)] ^ dataset::slot_mask(s);
      if (!num || (num->mantissa | (uint64_t{1} << j)) > kMaxMantissa) {
        ++p.skipped;
        continue;
      }
      ++p.marked;
      if (((num->mantissa >> j) & 1u) == want) continue;
      const uint64_t before = num->mantissa;
      num->mantissa ^= uint64_t{1} << j;
      const bool quoted = raw.front() == '"';
      p.edits.push_back({r, col, quoted ? "\"" + num->format() + "\"" : num->format()});
      ++p.changed;
      const double units = std::ldexp(1.0, static_cast<int>(j));
      p.abs_units += units;
      if (before > 0) {
        const double rel = units / static_cast<double>(before);
        p.rel_sum += rel;
        p.rel_max = std::max(p.rel_max, rel);
        ++p.rel_count;
      }
    }
  });

  TableMark out;
  TableEmbedReport& rep = out.report;
  rep.rows = table.rows();
  int64_t rel_count = 0;
  double abs_units = 0, rel_sum = 0;
  for (auto& p : parts) {
    rep.rows_selected += p.selected;
    rep.cells_marked += p.marked;
    rep.cells_changed += p.changed;
    rep.cells_skipped += p.skipped;
    abs_units += p.abs_units;
    rel_sum += p.rel_sum;
    rel_count += p.rel_count;
    rep.max_relative_change = std::max(rep.max_relative_change, p.rel_max);
    out.edits.insert(out.edits.end(), std::make_move_iterator(p.edits.begin()), std::make_move_iterator(p.edits.end()));
  }
  rep.mean_abs_change_units = rep.cells_changed > 0 ? abs_units / static_cast<double>(rep.cells_changed) : 0.0;
  rep.mean_relative_change = rel_count > 0 ? rel_sum / static_cast<double>(rel_count) : 0.0;
  for (int c : cols.key) rep.key_columns.push_back(table.header()[static_cast<std::size_t>(c)]);
  for (int c : cols.marked) rep.columns.push_back(table.header()[static_cast<std::size_t>(c)]);
  rep.gamma = options.gamma;
  rep.delimiter = table.delimiter();
  rep.bits = options.bits;
  rep.backend = backend.dataset_ops().name();
  rep.seconds = seconds_since(t0);
  return out;
}

std::vector<TableVerifyReport> verify_table(const CsvTable& table, std::span<const Claim> claims,
                                            const TableOptions& options, Backend& backend) {
  const auto t0 = Clock::now();
  check_options(options);
  if (claims.empty()) return {};
  for (const auto& c : claims) check_payload(c.payload);
  const TableColumns cols = resolve_table_columns(table, options);
  const auto ids = row_ids(backend, table, cols.key);
  const double log10_threshold = std::log10(options.p_threshold);

  std::vector<TableVerifyReport> out;
  out.reserve(claims.size());
  struct Vote {
    uint64_t id;
    int64_t row;
    uint32_t payload_index;
    uint8_t bit;  // the payload bit this cell claims: cell bit XOR mask
  };
  for (const Claim& claim : claims) {
    const auto L = static_cast<uint32_t>(claim.payload.size());
    const Keyed k = keyed(claim.key, table, cols.marked, options, L);
    const auto slots = select_rows(backend, ids, k);

    const int64_t tasks = (table.rows() + kRowsPerTask - 1) / kRowsPerTask;
    std::vector<std::vector<Vote>> parts(static_cast<std::size_t>(tasks));
    backend.host_pool().parallel_for(tasks, [&](int, int64_t task) {
      auto& v = parts[static_cast<std::size_t>(task)];
      const int64_t r1 = std::min(table.rows(), (task + 1) * kRowsPerTask);
      for (int64_t r = task * kRowsPerTask; r < r1; ++r) {
        const uint32_t s = slots[static_cast<std::size_t>(r)];
        if (!dataset::slot_selected(s)) continue;
        const auto num = number_of(table.raw_cell(r, cols.marked[dataset::slot_column(s)]), table.decimal_comma());
        if (!num) continue;
        const auto bit = static_cast<uint8_t>(((num->mantissa >> dataset::slot_low_bit(s)) & 1u) ^ dataset::slot_mask(s));
        v.push_back({ids[static_cast<std::size_t>(r)], r, dataset::slot_payload(s), bit});
      }
    });
    std::vector<Vote> votes;
    for (auto& p : parts) votes.insert(votes.end(), p.begin(), p.end());
    // One vote per identity (its first row): repeated identities are not independent trials.
    std::sort(votes.begin(), votes.end(),
              [](const Vote& a, const Vote& b) { return a.id != b.id ? a.id < b.id : a.row < b.row; });

    TableVerifyReport rep;
    rep.rows = table.rows();
    rep.bits = static_cast<int>(L);
    rep.columns = static_cast<int>(cols.marked.size());
    for (int c : cols.key) rep.key_column_names.push_back(table.header()[static_cast<std::size_t>(c)]);
    for (int c : cols.marked) rep.mark_column_names.push_back(table.header()[static_cast<std::size_t>(c)]);
    rep.delimiter = table.delimiter();
    rep.votes.assign(L, 0);
    for (std::size_t i = 0; i < votes.size(); ++i) {
      if (i > 0 && votes[i].id == votes[i - 1].id) {
        ++rep.duplicate_rows;
        continue;
      }
      const Vote& v = votes[i];
      ++rep.marked_rows;
      rep.matches += v.bit == claim.payload.bits[v.payload_index] ? 1 : 0;
      rep.votes[v.payload_index] += v.bit ? 1 : -1;
    }
    rep.decoded.assign(L, 0);
    std::vector<uint8_t> covered(L, 0);
    for (const auto& v : votes) covered[v.payload_index] = 1;
    for (uint32_t b = 0; b < L; ++b) {
      rep.decoded[b] = rep.votes[b] > 0 ? 1 : 0;
      rep.bits_covered += covered[b];
      rep.bit_errors += (!covered[b] || rep.decoded[b] != claim.payload.bits[b]) ? 1 : 0;
    }
    DIDMARK_EXPECTS(rep.marked_rows <= std::numeric_limits<int>::max(), unsupported, "more than 2^31 marked rows");
    rep.log10_p = binomial_tail_log10(static_cast<int>(rep.marked_rows), static_cast<int>(rep.matches));
    rep.p_value = std::pow(10.0, rep.log10_p);
    rep.z = rep.log10_p < 0 ? std::sqrt(-2.0 * rep.log10_p * std::log(10.0)) : 0.0;
    rep.detected = rep.marked_rows > 0 && rep.log10_p <= log10_threshold;
    out.push_back(std::move(rep));
  }
  const double secs = seconds_since(t0);
  for (auto& r : out) r.seconds = secs;
  return out;
}

}  // namespace didmark
