#include "service.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "didmark/checkpoint.hpp"
#include "didmark/dataset.hpp"
#include "didmark/io.hpp"
#include "didmark/royalty.hpp"

#ifndef DIDMARK_VERSION
#define DIDMARK_VERSION "unknown"
#endif

namespace didmark::server {

namespace fs = std::filesystem;
using grpc::Status;
using grpc::StatusCode;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const char* code_name(StatusCode c) {
  switch (c) {
    case StatusCode::OK: return "OK";
    case StatusCode::CANCELLED: return "CANCELLED";
    case StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case StatusCode::NOT_FOUND: return "NOT_FOUND";
    case StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case StatusCode::INTERNAL: return "INTERNAL";
    case StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case StatusCode::DATA_LOSS: return "DATA_LOSS";
    default: return "ERROR";
  }
}

// A private folder for bytes the library reads by path (inline safetensors, policy text);
// removed with everything in it when this goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "didmarkd-XXXXXX").string();
    DIDMARK_EXPECTS(::mkdtemp(tmpl.data()) != nullptr, io_error, "cannot create a temporary folder under ",
                    fs::temp_directory_path().string());
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  fs::path write(const std::string& name, const std::string& bytes) const {
    const fs::path p = path_ / name;
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    DIDMARK_EXPECTS(out.good(), io_error, "cannot write a temporary file in ", path_.string());
    return p;
  }

 private:
  fs::path path_;
};

// The same error, with a temporary file's name replaced by what the caller sent.
Error renamed(const Error& e, const std::string& from, const std::string& to) {
  std::string m = e.what();
  for (std::size_t at; (at = m.find(from)) != std::string::npos;) m.replace(at, from.size(), to);
  return Error(e.code(), m, e.where());
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

WatermarkOptions watermark_options(const v1::MarkOptions& mo) {
  WatermarkOptions o;
  if (!mo.scheme().empty()) {
    const auto s = parse_scheme(mo.scheme());
    DIDMARK_EXPECTS(s.has_value(), invalid_argument, "options.scheme '", mo.scheme(),
                    "' is not spread-spectrum or stdm");
    o.scheme = *s;
  }
  if (mo.p_threshold() != 0) {
    DIDMARK_EXPECTS(mo.p_threshold() >= 1e-300 && mo.p_threshold() <= 0.5, invalid_argument,
                    "options.p_threshold ", mo.p_threshold(), " is outside [1e-300, 0.5]");
    o.p_threshold = mo.p_threshold();
  }
  o.policy.include_regex = mo.tensors();
  return o;
}

// What a file is read as: a checkpoint format of the library, or a CSV table.
struct FileKind {
  bool csv = false;
  CheckpointFormat checkpoint = CheckpointFormat::safetensors;
};

constexpr const char* kFormats = "safetensors, npy-tensor, pt, csv";

void check_format_name(const std::string& f) {
  DIDMARK_EXPECTS(f.empty() || f == "csv" || f == "safetensors" || f == "npy-tensor" || f == "pt", invalid_argument,
                  "options.format '", f, "' is not one of: ", kFormats);
}

// Like the CLI: a forced format, else the name (".csv" a table, anything the library
// recognises a checkpoint; a .npy file is one weight array, never a dataset: those need
// row identities the API does not carry).
FileKind kind_of(const fs::path& p, const std::string& forced) {
  auto safetensors_kind = [&] {
    const auto g = guess_checkpoint_format(p);
    return g == CheckpointFormat::safetensors_sharded ? *g : CheckpointFormat::safetensors;
  };
  check_format_name(forced);
  if (!forced.empty()) {
    if (forced == "csv") return {true, {}};
    if (forced == "safetensors") return {false, safetensors_kind()};
    if (forced == "npy-tensor") return {false, CheckpointFormat::npy};
    return {false, CheckpointFormat::torch};  // "pt"
  }
  if (ends_with(lower(p.filename().string()), ".csv")) return {true, {}};
  const auto g = guess_checkpoint_format(p);
  DIDMARK_EXPECTS(g.has_value(), unsupported, "cannot tell the format of '", p.string(),
                  "' from its name; set options.format (one of: ", kFormats, ")");
  return {false, *g};
}

template <class Msg>
void add_verdict(Msg& m, const std::string& did, bool detected, double z, double p, double log10_p, int bit_errors,
                 int bits, int64_t elements, int tensors) {
  v1::Verdict* v = m.add_verdicts();
  v->set_did(did);
  v->set_detected(detected);
  v->set_z(z);
  v->set_p_value(p);
  v->set_log10_p(log10_p);
  v->set_bit_errors(bit_errors);
  v->set_bits(bits);
  v->set_elements(elements);
  v->set_tensors(tensors);
  if (detected) m.add_detected(did);
}

using ScanItem = InputFile;

// The files of a scan in the order `didmark scan` lists them (collect_inputs), with the
// server's formats: the shards of a sharded checkpoint are scanned under its index.
std::vector<ScanItem> collect(const std::vector<std::string>& paths, const std::string& forced) {
  return collect_inputs(paths, [&](const fs::path& p) {
    const FileKind k = kind_of(p, forced);
    std::vector<fs::path> parts;
    if (!k.csv && k.checkpoint == CheckpointFormat::safetensors_sharded) {
      try {
        const auto idx = read_safetensors_index(resolve_checkpoint_path(p, CheckpointFormat::safetensors_sharded));
        for (const auto& s : idx.shards) parts.push_back(idx.folder() / s);
      } catch (const Error&) {
        // reported when the index itself is scanned
      }
    }
    return parts;
  });
}

// Runs `body`, turning the errors it throws into statuses (`corrupt`: see to_status).
template <class F>
Status guarded(F&& body, StatusCode corrupt = StatusCode::DATA_LOSS) {
  try {
    return body();
  } catch (const Error& e) {
    return to_status(e, corrupt);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::RESOURCE_EXHAUSTED, "out of memory");
  } catch (const std::exception& e) {
    return Status(StatusCode::INTERNAL, e.what());
  }
}

}  // namespace

