"""The GPU proof (tests/gpu/run_gpu_proof.py) and the pieces it stands on.

The first tests run anywhere: an environment whose ``python`` exposes another interpreter's
site-packages (how the machine's own CUDA torch becomes the environment's), real wheel files in
the lock, and `check`'s GPU summary. The last two run the whole proof with `transformers serve`:

    GPU_PROOF_HOST_PYTHON=/opt/torch/.venv/bin/python3 GPU_PROOF_WHEELS=/path/to/serving-wheels \\
        python -m pytest -m gpu tests/test_gpu_proof.py

(`gpu`: skipped without a working nvidia-smi; the CPU variant runs when both variables are set.
The lent H200 has no network: there tests/gpu/device_run.sh runs the script, see docs/gpu.md.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auto_infer.core.net import free_port
from auto_infer.demo import channel, mirror
from auto_infer.install.check import summary
from tests.helpers import clean_env, run_cli

SCRIPT = Path(__file__).parent / "gpu" / "run_gpu_proof.py"
HOST_PYTHON = os.environ.get("GPU_PROOF_HOST_PYTHON", "")
WHEELS = os.environ.get("GPU_PROOF_WHEELS", "")


def nvidia_smi_works() -> bool:
    exe = shutil.which("nvidia-smi")
    return bool(exe) and subprocess.run([str(exe), "-L"], capture_output=True).returncode == 0


def test_environment_python_sees_the_host_site_packages_after_its_own_wheels(tmp_path: Path) -> None:
    host = tmp_path / "host venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(host)], check=True)
    [host_site] = host.glob("lib/python*/site-packages")
    (host_site / "only_on_host.py").write_text("WHERE = 'host'\n")
    (host_site / "shadowed.py").write_text("WHERE = 'host'\n")
    wheel = channel.build_wheel(tmp_path / "made", channel.WheelSpec("shadow-wheel", "1.0", {
        "shadowed.py": b"WHERE = 'environment'\n"}))
    spec = channel.python_spec(channel.host_python(str(host / "bin" / "python")), expose_site_packages=True)
    assert not any(p.endswith("_auto_infer_host_site.pth") for p in channel.python_spec().files)
    port = free_port()
    built = channel.build(tmp_path / "channel", f"http://127.0.0.1:{port}", [spec], [], real_wheels=[wheel])
    assert "shadow-wheel" in (built.project / "pixi.lock").read_text()
    ws = tmp_path / "ws"
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(ws), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(built.project),
                     "AUTO_INFER_INSTALLER": "rattler", "AUTO_INFER_CHECK_MODULES": "only_on_host,shadowed",
                     "HOME": str(tmp_path / "home")})
    with mirror.Mirror(built.root, port):
        warm = run_cli(["warm"], env)
    assert warm.returncode == 0, warm.stderr
    checked = run_cli(["check"], env)
    assert checked.returncode == 0, checked.stderr
    py = ws / "sglang-infer" / ".pixi" / "envs" / "default" / "bin" / "python"
    out = subprocess.run([str(py), "-c", "import sys, only_on_host, shadowed; "
                          "print(only_on_host.WHERE, shadowed.WHERE, sys.prefix)"],
                         capture_output=True, text=True, env=clean_env(), check=True).stdout.split()
    assert out == ["host", "environment", str(py.parent.parent)]


def test_check_summary_names_each_gpu_and_cudnn() -> None:
    line = summary({"python": "3.12.3", "modules": {"torch": "2.11.0+cu130"}, "cuda_available": True,
                    "cuda_version": "13.0", "cudnn_version": 91900, "gpu_count": 2,
                    "gpu_names": ["NVIDIA H200", "NVIDIA H200"]})
    assert "torch.cuda.is_available()=True" in line and "cuDNN 91900" in line
    assert line.endswith("2 GPU(s): 0: NVIDIA H200, 1: NVIDIA H200")


def run_proof(tmp_path: Path, device: str) -> dict:
    out = tmp_path / "out"
    env = clean_env({"PYTHONPATH": os.pathsep.join(sys.path)})
    r = subprocess.run([sys.executable, str(SCRIPT), "--host-python", HOST_PYTHON, "--wheels", WHEELS, "--out",
                        str(out), "--device", device, "--workdir", str(tmp_path / "work")],
                       capture_output=True, text=True, env=env, timeout=1200)
    proof = json.loads((out / "proof.json").read_text())
    assert r.returncode == 0 and proof["passed"], f"{r.stdout}\n{r.stderr}"
    return proof


@pytest.mark.gpu
@pytest.mark.skipif(not nvidia_smi_works(), reason="needs an NVIDIA GPU (nvidia-smi -L)")
@pytest.mark.skipif(not (HOST_PYTHON and WHEELS), reason="set GPU_PROOF_HOST_PYTHON and GPU_PROOF_WHEELS")
def test_gpu_proof_transformers_serve_one_instance_per_gpu(tmp_path: Path) -> None:
    proof = run_proof(tmp_path, "cuda")
    results = {c["check"]: c["result"] for c in proof["checks"]}
    assert "skipped" not in results.values() and "after stop: no compute process on any GPU" in results


@pytest.mark.slow
@pytest.mark.skipif(not (HOST_PYTHON and WHEELS), reason="set GPU_PROOF_HOST_PYTHON and GPU_PROOF_WHEELS")
def test_gpu_proof_flow_on_cpu(tmp_path: Path) -> None:
    proof = run_proof(tmp_path, "cpu")
    assert proof["gpu_ids"] == ["0", "1"]
    assert [c for c in proof["checks"] if c["result"] == "pass"]
