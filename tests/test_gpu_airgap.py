"""The air-gap proof (tests/gpu/airgap_pack.py + airgap_run.py) in its CPU mode, and the tiny GGUF it carries.

On the lent H200 the same two scripts run the GPU half (tests/gpu/device_airgap.sh, docs/gpu.md):
a llama-server built there with CUDA. Here the proof packs a bundle (local channel + the fake Hub
serving the GGUF), then runs the far side with CI's llama-server (.ci/setup-llama-server.sh,
AUTO_INFER_LLAMA_SERVER) instead of building one: import → install → check → serve → chat →
stop → supervise (SIGKILL → back, SIGTERM → exit 0), and the two-GPU layout (two servers, one
over both ids, the gateway in front) with the GPU checks listed as skipped.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

GPU = Path(__file__).parent / "gpu"
GGUF = GPU / "data" / "tiny-llama-gguf" / "tiny-llama-f16.gguf"
LLAMA_SERVER = os.environ.get("AUTO_INFER_LLAMA_SERVER", "")   # read at import: the autouse fixture clears AUTO_INFER_*


def gguf_strings(path: Path) -> dict[str, str]:
    """The string-valued metadata of a GGUF v3 file (enough to see its tokenizer and template)."""
    data, out = path.read_bytes(), {}
    assert data[:4] == b"GGUF"
    _version, _tensors, count = struct.unpack_from("<IQQ", data, 4)
    pos = 24

    def text() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        return data[pos - n:pos].decode("utf-8", "replace")

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    for _ in range(count):
        key = text()
        (kind,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if kind == 8:
            out[key] = text()
        elif kind == 9:
            item, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(n):
                if item == 8:
                    text()
                else:
                    pos += sizes[item]
        else:
            pos += sizes[kind]
    return out


def test_the_carried_gguf_is_small_and_has_a_byte_fallback_tokenizer_and_chatml() -> None:
    meta = gguf_strings(GGUF)
    assert GGUF.stat().st_size < 300_000
    assert meta["general.architecture"] == "llama" and meta["tokenizer.ggml.model"] == "llama"
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    raw = GGUF.read_bytes()
    assert b"<0x0A>" in raw          # the newline byte token: without it llama-server answers 400


@pytest.mark.slow
@pytest.mark.skipif(not (LLAMA_SERVER and os.access(LLAMA_SERVER, os.X_OK)),
                    reason="needs AUTO_INFER_LLAMA_SERVER (.ci/setup-llama-server.sh)")
def test_airgap_proof_runs_end_to_end_on_cpu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTO_INFER_")}
    bundle, out = tmp_path / "carry" / "airgap-bundle.tar", tmp_path / "out"
    pack = subprocess.run([sys.executable, str(GPU / "airgap_pack.py"), "--for", "here", "--bundle", str(bundle),
                           "--work", str(tmp_path / "here")], env=env, capture_output=True, text=True, timeout=600)
    assert pack.returncode == 0, pack.stdout + pack.stderr
    run = subprocess.run([sys.executable, str(GPU / "airgap_run.py"), "--bundle", str(bundle), "--out", str(out),
                          "--llama-server", LLAMA_SERVER, "--device", "cpu", "--two-gpu", "on",
                          "--work", str(tmp_path / "there")], env=env, capture_output=True, text=True, timeout=900)
    proof = json.loads((out / "evidence.json").read_text())
    failed = [c for c in proof["checks"] if c["result"] == "FAIL"]
    assert run.returncode == 0 and proof["passed"] and not failed, (failed, run.stdout[-4000:], run.stderr[-4000:])
    results = {c["check"]: c["result"] for c in proof["checks"]}
    assert results["chat: HTTP 200, non-empty text"] == "pass"
    assert results["supervise: restarted with a new pid"] == "pass"
    assert results["two GPUs: the gateway's requests reached both workers"] == "pass"
    assert results["nvidia-smi: the server's pid on GPU 0"] == "skipped"          # CPU: never "pass"
    assert proof["seen"]["status"]["weights"].startswith("auto-infer/tiny-llama-gguf@")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["evidence.json", "steps.log", "model-config.toml", "serve-report.md", "servers.log"])