Status to_status(const Error& e, StatusCode corrupt) {
  StatusCode c = StatusCode::INTERNAL;
  switch (e.code()) {
    case Errc::invalid_argument: c = StatusCode::INVALID_ARGUMENT; break;
    case Errc::not_found: c = StatusCode::NOT_FOUND; break;
    case Errc::unsupported: c = StatusCode::UNIMPLEMENTED; break;
    case Errc::corrupt_input: c = corrupt; break;
    case Errc::permission: c = StatusCode::PERMISSION_DENIED; break;
    case Errc::device_failure:
    case Errc::io_error:
    case Errc::internal: c = StatusCode::INTERNAL; break;
  }
  return Status(c, e.what());
}

// ---- set-up -----------------------------------------------------------------------------

DidmarkService::DidmarkService(ServerOptions options)
    : options_(std::move(options)), slots_(std::clamp(options_.jobs, 1, 1024)) {
  DIDMARK_EXPECTS(options_.jobs >= 1 && options_.jobs <= 1024, invalid_argument, "--jobs ", options_.jobs,
                  " is outside 1..1024");
  if (options_.device.empty())
    backend_ = make_backend();
  else if (options_.device == "cpu")
    backend_ = make_backend(Device::cpu);
  else if (options_.device == "cuda" || options_.device == "gpu")
    backend_ = make_backend(Device::cuda);
  else
    DIDMARK_THROW(Errc::invalid_argument, "--device '", options_.device, "' is not one of: cpu, cuda");
  backend_description_ = backend_->description();
  if (!options_.registry.empty())
    for (const auto& e : load_registry(options_.registry))
      registry_.push_back(Owner{e.did, e.key, did_codeword(e.did)});
  if (!options_.operator_identity.empty()) operator_ = load_identity(options_.operator_identity);
}

DidmarkService::~DidmarkService() = default;

void DidmarkService::log(const grpc::ServerContext* ctx, const std::string& what, const Status& st, double seconds) {
  if (!options_.log_requests) return;
  char tail[64];
  std::snprintf(tail, sizeof tail, " %.3f s", seconds);
  std::string line = "didmarkd: " + utc_now() + " " + (ctx ? ctx->peer() : std::string("-")) + " " + what + " -> " +
                     code_name(st.error_code());
  if (!st.ok()) line += ": " + st.error_message();
  line += tail;
  std::lock_guard<std::mutex> lock(log_mu_);
  std::fprintf(stderr, "%s\n", line.c_str());
}

// ---- verification ----------------------------------------------------------------------

struct DidmarkService::FileVerdicts {
  std::string format;
  v1::VerifyResponse verdicts;  // only verdicts and detected are used
  double seconds = 0;
};

