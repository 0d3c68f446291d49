// didmarkd's service in-process on 127.0.0.1:<ephemeral>, called through a real channel:
// verdicts equal the library's, errors map to the documented gRPC codes.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "didmark/checkpoint.hpp"
#include "didmark/identity.hpp"
#include "didmark/royalty.hpp"
#include "service.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;
using grpc::StatusCode;

Identity identity(uint8_t fill) {
  std::array<uint8_t, 32> seed{};
  seed.fill(fill);
  return Identity::from_seed(seed);
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (fs::path(::testing::TempDir()) / "didmark-server-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = new fs::path(tmpl);
    const fs::path models = *dir_ / "models";
    fs::create_directories(models / ".cache");

    // A small synthetic checkpoint, and a copy marked for alice (strong enough to be
    // detected with a million weights).
    SyntheticCheckpointOptions so;
    so.params = 1'000'000;
    so.hidden = 256;
    write_synthetic_checkpoint(models / "plain.safetensors", so);
    WatermarkOptions wo;
    wo.strength = 0.02;
    wo.max_relative_change = 0.05;
    const Identity alice = identity(1), bob = identity(2);
    embed_checkpoint(models / "plain.safetensors", models / "marked.safetensors", CheckpointFormat::safetensors,
                     alice.watermark_key(), did_codeword(alice.did()), wo, {});
    // Inline bytes must fit gRPC's 4 MiB message limit: a smaller marked checkpoint.
    so.params = 400'000;
    fs::create_directories(*dir_ / "inline");
    write_synthetic_checkpoint(*dir_ / "inline" / "plain.safetensors", so);
    embed_checkpoint(*dir_ / "inline" / "plain.safetensors", *dir_ / "inline" / "marked.safetensors",
                     CheckpointFormat::safetensors, alice.watermark_key(), did_codeword(alice.did()), wo, {});
    // A sharded checkpoint (unmarked): a folder with an index and two shards.
    so.shards = 2;
    write_synthetic_checkpoint(*dir_ / "sharded", so);
    write_bytes(models / "broken.safetensors", "this is not a safetensors file");
    write_bytes(models / "notes.txt", "skipped: no known format");
    write_bytes(models / ".cache" / "hidden.safetensors", "skipped: hidden");

    std::ofstream reg(*dir_ / "registry.jsonl");
    reg << registry_line({alice.did(), alice.watermark_key()}) << "\n"
        << registry_line({bob.did(), bob.watermark_key()}) << "\n";
    reg.close();
    save_identity(identity(9), *dir_ / "operator.id.json");

    server::ServerOptions o;
    o.registry = *dir_ / "registry.jsonl";
    o.operator_identity = *dir_ / "operator.id.json";
    o.jobs = 2;
    o.device = "cpu";
    o.log_requests = false;
    service_ = new server::DidmarkService(o);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_);
    server_ = b.BuildAndStart().release();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    channel_ = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }

  static void TearDownTestSuite() {
    delete channel_;
    server_->Shutdown();
    delete server_;
    delete service_;
    fs::remove_all(*dir_);
    delete dir_;
  }

  static fs::path path(const std::string& name) { return *dir_ / "models" / name; }

  std::unique_ptr<v1::Didmark::Stub> stub() const { return v1::Didmark::NewStub(*channel_); }

  static std::unique_ptr<grpc::ClientContext> context() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  }

  grpc::Status verify(const v1::VerifyRequest& req, v1::VerifyResponse& resp) const {
    return stub()->Verify(context().get(), req, &resp);
  }

  static v1::VerifyRequest owner_request(const Identity& who) {
    v1::VerifyRequest req;
    req.mutable_owner()->set_did(who.did());
    req.mutable_owner()->set_key_hex(who.watermark_key().to_hex());
    return req;
  }

  // The library's own verdict, on a backend like the server's.
  static VerifyReport library_verify(const fs::path& p, const Identity& who) {
    const std::vector<Claim> claims{{who.watermark_key(), did_codeword(who.did())}};
    auto backend = make_backend(Device::cpu);
    WatermarkOptions o;
    o.scheme = Scheme::automatic;  // the server's default, as the CLI's
    return verify_checkpoint(p, CheckpointFormat::safetensors, claims, o, *backend).at(0);
  }

  static fs::path* dir_;
  static server::DidmarkService* service_;
  static grpc::Server* server_;
  static std::shared_ptr<grpc::Channel>* channel_;
};

