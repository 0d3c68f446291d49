#include "didmark/backend.hpp"

#include <cstdlib>
#include <mutex>
#include <string>

#include "didmark/error.hpp"

namespace didmark {

#if !DIDMARK_HAVE_CUDA
bool cuda_compiled() noexcept { return false; }
bool cuda_available() noexcept { return false; }
std::shared_ptr<Backend> make_cuda_backend(int) {
  DIDMARK_THROW(Errc::unsupported,
                "the CUDA backend is not in this build of didmark; rebuild with -DDIDMARK_CUDA=ON "
                "(needs the CUDA toolkit: nvcc, cuBLAS)");
}
#endif

std::shared_ptr<Backend> make_backend(std::optional<Device> want) {
  if (!want) {
    if (const char* env = std::getenv("DIDMARK_DEVICE"); env && *env) {
      const std::string s(env);
      if (s == "cpu") {
        want = Device::cpu;
      } else if (s == "cuda" || s == "gpu") {
        want = Device::cuda;
      } else {
        DIDMARK_THROW(Errc::invalid_argument, "DIDMARK_DEVICE='", s, "' is not one of: cpu, cuda");
      }
    }
  }
  if (want == Device::cuda) return make_cuda_backend(0);
  if (want == Device::cpu) return make_cpu_backend();
  return cuda_available() ? make_cuda_backend(0) : make_cpu_backend();
}

Backend& default_backend() {
  static std::shared_ptr<Backend> backend = make_backend();
  return *backend;
}

}  // namespace didmark
