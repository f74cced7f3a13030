#!/bin/sh
# The GPU proof on a machine that has python3 with torch + transformers and no network (the lent
# H200). Beside this script: wheels/ai/ (auto-infer's wheel and its deps for that Python),
# wheels/serve/ (transformers serve's serving wheels), gpu/ (tests/gpu). Evidence goes to $OUT.
#     OUT=/some/folder [DEVICE=cuda|cpu] sh device_run.sh
set -eu
RUN=$(cd "$(dirname "$0")" && pwd)
: "${OUT:?set OUT to the folder for the evidence}"
SITE=${SITE:-/tmp/auto-infer-site}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$RUN"/wheels/ai/*.whl
export PYTHONPATH="$SITE" PATH="$SITE/bin:$PATH"
date -u
uname -srm
nvidia-smi || echo "(no nvidia-smi)"
python3 -c 'import sys, torch, transformers; print(sys.executable, "torch", torch.__version__, "transformers", transformers.__version__)'
exec python3 "$RUN/gpu/run_gpu_proof.py" --host-python "$(command -v python3)" --wheels "$RUN/wheels/serve" \
    --out "$OUT" --device "${DEVICE:-cuda}" --workdir /tmp/auto-infer-gpu-proof
