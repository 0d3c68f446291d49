// CSV reading/writing and decimal cells: byte identity, quoting, errors with line and column.
#include <gtest/gtest.h>

#include <filesystem>

#include "didmark/dataset.hpp"
#include "didmark/error.hpp"

using namespace didmark;

namespace {

/// Parse and expect Errc::corrupt_input whose message names `where`.
void expect_malformed(const std::string& text, const std::string& where) {
  try {
    CsvTable::parse(text, "t.csv");
    FAIL() << "no error for: " << text;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::corrupt_input);
    EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what() << "\nexpected: " << where;
    EXPECT_NE(std::string(e.what()).find("t.csv"), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Csv, FieldsQuotingAndLineBreaks) {
  const std::string text =
      "\xEF\xBB\xBFid,\"na,me\",score\r\n"
      "1,\"Smith, \"\"J\"\"\",12.5\r\n"
      "2,plain,-3\n"
      "3,\"two\nlines\",007\n"
      "4,,\"8.25\"";
  const auto t = CsvTable::parse(text);
  ASSERT_EQ(t.columns(), 3);
  ASSERT_EQ(t.rows(), 4);
  EXPECT_EQ(t.header()[0], "id");
  EXPECT_EQ(t.header()[1], "na,me");
  EXPECT_EQ(t.cell(0, 1), "Smith, \"J\"");
  EXPECT_EQ(t.raw_cell(0, 1), "\"Smith, \"\"J\"\"\"");
  EXPECT_EQ(t.cell(0, 2), "12.5");  // CR of the CRLF is not part of the cell
  EXPECT_EQ(t.cell(1, 2), "-3");
  EXPECT_EQ(t.cell(2, 1), "two\nlines");
  EXPECT_EQ(t.cell(3, 1), "");
  EXPECT_EQ(t.raw_cell(3, 2), "\"8.25\"");
  EXPECT_EQ(t.line_of(0), 2);
  EXPECT_EQ(t.line_of(2), 4);
  EXPECT_EQ(t.line_of(3), 6);
  EXPECT_EQ(t.column_index("score"), 2);
  EXPECT_FALSE(t.column_index("nope").has_value());
  // No edits: the very same bytes.
  EXPECT_EQ(t.render({}), text);
}

TEST(Csv, EditsChangeOnlyTheirCells) {
  const std::string text = "a,b,c\n1,2,3\n\"4\",5,6\r\n7,8,9\n\n";
  const auto t = CsvTable::parse(text);
  ASSERT_EQ(t.rows(), 3);  // trailing blank line is not a record
  std::vector<CellEdit> edits{{2, 2, "90"}, {1, 0, "\"44\""}, {0, 1, ""}};
  EXPECT_EQ(t.render(edits), "a,b,c\n1,,3\n\"44\",5,6\r\n7,8,90\n\n");
  // A CR at the very end is a line break, not data; bytes still round-trip.
  const auto cr = CsvTable::parse("a,b\r\n1,\"2\"\r\n3,4\r");
  EXPECT_EQ(cr.cell(1, 1), "4");
  EXPECT_EQ(cr.render({}), "a,b\r\n1,\"2\"\r\n3,4\r");
  EXPECT_EQ(CsvTable::parse("a,b\n1,\"2\"\r").cell(0, 1), "2");
  std::vector<CellEdit> twice{{0, 0, "x"}, {0, 0, "y"}};
  EXPECT_THROW(t.render(twice), Error);
  std::vector<CellEdit> outside{{3, 0, "x"}};
  EXPECT_THROW(t.render(outside), Error);

  const auto dir = std::filesystem::temp_directory_path() / "didmark_test_csv";
  std::filesystem::create_directories(dir);
  const auto p = dir / "out.csv";
  std::filesystem::remove(p);
  t.write(p, edits);
  EXPECT_EQ(CsvTable::read(p).text(), t.render(edits));
  EXPECT_THROW(t.write(p, edits), Error);  // no overwrite by default
  t.write(p, edits, true);
  std::filesystem::remove_all(dir);
}

TEST(Csv, MalformedInputNamesLineAndColumn) {
  expect_malformed("a,b\n1,2\n3,\"open\n4,5\n", "line 3, column 3 (field 2): quoted field is never closed");
  expect_malformed("a,b\n1,2\n3,x\"y\n", "line 3, column 4 (field 2): quote inside an unquoted field");
  expect_malformed("a,b\n1,\"q\"z\n", "line 2, column 6 (field 2): unexpected character 'z' after a closing quote");
  expect_malformed("a,b\n1,2\n1,2,3\n", "line 3, column 5 (field 3): the record has 3 fields but the header has 2");
  expect_malformed("a,b\n1,2\n\n3,4\n", "line 3, column 1 (field 1): the record has 1 field but the header has 2");
  expect_malformed("a,b,c\n1,\"x\ny\",3\n5,6\n", "line 4, column 4 (field 2): the record has 2 fields");
  expect_malformed("", "empty CSV");
  try {
    CsvTable::read("/nonexistent/x.csv");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found);
  }
}

TEST(Decimal, ParseAndFormatKeepTheScale) {
  struct Case {
    const char* text;
    uint64_t mantissa;
    int decimals;
  };
  for (const Case& c : {Case{"12.345", 12345, 3}, Case{"-007", 7, 0}, Case{"+0.50", 50, 2}, Case{".5", 5, 1},
                        Case{"3.", 3, 0}, Case{"0", 0, 0}, Case{"-0.000", 0, 3}}) {
    const auto d = DecimalCell::parse(c.text);
    ASSERT_TRUE(d.has_value()) << c.text;
    EXPECT_EQ(d->mantissa, c.mantissa) << c.text;
    EXPECT_EQ(d->decimals, c.decimals) << c.text;
    EXPECT_EQ(d->format(), c.text);
  }
  for (const char* bad : {"", "-", ".", "1e5", "1.2.3", " 1", "1 ", "0x10", "1,5", "NaN", "1234567890123456789"})
    EXPECT_FALSE(DecimalCell::parse(bad).has_value()) << bad;

  auto flip = [](const char* text, int bit) {
    auto d = DecimalCell::parse(text).value();
    d.mantissa ^= uint64_t{1} << bit;
    return d.format();
  };
  EXPECT_EQ(flip("12.345", 0), "12.344");
  EXPECT_EQ(flip("-007", 0), "-006");
  EXPECT_EQ(flip("99", 2), "103");  // the integer part grows when it must
  EXPECT_EQ(flip(".9", 1), "1.1");
  EXPECT_EQ(flip("0.00", 0), "0.01");
  EXPECT_EQ(flip("+10", 1), "+8");
  // Whatever the change, the cell reads back at the same scale.
  for (const char* t : {"12.345", ".9", "-0.000", "99", "5."}) {
    for (int bit = 0; bit < 4; ++bit) {
      auto d = DecimalCell::parse(t).value();
      d.mantissa ^= uint64_t{1} << bit;
      const auto back = DecimalCell::parse(d.format()).value();
      EXPECT_EQ(back.mantissa, d.mantissa) << t << " bit " << bit;
      EXPECT_EQ(back.decimals, d.decimals) << t << " bit " << bit;
    }
  }
  EXPECT_DOUBLE_EQ(DecimalCell::parse("-12.5")->value(), -12.5);
}