fs::path* ServerTest::dir_ = nullptr;
server::DidmarkService* ServerTest::service_ = nullptr;
grpc::Server* ServerTest::server_ = nullptr;
std::shared_ptr<grpc::Channel>* ServerTest::channel_ = nullptr;

TEST_F(ServerTest, VerifyMarkedAndPlainAgreeWithTheLibrary) {
  const Identity alice = identity(1);
  for (const char* name : {"marked.safetensors", "plain.safetensors"}) {
    SCOPED_TRACE(name);
    v1::VerifyRequest req = owner_request(alice);
    req.set_path(path(name).string());
    v1::VerifyResponse resp;
    const grpc::Status st = verify(req, resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    const VerifyReport lib = library_verify(path(name), alice);
    ASSERT_EQ(resp.verdicts_size(), 1);
    const v1::Verdict& v = resp.verdicts(0);
    EXPECT_EQ(resp.format(), "safetensors");
    EXPECT_EQ(resp.path(), path(name).string());
    EXPECT_EQ(v.did(), alice.did());
    EXPECT_EQ(v.detected(), lib.detected);
    EXPECT_EQ(v.detected(), std::string(name) == "marked.safetensors");
    EXPECT_NEAR(v.z(), lib.z, 1e-9 * std::max(1.0, std::abs(lib.z)));
    EXPECT_EQ(v.bit_errors(), lib.bit_errors);
    EXPECT_EQ(v.bits(), lib.bits);
    EXPECT_EQ(v.elements(), lib.elements);
    EXPECT_EQ(v.tensors(), lib.tensors);
    EXPECT_EQ(resp.detected_size(), v.detected() ? 1 : 0);
  }
}

TEST_F(ServerTest, VerifyAgainstTheRegistry) {
  v1::VerifyRequest req;
  req.set_path(path("marked.safetensors").string());
  req.mutable_registry();
  v1::VerifyResponse resp;
  ASSERT_TRUE(verify(req, resp).ok());
  ASSERT_EQ(resp.verdicts_size(), 2);
  EXPECT_EQ(resp.verdicts(0).did(), identity(1).did());
  EXPECT_TRUE(resp.verdicts(0).detected());
  EXPECT_FALSE(resp.verdicts(1).detected());
  ASSERT_EQ(resp.detected_size(), 1);
  EXPECT_EQ(resp.detected(0), identity(1).did());

  req.mutable_registry()->set_did(identity(2).did());
  resp.Clear();
  ASSERT_TRUE(verify(req, resp).ok());
  ASSERT_EQ(resp.verdicts_size(), 1);
  EXPECT_FALSE(resp.verdicts(0).detected());

  req.mutable_registry()->set_did(identity(3).did());
  EXPECT_EQ(verify(req, resp).error_code(), StatusCode::NOT_FOUND);

  // A sharded checkpoint given as its folder.
  req.set_path((*dir_ / "sharded").string());
  req.mutable_registry()->clear_did();
  resp.Clear();
  const grpc::Status st = verify(req, resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.format(), "safetensors-sharded");
  ASSERT_EQ(resp.verdicts_size(), 2);
  EXPECT_EQ(resp.detected_size(), 0);
  EXPECT_GT(resp.verdicts(0).tensors(), 0);
}

TEST_F(ServerTest, VerifyInlineBytes) {
  const Identity alice = identity(1);
  v1::VerifyRequest req = owner_request(alice);
  const fs::path small = *dir_ / "inline" / "marked.safetensors";
  req.set_safetensors(read_bytes(small));
  v1::VerifyResponse resp;
  const grpc::Status st = verify(req, resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.verdicts_size(), 1);
  EXPECT_TRUE(resp.verdicts(0).detected());
  EXPECT_NEAR(resp.verdicts(0).z(), library_verify(small, alice).z, 1e-6);
  EXPECT_EQ(resp.path(), "<inline>");

  // Malformed bytes came from the request: INVALID_ARGUMENT, named as the caller sent them.
  req.set_safetensors("garbage");
  const grpc::Status bad = verify(req, resp);
  EXPECT_EQ(bad.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("<inline safetensors>"), std::string::npos) << bad.error_message();
  EXPECT_EQ(bad.error_message().find("didmarkd-"), std::string::npos) << bad.error_message();
}

TEST_F(ServerTest, ErrorsMapToStatusCodes) {
  const Identity alice = identity(1);
  v1::VerifyResponse resp;

  v1::VerifyRequest missing = owner_request(alice);
  missing.set_path(path("nope.safetensors").string());
  EXPECT_EQ(verify(missing, resp).error_code(), StatusCode::NOT_FOUND);

  v1::VerifyRequest bad_key = owner_request(alice);
  bad_key.set_path(path("marked.safetensors").string());
  bad_key.mutable_owner()->set_key_hex(std::string(63, 'a') + "g");
  const grpc::Status st = verify(bad_key, resp);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().find(std::string(63, 'a')), std::string::npos) << "the key must not be echoed";

  v1::VerifyRequest corrupt = owner_request(alice);
  corrupt.set_path(path("broken.safetensors").string());
  EXPECT_EQ(verify(corrupt, resp).error_code(), StatusCode::DATA_LOSS);

  v1::VerifyRequest no_owner;
  no_owner.set_path(path("marked.safetensors").string());
  EXPECT_EQ(verify(no_owner, resp).error_code(), StatusCode::INVALID_ARGUMENT);

  v1::VerifyRequest bad_did = owner_request(alice);
  bad_did.set_path(path("marked.safetensors").string());
  bad_did.mutable_owner()->set_did("not a did");
  EXPECT_EQ(verify(bad_did, resp).error_code(), StatusCode::INVALID_ARGUMENT);

  v1::VerifyRequest unknown_format = owner_request(alice);
  unknown_format.set_path(path("notes.txt").string());
  EXPECT_EQ(verify(unknown_format, resp).error_code(), StatusCode::UNIMPLEMENTED);
}

