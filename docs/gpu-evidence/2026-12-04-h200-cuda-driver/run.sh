#!/bin/bash
# The pixi backend's CUDA-driver detection on a real GPU host (py-rattler, as pixi detects it).
set -u
pip install -q --no-index --no-deps --target /tmp/site $PWD/.gpu-mini/*.whl 2>&1 | grep -v "Running pip as" | tail -2
export PYTHONPATH=/tmp/site; cd /tmp
python3 - <<'PY' 2>&1 | tee $OUT/cuda.txt
from pathlib import Path
from rattler import VirtualPackage
from auto_infer.install.backends import pixi
print("virtual packages:", [str(v.into_generic()) for v in VirtualPackage.detect()])
print("cuda_driver():", pixi.cuda_driver())
p = Path("/tmp/t/pixi.toml"); p.parent.mkdir(parents=True, exist_ok=True)
p.write_text('[workspace]\nname="t"\nchannels=["conda-forge"]\nplatforms=["linux-64"]\n[system-requirements]\ncuda = "12"\n')
print("cuda_required():", pixi.cuda_required(p, "default"))
PY
nvidia-smi --query-gpu=driver_version,name --format=csv,noheader | tee -a $OUT/cuda.txt
