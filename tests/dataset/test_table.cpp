// Table marks: round trip, byte identity, the attacks of the issue, false positives.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "backend/dataset_ops.hpp"
#include "didmark/detail/dataset_table.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "test_util.hpp"

using namespace didmark;

namespace {

/// A table as rows of raw cells, for attacks that rebuild the file.
struct Rows {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  static Rows of(const CsvTable& t) {
    Rows r;
    for (int c = 0; c < t.columns(); ++c) {
      const std::string& h = t.header()[static_cast<std::size_t>(c)];
      r.header.push_back(h);
    }
    for (int64_t i = 0; i < t.rows(); ++i) {
      std::vector<std::string> row;
      for (int c = 0; c < t.columns(); ++c) row.emplace_back(t.raw_cell(i, c));
      r.rows.push_back(std::move(row));
    }
    return r;
  }
  CsvTable table() const {
    std::string s;
    for (std::size_t c = 0; c < header.size(); ++c) s += (c ? "," : "") + header[c];
    s += "\n";
    for (const auto& row : rows) {
      for (std::size_t c = 0; c < row.size(); ++c) s += (c ? "," : "") + row[c];
      s += "\n";
    }
    return CsvTable::parse(std::move(s));
  }
};

struct Fixture {
  CsvTable original;
  CsvTable marked;
  TableMark mark;
  WatermarkKey key = test::random_key(11);
  Payload payload = test::random_payload(12);
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    x.original = CsvTable::parse(synthetic_table_csv(20000, 5), "synthetic.csv");
    x.mark = embed_table(x.original, x.key, x.payload);
    x.marked = CsvTable::parse(x.original.render(x.mark.edits), "marked.csv");
    return x;
  }();
  return f;
}

TableVerifyReport check(const CsvTable& t, const WatermarkKey& k, const Payload& p, const TableOptions& o = {}) {
  const Claim c{k, p};
  return verify_table(t, std::span(&c, 1), o)[0];
}

}  // namespace

TEST(TableMark, RoundTripKeepsEveryUnmarkedByte) {
  const Fixture& f = fixture();
  const auto& rep = f.mark.report;
  EXPECT_EQ(rep.rows, 20000);
  EXPECT_EQ(rep.key_columns, std::vector<std::string>{"id"});
  EXPECT_EQ(rep.columns, (std::vector<std::string>{"age", "income", "score", "visits"}));
  EXPECT_NEAR(static_cast<double>(rep.rows_selected), 2000.0, 4 * std::sqrt(1800.0));
  EXPECT_EQ(rep.cells_marked + rep.cells_skipped, rep.rows_selected);
  EXPECT_EQ(rep.cells_skipped, 0);
  EXPECT_NEAR(static_cast<double>(rep.cells_changed), rep.cells_marked / 2.0, 4 * std::sqrt(rep.cells_marked / 4.0));
  EXPECT_EQ(static_cast<int64_t>(f.mark.edits.size()), rep.cells_changed);
  EXPECT_GE(rep.mean_abs_change_units, 1.0);
  EXPECT_LE(rep.mean_abs_change_units, 2.0);

  // Header, line breaks, quoting and every cell not edited: byte for byte.
  ASSERT_EQ(f.marked.rows(), f.original.rows());
  ASSERT_EQ(f.marked.header(), f.original.header());
  std::set<std::pair<int64_t, int>> edited;
  for (const auto& e : f.mark.edits) edited.insert({e.row, e.column});
  int64_t differing = 0;
  for (int64_t r = 0; r < f.original.rows(); ++r)
    for (int c = 0; c < f.original.columns(); ++c) {
      const auto a = f.original.raw_cell(r, c), b = f.marked.raw_cell(r, c);
      if (!edited.count({r, c})) {
        ASSERT_EQ(a, b) << "row " << r << " column " << c;
        continue;
      }
      ++differing;
      // An edited cell: same scale, one low-order bit of the mantissa flipped.
      const auto da = DecimalCell::parse(a).value(), db = DecimalCell::parse(b).value();
      EXPECT_EQ(da.decimals, db.decimals);
      const uint64_t x = da.mantissa ^ db.mantissa;
      EXPECT_TRUE(x == 1 || x == 2) << a << " -> " << b;
    }
  EXPECT_EQ(differing, rep.cells_changed);
  const std::string bytes = f.original.render(f.mark.edits);
  EXPECT_EQ(bytes.substr(0, bytes.find('\n')), f.original.text().substr(0, f.original.text().find('\n')));

  const auto v = check(f.marked, f.key, f.payload);
  EXPECT_TRUE(v.detected);
  EXPECT_EQ(v.matches, v.marked_rows);
  EXPECT_EQ(v.marked_rows, rep.cells_marked);
  EXPECT_LE(v.log10_p, -500);
  // Majority decode: every covered bit right.
  EXPECT_EQ(v.bit_errors, v.bits - v.bits_covered);
  EXPECT_GE(v.bits_covered, 250);

  const auto vo = check(f.original, f.key, f.payload);
  EXPECT_FALSE(vo.detected);
  EXPECT_GT(vo.log10_p, -9);
  EXPECT_NEAR(static_cast<double>(vo.matches), vo.marked_rows / 2.0, 5 * std::sqrt(vo.marked_rows / 4.0));
}

