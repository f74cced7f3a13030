"""The online half of the air-gap proof: warm a template and a llama.cpp model config, export one bundle.

    python tests/gpu/airgap_pack.py --bundle FILE [--for h200|here] [--work DIR]

What a user does on the build host, with the product's own commands: a local conda channel (the
environment: a venv-style python, see docs/gpu.md) served on 127.0.0.1 stands for the internet,
the project's fake Hub (auto_infer/demo/fakehub.py) serves the tiny GGUF as the Hub repo
``auto-infer/tiny-llama-gguf``; ``auto-infer warm`` fetches the lock's packages and, through
huggingface_hub, the repo the model config names; ``auto-infer bundle export FILE`` writes one
file with both (``models/auto-infer--tiny-llama-gguf/<commit>/tiny-llama-f16.gguf``).

``--for h200``: the environment's python stands on the lent H200's interpreter (its torch);
``--for here``: on this machine's (the CPU mode of the proof). Prints the bundle's size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import airgap_config as cfg

from auto_infer.core.net import free_port
from auto_infer.demo import channel, mirror
from auto_infer.demo.driver import Steps
from auto_infer.demo.fakehub import FakeHub


def hub_root(work: Path) -> Path:
    """The fake Hub's folder: one repo, the GGUF and a model card."""
    repo = work / "hub" / cfg.REPO
    repo.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cfg.GGUF, repo / cfg.GGUF.name)
    (repo / "README.md").write_text("A tiny random Llama (2 layers, hidden 64) with a byte-fallback sentencepiece "
                                    "tokenizer, converted by llama.cpp's convert_hf_to_gguf.py (f16). Made by "
                                    "tests/gpu/tiny_gguf.py; its answers are noise.\n")
    return work / "hub"


def env_for(work: Path, template: Path, config: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTO_INFER_", "HF_"))}
    env.update(AUTO_INFER_WORKSPACE_DIR=str(work / "ws"), AUTO_INFER_SGLANG_TEMPLATE_DIR=str(template),
               AUTO_INFER_SGLANG_CONFIG=str(config), AUTO_INFER_INSTALLER="rattler",
               AUTO_INFER_CHECK_MODULES="none", AUTO_INFER_LOCK_TIMEOUT="60", HF_ENDPOINT=endpoint,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def pack(bundle: Path, target: str, work: Path) -> Path:
    host = cfg.H200_PYTHON if target == "h200" else channel.host_python()
    port = free_port()
    built = channel.build(work / "channel", f"http://127.0.0.1:{port}", [channel.python_spec(host, True)], [],
                          name="auto-infer-airgap")
    # llama_cpp_path is the far side's concern (the run writes its own config); warm reads the weights
    config = cfg.write(work / "model-config.toml", "/opt/llama-server/bin/llama-server", cfg.one_gpu(8080))
    steps = Steps(work / "pack.log", use_netns=False)
    with mirror.Mirror(built.root, port), FakeHub(hub_root(work)) as hub:
        env = env_for(work, built.project, config, hub.url)
        print(steps.run("warm (online: local channel + fake Hub)", ["warm"], env))
        bundle.parent.mkdir(parents=True, exist_ok=True)
        print(steps.run("bundle export", ["bundle", "export", str(bundle)], env))
    print(f"bundle {bundle}: {bundle.stat().st_size} bytes; environment python {host.version} on "
          f"{host.executable} (for {target})")
    return bundle


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--for", dest="target", choices=("h200", "here"), default="here")
    p.add_argument("--work", type=Path)
    args = p.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="auto-infer-airgap-pack-"))).resolve()
    pack(args.bundle.resolve(), args.target, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