DidmarkService::FileVerdicts DidmarkService::verify_file(const fs::path& path, const std::vector<Owner>& owners,
                                                         const v1::MarkOptions& mo) {
  const WatermarkOptions wo = watermark_options(mo);
  const FileKind kind = kind_of(path, mo.format());
  std::vector<Claim> claims;
  for (const auto& o : owners) claims.push_back({o.key, o.payload});

  // One slot of --jobs for the whole read; the CUDA backend one call at a time.
  slots_.acquire();
  struct Release {
    std::counting_semaphore<1024>& s;
    ~Release() { s.release(); }
  } release{slots_};
  std::unique_lock<std::mutex> device_lock(device_mu_, std::defer_lock);
  if (backend_->device() == Device::cuda) device_lock.lock();

  const auto t0 = Clock::now();
  FileVerdicts out;
  if (kind.csv) {
    TableOptions to;
    to.p_threshold = wo.p_threshold;
    const CsvTable table = CsvTable::read(path);
    const auto reports = verify_table(table, claims, to, *backend_);
    out.format = "csv";
    for (std::size_t i = 0; i < reports.size(); ++i) {
      const auto& r = reports[i];
      // As `didmark verify` reports tables: elements = marked rows, tensors = columns.
      add_verdict(out.verdicts, owners[i].did, r.detected, r.z, r.p_value, r.log10_p, r.bit_errors, r.bits,
                  r.marked_rows, r.columns);
    }
  } else {
    const auto reports = verify_checkpoint(path, kind.checkpoint, claims, wo, *backend_);
    out.format = std::string(checkpoint_format_name(kind.checkpoint));
    for (std::size_t i = 0; i < reports.size(); ++i) {
      const auto& r = reports[i];
      add_verdict(out.verdicts, owners[i].did, r.detected, r.z, r.p_value, r.log10_p, r.bit_errors, r.bits,
                  r.elements, r.tensors);
    }
  }
  out.seconds = since(t0);
  return out;
}

Status DidmarkService::Verify(grpc::ServerContext* ctx, const v1::VerifyRequest* req, v1::VerifyResponse* resp) {
  const auto t0 = Clock::now();
  // What the log line says: never the key, only that one was given.
  std::string what = "Verify";
  if (req->input_case() == v1::VerifyRequest::kPath) what += " path=" + req->path();
  if (req->input_case() == v1::VerifyRequest::kSafetensors)
    what += " inline=" + std::to_string(req->safetensors().size()) + "B";
  if (req->owners_case() == v1::VerifyRequest::kOwner) what += " did=" + req->owner().did() + " key=<given>";
  if (req->owners_case() == v1::VerifyRequest::kRegistry)
    what += " registry" + (req->registry().did().empty() ? std::string() : " did=" + req->registry().did());

  const bool inline_bytes = req->input_case() == v1::VerifyRequest::kSafetensors;
  const Status st = guarded(
      [&]() -> Status {
        std::vector<Owner> owners;
        switch (req->owners_case()) {
          case v1::VerifyRequest::kOwner: {
            const std::string did = parse_did(req->owner().did()).did;
            owners.push_back(Owner{did, WatermarkKey::from_hex(req->owner().key_hex()), did_codeword(did)});
            break;
          }
          case v1::VerifyRequest::kRegistry: {
            if (registry_.empty())
              return Status(StatusCode::FAILED_PRECONDITION,
                            "this server has no registry (start didmarkd with --registry REG.jsonl)");
            const std::string& want = req->registry().did();
            for (const auto& o : registry_)
              if (want.empty() || o.did == want) owners.push_back(o);
            if (owners.empty()) return Status(StatusCode::NOT_FOUND, "DID '" + want + "' is not in the registry");
            break;
          }
          default:
            return Status(StatusCode::INVALID_ARGUMENT,
                          "say whose mark: set owner {did, key_hex} or registry {did (optional)}");
        }

        FileVerdicts fv;
        switch (req->input_case()) {
          case v1::VerifyRequest::kPath: {
            const fs::path p(req->path());
            if (p.empty()) return Status(StatusCode::INVALID_ARGUMENT, "path is empty");
            std::error_code ec;
            if (!fs::exists(p, ec))
              return Status(StatusCode::NOT_FOUND, "'" + p.string() + "' does not exist on the server");
            fv = verify_file(p, owners, req->options());
            resp->set_path(req->path());
            break;
          }
          case v1::VerifyRequest::kSafetensors: {
            const std::string& f = req->options().format();
            if (!f.empty() && f != "safetensors")
              return Status(StatusCode::INVALID_ARGUMENT,
                            "inline bytes are a safetensors file; options.format '" + f + "' does not apply");
            const TempDir dir;
            const fs::path p = dir.write("inline.safetensors", req->safetensors());
            try {
              fv = verify_file(p, owners, req->options());
            } catch (const Error& e) {
              throw renamed(e, p.string(), "<inline safetensors>");
            }
            resp->set_path("<inline>");
            break;
          }
          default:
            return Status(StatusCode::INVALID_ARGUMENT,
                          "give the input: path (a file or folder on the server) or safetensors (the bytes)");
        }
        resp->set_format(fv.format);
        *resp->mutable_verdicts() = fv.verdicts.verdicts();
        *resp->mutable_detected() = fv.verdicts.detected();
        resp->set_seconds(fv.seconds);
        return Status::OK;
      },
      inline_bytes ? StatusCode::INVALID_ARGUMENT : StatusCode::DATA_LOSS);
  if (st.ok()) what += " detected=" + std::to_string(resp->detected_size()) + "/" + std::to_string(resp->verdicts_size());
  log(ctx, what, st, since(t0));
  return st;
}

