// `didmark attribute ...` (KNN-Shapley, projection, TRAK, lineage shares) and
// `didmark synth knn-dataset` (the built-in dataset of the quick start).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>

#include "certificate_hooks.hpp"
#include "cli.hpp"
#include "common/atomic_file.hpp"
#include "didmark/attribution.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/io.hpp"
#include "didmark/inputs.hpp"

namespace didmark::cli {
namespace {

// ---- shared helpers ----------------------------------------------------------------------

struct Loaded {
  NpyArray array;
  TensorView view;
};

Loaded load(const std::string& path) {
  Loaded l{read_npy(path), {}};
  l.view = l.array.view();
  return l;
}

// Contributor names: line i of the file names contributor id i.
std::vector<std::string> read_names(const std::string& path) {
  std::istringstream in(read_text_file(path, "contributor names"));
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    names.push_back(line);
  }
  while (!names.empty() && names.back().empty()) names.pop_back();
  return names;
}

std::string contributor_name(int64_t id, const std::vector<std::string>& names, const std::string& names_path) {
  if (names.empty()) return std::to_string(id);
  DIDMARK_EXPECTS(id >= 0 && id < static_cast<int64_t>(names.size()) && !names[static_cast<std::size_t>(id)].empty(),
                  invalid_argument, "contributor id ", id, " has no name in '", names_path, "' (", names.size(),
                  " lines; line i names id i)");
  return names[static_cast<std::size_t>(id)];
}

void check_new_output(const std::string& path, bool force) {
  if (path.empty() || force) return;
  DIDMARK_EXPECTS(!std::filesystem::exists(path), invalid_argument, "'", path,
                  "' exists; pass --force to replace it");
}

void write_json_file(const std::string& path, const nlohmann::json& j, bool force) {
  check_new_output(path, force);
  detail::write_file_atomically(path, j.dump(2) + "\n", true);
}

void write_values(const std::string& path, const std::vector<double>& values, bool force) {
  const TensorView v = TensorView::contiguous(const_cast<double*>(values.data()), DType::f64,
                                              {static_cast<int64_t>(values.size())});
  write_npy(path, v, force);
}

// The `contributors` object (name -> total), rows per contributor, and the human table.
struct TotalsOut {
  nlohmann::json totals = nlohmann::json::object();
  nlohmann::json rows = nlohmann::json::object();
  std::string table;
};

TotalsOut totals_out(const ContributorTotals& t, const std::vector<std::string>& names, const std::string& names_path) {
  TotalsOut o;
  std::vector<std::size_t> order(t.ids.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return t.totals[a] > t.totals[b]; });
  std::ostringstream table;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-58s %8s %14s %14s\n", "contributor", "rows", "total", "per row");
  table << buf;
  for (std::size_t i : order) {
    const std::string name = contributor_name(t.ids[i], names, names_path);
    DIDMARK_EXPECTS(!o.totals.contains(name), invalid_argument, "contributor name '", name,
                    "' is used by two contributor ids");
    o.totals[name] = t.totals[i];
    o.rows[name] = t.rows[i];
    std::snprintf(buf, sizeof buf, "%-58s %8lld %14.6g %14.6g\n", name.c_str(), static_cast<long long>(t.rows[i]),
                  t.totals[i], t.totals[i] / static_cast<double>(std::max<int64_t>(t.rows[i], 1)));
    table << buf;
  }
  o.table = table.str();
  return o;
}

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

// ---- knn-shapley ------------------------------------------------------------------------------

struct KnnArgs {
  std::string train, train_labels, test, test_labels, contributors, names, output, totals_out;
  int k = 5;
  int64_t query_tile = 0;
  bool force = false;
};

int run_knn(Globals& g, const KnnArgs& a) {
  check_new_output(a.output, a.force);
  check_new_output(a.totals_out, a.force);
  DIDMARK_EXPECTS(a.names.empty() || !a.contributors.empty(), invalid_argument,
                  "--contributor-names needs --contributors");
  const Loaded x = load(a.train), y = load(a.train_labels), q = load(a.test), yq = load(a.test_labels);
  std::optional<Loaded> c;
  if (!a.contributors.empty()) c = load(a.contributors);
  const std::vector<std::string> names = a.names.empty() ? std::vector<std::string>{} : read_names(a.names);
  KnnShapleyOptions o;
  o.k = a.k;
  o.query_tile = a.query_tile;
  const KnnShapleyReport r =
      knn_shapley(x.view, y.view, q.view, yq.view, o, c ? std::optional<TensorView>(c->view) : std::nullopt, g.backend());
  const TotalsOut t = totals_out(r.contributors, names, a.names);
  if (!a.output.empty()) write_values(a.output, r.values, a.force);
  if (!a.totals_out.empty()) write_json_file(a.totals_out, t.totals, a.force);
  const double total = sum(r.values);
  if (g.json) {
    print_json({{"method", "knn-shapley"},
                {"train", r.train},
                {"test", r.queries},
                {"dim", r.dim},
                {"k", r.k},
                {"compute", std::string(dtype_name(r.compute))},
                {"duplicate_rows", r.duplicate_rows},
                {"sum", total},
                {"contributors", t.totals},
                {"contributor_rows", t.rows},
                {"output", a.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.output)},
                {"values", a.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.output)},
                {"backend", r.backend},
                {"seconds", r.seconds}});
    return kExitOk;
  }
  std::printf("knn-shapley: %lld training rows, %lld queries, D = %lld, K = %d (%s) on %s: %.3f s\n",
              static_cast<long long>(r.train), static_cast<long long>(r.queries), static_cast<long long>(r.dim), r.k,
              std::string(dtype_name(r.compute)).c_str(), r.backend.c_str(), r.seconds);
  std::printf("sum of values %.6f (by efficiency: the %d-NN utility of the whole training set)\n", total, r.k);
  if (r.duplicate_rows > 0)
    std::printf("%lld training rows repeat an earlier row (tied by index)\n", static_cast<long long>(r.duplicate_rows));
  if (!r.contributors.empty()) std::printf("\n%s", t.table.c_str());
  if (!a.output.empty()) std::printf("\nper-row values: %s\n", a.output.c_str());
  if (!a.totals_out.empty()) std::printf("contributor totals: %s\n", a.totals_out.c_str());
  return kExitOk;
}

