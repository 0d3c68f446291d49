#include "service.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/atomic_file.hpp"
#include "didmark/attribution.hpp"
#include "didmark/certificate.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/io.hpp"
#include "didmark/royalty.hpp"

#ifndef DIDMARK_VERSION
#define DIDMARK_VERSION "unknown"
#endif

namespace didmark::server {

namespace fs = std::filesystem;
using grpc::Status;
using grpc::StatusCode;
using json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
using Wall = std::chrono::system_clock;
constexpr uint32_t kApiRevision = 2;
constexpr std::size_t kMaxCertificateBytes = 1 << 20;

const char* code_name(StatusCode c) {
  switch (c) {
    case StatusCode::OK: return "OK";
    case StatusCode::CANCELLED: return "CANCELLED";
    case StatusCode::UNKNOWN: return "UNKNOWN";
    case StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case StatusCode::NOT_FOUND: return "NOT_FOUND";
    case StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case StatusCode::ABORTED: return "ABORTED";
    case StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case StatusCode::INTERNAL: return "INTERNAL";
    case StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case StatusCode::DATA_LOSS: return "DATA_LOSS";
    default: return "ERROR";
  }
}

/// A call's work stopped: the client went away or the deadline passed.
struct Stopped {
  Status status;
};

std::string request_id() {
  std::array<unsigned char, 8> b{};
  randombytes_buf(b.data(), b.size());
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s.push_back(hex[c >> 4]);
    s.push_back(hex[c & 15]);
  }
  return s;
}

bool is_hex(std::string_view s, std::size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// An upload's file name: its last component, reduced to [A-Za-z0-9._-], no leading dot.
std::string upload_name(std::string_view given) {
  const std::size_t slash = given.find_last_of("/\\");
  if (slash != std::string_view::npos) given.remove_prefix(slash + 1);
  std::string out;
  for (char c : given)
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') out.push_back(c);
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  if (out.size() > 100) out.erase(0, out.size() - 100);  // keep the end: it has the extension
  return out.empty() ? "upload" : out;
}

Owner owner_from(const v1::Owner& o) {
  DIDMARK_EXPECTS(!o.did().empty(), invalid_argument, "owner.did is empty");
  const std::string did = parse_did(o.did()).did;
  return Owner{did, WatermarkKey::from_hex(o.key_hex()), did_codeword(did)};
}

// The verdicts of a file into a response (VerifyResponse or ScanResult: same fields).
void put_verdict(v1::Verdict* v, const Verdict& in) {
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
  v->set_scheme(std::string(scheme_name(in.scheme)));
  v->set_realigned(in.realigned);
  v->set_p_family(in.p_family);
  v->set_log10_p_family(in.log10_p_family);
  v->set_screened(in.screened);
}

template <class Msg>
void put_verdicts(Msg& m, const FileVerdicts& fv) {
  // The server has always told sharded checkpoints apart in `format` (clients rely on it).
  m.set_format(fv.format.kind == InputKind::checkpoint && fv.format.checkpoint == CheckpointFormat::safetensors_sharded
                   ? std::string(checkpoint_format_name(fv.format.checkpoint))
                   : fv.format.name);
  m.set_seconds(fv.seconds);
  for (const Verdict& in : fv.verdicts) {
    put_verdict(m.add_verdicts(), in);
    if (in.detected) m.add_detected(in.did);
  }
}

// Output checks shared by Embed and AttributeKnnShapley: a folder that exists, and an
// existing output replaced only when asked and only when it is a regular file.
Status check_output(const ConfinedPath& out, std::string_view field, bool overwrite) {
  std::error_code ec;
  const fs::path& p = out.resolved;
  const fs::path parent = p.parent_path();
  if (!fs::is_directory(parent, ec))
    return Status(StatusCode::NOT_FOUND, "the folder of " + std::string(field) + " '" + printable(out.given) +
                                             "' does not exist");
  const auto st = fs::symlink_status(p, ec);
  if (!fs::exists(st)) return Status::OK;
  if (!overwrite)
    return Status(StatusCode::ALREADY_EXISTS, std::string(field) + " '" + printable(out.given) +
                                                  "' already exists (set overwrite to replace it)");
  if (!fs::is_regular_file(st))
    return Status(StatusCode::FAILED_PRECONDITION, std::string(field) + " '" + printable(out.given) +
                                                       "' is not a regular file; only regular files are replaced");
  return Status::OK;
}

void sync_folder(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Move a finished temporary into place: without overwrite, never over anything
// (RENAME_NOREPLACE, so a file made meanwhile is not lost); then make the rename durable.
void commit_rename(const fs::path& tmp, const fs::path& target, bool overwrite, const std::string& given) {
  const int rc = overwrite ? ::rename(tmp.c_str(), target.c_str())
                           : ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE);
  if (rc != 0) {
    const int e = errno;
    DIDMARK_EXPECTS(e != EEXIST, invalid_argument, "output '", printable(given), "' appeared while it was written");
    DIDMARK_THROW(Errc::io_error, "cannot move the output into '", printable(given), "': ", std::strerror(e));
  }
  sync_folder(target.parent_path());
}

// Removes an Embed's temporaries unless they were committed.
struct Temporaries {
  std::vector<fs::path> paths;
  ~Temporaries() {
    for (const auto& p : paths) {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  }
};

// `p` rebased from `from` to `to` (an output path the library reported inside a temporary).
fs::path rebase(const fs::path& p, const fs::path& from, const fs::path& to) {
  if (p == from) return to;
  const fs::path rel = p.lexically_relative(from);
  return rel.empty() || *rel.begin() == ".." ? p : to / rel;
}

}  // namespace

std::string printable(std::string_view s, std::size_t max) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(s.size(), max) + 16);
  std::size_t i = 0;
  for (; i < s.size() && out.size() < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  if (i < s.size()) out += "... (" + std::to_string(s.size() - i) + " more bytes)";
  return out;
}

