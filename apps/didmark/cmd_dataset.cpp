// Dataset formats for `didmark embed` / `didmark verify` (CSV tables, .npy arrays) and the
// built-in data generators `didmark synth table|array|subset`.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>

#include "cli.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "formats.hpp"

namespace didmark::cli {
namespace {

/// Dataset options of `embed` and `verify` (one process runs one command).
struct DatasetFlags {
  std::string key_column;
  std::string columns;
  uint32_t gamma = kDefaultTableGamma;
  uint32_t bits = kDefaultTableBits;
  std::string ids;
  bool fixed_order = false;
};

DatasetFlags& flags() {
  static DatasetFlags f;
  return f;
}

std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, ','))
    if (!cur.empty()) out.push_back(cur);
  return out;
}

TableOptions table_options(const WatermarkOptions& w) {
  TableOptions o;
  o.key_columns = split_names(flags().key_column);
  o.columns = split_names(flags().columns);
  o.gamma = flags().gamma;
  o.bits = flags().bits;
  o.p_threshold = w.p_threshold;
  return o;
}

ArrayOptions array_options(const WatermarkOptions& w) {
  DIDMARK_EXPECTS(w.scheme == Scheme::spread_spectrum, unsupported,
                  "arrays are marked with spread spectrum only (drop --scheme ", scheme_name(w.scheme), ")");
  ArrayOptions o;
  o.strength = w.strength.value_or(kDefaultArrayStrength);
  o.p_threshold = w.p_threshold;
  return o;
}

Backend& backend_of(Globals* g) { return g ? g->backend() : default_backend(); }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// ---- CSV ------------------------------------------------------------------------------

void reset_table_flags() {
  const DatasetFlags d;
  DatasetFlags& f = flags();
  f.key_column = d.key_column;
  f.columns = d.columns;
  f.gamma = d.gamma;
  f.bits = d.bits;
}

void add_table_options(CLI::App& cmd) {
  DatasetFlags& f = flags();
  cmd.add_option("--key-column", f.key_column,
                 "CSV: column(s) whose text identifies a row, comma-separated (default: a column named id, key, "
                 "uuid, pk or *_id, else the first)");
  cmd.add_option("--columns", f.columns,
                 "CSV: columns that may carry the mark, comma-separated (default: every numeric non-key column)");
  cmd.add_option("--gamma", f.gamma, "CSV: about 1 row in GAMMA carries a mark")->capture_default_str()
      ->check(CLI::Range(1u, 1u << 30));
  cmd.add_option("--bits", f.bits, "CSV: the mark sits in one of the BITS lowest bits of a number's last digits")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxTableBits));
}

EmbedResult embed_csv(const EmbedJob& job) {
  DIDMARK_EXPECTS(!job.options.strength, invalid_argument,
                  "--strength does not apply to CSV tables (they change one low-order bit per marked cell; use "
                  "--gamma and --bits)");
  const CsvTable table = CsvTable::read(job.input);
  const TableMark m = embed_table(table, job.owner.key, job.owner.payload, table_options(job.options),
                                  backend_of(job.globals));
  table.write(job.output, m.edits, job.force);
  const TableEmbedReport& r = m.report;
  EmbedResult out;
  out.json = {{"format", "csv"},
              {"input", job.input.string()},
              {"output", job.output.string()},
              {"did", job.owner.did},
              {"rows", r.rows},
              {"rows_selected", r.rows_selected},
              {"elements_marked", r.cells_marked},
              {"cells_marked", r.cells_marked},
              {"cells_changed", r.cells_changed},
              {"cells_skipped", r.cells_skipped},
              {"tensors_marked", static_cast<int>(r.columns.size())},
              {"key_columns", r.key_columns},
              {"columns", r.columns},
              {"gamma", r.gamma},
              {"bits", r.bits},
              {"mean_abs_change_units", r.mean_abs_change_units},
              {"relative_change", r.mean_relative_change},
              {"max_relative_change", r.max_relative_change},
              {"within_budget", true},
              {"backend", r.backend},
              {"seconds", r.seconds}};
  std::ostringstream t;
  t << "marked " << job.output.string() << " for " << job.owner.did << "\n"
    << "  rows " << r.rows << ", selected " << r.rows_selected << " (1 in " << r.gamma << "), cells marked "
    << r.cells_marked << ", changed " << r.cells_changed << ", skipped " << r.cells_skipped << "\n"
    << "  key column(s) " << nlohmann::json(r.key_columns).dump() << ", marked columns "
    << nlohmann::json(r.columns).dump() << "\n"
    << "  change per changed cell: " << fmt("%.2f", r.mean_abs_change_units) << " last-digit units on average, "
    << fmt("%.4f", 100 * r.mean_relative_change) << "% relative (max " << fmt("%.4f", 100 * r.max_relative_change)
    << "%), " << fmt("%.2f", r.seconds) << " s on " << r.backend << "\n";
  out.text = t.str();
  return out;
}

