// embed_input: one embedding entry point for every kind of input and every edge.
#include <cmath>
#include <cstdio>

#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "didmark/io.hpp"
#include "inputs/inputs_detail.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;

std::string fixed(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Checks every format shares: never the input, never an existing file without overwrite.
// (A folder output is for sharded checkpoints: their writer checks the files inside.)
void check_output(const fs::path& in, const fs::path& out, bool overwrite) {
  std::error_code ec;
  DIDMARK_EXPECTS(fs::exists(in, ec), not_found, "'", in.string(), "' does not exist");
  if (!fs::exists(out, ec)) return;
  DIDMARK_EXPECTS(!fs::equivalent(in, out, ec), invalid_argument, "output '", out.string(), "' is the input '",
                  in.string(), "': write the marked copy to a new file");
  DIDMARK_EXPECTS(overwrite || fs::is_directory(out, ec), invalid_argument, "output '", out.string(),
                  "' already exists (use --force to overwrite)");
}

void embed_checkpoint_file(const Owner& owner, const InputOptions& o, const InputWriteOptions& w, Backend& backend,
                           InputEmbedReport& r) {
  r.checkpoint = embed_checkpoint(r.input, r.output, r.format.checkpoint, owner.key, owner.payload, o.watermark,
                                  {w.overwrite, w.allow_weak}, backend);
  r.outputs = r.checkpoint->outputs;
  const EmbedReport& e = r.checkpoint->report;
  const double need = provable_z(o.watermark.p_threshold);
  if (e.scheme == Scheme::spread_spectrum && e.expected_z < need)
    r.warnings.push_back("expected z " + fixed("%.1f", e.expected_z) + " is below " + fixed("%.2f", need) +
                         " (the detection threshold plus a margin of 2): the marked file may not be detected at p <= " +
                         fixed("%.0e", o.watermark.p_threshold));
}

void embed_table_file(const Owner& owner, const InputOptions& o, const InputWriteOptions& w, Backend& backend,
                      InputEmbedReport& r) {
  DIDMARK_EXPECTS(!o.watermark.strength, invalid_argument,
                  "--strength does not apply to CSV tables (they change one low-order bit per marked cell; use "
                  "--gamma and --bits)");
  const CsvTable table = CsvTable::read(r.input, o.csv);
  TableOptions to = o.table;
  to.p_threshold = o.watermark.p_threshold;
  TableMark m = embed_table(table, owner.key, owner.payload, to, backend);
  // A clean copy agrees on every marked cell: p = 2^-cells. Fewer cells than that can never
  // reach the threshold, whatever the verifier sees.
  const double bits_needed = std::ceil(-std::log2(o.watermark.p_threshold));
  const auto cells = static_cast<double>(m.report.cells_marked);
  if (cells < bits_needed) {
    const std::string why =
        cells == 0 ? detail::concat("no cell carries the mark (", m.report.rows, " rows, ", m.report.rows_selected,
                                    " selected, ", m.report.cells_skipped, " selected cells empty or not numbers)")
                   : detail::concat("only ", m.report.cells_marked, " cells carry the mark; even a perfect copy gives p = 2^-",
                                    m.report.cells_marked, ", above ", o.watermark.p_threshold);
    const double gamma = cells > 0 ? std::floor(o.table.gamma * cells / bits_needed) : 1;
    const std::string fix = detail::concat(
        "it needs at least ", bits_needed, " marked cells: ",
        cells > 0 && gamma >= 1 ? detail::concat("use --gamma ", gamma, " or lower, ") : std::string(),
        "mark more rows or numeric --columns, or pass --allow-weak to write it anyway");
    DIDMARK_EXPECTS(w.allow_weak, invalid_argument, "'", r.input.string(), "': the mark could not be proved: ", why,
                    "; nothing was written; ", fix);
    r.warnings.push_back("the mark cannot be proved at p <= " + fixed("%.0e", o.watermark.p_threshold) + ": " + why);
  }
  table.write(r.output, m.edits, w.overwrite);
  r.outputs.push_back(r.output);
  r.table = std::move(m.report);
}

void embed_array_file(const Owner& owner, const InputOptions& o, const InputWriteOptions& w, Backend& backend,
                      InputEmbedReport& r) {
  DIDMARK_EXPECTS(o.watermark.scheme == Scheme::spread_spectrum, unsupported,
                  "arrays are marked with spread spectrum only (drop --scheme ", scheme_name(o.watermark.scheme), ")");
  ArrayOptions ao = o.array;
  ao.strength = o.watermark.strength.value_or(o.array.strength);
  ao.p_threshold = o.watermark.p_threshold;
  const NpyArray a = read_npy(r.input);
  const TensorView src = inputs_detail::array_view(a, r.input);
  const auto ids_path = array_ids_path(r.input, o);
  const auto ids = inputs_detail::row_ids(r.input, src.shape[0], o);
  std::vector<unsigned char> buf(src.nbytes() + 1);
  TensorView dst = src;
  dst.data = buf.data();
  ArrayEmbedReport rep = embed_array(src, dst, ids, owner.key, owner.payload, ao, backend);
  DIDMARK_EXPECTS(rep.within_budget, invalid_argument, "the mark would bring a row's cosine similarity to ",
                  rep.min_cosine, ", below ", ao.min_cosine, "; lower --strength (now ", ao.strength, ")");
  const double need = provable_z(ao.p_threshold);
  if (rep.expected_z < need) {
    const std::string why = detail::concat("expected z ", fixed("%.2f", rep.expected_z), " (", rep.rows_marked, " rows x ",
                                           rep.dim, " at strength ", ao.strength, ") is below ", fixed("%.2f", need),
                                           " (what p <= ", ao.p_threshold, " needs plus a margin of 2)");
    DIDMARK_EXPECTS(w.allow_weak, invalid_argument, "'", r.input.string(), "': the mark could not be proved: ", why,
                    "; nothing was written; it needs ", array_min_elements(ao.strength, ao.p_threshold),
                    " marked elements at this strength (several times that to survive subsets), or a strength of ",
                    fixed("%.3f", std::min(0.2, 1.1 * need / std::sqrt(std::max(1.0, static_cast<double>(rep.rows_marked * rep.dim))))),
                    " (at most 0.2); or pass --allow-weak to write it anyway");
    r.warnings.push_back(why);
  }
  write_npy(r.output, dst, w.overwrite);
  r.outputs.push_back(r.output);
  r.row_identity = ids_path ? "ids from " + ids_path->string() : "row index (--fixed-order)";
  r.array = std::move(rep);
}

// The sketch of the marked output (InputOptions::sketch_output), made from the output itself.
void write_sketch(const Owner& owner, const InputOptions& options, bool overwrite, Backend& backend,
                  InputEmbedReport& r) {
  InputOptions so = options;
  so.format.clear();
  if (r.format.kind == InputKind::array) {
    // The rows' identities are the ones the embed used (not a sidecar of the output).
    const auto ids = array_ids_path(r.input, options);
    so.ids = ids ? *ids : fs::path();
    so.fixed_order = !ids;
  }
  auto sketch = std::make_shared<AlignmentSketch>(sketch_input(r.output, owner.did, so, backend));
  sketch->write(options.sketch_output, overwrite);
  r.sketch = std::move(sketch);
  r.sketch_path = options.sketch_output;
}

}  // namespace

