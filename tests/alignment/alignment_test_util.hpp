#pragma once
// Owners, marking and realigned verification for the alignment tests.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "didmark/alignment.hpp"
#include "didmark/attack.hpp"
#include "models.hpp"
#include "test_util.hpp"

namespace didmark::test {

struct TestOwner {
  std::string did;
  WatermarkKey key;
  Payload payload;
  Claim claim() const { return {key, payload}; }
};

inline TestOwner test_owner(uint64_t seed) {
  return {"did:example:owner-" + std::to_string(seed), random_key(seed * 7 + 1), random_payload(seed * 7 + 2)};
}

inline Backend& cpu() {
  static auto b = make_cpu_backend();
  return *b;
}

inline EmbedReport mark(tf::Model& m, const TestOwner& o, const WatermarkOptions& opt = {}) {
  auto r = embed_in_place(m.named(), o.key, o.payload, opt, cpu());
  EXPECT_TRUE(r.within_budget);
  return r;
}

inline AlignmentSketch sketch_of(const tf::Model& m, const TestOwner& o, bool all, const SketchOptions& base = {}) {
  SketchOptions so = base;
  so.all = all;
  return make_sketch(m.named(), o.did, so, cpu());
}

/// A model as the attack lab's tensor set (copies).
inline TensorSet to_set(const tf::Model& m) {
  TensorSet s;
  for (const auto& b : m.tensors) s.tensors.push_back(OwnedTensor::copy_of(b.name, b.view));
  return s;
}

inline VerifyReport plain_verify(const tf::Model& m, const TestOwner& o) {
  return verify(m.named(), o.key, o.payload, {}, cpu());
}

inline VerifyReport realigned_verify(const tf::Model& m, const AlignmentSketch& sk, const TestOwner& o,
                                     AlignmentReport* how = nullptr) {
  const Claim c = o.claim();
  return verify_realigned(m.named(), sk, std::span(&c, 1), {}, cpu(), how)[0];
}

}  // namespace didmark::test
