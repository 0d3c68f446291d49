// verify_input: one verification entry point for every kind of input and every edge.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "didmark/io.hpp"
#include "inputs/inputs_detail.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<Claim> claims_of(std::span<const Owner> owners) {
  std::vector<Claim> c;
  c.reserve(owners.size());
  for (const auto& o : owners) c.push_back({o.key, o.payload});
  return c;
}

/// The fields every kind shares, from any report type.
template <class Report>
Verdict verdict_base(const Owner& o, const Report& r, bool tested) {
  Verdict v;
  v.did = o.did;
  v.detected = r.detected;
  v.status = r.detected ? VerdictStatus::detected : tested ? VerdictStatus::not_detected : VerdictStatus::no_eligible_data;
  v.z = r.z;
  v.p_value = r.p_value;
  v.log10_p = r.log10_p;
  v.bit_errors = r.bit_errors;
  v.bits = r.bits;
  v.seconds = r.seconds;
  return v;
}

template <class Report>
void add_verdicts(std::span<const Owner> owners, const std::vector<Report>& reports, FileVerdicts& out) {
  for (std::size_t i = 0; i < reports.size(); ++i) out.verdicts.push_back(inputs_detail::verdict_of(owners[i], reports[i]));
}

void verify_checkpoint_reader(const CheckpointReader& reader, std::span<const Owner> owners, const InputOptions& o,
                              Backend& backend, FileVerdicts& out) {
  out.bytes = reader.bytes();
  // What verify_checkpoint does, with the screen in front: the eligibility the format implies
  // (engine/io/checkpoint.cpp: a lone .npy weight may be rank 1) and a sequential read hint.
  WatermarkOptions wo = o.watermark;
  if (reader.format() == CheckpointFormat::npy) wo.policy.min_rank = std::min(wo.policy.min_rank, 1);
  reader.advise_sequential();
  ScreenSummary how;
  add_verdicts(owners, verify_screened(reader.tensors(), claims_of(owners), wo, o.screen, backend, &how), out);
  out.screen = std::move(how);
  inputs_detail::realign_verdicts({&reader, nullptr, {}}, owners, o, backend, out);
}

void verify_table_file(const fs::path& path, std::span<const Owner> owners, const InputOptions& o, Backend& backend,
                       FileVerdicts& out) {
  const CsvTable table = CsvTable::read(path, o.csv);
  out.bytes = table.text().size();
  TableOptions to = o.table;
  to.p_threshold = o.watermark.p_threshold;
  const auto reports = verify_table(table, claims_of(owners), to, backend);
  add_verdicts(owners, reports, out);
  if (table.detected_delimiter() && table.delimiter() != ',')
    out.warnings.push_back(detail::concat("read with the detected delimiter '", table.delimiter() == '\t' ? "\\t" : std::string(1, table.delimiter()), "'"));
  // Rows whose identity repeats vote once: a key column full of duplicates (a renamed or
  // wrong --key-column) leaves little to test, which reads as "not detected".
  if (!reports.empty()) {
    const TableVerifyReport& r = reports.front();
    const int64_t selected = r.marked_rows + r.duplicate_rows;
    if (selected > 0 && r.duplicate_rows * 10 > selected)
      out.warnings.push_back(detail::concat(
          r.duplicate_rows, " of ", selected, " selected rows repeat an earlier row's identity in key column(s) ",
          detail::bounded_list(r.key_column_names, 4), ": is the key column right? (--key-column)"));
  }
  inputs_detail::realign_verdicts({}, owners, o, backend, out);
}

void verify_array_file(const fs::path& path, std::span<const Owner> owners, const InputOptions& o, Backend& backend,
                       FileVerdicts& out) {
  const NpyArray a = read_npy(path);
  const TensorView x = inputs_detail::array_view(a, path);
  const auto ids = inputs_detail::row_ids(path, x.shape[0], o);
  ArrayOptions ao = o.array;
  ao.p_threshold = o.watermark.p_threshold;
  out.bytes = a.file->size();
  add_verdicts(owners, verify_array(x, ids, claims_of(owners), ao, backend), out);
  inputs_detail::realign_verdicts({nullptr, &x, ids}, owners, o, backend, out);
}

}  // namespace

