#!/usr/bin/env bash
# Incremental developer build: compiles the extension into cnnfast/ so `PYTHONPATH=. pytest` works.
# A lock serialises concurrent builds from several shells.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/cnnfast-dev-build.lock
flock 9
if [ ! -f build/dev/build.ninja ]; then
  cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DCNNFAST_INPLACE=ON \
    -Dpybind11_DIR="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
fi
cmake --build build/dev -j2
