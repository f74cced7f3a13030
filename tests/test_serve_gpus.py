"""gpu_ids naming a GPU this host lacks: serve refuses before anything starts, the dry run flags it.

No GPU here: ``nvidia-smi`` is a stand-in script on PATH that prints what the real one prints for
``--query-gpu=index,uuid --format=csv,noheader`` on a two-GPU host (or fails as it does without a
driver). What is judged is auto-infer's own code, on its real CLI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.serve import registry
from tests.helpers.serving import Serve, listening, responder_config

TWO_GPUS = "0, GPU-0a1b2c3d-0000-0000-0000-000000000000\n1, GPU-9f8e7d6c-1111-1111-1111-111111111111\n"
NO_DRIVER = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."


def fake_smi(folder: Path, out: str, code: int = 0) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{out}EOF\nexit {code}\n")
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_a_gpu_the_host_lacks_is_refused_before_anything_starts(serve: Serve, tmp_path: Path) -> None:
    port = free_port()
    serve.write(responder_config({"big": {"port": port, "control": "gpu_ids = [1, 2]"}}))
    path = fake_smi(tmp_path / "bin", TWO_GPUS)
    r = serve.cli("serve", **path)
    assert r.returncode == 1, r.stderr
    assert "instance big: gpu_ids names 2, which this host does not have: nvidia-smi lists 2 GPUs (index 0, 1)" \
        in r.stderr, r.stderr
    assert f"{serve.config}: [instance.big.control] gpu_ids" in r.stderr
    assert "nvidia-smi -L" in r.stderr and "Traceback" not in r.stderr
    assert registry.read(load(serve.env), "big") is None and not listening(port)

    dry = serve.cli("serve", "--dry-run", **path)
    assert dry.returncode == 0 and "⚠ instance big: gpu_ids names 2" in dry.stderr + dry.stdout, dry.stderr
    assert serve.cli("serve", "--dry-run", "--strict", **path).returncode == 1
    plan = json.loads(serve.cli("serve", "--dry-run", "--json", **path).stdout)
    assert any("gpu_ids names 2" in p for p in plan["instances"][0]["problems"]), plan


@pytest.mark.parametrize("gpu_ids", ['["GPU-9f8e7d6c-1111-1111-1111-111111111111"]', '"0,1"', '"all"'],
                         ids=["uuid", "indexes", "all"])
def test_gpus_the_host_has_pass(serve: Serve, tmp_path: Path, gpu_ids: str) -> None:
    serve.write(responder_config({"ok": {"port": free_port(), "control": f"gpu_ids = {gpu_ids}"}}))
    plan = json.loads(serve.ok("serve", "--dry-run", "--json", **fake_smi(tmp_path / "bin", TWO_GPUS)).stdout)
    assert plan["instances"][0]["problems"] == [], plan


def test_without_a_working_nvidia_smi_nothing_is_judged(serve: Serve, tmp_path: Path) -> None:
    """No driver (nvidia-smi fails): the engine's own error stays the word on it; serve goes on."""
    port = free_port()
    serve.write(responder_config({"cpu": {"port": port, "control": "gpu_ids = [7]"}}))
    path = fake_smi(tmp_path / "bin", NO_DRIVER + "\n", code=9)
    assert json.loads(serve.ok("serve", "--dry-run", "--json", **path).stdout)["instances"][0]["problems"] == []
    r = serve.ok("serve", **path)
    assert listening(port) and "the instance ready and answering" in r.stderr, r.stderr   # not "all 1 instances"
    serve.ok("stop")
