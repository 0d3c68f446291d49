// Mark a tensor in memory and find the mark again, through the installed package only.
#include <cstdio>
#include <random>
#include <vector>

#include "didmark/identity.hpp"
#include "didmark/watermark.hpp"

int main() {
  std::vector<float> w(1 << 22);  // 4M elements: z about 10 at the default strength
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (auto& v : w) v = nd(rng);
  const std::vector<didmark::NamedTensor> t{
      {"layer.weight", didmark::TensorView::contiguous(w.data(), didmark::DType::f32, {2048, 2048})}};
  const didmark::Identity owner = didmark::Identity::generate();
  const didmark::Payload payload = didmark::did_codeword(owner.did());
  didmark::WatermarkOptions o;
  didmark::embed_in_place(t, owner.watermark_key(), payload, o);
  const didmark::VerifyReport r = didmark::verify(t, owner.watermark_key(), payload, o);
  const didmark::Identity other = didmark::Identity::generate();
  const didmark::VerifyReport n = didmark::verify(t, other.watermark_key(), didmark::did_codeword(other.did()), o);
  std::printf("consumer: %s z %.1f (wrong key z %.1f) on %s\n", r.detected ? "detected" : "NOT detected", r.z, n.z,
              didmark::default_backend().description().c_str());
  return r.detected && !n.detected ? 0 : 1;
}