// ---- project -------------------------------------------------------------------------------

struct ProjectArgs {
  std::string grads, output;
  int64_t k = 2048;
  uint64_t seed = 0;
  int64_t feature_tile = 0;
  bool f64 = false;
  bool force = false;
};

int run_project(Globals& g, const ProjectArgs& a) {
  check_new_output(a.output, a.force);
  const Loaded gr = load(a.grads);
  DIDMARK_EXPECTS(gr.view.rank() == 2, invalid_argument, "--grads: expected a matrix (rows x features), got ",
                  gr.view.describe());
  const Projection proj{a.seed, a.k};
  const DType ot = a.f64 ? DType::f64 : DType::f32;
  DIDMARK_EXPECTS(a.k >= 1, invalid_argument, "-k ", a.k, " must be at least 1");
  std::vector<unsigned char> out(static_cast<std::size_t>(gr.view.shape[0] * a.k) * dtype_size(ot));
  const TensorView ov = TensorView::contiguous(out.data(), ot, {gr.view.shape[0], a.k});
  const auto t0 = std::chrono::steady_clock::now();
  project(gr.view, proj, ov, {.feature_tile = a.feature_tile}, g.backend());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!a.output.empty()) write_npy(a.output, ov, a.force);
  const double bytes = static_cast<double>(gr.view.nbytes());
  if (g.json) {
    print_json({{"method", "project"},
                {"rows", gr.view.shape[0]},
                {"dim", gr.view.shape[1]},
                {"features", gr.view.shape[1]},
                {"k", a.k},
                {"seed", a.seed},
                {"dtype", std::string(dtype_name(ot))},
                {"output", a.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.output)},
                {"seconds", s},
                {"gb_per_s", bytes / s / 1e9},
                {"backend", g.backend().description()}});
    return kExitOk;
  }
  std::printf("projected %lld x %lld (%s) to k = %lld with seed %llu in %.3f s (%s/s)%s%s\n",
              static_cast<long long>(gr.view.shape[0]), static_cast<long long>(gr.view.shape[1]),
              human_bytes(bytes).c_str(), static_cast<long long>(a.k), static_cast<unsigned long long>(a.seed), s,
              human_bytes(bytes / s).c_str(), a.output.empty() ? "" : " -> ", a.output.c_str());
  return kExitOk;
}

// ---- trak --------------------------------------------------------------------------------------

struct TrakArgs {
  std::vector<std::string> train, test, weights;
  std::string contributors, names, output, scores, totals_out;
  int64_t k = 2048;
  uint64_t seed = 0;
  double ridge = 1e-6;
  double lambda = -1;
  bool force = false;
};

