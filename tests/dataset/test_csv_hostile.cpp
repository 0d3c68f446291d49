// CSV at the edges (issues 19 and 20): bounded lines and fields, bounded messages that say
// what is likely wrong, delimiter detection, decimal commas kept byte for byte.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "didmark/limits.hpp"

using namespace didmark;

namespace {

using Clock = std::chrono::steady_clock;

// Time limits are multiplied by this under AddressSanitizer (they stay far below what the
// unbounded code took).
#if defined(__SANITIZE_ADDRESS__)
constexpr double kSlowdown = 8;
#else
constexpr double kSlowdown = 1;
#endif

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string error_of(const std::string& text, const CsvOptions& o = {}) {
  try {
    CsvTable::parse(text, "t.csv", o);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::corrupt_input) << e.what();
    return e.what();
  }
  return "(no error)";
}

std::string data(const char* rel) {
  const char* d = std::getenv("DIDMARK_TEST_DATA");
  return (std::filesystem::path(d ? d : "tests/data") / rel).string();
}

}  // namespace

TEST(CsvHostile, AHugeLineOfFieldsIsRefusedQuicklyWithAShortMessage) {
  // 20 MB of "a,a,a,...": 815 MB and a 50 MB message before.
  std::string line;
  line.reserve(20 << 20);
  while (line.size() < (20u << 20)) line += "a,";
  line += "a\n";
  auto t0 = Clock::now();
  const std::string m = error_of(line + "1\n");
  EXPECT_LT(seconds_since(t0), 2.0 * kSlowdown);
  EXPECT_LT(m.size(), 400u) << m.substr(0, 400);
  EXPECT_NE(m.find("kCsvMaxColumns"), std::string::npos) << m;
  EXPECT_NE(m.find("10485761 fields"), std::string::npos) << m;
  // The same line as a data record under a 3-column header.
  t0 = Clock::now();
  const std::string r = error_of("x,y,z\n1,2,3\n" + line);
  EXPECT_LT(seconds_since(t0), 2.0 * kSlowdown);
  EXPECT_LT(r.size(), 400u);
  EXPECT_NE(r.find("line 3, column 7 (field 4): the record has 10485761 fields but the header has 3"), std::string::npos)
      << r;
}

TEST(CsvHostile, RecordLengthIsBounded) {
  CsvOptions o;
  o.max_record_bytes = 1000;
  EXPECT_NE(error_of("a,b\n1," + std::string(5000, 'x') + "\n", o).find("longer than 1000 bytes"), std::string::npos);
  EXPECT_NE(error_of("a,b\n1,\"" + std::string(5000, '\n') + "\"\n", o).find("longer than 1000 bytes"),
            std::string::npos);
  EXPECT_EQ(error_of("a,b\n1," + std::string(900, 'x') + "\n", o), "(no error)");
}

TEST(CsvHostile, WideHeaderOverManyLinesDoesNotReserveRowsTimesColumns) {
  // 60000 columns and 200000 line breaks: reserving rows x columns was 48 GB.
  std::string header;
  for (int i = 0; i < 60000; ++i) header += (i ? ",c" : "c") + std::to_string(i);
  const auto t0 = Clock::now();
  const std::string m = error_of(header + "\n" + std::string(200000, '\n') + "x\n");
  EXPECT_LT(seconds_since(t0), 2.0 * kSlowdown);
  EXPECT_NE(m.find("the record has 1 field but the header has 60000"), std::string::npos) << m;
}

TEST(CsvHostile, CrOnlyLineBreaksAreNamed) {
  std::string text = "id,name,score\r";
  for (int i = 0; i < 20000; ++i) text += std::to_string(i) + ",n" + std::to_string(i) + ",1.5\r";
  const std::string m = error_of(text);
  EXPECT_NE(m.find("CR only"), std::string::npos) << m;
  EXPECT_LT(m.size(), 400u) << m;
  // So is a wide one that hits the column limit first.
  std::string wide = "id,name,score\r";
  for (int i = 0; i < 40000; ++i) wide += "1,2,3\r";
  const std::string w = error_of(wide);
  EXPECT_NE(w.find("CR only"), std::string::npos) << w;
  EXPECT_LT(w.size(), 400u);
}

