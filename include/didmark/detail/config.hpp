#pragma once
// Portability macros for code shared between host and device ("one formula, two launchers").
#if defined(__CUDACC__)
#define DIDMARK_HD __host__ __device__
#define DIDMARK_FORCEINLINE __forceinline__
#else
#define DIDMARK_HD
#define DIDMARK_FORCEINLINE inline __attribute__((always_inline))
#endif