TEST(TableMark, DeterministicAndKeyed) {
  const Fixture& f = fixture();
  const auto again = embed_table(f.original, f.key, f.payload);
  ASSERT_EQ(again.edits.size(), f.mark.edits.size());
  for (std::size_t i = 0; i < again.edits.size(); ++i) EXPECT_EQ(again.edits[i].raw, f.mark.edits[i].raw);
  // Marking twice changes nothing more.
  EXPECT_TRUE(embed_table(f.marked, f.key, f.payload).edits.empty());
  WatermarkKey other = f.key;
  other.bytes[31] ^= 0x80;  // the last key byte matters too
  EXPECT_FALSE(check(f.marked, other, f.payload).detected);
  EXPECT_FALSE(check(f.marked, f.key, test::random_payload(99)).detected);
}

TEST(TableMark, SurvivesTenPercentSubset) {
  const Fixture& f = fixture();
  Rows r = Rows::of(f.marked);
  std::mt19937_64 rng(1);
  std::shuffle(r.rows.begin(), r.rows.end(), rng);
  r.rows.resize(r.rows.size() / 10);
  const auto v = check(r.table(), f.key, f.payload);
  EXPECT_TRUE(v.detected) << v.log10_p;
  EXPECT_EQ(v.matches, v.marked_rows);
  EXPECT_GE(v.marked_rows, 150);
}

TEST(TableMark, SurvivesShuffledRows) {
  const Fixture& f = fixture();
  Rows r = Rows::of(f.marked);
  std::mt19937_64 rng(2);
  std::shuffle(r.rows.begin(), r.rows.end(), rng);
  const auto v = check(r.table(), f.key, f.payload);
  EXPECT_TRUE(v.detected);
  EXPECT_EQ(v.matches, f.mark.report.cells_marked);
}

TEST(TableMark, SurvivesReorderedAndDroppedColumns) {
  const Fixture& f = fixture();
  Rows r = Rows::of(f.marked);
  const std::vector<std::size_t> perm{4, 2, 6, 0, 5, 1, 3};
  Rows p;
  for (auto i : perm) p.header.push_back(r.header[i]);
  for (const auto& row : r.rows) {
    std::vector<std::string> out;
    for (auto i : perm) out.push_back(row[i]);
    p.rows.push_back(std::move(out));
  }
  const auto v = check(p.table(), f.key, f.payload);
  EXPECT_TRUE(v.detected);
  EXPECT_EQ(v.matches, f.mark.report.cells_marked);

  // Dropping one of four marked columns moves only the rows that had chosen it.
  Rows d = r;
  d.header.erase(d.header.begin() + 3);  // age
  for (auto& row : d.rows) row.erase(row.begin() + 3);
  const auto vd = check(d.table(), f.key, f.payload);
  EXPECT_TRUE(vd.detected);
  EXPECT_GT(static_cast<double>(vd.matches), 0.8 * static_cast<double>(vd.marked_rows));
}

