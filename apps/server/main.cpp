// didmarkd: the didmark gRPC server (proto/didmark.proto, docs/server.md).
#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "auth.hpp"
#include "didmark/certificate.hpp"
#include "didmark/error.hpp"
#include "listen.hpp"
#include "service.hpp"

namespace {

using didmark::Errc;
namespace srv = didmark::server;

struct Args {
  std::string listen = "127.0.0.1:50551";
  std::string token_file;
  std::string tls_cert, tls_key, tls_client_ca;
  bool allow_insecure = false;
  std::vector<std::string> roots;
  std::string spool;
  std::string registry;
  std::string operator_id;
  std::string certificate_dir;
  int jobs = 2;
  std::string device;
  int max_queue = 64;
  double max_call_seconds = 900;
  int max_message_bytes = 4 << 20;
  uint64_t max_upload_bytes = 1ull << 30;
  double drain_seconds = 30;
  bool no_reflection = false;
  bool quiet = false;
};

// Where the server may listen, and how, decided before anything is bound.
void check_exposure(const srv::ListenAddress& at, const Args& a) {
  const bool tls = !a.tls_cert.empty();
  DIDMARK_EXPECTS(a.tls_cert.empty() == a.tls_key.empty(), invalid_argument,
                  "--tls-cert and --tls-key go together (the certificate chain and its private key)");
  DIDMARK_EXPECTS(a.tls_client_ca.empty() || tls, invalid_argument,
                  "--tls-client-ca checks client certificates, which needs TLS: give --tls-cert and --tls-key too");
  if (at.loopback) return;
  DIDMARK_EXPECTS(!a.token_file.empty(), invalid_argument, "--listen ", at.text(),
                  " reaches beyond this machine, and without --token-file anyone who reaches the port could use "
                  "the server: give --token-file, or listen on 127.0.0.1");
  DIDMARK_EXPECTS(tls || a.allow_insecure, invalid_argument, "--listen ", at.text(),
                  " reaches beyond this machine in plaintext, where tokens and files travel in the clear: give "
                  "--tls-cert and --tls-key, or --allow-insecure when a TLS-terminating proxy is in front");
}

std::shared_ptr<grpc::ServerCredentials> credentials(const Args& a) {
  if (a.tls_cert.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(a.tls_client_ca.empty()
                                          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  pair.private_key = srv::read_secret_file(a.tls_key, "TLS key", 1 << 20);
  pair.cert_chain = srv::read_regular_file(a.tls_cert, "TLS certificate", 1 << 20);
  o.pem_key_cert_pairs.push_back(std::move(pair));
  if (!a.tls_client_ca.empty()) o.pem_root_certs = srv::read_regular_file(a.tls_client_ca, "TLS client CA", 1 << 20);
  return grpc::SslServerCredentials(o);
}

int run(const Args& a) {
  const srv::ListenAddress at = srv::parse_listen_address(a.listen);
  check_exposure(at, a);

  srv::ServerOptions o;
  o.registry = a.registry;
  o.operator_identity = a.operator_id;
  o.certificate_dir = a.certificate_dir;
  o.jobs = a.jobs;
  o.device = a.device;
  o.log_requests = !a.quiet;
  o.token_file = a.token_file;
  o.roots = a.roots;
  o.spool = a.spool;
  o.max_upload_bytes = a.max_upload_bytes;
  o.max_queue = a.max_queue;
  o.max_call_seconds = a.max_call_seconds;
  o.max_message_bytes = a.max_message_bytes;
  o.tls = !a.tls_cert.empty();
  o.client_certificates = !a.tls_client_ca.empty();

  // SIGINT/SIGTERM/SIGHUP are taken by a thread with sigwait, not a handler: Server::Shutdown
  // is not async-signal-safe. Blocked before any thread starts (the CPU backend's pool,
  // gRPC's), so that every thread inherits the mask and only sigwait receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  srv::DidmarkService service(o);
  const auto creds = credentials(a);

  grpc::EnableDefaultHealthCheckService(true);  // grpc.health.v1.Health for load balancers
  if (!a.no_reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, so a second didmarkd on a busy port would start and
  // silently share its traffic; refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(a.max_message_bytes);
  // Threads beyond the queue are refused by gRPC itself (RESOURCE_EXHAUSTED), a backstop for
  // the service's own --max-queue check.
  grpc::ResourceQuota quota("didmarkd");
  quota.SetMaxThreads(a.max_queue + 16);
  builder.SetResourceQuota(quota);
  int port = 0;
  builder.AddListeningPort(at.text(), creds, &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "didmarkd: cannot listen on '%s' (address in use, or no such local address?)\n",
                 at.text().c_str());
    return 2;
  }
  nlohmann::json start = {{"time", didmark::utc_now_ms()},
                          {"event", "listening"},
                          {"address", at.host + ":" + std::to_string(port)},
                          {"port", port},
                          {"tls", !a.tls_cert.empty()},
                          {"client_certificates", !a.tls_client_ca.empty()},
                          {"authentication", a.token_file.empty() ? "none (loopback only)" : "bearer tokens"},
                          {"token_clients", service.token_clients()},
                          {"roots", nlohmann::json::array()},
                          {"backend", service.backend_description()},
                          {"registry_owners", service.registry_size()},
                          {"jobs", a.jobs},
                          {"max_queue", a.max_queue},
                          {"reflection", !a.no_reflection}};
  for (const auto& r : service.roots().list()) start["roots"].push_back(r.string());
  service.log_event(start);

  std::thread waiter([&] {
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        service.reload();
        continue;
      }
      service.log_event({{"time", didmark::utc_now_ms()},
                         {"event", "draining"},
                         {"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"},
                         {"in_flight", service.in_flight()},
                         {"drain_seconds", a.drain_seconds}});
      // New calls are answered UNAVAILABLE from here on (health NOT_SERVING) while the calls
      // in flight run to completion, and for a second at least (a lame duck: clients learn to
      // go elsewhere); only then is the transport shut down, so that no call the server took
      // is cut off. Past --drain-seconds the rest are cancelled.
      const auto now = std::chrono::system_clock::now();
      const auto until = now + std::chrono::milliseconds(static_cast<long long>(a.drain_seconds * 1000));
      const auto lame_duck = std::min(until, now + std::chrono::seconds(1));
      service.drain();
      server->GetHealthCheckService()->SetServingStatus(false);
      for (auto t = now; (service.in_flight() > 0 || t < lame_duck) && t < until; t = std::chrono::system_clock::now())
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      server->Shutdown(until);
      return;
    }
  });
  server->Wait();
  waiter.join();
  service.log_event({{"time", didmark::utc_now_ms()}, {"event", "stopped"}, {"in_flight", service.in_flight()}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app(
      "didmarkd: a gRPC server for marketplace backends that check provenance at scale: verify owners' "
      "watermarks in checkpoints and datasets on the server, scan folders against a registry, mark files, "
      "register owners' certificates, value training data, split royalties exactly and sign the statement.",
      "didmarkd");
  app.set_config("--config", "", "Read options from a TOML file (key = value, the long option names without "
                                 "dashes in front: listen = \"0.0.0.0:50551\", root = [\"/data\"]); flags on the "
                                 "command line win")
      ->check(CLI::ExistingFile);
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error, not ignored

  auto* net = "Network and access";
  app.add_option("--listen", a.listen,
                 "HOST:PORT to serve on (port 0: any free port). Anything but loopback needs --token-file, and TLS "
                 "or --allow-insecure")
      ->capture_default_str()
      ->group(net);
  app.add_option("--token-file", a.token_file,
                 "Bearer tokens, JSON Lines of {\"name\", \"token\", \"scopes\": [verify, embed, register, split, "
                 "attribute, admin]}, mode 0600; reread on SIGHUP. Without it: no authentication, loopback only")
      ->group(net);
  app.add_option("--tls-cert", a.tls_cert, "TLS certificate chain (PEM)")->group(net);
  app.add_option("--tls-key", a.tls_key, "TLS private key (PEM, mode 0600)")->group(net);
  app.add_option("--tls-client-ca", a.tls_client_ca,
                 "CA bundle (PEM): clients must present a certificate it signed (mutual TLS)")
      ->group(net);
  app.add_flag("--allow-insecure", a.allow_insecure,
               "Allow plaintext on a non-loopback address (only behind a proxy that terminates TLS)")
      ->group(net);
  app.add_flag("--no-reflection", a.no_reflection, "Do not serve gRPC server reflection")->group(net);

  auto* files = "Files";
  app.add_option("--root", a.roots,
                 "A folder requests may name paths in (repeatable); paths are resolved, symlinks included, and "
                 "refused outside every root. Without it requests may not name paths")
      ->group(files);
  app.add_option("--spool", a.spool, "Folder under a --root where Upload writes streamed files")->group(files);
  app.add_option("--registry", a.registry,
                 "Registry of owners (JSON Lines of {did, key}): Scan and Verify with registry {} look for these, "
                 "Register adds to it (created when missing). Reread on SIGHUP")
      ->group(files);
  app.add_option("--operator", a.operator_id,
                 "Operator identity file (did:key, mode 0600) that signs Split statements and countersigns "
                 "Register certificates")
      ->group(files);
  app.add_option("--certificate-dir", a.certificate_dir,
                 "Folder where Register keeps the countersigned certificates (<uuid>.json)")
      ->group(files);

  auto* ops = "Operation";
  app.add_option("-j,--jobs", a.jobs, "Files verified at once, over all calls")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str()
      ->group(ops);
  app.add_option("--device", a.device, "Backend: cpu or cuda (default: the GPU when one is present)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->group(ops);
  app.add_option("--max-queue", a.max_queue,
                 "Calls admitted at once (running or waiting for a job); more get RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str()
      ->group(ops);
  app.add_option("--max-call-seconds", a.max_call_seconds,
                 "Longest a call may run, whatever deadline its client set (none set: this one)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str()
      ->group(ops);
  app.add_option("--max-message-bytes", a.max_message_bytes,
                 "Largest request message; larger ones get RESOURCE_EXHAUSTED (stream big files with Upload)")
      ->check(CLI::Range(1024, 1 << 30))
      ->capture_default_str()
      ->group(ops);
  app.add_option("--max-upload-bytes", a.max_upload_bytes, "Largest file one Upload may write")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 50))
      ->capture_default_str()
      ->group(ops);
  app.add_option("--drain-seconds", a.drain_seconds,
                 "On SIGTERM/SIGINT: how long calls in flight may still run before they are cancelled")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->group(ops);
  app.add_flag("-q,--quiet", a.quiet, "No per-call log lines")->group(ops);
  app.footer(
      "\nService didmark.v1.Didmark (proto/didmark.proto):\n"
      "  Verify   one file under a root (path) or inline safetensors bytes, against one owner {did, key_hex}\n"
      "           or the registry; one verdict per DID (the field names of 'didmark verify --json').\n"
      "  Scan     files and folders against the registry, one ScanResult streamed per file.\n"
      "  Embed    mark a file for an owner into a new file (both under roots); all or nothing.\n"
      "  Register countersign an owner's mark certificate and add the owner to the registry.\n"
      "  AttributeKnnShapley  exact KNN-Shapley values of training rows (.npy paths).\n"
      "  Split    exact royalty payouts, signed with --operator.\n"
      "  Upload   stream a large file into --spool; Info, Health: what the server is.\n"
      "grpc.health.v1.Health and server reflection are served too (without a token).\n\n"
      "Logs one JSON line per call on stderr (time, request_id, peer, token name, method, status, ms; never\n"
      "a token or key). SIGHUP: reread --token-file and --registry. SIGTERM/SIGINT: refuse new calls, let\n"
      "calls in flight finish (--drain-seconds), exit 0.\n\n"
      "Example:\n"
      "  didmark id new -o alice.id.json && didmark id export-key alice.id.json >> registry.jsonl\n"
      "  didmarkd --root /srv/models --registry registry.jsonl --operator operator.id.json --jobs 4\n"
      "  didmarkd --config /etc/didmarkd.toml\n"
      "More: docs/server.md\n");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; a bad flag or config file is an error like any other (exit 2).
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "didmarkd: error: %s\n", srv::printable(e.what()).c_str());
    return 2;
  }
}
