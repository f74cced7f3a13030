#!/bin/bash
# serve's GPU check on a real GPU host: real nvidia-smi, the real CLI (from source), the test responder.
set -u
pip install -q --no-index --no-deps --target /tmp/site $PWD/.gpu-mini/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site; cd /tmp
PY=$(command -v python3); echo "python: $PY $($PY -V)"
$PY -c "import requests, filelock, jinja2, cloudpickle, doit, tomlkit; print('imports ok')"
nvidia-smi --query-gpu=index,uuid --format=csv,noheader | tee $OUT/smi.txt; echo
UUID=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -1)
W=/tmp/ws; mkdir -p $W
cfg() {
cat > $W/m.toml <<T
[master]
enable = true
[instance.control]
ready_timeout = 60
stop_grace = 5
[instance.server]
host = "127.0.0.1"
[instance.g.control]
command = ["$PY", "-m", "auto_infer.demo.responder", "--host", "{host}", "--port", "{port}", "--model", "{served_model_name}"]
gpu_ids = $1
[instance.g.server]
port = 30123
served_model_name = "g-model"
T
}
export AUTO_INFER_WORKSPACE_DIR=$W AUTO_INFER_SGLANG_CONFIG=$W/m.toml
CLI="$PY -m auto_infer"
for ids in "[1]" "[0]" "[\"$UUID\"]" "[\"GPU-00000000-0000-0000-0000-000000000000\"]"; do
  cfg "$ids"
  echo "=== gpu_ids = $ids: serve --dry-run --strict"; $CLI serve --dry-run --strict 2>&1 | grep -E "⚠|gpus|nvidia-smi" ; echo "exit ${PIPESTATUS[0]}"
  echo "=== gpu_ids = $ids: serve"; $CLI serve 2>&1 | tail -4; echo "exit ${PIPESTATUS[0]}"
  $CLI stop >/dev/null 2>&1
done 2>&1 | tee $OUT/gpucheck.txt
