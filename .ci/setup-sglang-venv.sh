#!/usr/bin/env bash
# Build the SGLang CPU validation venv (idempotent): sglang's own argument parser, importable
# without a GPU, so tests marked `sglang` can check our argv against ServerArgs.add_cli_args.
#
#   .ci/setup-sglang-venv.sh [PATH]        (default /opt/sglang-venv)
#   AUTO_INFER_SGLANG_VENV=PATH pytest -m sglang
#
# sglang is installed --no-deps: only what `import sglang.srt.server_args` needs is added.
# torch comes through plain pip (not uv): pip resolves it from the machine's local wheel store.
set -euo pipefail

VENV="${1:-/opt/sglang-venv}"
PY="${PYTHON:-python3}"
SGLANG_VERSION="0.5.23"
TORCH_VERSION="2.14.1"
DEPS=(numpy orjson psutil pybase64 requests packaging pillow starlette msgspec pydantic pyzmq tqdm
      ipython aiohttp)

check() { "$VENV/bin/python" -c 'import sglang.srt.server_args' 2>/dev/null; }

if [ -x "$VENV/bin/python" ] && check \
   && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("sglang"))')" = "$SGLANG_VERSION" ]; then
  echo "sglang venv ready: $VENV (sglang $SGLANG_VERSION)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" "torch==$TORCH_VERSION"
"${PIP[@]}" "${DEPS[@]}"
"${PIP[@]}" --no-deps "sglang==$SGLANG_VERSION"

if ! check; then
  "$VENV/bin/python" -c 'import sglang.srt.server_args' || true
  echo "sglang venv: import sglang.srt.server_args fails in $VENV (see above)" >&2
  exit 1
fi
echo "sglang venv ready: $VENV (sglang $SGLANG_VERSION, torch $TORCH_VERSION)"