std::vector<Claim> claims_of(const std::vector<Owner>& owners) {
  std::vector<Claim> c;
  for (const auto& o : owners) c.push_back({o.key, o.payload});
  return c;
}

std::vector<Verdict> verify_csv(const VerifyJob& job) {
  const CsvTable table = CsvTable::read(job.input);
  const auto claims = claims_of(job.owners);
  const auto reports = verify_table(table, claims, table_options(job.options), backend_of(job.globals));
  std::vector<Verdict> out;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const auto& r = reports[i];
    Verdict v = verdict_base(job.owners[i].did, r);
    v.elements = r.marked_rows;
    v.tensors = r.columns;
    v.extra = {{"format", "csv"},       {"rows", r.rows},
               {"marked_rows", r.marked_rows}, {"matches", r.matches},
               {"duplicate_rows", r.duplicate_rows}, {"bits_covered", r.bits_covered},
               {"seconds", r.seconds}};
    out.push_back(std::move(v));
  }
  return out;
}

// ---- .npy arrays ------------------------------------------------------------------------

void reset_array_flags() {
  flags().ids.clear();
  flags().fixed_order = false;
}

void add_array_options(CLI::App& cmd) {
  DatasetFlags& f = flags();
  cmd.add_option("--ids", f.ids, ".npy arrays: a .npy of N int64 row identities (keeps subsets and shuffles verifiable)");
  cmd.add_flag("--fixed-order", f.fixed_order,
               ".npy arrays: use the row index as the identity (only when rows are never reordered or dropped)");
}

/// The row identities for an N-row array from --ids / --fixed-order.
std::vector<int64_t> row_ids_for(int64_t rows) {
  const DatasetFlags& f = flags();
  DIDMARK_EXPECTS(f.ids.empty() || !f.fixed_order, invalid_argument, "--ids and --fixed-order exclude each other");
  DIDMARK_EXPECTS(!f.ids.empty() || f.fixed_order, invalid_argument,
                  "an array needs row identities: pass --ids FILE (a .npy of int64 ids, one per row) or "
                  "--fixed-order (the row index, when rows are never reordered or dropped)");
  if (f.fixed_order) return {};
  const NpyArray a = read_npy(f.ids);
  const TensorView v = a.view();
  DIDMARK_EXPECTS(v.numel() == rows && v.rank() <= 2, invalid_argument, "--ids '", f.ids, "' holds ", v.describe(),
                  " but the array has ", rows, " rows");
  std::vector<int64_t> ids(static_cast<std::size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    switch (v.dtype) {
      case DType::i64: ids[static_cast<std::size_t>(i)] = static_cast<const int64_t*>(v.data)[i]; break;
      case DType::i32: ids[static_cast<std::size_t>(i)] = static_cast<const int32_t*>(v.data)[i]; break;
      default:
        DIDMARK_THROW(Errc::invalid_argument, "--ids '", f.ids, "' has dtype ", dtype_name(v.dtype),
                      "; row ids must be int64 (or int32)");
    }
  }
  return ids;
}

TensorView array_view(const NpyArray& a, const std::filesystem::path& p) {
  TensorView v = a.view();
  DIDMARK_EXPECTS(v.rank() == 2, invalid_argument, "'", p.string(), "' holds ", v.describe(),
                  "; a dataset array must be N x D (rows x features)");
  return v;
}

