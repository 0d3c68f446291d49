// The JSON of verdicts and embed reports: one vocabulary for the CLI's --json, Python's dicts
// and the server's logs (field names are a contract; docs/json/ holds the schemas).
#include <cmath>
#include <nlohmann/json.hpp>

#include "didmark/inputs.hpp"

namespace didmark {
namespace {

nlohmann::json strings(const std::vector<std::string>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : v) a.push_back(s);
  return a;
}

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
  // Canonical names beside their aliases (docs/json/README.md): path = input, sharded beside
  // the reader name in format, max_relative_change = max_tensor_change.
  return {{"path", in.input.string()},
          {"input", in.input.string()},
          {"output", in.output.string()},
          {"outputs", outputs},
          {"kind", "checkpoint"},
          {"format", std::string(checkpoint_format_name(r.format))},
          {"sharded", r.format == CheckpointFormat::safetensors_sharded},
          {"did", owner.did},
          {"scheme", std::string(scheme_name(e.scheme))},
          {"strength", e.strength},
          {"tensors", tensors},
          {"withheld", withheld},
          {"tensors_total", e.tensors.size() + r.withheld.size()},
          {"tensors_marked", e.tensors_marked},
          {"elements_marked", e.elements_marked},
          {"relative_change", e.relative_change},
          {"max_relative_change", e.max_tensor_change},
          {"max_tensor_change", e.max_tensor_change},
          {"within_budget", e.within_budget},
          {"expected_z", e.expected_z},
          {"bytes", r.bytes_read},
          {"seconds", e.seconds},
          {"backend", e.backend}};
}

nlohmann::json table_embed_json(const InputEmbedReport& in, const Owner& owner) {
  const TableEmbedReport& r = *in.table;
  // Canonical beside alias: rows_marked = rows_selected, columns_marked = tensors_marked,
  // mark_columns = columns (the same names as the table verdict).
  return {{"kind", "table"},
          {"format", "csv"},
          {"sharded", false},
          {"path", in.input.string()},
          {"input", in.input.string()},
          {"output", in.output.string()},
          {"did", owner.did},
          {"rows", r.rows},
          {"rows_marked", r.rows_selected},
          {"rows_selected", r.rows_selected},
          {"elements_marked", r.cells_marked},
          {"cells_marked", r.cells_marked},
          {"cells_changed", r.cells_changed},
          {"cells_skipped", r.cells_skipped},
          {"columns_marked", static_cast<int>(r.columns.size())},
          {"tensors_marked", static_cast<int>(r.columns.size())},
          {"key_columns", r.key_columns},
          {"mark_columns", r.columns},
          {"columns", r.columns},
          {"gamma", r.gamma},
          {"delimiter", std::string(1, r.delimiter)},
          {"bits", r.bits},
          {"mean_abs_change_units", r.mean_abs_change_units},
          {"relative_change", r.mean_relative_change},
          {"max_relative_change", r.max_relative_change},
          {"within_budget", true},
          {"backend", r.backend},
          {"seconds", r.seconds}};
}

nlohmann::json array_embed_json(const InputEmbedReport& in, const Owner& owner) {
  const ArrayEmbedReport& r = *in.array;
  // Canonical beside alias: path = input, max_relative_change = max_row_change.
  return {{"kind", "array"},
          {"format", "npy"},
          {"sharded", false},
          {"path", in.input.string()},
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
          {"max_relative_change", r.max_row_change},
          {"max_row_change", r.max_row_change},
          {"min_cosine", r.min_cosine},
          {"mean_cosine", r.mean_cosine},
          {"within_budget", r.within_budget},
          {"expected_z", r.expected_z},
          {"row_identity", in.row_identity},
          {"backend", r.backend},
          {"seconds", r.seconds}};
}

