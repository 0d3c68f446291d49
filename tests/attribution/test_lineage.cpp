// The lineage rule: shares proportional to z among the detected owners.
#include <gtest/gtest.h>

#include <cmath>

#include "didmark/attribution.hpp"
#include "didmark/error.hpp"

using namespace didmark;

TEST(Lineage, SharesAreProportionalToZAmongDetectedOwners) {
  const std::vector<OwnerEvidence> ev{
      {"did:key:a", 30.0, true}, {"did:key:b", 10.0, true}, {"did:key:c", 5.0, false}, {"did:key:d", -2.0, false}};
  const auto r = lineage_shares(ev);
  ASSERT_TRUE(r.any_detected);
  ASSERT_EQ(r.owners.size(), 4u);
  EXPECT_EQ(r.owners[0].did, "did:key:a");
  EXPECT_DOUBLE_EQ(r.owners[0].share, 0.75);
  EXPECT_DOUBLE_EQ(r.owners[1].share, 0.25);
  EXPECT_EQ(r.owners[2].share, 0.0);  // below the threshold: nothing, whatever its z
  EXPECT_EQ(r.owners[3].share, 0.0);
  EXPECT_FALSE(r.owners[2].detected);
  EXPECT_EQ(r.owners[2].z, 5.0);
}

TEST(Lineage, ABlendOfTwoMarkedModelsIsSplitByItsMixture) {
  // z of a spread-spectrum mark is linear in the marked weight inherited: a 70/30 blend
  // of two models marked at equal strength shows z in the ratio 70:30.
  const double z_full = 40.0;
  const std::vector<OwnerEvidence> ev{{"did:key:base", 0.7 * z_full, true}, {"did:key:tune", 0.3 * z_full, true}};
  const auto r = lineage_shares(ev);
  EXPECT_NEAR(r.owners[0].share, 0.7, 1e-15);
  EXPECT_NEAR(r.owners[1].share, 0.3, 1e-15);
}

TEST(Lineage, NobodyDetectedMeansNoShares) {
  const std::vector<OwnerEvidence> ev{{"did:key:a", 3.0, false}, {"did:key:b", 1.0, false}};
  const auto r = lineage_shares(ev);
  EXPECT_FALSE(r.any_detected);
  for (const auto& o : r.owners) EXPECT_EQ(o.share, 0.0);
  EXPECT_FALSE(lineage_shares({}).any_detected);
}

TEST(Lineage, RefusesDuplicatesAndNonFiniteZ) {
  const std::vector<OwnerEvidence> dup{{"did:key:a", 3.0, true}, {"did:key:a", 4.0, true}};
  try {
    lineage_shares(dup);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("did:key:a appears twice"), std::string::npos);
  }
  const std::vector<OwnerEvidence> nan{{"did:key:a", std::nan(""), true}};
  EXPECT_THROW(lineage_shares(nan), Error);
}
