#pragma once
// The didmark.v1.Didmark gRPC service (proto/didmark.proto): provenance checks and royalty
// splits for marketplace backends. Each RPC calls the same library functions as the CLI
// (verify_input, scan_inputs, run_cascade, make_statement); this file only maps
// requests in, reports out, and didmark::Error codes to gRPC statuses.

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <string>
#include <vector>

#include "didmark.grpc.pb.h"
#include "didmark/backend.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/inputs.hpp"
#include "didmark/watermark.hpp"

namespace didmark::server {

struct ServerOptions {
  /// JSON Lines registry of {did, key}: the owners Scan and registry Verify look for. Empty:
  /// those requests fail with FAILED_PRECONDITION.
  std::filesystem::path registry;
  /// Identity file (did:key) that signs Split statements. Empty: Split returns no statement.
  std::filesystem::path operator_identity;
  /// Files verified at once over all requests (>= 1).
  int jobs = 2;
  /// "", "cpu" or "cuda" ("" picks the GPU when one is present).
  std::string device;
  /// One line per request on stderr.
  bool log_requests = true;
};

/// The gRPC status for a didmark error: invalid_argument -> INVALID_ARGUMENT, not_found ->
/// NOT_FOUND, corrupt_input -> `corrupt` (DATA_LOSS for the server's files,
/// INVALID_ARGUMENT for what the request itself carried), unsupported -> UNIMPLEMENTED,
/// permission -> PERMISSION_DENIED, device_failure, io_error and internal -> INTERNAL.
grpc::Status to_status(const Error& e, grpc::StatusCode corrupt = grpc::StatusCode::DATA_LOSS);

class DidmarkService final : public didmark::v1::Didmark::Service {
 public:
  /// Loads the registry and the operator identity and makes the backend; throws
  /// didmark::Error naming the file or option that is wrong.
  explicit DidmarkService(ServerOptions options);
  ~DidmarkService() override;

  grpc::Status Verify(grpc::ServerContext* ctx, const v1::VerifyRequest* req, v1::VerifyResponse* resp) override;
  grpc::Status Scan(grpc::ServerContext* ctx, const v1::ScanRequest* req,
                    grpc::ServerWriter<v1::ScanResult>* writer) override;
  grpc::Status Split(grpc::ServerContext* ctx, const v1::SplitRequest* req, v1::SplitResponse* resp) override;
  grpc::Status Health(grpc::ServerContext* ctx, const v1::HealthRequest* req, v1::HealthResponse* resp) override;

  std::size_t registry_size() const noexcept { return registry_.size(); }
  const std::string& backend_description() const noexcept { return backend_description_; }

 private:
  template <class F>
  auto in_slot(F&& work) -> decltype(work());
  void log(const grpc::ServerContext* ctx, const std::string& what, const grpc::Status& st, double seconds);

  ServerOptions options_;
  std::vector<Owner> registry_;
  std::optional<Identity> operator_;
  std::shared_ptr<Backend> backend_;
  std::string backend_description_;
  /// Bounds the files verified at once (--jobs), over all requests.
  std::counting_semaphore<1024> slots_;
  std::mutex log_mu_;
};

}  // namespace didmark::server
