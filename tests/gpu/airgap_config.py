"""The air-gap proof's shared facts: the model repo, the environment's python, the model configs.

The model configs are infer-dev's llama.cpp format (``[master] llama_cpp_path``, every
``[*.server]`` key a llama-server flag); the weights come from ``[instance.NAME.model] repo``:
``warm`` fetches the repo from a Hub, ``bundle export`` carries it, ``serve`` hands the snapshot's
one ``.gguf`` to llama-server as ``--model``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from auto_infer.demo.channel import HostPython

HERE = Path(__file__).resolve().parent
REPO = "auto-infer/tiny-llama-gguf"
GGUF = HERE / "data" / "tiny-llama-gguf" / "tiny-llama-f16.gguf"
ALIAS = "tiny"
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
PROMPT = "Say hello in one short sentence."
# The lent H200's /opt/torch/.venv/bin/python3 as it described itself on 2026-12-01
# (docs/gpu-evidence/2026-12-01-h200-1gpu/proof.log): the environment's python stands on it and sees
# its torch. device_airgap.sh checks the machine still says the same before it imports anything.
H200_PYTHON = HostPython("/usr/bin/python3.12", "3.12.3", (
    "/opt/torch/.venv/lib/python3.12/site-packages", "/opt/torch/.venv/local/lib/python3.12/dist-packages",
    "/opt/torch/.venv/lib/python3/dist-packages", "/opt/torch/.venv/lib/python3.12/dist-packages"))


def one_gpu(port: int) -> dict[str, dict[str, object]]:
    """Instance name -> (control, server) for the one-GPU run: one server on GPU 0."""
    return {ALIAS: {"control": {"gpu_ids": "0"}, "server": {"port": port, "alias": ALIAS, "metrics": True}}}


def two_gpus(ports: list[int]) -> dict[str, dict[str, object]]:
    """Two servers, one GPU each, and one server over both (llama.cpp splits the layers)."""
    return {
        "gpu0": {"control": {"gpu_ids": "0"}, "server": {"port": ports[0], "alias": "gpu0", "metrics": True}},
        "gpu1": {"control": {"gpu_ids": "1"}, "server": {"port": ports[1], "alias": "gpu1", "metrics": True}},
        "both": {"control": {"gpu_ids": "0,1"}, "server": {"port": ports[2], "alias": "both", "metrics": True,
                                                           "split_mode": "layer"}},
    }


def _table(name: str, values: Mapping[str, object]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items()), ""]


def write(path: Path, llama_server: str, instances: dict[str, dict[str, object]],
          router: dict[str, object] | None = None) -> Path:
    """The model config, infer-dev's llama.cpp format, each instance's weights from the Hub repo."""
    lines = ["# The air-gap proof's llama.cpp config (written by tests/gpu/airgap_config.py).",
             *_table("master", {"enable": True, "llama_cpp_path": llama_server}),
             *_table("instance.control", {"ready_timeout": 180, "stop_grace": 10, "smoke_prompt": PROMPT}),
             *_table("instance.control.env", NO_MULTICAST),
             "# every layer on the GPU (the tiny model has 2 + the output layer); a short context;",
             "# verbosity 4: llama.cpp then logs where each buffer lives (CUDA0 ...) and what it offloaded",
             *_table("instance.server", {"host": "127.0.0.1", "n_gpu_layers": 99, "ctx_size": 1024,
                                         "parallel": 1, "verbosity": 4})]
    for name, parts in instances.items():
        lines += _table(f"instance.{name}.control", parts["control"])  # type: ignore[arg-type]
        lines += _table(f"instance.{name}.server", parts["server"])    # type: ignore[arg-type]
        lines += _table(f"instance.{name}.model", {"repo": REPO})
    if router:
        lines += _table("router", router)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
