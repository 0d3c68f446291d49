#include "render.hpp"

#include <cstdio>
#include <sstream>

#include "cli.hpp"

namespace didmark::cli {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string short_count(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.2fG", static_cast<double>(n) / 1e9);
  else if (n >= 1'000'000)
    std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

nlohmann::json strings(const std::vector<std::string>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : v) a.push_back(s);
  return a;
}

// ---- embed, per kind -------------------------------------------------------------------------

nlohmann::json checkpoint_embed_json(const InputEmbedReport& in, const Owner& owner) {
  const CheckpointEmbedReport& r = *in.checkpoint;
  const EmbedReport& e = r.report;
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : e.tensors) {
    nlohmann::json j{{"name", t.name}, {"dtype", std::string(dtype_name(t.dtype))}, {"elements", t.elements}, {"marked", t.used}};
    if (t.used)
      j["relative_change"] = t.relative_change;
    else
      j["skip_reason"] = t.skip_reason;
    tensors.push_back(std::move(j));
  }
  nlohmann::json withheld = nlohmann::json::array();
  for (const auto& [name, why] : r.withheld) withheld.push_back({{"name", name}, {"reason", why}});
  nlohmann::json outputs = nlohmann::json::array();
  for (const auto& o : r.outputs) outputs.push_back(o.string());
  return {{"input", in.input.string()},
          {"output", in.output.string()},
          {"outputs", outputs},
          {"format", std::string(checkpoint_format_name(r.format))},
          {"did", owner.did},
          {"scheme", std::string(scheme_name(e.scheme))},
          {"strength", e.strength},
          {"tensors", tensors},
          {"withheld", withheld},
          {"tensors_total", e.tensors.size() + r.withheld.size()},
          {"tensors_marked", e.tensors_marked},
          {"elements_marked", e.elements_marked},
          {"relative_change", e.relative_change},
          {"max_tensor_change", e.max_tensor_change},
          {"within_budget", e.within_budget},
          {"expected_z", e.expected_z},
          {"bytes", r.bytes_read},
          {"seconds", e.seconds},
          {"backend", e.backend}};
}

std::string checkpoint_embed_text(const InputEmbedReport& in, const Owner& owner) {
  const CheckpointEmbedReport& r = *in.checkpoint;
  const EmbedReport& e = r.report;
  const double mbps = e.seconds > 0 ? static_cast<double>(r.bytes_read) / e.seconds / 1e6 : 0;
  std::ostringstream s;
  s << "embed " << in.input.string() << " -> " << in.output.string() << " (" << checkpoint_format_name(r.format)
    << ", " << human_bytes(static_cast<double>(r.bytes_read)) << ")\n";
  s << "owner " << owner.did << ", " << scheme_name(e.scheme) << " at strength " << fmt("%.4g", e.strength) << "\n\n";
  std::size_t w = 6;
  for (const auto& t : e.tensors) w = std::max(w, t.name.size());
  for (const auto& [name, why] : r.withheld) w = std::max(w, name.size());
  w = std::min<std::size_t>(w, 72);
  char line[512];
  std::snprintf(line, sizeof line, "%-*s  %-7s %12s  %s\n", static_cast<int>(w), "tensor", "dtype", "elements",
                "relative change");
  s << line;
  for (const auto& t : e.tensors) {
    const std::string what = t.used ? fmt("%.4f%%", 100 * t.relative_change) : "skipped: " + t.skip_reason;
    std::snprintf(line, sizeof line, "%-*s  %-7s %12lld  %s\n", static_cast<int>(w), t.name.c_str(),
                  std::string(dtype_name(t.dtype)).c_str(), static_cast<long long>(t.elements), what.c_str());
    s << line;
  }
  for (const auto& [name, why] : r.withheld) {
    std::snprintf(line, sizeof line, "%-*s  %-7s %12s  not read: %s\n", static_cast<int>(w), name.c_str(), "-", "-",
                  why.c_str());
    s << line;
  }
  s << "\ntotal: " << e.tensors_marked << " of " << e.tensors.size() + r.withheld.size() << " tensors marked, "
    << e.elements_marked << " elements, relative change " << fmt("%.4f%%", 100 * e.relative_change) << " (max "
    << fmt("%.4f%%", 100 * e.max_tensor_change) << ")";
  if (e.scheme == Scheme::spread_spectrum) s << ", expected z " << fmt("%.1f", e.expected_z);
  s << "\n       " << fmt("%.2f", e.seconds) << " s, " << fmt("%.0f", mbps) << " MB/s on " << e.backend << "\n";
  s << "wrote";
  for (const auto& o : r.outputs) s << " " << o.string();
  s << "\n";
  return s.str();
}

