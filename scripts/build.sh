#!/usr/bin/env bash
# Configure and build didmark into a build folder (default build/). Extra arguments go to
# CMake's configure step. Builds the CUDA backend whenever nvcc is present.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
export PATH=$PATH:/usr/local/cuda/bin
JOBS=${JOBS:-$(nproc)}
if [ ! -f "$BUILD/CMakeCache.txt" ] || [ $# -gt 0 ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "$@" >"$BUILD.configure.log" 2>&1 || {
    cat "$BUILD.configure.log" >&2
    exit 1
  }
fi
echo "build: $BUILD (log in $BUILD.build.log)" >&2
if ! cmake --build "$BUILD" -j"$JOBS" >"$BUILD.build.log" 2>&1; then
  grep -E 'error|Error' -A5 "$BUILD.build.log" | head -100 >&2
  exit 1
fi
