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
#include "didmark/inputs.hpp"
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

WatermarkOptions watermark_options(const v1::MarkOptions& mo) {
  WatermarkOptions o;
  o.scheme = Scheme::automatic;  // verification tests both schemes unless told which
  if (!mo.scheme().empty()) {
    const auto s = parse_scheme(mo.scheme());
    DIDMARK_EXPECTS(s.has_value(), invalid_argument, "options.scheme '", mo.scheme(),
                    "' is not auto, spread-spectrum or stdm");
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

InputOptions input_options(const v1::MarkOptions& mo) {
  InputOptions o;
  o.watermark = watermark_options(mo);
  o.format = mo.format();
  if (!o.format.empty()) {
    bool known = o.format == "safetensors-sharded";
    for (const auto& f : input_formats()) known = known || f.name == o.format;
    std::string names;
    for (const auto& f : input_formats()) names += (names.empty() ? "" : ", ") + f.name;
    DIDMARK_EXPECTS(known, invalid_argument, "options.format '", o.format, "' is not one of: ", names);
  }
  return o;
}

// The verdicts of a file into a response (VerifyResponse or ScanResult: same fields).
template <class Msg>
void put_verdicts(Msg& m, const FileVerdicts& fv) {
  // The server has always told sharded checkpoints apart in `format` (clients rely on it).
  m.set_format(fv.format.kind == InputKind::checkpoint && fv.format.checkpoint == CheckpointFormat::safetensors_sharded
                   ? std::string(checkpoint_format_name(fv.format.checkpoint))
                   : fv.format.name);
  m.set_seconds(fv.seconds);
  for (const Verdict& in : fv.verdicts) {
    v1::Verdict* v = m.add_verdicts();
    v->set_did(in.did);
    v->set_detected(in.detected);
    v->set_z(in.z);
    v->set_p_value(in.p_value);
    v->set_log10_p(in.log10_p);
    v->set_bit_errors(in.bit_errors);
    v->set_bits(in.bits);
    v->set_elements(in.elements);
    v->set_tensors(in.tensors);
    v->set_status(std::string(verdict_status_name(in.status)));
    if (in.detected) m.add_detected(in.did);
  }
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
  backend_ = make_backend(options_.device, "--device");
  backend_description_ = backend_->description();
  if (!options_.registry.empty()) {
    const auto entries = load_registry(options_.registry);
    if (!entries.empty()) registry_ = owners_of(entries);
  }
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

// One slot of --jobs for the whole read of a file, over all requests.
template <class F>
auto DidmarkService::in_slot(F&& work) -> decltype(work()) {
  slots_.acquire();
  struct Release {
    std::counting_semaphore<1024>& s;
    ~Release() { s.release(); }
  } release{slots_};
  return work();
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
        const InputOptions options = input_options(req->options());
        FileVerdicts fv;
        switch (req->input_case()) {
          case v1::VerifyRequest::kPath: {
            const fs::path p(req->path());
            if (p.empty()) return Status(StatusCode::INVALID_ARGUMENT, "path is empty");
            std::error_code ec;
            if (!fs::exists(p, ec))
              return Status(StatusCode::NOT_FOUND, "'" + p.string() + "' does not exist on the server");
            fv = in_slot([&] { return verify_input(p, owners, options, *backend_); });
            resp->set_path(req->path());
            break;
          }
          case v1::VerifyRequest::kSafetensors: {
            fv = in_slot([&] {
              return verify_safetensors_bytes(req->safetensors(), "<inline safetensors>", owners, options, *backend_);
            });
            resp->set_path("<inline>");
            break;
          }
          default:
            return Status(StatusCode::INVALID_ARGUMENT,
                          "give the input: path (a file or folder on the server) or safetensors (the bytes)");
        }
        put_verdicts(*resp, fv);
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
  int failed = 0, hits = 0;
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
    const InputOptions options = input_options(req->options());  // a bad option fails the call, not every file

    ScanOptions so;
    so.jobs = options_.jobs;  // the workers share the backend; --jobs bounds them as it bounds Verify
    so.cancelled = [ctx] { return ctx->IsCancelled(); };
    const std::vector<std::string> paths(req->paths().begin(), req->paths().end());
    files = scan_inputs(paths, owners, options, so, *backend_, [&](ScanItem&& it) {
      v1::ScanResult r;
      r.set_index(static_cast<uint32_t>(it.index));
      r.set_total(static_cast<uint32_t>(it.total));
      r.set_path(it.path.string());
      if (it.verdicts) {
        put_verdicts(r, *it.verdicts);
        if (r.detected_size() > 0) ++hits;
      } else {
        r.mutable_error()->set_code(it.error_code);
        r.mutable_error()->set_message(it.error_message);
        ++failed;
      }
      return writer->Write(r);  // false: the client went away
    });
    if (ctx->IsCancelled()) return Status(StatusCode::CANCELLED, "the client cancelled the scan");
    return Status::OK;
  });
  what += " files=" + std::to_string(files) + " detected=" + std::to_string(hits) + " failed=" + std::to_string(failed);
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
          // A request must not make the server read its files: no weights_file levels.
          policy = parse_policy(req->policy_json(), "policy_json", input);
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