nlohmann::json image_embed_json(const InputEmbedReport& in, const Owner& owner) {
  nlohmann::json images = nlohmann::json::array();
  int written = 0;
  double psnr_sum = 0;
  for (const auto& i : in.images) {
    nlohmann::json e{{"path", i.input.string()}, {"output", i.output.string()}};
    if (!i.error_code.empty()) {
      e["error"] = {{"code", i.error_code}, {"message", i.error_message}};
    } else {
      ++written;
      psnr_sum += std::isfinite(i.report.psnr) ? i.report.psnr : 99.0;
      e["format"] = std::string(image_codec_name(i.codec));
      e["width"] = i.report.width;
      e["height"] = i.report.height;
      e["channels"] = i.report.channels;
      e["psnr"] = std::isfinite(i.report.psnr) ? nlohmann::json(i.report.psnr) : nlohmann::json(nullptr);
      e["mean_abs_change"] = i.report.mean_abs_change;
      e["phase"] = {i.report.offset_x, i.report.offset_y};
      if (i.codec == ImageCodec::jpeg) {
        e["quality"] = i.quality;
        e["subsampling"] = i.subsampling;
      }
      e["icc"] = i.icc;
      e["exif"] = i.exif;
      e["seconds"] = i.report.seconds;
    }
    images.push_back(std::move(e));
  }
  return {{"path", in.input.string()},  // canonical; input is its alias, as for every kind
          {"input", in.input.string()},
          {"output", in.output.string()},
          {"kind", "image"},
          {"format", in.format.name},
          {"sharded", false},
          {"backend", in.backend},
          {"seconds", in.seconds},
          {"did", owner.did},
          {"strength", in.images.empty() ? 0.0 : in.images.front().report.strength},
          {"images_written", written},
          {"images_failed", static_cast<int>(in.images.size()) - written},
          {"mean_psnr", written ? psnr_sum / written : 0.0},
          {"images", images},
          {"outputs", [&] {
             nlohmann::json o = nlohmann::json::array();
             for (const auto& p : in.outputs) o.push_back(p.string());
             return o;
           }()}};
}

nlohmann::json alignment_json(const AlignmentReport& r, const std::filesystem::path& sketch) {
  return {{"tensors_matched", r.tensors_matched},
          {"rows_moved", r.rows_moved},
          {"rows_dropped", r.rows_dropped},
          {"rows_held_out", r.rows_held_out},
          {"sign_flips", r.sign_flips},
          {"rescaled", r.rescaled},
          {"dims_recovered", r.dims_recovered},
          {"dims_failed", r.dims_failed},
          {"seconds", r.seconds},
          {"sketch", sketch.empty() ? nlohmann::json(nullptr) : nlohmann::json(sketch.string())}};
}

nlohmann::json sketch_json_of(const std::filesystem::path& path, const AlignmentSketch& sk) {
  int dims = 0;
  for (const auto& d : sk.dims) dims += !d.anchored && d.width() > 0 ? 1 : 0;
  const uint64_t bytes = sk.bytes();
  return {{"path", path.string()},
          {"kind", std::string(sketch_kind_name(sk.kind))},
          {"did", sk.did},
          {"architecture", sk.architecture},
          {"bytes", bytes},
          {"model_bytes", sk.model_bytes},
          {"fraction", sk.model_bytes ? static_cast<double>(bytes) / static_cast<double>(sk.model_bytes) : 0.0},
          {"dimensions", dims},
          {"samples", sk.samples},
          {"all", sk.all},
          {"rows", sk.kind == SketchKind::array ? sk.array.ids.size() : 0}};
}

nlohmann::json verdict_json_of(const Verdict& v) {
  nlohmann::json j{{"did", v.did},
                   {"status", std::string(verdict_status_name(v.status))},
                   {"detected", v.detected},
                   {"z", v.z},
                   {"p_value", v.p_value},
                   {"log10_p", v.log10_p},
                   {"p_family", v.p_family},
                   {"log10_p_family", v.log10_p_family},
                   {"screened", v.screened},
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
    j["rows_marked"] = r.marked_rows;  // canonical; marked_rows is its alias
    j["marked_rows"] = r.marked_rows;
    j["matches"] = r.matches;
    j["duplicate_rows"] = r.duplicate_rows;
    j["bits_covered"] = r.bits_covered;
    j["key_columns"] = r.key_column_names;
    j["mark_columns"] = r.mark_column_names;
    j["columns_marked"] = v.tensors;  // what "tensors" counts for a table
    j["delimiter"] = std::string(1, r.delimiter);
  } else if (v.array) {
    const ArrayVerifyReport& r = *v.array;
    j["format"] = "npy";
    j["rows"] = r.rows;
    j["dim"] = r.dim;
    j["rows_skipped"] = r.rows_skipped;
    j["duplicate_rows"] = r.duplicate_rows;
  } else if (v.image) {
    const Verdict::ImageFacts& f = *v.image;
    j["format"] = "image";
    j["images"] = f.images;
    j["images_detected"] = f.images_detected;
    if (f.width > 0) {
      j["width"] = f.width;
      j["height"] = f.height;
      j["offset_x"] = f.offset_x;
      j["offset_y"] = f.offset_y;
      j["sync_z"] = f.sync_z;
    }
  }
  j["seconds"] = v.seconds;
  if (v.alignment) {  // only once sketches were given: without one, nothing changes
    j["realigned"] = v.realigned;
    j["alignment"] = alignment_json(*v.alignment, v.sketch);
  }
  return j;
}