Status to_status(const Error& e, StatusCode corrupt) {
  const std::string_view what = e.what();
  // Only the first line: anything below it (a library's backtrace) stays in the server's log.
  const std::string first = printable(what.substr(0, what.find('\n')));
  switch (e.code()) {
    case Errc::invalid_argument: return Status(StatusCode::INVALID_ARGUMENT, first);
    case Errc::not_found: return Status(StatusCode::NOT_FOUND, first);
    case Errc::unsupported: return Status(StatusCode::UNIMPLEMENTED, first);
    case Errc::corrupt_input: return Status(corrupt, first);
    case Errc::permission: return Status(StatusCode::PERMISSION_DENIED, first);
    case Errc::device_failure:
    case Errc::io_error: return Status(StatusCode::INTERNAL, first);
    case Errc::internal: return Status(StatusCode::INTERNAL, "internal error");
  }
  return Status(StatusCode::INTERNAL, "internal error");
}

// ---- one call ---------------------------------------------------------------------------

class Call {
 public:
  Call(grpc::ServerContext* ctx, const char* name, double max_seconds)
      : ctx_(ctx), method(name), id(request_id()), t0(Clock::now()) {
    const auto limit = Wall::now() + std::chrono::duration_cast<Wall::duration>(std::chrono::duration<double>(max_seconds));
    deadline = std::min(ctx->deadline(), limit);
    ctx->AddInitialMetadata("x-request-id", id);
  }

  /// Throws Stopped when the client went away or the deadline (the client's, or the
  /// server's --max-call-seconds) passed.
  void check() const {
    if (ctx_->IsCancelled()) {
      if (Wall::now() >= ctx_->deadline())
        throw Stopped{Status(StatusCode::DEADLINE_EXCEEDED, "the client's deadline passed; the work stopped")};
      throw Stopped{Status(StatusCode::CANCELLED, "the client cancelled the call; the work stopped")};
    }
    if (Wall::now() >= deadline)
      throw Stopped{Status(StatusCode::DEADLINE_EXCEEDED,
                           "the call ran past its deadline (the client's, or the server's --max-call-seconds)")};
  }
  bool expired() const {
    try {
      check();
      return false;
    } catch (const Stopped&) {
      return true;
    }
  }
  bool may(Scope s) const { return !client || client->may(s); }

  grpc::ServerContext* ctx_;
  const char* method;
  std::string id;
  Clock::time_point t0;
  Wall::time_point deadline;
  std::optional<Client> client;  // nullopt: the server has no token file
  json log = json::object();     // fields of this call's log line
};

template <class Body>
Status DidmarkService::serve(grpc::ServerContext* ctx, const char* method, std::optional<Scope> scope, bool queued,
                             StatusCode corrupt, Body&& body) {
  Call call(ctx, method, options_.max_call_seconds);
  Status st;
  bool admitted = false;
  std::string detail;  // what the log says beyond the client's message (internal errors)
  try {
    st = [&]() -> Status {
      if (draining_) return Status(StatusCode::UNAVAILABLE, "the server is shutting down; retry later or elsewhere");
      if (const auto store = tokens()) {
        const auto& md = ctx->client_metadata();
        std::optional<Client> who;
        if (const auto it = md.find("authorization"); it != md.end())
          if (const auto t = bearer_token(std::string_view(it->second.data(), it->second.size()))) who = store->find(*t);
        if (!who)
          return Status(StatusCode::UNAUTHENTICATED,
                        "a valid bearer token is needed (metadata 'authorization: Bearer TOKEN')");
        call.client = std::move(who);
        if (scope && !call.client->may(*scope))
          return Status(StatusCode::PERMISSION_DENIED, "token '" + call.client->name + "' lacks the scope '" +
                                                           std::string(scope_name(*scope)) + "' that " + method +
                                                           " needs");
      }
      if (queued) {
        if (in_flight_.fetch_add(1) >= options_.max_queue) {
          in_flight_.fetch_sub(1);
          return Status(StatusCode::RESOURCE_EXHAUSTED,
                        "the server is busy: " + std::to_string(options_.max_queue) +
                            " calls are in progress (--max-queue); retry with backoff");
        }
        admitted = true;
      }
      call.check();
      return body(call);
    }();
  } catch (const Stopped& s) {
    st = s.status;
  } catch (const NoRoots& e) {
    st = Status(StatusCode::FAILED_PRECONDITION, e.what());
  } catch (const Error& e) {
    st = to_status(e, corrupt);
    if (e.code() == Errc::internal || e.code() == Errc::device_failure || e.code() == Errc::io_error) {
      detail = e.what() + (e.where().empty() ? std::string() : " at " + e.where());
      st = Status(st.error_code(), st.error_message() + " (request id " + call.id + "; the server logged the details)");
    }
  } catch (const std::bad_alloc&) {
    st = Status(StatusCode::RESOURCE_EXHAUSTED, "out of memory (request id " + call.id + ")");
  } catch (const std::exception& e) {
    // Not ours (e.g. LibTorch's, with a backtrace): the client learns only the request id.
    detail = e.what();
    st = Status(StatusCode::INTERNAL, "internal error (request id " + call.id + "; the server logged the details)");
  }
  if (admitted) in_flight_.fetch_sub(1);

  const bool quiet_ok = st.ok() && std::string_view(method) == "Health";
  if (options_.log_requests && !quiet_ok) {
    json line = json::object();
    line["time"] = utc_now_ms();
    line["request_id"] = call.id;
    line["peer"] = ctx->peer();
    line["token"] = call.client ? call.client->name : "-";
    if (options_.client_certificates) {
      // The verified client certificate's subject (mutual TLS), as gRPC reports it.
      const auto auth = ctx->auth_context();
      const auto who = auth ? auth->GetPeerIdentity() : std::vector<grpc::string_ref>{};
      if (!who.empty()) line["client_cert"] = std::string(who.front().data(), who.front().size());
    }
    line["method"] = method;
    line["status"] = code_name(st.error_code());
    line["ms"] = std::round(std::chrono::duration<double, std::milli>(Clock::now() - call.t0).count() * 1000) / 1000;
    for (auto& [k, v] : call.log.items()) line[k] = v;
    if (!st.ok()) line["error"] = st.error_message();
    if (!detail.empty()) line["detail"] = detail;
    log_event(line);
  }
  return st;
}

