#!/bin/bash
# The air-gap proof on the GPU machine (no network): what make_carry.sh laid out beside this
# script's folder, and nothing else. Evidence goes to $OUT.
#     OUT=/some/folder [DEVICE=cuda|cpu] [TWO_GPU=auto|on|off] bash gpu/device_airgap.sh
# Carried: airgap-bundle.tar (auto-infer bundle export: the environment + the GGUF as Hub weights),
# llama.cpp-src.tar.xz (the pinned source, trimmed), wheels/ (auto-infer and what it needs there),
# gpu/ (tests/gpu). The machine's python3 (with torch) runs auto-infer from the wheels.
set -euo pipefail
RUN=$(cd "$(dirname "$0")/.." && pwd)
: "${OUT:?set OUT to the folder for the evidence}"
SITE=${SITE:-/tmp/auto-infer-site}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$RUN"/wheels/*.whl
export PYTHONPATH="$SITE" PATH="$SITE/bin:$PATH"
echo "wheels installed in $(( $(date +%s) - t0 )) s: $(ls "$RUN"/wheels | tr '\n' ' ')"
date -u
uname -srm
nvidia-smi -L || echo "(no nvidia-smi)"
command -v nvcc cmake ninja || true
# The bundle's environment stands on this machine's interpreter, as it described itself when the
# bundle was made (airgap_config.H200_PYTHON): stop early, clearly, if it has changed.
python3 - "$RUN/gpu" "${DEVICE:-cuda}" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import airgap_config
from auto_infer.demo.channel import host_python
here, want = host_python(), airgap_config.H200_PYTHON
print(f"this python: {here}")
if sys.argv[2] == "cuda" and (here.executable, here.version) != (want.executable, want.version):
    sys.exit(f"the bundle's python stands on {want.executable} {want.version}; this machine has "
             f"{here.executable} {here.version}: make the bundle again (tests/gpu/make_carry.sh)")
PY
WORK=/tmp/auto-infer-airgap
server=(--llama-src "$RUN/llama.cpp-src.tar.xz")
if [ -f "$RUN/llama-server-built.tar.xz" ]; then       # brought back by an earlier run: no build
  mkdir -p "$WORK/prebuilt" && tar -xJf "$RUN/llama-server-built.tar.xz" -C "$WORK/prebuilt"
  server=(--llama-server "$WORK/prebuilt/llama-server")
fi
rc=0
python3 "$RUN/gpu/airgap_run.py" --bundle "$RUN/airgap-bundle.tar" "${server[@]}" \
    --out "$OUT" --device "${DEVICE:-cuda}" --two-gpu "${TWO_GPU:-auto}" --work "$WORK" || rc=$?
# The build comes back (when small enough) so that a later run can skip it.
if [ -x "$WORK/build/bin/llama-server" ]; then
  (cd "$WORK/build/bin" && tar -cf - llama-server ./*.so* | xz -T0 -6 >"$OUT/llama-server-built.tar.xz")
  size=$(stat -c %s "$OUT/llama-server-built.tar.xz")
  echo "built llama-server + libraries: $(du -sb "$WORK/build/bin" | cut -f1) bytes, $size as tar.xz"
  [ "$size" -lt 16000000 ] || { rm -f "$OUT/llama-server-built.tar.xz"; echo "(too large to bring back)"; }
fi
exit $rc