EmbedResult embed_npy(const EmbedJob& job) {
  const ArrayOptions o = array_options(job.options);
  const NpyArray a = read_npy(job.input);
  const TensorView src = array_view(a, job.input);
  const auto ids = row_ids_for(src.shape[0]);
  std::vector<unsigned char> buf(src.nbytes() + 1);
  TensorView dst = src;
  dst.data = buf.data();
  const ArrayEmbedReport r = embed_array(src, dst, ids, job.owner.key, job.owner.payload, o, backend_of(job.globals));
  DIDMARK_EXPECTS(r.within_budget, invalid_argument, "the mark would bring a row's cosine similarity to ",
                  r.min_cosine, ", below ", o.min_cosine, "; lower --strength (now ", o.strength, ")");
  write_npy(job.output, dst, job.force);
  EmbedResult out;
  out.json = {{"format", "npy"},
              {"input", job.input.string()},
              {"output", job.output.string()},
              {"did", job.owner.did},
              {"rows", r.rows},
              {"dim", r.dim},
              {"rows_marked", r.rows_marked},
              {"rows_skipped", r.rows_skipped},
              {"elements_marked", r.rows_marked * r.dim},
              {"tensors_marked", 1},
              {"strength", r.strength},
              {"relative_change", r.relative_change},
              {"mean_row_change", r.mean_row_change},
              {"max_row_change", r.max_row_change},
              {"min_cosine", r.min_cosine},
              {"mean_cosine", r.mean_cosine},
              {"within_budget", r.within_budget},
              {"expected_z", r.expected_z},
              {"row_identity", ids.empty() ? "row index (--fixed-order)" : "ids from " + flags().ids},
              {"backend", r.backend},
              {"seconds", r.seconds}};
  std::ostringstream t;
  t << "marked " << job.output.string() << " for " << job.owner.did << "\n"
    << "  rows " << r.rows << " x " << r.dim << ", marked " << r.rows_marked << ", skipped " << r.rows_skipped
    << " (zero or NaN/Inf)\n"
    << "  relative change " << fmt("%.4f", 100 * r.relative_change) << "% (max row "
    << fmt("%.4f", 100 * r.max_row_change) << "%), cosine to original min " << fmt("%.6f", r.min_cosine) << " mean "
    << fmt("%.6f", r.mean_cosine) << "\n"
    << "  expected z " << fmt("%.1f", r.expected_z) << " (p <= 1e-9 needs z >= 6.44), " << fmt("%.2f", r.seconds)
    << " s on " << r.backend << "\n";
  out.text = t.str();
  return out;
}

std::vector<Verdict> verify_npy(const VerifyJob& job) {
  ArrayOptions o;
  o.p_threshold = job.options.p_threshold;
  const NpyArray a = read_npy(job.input);
  const TensorView x = array_view(a, job.input);
  const auto ids = row_ids_for(x.shape[0]);
  const auto claims = claims_of(job.owners);
  const auto reports = verify_array(x, ids, claims, o, backend_of(job.globals));
  std::vector<Verdict> out;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const auto& r = reports[i];
    Verdict v = verdict_base(job.owners[i].did, r);
    v.elements = r.rows * r.dim;
    v.tensors = 1;
    v.extra = {{"format", "npy"},
               {"rows", r.rows},
               {"dim", r.dim},
               {"rows_skipped", r.rows_skipped},
               {"duplicate_rows", r.duplicate_rows},
               {"seconds", r.seconds}};
    out.push_back(std::move(v));
  }
  return out;
}

FormatHandler csv_handler() {
  FormatHandler h;
  h.name = "csv";
  h.extensions = {".csv"};
  h.description = "CSV table: keyed low-order bits of numeric cells (Agrawal-Kiernan), blind binomial test";
  h.add_options = [](CLI::App& embed, CLI::App& verify) {
    reset_table_flags();
    add_table_options(embed);
    add_table_options(verify);
  };
  h.embed = embed_csv;
  h.verify = verify_csv;
  return h;
}

FormatHandler npy_handler() {
  FormatHandler h;
  h.name = "npy";
  h.extensions = {".npy"};
  h.description = "N x D float array (.npy): row-keyed spread spectrum, survives row subsets and shuffles";
  h.add_options = [](CLI::App& embed, CLI::App& verify) {
    reset_array_flags();
    add_array_options(embed);
    add_array_options(verify);
  };
  h.embed = embed_npy;
  h.verify = verify_npy;
  return h;
}

DIDMARK_CLI_FORMAT(csv_handler());
DIDMARK_CLI_FORMAT(npy_handler());

