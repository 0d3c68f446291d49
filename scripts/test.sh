#!/usr/bin/env bash
# The whole test suite: install what is missing, build (CUDA code compiled when nvcc is
# present; GPU tests skip without a GPU), run CTest, then rebuild the CPU code with
# AddressSanitizer + UBSan and run the suite again.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh"
export CTEST_OUTPUT_ON_FAILURE=1
JOBS=${JOBS:-$(nproc)}

echo "== build (Release, warnings as errors)"
BUILD_DIR="$ROOT/build" "$ROOT/scripts/build.sh"
echo "== tests"
ctest --test-dir "$ROOT/build" -j"$JOBS" --timeout 1200

echo "== install, and a separate project built against the installed package"
rm -rf "$ROOT/build/install-test" "$ROOT/build/consumer"
cmake --install "$ROOT/build" --prefix "$ROOT/build/install-test" >"$ROOT/build.install.log" 2>&1 || {
  cat "$ROOT/build.install.log" >&2
  exit 1
}
cmake -S "$ROOT/tests/consumer" -B "$ROOT/build/consumer" -DCMAKE_PREFIX_PATH="$ROOT/build/install-test" \
  >"$ROOT/build.consumer.log" 2>&1 && cmake --build "$ROOT/build/consumer" >>"$ROOT/build.consumer.log" 2>&1 || {
  cat "$ROOT/build.consumer.log" >&2
  exit 1
}
"$ROOT/build/consumer/consumer"

if [ "${DIDMARK_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== build (AddressSanitizer + UBSan, CPU only)"
  # -O1 -g1: half the compile time of -O2 -g on two cores, and still line numbers in reports.
  BUILD_DIR="$ROOT/build-asan" "$ROOT/scripts/build.sh" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DDIDMARK_SANITIZE=ON \
    -DDIDMARK_CUDA=OFF -DDIDMARK_TORCH=OFF -DDIDMARK_BUILD_BENCH=OFF
  echo "== tests under sanitizers"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$ROOT/build-asan" -j"$JOBS" --timeout 2400 -E python_suite
fi
if [ "${DIDMARK_SKIP_FUZZ:-0}" != 1 ] && command -v clang++ >/dev/null 2>&1; then
  echo "== fuzz (libFuzzer, ${FUZZ_SECONDS:-30}s per target)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-30} "$ROOT/scripts/fuzz.sh"
fi
echo "== all tests passed"