int run_trak(Globals& g, const TrakArgs& a) {
  check_new_output(a.output, a.force);
  check_new_output(a.scores, a.force);
  check_new_output(a.totals_out, a.force);
  DIDMARK_EXPECTS(a.train.size() == a.test.size(), invalid_argument, a.train.size(), " --train files but ",
                  a.test.size(), " --test files: give one of each per checkpoint, in the same order");
  DIDMARK_EXPECTS(a.weights.empty() || a.weights.size() == a.train.size(), invalid_argument, a.weights.size(),
                  " --train-weights files for ", a.train.size(), " checkpoints");
  DIDMARK_EXPECTS(a.names.empty() || !a.contributors.empty(), invalid_argument,
                  "--contributor-names needs --contributors");
  std::vector<Loaded> keep;
  keep.reserve(3 * a.train.size() + 1);
  std::vector<GradientCheckpoint> cps;
  for (std::size_t c = 0; c < a.train.size(); ++c) {
    keep.push_back(load(a.train[c]));
    const TensorView tv = keep.back().view;
    keep.push_back(load(a.test[c]));
    GradientCheckpoint cp{tv, keep.back().view, std::nullopt};
    if (!a.weights.empty()) {
      keep.push_back(load(a.weights[c]));
      cp.train_weights = keep.back().view;
    }
    cps.push_back(cp);
  }
  std::optional<Loaded> contrib;
  if (!a.contributors.empty()) contrib = load(a.contributors);
  const std::vector<std::string> names = a.names.empty() ? std::vector<std::string>{} : read_names(a.names);
  TrakOptions o;
  o.projection = Projection{a.seed, a.k};
  o.ridge = a.ridge;
  if (a.lambda >= 0) o.lambda = a.lambda;
  std::unique_ptr<NpyScoreWriter> writer;
  ScoreSink sink;
  if (!a.scores.empty()) {
    writer = std::make_unique<NpyScoreWriter>(a.scores, cps[0].queries.shape[0], cps[0].train.shape[0], a.force);
    sink = writer->sink();
  }
  const TrakReport r = trak(cps, o, contrib ? std::optional<TensorView>(contrib->view) : std::nullopt, sink, g.backend());
  if (writer) writer->commit();
  const TotalsOut t = totals_out(r.contributors, names, a.names);
  if (!a.output.empty()) write_values(a.output, r.values, a.force);
  if (!a.totals_out.empty()) write_json_file(a.totals_out, t.totals, a.force);
  if (g.json) {
    print_json({{"method", "trak"},
                {"train", r.train},
                {"test", r.queries},
                {"k", r.k},
                {"seed", a.seed},
                {"checkpoints", r.checkpoints},
                {"lambdas", r.lambdas},
                {"sum", sum(r.values)},
                {"contributors", t.totals},
                {"contributor_rows", t.rows},
                {"output", a.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.output)},
                {"values", a.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.output)},
                {"scores", a.scores.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.scores)},
                {"backend", r.backend},
                {"project_seconds", r.project_seconds},
                {"seconds", r.seconds}});
    return kExitOk;
  }
  std::printf("trak: %lld training rows, %lld queries, %d checkpoint(s), k = %lld on %s: %.3f s (projection %.3f s)\n",
              static_cast<long long>(r.train), static_cast<long long>(r.queries), r.checkpoints,
              static_cast<long long>(r.k), r.backend.c_str(), r.seconds, r.project_seconds);
  if (!r.contributors.empty()) std::printf("\n%s", t.table.c_str());
  if (!a.output.empty()) std::printf("\nper-row mean scores: %s\n", a.output.c_str());
  if (!a.scores.empty()) std::printf("score matrix (%lld x %lld, f32): %s\n", static_cast<long long>(r.queries),
                                     static_cast<long long>(r.train), a.scores.c_str());
  if (!a.totals_out.empty()) std::printf("contributor totals: %s\n", a.totals_out.c_str());
  return kExitOk;
}

// ---- lineage ---------------------------------------------------------------------------------

struct LineageArgs {
  std::string checkpoint, registry, verdicts, format, output;
  bool force = false;
  double p_threshold = 1e-9;  // detection decided again at this p (verdicts with a p_value)
  CertificateFlags cert;         // --certificate, --trust-authority
  double derivative_share = 0.2;  // with certificates
  CLI::App* cmd = nullptr;
};

struct VerdictSet {
  std::string name;  // the file the verdicts are about ("" when unnamed)
  std::vector<OwnerEvidence> evidence;
};

std::vector<OwnerEvidence> evidence_of(const nlohmann::json& verdicts, const std::string& where) {
  std::vector<OwnerEvidence> out;
  DIDMARK_EXPECTS(verdicts.is_array(), corrupt_input, where, ": 'verdicts' is not an array");
  for (const auto& v : verdicts) {
    DIDMARK_EXPECTS(v.is_object() && v.contains("did") && v["did"].is_string() && v.contains("z") &&
                        v["z"].is_number() && v.contains("detected") && v["detected"].is_boolean(),
                    corrupt_input, where, ": a verdict without a string 'did', a number 'z' and a boolean 'detected'");
    OwnerEvidence e{v["did"].get<std::string>(), v["z"].get<double>(), v["detected"].get<bool>()};
    if (v.contains("p_value") && v["p_value"].is_number()) e.p_value = v["p_value"].get<double>();
    out.push_back(std::move(e));
  }
  return out;
}

