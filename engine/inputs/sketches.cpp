// Alignment sketches at the level of inputs: written by embed_input, used by verify_input for
// the owners that have one, made from a marked input by sketch_input (`didmark sketch`).
#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "inputs/inputs_detail.hpp"

namespace didmark {

namespace fs = std::filesystem;

std::vector<LoadedSketch> load_sketches(std::span<const std::string> paths) {
  std::vector<LoadedSketch> out;
  for (const auto& p : paths) out.push_back({p, std::make_shared<const AlignmentSketch>(AlignmentSketch::read(p))});
  return out;
}

AlignmentSketch sketch_input(const fs::path& path, std::string did, const InputOptions& o, Backend& backend) {
  const InputFormat f = classify_input(path, o.format);
  SketchOptions so = o.sketch;
  so.watermark = o.watermark;
  switch (f.kind) {
    case InputKind::array: {
      const NpyArray a = read_npy(path);
      const TensorView v = inputs_detail::array_view(a, path);
      const auto ids = inputs_detail::row_ids(path, v.shape[0], o);
      if (!so.watermark.strength) so.watermark.strength = o.array.strength;
      return make_array_sketch(v, ids, std::move(did), so, backend);
    }
    case InputKind::checkpoint:
      return sketch_checkpoint(resolve_checkpoint_path(path, f.checkpoint), f.checkpoint, std::move(did), so, backend);
    case InputKind::table:
    case InputKind::image: break;
  }
  DIDMARK_THROW(Errc::unsupported, "alignment sketches are for checkpoints and .npy arrays, not ", f.name, " files ('",
                path.string(), "')");
}

namespace inputs_detail {

void check_sketch_owners(std::span<const LoadedSketch> sketches, std::span<const Owner> owners) {
  for (const auto& s : sketches) {
    bool known = false;
    for (const auto& o : owners) known = known || o.did == s.sketch->did;
    DIDMARK_EXPECTS(known, not_found, "sketch '", s.path.string(),
                    "' is for an owner who is not among those being verified (its DID is not the --id's, or not "
                    "in the registry / the --did asked for)");
  }
}

void realign_verdicts(const SuspectData& suspect, std::span<const Owner> owners, const InputOptions& o,
                      Backend& backend, FileVerdicts& fv) {
  if (o.sketches.empty()) return;
  check_sketch_owners(o.sketches, owners);
  const bool array = fv.format.kind == InputKind::array;
  for (std::size_t i = 0; i < owners.size(); ++i) {
    const Owner& owner = owners[i];
    Verdict& v = fv.verdicts[i];
    v.alignment = AlignmentReport{};
    const Claim claim{owner.key, owner.payload};
    // Several sketches of one owner: the one the suspect fits best (most tensors matched),
    // chosen from the sketches and the suspect alone.
    const LoadedSketch* best = nullptr;
    AlignmentReport best_how;
    std::optional<Verdict> best_verdict;
    for (const auto& s : o.sketches) {
      if (s.sketch->did != owner.did || (s.sketch->kind == SketchKind::array) != array) continue;
      AlignmentReport how;
      Verdict nv;
      try {
        if (array) {
          ArrayOptions ao = o.array;
          ao.p_threshold = o.watermark.p_threshold;
          const auto r =
              verify_array_realigned(*suspect.array, suspect.ids, *s.sketch, std::span(&claim, 1), ao, backend, &how);
          nv = verdict_of(owner, r[0]);
        } else {
          if (!suspect.checkpoint) continue;  // a table has nothing to realign
          const auto r = verify_realigned(suspect.checkpoint->tensors(), *s.sketch, std::span(&claim, 1),
                                          o.watermark, backend, &how, o.realign);
          nv = verdict_of(owner, r[0]);
        }
      } catch (const Error& e) {
        throw Error(e.code(), detail::concat("sketch '", s.path.string(), "': ", e.what()), e.where());
      }
      if (!best || how.tensors_matched > best_how.tensors_matched) {
        best = &s;
        best_how = how;
        best_verdict = std::move(nv);
      }
    }
    if (!best) continue;
    if (best_how.realigned) v = std::move(*best_verdict);
    v.realigned = best_how.realigned;
    v.alignment = best_how;
    v.sketch = best->path;
  }
}

}  // namespace inputs_detail
}  // namespace didmark