TEST_F(ServerTest, ScanStreamsOneResultPerFile) {
  v1::ScanRequest req;
  req.add_paths((*dir_ / "models").string());
  req.add_paths(path("missing.safetensors").string());
  req.add_paths((*dir_ / "sharded").string());
  auto ctx = context();
  auto reader = stub()->Scan(ctx.get(), req);
  std::map<std::string, v1::ScanResult> by_name;
  std::set<uint32_t> indices;
  v1::ScanResult r;
  while (reader->Read(&r)) {
    by_name[fs::path(r.path()).filename().string()] = r;
    indices.insert(r.index());
    EXPECT_EQ(r.total(), 5u);
  }
  const grpc::Status st = reader->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  // broken, marked, plain from the folder (notes.txt and .cache/ skipped), the missing path,
  // and the sharded folder's index (its shards scanned under it, not on their own).
  ASSERT_EQ(by_name.size(), 5u) << [&] {
    std::string names;
    for (const auto& [n, _] : by_name) names += n + " ";
    return names;
  }();
  EXPECT_EQ(indices, (std::set<uint32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(by_name["model.safetensors.index.json"].format(), "safetensors-sharded");
  EXPECT_FALSE(by_name["model.safetensors.index.json"].has_error());
  EXPECT_EQ(by_name["broken.safetensors"].error().code(), "corrupt_input");
  EXPECT_FALSE(by_name["broken.safetensors"].error().message().empty());
  EXPECT_EQ(by_name["missing.safetensors"].error().code(), "not_found");
  const v1::ScanResult& marked = by_name["marked.safetensors"];
  EXPECT_FALSE(marked.has_error());
  ASSERT_EQ(marked.verdicts_size(), 2);
  ASSERT_EQ(marked.detected_size(), 1);
  EXPECT_EQ(marked.detected(0), identity(1).did());
  EXPECT_EQ(marked.format(), "safetensors");
  EXPECT_EQ(by_name["plain.safetensors"].detected_size(), 0);

  v1::ScanRequest empty;
  auto ctx2 = context();
  auto reader2 = stub()->Scan(ctx2.get(), empty);
  while (reader2->Read(&r)) {
  }
  EXPECT_EQ(reader2->Finish().error_code(), StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, SplitIsExactAndEqualsTheLibrary) {
  v1::SplitRequest req;
  req.set_revenue("1000000000000000000001");  // above 2^64
  (*req.mutable_weights())["did:web:a.example"] = 70;
  (*req.mutable_weights())["did:web:b.example"] = 30;
  (*req.mutable_weights())["did:web:c.example"] = 0.1;
  req.set_timestamp("2026-01-01T00:00:00Z");
  v1::SplitResponse resp;
  grpc::Status st = stub()->Split(context().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();

  const std::vector<Payee> payees{{"did:web:a.example", Weight::from_double(70)},
                                  {"did:web:b.example", Weight::from_double(30)},
                                  {"did:web:c.example", Weight::from_double(0.1)}};
  const Payouts lib = split(parse_amount(req.revenue()), payees);
  ASSERT_EQ(resp.payouts_size(), 3);
  Amount sum = 0;
  for (const Payout& p : lib) {
    ASSERT_EQ(resp.payouts().count(std::string(p.did)), 1u);
    EXPECT_EQ(resp.payouts().at(std::string(p.did)), amount_to_string(p.amount));
    sum += parse_amount(resp.payouts().at(std::string(p.did)));
  }
  EXPECT_EQ(amount_to_string(sum), req.revenue());
  EXPECT_EQ(resp.revenue(), req.revenue());

  // Signed by the operator; the statement checks.
  EXPECT_EQ(resp.issuer(), identity(9).did());
  const StatementCheck check = verify_statement(resp.statement_json());
  EXPECT_TRUE(check.valid) << check.reason;

  // A cascade policy inline: 10% platform fee, the rest by the request's weights.
  const std::string platform = "did:web:platform.example";
  req.set_policy_json(R"({"levels": [{"name": "platform", "keep_bps": 1000, "weights": {")" + platform +
                      R"(": 1}}, {"name": "data", "weights": "input"}]})");
  resp.Clear();
  st = stub()->Split(context().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.payouts().at(platform), "100000000000000000000");
  sum = 0;
  for (const auto& [did, amount] : resp.payouts()) sum += parse_amount(amount);
  EXPECT_EQ(amount_to_string(sum), req.revenue());

  // Inline policies may not make the server read its files.
  req.set_policy_json(R"({"levels": [{"weights_file": "/etc/passwd"}]})");
  EXPECT_EQ(stub()->Split(context().get(), req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  req.set_policy_json("{not json");
  st = stub()->Split(context().get(), req, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("policy_json"), std::string::npos) << st.error_message();

  // Exact decimal weights: 0.1 : 0.2 : 0.3 is exactly 1 : 2 : 3.
  v1::SplitRequest exact;
  exact.set_revenue("6000000000000000000000000000000");
  (*exact.mutable_exact_weights())["did:web:a.example"] = "0.1";
  (*exact.mutable_exact_weights())["did:web:b.example"] = "0.2";
  (*exact.mutable_exact_weights())["did:web:c.example"] = "0.3";
  st = stub()->Split(context().get(), exact, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.payouts().at("did:web:a.example"), "1000000000000000000000000000000");
  EXPECT_EQ(resp.payouts().at("did:web:c.example"), "3000000000000000000000000000000");
  (*exact.mutable_weights())["did:web:a.example"] = 1;
  EXPECT_EQ(stub()->Split(context().get(), exact, &resp).error_code(), StatusCode::INVALID_ARGUMENT);

  req.clear_policy_json();
  req.set_revenue("12.5");
  EXPECT_EQ(stub()->Split(context().get(), req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, Health) {
  v1::HealthResponse resp;
  ASSERT_TRUE(stub()->Health(context().get(), v1::HealthRequest{}, &resp).ok());
  EXPECT_EQ(resp.status(), "SERVING");
  EXPECT_EQ(resp.registry_owners(), 2u);
  EXPECT_EQ(resp.operator_did(), identity(9).did());
  EXPECT_EQ(resp.jobs(), 2u);
  EXPECT_NE(resp.backend().find("cpu"), std::string::npos);
}

}  // namespace
}  // namespace didmark
