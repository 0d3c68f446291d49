// didmarkd's service in-process on 127.0.0.1:<ephemeral>, called through a real channel:
// verdicts equal the library's, errors map to the documented gRPC codes, the marketplace API
// (Embed, Register, Upload, AttributeKnnShapley, Info) round-trips through real files.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "didmark/attribution.hpp"
#include "didmark/certificate.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/identity.hpp"
#include "didmark/io.hpp"
#include "didmark/royalty.hpp"
#include "harness.hpp"
#include "service.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;
using grpc::StatusCode;
using namespace test_server;

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    dir_ = &tmp_->path;
    const fs::path models = *dir_ / "models";
    fs::create_directories(models / ".cache");
    fs::create_directories(*dir_ / "spool");

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
    o.roots = {dir_->string()};
    o.spool = *dir_ / "spool";
    o.max_upload_bytes = 8 << 20;
    running_ = new Running(o);
  }

  static void TearDownTestSuite() {
    delete running_;
    delete tmp_;
  }

  static fs::path path(const std::string& name) { return *dir_ / "models" / name; }

  std::unique_ptr<v1::Didmark::Stub> stub() const { return running_->stub(); }

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

  static TempDir* tmp_;
  static const fs::path* dir_;
  static Running* running_;
};

TempDir* ServerTest::tmp_ = nullptr;
const fs::path* ServerTest::dir_ = nullptr;
Running* ServerTest::running_ = nullptr;

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


