"""The GPUs this host has, as ``nvidia-smi`` lists them, and the instances whose ``gpu_ids`` name one
it lacks: refused before anything starts, instead of an engine dying on "invalid device ordinal"
after its start-up. Where ``nvidia-smi`` is missing or fails, nothing is judged (a CPU host, a
container without the driver's tools): the engine's own error stays the word on it.

``gpu_ids`` are the host's indexes (or ``GPU-…`` UUIDs), the ones ``nvidia-smi`` prints: serve sets
``CUDA_VISIBLE_DEVICES`` from them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from auto_infer.core.errors import UserError
from auto_infer.serve.model import Instance, ModelConfig

QUERY = ["--query-gpu=index,uuid", "--format=csv,noheader"]


@dataclass(frozen=True)
class Gpus:
    indexes: tuple[str, ...]
    uuids: tuple[str, ...]

    def lacks(self, gpu: str) -> bool:
        if gpu.isdigit():
            return str(int(gpu)) not in self.indexes
        return gpu not in self.uuids

    def describe(self) -> str:
        n = len(self.indexes)
        return f"{n} GPU{'s' if n != 1 else ''}" + (f" (index {', '.join(self.indexes)})" if n else "")


def smi(*args: str) -> tuple[bool, str]:
    """``nvidia-smi ARGS``: (True, its output), or (False, why it is not available)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False, "not available (nvidia-smi is not on PATH)"
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"not available ({exc})"
    if proc.returncode != 0:
        return False, f"not available (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[:500]}"
    return True, proc.stdout


def present() -> Gpus | None:
    """What ``nvidia-smi`` lists; None where it is not on PATH or does not answer."""
    ok, out = smi(*QUERY)
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
    if not ok or not all(len(r) == 2 and r[0].isdigit() for r in rows):
        return None                  # no answer, or not the CSV asked for: judge nothing
    return Gpus(tuple(r[0] for r in rows), tuple(r[1] for r in rows))


def refusal(cfg: ModelConfig, inst: Instance, gpus: Gpus | None) -> UserError | None:
    """The error serve gives ``inst`` when its gpu_ids name a GPU this host lacks, else None."""
    if gpus is None or not inst.control.gpu_ids:
        return None
    missing = [g for g in inst.control.gpu_ids if gpus.lacks(g)]
    if not missing:
        return None
    return UserError(f"instance {inst.name}: gpu_ids names {', '.join(missing)}, which this host does not have: "
                     f"nvidia-smi lists {gpus.describe()}",
                     where=f"{cfg.path}: [instance.{inst.name}.control] gpu_ids",
                     fix="use the indexes (or GPU-… UUIDs) `nvidia-smi -L` lists, or remove gpu_ids to give "
                         "the instance every GPU")
