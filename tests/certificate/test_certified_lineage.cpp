// Lineage with certificates: the base share to the earliest owner, derivatives by policy.
#include <gtest/gtest.h>

#include <numeric>

#include "didmark/attribution.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

PrecedenceEntry entry(std::string did, std::vector<std::string> flags = {}, std::vector<std::string> missing = {}) {
  PrecedenceEntry e;
  e.did = std::move(did);
  e.countersigned = true;
  e.flags = std::move(flags);
  e.missing = std::move(missing);
  return e;
}

const LineageShare& of(const LineageReport& r, const std::string& did) {
  for (const auto& o : r.owners)
    if (o.did == did) return o;
  throw std::runtime_error("no " + did);
}

double total(const LineageReport& r) {
  return std::accumulate(r.owners.begin(), r.owners.end(), 0.0, [](double s, const auto& o) { return s + o.share; });
}

// The thief's mark scores higher (z 25.1 against 23.6): by z alone he would take 52%.
TEST(CertifiedLineage, TheEarliestOwnerGetsTheBaseShare) {
  const std::vector<OwnerEvidence> ev{{"did:key:alice", 23.6, true}, {"did:key:bob", 25.1, true}};
  EXPECT_GT(lineage_shares(ev).owners[1].share, 0.5);
  const std::vector<PrecedenceEntry> p{entry("did:key:alice"), entry("did:key:bob")};
  CertifiedLineageInput in;
  in.evidence = ev;
  in.precedence = p;
  const auto r = certified_lineage_shares(in);
  EXPECT_DOUBLE_EQ(of(r, "did:key:alice").share, 0.8);
  EXPECT_DOUBLE_EQ(of(r, "did:key:bob").share, 0.2);
  EXPECT_EQ(of(r, "did:key:alice").role, "base");
  EXPECT_EQ(of(r, "did:key:bob").role, "derivative");
  EXPECT_EQ(of(r, "did:key:alice").relation, "finetune");  // weights changed on top of hers
  EXPECT_EQ(of(r, "did:key:bob").relation, "");
  EXPECT_NEAR(total(r), 1.0, 1e-12);
  in.derivative_share = 0;
  const auto r0 = certified_lineage_shares(in);
  EXPECT_EQ(of(r0, "did:key:alice").share, 1.0);
  EXPECT_EQ(of(r0, "did:key:bob").share, 0.0);
  EXPECT_TRUE(r0.any_detected);
}

TEST(CertifiedLineage, DerivativesSplitTheirShareEqually) {
  const std::vector<OwnerEvidence> ev{
      {"did:key:a", 20, true}, {"did:key:b", 40, true}, {"did:key:c", 5, true}, {"did:key:u", 50, true},
      {"did:key:n", 3, false}};
  const std::vector<PrecedenceEntry> p{entry("did:key:a"), entry("did:key:b", {"unchecked"}), entry("did:key:c")};
  CertifiedLineageInput in;
  in.evidence = ev;
  in.precedence = p;
  in.derivative_share = 0.3;
  const auto r = certified_lineage_shares(in);
  EXPECT_DOUBLE_EQ(of(r, "did:key:a").share, 0.7);
  EXPECT_DOUBLE_EQ(of(r, "did:key:b").share, 0.15);
  EXPECT_DOUBLE_EQ(of(r, "did:key:c").share, 0.15);
  EXPECT_EQ(of(r, "did:key:b").relation, "finetune");
  // Detected without a certificate, and not detected: nothing.
  EXPECT_EQ(of(r, "did:key:u").share, 0.0);
  EXPECT_EQ(of(r, "did:key:u").role, "uncertified");
  EXPECT_EQ(of(r, "did:key:n").role, "not-detected");
  EXPECT_NEAR(total(r), 1.0, 1e-12);
}

// Bob's certified model carries none of Alice's mark: the file merges two lines, which share
// the pool by their bases' z (a merge's fractions), as the plain rule does.
TEST(CertifiedLineage, IndependentLinesAreAMerge) {
  const std::vector<OwnerEvidence> ev{{"did:key:a", 28, true}, {"did:key:b", 12, true}, {"did:key:c", 9, true}};
  const std::vector<PrecedenceEntry> p{entry("did:key:a"), entry("did:key:b", {"inconsistent"}, {"did:key:a"}),
                                       entry("did:key:c", {"inconsistent"}, {"did:key:a"})};
  CertifiedLineageInput in;
  in.evidence = ev;
  in.precedence = p;
  const auto r = certified_lineage_shares(in);
  // c's model carries b's mark: c is b's derivative.
  EXPECT_EQ(of(r, "did:key:a").line, 0);
  EXPECT_EQ(of(r, "did:key:b").line, 1);
  EXPECT_EQ(of(r, "did:key:c").line, 1);
  EXPECT_DOUBLE_EQ(of(r, "did:key:a").share, 0.7);
  EXPECT_DOUBLE_EQ(of(r, "did:key:b").share, 0.3 * 0.8);
  EXPECT_DOUBLE_EQ(of(r, "did:key:c").share, 0.3 * 0.2);
  EXPECT_EQ(of(r, "did:key:a").relation, "merge");
  EXPECT_EQ(of(r, "did:key:b").relation, "merge");
  EXPECT_EQ(of(r, "did:key:c").role, "derivative");
}

TEST(CertifiedLineage, QuantizedCopyOfTheCertifiedModel) {
  const std::vector<OwnerEvidence> ev{{"did:key:a", 20, true}};
  const std::vector<PrecedenceEntry> p{entry("did:key:a")};
  CertifiedLineageInput in;
  in.evidence = ev;
  in.precedence = p;
  in.certified_summaries["did:key:a"] = ModelSummary{"safetensors", 1000, {{"f32", 1000}}};
  in.file_summary = ModelSummary{"safetensors", 1000, {{"bf16", 1000}}};
  EXPECT_EQ(certified_lineage_shares(in).owners[0].relation, "quantized");
  in.file_summary = ModelSummary{"safetensors", 1000, {{"f32", 1000}}};  // same types: not quantized
  EXPECT_EQ(certified_lineage_shares(in).owners[0].relation, "");
  in.file_summary = ModelSummary{"safetensors", 500, {{"bf16", 500}}};  // half the parameters: unknown
  EXPECT_EQ(certified_lineage_shares(in).owners[0].relation, "");
  EXPECT_EQ(certified_lineage_shares(in).owners[0].share, 1.0);
}

TEST(CertifiedLineage, BadInputIsRefused) {
  const std::vector<OwnerEvidence> ev{{"did:key:a", 20, true}, {"did:key:b", 1, false}};
  const std::vector<PrecedenceEntry> p{entry("did:key:b")};  // not detected
  CertifiedLineageInput in;
  in.evidence = ev;
  in.precedence = p;
  EXPECT_THROW(certified_lineage_shares(in), Error);
  in.precedence = {};
  in.derivative_share = 1.5;
  EXPECT_THROW(certified_lineage_shares(in), Error);
  in.derivative_share = 0.2;
  const auto r = certified_lineage_shares(in);  // no certified owner detected: nobody is paid
  EXPECT_FALSE(r.any_detected);
  EXPECT_EQ(total(r), 0.0);
}

}  // namespace
}  // namespace didmark
