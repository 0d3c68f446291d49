// The robustness lab's own attacks (include/didmark/attack.hpp, `didmark attack`), chained
// as a thief would, against realignment with the owner's sketch.
#include <gtest/gtest.h>

#include "alignment_test_util.hpp"
#include "didmark/attack.hpp"

using namespace didmark;
using namespace didmark::test;

TEST(LabAttacks, ChainsOfStructuralAndValueAttacks) {
  for (auto arch : {tf::Arch::bert, tf::Arch::llama}) {
    tf::Model m = tf::make_model(tf::big_config(arch, 31));
    const auto alice = test_owner(31);
    mark(m, alice);
    const auto sk_all = sketch_of(m, alice, true), sk_def = sketch_of(m, alice, false);
    const std::vector<std::vector<std::string>> chains = {
        {"permute:all"},
        {"permute:all", "rescale-attn", arch == tf::Arch::bert ? "rescale:force" : "rescale", "dummy:64"},
        {"permute:all", "dummy:32", "rename:stolen.", "quant:int8"},
        {"permute:all", "rescale-attn", "prune:0.5"},
        {"permute:hidden", "cast:bf16"},
        {"permute:all", "quant:int4:g128"},
    };
    for (const auto& chain : chains) {
      std::string name;
      for (const auto& s : chain) name += s + " ";
      SCOPED_TRACE(name);
      TensorSet set = to_set(m);
      AttackContext ctx;
      ctx.seed = 7;
      ctx.hints.heads = m.cfg.heads;
      for (const auto& s : chain) apply_attack(set, parse_attack_spec(s), ctx);
      const auto named = set.named();
      const double plain = verify(named, alice.key, alice.payload, {}, cpu()).z;
      const Claim c = alice.claim();
      AlignmentReport how;
      const auto va = verify_realigned(named, sk_all, std::span(&c, 1), {}, cpu(), &how)[0];
      const auto vd = verify_realigned(named, sk_def, std::span(&c, 1), {}, cpu())[0];
      std::printf("[%s] %-60s plain z %6.2f | default z %6.2f | all z %6.2f (%d tensors, dropped %lld)\n",
                  arch == tf::Arch::bert ? "bert" : "llama", name.c_str(), plain, vd.z, va.z, how.tensors_matched,
                  static_cast<long long>(how.rows_dropped));
      EXPECT_TRUE(va.detected);
      EXPECT_TRUE(vd.detected);
      EXPECT_TRUE(how.realigned);
      EXPECT_LT(plain, hoeffding_z_threshold(1e-9));
    }
  }
}
