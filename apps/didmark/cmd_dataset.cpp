// The built-in data generators `didmark synth table|array|subset`.
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

namespace didmark::cli {
namespace {

TensorView array_view(const NpyArray& a, const std::filesystem::path& p) {
  TensorView v = a.view();
  DIDMARK_EXPECTS(v.rank() == 2, invalid_argument, "'", p.string(), "' holds ", v.describe(),
                  "; a dataset array must be N x D (rows x features)");
  return v;
}

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
      const std::vector<int64_t> all = read_row_ids(f.ids_in, total);
      std::vector<int64_t> ids;
      for (int64_t r : order) ids.push_back(all[static_cast<std::size_t>(r)]);
      write_ids(f.ids_out, ids, f.force);
    }
  }
  if (g.json) {
    print_json({{"path", f.in}, {"input", f.in}, {"output", f.out}, {"rows_in", total}, {"rows_out", kept}});
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
