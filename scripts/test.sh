#!/usr/bin/env bash
# The whole test suite: install what is missing, build (CUDA code compiled when nvcc is
# present; GPU tests skip without a GPU), run CTest, install the Python package into a virtual
# environment (pip install .) and run its tests against the installed package, then rebuild the
# CPU code with AddressSanitizer + UBSan and run the suite again.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh"
export CTEST_OUTPUT_ON_FAILURE=1
JOBS=${JOBS:-$(nproc)}
export PATH=$PATH:/usr/local/cuda/bin  # as build.sh does: the package build sees nvcc too
# One compiler cache for every build below: the package's build (build-pip/, the same depth
# and flags as build/) then compiles only the extension.
if command -v ccache >/dev/null 2>&1; then
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
  export CCACHE_BASEDIR="$ROOT"
fi
PACKAGE=$([ "${DIDMARK_SKIP_PACKAGE:-0}" = 1 ] && echo 0 || echo 1)

echo "== build (Release, warnings as errors)"
BUILD_DIR="$ROOT/build" "$ROOT/scripts/build.sh"
echo "== tests"
DIDMARK_PACKAGE_TESTS_LATER=$PACKAGE ctest --test-dir "$ROOT/build" -j"$JOBS" --timeout 1200

if [ "$PACKAGE" = 1 ]; then
  echo "== Python package: pip install . into build/venv, its tests against the installed package"
  VENV="$ROOT/build/venv"
  # System site packages: torch, ray, numpy and pytest as scripts/setup.sh installed them.
  [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
  # build/'s compilers and dependencies, so that every object of the package's build is a
  # compiler-cache hit: ccache keys on the compiler's path (scikit-build-core would pick
  # gcc/g++ where CMake picked cc/c++), and pybind11 would come from site-packages.
  SAME=()
  for v in CMAKE_C_COMPILER CMAKE_CXX_COMPILER CMAKE_CUDA_COMPILER Torch_DIR pybind11_DIR; do
    val=$(sed -n "s/^$v:[A-Z]*=//p" "$ROOT/build/CMakeCache.txt")
    if [ -n "$val" ] && [ "${val%-NOTFOUND}" = "$val" ]; then SAME+=("-Ccmake.define.$v=$val"); fi
  done
  if ! CMAKE_GENERATOR="Unix Makefiles" "$VENV/bin/pip" install -q --disable-pip-version-check \
      --no-build-isolation --no-deps -Cbuild-dir="$ROOT/build-pip" -Ccmake.define.DIDMARK_WERROR=ON "${SAME[@]}" \
      "$ROOT" >"$ROOT/build-pip.log" 2>&1; then
    tail -60 "$ROOT/build-pip.log" >&2
    exit 1
  fi
  (cd "$ROOT/tests/python" && env -u PYTHONPATH PATH="$VENV/bin:$PATH" DIDMARK_CLI="$VENV/bin/didmark" \
    DIDMARK_REQUIRE_INSTALLED=1 DIDMARK_SOURCE_DIR="$ROOT" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    test_package.py test_bindings.py test_torch_arrays.py test_torch_files.py test_torch_trak.py test_ray_scan.py)
fi

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
  # The library, the server and the C++ tests: the CLI and the Python module only translate and
  # are exercised by the pytest suite of the Release build (a quarter of this build's time).
  # -O1 -g1: half the compile time of -O2 -g on two cores, and still line numbers in reports.
  BUILD_DIR="$ROOT/build-asan" "$ROOT/scripts/build.sh" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DDIDMARK_SANITIZE=ON \
    -DDIDMARK_CUDA=OFF -DDIDMARK_TORCH=OFF -DDIDMARK_BUILD_BENCH=OFF -DDIDMARK_PYTHON=OFF -DDIDMARK_BUILD_APPS=OFF
  echo "== tests under sanitizers"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$ROOT/build-asan" -j"$JOBS" --timeout 2400 -E python_suite
fi
if [ "${DIDMARK_SKIP_FUZZ:-0}" != 1 ] && command -v clang++ >/dev/null 2>&1; then
  # CI budget: 10 s per target and 60 s for the pickle reader, a smoke run that every kept
  # regression input and seed still passes through (the 600 s run that finds the old 36-byte
  # corruption is `scripts/fuzz.sh` on its own; docs/security.md).
  echo "== fuzz (libFuzzer, ${FUZZ_SECONDS:-10}s per target, ${FUZZ_PICKLE_SECONDS:-60}s for torch_pickle)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-10} FUZZ_PICKLE_SECONDS=${FUZZ_PICKLE_SECONDS:-60} "$ROOT/scripts/fuzz.sh"
fi
echo "== all tests passed"