// One slot of --jobs for the whole read of a file, over all requests; waiting for it ends
// when the call's deadline passes or its client goes away.
template <class F>
auto DidmarkService::in_slot(Call& call, F&& work) -> decltype(work()) {
  while (!slots_.try_acquire_for(std::chrono::milliseconds(20))) call.check();
  struct Release {
    std::counting_semaphore<1024>& s;
    ~Release() { s.release(); }
  } release{slots_};
  call.check();
  return work();
}

// ---- set-up -----------------------------------------------------------------------------

DidmarkService::DidmarkService(ServerOptions options)
    : options_(std::move(options)), slots_(std::clamp(options_.jobs, 1, 1024)) {
  DIDMARK_EXPECTS(sodium_init() >= 0, internal, "libsodium failed to initialise");
  DIDMARK_EXPECTS(options_.jobs >= 1 && options_.jobs <= 1024, invalid_argument, "--jobs ", options_.jobs,
                  " is outside 1..1024");
  DIDMARK_EXPECTS(options_.max_queue >= 1 && options_.max_queue <= 100000, invalid_argument, "--max-queue ",
                  options_.max_queue, " is outside 1..100000");
  DIDMARK_EXPECTS(options_.max_call_seconds > 0, invalid_argument, "--max-call-seconds must be positive");
  if (!options_.log) options_.log = stderr;
  roots_ = Roots(options_.roots);
  if (!options_.spool.empty()) {
    std::error_code ec;
    spool_ = fs::canonical(options_.spool, ec);
    DIDMARK_EXPECTS(!ec && fs::is_directory(spool_, ec), invalid_argument, "--spool '", options_.spool.string(),
                    "' is not an existing folder");
    DIDMARK_EXPECTS(roots_.contains(spool_), invalid_argument, "--spool '", options_.spool.string(),
                    "' is not under a --root (uploads must be readable by later calls)");
  }
  if (!options_.token_file.empty()) tokens_ = TokenStore::load(options_.token_file);
  backend_ = make_backend(options_.device, "--device");
  backend_description_ = backend_->description();
  auto reg = std::make_shared<std::vector<Owner>>();
  std::error_code ec;
  if (!options_.registry.empty() && fs::exists(options_.registry, ec)) {
    const auto entries = load_registry(options_.registry);
    if (!entries.empty()) *reg = owners_of(entries);
  }
  registry_ = std::move(reg);
  if (!options_.operator_identity.empty()) operator_ = load_identity(options_.operator_identity);
  if (!options_.certificate_dir.empty())
    DIDMARK_EXPECTS(fs::is_directory(options_.certificate_dir, ec), invalid_argument, "--certificate-dir '",
                    options_.certificate_dir.string(), "' is not an existing folder");
}

DidmarkService::~DidmarkService() = default;

std::shared_ptr<const std::vector<Owner>> DidmarkService::registry() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return registry_;
}

std::shared_ptr<const TokenStore> DidmarkService::tokens() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return tokens_;
}

std::size_t DidmarkService::registry_size() const { return registry()->size(); }

std::size_t DidmarkService::token_clients() const {
  const auto t = tokens();
  return t ? t->size() : 0;
}

bool DidmarkService::reload() {
  bool ok = true;
  json line = {{"time", utc_now_ms()}, {"event", "reload"}};
  if (!options_.token_file.empty()) {
    try {
      auto t = TokenStore::load(options_.token_file);
      line["token_clients"] = t->size();
      std::lock_guard<std::mutex> lock(state_mu_);
      tokens_ = std::move(t);
    } catch (const std::exception& e) {
      ok = false;
      line["token_file_error"] = std::string(e.what()) + " (the previous tokens stay in force)";
    }
  }
  if (!options_.registry.empty()) {
    try {
      std::lock_guard<std::mutex> reg_lock(register_mu_);
      auto reg = std::make_shared<std::vector<Owner>>();
      std::error_code ec;
      if (fs::exists(options_.registry, ec)) {
        const auto entries = load_registry(options_.registry);
        if (!entries.empty()) *reg = owners_of(entries);
      }
      line["registry_owners"] = reg->size();
      std::lock_guard<std::mutex> lock(state_mu_);
      registry_ = std::move(reg);
    } catch (const std::exception& e) {
      ok = false;
      line["registry_error"] = std::string(e.what()) + " (the previous registry stays in force)";
    }
  }
  log_event(line);
  return ok;
}