TEST(TableMark, SurvivesAppendedForeignRows) {
  const Fixture& f = fixture();
  Rows r = Rows::of(f.marked);
  const Rows foreign = Rows::of(CsvTable::parse(synthetic_table_csv(2000, 77)));
  for (auto row : foreign.rows) {
    row[0] = std::to_string(900000 + std::stoll(row[0]));  // identities of their own
    r.rows.push_back(std::move(row));
  }
  std::mt19937_64 rng(3);
  std::shuffle(r.rows.begin(), r.rows.end(), rng);
  const auto v = check(r.table(), f.key, f.payload);
  EXPECT_TRUE(v.detected);
  EXPECT_GE(v.matches, f.mark.report.cells_marked);
  EXPECT_LT(v.matches, v.marked_rows);
}

TEST(TableMark, SurvivesRandomizingHalfTheMarkedCells) {
  const Fixture& f = fixture();
  const TableColumns cols = resolve_table_columns(f.marked, {});
  Rows r = Rows::of(f.marked);
  std::mt19937_64 rng(4);
  int64_t randomized = 0;
  // Randomize half of all cells of the marked columns (the attacker does not know which
  // carry the mark): about half of the marked cells get a random value.
  for (auto& row : r.rows)
    for (int c : cols.marked) {
      if (rng() & 1) continue;
      auto d = DecimalCell::parse(row[static_cast<std::size_t>(c)]).value();
      d.mantissa = rng() % 100000;
      row[static_cast<std::size_t>(c)] = d.format();
      ++randomized;
    }
  EXPECT_GT(randomized, 30000);
  const auto v = check(r.table(), f.key, f.payload);
  EXPECT_TRUE(v.detected) << v.log10_p;
  EXPECT_NEAR(static_cast<double>(v.matches) / static_cast<double>(v.marked_rows), 0.75, 0.05);
}

TEST(TableMark, RepeatedIdentitiesCountOnce) {
  const Fixture& f = fixture();
  Rows r = Rows::of(f.marked);
  const auto n = r.rows.size();
  for (std::size_t i = 0; i < n; ++i) r.rows.push_back(r.rows[i]);
  const auto v = check(r.table(), f.key, f.payload);
  EXPECT_TRUE(v.detected);
  EXPECT_EQ(v.marked_rows, f.mark.report.cells_marked);
  EXPECT_EQ(v.duplicate_rows, f.mark.report.cells_marked);
}

TEST(TableMark, FalsePositivesOverTenThousandKeys) {
  const Fixture& f = fixture();
  // A smaller table keeps 10^4 keys quick; the test is the same at any size.
  Rows r = Rows::of(f.marked);
  r.rows.resize(3000);
  const CsvTable t = r.table();
  constexpr int kKeys = 10000;
  std::vector<Claim> claims;
  for (int i = 0; i < kKeys; ++i) claims.push_back({test::random_key(1000 + static_cast<uint64_t>(i)), f.payload});
  const auto reports = verify_table(t, claims);
  int below_1e2 = 0, below_1e3 = 0, detected = 0;
  for (const auto& v : reports) {
    below_1e2 += v.p_value <= 1e-2;
    below_1e3 += v.p_value <= 1e-3;
    detected += v.detected;
    ASSERT_GT(v.marked_rows, 200);
  }
  // The exact tail is a valid p-value: P(p <= a) <= a. Allow 4 sigma of sampling noise.
  EXPECT_LE(below_1e2, 100 + 4 * 10);
  EXPECT_LE(below_1e3, 10 + 4 * 3.2);
  EXPECT_GE(below_1e2, 20);  // and not absurdly conservative
  EXPECT_EQ(detected, 0);
  EXPECT_TRUE(check(t, f.key, f.payload).detected);
}

