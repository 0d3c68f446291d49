#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz) with clang in their own folder and run each for a
# bounded time. FUZZ_SECONDS (default 60) per target; FUZZ_BUILD_DIR (default build-fuzz/).
# Seeds: the test corpus in tests/data; new inputs the fuzzer finds stay in $BUILD/corpus/.
# A crash leaves the input as $BUILD/crash-* and exits non-zero.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
SECS=${FUZZ_SECONDS:-60}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$BUILD"
if ! cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDIDMARK_BUILD_FUZZ=ON -DDIDMARK_CUDA=OFF -DDIDMARK_TORCH=OFF \
    -DDIDMARK_BUILD_TESTS=OFF -DDIDMARK_BUILD_BENCH=OFF -DDIDMARK_BUILD_APPS=OFF >"$BUILD/configure.log" 2>&1; then
  cat "$BUILD/configure.log" >&2
  exit 1
fi
cmake --build "$BUILD" -j"$JOBS" --target fuzz_safetensors_header fuzz_torch_pickle >"$BUILD/build.log" 2>&1 || {
  grep -E 'error' -A5 "$BUILD/build.log" | head -60 >&2
  exit 1
}
mkdir -p "$BUILD/corpus/safetensors" "$BUILD/corpus/pickle"
cd "$BUILD"
echo "fuzz: safetensors header, ${SECS}s" >&2
"$BUILD/tests/fuzz/fuzz_safetensors_header" -max_total_time="$SECS" -max_len=8192 -rss_limit_mb=2048 \
  -dict="$ROOT/tests/fuzz/safetensors.dict" -print_final_stats=1 \
  "$BUILD/corpus/safetensors" "$ROOT/tests/data/safetensors"
echo "fuzz: torch pickle rewrite, ${SECS}s" >&2
"$BUILD/tests/fuzz/fuzz_torch_pickle" -max_total_time="$SECS" -max_len=4096 -rss_limit_mb=2048 \
  -print_final_stats=1 "$BUILD/corpus/pickle" "$ROOT/tests/data/pickle"
echo "fuzz: no crashes" >&2