void DidmarkService::log_event(const json& j) {
  // ensure_ascii: every control and non-ASCII byte is escaped, so one event is one line
  // whatever a path or message held.
  const std::string line = j.dump(-1, ' ', true, json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(log_mu_);
  std::fprintf(options_.log, "%s\n", line.c_str());
  std::fflush(options_.log);
}

// ---- shared pieces ------------------------------------------------------------------------

std::vector<Owner> DidmarkService::owners_for(const std::string& did) const {
  const auto reg = registry();
  if (reg->empty()) throw Stopped{Status(StatusCode::FAILED_PRECONDITION,
                                         "this server has no registry (start didmarkd with --registry REG.jsonl)")};
  std::vector<Owner> owners;
  for (const auto& o : *reg)
    if (did.empty() || o.did == did) owners.push_back(o);
  if (owners.empty()) throw Stopped{Status(StatusCode::NOT_FOUND, "DID '" + printable(did) + "' is not in the registry")};
  return owners;
}

InputOptions DidmarkService::input_options(const v1::MarkOptions& mo, Call& call) const {
  InputOptions o;
  o.watermark.scheme = Scheme::automatic;  // verification tests both schemes unless told which
  if (!mo.scheme().empty()) {
    const auto s = parse_scheme(mo.scheme());
    DIDMARK_EXPECTS(s.has_value(), invalid_argument, "options.scheme '", printable(mo.scheme(), 64),
                    "' is not auto, spread-spectrum or stdm");
    o.watermark.scheme = *s;
  }
  if (mo.p_threshold() != 0) {
    DIDMARK_EXPECTS(mo.p_threshold() >= 1e-300 && mo.p_threshold() <= 0.5, invalid_argument,
                    "options.p_threshold ", mo.p_threshold(), " is outside [1e-300, 0.5]");
    o.watermark.p_threshold = mo.p_threshold();
  }
  if (mo.strength() != 0) {
    DIDMARK_EXPECTS(mo.strength() > 0 && mo.strength() <= 1, invalid_argument, "options.strength ", mo.strength(),
                    " is outside (0, 1]");
    o.watermark.set_strength(mo.strength());
  }
  if (mo.max_change() != 0) {
    DIDMARK_EXPECTS(mo.max_change() > 0 && mo.max_change() <= 1, invalid_argument, "options.max_change ",
                    mo.max_change(), " is outside (0, 1]");
    o.watermark.max_relative_change = mo.max_change();
  }
  DIDMARK_EXPECTS(mo.tensors().size() <= 1024, invalid_argument, "options.tensors is longer than 1024 characters");
  o.watermark.policy.include_regex = mo.tensors();
  o.format = mo.format();
  if (!o.format.empty()) {
    bool known = o.format == "safetensors-sharded";
    for (const auto& f : input_formats()) known = known || f.name == o.format;
    std::string names;
    for (const auto& f : input_formats()) names += (names.empty() ? "" : ", ") + f.name;
    DIDMARK_EXPECTS(known, invalid_argument, "options.format '", printable(o.format, 64), "' is not one of: ", names);
  }
  if (!mo.ids().empty()) o.ids = roots_.resolve("options.ids", mo.ids()).resolved;
  o.fixed_order = mo.fixed_order();
  if (mo.fwer() < 0) {
    o.fwer.reset();
  } else if (mo.fwer() > 0) {
    DIDMARK_EXPECTS(mo.fwer() <= 0.5, invalid_argument, "options.fwer ", mo.fwer(), " is outside (0, 0.5]");
    o.fwer = mo.fwer();
  }
  if (mo.sketches_size() > 0) {
    DIDMARK_EXPECTS(mo.sketches_size() <= 256, invalid_argument, "options.sketches names more than 256 files");
    std::vector<std::string> paths;
    for (const auto& s : mo.sketches()) paths.push_back(roots_.resolve("options.sketches", s).resolved.string());
    call.check();
    o.sketches = load_sketches(paths);
  }
  return o;
}

void DidmarkService::confine_input(const fs::path& p, std::string_view field, const InputOptions& o) const {
  const InputFormat f = classify_input(p, o.format);
  if (f.kind == InputKind::checkpoint && f.checkpoint == CheckpointFormat::safetensors_sharded) {
    roots_.require(field, resolve_checkpoint_path(p, f.checkpoint));
    for (const auto& part : input_parts(p, f)) roots_.require(field, part);
  }
  if (f.kind == InputKind::array) {
    std::optional<fs::path> ids;
    try {
      ids = array_ids_path(p, o);
    } catch (const Error&) {
      return;  // no ids at all: verify_input says so, naming the ways to give them
    }
    if (ids) roots_.require(field, *ids);
  }
}

// ---- verification ----------------------------------------------------------------------

Status DidmarkService::Verify(grpc::ServerContext* ctx, const v1::VerifyRequest* req, v1::VerifyResponse* resp) {
  const bool inline_bytes = req->input_case() == v1::VerifyRequest::kSafetensors;
  return serve(
      ctx, "Verify", Scope::verify, true, inline_bytes ? StatusCode::INVALID_ARGUMENT : StatusCode::DATA_LOSS,
      [&](Call& call) -> Status {
        // What the log line says: never the key, only that one was given.
        if (req->input_case() == v1::VerifyRequest::kPath) call.log["path"] = req->path();
        if (inline_bytes) call.log["inline_bytes"] = req->safetensors().size();
        std::vector<Owner> owners;
        switch (req->owners_case()) {
          case v1::VerifyRequest::kOwner:
            call.log["did"] = req->owner().did();
            owners.push_back(owner_from(req->owner()));
            break;
          case v1::VerifyRequest::kRegistry:
            call.log["registry"] = req->registry().did().empty() ? "all" : req->registry().did();
            owners = owners_for(req->registry().did());
            break;
          default:
            return Status(StatusCode::INVALID_ARGUMENT,
                          "say whose mark: set owner {did, key_hex} or registry {did (optional)}");
        }
        const InputOptions options = input_options(req->options(), call);
        FileVerdicts fv;
        switch (req->input_case()) {
          case v1::VerifyRequest::kPath: {
            const ConfinedPath p = roots_.resolve("path", req->path());
            std::error_code ec;
            if (!fs::exists(p.resolved, ec))
              return Status(StatusCode::NOT_FOUND, "'" + printable(req->path()) + "' does not exist on the server");
            confine_input(p.resolved, "path", options);
            fv = in_slot(call, [&] { return verify_input(p.resolved, owners, options, *backend_); });
            resp->set_path(req->path());
            break;
          }
          case v1::VerifyRequest::kSafetensors: {
            fv = in_slot(call, [&] {
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
        for (const auto& w : fv.warnings) resp->add_warnings(w);
        call.log["detected"] = resp->detected_size();
        call.log["verdicts"] = resp->verdicts_size();
        return Status::OK;
      });
}

Status DidmarkService::Scan(grpc::ServerContext* ctx, const v1::ScanRequest* req,
                            grpc::ServerWriter<v1::ScanResult>* writer) {
  return serve(ctx, "Scan", Scope::verify, true, StatusCode::DATA_LOSS, [&](Call& call) -> Status {
    call.log["paths"] = req->paths_size();
    if (!req->did().empty()) call.log["did"] = req->did();
    if (req->paths_size() == 0) return Status(StatusCode::INVALID_ARGUMENT, "paths is empty: name files or folders");
    DIDMARK_EXPECTS(req->paths_size() <= 10000, invalid_argument, "paths names more than 10000 entries");
    const std::vector<Owner> owners = owners_for(req->did());
    const InputOptions options = input_options(req->options(), call);  // a bad option fails the call, not every file
    std::vector<std::string> paths;
    for (const auto& p : req->paths()) paths.push_back(roots_.resolve("paths", p).resolved.string());

    // The file list, as scan_inputs makes it, with one more rule: a file found in a folder
    // that resolves outside the roots (a symlink) is left out like a file of no known
    // format. The admitted files then go to scan_inputs by name.
    const std::vector<InputFile> listed = collect_inputs(paths, [&](const fs::path& p) {
      roots_.require("a scanned file", p);
      const InputFormat f = classify_input(p, options.format);
      std::vector<fs::path> parts;
      try {
        parts = input_parts(p, f);
      } catch (const Error&) {
        return parts;  // reported when the input itself is verified
      }
      confine_input(p, "a scanned file", options);
      return parts;
    });
    std::vector<std::string> admitted;
    std::vector<uint32_t> index_of;  // admitted -> listed position
    const auto total = static_cast<uint32_t>(listed.size());
    std::size_t files = 0;
    int failed = 0, hits = 0;
    for (std::size_t i = 0; i < listed.size(); ++i) {
      if (listed[i].error_code == "permission") {  // outside the roots: reported here, never read
        v1::ScanResult r;
        r.set_index(static_cast<uint32_t>(i));
        r.set_total(total);
        r.set_path(listed[i].path.string());
        r.mutable_error()->set_code(listed[i].error_code);
        r.mutable_error()->set_message(printable(listed[i].error_message));
        ++failed;
        if (!writer->Write(r)) return Status(StatusCode::CANCELLED, "the client went away");
        continue;
      }
      admitted.push_back(listed[i].path.string());
      index_of.push_back(static_cast<uint32_t>(i));
    }
    ScanOptions so;
    so.jobs = options_.jobs;  // the workers share the backend; --jobs bounds them as it bounds Verify
    so.cancelled = [&call] { return call.expired(); };
    files = scan_inputs(admitted, owners, options, so, *backend_, [&](ScanItem&& it) {
      v1::ScanResult r;
      r.set_index(it.index < index_of.size() ? index_of[it.index] : static_cast<uint32_t>(it.index));
      r.set_total(total);
      r.set_path(it.path.string());
      if (it.verdicts) {
        put_verdicts(r, *it.verdicts);
        if (r.detected_size() > 0) ++hits;
      } else {
        r.mutable_error()->set_code(it.error_code);
        r.mutable_error()->set_message(printable(it.error_message.substr(0, it.error_message.find('\n'))));
        ++failed;
      }
      return writer->Write(r);  // false: the client went away
    });
    call.log["files"] = total;
    call.log["detected"] = hits;
    call.log["failed"] = failed;
    (void)files;
    call.check();
    return Status::OK;
  });
}

// ---- embedding ---------------------------------------------------------------------------

Status DidmarkService::Embed(grpc::ServerContext* ctx, const v1::EmbedRequest* req, v1::EmbedResponse* resp) {
  return serve(ctx, "Embed", Scope::embed, true, StatusCode::DATA_LOSS, [&](Call& call) -> Status {
    call.log["input"] = req->input();
    call.log["output"] = req->output();
    call.log["did"] = req->owner().did();
    const Owner owner = owner_from(req->owner());
    InputOptions options = input_options(req->options(), call);
    if (req->options().scheme().empty()) options.watermark.scheme = Scheme::spread_spectrum;
    DIDMARK_EXPECTS(options.watermark.scheme != Scheme::automatic, invalid_argument,
                    "options.scheme 'auto' is for verification; embed with spread-spectrum or stdm");
    const ConfinedPath in = roots_.resolve("input", req->input());
    const ConfinedPath out = roots_.resolve("output", req->output());
    std::error_code ec;
    if (!fs::exists(in.resolved, ec))
      return Status(StatusCode::NOT_FOUND, "input '" + printable(req->input()) + "' does not exist on the server");
    confine_input(in.resolved, "input", options);
    const InputFormat format = classify_input(in.resolved, options.format);
    const bool sharded =
        format.kind == InputKind::checkpoint && format.checkpoint == CheckpointFormat::safetensors_sharded;
    if (fs::exists(out.resolved, ec) && fs::equivalent(in.resolved, out.resolved, ec))
      return Status(StatusCode::INVALID_ARGUMENT, "output '" + printable(req->output()) +
                                                      "' is the input: write the marked copy to a new file");
    if (Status s = check_output(out, "output", req->overwrite() && !sharded); !s.ok()) return s;
    std::optional<ConfinedPath> sketch;
    if (!req->sketch_output().empty()) {
      sketch = roots_.resolve("sketch_output", req->sketch_output());
      if (Status s = check_output(*sketch, "sketch_output", req->overwrite()); !s.ok()) return s;
    }

    // Written under temporary names beside the targets and renamed into place only when the
    // call is still wanted: a cancelled or late call leaves nothing behind.
    Temporaries tmp;
    const std::string prefix = ".didmarkd-" + call.id + "-";
    const fs::path out_tmp = out.resolved.parent_path() / (prefix + out.resolved.filename().string());
    tmp.paths.push_back(out_tmp);
    fs::path sketch_tmp;
    if (sketch) {
      sketch_tmp = sketch->resolved.parent_path() / (prefix + sketch->resolved.filename().string());
      tmp.paths.push_back(sketch_tmp);
      options.sketch_output = sketch_tmp;
    }
    InputEmbedReport r =
        in_slot(call, [&] { return embed_input(in.resolved, out_tmp, owner, options, {false, req->allow_weak()}, *backend_); });
    call.check();  // the client gave up meanwhile: the temporaries go, nothing is committed
    if (sketch) commit_rename(sketch_tmp, sketch->resolved, req->overwrite(), sketch->given);
    try {
      commit_rename(out_tmp, out.resolved, req->overwrite() && !sharded, out.given);
    } catch (...) {
      if (sketch) {
        std::error_code ignore;
        fs::remove(sketch->resolved, ignore);
      }
      throw;
    }
    tmp.paths.clear();

    r.output = out.resolved;
    for (auto& p : r.outputs) p = rebase(p, out_tmp, out.resolved);
    if (r.checkpoint)
      for (auto& p : r.checkpoint->outputs) p = rebase(p, out_tmp, out.resolved);
    if (sketch) r.sketch_path = sketch->resolved;
    resp->set_input(req->input());
    resp->set_output(req->output());
    resp->set_format(sharded ? std::string(checkpoint_format_name(format.checkpoint)) : format.name);
    for (const auto& p : r.outputs) resp->add_outputs(p.string());
    resp->set_report_json(embed_report_json(r, owner));
    for (const auto& w : r.warnings) resp->add_warnings(w);
    if (sketch) resp->set_sketch_output(sketch->resolved.string());
    resp->set_seconds(std::chrono::duration<double>(Clock::now() - call.t0).count());
    return Status::OK;
  });
}

// ---- registration ---------------------------------------------------------------------------

Status DidmarkService::Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req, v1::RegisterResponse* resp) {
  // Everything but model_path comes from the request: a malformed certificate is INVALID_ARGUMENT.
  return serve(ctx, "Register", Scope::register_, true, StatusCode::INVALID_ARGUMENT, [&](Call& call) -> Status {
    if (!operator_)
      return Status(StatusCode::FAILED_PRECONDITION,
                    "this server has no operator identity to countersign with (start didmarkd with --operator ID)");
    if (options_.registry.empty())
      return Status(StatusCode::FAILED_PRECONDITION,
                    "this server has no registry to add owners to (start didmarkd with --registry REG.jsonl)");
    const std::string& text = req->certificate_json();
    if (text.empty()) return Status(StatusCode::INVALID_ARGUMENT, "certificate_json is empty");
    if (text.size() > kMaxCertificateBytes)
      return Status(StatusCode::INVALID_ARGUMENT, "certificate_json is over " + std::to_string(kMaxCertificateBytes) +
                                                      " bytes");
    const CertificateCheck check = verify_certificate(text);
    if (!check.valid)
      return Status(StatusCode::INVALID_ARGUMENT, "certificate_json does not verify: " + printable(check.reason));
    const MarkCertificate& c = check.certificate;
    call.log["did"] = c.owner;
    WatermarkKey key;
    if (!req->key_hex().empty()) {
      key = WatermarkKey::from_hex(req->key_hex());
      if (watermark_key_digest(key) != c.key_digest)
        return Status(StatusCode::INVALID_ARGUMENT,
                      "key_hex is not the watermark key this certificate names (the key digests differ)");
    } else if (c.verification_key) {
      key = *c.verification_key;
    } else {
      return Status(StatusCode::INVALID_ARGUMENT,
                    "give key_hex: the certificate does not disclose its verification key");
    }
    if (!req->time().empty() && !call.may(Scope::admin))
      return Status(StatusCode::PERMISSION_DENIED, "only an admin token may choose the countersignature's time");
    const Owner owner{c.owner, key, did_codeword(c.owner)};

    if (!req->model_path().empty()) {
      call.log["model_path"] = req->model_path();
      const ConfinedPath m = roots_.resolve("model_path", req->model_path());
      std::error_code ec;
      if (!fs::exists(m.resolved, ec))
        return Status(StatusCode::NOT_FOUND, "model_path '" + printable(req->model_path()) + "' does not exist");
      InputOptions o;
      o.watermark.scheme = c.scheme;
      o.watermark.policy.include_regex = c.tensors;
      if (c.strength > 0) o.watermark.set_strength(c.strength);
      confine_input(m.resolved, "model_path", o);
      const std::string diff = compare_resources(c.resources, model_resources(m.resolved));
      if (!diff.empty())
        return Status(StatusCode::FAILED_PRECONDITION,
                      "model_path is not the certified model: " + printable(diff));
      const FileVerdicts fv = in_slot(call, [&] { return verify_input(m.resolved, std::span(&owner, 1), o, *backend_); });
      put_verdict(resp->mutable_model_verdict(), fv.verdicts.at(0));
      if (!fv.verdicts.at(0).detected)
        return Status(StatusCode::FAILED_PRECONDITION,
                      "the owner's mark is not detected in model_path (z " + std::to_string(fv.verdicts[0].z) +
                          "): the server countersigns only a model that carries it");
    }
    call.check();

    std::lock_guard<std::mutex> lock(register_mu_);
    // The registry as it is on disk now: an operator may have edited it since it was loaded.
    std::vector<RegistryEntry> entries;
    std::error_code ec;
    mode_t mode = 0600;
    if (fs::exists(options_.registry, ec)) {
      entries = load_registry(options_.registry);
      struct stat st {};
      if (::stat(options_.registry.c_str(), &st) == 0) mode = st.st_mode & 0777;
    }
    bool already = false;
    for (const auto& e : entries) {
      if (e.did != owner.did) continue;
      if (!(e.key == key))
        return Status(StatusCode::ALREADY_EXISTS, "DID " + owner.did +
                                                      " is in the registry with another watermark key; the operator "
                                                      "must remove it first");
      already = true;
    }
    const std::string countersigned = countersign_certificate(text, *operator_, req->time());
    const CertificateCheck after = verify_certificate(countersigned);
    DIDMARK_ASSERT(after.valid);
    std::string time;
    for (const auto& cs : after.countersignatures)
      if (cs.authority == operator_->did()) time = cs.time;
    if (!options_.certificate_dir.empty()) {
      std::string uuid = after.certificate.id.substr(after.certificate.id.rfind(':') + 1);
      const bool safe = !uuid.empty() && uuid.size() <= 64 && std::all_of(uuid.begin(), uuid.end(), [](char ch) {
        return std::isxdigit(static_cast<unsigned char>(ch)) || ch == '-';
      });
      DIDMARK_ASSERT(safe);
      detail::write_file_atomically(options_.certificate_dir / (lower(uuid) + ".json"), countersigned, true, 0644);
    }
    if (!already) {
      entries.push_back({owner.did, key});
      std::string lines;
      for (const auto& e : entries) lines += registry_line(e) + "\n";
      detail::write_file_atomically(options_.registry, lines, true, mode);
    }
    auto reg = std::make_shared<std::vector<Owner>>(owners_of(entries));
    {
      std::lock_guard<std::mutex> state(state_mu_);
      registry_ = reg;
    }
    resp->set_did(owner.did);
    resp->set_certificate_json(countersigned);
    resp->set_certificate_id(after.certificate.id);
    resp->set_authority(operator_->did());
    resp->set_time(time);
    resp->set_already_registered(already);
    resp->set_registry_owners(static_cast<uint32_t>(reg->size()));
    call.log["already_registered"] = already;
    return Status::OK;
  });
}

// ---- attribution ------------------------------------------------------------------------------

Status DidmarkService::AttributeKnnShapley(grpc::ServerContext* ctx, const v1::KnnShapleyRequest* req,
                                           v1::KnnShapleyResponse* resp) {
  return serve(ctx, "AttributeKnnShapley", Scope::attribute, true, StatusCode::DATA_LOSS, [&](Call& call) -> Status {
    auto load = [&](const char* field, const std::string& given) {
      const ConfinedPath p = roots_.resolve(field, given);
      return read_npy(p.resolved);
    };
    call.log["train"] = req->train();
    const NpyArray x = load("train", req->train()), y = load("train_labels", req->train_labels());
    const NpyArray q = load("test", req->test()), yq = load("test_labels", req->test_labels());
    std::optional<NpyArray> c;
    if (!req->contributors().empty()) c = load("contributors", req->contributors());
    std::optional<ConfinedPath> out;
    if (!req->values_output().empty()) {
      out = roots_.resolve("values_output", req->values_output());
      if (Status s = check_output(*out, "values_output", req->overwrite()); !s.ok()) return s;
    }
    KnnShapleyOptions o;
    o.k = req->k() == 0 ? 5 : req->k();
    DIDMARK_EXPECTS(o.k >= 1, invalid_argument, "k ", req->k(), " must be at least 1");
    const KnnShapleyReport r = in_slot(call, [&] {
      return knn_shapley(x.view(), y.view(), q.view(), yq.view(), o,
                         c ? std::optional<TensorView>(c->view()) : std::nullopt, *backend_);
    });
    call.check();
    if (out) {
      std::vector<double> v = r.values;
      write_npy(out->resolved, TensorView::contiguous(v.data(), DType::f64, {static_cast<int64_t>(v.size())}),
                req->overwrite());
      resp->set_values_output(out->resolved.string());
    }
    double sum = 0;
    for (double v : r.values) sum += v;
    resp->set_train(r.train);
    resp->set_queries(r.queries);
    resp->set_dim(r.dim);
    resp->set_k(r.k);
    resp->set_compute(std::string(dtype_name(r.compute)));
    resp->set_duplicate_rows(r.duplicate_rows);
    resp->set_sum(sum);
    for (std::size_t i = 0; i < r.contributors.ids.size(); ++i) {
      v1::ContributorTotal* t = resp->add_contributors();
      t->set_id(r.contributors.ids[i]);
      t->set_total(r.contributors.totals[i]);
      t->set_rows(r.contributors.rows[i]);
    }
    if (req->return_values()) *resp->mutable_values() = {r.values.begin(), r.values.end()};
    resp->set_seconds(r.seconds);
    resp->set_backend(r.backend);
    call.log["rows"] = r.train;
    call.log["queries"] = r.queries;
    return Status::OK;
  });
}

// ---- uploads ------------------------------------------------------------------------------

Status DidmarkService::Upload(grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadChunk>* reader,
                              v1::UploadResponse* resp) {
  return serve(ctx, "Upload", std::nullopt, true, StatusCode::INVALID_ARGUMENT, [&](Call& call) -> Status {
    if (!call.may(Scope::verify) && !call.may(Scope::embed))
      return Status(StatusCode::PERMISSION_DENIED,
                    "token '" + call.client->name + "' lacks the scope 'verify' or 'embed' that Upload needs");
    if (spool_.empty())
      return Status(StatusCode::FAILED_PRECONDITION, "this server takes no uploads (start didmarkd with --spool DIR)");
    const uint64_t limit = options_.max_upload_bytes;
    const std::string over = "the upload is over the limit of " + std::to_string(limit) + " bytes (--max-upload-bytes)";
    v1::UploadChunk chunk;
    std::unique_ptr<detail::AtomicFile> file;  // unnamed until committed: a failed upload leaves nothing
    crypto_hash_sha256_state sha;
    crypto_hash_sha256_init(&sha);
    uint64_t total = 0, declared = 0;
    std::string want_sha;
    fs::path target;
    while (reader->Read(&chunk)) {
      call.check();
      if (!file) {
        declared = chunk.size();
        if (declared > limit) return Status(StatusCode::RESOURCE_EXHAUSTED, over);
        want_sha = lower(chunk.sha256());
        if (!want_sha.empty() && !is_hex(want_sha, 64))
          return Status(StatusCode::INVALID_ARGUMENT, "sha256 is not 64 hex digits");
        target = spool_ / (call.id + "-" + upload_name(chunk.name()));
        call.log["name"] = target.filename().string();
        file = std::make_unique<detail::AtomicFile>(target, false, 0640);
      } else if (!chunk.name().empty() || chunk.size() != 0 || !chunk.sha256().empty()) {
        return Status(StatusCode::INVALID_ARGUMENT, "name, size and sha256 belong in the first chunk only");
      }
      total += chunk.data().size();
      if (total > limit) return Status(StatusCode::RESOURCE_EXHAUSTED, over);
      file->write(chunk.data());
      crypto_hash_sha256_update(&sha, reinterpret_cast<const unsigned char*>(chunk.data().data()), chunk.data().size());
    }
    call.check();  // Read ended because the client went away: nothing is kept
    if (!file) return Status(StatusCode::INVALID_ARGUMENT, "the upload had no chunks");
    call.log["bytes"] = total;
    if (declared != 0 && declared != total)
      return Status(StatusCode::INVALID_ARGUMENT, "received " + std::to_string(total) + " bytes, the first chunk said " +
                                                      std::to_string(declared));
    std::array<unsigned char, crypto_hash_sha256_BYTES> digest{};
    crypto_hash_sha256_final(&sha, digest.data());
    std::string hex;
    for (unsigned char b : digest) {
      static constexpr char h[] = "0123456789abcdef";
      hex.push_back(h[b >> 4]);
      hex.push_back(h[b & 15]);
    }
    if (!want_sha.empty() && want_sha != hex)
      return Status(StatusCode::DATA_LOSS, "the bytes received do not have the SHA-256 the first chunk gave");
    file->commit();
    resp->set_path(target.string());
    resp->set_bytes(total);
    resp->set_sha256(hex);
    return Status::OK;
  });
}

// ---- royalties --------------------------------------------------------------------------

Status DidmarkService::Split(grpc::ServerContext* ctx, const v1::SplitRequest* req, v1::SplitResponse* resp) {
  // Everything a Split reads comes from the request: a malformed policy is INVALID_ARGUMENT.
  return serve(ctx, "Split", Scope::split, true, StatusCode::INVALID_ARGUMENT, [&](Call& call) -> Status {
    call.log["revenue"] = req->revenue();
    call.log["payees"] = req->weights_size() + req->exact_weights_size();
    if (!req->policy_json().empty()) call.log["policy"] = true;
    const Amount revenue = parse_amount(req->revenue(), "revenue");
    if (req->weights().empty() && req->exact_weights().empty() && req->policy_json().empty())
      return Status(StatusCode::INVALID_ARGUMENT,
                    "give the payees' weights (or a policy_json whose levels name their weights)");
    std::vector<Payee> input;
    for (const auto& [did, w] : req->weights()) input.push_back(Payee{did, Weight::from_double(w)});
    for (const auto& [did, w] : req->exact_weights()) {
      if (req->weights().count(did))
        return Status(StatusCode::INVALID_ARGUMENT,
                      "payee " + printable(did) + " is in both weights and exact_weights; give it once");
      input.push_back(Payee{did, Weight::from_decimal(w)});
    }
    std::optional<NegativeWeights> negative;
    if (!req->negative().empty()) {
      negative = parse_negative_weights(req->negative());
      if (!negative)
        return Status(StatusCode::INVALID_ARGUMENT,
                      "negative '" + printable(req->negative(), 64) + "' is not one of clip, shift, refuse");
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
      call.log["signed"] = true;
    }
    return Status::OK;
  });
}

// ---- about the server ----------------------------------------------------------------------

Status DidmarkService::Health(grpc::ServerContext* ctx, const v1::HealthRequest*, v1::HealthResponse* resp) {
  return serve(ctx, "Health", std::nullopt, false, StatusCode::INTERNAL, [&](Call&) -> Status {
    resp->set_status(draining_ ? "NOT_SERVING" : "SERVING");
    resp->set_version(DIDMARK_VERSION);
    resp->set_backend(backend_description_);
    resp->set_registry_owners(static_cast<uint32_t>(registry_size()));
    if (operator_) resp->set_operator_did(operator_->did());
    resp->set_jobs(static_cast<uint32_t>(options_.jobs));
    return Status::OK;  // logged only when it fails: load balancers poll it
  });
}

Status DidmarkService::Info(grpc::ServerContext* ctx, const v1::InfoRequest*, v1::InfoResponse* resp) {
  return serve(ctx, "Info", std::nullopt, false, StatusCode::INTERNAL, [&](Call& call) -> Status {
    resp->set_version(DIDMARK_VERSION);
    resp->set_api("didmark.v1");
    resp->set_api_revision(kApiRevision);
    resp->set_backend(backend_description_);
    resp->set_device(std::string(device_name(backend_->device())));
    auto& build = *resp->mutable_build();
    build["cuda"] = DIDMARK_HAVE_CUDA ? "on" : "off";
    build["torch"] = DIDMARK_HAVE_TORCH ? "on" : "off";
    build["grpc"] = grpc::Version();
    build["protobuf"] = google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION);
    for (const auto& f : input_formats()) resp->add_formats(f.name);
    v1::Limits* l = resp->mutable_limits();
    l->set_max_message_bytes(static_cast<uint64_t>(options_.max_message_bytes));
    l->set_max_upload_bytes(options_.max_upload_bytes);
    l->set_max_queue(static_cast<uint32_t>(options_.max_queue));
    l->set_jobs(static_cast<uint32_t>(options_.jobs));
    l->set_max_call_seconds(options_.max_call_seconds);
    if (call.client) {
      resp->set_token_name(call.client->name);
      for (Scope s : call.client->scopes) resp->add_scopes(std::string(scope_name(s)));
    }
    resp->set_tls(options_.tls);
    resp->set_client_certificates(options_.client_certificates);
    resp->set_registry_owners(static_cast<uint32_t>(registry_size()));
    if (operator_) resp->set_operator_did(operator_->did());
    resp->set_uploads(!spool_.empty());
    // Where the server's files are is for its operators (or anyone, without authentication).
    if (call.may(Scope::admin))
      for (const auto& r : roots_.list()) resp->add_roots(r.string());
    return Status::OK;
  });
}

}  // namespace didmark::server