InputEmbedReport embed_input(const fs::path& input, const fs::path& output, const Owner& owner,
                             const InputOptions& options, const InputWriteOptions& write, Backend& backend) {
  check_output(input, output, write.overwrite);
  InputEmbedReport r;
  r.input = input;
  r.output = output;
  r.format = classify_input(input, options.format);
  if (!options.sketch_output.empty()) {
    // Checked before anything is written.
    std::error_code ec;
    DIDMARK_EXPECTS(r.format.kind != InputKind::table && r.format.kind != InputKind::image, unsupported,
                    "--sketch: alignment sketches are for checkpoints and .npy arrays, not ",
                    r.format.kind == InputKind::table ? "CSV tables" : "images");
    DIDMARK_EXPECTS(!fs::is_directory(options.sketch_output, ec), invalid_argument, "sketch output '",
                    options.sketch_output.string(), "' is a folder");
    DIDMARK_EXPECTS(write.overwrite || !fs::exists(options.sketch_output, ec), invalid_argument, "sketch output '",
                    options.sketch_output.string(), "' already exists (use --force to overwrite)");
  }
  switch (r.format.kind) {
    case InputKind::checkpoint: embed_checkpoint_file(owner, options, write, backend, r); break;
    case InputKind::table: embed_table_file(owner, options, write, backend, r); break;
    case InputKind::array: embed_array_file(owner, options, write, backend, r); break;
    case InputKind::image: inputs_detail::embed_images(owner, options, write, backend, r); break;
  }
  if (!options.sketch_output.empty()) write_sketch(owner, options, write.overwrite, backend, r);
  return r;
}

}  // namespace didmark
