"""Shared test helpers: run the real CLI as a child process, offline via unshare -n."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from auto_infer.core.netns import offline_command
from auto_infer.core.settings import CACHE_VARS, PROXY_VARS
from auto_infer.demo import channel

CLI = [sys.executable, "-m", "auto_infer"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without proxies, cache variables or AUTO_INFER_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_VARS and k not in CACHE_VARS and not k.startswith("AUTO_INFER_")
           and not k.startswith("PYTEST_")}
    env.update(extra or {})
    return env


def offline(cmd: Sequence[str]) -> list[str]:
    """Wrap ``cmd`` to run in a new network namespace: loopback only, no egress."""
    return offline_command(list(cmd))


def run_cli(args: Sequence[str], env: Mapping[str, str], *, net: bool = True, timeout: float = 300,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*CLI, *args]
    if not net:
        cmd = offline(cmd)
    return subprocess.run(cmd, env=dict(env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd or "/")


def small_channel_specs(extra_files: int = 0) -> tuple[list[channel.CondaSpec], list[channel.WheelSpec]]:
    """python (venv-style) + two conda packages + one wheel: enough to prove every path."""
    big = {f"share/hello/f{i:04d}.txt": f"file {i}\n".encode() for i in range(extra_files)}
    conda = [
        channel.python_spec(),
        channel.CondaSpec("hello", "1.0", {"bin/hello": b"#!/bin/sh\necho hello from conda\n",
                                            "share/hello/big.bin": b"x" * 200_000, **big}),
        channel.CondaSpec("demo-data", "2.0", {"share/demo/a.txt": b"a\n"}, subdir="noarch"),
    ]
    wheels = [channel.WheelSpec("demo-extras", "0.3",
                                {"demo_extras/__init__.py": b"__version__ = '0.3'\n"})]
    return conda, wheels


def realworld(name: str) -> Path:
    """A file of shared/realworld/: beside the checkout (CI's layout) or in /work/shared."""
    for base in (Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")):
        if (base / "realworld" / name).exists():
            return base / "realworld" / name
    return Path("/work/shared/realworld") / name


def model_folder(path: Path) -> Path:
    """A folder a server would take for model weights: config.json and one (tiny) safetensors file."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"architectures": ["TestModel"]}\n')
    (path / "model.safetensors").write_bytes(b"\0" * 8)
    return path


@dataclass
class Workspace:
    root: Path
    template: Path
    env: dict[str, str]

    @property
    def project(self) -> Path:
        return Path(self.env["AUTO_INFER_SGLANG_PROJECT_DIR"])

    @property
    def cache_root(self) -> Path:
        return Path(self.env["AUTO_INFER_SGLANG_CACHE_ROOT"])

    @property
    def prefix(self) -> Path:
        return self.project / ".pixi" / "envs" / "default"

    @property
    def manifest(self) -> Path:
        return self.cache_root / "cache-manifest.json"


def new_workspace(base: Path, template_source: Path) -> Workspace:
    """A fresh workspace under ``base`` whose template is a private copy of ``template_source``:
    the one workspace model of the tests (the `workspace` fixture; warmed: `installed`)."""
    template = base / "template"
    shutil.copytree(template_source, template)
    root = base / "ws"
    env = clean_env({
        "AUTO_INFER_WORKSPACE_DIR": str(root),
        "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
        "AUTO_INFER_SGLANG_PROJECT_DIR": str(root / "sglang-infer"),
        "AUTO_INFER_SGLANG_CACHE_ROOT": str(root / ".cache" / "sglang-infer"),
        "AUTO_INFER_INSTALLER": "rattler",
        "AUTO_INFER_CHECK_MODULES": "demo_extras",
        "HOME": str(base / "home"),
    })
    return Workspace(root=root, template=template, env=env)
