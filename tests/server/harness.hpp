#pragma once
// didmarkd's service in-process on 127.0.0.1:<ephemeral>, called through a real channel.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "didmark/identity.hpp"
#include "service.hpp"

namespace didmark::test_server {

namespace fs = std::filesystem;

inline Identity identity(uint8_t fill) {
  std::array<uint8_t, 32> seed{};
  seed.fill(fill);
  return Identity::from_seed(seed);
}

inline std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

/// A fresh folder under the test's temp dir, removed with the object.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::path(::testing::TempDir()) / "didmarkd-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = fs::canonical(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

/// A service serving on an ephemeral loopback port; its log goes to a temporary file.
struct Running {
  std::unique_ptr<server::DidmarkService> service;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::FILE* log = nullptr;

  explicit Running(server::ServerOptions o, int max_message_bytes = 4 << 20) {
    log = std::tmpfile();
    o.log = log;
    o.max_message_bytes = max_message_bytes;
    if (o.device.empty()) o.device = "cpu";
    service = std::make_unique<server::DidmarkService>(o);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.SetMaxReceiveMessageSize(max_message_bytes);
    b.RegisterService(service.get());
    server = b.BuildAndStart();
    if (!server || port == 0) throw std::runtime_error("cannot start the test server");
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args);
  }
  ~Running() {
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server.reset();
    service.reset();
    if (log) std::fclose(log);
  }
  std::unique_ptr<v1::Didmark::Stub> stub() const { return v1::Didmark::NewStub(channel); }

  /// Everything logged so far.
  std::string log_text() const {
    std::fflush(log);
    std::rewind(log);
    std::string s;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, log)) > 0;) s.append(buf, n);
    std::fseek(log, 0, SEEK_END);
    return s;
  }
};

/// A client context with a deadline and, when given, a bearer token.
inline std::unique_ptr<grpc::ClientContext> context(const std::string& token = {}, double seconds = 30) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() +
                  std::chrono::milliseconds(static_cast<long long>(seconds * 1000)));
  if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
  return c;
}

}  // namespace didmark::test_server