// Verdicts from `didmark scan` (JSON Lines, one object per file with "verdicts") or from a
// `didmark verify --json` object, or a bare array of verdicts.
std::vector<VerdictSet> read_verdicts(const std::string& path) {
  const std::string text = read_text_file(path, "verdicts");
  std::vector<nlohmann::json> docs;
  const nlohmann::json whole = nlohmann::json::parse(text, nullptr, false);
  if (!whole.is_discarded()) {
    docs.push_back(whole);
  } else {
    std::istringstream lines(text);
    std::string line;
    int no = 0;
    while (std::getline(lines, line)) {
      ++no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      DIDMARK_EXPECTS(!j.is_discarded(), corrupt_input, "'", path, "' line ", no, ": not JSON");
      docs.push_back(std::move(j));
    }
  }
  std::vector<VerdictSet> sets;
  VerdictSet loose;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const auto& d = docs[i];
    const std::string where = detail::concat("'", path, "' entry ", i + 1);
    if (d.is_array()) {
      auto e = evidence_of(d, where);
      loose.evidence.insert(loose.evidence.end(), e.begin(), e.end());
    } else if (d.is_object() && d.contains("verdicts")) {
      VerdictSet s;
      for (const char* key : {"path", "file", "input", "checkpoint"})
        if (d.contains(key) && d[key].is_string()) {
          s.name = d[key].get<std::string>();
          break;
        }
      s.evidence = evidence_of(d["verdicts"], where);
      sets.push_back(std::move(s));
    } else if (d.is_object() && d.contains("did")) {
      auto e = evidence_of(nlohmann::json::array({d}), where);
      loose.evidence.insert(loose.evidence.end(), e.begin(), e.end());
    } else if (d.is_object() && d.contains("error")) {
      continue;  // a file the scan could not read
    } else {
      DIDMARK_THROW(Errc::corrupt_input, where, ": neither a verdict nor an object with 'verdicts'");
    }
  }
  if (!loose.evidence.empty()) sets.push_back(std::move(loose));
  DIDMARK_EXPECTS(!sets.empty(), corrupt_input, "'", path, "' holds no verdicts");
  return sets;
}

bool same_file(const std::string& a, const std::string& b) {
  if (a == b) return true;
  std::error_code ec;
  if (std::filesystem::exists(a, ec) && std::filesystem::exists(b, ec)) return std::filesystem::equivalent(a, b, ec);
  return std::filesystem::path(a).filename() == std::filesystem::path(b).filename();
}

int run_certified_lineage(Globals& g, const LineageArgs& a);

int run_lineage(Globals& g, const LineageArgs& a) {
  if (!a.cert.files.empty()) return run_certified_lineage(g, a);
  check_new_output(a.output, a.force);
  std::vector<OwnerEvidence> evidence;
  std::string source;
  if (!a.verdicts.empty()) {
    const auto sets = read_verdicts(a.verdicts);
    const VerdictSet* pick = nullptr;
    if (!a.checkpoint.empty()) {
      for (const auto& s : sets)
        if (!s.name.empty() && same_file(s.name, a.checkpoint)) pick = &s;
      DIDMARK_EXPECTS(pick != nullptr || (sets.size() == 1 && sets[0].name.empty()), not_found, "'", a.verdicts,
                      "' has no verdicts for '", a.checkpoint, "'");
      if (!pick) pick = &sets[0];
    } else if (sets.size() == 1) {
      pick = &sets[0];
    } else {
      // Several files and none named: the first one in which some owner was detected.
      for (const auto& s : sets)
        if (std::any_of(s.evidence.begin(), s.evidence.end(), [](const auto& e) { return e.detected; })) {
          pick = &s;
          break;
        }
      if (!pick) pick = &sets[0];
      if (!g.quiet)
        std::cerr << "didmark: " << a.verdicts << " holds " << sets.size() << " files; using '" << pick->name
                  << "' (name the checkpoint to choose another)\n";
    }
    evidence = pick->evidence;
    source = pick->name.empty() ? a.verdicts : pick->name;
    if (a.cmd->count("--p-threshold") > 0)
      for (auto& e : evidence) {
        DIDMARK_EXPECTS(e.p_value < 1.0 || !e.detected, corrupt_input, "'", a.verdicts, "': the verdict of ", e.did,
                        " has no p_value, so --p-threshold cannot decide it again");
        e.detected = e.p_value <= a.p_threshold;
      }
  } else {
    DIDMARK_EXPECTS(!a.checkpoint.empty() && !a.registry.empty(), invalid_argument,
                    "give a CHECKPOINT and --registry REG.jsonl, or --verdicts FILE (the output of didmark scan)");
    const auto owners = owners_of(load_registry(a.registry), {}, "registry '" + a.registry + "'");
    InputOptions o;
    o.format = a.format;
    o.watermark.p_threshold = o.table.p_threshold = o.array.p_threshold = a.p_threshold;
    for (const Verdict& v : verify_input(a.checkpoint, owners, o, g.backend()).verdicts)
      evidence.push_back({v.did, v.z, v.detected, v.p_value});
    source = a.checkpoint;
  }
  const LineageReport r = lineage_shares(evidence);
  nlohmann::json weights = nlohmann::json::object(), owners = nlohmann::json::array();
  int suggestive = 0;
  for (const auto& o : r.owners) {
    owners.push_back({{"did", o.did},
                      {"z", o.z},
                      {"p_value", o.p_value},
                      {"detected", o.detected},
                      {"status", o.detected ? "detected" : o.suggestive ? "suggestive" : "not_detected"},
                      {"share", o.share}});
    if (o.share > 0) weights[o.did] = o.share;
    suggestive += o.suggestive ? 1 : 0;
  }
  nlohmann::json warnings = nlohmann::json::array();
  if (suggestive > 0)
    warnings.push_back(detail::concat(suggestive, " owner(s) suggestive: p <= ", kSuggestiveP,
                                      " but above --p-threshold ", a.p_threshold,
                                      "; no share (verify with more data, or decide the threshold knowingly)"));
  if (!a.output.empty()) write_json_file(a.output, weights, a.force);
  if (g.json) {
    print_json({{"method", "lineage"},
                {"source", source},
                {"rule", "share = z / sum(z) over detected owners with z > 0; undetected owners get 0"},
                {"p_threshold", a.p_threshold},
                {"warnings", warnings},
                {"any_detected", r.any_detected},
                {"owners", owners},
                {"weights", weights},
                {"output", a.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.output)}});
    return kExitOk;
  }
  std::printf("lineage of %s (share proportional to z among detected owners)\n", source.c_str());
  std::printf("%-58s %10s %-12s %8s\n", "owner", "z", "verdict", "share");
  for (const auto& o : r.owners)
    std::printf("%-58s %10.2f %-12s %7.2f%%\n", o.did.c_str(), o.z,
                o.detected ? "DETECTED" : o.suggestive ? "suggestive" : "not detected", 100 * o.share);
  if (!r.any_detected) std::printf("no owner detected: no lineage shares\n");
  for (const auto& w : warnings) std::printf("note: %s\n", w.get<std::string>().c_str());
  if (!a.output.empty()) std::printf("weights: %s\n", a.output.c_str());
  return kExitOk;
}