nlohmann::json screen_json(const ScreenSummary& s) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& st : s.stages)
    stages.push_back({{"stride", st.stride},
                      {"elements", st.elements},
                      {"owners", st.claims},
                      {"threshold_z", st.threshold},
                      {"passed", st.passed},
                      {"seconds", st.seconds}});
  nlohmann::json j{{"screened", s.screened},
                   {"owners", s.claims},
                   {"candidates", s.candidates},
                   {"model_elements", s.model_elements},
                   {"stages", stages},
                   {"screen_seconds", s.screen_seconds},
                   {"confirm_seconds", s.confirm_seconds}};
  if (s.screened)
    j["assumed_strength"] = s.strength;
  else
    j["reason"] = s.reason;
  return j;
}

nlohmann::json file_json(const FileVerdicts& fv) {
  nlohmann::json detected = nlohmann::json::array(), all = nlohmann::json::array();
  for (const auto& v : fv.verdicts) {
    if (v.detected) detected.push_back(v.did);
    all.push_back(verdict_json_of(v));
  }
  nlohmann::json j{{"path", fv.path.string()},
          {"kind", std::string(input_kind_name(fv.format.kind))},
          {"format", fv.format.name},
          {"sharded", fv.format.kind == InputKind::checkpoint &&
                          fv.format.checkpoint == CheckpointFormat::safetensors_sharded},
          {"detected", detected},
          {"verdicts", all},
          {"warnings", strings(fv.warnings)},
          {"family", fv.family},
          {"fwer", fv.fwer ? nlohmann::json(*fv.fwer) : nlohmann::json(nullptr)},
          {"family_correction", "sidak"},
          {"screen", fv.screen ? screen_json(*fv.screen) : nlohmann::json(nullptr)}};
  if (fv.format.kind == InputKind::image) {
    // One entry per image: the owner with the smallest p first (path, z, p_value, detected),
    // then every owner's verdict.
    nlohmann::json images = nlohmann::json::array();
    for (const ImageItem& item : fv.images) {
      nlohmann::json e{{"path", item.path.string()}};
      if (!item.error_code.empty()) {
        e["error"] = {{"code", item.error_code}, {"message", item.error_message}};
        e["z"] = nullptr;
        e["p_value"] = nullptr;
        e["detected"] = false;
      } else {
        std::size_t best = 0;
        for (std::size_t k = 1; k < item.verdicts.size(); ++k)
          if (item.verdicts[k].log10_p < item.verdicts[best].log10_p) best = k;
        if (!item.verdicts.empty()) {
          const Verdict& v = item.verdicts[best];
          e["did"] = v.did;
          e["z"] = v.z;
          e["p_value"] = v.p_value;
          e["log10_p"] = v.log10_p;
          e["p_family"] = v.p_family;
          e["detected"] = v.detected;
        }
        e["width"] = item.width;
        e["height"] = item.height;
        nlohmann::json per = nlohmann::json::array();
        for (const Verdict& v : item.verdicts) per.push_back(verdict_json_of(v));
        e["verdicts"] = per;
      }
      images.push_back(std::move(e));
    }
    j["images"] = images;
  }
  return j;
}

nlohmann::json embed_json_of(const InputEmbedReport& r, const Owner& owner) {
  nlohmann::json j = !r.images.empty() ? image_embed_json(r, owner)
                     : r.checkpoint ? checkpoint_embed_json(r, owner)
                     : r.table    ? table_embed_json(r, owner)
                                  : array_embed_json(r, owner);
  if (r.sketch) j["sketch"] = sketch_json_of(r.sketch_path, *r.sketch);
  j["warnings"] = strings(r.warnings);
  return j;
}

std::string dump(const nlohmann::json& j) {
  // File names and CSV cells need not be UTF-8: replace bad bytes rather than abort.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string verdict_json(const Verdict& v) { return dump(verdict_json_of(v)); }
std::string file_verdicts_json(const FileVerdicts& fv) { return dump(file_json(fv)); }
std::string embed_report_json(const InputEmbedReport& r, const Owner& owner) { return dump(embed_json_of(r, owner)); }
std::string sketch_json(const std::filesystem::path& path, const AlignmentSketch& sketch) {
  return dump(sketch_json_of(path, sketch));
}

}  // namespace didmark