namespace inputs_detail {

Verdict verdict_of(const Owner& o, const VerifyReport& r) {
  Verdict v = verdict_base(o, r, r.tensors > 0);
  v.screened = r.screened;
  v.elements = r.elements;
  v.tensors = r.tensors;
  v.scheme = r.scheme;
  v.weights = r;
  return v;
}

Verdict verdict_of(const Owner& o, const TableVerifyReport& r) {
  Verdict v = verdict_base(o, r, r.marked_rows > 0);
  v.elements = r.marked_rows;
  v.tensors = r.columns;
  v.table = r;
  return v;
}

Verdict verdict_of(const Owner& o, const ArrayVerifyReport& r) {
  Verdict v = verdict_base(o, r, r.rows > 0);
  v.elements = r.rows * r.dim;
  v.tensors = 1;
  v.array = r;
  return v;
}

void apply_family(FileVerdicts& fv, const InputOptions& o) {
  DIDMARK_EXPECTS(!o.fwer || (*o.fwer > 0 && *o.fwer < 1), invalid_argument,
                  "family-wise error level (fwer) must be in (0, 1), got ", o.fwer.value_or(0));
  fv.family = fv.verdicts.size();
  fv.fwer = o.fwer;
  const double limit = o.fwer ? std::log10(*o.fwer) : 0.0;
  for (Verdict& v : fv.verdicts) {
    v.log10_p_family = family_log10_p(v.log10_p, fv.family);
    v.p_family = std::pow(10.0, v.log10_p_family);
    if (v.status != VerdictStatus::detected || !o.fwer || v.log10_p_family <= limit) continue;
    v.detected = false;  // the owner's own test passed, the family's did not
    v.status = VerdictStatus::not_detected;
  }
  for (ImageItem& item : fv.images)
    for (Verdict& v : item.verdicts) {
      v.log10_p_family = family_log10_p(v.log10_p, fv.family);
      v.p_family = std::pow(10.0, v.log10_p_family);
      if (v.status == VerdictStatus::detected && o.fwer && v.log10_p_family > limit) {
        v.detected = false;
        v.status = VerdictStatus::not_detected;
      }
    }
}

}  // namespace inputs_detail

std::string_view verdict_status_name(VerdictStatus s) noexcept {
  switch (s) {
    case VerdictStatus::detected: return "detected";
    case VerdictStatus::not_detected: return "not_detected";
    case VerdictStatus::no_eligible_data: return "no_eligible_data";
  }
  return "?";
}

FileVerdicts verify_input(const fs::path& path, std::span<const Owner> owners, const InputOptions& options,
                          Backend& backend) {
  const auto t0 = Clock::now();
  FileVerdicts out;
  out.path = path;
  out.format = classify_input(path, options.format);
  switch (out.format.kind) {
    case InputKind::checkpoint:
      verify_checkpoint_reader(CheckpointReader::open(path, out.format.checkpoint), owners, options, backend, out);
      break;
    case InputKind::table: verify_table_file(path, owners, options, backend, out); break;
    case InputKind::array: verify_array_file(path, owners, options, backend, out); break;
    case InputKind::image: inputs_detail::verify_images(path, owners, options, backend, out); break;
  }
  inputs_detail::apply_family(out, options);
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

FileVerdicts verify_safetensors_bytes(std::string bytes, std::string_view name, std::span<const Owner> owners,
                                      const InputOptions& options, Backend& backend) {
  const auto t0 = Clock::now();
  DIDMARK_EXPECTS(options.format.empty() || options.format == "safetensors", invalid_argument,
                  "inline bytes are a safetensors file; format '", options.format, "' does not apply");
  FileVerdicts out;
  out.path = fs::path(name);
  for (const auto& f : input_formats())
    if (f.name == "safetensors") out.format = f;
  verify_checkpoint_reader(CheckpointReader::from_safetensors_bytes(std::move(bytes), name), owners, options, backend,
                           out);
  inputs_detail::apply_family(out, options);
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

}  // namespace didmark
