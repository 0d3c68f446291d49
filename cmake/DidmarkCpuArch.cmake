# The CPU kernels are written for 256-bit vectors (AVX2 + FMA + F16C). By default the whole
# build targets x86-64-v3 when the compiler accepts it and this machine runs it; set
# DIDMARK_CPU_ARCH to another -march value ("native", "x86-64-v4") or to "" for a portable
# baseline build (the kernels then fall back to generic vector code).
include(CheckCXXSourceRuns)
if(NOT DEFINED DIDMARK_CPU_ARCH)
  set(_arch "")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
    set(CMAKE_REQUIRED_FLAGS "-march=x86-64-v3")
    check_cxx_source_runs("
      #include <immintrin.h>
      int main() {
        __m256i a = _mm256_set1_epi32(3);
        __m256i b = _mm256_mul_epu32(a, a);
        return __builtin_cpu_supports(\"avx2\") && __builtin_cpu_supports(\"fma\") &&
               __builtin_cpu_supports(\"f16c\") && _mm256_extract_epi32(b, 0) == 9 ? 0 : 1;
      }" DIDMARK_HAVE_X86_64_V3)
    unset(CMAKE_REQUIRED_FLAGS)
    if(DIDMARK_HAVE_X86_64_V3)
      set(_arch "x86-64-v3")
    endif()
  endif()
  set(DIDMARK_CPU_ARCH "${_arch}" CACHE STRING "-march for all C++ code (empty: compiler default)")
endif()
if(DIDMARK_CPU_ARCH)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-march=${DIDMARK_CPU_ARCH}>)
  # CUDA host code includes the same inline headers: compile it for the same target.
  add_compile_options($<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-march=${DIDMARK_CPU_ARCH}>)
endif()
message(STATUS "didmark: CPU target ${DIDMARK_CPU_ARCH}")