// ---- didmark synth ------------------------------------------------------------------------

struct SynthFlags {
  std::string out;
  int64_t rows = 100000;
  int64_t dim = 128;
  uint64_t seed = 1;
  bool force = false;
  std::string ids_out;
  // subset
  std::string in, ids_in;
  double fraction = 0.1;
  bool no_shuffle = false;
};

void write_ids(const std::string& path, const std::vector<int64_t>& ids, bool force) {
  auto v = TensorView::contiguous(const_cast<int64_t*>(ids.data()), DType::i64, {static_cast<int64_t>(ids.size())});
  write_npy(path, v, force);
}

int synth_table(const SynthFlags& f, Globals& g) {
  DIDMARK_EXPECTS(f.rows >= 1, invalid_argument, "--rows must be at least 1");
  const std::string text = synthetic_table_csv(f.rows, f.seed);
  const CsvTable t = CsvTable::parse(text, f.out);  // also checks the output parses
  t.write(f.out, {}, f.force);
  if (g.json) {
    print_json({{"output", f.out}, {"rows", f.rows}, {"columns", t.header()}, {"bytes", text.size()}});
  } else if (!g.quiet) {
    std::printf("wrote %s: %lld rows, columns %s (%s)\n", f.out.c_str(), static_cast<long long>(f.rows),
                nlohmann::json(t.header()).dump().c_str(), human_bytes(static_cast<double>(text.size())).c_str());
  }
  return kExitOk;
}

int synth_array(const SynthFlags& f, Globals& g) {
  DIDMARK_EXPECTS(f.rows >= 1 && f.dim >= 1, invalid_argument, "--rows and --dim must be at least 1");
  auto x = synthetic_embeddings(f.rows, f.dim, f.seed);
  write_npy(f.out, TensorView::contiguous(x.data(), DType::f32, {f.rows, f.dim}), f.force);
  if (!f.ids_out.empty()) {
    std::vector<int64_t> ids(static_cast<std::size_t>(f.rows));
    std::iota(ids.begin(), ids.end(), int64_t{1'000'000});
    write_ids(f.ids_out, ids, f.force);
  }
  if (g.json) {
    print_json({{"output", f.out}, {"rows", f.rows}, {"dim", f.dim}, {"ids", f.ids_out}});
  } else if (!g.quiet) {
    std::printf("wrote %s: %lld x %lld f32 unit-norm rows%s%s\n", f.out.c_str(), static_cast<long long>(f.rows),
                static_cast<long long>(f.dim), f.ids_out.empty() ? "" : ", ids in ", f.ids_out.c_str());
  }
  return kExitOk;
}