// Lineage with mark certificates: the base share to the earliest certified owner, derivative
// shares by the policy (docs/certificate.md), HF base_model_relation where it shows.
int run_certified_lineage(Globals& g, const LineageArgs& a) {
  check_new_output(a.output, a.force);
  CertifiedOwners co;
  std::filesystem::path input;
  InputOptions options;
  std::vector<Verdict> vs;
  std::string source;
  if (!a.verdicts.empty()) {
    // Precomputed verdicts: no keys here, so only "this file" can check a certified model.
    for (const auto& f : a.cert.files) co.certificates.push_back(load_certificate(f, a.cert.trusted));
    const auto sets = read_verdicts(a.verdicts);
    const VerdictSet* pick = &sets[0];
    for (const auto& s : sets)
      if (!a.checkpoint.empty() && !s.name.empty() && same_file(s.name, a.checkpoint)) pick = &s;
    DIDMARK_EXPECTS(sets.size() == 1 || !a.checkpoint.empty(), invalid_argument, "'", a.verdicts, "' holds ",
                    sets.size(), " files: name the CHECKPOINT whose lineage to compute");
    for (const auto& e : pick->evidence) {
      Verdict v;
      v.did = e.did;
      v.z = e.z;
      v.detected = e.detected;
      vs.push_back(std::move(v));
    }
    std::error_code ec;
    if (!a.checkpoint.empty() && std::filesystem::exists(a.checkpoint, ec)) input = a.checkpoint;
    source = a.checkpoint.empty() ? (pick->name.empty() ? a.verdicts : pick->name) : a.checkpoint;
  } else {
    DIDMARK_EXPECTS(!a.checkpoint.empty(), invalid_argument,
                    "give a CHECKPOINT (with --registry, or certificates that disclose their keys), or --verdicts FILE");
    MarkFlags m;
    m.registry = a.registry;
    m.format = a.format;
    co = resolve_certified_owners(m, a.cert, *a.cmd);
    input = a.checkpoint;
    options = input_options(m);
    vs = verify_input(a.checkpoint, co.owners, options, g.backend()).verdicts;
    source = a.checkpoint;
  }
  std::vector<PrecedenceEntry> entries;
  const nlohmann::json precedence =
      certificate_precedence(co, input, co.owners, options, vs, g.backend(), g.quiet || g.json, &entries);
  std::vector<OwnerEvidence> evidence;
  for (const auto& v : vs) evidence.push_back({v.did, v.z, v.detected});
  CertifiedLineageInput in;
  in.evidence = evidence;
  in.precedence = entries;
  in.derivative_share = a.derivative_share;
  if (!input.empty()) in.file_summary = summarize_checkpoint(input);
  for (const auto& lc : co.certificates)
    if (lc.check.certificate.summary) in.certified_summaries[lc.check.certificate.owner] = *lc.check.certificate.summary;
  const LineageReport r = certified_lineage_shares(in);

  const std::string rule = detail::concat(
      "certified: the earliest certified owner of each line gets ", 1 - a.derivative_share,
      " of the line's pool, its derivatives split ", a.derivative_share,
      " equally; lines (merges) share the pool by their bases' z; uncertified and undetected owners get 0");
  nlohmann::json weights = nlohmann::json::object(), owners = nlohmann::json::array();
  for (const auto& o : r.owners) {
    owners.push_back({{"did", o.did},
                      {"z", o.z},
                      {"detected", o.detected},
                      {"share", o.share},
                      {"role", o.role},
                      {"line", o.line < 0 ? nlohmann::json(nullptr) : nlohmann::json(o.line)},
                      {"base_model_relation", o.relation.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.relation)},
                      {"flags", o.flags}});
    if (o.share > 0) weights[o.did] = o.share;
  }
  if (!a.output.empty()) write_json_file(a.output, weights, a.force);
  if (g.json) {
    print_json({{"method", "lineage"},
                {"source", source},
                {"rule", rule},
                {"derivative_share", a.derivative_share},
                {"any_detected", r.any_detected},
                {"owners", owners},
                {"precedence", precedence},
                {"weights", weights},
                {"output", a.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.output)}});
    return kExitOk;
  }
  std::printf("lineage of %s (%s)\n", source.c_str(), rule.c_str());
  std::printf("%-58s %8s %-11s %-10s %8s  %s\n", "owner", "z", "role", "relation", "share", "flags");
  for (const auto& o : r.owners) {
    std::string flags;
    for (const auto& f : o.flags) flags += (flags.empty() ? "" : ",") + f;
    std::printf("%-58s %8.2f %-11s %-10s %7.2f%%  %s\n", o.did.c_str(), o.z, o.role.c_str(),
                o.relation.empty() ? "-" : o.relation.c_str(), 100 * o.share, flags.c_str());
  }
  if (!r.any_detected) std::printf("no certified owner detected: no lineage shares\n");
  if (!a.output.empty()) std::printf("weights: %s\n", a.output.c_str());
  return kExitOk;
}