TEST(TableMark, OptionsAndErrors) {
  const Fixture& f = fixture();
  TableOptions o;
  o.key_columns = {"name", "city"};
  o.columns = {"income"};
  o.gamma = 4;
  o.bits = 1;
  const auto m = embed_table(f.original, f.key, f.payload, o);
  EXPECT_EQ(m.report.columns, std::vector<std::string>{"income"});
  for (const auto& e : m.edits) EXPECT_EQ(e.column, 4);
  const auto t = CsvTable::parse(f.original.render(m.edits));
  EXPECT_TRUE(check(t, f.key, f.payload, o).detected);
  // Parameters are not stored: other parameters find nothing.
  EXPECT_FALSE(check(t, f.key, f.payload).detected);

  TableOptions bad;
  bad.columns = {"salary"};
  EXPECT_THROW(embed_table(f.original, f.key, f.payload, bad), Error);
  bad = {};
  bad.key_columns = {"id"};
  bad.columns = {"id"};
  EXPECT_THROW(embed_table(f.original, f.key, f.payload, bad), Error);
  bad = {};
  bad.gamma = 0;
  EXPECT_THROW(embed_table(f.original, f.key, f.payload, bad), Error);
  bad = {};
  bad.bits = 17;
  EXPECT_THROW(embed_table(f.original, f.key, f.payload, bad), Error);
  const auto text_only = CsvTable::parse("id,name\n1,a\n2,b\n");
  try {
    embed_table(text_only, f.key, f.payload);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("no numeric column"), std::string::npos);
  }
}

TEST(TableMark, QuotedNumbersAndOddCellsStayValid) {
  std::string s = "Customer ID,amount,note\n";
  for (int i = 0; i < 3000; ++i) {
    s += "c" + std::to_string(i) + ",";
    s += i % 3 == 0 ? "\"" + std::to_string(i) + ".50\"" : (i % 3 == 1 ? "-" + std::to_string(i) : "");
    s += ",x\r\n";
  }
  const auto t = CsvTable::parse(s);
  const auto cols = resolve_table_columns(t, {});
  EXPECT_EQ(cols.key, std::vector<int>{0});  // "Customer ID"
  EXPECT_EQ(cols.marked, std::vector<int>{1});
  const WatermarkKey k = test::random_key(3);
  const Payload p = test::random_payload(4, 64);
  const auto m = embed_table(t, k, p);
  EXPECT_GT(m.report.cells_skipped, 0);  // empty cells
  for (const auto& e : m.edits) {
    const auto before = t.raw_cell(e.row, e.column);
    EXPECT_EQ(before.front() == '"', e.raw.front() == '"');
  }
  const auto marked = CsvTable::parse(t.render(m.edits));
  const auto v = check(marked, k, p);
  EXPECT_TRUE(v.detected);
  EXPECT_EQ(v.matches, v.marked_rows);
}

TEST(TableSlot, SelectionIsUniformAndOrderFree) {
  dataset::TableSpec s{{1, 2}, {3, 4}, 8, 3, 256, 3};
  const std::vector<uint64_t> keys{11, 22, 33};
  const std::vector<uint64_t> permuted{33, 11, 22};
  std::map<uint32_t, int> columns;
  int selected = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const uint64_t id = dataset::fmix64(static_cast<uint64_t>(i));
    const uint32_t a = dataset::table_slot(s, keys.data(), id);
    const uint32_t b = dataset::table_slot(s, permuted.data(), id);
    ASSERT_EQ(dataset::slot_selected(a), dataset::slot_selected(b));
    if (!dataset::slot_selected(a)) continue;
    ++selected;
    // Same column *key* whatever the order of the list.
    ASSERT_EQ(keys[dataset::slot_column(a)], permuted[dataset::slot_column(b)]);
    ASSERT_LT(dataset::slot_low_bit(a), 3u);
    ASSERT_LT(dataset::slot_payload(a), 256u);
    ++columns[dataset::slot_column(a)];
  }
  EXPECT_NEAR(selected, n / 8.0, 4 * std::sqrt(n / 8.0));
  for (const auto& [c, count] : columns) EXPECT_NEAR(count, selected / 3.0, 5 * std::sqrt(selected / 3.0)) << c;
  // CPU op = the formula.
  std::vector<uint64_t> ids(1000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i * 7919;
  std::vector<uint32_t> slots(ids.size());
  make_cpu_backend()->dataset_ops().table_select(ids, s, keys, slots);
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(slots[i], dataset::table_slot(s, keys.data(), ids[i]));
}