TEST_F(ServerTest, EmbedWritesAMarkedCopyThatVerifies) {
  const Identity carol = identity(3);
  v1::EmbedRequest req;
  req.set_input(path("plain.safetensors").string());
  req.set_output("models/carol.safetensors");  // relative: from the first root
  req.mutable_owner()->set_did(carol.did());
  req.mutable_owner()->set_key_hex(carol.watermark_key().to_hex());
  req.mutable_options()->set_strength(0.02);
  req.mutable_options()->set_max_change(0.05);
  req.set_sketch_output("models/carol.sketch");
  v1::EmbedResponse resp;
  grpc::Status st = stub()->Embed(context().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const fs::path out = path("carol.safetensors");
  ASSERT_TRUE(fs::is_regular_file(out));
  EXPECT_TRUE(fs::is_regular_file(path("carol.sketch")));
  ASSERT_EQ(resp.outputs_size(), 1);
  EXPECT_EQ(resp.outputs(0), out.string());
  EXPECT_EQ(resp.format(), "safetensors");
  EXPECT_EQ(resp.output(), "models/carol.safetensors");
  const nlohmann::json report = nlohmann::json::parse(resp.report_json());
  EXPECT_EQ(report.value("output", std::string()), out.string()) << resp.report_json();
  EXPECT_EQ(report.dump().find(".didmarkd-"), std::string::npos) << "no temporary name reaches the client";
  // No temporary is left beside it, and the key never reached the log.
  for (const auto& e : fs::directory_iterator(*dir_ / "models"))
    EXPECT_EQ(e.path().filename().string().rfind(".didmarkd-", 0), std::string::npos) << e.path();
  EXPECT_EQ(running_->log_text().find(carol.watermark_key().to_hex()), std::string::npos);

  // The library finds the owner's mark in what the server wrote.
  const VerifyReport lib = library_verify(out, carol);
  EXPECT_TRUE(lib.detected) << lib.z;

  // Never over an existing output unless asked, never over the input.
  st = stub()->Embed(context().get(), req, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::ALREADY_EXISTS) << st.error_message();
  req.set_output(req.input());
  req.clear_sketch_output();
  req.set_overwrite(true);
  EXPECT_EQ(stub()->Embed(context().get(), req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  // Only a regular file is replaced.
  req.set_output((*dir_ / "models" / ".cache").string());
  st = stub()->Embed(context().get(), req, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::FAILED_PRECONDITION) << st.error_message();
  // A client that gives up before the work is done leaves nothing behind.
  req.set_output(path("late.safetensors").string());
  req.set_overwrite(false);
  st = stub()->Embed(context("", 0.001).get(), req, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::DEADLINE_EXCEEDED);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the server's side of it ends
  EXPECT_FALSE(fs::exists(path("late.safetensors")));
  for (const auto& e : fs::directory_iterator(*dir_ / "models"))
    EXPECT_EQ(e.path().filename().string().rfind(".didmarkd-", 0), std::string::npos) << e.path();
}

TEST_F(ServerTest, RegisterCountersignsAndPersistsTheOwner) {
  // A server of its own: Register changes its registry.
  TempDir d;
  fs::copy_file(path("marked.safetensors"), d.path / "alice.safetensors");
  fs::copy_file(path("plain.safetensors"), d.path / "plain.safetensors");
  save_identity(identity(9), d.path / "operator.id.json");
  fs::create_directories(d.path / "certs");
  server::ServerOptions o;
  o.registry = d.path / "registry.jsonl";  // does not exist yet: Register creates it
  o.operator_identity = d.path / "operator.id.json";
  o.certificate_dir = d.path / "certs";
  o.roots = {d.path.string()};
  auto run = std::make_unique<Running>(o);

  const Identity alice = identity(1);
  MarkCertificate claim;
  claim.scheme = Scheme::spread_spectrum;
  claim.strength = 0.02;
  claim.key_digest = watermark_key_digest(alice.watermark_key());
  claim.resources = model_resources(d.path / "alice.safetensors");
  claim.marked_at = "2026-01-02T03:04:05Z";
  const std::string cert = make_mark_certificate(claim, alice);

  v1::RegisterRequest req;
  req.set_certificate_json(cert);
  req.set_key_hex(alice.watermark_key().to_hex());
  req.set_model_path("alice.safetensors");
  v1::RegisterResponse resp;
  grpc::Status st = run->stub()->Register(context().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.did(), alice.did());
  EXPECT_EQ(resp.authority(), identity(9).did());
  EXPECT_FALSE(resp.already_registered());
  EXPECT_EQ(resp.registry_owners(), 1u);
  EXPECT_TRUE(resp.model_verdict().detected());
  const CertificateCheck check = verify_certificate(resp.certificate_json());
  ASSERT_TRUE(check.valid) << check.reason;
  EXPECT_TRUE(check.countersigned);
  EXPECT_EQ(check.authority, identity(9).did());
  EXPECT_EQ(check.time, resp.time());
  // Persisted: the registry file holds alice with her key, the certificate is kept.
  const auto entries = load_registry(d.path / "registry.jsonl");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].did, alice.did());
  EXPECT_TRUE(entries[0].key == alice.watermark_key());
  int kept = 0;
  for (const auto& e : fs::directory_iterator(d.path / "certs")) {
    ++kept;
    EXPECT_EQ(read_bytes(e.path()), resp.certificate_json());
  }
  EXPECT_EQ(kept, 1);

  // Registry Verify now finds her; the registry survives a restart.
  v1::VerifyRequest vreq;
  vreq.set_path("alice.safetensors");
  vreq.mutable_registry();
  v1::VerifyResponse vresp;
  ASSERT_TRUE(run->stub()->Verify(context().get(), vreq, &vresp).ok());
  ASSERT_EQ(vresp.detected_size(), 1);
  run.reset();
  run = std::make_unique<Running>(o);
  vresp.Clear();
  ASSERT_TRUE(run->stub()->Verify(context().get(), vreq, &vresp).ok());
  EXPECT_EQ(vresp.detected_size(), 1);

  // Again with the owner's certificate: already registered, not added twice.
  st = run->stub()->Register(context().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(resp.already_registered());
  EXPECT_EQ(load_registry(d.path / "registry.jsonl").size(), 1u);

  // Refused: a wrong key, a tampered certificate, a model that is not the certified one, a
  // model that does not carry the mark, a non-admin time (no tokens here: allowed).
  v1::RegisterRequest bad = req;
  bad.set_key_hex(identity(2).watermark_key().to_hex());
  EXPECT_EQ(run->stub()->Register(context().get(), bad, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  bad = req;
  std::string tampered = cert;
  tampered.replace(tampered.find("2026-01-02"), 10, "2025-01-02");
  bad.set_certificate_json(tampered);
  st = run->stub()->Register(context().get(), bad, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("does not verify"), std::string::npos) << st.error_message();
  bad = req;
  bad.set_model_path("plain.safetensors");
  st = run->stub()->Register(context().get(), bad, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::FAILED_PRECONDITION) << st.error_message();
  MarkCertificate plain_claim = claim;
  plain_claim.resources = model_resources(d.path / "plain.safetensors");
  bad.set_certificate_json(make_mark_certificate(plain_claim, alice));
  st = run->stub()->Register(context().get(), bad, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("not detected"), std::string::npos) << st.error_message();
  // A second owner under the same DID with another key is refused.
  EXPECT_EQ(load_registry(d.path / "registry.jsonl").size(), 1u);
}

TEST_F(ServerTest, UploadStreamsIntoTheSpool) {
  const std::string bytes = read_bytes(*dir_ / "inline" / "marked.safetensors");
  auto ctx = context();
  v1::UploadResponse resp;
  auto writer = stub()->Upload(ctx.get(), &resp);
  for (std::size_t at = 0, i = 0; at < bytes.size(); at += 100'000, ++i) {
    v1::UploadChunk c;
    if (i == 0) {
      c.set_name("../../etc/evil name.safetensors");
      c.set_size(bytes.size());
    }
    c.set_data(bytes.substr(at, 100'000));
    ASSERT_TRUE(writer->Write(c));
  }
  writer->WritesDone();
  const grpc::Status st = writer->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  const fs::path up(resp.path());
  EXPECT_EQ(up.parent_path(), *dir_ / "spool");
  EXPECT_EQ(up.extension(), ".safetensors");
  EXPECT_EQ(up.filename().string().find('/'), std::string::npos);
  EXPECT_EQ(up.filename().string().find(' '), std::string::npos);
  EXPECT_EQ(read_bytes(up), bytes);
  EXPECT_EQ(resp.bytes(), bytes.size());
  EXPECT_EQ(resp.sha256().size(), 64u);

  // The uploaded file verifies by its path.
  v1::VerifyRequest vreq = owner_request(identity(1));
  vreq.set_path(resp.path());
  v1::VerifyResponse vresp;
  ASSERT_TRUE(verify(vreq, vresp).ok());
  EXPECT_EQ(vresp.detected_size(), 1);

  // Over the limit (8 MiB here), a wrong checksum, a cancelled stream: refused, nothing kept.
  const auto before = std::distance(fs::directory_iterator(*dir_ / "spool"), fs::directory_iterator());
  {
    auto c2 = context();
    auto w = stub()->Upload(c2.get(), &resp);
    v1::UploadChunk c;
    c.set_name("big.bin");
    c.set_data(std::string(3 << 20, 'x'));
    for (int i = 0; i < 4 && w->Write(c); ++i) c.clear_name();
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), StatusCode::RESOURCE_EXHAUSTED);
  }
  {
    auto c2 = context();
    auto w = stub()->Upload(c2.get(), &resp);
    v1::UploadChunk c;
    c.set_name("sum.bin");
    c.set_sha256(std::string(64, '0'));
    c.set_data("hello");
    ASSERT_TRUE(w->Write(c));
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), StatusCode::DATA_LOSS);
  }
  {
    auto c2 = context();
    auto w = stub()->Upload(c2.get(), &resp);
    v1::UploadChunk c;
    c.set_name("gone.bin");
    c.set_data("partial");
    ASSERT_TRUE(w->Write(c));
    c2->TryCancel();
    EXPECT_EQ(w->Finish().error_code(), StatusCode::CANCELLED);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(std::distance(fs::directory_iterator(*dir_ / "spool"), fs::directory_iterator()), before);
}

TEST_F(ServerTest, KnnShapleyEqualsTheLibrary) {
  // 6 training rows in 2-D from 2 contributors, 2 queries.
  const fs::path d = *dir_ / "knn";
  fs::create_directories(d);
  std::vector<float> x{0, 0, 1, 0, 0, 1, 5, 5, 6, 5, 5, 6}, q{0.5f, 0.5f, 5.5f, 5.5f};
  std::vector<int64_t> y{0, 0, 1, 1, 1, 0}, yq{0, 1}, who{7, 7, 7, 8, 8, 8};
  write_npy(d / "x.npy", TensorView::contiguous(x.data(), DType::f32, {6, 2}));
  write_npy(d / "q.npy", TensorView::contiguous(q.data(), DType::f32, {2, 2}));
  write_npy(d / "y.npy", TensorView::contiguous(y.data(), DType::i64, {6}));
  write_npy(d / "yq.npy", TensorView::contiguous(yq.data(), DType::i64, {2}));
  write_npy(d / "who.npy", TensorView::contiguous(who.data(), DType::i64, {6}));
  v1::KnnShapleyRequest req;
  req.set_train((d / "x.npy").string());
  req.set_train_labels((d / "y.npy").string());
  req.set_test((d / "q.npy").string());
  req.set_test_labels((d / "yq.npy").string());
  req.set_contributors((d / "who.npy").string());
  req.set_k(3);
  req.set_return_values(true);
  req.set_values_output((d / "values.npy").string());
  v1::KnnShapleyResponse resp;
  const grpc::Status st = stub()->AttributeKnnShapley(context().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();

  KnnShapleyOptions o;
  o.k = 3;
  const TensorView cv = TensorView::contiguous(who.data(), DType::i64, {6});
  const KnnShapleyReport lib =
      knn_shapley(TensorView::contiguous(x.data(), DType::f32, {6, 2}), TensorView::contiguous(y.data(), DType::i64, {6}),
                  TensorView::contiguous(q.data(), DType::f32, {2, 2}), TensorView::contiguous(yq.data(), DType::i64, {2}),
                  o, cv, *make_backend(Device::cpu));
  ASSERT_EQ(resp.values_size(), 6);
  for (int i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(resp.values(i), lib.values[i]);
  ASSERT_EQ(resp.contributors_size(), 2);
  EXPECT_EQ(resp.contributors(0).id(), 7);
  EXPECT_DOUBLE_EQ(resp.contributors(0).total(), lib.contributors.totals[0]);
  EXPECT_EQ(resp.contributors(1).rows(), 3);
  EXPECT_EQ(resp.train(), 6);
  EXPECT_EQ(resp.k(), 3);
  const NpyArray written = read_npy(d / "values.npy");
  ASSERT_EQ(written.shape, std::vector<int64_t>{6});
  EXPECT_DOUBLE_EQ(static_cast<const double*>(written.view().data)[2], lib.values[2]);
  // An existing output is not replaced unless asked.
  EXPECT_EQ(stub()->AttributeKnnShapley(context().get(), req, &resp).error_code(), StatusCode::ALREADY_EXISTS);
}

TEST_F(ServerTest, InfoSaysWhatTheServerIs) {
  v1::InfoResponse resp;
  ASSERT_TRUE(stub()->Info(context().get(), v1::InfoRequest{}, &resp).ok());
  EXPECT_EQ(resp.api(), "didmark.v1");
  EXPECT_GE(resp.api_revision(), 2u);
  EXPECT_EQ(resp.device(), "cpu");
  EXPECT_EQ(resp.build().count("cuda"), 1u);
  EXPECT_EQ(resp.build().count("grpc"), 1u);
  EXPECT_TRUE(resp.uploads());
  EXPECT_EQ(resp.limits().max_queue(), 64u);
  EXPECT_EQ(resp.limits().max_upload_bytes(), 8u << 20);
  EXPECT_NE(std::find(resp.formats().begin(), resp.formats().end(), "safetensors"), resp.formats().end());
  ASSERT_EQ(resp.roots_size(), 1);  // no tokens: the caller is the local operator
  EXPECT_EQ(resp.roots(0), dir_->string());
}

}  // namespace
}  // namespace didmark
