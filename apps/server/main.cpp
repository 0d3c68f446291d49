// didmarkd: the didmark gRPC server (proto/didmark.proto, docs/server.md).
#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "didmark/error.hpp"
#include "service.hpp"

namespace {

struct Args {
  std::string listen = "127.0.0.1:50551";
  std::string registry;
  std::string operator_id;
  int jobs = 2;
  std::string device;
  bool quiet = false;
};

int run(const Args& a) {
  didmark::server::ServerOptions o;
  o.registry = a.registry;
  o.operator_identity = a.operator_id;
  o.jobs = a.jobs;
  o.device = a.device;
  o.log_requests = !a.quiet;
  // SIGINT/SIGTERM are taken by a thread with sigwait, not a handler: Server::Shutdown is
  // not async-signal-safe. Blocked before any thread starts (the CPU backend's pool, gRPC's),
  // so that every thread inherits the mask and only sigwait receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  didmark::server::DidmarkService service(o);

  grpc::EnableDefaultHealthCheckService(true);  // grpc.health.v1.Health for load balancers
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, so a second didmarkd on a busy port would start and
  // silently share its traffic; refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(a.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "didmarkd: cannot listen on '%s' (address in use, or not HOST:PORT?)\n", a.listen.c_str());
    return 2;
  }
  std::fprintf(stderr, "didmarkd: listening on %s (port %d); backend %s; registry %zu owner%s%s%s; %d job%s\n",
               a.listen.c_str(), port, service.backend_description().c_str(), service.registry_size(),
               service.registry_size() == 1 ? "" : "s", a.operator_id.empty() ? "" : "; statements signed by ",
               a.operator_id.empty() ? "" : a.operator_id.c_str(), a.jobs, a.jobs == 1 ? "" : "s");

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "didmarkd: %s: finishing requests in flight (at most 10 s), then exiting\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    server->GetHealthCheckService()->Shutdown();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  });
  server->Wait();
  waiter.join();
  std::fprintf(stderr, "didmarkd: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app(
      "didmarkd: a gRPC server for marketplace backends that check provenance at scale: verify owners' "
      "watermarks in checkpoints and datasets on the server, scan folders against a registry, split "
      "royalties exactly and sign the statement.",
      "didmarkd");
  app.add_option("--listen", a.listen, "Address to serve on, HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--registry", a.registry,
                 "Registry of owners (JSON Lines of {did, key}, from 'didmark id export-key'): Scan and "
                 "Verify with registry {} look for these. Without it those calls fail FAILED_PRECONDITION");
  app.add_option("--operator", a.operator_id,
                 "Operator identity file (did:key, mode 0600) that signs Split statements; without it Split "
                 "returns payouts only");
  app.add_option("-j,--jobs", a.jobs, "Files verified at once, over all requests")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--device", a.device, "Backend: cpu or cuda (default: the GPU when one is present)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_flag("-q,--quiet", a.quiet, "No per-request log lines on stderr");
  app.footer(
      "\nService didmark.v1.Didmark (proto/didmark.proto):\n"
      "  Verify  one file on the server (path) or inline safetensors bytes, against one owner {did, key_hex}\n"
      "          or the registry; one verdict per DID: did, detected, z, p_value, bit_errors, bits, elements,\n"
      "          tensors (the field names of 'didmark verify --json').\n"
      "  Scan    files and folders (walked) against the registry, one ScanResult streamed per file as it is\n"
      "          done; a file that fails carries error {code, message} and the scan goes on.\n"
      "  Split   revenue (decimal string), weights {DID: number} and/or exact_weights {DID: \"decimal\"},\n"
      "          optional policy_json: exact payouts as decimal strings, and the signed statement when\n"
      "          --operator is given.\n"
      "  Health  status, version, backend, registry size. grpc.health.v1.Health is served too.\n"
      "Paths are read with this process's rights: serve on a trusted network (the default listens on\n"
      "localhost only); there is no TLS or authentication in didmarkd itself.\n"
      "Logs one line per request on stderr (never keys or secrets). SIGINT/SIGTERM: stop accepting,\n"
      "finish calls in flight (at most 10 s), exit 0.\n\n"
      "Example:\n"
      "  didmark id new -o alice.id.json && didmark id export-key alice.id.json >> registry.jsonl\n"
      "  didmarkd --registry registry.jsonl --operator operator.id.json --jobs 4\n"
      "More: docs/server.md\n");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(a);
  } catch (const didmark::Error& e) {
    std::fprintf(stderr, "didmarkd: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "didmarkd: error: %s\n", e.what());
    return 2;
  }
}