TEST(CsvHostile, MessagesEscapeWhatTheyQuote) {
  const std::string m = error_of("a,b\n1,\"q\"\x1b\n");
  EXPECT_NE(m.find("unexpected character '\\x1b'"), std::string::npos) << m;
  EXPECT_EQ(m.find('\x1b'), std::string::npos);
  const CsvTable t = CsvTable::parse("\x1b[2J,b,c,d,e,f,g,h,i,j,k\n");
  EXPECT_EQ(t.describe_columns(3), "'\\x1b[2J', 'b', 'c' and 8 more");
}

TEST(CsvDelimiter, DetectedFromTheHeaderAndReported) {
  struct Case {
    std::string text;
    char want;
  };
  for (const auto& c : std::vector<Case>{{"a,b,c\n1,2,3\n", ','},
                                         {"a;b;c\n1;2,5;3\n", ';'},
                                         {"a\tb\tc\n1\t2\t3\n", '\t'},
                                         {"a|b\n1|2\n", '|'},
                                         {"only\n1\n", ','},
                                         {"\"x;y\",b\n1,2\n", ','},          // a delimiter inside quotes is data
                                         {"a;b,c\n1;2,3\n4;5,6\n", ','},    // ties: ',' first
                                         {"name;note,x\n1;2\n3;4\n", ';'}}) {  // the one the lines agree with
    const CsvTable t = CsvTable::parse(c.text);
    EXPECT_EQ(t.delimiter(), c.want) << c.text;
    EXPECT_TRUE(t.detected_delimiter());
    EXPECT_EQ(t.render({}), c.text);
  }
  CsvOptions o;
  o.delimiter = ';';
  const CsvTable t = CsvTable::parse("a;b\n1;2\n", "t.csv", o);
  EXPECT_FALSE(t.detected_delimiter());
  EXPECT_EQ(t.columns(), 2);
  o.delimiter = ':';
  try {
    CsvTable::parse("a:b\n", "t.csv", o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
  }
  // The wrong delimiter given: the message suggests the right one.
  o.delimiter = ',';
  EXPECT_NE(error_of("a;b;c\n1;\"x,y\";3\n", o).find("is the delimiter ';'?"), std::string::npos);
}

TEST(CsvDelimiter, SemicolonFilesWithDecimalCommas) {
  const CsvTable t = CsvTable::read(data("csv/semicolon_decimal_comma.csv"));
  ASSERT_EQ(t.delimiter(), ';');
  ASSERT_EQ(t.columns(), 3);
  ASSERT_EQ(t.rows(), 2);
  EXPECT_TRUE(t.decimal_comma());
  EXPECT_EQ(t.cell(1, 1), "b;c");
  const auto d = DecimalCell::parse(t.raw_cell(1, 2), t.decimal_comma());
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->mantissa, 375u);
  EXPECT_EQ(d->decimals, 2);
  EXPECT_EQ(d->point_char, ',');
  EXPECT_DOUBLE_EQ(d->value(), 3.75);
  EXPECT_EQ(d->format(), "3,75");
  auto e = *d;
  e.mantissa ^= 1;
  EXPECT_EQ(e.format(), "3,74");
  const std::vector<CellEdit> edits{{1, 2, e.format()}};
  EXPECT_EQ(t.render(edits), "id;name;score\n1;a;2,5\n2;\"b;c\";3,74\n");
  // Only where asked: a comma file keeps ',' out of numbers; '.' always works.
  EXPECT_FALSE(DecimalCell::parse("3,75").has_value());
  EXPECT_FALSE(DecimalCell::parse("1,234,5", true).has_value());
  EXPECT_EQ(DecimalCell::parse("3.75", true)->format(), "3.75");
  EXPECT_FALSE(CsvTable::parse("a,b\n1,2\n").decimal_comma());
  EXPECT_EQ(CsvTable::read(data("csv/tab.csv")).delimiter(), '\t');
}
