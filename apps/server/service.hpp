#pragma once
// The didmark.v1.Didmark gRPC service (proto/didmark.proto): provenance checks, embedding,
// registration, attribution and royalty splits for marketplace backends. Each RPC calls the
// same library functions as the CLI (verify_input, scan_inputs, embed_input,
// countersign_certificate, knn_shapley, run_cascade, make_statement); this file maps requests
// in, reports out, and didmark::Error codes to gRPC statuses. Around every call it checks
// the bearer token and its scopes, confines paths to the roots, admits the call into the
// bounded queue, applies the deadline and writes one JSON log line (docs/server.md).

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <string>
#include <vector>

#include "auth.hpp"
#include "didmark.grpc.pb.h"
#include "didmark/backend.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/inputs.hpp"
#include "didmark/watermark.hpp"
#include "roots.hpp"

namespace didmark::server {

struct ServerOptions {
  /// JSON Lines registry of {did, key}: the owners Scan and registry Verify look for, and
  /// where Register adds owners (rewritten atomically). Empty: those requests fail with
  /// FAILED_PRECONDITION. A path that does not exist yet is an empty registry that Register
  /// creates.
  std::filesystem::path registry;
  /// Identity file (did:key) that signs Split statements and countersigns Register
  /// certificates. Empty: Split returns no statement, Register fails FAILED_PRECONDITION.
  std::filesystem::path operator_identity;
  /// Where Register also keeps the countersigned certificates (<uuid>.json). Empty: not kept.
  std::filesystem::path certificate_dir;
  /// Files verified at once over all requests (>= 1).
  int jobs = 2;
  /// "", "cpu" or "cuda" ("" picks the GPU when one is present).
  std::string device;
  /// One JSON line per call on `log` (stderr when null).
  bool log_requests = true;
  std::FILE* log = nullptr;

  /// Bearer tokens (auth.hpp). Empty: no authentication (main allows that on loopback only).
  std::filesystem::path token_file;
  /// Folders requests may name (roots.hpp). Empty: requests may not name paths.
  std::vector<std::string> roots;
  /// Folder under a root where Upload writes. Empty: Upload fails FAILED_PRECONDITION.
  std::filesystem::path spool;
  /// Largest upload.
  uint64_t max_upload_bytes = 1ull << 30;
  /// Calls admitted at once (running or waiting for a job slot); beyond: RESOURCE_EXHAUSTED.
  int max_queue = 64;
  /// Longest a call may run, whatever the client's deadline (seconds).
  double max_call_seconds = 900;
  /// Largest request message (gRPC's receive limit; main applies it to the server).
  int max_message_bytes = 4 << 20;
  /// For Info only: the transport main set up.
  bool tls = false;
  bool client_certificates = false;
};

/// The gRPC status for a didmark error: invalid_argument -> INVALID_ARGUMENT, not_found ->
/// NOT_FOUND, corrupt_input -> `corrupt` (DATA_LOSS for the server's files,
/// INVALID_ARGUMENT for what the request itself carried), unsupported -> UNIMPLEMENTED,
/// permission -> PERMISSION_DENIED, device_failure and io_error -> INTERNAL (the message,
/// first line only), internal -> INTERNAL without the message (logged instead).
grpc::Status to_status(const Error& e, grpc::StatusCode corrupt = grpc::StatusCode::DATA_LOSS);

/// A message safe to send or log: printable ASCII (\xNN for other bytes, so no line can be
/// forged and no terminal escape gets through), cut at `max` bytes.
std::string printable(std::string_view s, std::size_t max = 2048);

class Call;

class DidmarkService final : public didmark::v1::Didmark::Service {
 public:
  /// Loads the token file, roots, registry and operator identity and makes the backend;
  /// throws didmark::Error naming the file or option that is wrong.
  explicit DidmarkService(ServerOptions options);
  ~DidmarkService() override;

  grpc::Status Verify(grpc::ServerContext* ctx, const v1::VerifyRequest* req, v1::VerifyResponse* resp) override;
  grpc::Status Scan(grpc::ServerContext* ctx, const v1::ScanRequest* req,
                    grpc::ServerWriter<v1::ScanResult>* writer) override;
  grpc::Status Split(grpc::ServerContext* ctx, const v1::SplitRequest* req, v1::SplitResponse* resp) override;
  grpc::Status Health(grpc::ServerContext* ctx, const v1::HealthRequest* req, v1::HealthResponse* resp) override;
  grpc::Status Embed(grpc::ServerContext* ctx, const v1::EmbedRequest* req, v1::EmbedResponse* resp) override;
  grpc::Status Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                        v1::RegisterResponse* resp) override;
  grpc::Status AttributeKnnShapley(grpc::ServerContext* ctx, const v1::KnnShapleyRequest* req,
                                   v1::KnnShapleyResponse* resp) override;
  grpc::Status Upload(grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadChunk>* reader,
                      v1::UploadResponse* resp) override;
  grpc::Status Info(grpc::ServerContext* ctx, const v1::InfoRequest* req, v1::InfoResponse* resp) override;

  /// SIGHUP: read the token file and the registry again. A file that fails keeps the old
  /// one in force; the reason is logged. Returns false when something failed.
  bool reload();
  /// SIGTERM: from now on new calls get UNAVAILABLE; calls in flight go on.
  void drain() noexcept { draining_ = true; }
  /// Calls admitted and not yet finished.
  int in_flight() const noexcept { return in_flight_.load(); }

  std::size_t registry_size() const;
  std::size_t token_clients() const;
  const std::string& backend_description() const noexcept { return backend_description_; }
  const Roots& roots() const noexcept { return roots_; }

  /// One JSON object as one log line (escaped: no control character reaches the log).
  void log_event(const nlohmann::json& j);

 private:
  friend class Call;
  template <class Body>
  grpc::Status serve(grpc::ServerContext* ctx, const char* method, std::optional<Scope> scope, bool queued,
                     grpc::StatusCode corrupt, Body&& body);
  template <class F>
  auto in_slot(Call& call, F&& work) -> decltype(work());

  std::shared_ptr<const std::vector<Owner>> registry() const;
  std::vector<Owner> owners_for(const std::string& did) const;
  std::shared_ptr<const TokenStore> tokens() const;
  /// The input at `p` (already confined) and every file reading it opens beside it (shards,
  /// the rows' ids) must lie under the roots.
  void confine_input(const std::filesystem::path& p, std::string_view field, const InputOptions& o) const;
  InputOptions input_options(const v1::MarkOptions& mo, Call& call) const;

  ServerOptions options_;
  Roots roots_;
  std::filesystem::path spool_;
  std::shared_ptr<const TokenStore> tokens_;  // null: no authentication
  std::shared_ptr<const std::vector<Owner>> registry_;
  mutable std::mutex state_mu_;  // guards the two pointers above
  std::mutex register_mu_;       // one Register (read, append, rewrite) at a time
  std::optional<Identity> operator_;
  std::shared_ptr<Backend> backend_;
  std::string backend_description_;
  /// Bounds the files verified at once (--jobs), over all requests.
  std::counting_semaphore<1024> slots_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::mutex log_mu_;
};

}  // namespace didmark::server