// ---- synth knn-dataset ----------------------------------------------------------------------

struct SynthArgs {
  std::string output, registry, names;
  int contributors = 0;
  int64_t train = 3000, test = 300, dim = 16;
  int classes = 4;
  double max_noise = 0.4;
  uint64_t seed = 1;
  bool force = false;
};

std::vector<std::string> registry_dids(const std::string& path) {
  std::istringstream in(read_text_file(path, "registry"));
  std::vector<std::string> dids;
  std::string line;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    DIDMARK_EXPECTS(!j.is_discarded() && j.is_object() && j.contains("did") && j["did"].is_string(), corrupt_input,
                    "registry '", path, "' line ", no, ": not an object with a \"did\"");
    dids.push_back(j["did"].get<std::string>());
  }
  return dids;
}

template <class T>
void save(const std::filesystem::path& p, std::vector<T>& data, DType t, std::vector<int64_t> shape, bool force) {
  write_npy(p, TensorView::contiguous(data.data(), t, std::move(shape)), force);
}

int run_synth(Globals& g, const SynthArgs& a) {
  std::vector<std::string> names;
  if (!a.registry.empty()) names = registry_dids(a.registry);
  if (!a.names.empty()) {
    std::stringstream ss(a.names);
    std::string n;
    names.clear();
    while (std::getline(ss, n, ',')) names.push_back(n);
  }
  int count = a.contributors > 0 ? a.contributors : (names.empty() ? 4 : static_cast<int>(names.size()));
  DIDMARK_EXPECTS(count >= 1 && count <= 1000, invalid_argument, "--contributors ", count, " must be 1..1000");
  for (int c = static_cast<int>(names.size()); c < count; ++c) names.push_back("contributor-" + std::to_string(c));
  names.resize(static_cast<std::size_t>(count));
  DIDMARK_EXPECTS(a.train >= count && a.test >= 1 && a.dim >= 1 && a.classes >= 2, invalid_argument,
                  "need --train >= contributors, --test >= 1, --dim >= 1 and --classes >= 2");
  DIDMARK_EXPECTS(a.max_noise >= 0 && a.max_noise <= 1, invalid_argument, "--max-noise must be in [0, 1]");
  const std::filesystem::path dir = a.output;
  std::filesystem::create_directories(dir);

  // Classes are Gaussian blobs; contributor c relabels a fraction noise_c of its rows at
  // random (noise_c from 0 to --max-noise), so cleaner contributors should be worth more.
  std::mt19937_64 rng(a.seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  std::uniform_int_distribution<int> label(0, a.classes - 1);
  std::vector<double> centers(static_cast<std::size_t>(a.classes * a.dim));
  for (auto& v : centers) v = 1.2 * nd(rng);
  std::vector<double> noise(static_cast<std::size_t>(count));
  for (int c = 0; c < count; ++c) noise[static_cast<std::size_t>(c)] = count == 1 ? 0.0 : a.max_noise * c / (count - 1);
  auto draw = [&](int64_t rows, std::vector<float>& x, std::vector<int64_t>& y, std::vector<int64_t>* who) {
    x.resize(static_cast<std::size_t>(rows * a.dim));
    y.resize(static_cast<std::size_t>(rows));
    if (who) who->resize(static_cast<std::size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) {
      const int cls = label(rng);
      for (int64_t d = 0; d < a.dim; ++d)
        x[static_cast<std::size_t>(i * a.dim + d)] = static_cast<float>(centers[static_cast<std::size_t>(cls * a.dim + d)] + nd(rng));
      int lab = cls;
      if (who) {
        const auto c = static_cast<int>(i % count);
        (*who)[static_cast<std::size_t>(i)] = c;
        if (ud(rng) < noise[static_cast<std::size_t>(c)]) lab = label(rng);
      }
      y[static_cast<std::size_t>(i)] = lab;
    }
  };
  std::vector<float> xtr, xte;
  std::vector<int64_t> ytr, yte, who;
  draw(a.train, xtr, ytr, &who);
  draw(a.test, xte, yte, nullptr);
  save(dir / "train.npy", xtr, DType::f32, {a.train, a.dim}, a.force);
  save(dir / "train_labels.npy", ytr, DType::i64, {a.train}, a.force);
  save(dir / "test.npy", xte, DType::f32, {a.test, a.dim}, a.force);
  save(dir / "test_labels.npy", yte, DType::i64, {a.test}, a.force);
  save(dir / "contributors.npy", who, DType::i64, {a.train}, a.force);
  std::string list;
  for (const auto& n : names) list += n + "\n";
  check_new_output((dir / "contributors.txt").string(), a.force);
  detail::write_file_atomically(dir / "contributors.txt", list, true);

  nlohmann::json js = nlohmann::json::array();
  for (int c = 0; c < count; ++c)
    js.push_back({{"id", c}, {"name", names[static_cast<std::size_t>(c)]}, {"label_noise", noise[static_cast<std::size_t>(c)]}});
  if (g.json) {
    print_json({{"dataset", dir.string()},
                {"train", a.train},
                {"test", a.test},
                {"dim", a.dim},
                {"classes", a.classes},
                {"contributors", js}});
    return kExitOk;
  }
  std::printf("knn dataset in %s: %lld training rows, %lld test rows, D = %lld, %d classes\n", dir.string().c_str(),
              static_cast<long long>(a.train), static_cast<long long>(a.test), static_cast<long long>(a.dim), a.classes);
  for (int c = 0; c < count; ++c)
    std::printf("  contributor %d  %-58s label noise %4.0f%%\n", c, names[static_cast<std::size_t>(c)].c_str(),
                100 * noise[static_cast<std::size_t>(c)]);
  return kExitOk;
}

// ---- registration --------------------------------------------------------------------------------

void register_attribute(CLI::App& app, Globals& g, Action& action) {
  CLI::App& grp = command_group(app, "attribute",
                                "Attribution: KNN-Shapley data values, gradient projection and TRAK scores, lineage "
                                "shares for royalty splits");
  {
    auto a = std::make_shared<KnnArgs>();
    CLI::App* c = grp.add_subcommand("knn-shapley", "Exact KNN-Shapley value of every training row (Jia et al. 2019), "
                                                    "summed per contributor");
    c->add_option("--train", a->train, "Training embeddings, N x D .npy (f32, f64 or f16)")->required();
    c->add_option("--train-labels", a->train_labels, "Training labels, N .npy (integers)")->required();
    c->add_option("--test", a->test, "Query embeddings, M x D .npy")->required();
    c->add_option("--test-labels", a->test_labels, "Query labels, M .npy")->required();
    c->add_option("-k", a->k, "Neighbours K of the K-NN classifier")->capture_default_str();
    c->add_option("--contributors", a->contributors, "Contributor id of each training row, N .npy (integers)");
    c->add_option("--contributor-names", a->names, "Text file: line i names contributor id i (e.g. its DID)");
    c->add_option("-o,--output", a->output, "Write the per-row values here (.npy, f64)");
    c->add_option("--totals-out", a->totals_out,
                  "Write {contributor: total value} here (JSON; the input of didmark split --weights)");
    c->add_option("--query-tile", a->query_tile, "Queries per device pass (default: by memory)");
    c->add_flag("-f,--force", a->force, "Replace existing output files");
    c->footer("Values are exact: per query, rows sorted by distance (ties by row index), then the recursion of\n"
              "docs/attribution.md; the result is their mean over queries. With --json, 'contributors' maps\n"
              "each contributor (id, or name with --contributor-names) to its total.\n"
              "Example: didmark attribute knn-shapley --train X.npy --train-labels y.npy --test Q.npy \\\n"
              "           --test-labels yq.npy -k 5 --contributors c.npy -o values.npy --json");
    c->callback([&g, &action, a] { action = [&g, a] { return run_knn(g, *a); }; });
  }
  {
    auto a = std::make_shared<ProjectArgs>();
    CLI::App* c = grp.add_subcommand("project", "Project per-example gradients with the keyed Rademacher matrix");
    c->add_option("--grads", a->grads, "Gradients, rows x p .npy (f32, f64 or f16)")->required();
    c->add_option("-k", a->k, "Projected dimensions")->capture_default_str();
    c->add_option("--seed", a->seed, "Projection key: the same seed gives the same matrix on every device")
        ->capture_default_str();
    c->add_option("-o,--output", a->output, "Write the projected rows x k matrix here (.npy)");
    c->add_option("--feature-tile", a->feature_tile, "Rows of the projection generated per tile (default: auto)");
    c->add_flag("--f64", a->f64, "Accumulate and write f64 (default f32)");
    c->add_flag("-f,--force", a->force, "Replace an existing output file");
    c->callback([&g, &action, a] { action = [&g, a] { return run_project(g, *a); }; });
  }
  {
    auto a = std::make_shared<TrakArgs>();
    CLI::App* c = grp.add_subcommand("trak", "TRAK-style scores: projected gradients, kernel (Phi^T Phi + lambda I)^-1, "
                                             "per-row means, optional full score matrix");
    c->add_option("--train", a->train, "Training gradients, N x p .npy; repeat once per checkpoint")->required();
    c->add_option("--test", a->test, "Query gradients, M x p .npy; one per --train, same order")->required();
    c->add_option("--train-weights", a->weights,
                  "Per-row weight, N .npy (minus the loss derivative, e.g. the residual); one per checkpoint");
    c->add_option("-k", a->k, "Projected dimensions")->capture_default_str();
    c->add_option("--seed", a->seed, "Projection key")->capture_default_str();
    c->add_option("--ridge", a->ridge, "lambda relative to the kernel's mean diagonal")->capture_default_str();
    c->add_option("--lambda", a->lambda, "Absolute lambda (overrides --ridge)");
    c->add_option("--contributors", a->contributors, "Contributor id of each training row, N .npy");
    c->add_option("--contributor-names", a->names, "Text file: line i names contributor id i");
    c->add_option("-o,--output", a->output, "Write the per-row mean scores here (.npy, f64)");
    c->add_option("--scores-out", a->scores, "Stream the whole M x N score matrix here (.npy, f32)");
    c->add_option("--totals-out", a->totals_out, "Write {contributor: total} here (JSON)");
    c->add_flag("-f,--force", a->force, "Replace existing output files");
    c->callback([&g, &action, a] { action = [&g, a] { return run_trak(g, *a); }; });
  }
  {
    auto a = std::make_shared<LineageArgs>();
    CLI::App* c = grp.add_subcommand("lineage", "Lineage shares of the registered owners (base models, datasets) "
                                                "whose marks a checkpoint carries");
    c->add_option("CHECKPOINT", a->checkpoint, "The checkpoint (verified against --registry, or looked up in --verdicts)");
    c->add_option("--registry", a->registry, "Registry of owners (.jsonl) to verify the checkpoint against");
    c->add_option("--verdicts", a->verdicts, "Precomputed verdicts: the JSON Lines output of didmark scan");
    c->add_option("--format", a->format, "Force the checkpoint's format");
    c->add_option("--p-threshold", a->p_threshold,
                  "An owner is detected (and shares) when its p-value bound is at most this; decided again for "
                  "--verdicts that carry p_value. Owners above it but with p <= 1e-3 are reported as suggestive")
        ->check(CLI::Range(1e-300, 0.5))
        ->capture_default_str();
    c->add_option("-o,--output", a->output, "Write {DID: share} here (JSON; the input of didmark split --weights)");
    c->add_flag("-f,--force", a->force, "Replace an existing output file");
    add_verify_certificate_options(*c, a->cert);
    c->add_option("--derivative-share", a->derivative_share,
                  "With --certificate: the share of each line's pool that its derivatives split")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    a->cmd = c;
    c->footer("Rule: share = z / sum(z) over the detected owners with z > 0; owners below the detection\n"
              "threshold get nothing (docs/attribution.md). With --certificate: the earliest certified owner\n"
              "(by countersigned time) gets the base share, later owners the derivative share\n"
              "(docs/certificate.md); base_model_relation (merge, finetune, quantized) where it shows.");
    c->callback([&g, &action, a] { action = [&g, a] { return run_lineage(g, *a); }; });
  }
  CLI::App& synth = command_group(app, "synth", "Make built-in synthetic inputs for demos and tests");
  {
    auto a = std::make_shared<SynthArgs>();
    CLI::App* c = synth.add_subcommand("knn-dataset", "A labelled embedding dataset from several contributors of "
                                                      "different label quality (for attribute knn-shapley)");
    c->add_option("-o,--output", a->output, "Folder for train.npy, train_labels.npy, test.npy, test_labels.npy, "
                                            "contributors.npy, contributors.txt")
        ->required();
    c->add_option("--registry", a->registry, "Name contributors by the DIDs of this registry (.jsonl)");
    c->add_option("--names", a->names, "Comma-separated contributor names (overrides --registry)");
    c->add_option("--contributors", a->contributors, "Number of contributors (default: the names given, else 4)");
    c->add_option("--train", a->train, "Training rows")->capture_default_str();
    c->add_option("--test", a->test, "Test rows")->capture_default_str();
    c->add_option("--dim", a->dim, "Embedding dimension")->capture_default_str();
    c->add_option("--classes", a->classes, "Classes")->capture_default_str();
    c->add_option("--max-noise", a->max_noise, "Label noise of the last contributor (the first has none)")
        ->capture_default_str();
    c->add_option("--seed", a->seed, "Seed")->capture_default_str();
    c->add_flag("-f,--force", a->force, "Replace existing files");
    c->callback([&g, &action, a] { action = [&g, a] { return run_synth(g, *a); }; });
  }
}

DIDMARK_CLI_COMMAND(60, register_attribute);

}  // namespace
}  // namespace didmark::cli
