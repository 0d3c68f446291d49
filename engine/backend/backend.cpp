#include "didmark/backend.hpp"

#include <cstdlib>
#include <mutex>
#include <string>

#include "backend/check.hpp"
#include "didmark/error.hpp"

namespace didmark {

#if !DIDMARK_HAVE_CUDA
bool cuda_compiled() noexcept { return false; }
bool cuda_available() noexcept { return false; }
std::shared_ptr<Backend> make_cuda_backend(const BackendOptions&) {
  DIDMARK_THROW(Errc::unsupported,
                "the CUDA backend is not in this build of didmark; rebuild with -DDIDMARK_CUDA=ON "
                "(needs the CUDA toolkit: nvcc, cuBLAS)");
}
#endif

std::shared_ptr<Backend> make_cuda_backend(int device) {
  BackendOptions o;
  o.device = device;
  return make_cuda_backend(o);
}

std::shared_ptr<Backend> make_cpu_backend(int threads) {
  if (threads != 0) {
    BackendOptions o;
    o.threads = threads;
    return make_cpu_backend(o);
  }
  // One pool for the process: the CLI, the server's workers, Python and the CUDA backend's
  // host-side work all share it, so nothing oversubscribes the cores.
  static std::mutex mu;
  static std::weak_ptr<Backend> shared;
  std::lock_guard<std::mutex> lock(mu);
  if (auto b = shared.lock()) return b;
  auto b = make_cpu_backend(BackendOptions{});
  shared = b;
  return b;
}

std::shared_ptr<Backend> make_backend(std::optional<Device> want) {
  if (!want) {
    if (const char* env = std::getenv("DIDMARK_DEVICE"); env && *env) return make_backend(env, "DIDMARK_DEVICE");
  }
  if (want == Device::cuda) return make_cuda_backend(0);
  if (want == Device::cpu) return make_cpu_backend();
  return cuda_available() ? make_cuda_backend(0) : make_cpu_backend();
}

std::shared_ptr<Backend> make_backend(std::string_view device, std::string_view what) {
  if (device.empty() || device == "auto") return make_backend(std::optional<Device>{});
  if (device == "cpu") return make_backend(Device::cpu);
  if (device == "cuda" || device == "gpu") return make_backend(Device::cuda);
  DIDMARK_THROW(Errc::invalid_argument, what, " '", device, "' is not one of: auto, cpu, cuda");
}

bool cuda_required() noexcept {
  const char* env = std::getenv("DIDMARK_REQUIRE_CUDA");
  return env && std::string(env) == "1";
}

void Backend::screen_many(std::span<const ScreenItem> items, std::size_t num_keys,
                          std::span<const detail::CarrierSpec> carriers, std::span<const uint64_t> payload_bits,
                          std::span<ScreenSums> out) {
  backend_check::screen_many_args(items, num_keys, carriers, out);
  for (std::size_t i = 0; i < items.size(); ++i)
    screen(items[i].view, items[i].sample, backend_check::screen_set(carriers, num_keys, items[i].carrier_set),
           payload_bits, out[i]);
}

Backend& default_backend() {
  static std::shared_ptr<Backend> backend = make_backend();
  return *backend;
}

}  // namespace didmark
