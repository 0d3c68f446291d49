#include <cmath>
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



std::string file_verdicts_text(const FileVerdicts& fv) {
  std::ostringstream s;
  char line[1024];
  std::snprintf(line, sizeof line, "%s (%s): %zu owner%s checked\n", fv.path.string().c_str(), fv.format.name.c_str(),
                fv.verdicts.size(), fv.verdicts.size() == 1 ? "" : "s");
  s << line;
  if (fv.family > 1) {
    std::snprintf(line, sizeof line, "family-wise p over %zu owners (Sidak); detection at %s\n", fv.family,
                  fv.fwer ? fmt("p_family <= %.3g", *fv.fwer).c_str() : "each owner's own p (--fwer off)");
    s << line;
  }
  if (fv.screen && fv.screen->screened) {
    const ScreenSummary& sc = *fv.screen;
    s << "screened on a sample:";
    for (const auto& st : sc.stages)
      s << " " << st.claims << " owners on " << short_count(st.elements) << " elements (" << st.passed
        << " at z >= " << fmt("%.2f", st.threshold) << ");";
    s << " " << sc.candidates << " confirmed by the full pass, " << fmt("%.2f", sc.screen_seconds) << " + "
      << fmt("%.2f", sc.confirm_seconds) << " s\n";
  }
  for (const auto& v : fv.verdicts) {
    char p[32];
    if (v.log10_p < -300)
      std::snprintf(p, sizeof p, "1e%.0f", v.log10_p);
    else
      std::snprintf(p, sizeof p, "%.3g", v.p_value);
    const char* word = v.status == VerdictStatus::detected        ? "DETECTED"
                       : v.status == VerdictStatus::not_detected ? "not detected"
                                                                 : "NO DATA";
    // A screened verdict decoded nothing (the screen sums the known-payload test only).
    char errors[32];
    if (v.screened)
      std::snprintf(errors, sizeof errors, "-/%d", v.bits);
    else
      std::snprintf(errors, sizeof errors, "%d/%d", v.bit_errors, v.bits);
    std::snprintf(line, sizeof line, "%-13s %s  z = %7.2f  p <= %-9s bit errors %s  %s elements in %d tensor%s%s\n",
                  word, v.did.c_str(), v.z, p, errors, short_count(v.elements).c_str(), v.tensors,
                  v.tensors == 1 ? "" : "s", v.screened ? " (sample)" : "");
    s << line;
    if (fv.family > 1 && v.status != VerdictStatus::no_eligible_data && !v.screened) {
      if (v.log10_p_family < -300)
        std::snprintf(p, sizeof p, "1e%.0f", v.log10_p_family);
      else
        std::snprintf(p, sizeof p, "%.3g", v.p_family);
      std::snprintf(line, sizeof line, "              family-wise p <= %s\n", p);
      s << line;
    }
    if (v.alignment && !v.sketch.empty()) {
      const AlignmentReport& a = *v.alignment;
      std::snprintf(line, sizeof line, "              with sketch %s: %s, %d tensors, %lld rows moved, %lld dropped\n",
                    v.sketch.string().c_str(), v.realigned ? "realigned" : "already aligned (ordinary test)",
                    a.tensors_matched, static_cast<long long>(a.rows_moved), static_cast<long long>(a.rows_dropped));
      s << line;
    }
  }
  if (fv.format.kind == InputKind::image && fv.images.size() > 1) {
    // A folder: the verdicts above are the dataset test; one line per image follows.
    for (const auto& item : fv.images) {
      if (!item.error_code.empty()) continue;  // listed among the warnings
      std::size_t best = 0;
      for (std::size_t k = 1; k < item.verdicts.size(); ++k)
        if (item.verdicts[k].log10_p < item.verdicts[best].log10_p) best = k;
      if (item.verdicts.empty()) continue;
      const Verdict& v = item.verdicts[best];
      std::snprintf(line, sizeof line, "  %-12s z = %6.2f  p <= %-9.3g %s\n", v.detected ? "detected" : "not detected",
                    v.z, v.p_value, item.path.string().c_str());
      s << line;
    }
  }
  for (const auto& w : fv.warnings) s << "warning: " << w << "\n";
  return s.str();
}


std::string sketch_text(const nlohmann::json& j) {
  char buf[512];
  if (j["kind"] == "array")
    std::snprintf(buf, sizeof buf, "sketch %s: %zu sampled rows, %s (%.2f%% of the array)\n",
                  j["path"].get<std::string>().c_str(), j["rows"].get<std::size_t>(),
                  human_bytes(j["bytes"].get<double>()).c_str(), 100 * j["fraction"].get<double>());
  else
    std::snprintf(buf, sizeof buf, "sketch %s: %s, %d dimensions%s, signature width %d, %s (%.3f%% of the model)\n",
                  j["path"].get<std::string>().c_str(), j["architecture"].get<std::string>().c_str(),
                  j["dimensions"].get<int>(), j["all"].get<bool>() ? " (all)" : "", j["samples"].get<int>(),
                  human_bytes(j["bytes"].get<double>()).c_str(), 100 * j["fraction"].get<double>());
  return buf;
}

std::string image_embed_text(const InputEmbedReport& r, const Owner& owner) {
  std::ostringstream s;
  int written = 0;
  double psnr = 0;
  for (const auto& i : r.images) {
    if (!i.error_code.empty()) continue;
    ++written;
    psnr += std::isfinite(i.report.psnr) ? i.report.psnr : 99.0;
    if (r.images.size() <= 20)
      s << "  " << i.input.string() << " -> " << i.output.string() << " (" << image_codec_name(i.codec) << ", "
        << i.report.width << " x " << i.report.height << ", PSNR " << fmt("%.1f", i.report.psnr) << " dB)\n";
  }
  std::ostringstream head;
  head << "marked " << written << " of " << r.images.size() << " image" << (r.images.size() == 1 ? "" : "s") << " for "
       << owner.did << " into " << r.output.string() << ", mean PSNR "
       << fmt("%.1f", written ? psnr / written : 0.0) << " dB\n";
  return head.str() + s.str();
}

std::string embed_text(const InputEmbedReport& r, const Owner& owner) {
  std::string s = !r.images.empty() ? image_embed_text(r, owner)
                  : r.checkpoint ? checkpoint_embed_text(r, owner)
                  : r.table    ? table_embed_text(r, owner)
                               : array_embed_text(r, owner);
  if (r.sketch) s += sketch_text(as_json(sketch_json(r.sketch_path, *r.sketch)));
  for (const auto& w : r.warnings) s += "warning: " + w + "\n";
  return s;
}

}  // namespace didmark::cli