/// Keep a random fraction of the rows, in random order: the subset + shuffle attack.
int synth_subset(const SynthFlags& f, Globals& g) {
  DIDMARK_EXPECTS(f.fraction > 0 && f.fraction <= 1, invalid_argument, "--fraction must be in (0, 1]");
  std::mt19937_64 rng(f.seed);
  auto pick = [&](int64_t n) {
    std::vector<int64_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), int64_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    order.resize(static_cast<std::size_t>(std::llround(f.fraction * static_cast<double>(n))));
    if (f.no_shuffle) std::sort(order.begin(), order.end());
    return order;
  };
  const std::filesystem::path in(f.in);
  int64_t kept = 0, total = 0;
  const std::string ext = in.extension().string();
  if (ext == ".csv" || ext == ".CSV") {
    const CsvTable t = CsvTable::read(in);
    total = t.rows();
    const auto order = pick(t.rows());
    kept = static_cast<int64_t>(order.size());
    // Header line as in the file, then the chosen records with their own line breaks.
    const std::string& text = t.text();
    std::string out;
    const auto first = static_cast<std::size_t>(t.rows() > 0 ? t.raw_cell(0, 0).data() - text.data() : text.size());
    out.append(text, 0, first);
    for (int64_t r : order) {
      const auto b = static_cast<std::size_t>(t.raw_cell(r, 0).data() - text.data());
      const std::string_view last = t.raw_cell(r, t.columns() - 1);
      const auto e = static_cast<std::size_t>(last.data() + last.size() - text.data());
      out.append(text, b, e - b);
      out += "\n";
    }
    CsvTable::parse(std::move(out), f.out).write(f.out, {}, f.force);
  } else {
    const NpyArray a = read_npy(in);
    const TensorView v = array_view(a, in);
    total = v.shape[0];
    const auto order = pick(v.shape[0]);
    kept = static_cast<int64_t>(order.size());
    const std::size_t row_bytes = static_cast<std::size_t>(v.shape[1]) * dtype_size(v.dtype);
    std::vector<unsigned char> buf(order.size() * row_bytes + 1);
    for (std::size_t i = 0; i < order.size(); ++i)
      std::memcpy(buf.data() + i * row_bytes, static_cast<const unsigned char*>(v.data) + static_cast<std::size_t>(order[i]) * row_bytes, row_bytes);
    write_npy(f.out, TensorView::contiguous(buf.data(), v.dtype, {kept, v.shape[1]}), f.force);
    if (!f.ids_in.empty()) {
      DIDMARK_EXPECTS(!f.ids_out.empty(), invalid_argument, "--ids needs --ids-out for the subset's ids");
      const NpyArray ia = read_npy(f.ids_in);
      DIDMARK_EXPECTS(ia.dtype == DType::i64 && ia.view().numel() == total, invalid_argument, "--ids '", f.ids_in,
                      "' must hold ", total, " int64 ids");
      std::vector<int64_t> ids;
      for (int64_t r : order) ids.push_back(static_cast<const int64_t*>(ia.view().data)[r]);
      write_ids(f.ids_out, ids, f.force);
    }
  }
  if (g.json) {
    print_json({{"input", f.in}, {"output", f.out}, {"rows_in", total}, {"rows_out", kept}});
  } else if (!g.quiet) {
    std::printf("wrote %s: %lld of %lld rows%s\n", f.out.c_str(), static_cast<long long>(kept),
                static_cast<long long>(total), f.no_shuffle ? "" : ", shuffled");
  }
  return kExitOk;
}

void register_synth(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<SynthFlags>();
  CLI::App& grp = command_group(app, "synth", "Make built-in synthetic data for demos, tests and benchmarks");

  auto* table = grp.add_subcommand("table", "A customer-like CSV table (id, name, city, age, income, score, visits)");
  table->add_option("-o,--output", f->out, "Output .csv")->required();
  table->add_option("--rows", f->rows, "Data rows")->capture_default_str();
  table->add_option("--seed", f->seed, "Seed")->capture_default_str();
  table->add_flag("--force", f->force, "Replace an existing output");
  table->callback([&g, &action, f] { action = [&g, f] { return synth_table(*f, g); }; });

  auto* array = grp.add_subcommand("array", "An embedding-like N x D f32 array of unit-norm rows (.npy)");
  array->add_option("-o,--output", f->out, "Output .npy")->required();
  array->add_option("--rows", f->rows, "Rows")->capture_default_str();
  array->add_option("--dim", f->dim, "Features per row")->capture_default_str();
  array->add_option("--seed", f->seed, "Seed")->capture_default_str();
  array->add_option("--ids-out", f->ids_out, "Also write row ids (int64 .npy, 1000000 + row)");
  array->add_flag("--force", f->force, "Replace existing outputs");
  array->callback([&g, &action, f] { action = [&g, f] { return synth_array(*f, g); }; });

  auto* subset = grp.add_subcommand(
      "subset", "Keep a random fraction of a table's or array's rows, shuffled (the subset + shuffle attack)");
  subset->add_option("-i,--input", f->in, "Input .csv or .npy")->required();
  subset->add_option("-o,--output", f->out, "Output (same format)")->required();
  subset->add_option("--fraction", f->fraction, "Fraction of rows kept")->capture_default_str();
  subset->add_option("--seed", f->seed, "Seed")->capture_default_str();
  subset->add_flag("--no-shuffle", f->no_shuffle, "Keep the rows in their order");
  subset->add_option("--ids", f->ids_in, ".npy: the input's row ids, to carry along");
  subset->add_option("--ids-out", f->ids_out, ".npy: where the subset's row ids go");
  subset->add_flag("--force", f->force, "Replace existing outputs");
  subset->callback([&g, &action, f] { action = [&g, f] { return synth_subset(*f, g); }; });
}

DIDMARK_CLI_COMMAND(80, register_synth);

}  // namespace
}  // namespace didmark::cli