nlohmann::json table_embed_json(const InputEmbedReport& in, const Owner& owner) {
  const TableEmbedReport& r = *in.table;
  return {{"format", "csv"},
          {"input", in.input.string()},
          {"output", in.output.string()},
          {"did", owner.did},
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
}

std::string table_embed_text(const InputEmbedReport& in, const Owner& owner) {
  const TableEmbedReport& r = *in.table;
  std::ostringstream t;
  t << "marked " << in.output.string() << " for " << owner.did << "\n"
    << "  rows " << r.rows << ", selected " << r.rows_selected << " (1 in " << r.gamma << "), cells marked "
    << r.cells_marked << ", changed " << r.cells_changed << ", skipped " << r.cells_skipped << "\n"
    << "  key column(s) " << nlohmann::json(r.key_columns).dump() << ", marked columns "
    << nlohmann::json(r.columns).dump() << "\n"
    << "  change per changed cell: " << fmt("%.2f", r.mean_abs_change_units) << " last-digit units on average, "
    << fmt("%.4f", 100 * r.mean_relative_change) << "% relative (max " << fmt("%.4f", 100 * r.max_relative_change)
    << "%), " << fmt("%.2f", r.seconds) << " s on " << r.backend << "\n";
  return t.str();
}

nlohmann::json array_embed_json(const InputEmbedReport& in, const Owner& owner) {
  const ArrayEmbedReport& r = *in.array;
  return {{"format", "npy"},
          {"input", in.input.string()},
          {"output", in.output.string()},
          {"did", owner.did},
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
          {"row_identity", in.row_identity},
          {"backend", r.backend},
          {"seconds", r.seconds}};
}

std::string array_embed_text(const InputEmbedReport& in, const Owner& owner) {
  const ArrayEmbedReport& r = *in.array;
  std::ostringstream t;
  t << "marked " << in.output.string() << " for " << owner.did << "\n"
    << "  rows " << r.rows << " x " << r.dim << ", marked " << r.rows_marked << ", skipped " << r.rows_skipped
    << " (zero or NaN/Inf)\n"
    << "  relative change " << fmt("%.4f", 100 * r.relative_change) << "% (max row "
    << fmt("%.4f", 100 * r.max_row_change) << "%), cosine to original min " << fmt("%.6f", r.min_cosine) << " mean "
    << fmt("%.6f", r.mean_cosine) << "\n"
    << "  expected z " << fmt("%.1f", r.expected_z) << " (p <= 1e-9 needs z >= 6.44), " << fmt("%.2f", r.seconds)
    << " s on " << r.backend << "\n";
  return t.str();
}

}  // namespace

nlohmann::json verdict_json(const Verdict& v) {
  nlohmann::json j{{"did", v.did},
                   {"status", std::string(verdict_status_name(v.status))},
                   {"detected", v.detected},
                   {"z", v.z},
                   {"p_value", v.p_value},
                   {"log10_p", v.log10_p},
                   {"bit_errors", v.bit_errors},
                   {"bits", v.bits},
                   {"elements", v.elements},
                   {"tensors", v.tensors}};
  if (v.weights) {
    j["scheme"] = std::string(scheme_name(v.scheme));
  } else if (v.table) {
    const TableVerifyReport& r = *v.table;
    j["format"] = "csv";
    j["rows"] = r.rows;
    j["marked_rows"] = r.marked_rows;
    j["matches"] = r.matches;
    j["duplicate_rows"] = r.duplicate_rows;
    j["bits_covered"] = r.bits_covered;
  } else if (v.array) {
    const ArrayVerifyReport& r = *v.array;
    j["format"] = "npy";
    j["rows"] = r.rows;
    j["dim"] = r.dim;
    j["rows_skipped"] = r.rows_skipped;
    j["duplicate_rows"] = r.duplicate_rows;
  }
  j["seconds"] = v.seconds;
  return j;
}

nlohmann::json file_verdicts_json(const FileVerdicts& fv) {
  nlohmann::json detected = nlohmann::json::array(), all = nlohmann::json::array();
  for (const auto& v : fv.verdicts) {
    if (v.detected) detected.push_back(v.did);
    all.push_back(verdict_json(v));
  }
  return {{"path", fv.path.string()},
          {"format", fv.format.name},
          {"detected", detected},
          {"verdicts", all},
          {"warnings", strings(fv.warnings)}};
}

std::string file_verdicts_text(const FileVerdicts& fv) {
  std::ostringstream s;
  char line[1024];
  std::snprintf(line, sizeof line, "%s (%s): %zu owner%s checked\n", fv.path.string().c_str(), fv.format.name.c_str(),
                fv.verdicts.size(), fv.verdicts.size() == 1 ? "" : "s");
  s << line;
  for (const auto& v : fv.verdicts) {
    char p[32];
    if (v.log10_p < -300)
      std::snprintf(p, sizeof p, "1e%.0f", v.log10_p);
    else
      std::snprintf(p, sizeof p, "%.3g", v.p_value);
    const char* word = v.status == VerdictStatus::detected        ? "DETECTED"
                       : v.status == VerdictStatus::not_detected ? "not detected"
                                                                 : "NO DATA";
    std::snprintf(line, sizeof line, "%-13s %s  z = %7.2f  p <= %-9s bit errors %d/%d  %s elements in %d tensor%s\n",
                  word, v.did.c_str(), v.z, p, v.bit_errors, v.bits, short_count(v.elements).c_str(), v.tensors,
                  v.tensors == 1 ? "" : "s");
    s << line;
  }
  for (const auto& w : fv.warnings) s << "warning: " << w << "\n";
  return s.str();
}

nlohmann::json embed_json(const InputEmbedReport& r, const Owner& owner) {
  nlohmann::json j = r.checkpoint ? checkpoint_embed_json(r, owner)
                     : r.table    ? table_embed_json(r, owner)
                                  : array_embed_json(r, owner);
  j["warnings"] = strings(r.warnings);
  return j;
}

std::string embed_text(const InputEmbedReport& r, const Owner& owner) {
  std::string s = r.checkpoint ? checkpoint_embed_text(r, owner)
                  : r.table    ? table_embed_text(r, owner)
                               : array_embed_text(r, owner);
  for (const auto& w : r.warnings) s += "warning: " + w + "\n";
  return s;
}

}  // namespace didmark::cli
