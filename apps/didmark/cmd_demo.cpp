// `didmark demo`: the built-in end-to-end job on a synthetic checkpoint made on the fly.
#include <cstdio>
#include <iostream>
#include <random>

#include "cli.hpp"
#include "didmark/detail/half.hpp"
#include "didmark/watermark.hpp"

namespace didmark::cli {
namespace {

struct DemoOptions {
  int64_t params = 16'000'000;
  uint64_t seed = 1;
  std::string scheme = "spread-spectrum";
  double strength = 0;
};

struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
  NamedTensor named() {
    return {name, TensorView::contiguous(bytes.data(), dtype, shape)};
  }
};

// A transformer-shaped set of tensors: per layer four matrices, biases and norms.
std::vector<OwnedTensor> synthetic_checkpoint(int64_t params, uint64_t seed) {
  const int64_t d = 512;
  const int64_t per_layer = 4 * d * d + 2 * d * 4 * d;
  const int64_t layers = std::max<int64_t>(1, params / per_layer);
  std::vector<OwnedTensor> ts;
  std::mt19937_64 rng(seed);
  auto add = [&](std::string name, std::vector<int64_t> shape, double sigma, DType t) {
    OwnedTensor o{std::move(name), t, std::move(shape), {}};
    int64_t n = 1;
    for (auto s : o.shape) n *= s;
    o.bytes.resize(static_cast<std::size_t>(n) * dtype_size(t));
    std::normal_distribution<float> nd(0.0f, static_cast<float>(sigma));
    if (t == DType::f32) {
      auto* p = reinterpret_cast<float*>(o.bytes.data());
      for (int64_t i = 0; i < n; ++i) p[i] = nd(rng);
    } else {
      auto* p = reinterpret_cast<uint16_t*>(o.bytes.data());
      for (int64_t i = 0; i < n; ++i) p[i] = detail::f32_to_bf16_rne(nd(rng));
    }
    ts.push_back(std::move(o));
  };
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const DType t = l % 2 ? DType::bf16 : DType::f32;
    for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"}) add(p + "self_attn." + m + ".weight", {d, d}, 0.02, t);
    add(p + "mlp.up_proj.weight", {4 * d, d}, 0.02, t);
    add(p + "mlp.down_proj.weight", {d, 4 * d}, 0.01, t);
    add(p + "mlp.down_proj.bias", {d}, 0.01, t);
    add(p + "input_layernorm.weight", {d}, 1.0, t);
  }
  return ts;
}

void register_demo(CLI::App& app, Globals& g, Action& action) {
  auto opt = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand("demo",
                                 "Run the built-in job: make a synthetic checkpoint, embed a mark, verify it "
                                 "blind, and print the figures");
  cmd->add_option("--params", opt->params, "Parameters in the synthetic checkpoint")->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Seed for the synthetic weights, key and payload")->capture_default_str();
  cmd->add_option("--scheme", opt->scheme, "spread-spectrum or stdm")->capture_default_str();
  cmd->add_option("--strength", opt->strength, "Relative change ||dw||/||w|| (default: per scheme)");
  cmd->callback([&g, &action, opt] {
    action = [&g, opt]() -> int {
      Backend& be = g.backend();
      auto original = synthetic_checkpoint(opt->params, opt->seed);
      auto marked = original;
      std::vector<NamedTensor> src, dst;
      int64_t total = 0;
      for (auto& t : original) {
        src.push_back(t.named());
        total += src.back().view.numel();
      }
      for (auto& t : marked) dst.push_back(t.named());
      std::mt19937_64 rng(opt->seed * 7919 + 1);
      WatermarkKey key;
      for (auto& b : key.bytes) b = static_cast<uint8_t>(rng());
      std::vector<uint8_t> bits(kDefaultPayloadBits);
      for (auto& b : bits) b = rng() & 1;
      const Payload payload = Payload::from_bits(bits);
      WatermarkOptions o;
      o.scheme = parse_scheme(opt->scheme).value_or(Scheme::spread_spectrum);
      if (opt->strength > 0) o.strength = opt->strength;

      if (!g.quiet && !g.json)
        std::cerr << "didmark demo: " << src.size() << " tensors, " << total << " parameters on "
                  << be.description() << "\n";
      const EmbedReport er = embed(src, dst, key, payload, o, be);
      const VerifyReport vm = verify(dst, key, payload, o, be);
      const VerifyReport vo = verify(src, key, payload, o, be);
      WatermarkKey other = key;
      other.bytes[0] ^= 1;
      const VerifyReport vk = verify(dst, other, payload, o, be);

      auto verdict = [](const VerifyReport& r) {
        return nlohmann::json{{"detected", r.detected}, {"z", r.z},           {"p_value", r.p_value},
                              {"log10_p", r.log10_p},   {"bit_errors", r.bit_errors}, {"bits", r.bits},
                              {"elements", r.elements}, {"tensors", r.tensors}, {"seconds", r.seconds}};
      };
      if (g.json) {
        print_json({{"backend", be.description()},
                    {"params", total},
                    {"parameters", total},
                    {"scheme", std::string(scheme_name(o.scheme))},
                    {"embed",
                     {{"tensors_marked", er.tensors_marked},
                      {"elements_marked", er.elements_marked},
                      {"relative_change", er.relative_change},
                      {"max_relative_change", er.max_tensor_change},
                      {"max_tensor_change", er.max_tensor_change},
                      {"within_budget", er.within_budget},
                      {"seconds", er.seconds}}},
                    {"verify_marked", verdict(vm)},
                    {"verify_original", verdict(vo)},
                    {"verify_wrong_key", verdict(vk)}});
      } else {
        std::printf("embed   %d tensors, %lld elements, relative change %.4f%% (max %.4f%%), %.2f s\n",
                    er.tensors_marked, static_cast<long long>(er.elements_marked), 100 * er.relative_change,
                    100 * er.max_tensor_change, er.seconds);
        auto line = [](const char* what, const VerifyReport& r) {
          std::printf("%-16s %-12s z = %8.2f  p <= %-10.3g bit errors %3d/%d  (%.2f s)\n", what,
                      r.detected ? "DETECTED" : "not detected", r.z, r.p_value, r.bit_errors, r.bits, r.seconds);
        };
        line("marked copy", vm);
        line("original", vo);
        line("wrong key", vk);
      }
      return vm.detected && !vo.detected && !vk.detected ? kExitOk : kExitNotDetected;
    };
  });
}

DIDMARK_CLI_COMMAND(90, register_demo);

}  // namespace
}  // namespace didmark::cli