Status DidmarkService::Scan(grpc::ServerContext* ctx, const v1::ScanRequest* req,
                            grpc::ServerWriter<v1::ScanResult>* writer) {
  const auto t0 = Clock::now();
  std::string what = "Scan paths=" + std::to_string(req->paths_size());
  if (!req->did().empty()) what += " did=" + req->did();
  std::size_t files = 0;
  std::atomic<int> failed{0}, hits{0};
  const Status st = guarded([&]() -> Status {
    if (req->paths_size() == 0) return Status(StatusCode::INVALID_ARGUMENT, "paths is empty: name files or folders");
    if (registry_.empty())
      return Status(StatusCode::FAILED_PRECONDITION,
                    "Scan looks for the registry's owners, and this server has no registry (start didmarkd with "
                    "--registry REG.jsonl)");
    std::vector<Owner> owners;
    for (const auto& o : registry_)
      if (req->did().empty() || o.did == req->did()) owners.push_back(o);
    if (owners.empty()) return Status(StatusCode::NOT_FOUND, "DID '" + req->did() + "' is not in the registry");
    watermark_options(req->options());  // a bad option fails the call, not every file
    check_format_name(req->options().format());

    const std::vector<ScanItem> items =
        collect({req->paths().begin(), req->paths().end()}, req->options().format());
    files = items.size();
    std::mutex write_mu;
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> next{0};
    auto worker = [&] {
      for (std::size_t i; !stop && (i = next.fetch_add(1)) < items.size();) {
        if (ctx->IsCancelled()) {
          stop = true;
          break;
        }
        const ScanItem& it = items[i];
        v1::ScanResult r;
        r.set_index(static_cast<uint32_t>(i));
        r.set_total(static_cast<uint32_t>(items.size()));
        r.set_path(it.path.string());
        std::string code = it.error_code, message = it.error_message;
        if (code.empty()) {
          try {
            const FileVerdicts fv = verify_file(it.path, owners, req->options());
            r.set_format(fv.format);
            *r.mutable_verdicts() = fv.verdicts.verdicts();
            *r.mutable_detected() = fv.verdicts.detected();
            r.set_seconds(fv.seconds);
            if (r.detected_size() > 0) ++hits;
          } catch (const Error& e) {
            code = std::string(errc_name(e.code()));
            message = e.what();
          } catch (const std::exception& e) {
            code = "internal";
            message = e.what();
          }
        }
        if (!code.empty()) {
          r.mutable_error()->set_code(code);
          r.mutable_error()->set_message(message);
          ++failed;
        }
        std::lock_guard<std::mutex> lock(write_mu);
        if (!stop && !writer->Write(r)) stop = true;  // the client went away
      }
    };
    const int n = std::max(1, std::min<int>(options_.jobs, static_cast<int>(items.size())));
    std::vector<std::thread> threads;
    for (int t = 1; t < n; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
    if (ctx->IsCancelled()) return Status(StatusCode::CANCELLED, "the client cancelled the scan");
    return Status::OK;
  });
  what += " files=" + std::to_string(files) + " detected=" + std::to_string(hits.load()) +
          " failed=" + std::to_string(failed.load());
  log(ctx, what, st, since(t0));
  return st;
}

// ---- royalties --------------------------------------------------------------------------

Status DidmarkService::Split(grpc::ServerContext* ctx, const v1::SplitRequest* req, v1::SplitResponse* resp) {
  const auto t0 = Clock::now();
  std::string what = "Split revenue=" + req->revenue() +
                     " payees=" + std::to_string(req->weights_size() + req->exact_weights_size()) +
                     (req->policy_json().empty() ? "" : " policy");
  // Everything a Split reads comes from the request: a malformed policy is INVALID_ARGUMENT.
  const Status st = guarded(
      [&]() -> Status {
        const Amount revenue = parse_amount(req->revenue(), "revenue");
        if (req->weights().empty() && req->exact_weights().empty() && req->policy_json().empty())
          return Status(StatusCode::INVALID_ARGUMENT,
                        "give the payees' weights (or a policy_json whose levels name their weights)");
        std::vector<Payee> input;
        for (const auto& [did, w] : req->weights()) input.push_back(Payee{did, Weight::from_double(w)});
        for (const auto& [did, w] : req->exact_weights()) {
          if (req->weights().count(did))
            return Status(StatusCode::INVALID_ARGUMENT,
                          "payee " + did + " is in both weights and exact_weights; give it once");
          input.push_back(Payee{did, Weight::from_decimal(w)});
        }
        std::optional<NegativeWeights> negative;
        if (!req->negative().empty()) {
          negative = parse_negative_weights(req->negative());
          if (!negative)
            return Status(StatusCode::INVALID_ARGUMENT,
                          "negative '" + req->negative() + "' is not one of clip, shift, refuse");
        }
        std::optional<std::string> fallback;
        if (!req->fallback().empty()) fallback = parse_did(req->fallback()).did;

        Policy policy;
        if (req->policy_json().empty()) {
          policy = single_level_policy(std::move(input));
        } else {
          // A policy file may name other files ("weights_file"); a request must not make the
          // server read its files, so inline policies carry their weights inline.
          const auto j = nlohmann::json::parse(req->policy_json(), nullptr, false);
          if (j.is_object() && j.contains("levels") && j["levels"].is_array())
            for (std::size_t k = 0; k < j["levels"].size(); ++k)
              if (j["levels"][k].is_object() && j["levels"][k].contains("weights_file"))
                return Status(StatusCode::INVALID_ARGUMENT,
                              "policy_json: levels[" + std::to_string(k) +
                                  "] names a weights_file; a request's policy gives 'weights' inline (an object, "
                                  "or \"input\" for the request's weights)");
          const TempDir dir;
          const fs::path p = dir.write("policy.json", req->policy_json());
          try {
            policy = load_policy(p, input);
          } catch (const Error& e) {
            throw renamed(e, p.string(), "policy_json");
          }
        }
        if (negative) policy.negative = *negative;
        if (fallback) policy.fallback = fallback;
        const CascadeResult res = run_cascade(revenue, std::move(policy));

        resp->set_revenue(amount_to_string(revenue));
        resp->set_rule("didmark/largest-remainder/v1");
        auto& payouts = *resp->mutable_payouts();
        for (const Payout& p : res.payees) payouts[std::string(p.did)] = amount_to_string(p.amount);
        if (operator_) {
          StatementOptions so;
          so.timestamp = req->timestamp();
          so.unit = req->unit();
          resp->set_statement_json(make_statement(res, *operator_, so));
          resp->set_issuer(operator_->did());
        }
        return Status::OK;
      },
      StatusCode::INVALID_ARGUMENT);
  if (st.ok() && operator_) what += " signed";
  log(ctx, what, st, since(t0));
  return st;
}

Status DidmarkService::Health(grpc::ServerContext*, const v1::HealthRequest*, v1::HealthResponse* resp) {
  resp->set_status("SERVING");
  resp->set_version(DIDMARK_VERSION);
  resp->set_backend(backend_description_);
  resp->set_registry_owners(static_cast<uint32_t>(registry_.size()));
  if (operator_) resp->set_operator_did(operator_->did());
  resp->set_jobs(static_cast<uint32_t>(options_.jobs));
  return Status::OK;  // not logged: load balancers poll it
}

}  // namespace didmark::server
