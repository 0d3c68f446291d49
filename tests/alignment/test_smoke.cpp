// Temporary: exploratory numbers while the design settles.
#include <gtest/gtest.h>

#include "alignment_test_util.hpp"

using namespace didmark;
using namespace didmark::test;

TEST(Smoke, BertPermuteEverything) {
  for (auto arch : {tf::Arch::bert, tf::Arch::llama}) {
    tf::Model m = tf::make_model(tf::big_config(arch, 11));
    const auto alice = test_owner(1);
    mark(m, alice);
    for (bool all : {false, true}) {
      const auto sk = sketch_of(m, alice, all);
      std::printf("arch %d all %d: params %lld sketch %llu bytes (%.3f%%), dims %zu, S=%d\n", static_cast<int>(arch), all,
                  static_cast<long long>(m.params()), static_cast<unsigned long long>(sk.bytes()), 100 * sk.fraction(),
                  sk.dims.size(), sk.samples);
      tf::Model s = m;
      tf::permute_hidden(s, tf::random_perm(m.cfg.hidden, 5));
      for (int64_t l = 0; l < m.cfg.layers; ++l) {
        tf::transform_ffn(s, l, tf::random_perm(m.cfg.ffn, 100 + static_cast<uint64_t>(l)));
        tf::transform_heads(s, l, tf::random_perm(m.cfg.heads, 200 + static_cast<uint64_t>(l)),
                            tf::random_perm(m.cfg.hidden / m.cfg.heads, 300), tf::random_perm(m.cfg.hidden / m.cfg.heads, 301));
      }
      const auto p = plain_verify(s, alice);
      AlignmentReport how;
      const auto t0 = std::chrono::steady_clock::now();
      const auto r = realigned_verify(s, sk, alice, &how);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("  plain z %.2f  realigned z %.2f (log10p %.1f) realigned=%d tensors %d moved %lld dropped %lld held %lld in %.3f s (align %.3f)\n",
                  p.z, r.z, r.log10_p, how.realigned, how.tensors_matched, static_cast<long long>(how.rows_moved),
                  static_cast<long long>(how.rows_dropped), static_cast<long long>(how.rows_held_out), secs, how.seconds);
      for (const auto& n : how.notes) std::printf("    %s\n", n.c_str());
      EXPECT_TRUE(r.detected);
    }
  }
}
