"""Cases 1, 2, 3: no-op rerun, offline install from a warm cache, the cache on another filesystem.

Every run is a real child process: `auto-infer install` (the console script) against
bench/raw.py (py-rattler + uv on the same lock and caches). Offline means: the mirror the lock
points at is stopped, and the proxies are cleared, so any fetch fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import links, workload
from bench.timing import Failed, Scratch, Series, interleave, run

RAW = str(Path(__file__).with_name("raw.py"))
PY = sys.executable
WARNING = "different filesystems"


@dataclass
class Warmed:
    """A workload warmed into a cache root, with the environment warm installed (the no-op target)."""
    wl: workload.Workload
    ws: Path
    env: dict[str, str]
    cache_root: Path
    warm_secs: float
    warm_stderr: str
    stats: links.LinkStats       # of the environment warm installed

    @property
    def project(self) -> Path:
        return Path(self.env["AUTO_INFER_SGLANG_PROJECT_DIR"])

    @property
    def prefix(self) -> Path:
        return self.project / ".pixi" / "envs" / "default"

    def inodes(self) -> set[tuple[int, int]]:
        return cache_inodes(self.cache_root)


def cache_inodes(cache_root: Path) -> set[tuple[int, int]]:
    """Inodes of the conda package cache and of everything PyPI (wheels, uv's cache)."""
    return links.cache_inodes(cache_root / "pixi" / "pkgs", cache_root / "pypi")


def prepare(wl: workload.Workload, ws: Path, cli: list[str], cache_root: Path | None = None) -> Warmed:
    """`auto-infer warm` the workload into a workspace (its cache root, or ``cache_root``)."""
    env = workload.workspace_env(ws, wl.template, cache_root=cache_root)
    secs, err = workload.warm(wl, env, cli)
    root = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"])
    prefix = Path(env["AUTO_INFER_SGLANG_PROJECT_DIR"]) / ".pixi" / "envs" / "default"
    return Warmed(wl, ws, env, root, secs, err, links.link_stats(prefix, cache_inodes(root)))


def raw_cmd(w: Warmed, mode: str, prefix: Path, *extra: str) -> list[str]:
    return [PY, RAW, mode, "--lock", str(w.project / "pixi.lock"), "--prefix", str(prefix),
            "--cache-root", str(w.cache_root), *extra]


# ---- case 1: no-op rerun --------------------------------------------------------------------

def noop(w: Warmed, cli: list[str], warmup: int, repeats: int,
         progress: Callable[[str], None]) -> dict[str, Series]:
    def ours() -> float:
        secs, proc = run([*cli, "install"], w.env)
        if "up to date" not in proc.stderr and "nothing to do" not in proc.stderr:
            raise Failed(f"auto-infer install was not a no-op:\n{proc.stderr[-2000:]}")
        return secs

    return interleave({
        "auto-infer install": ours,
        "py-rattler + uv no-op": lambda: run(raw_cmd(w, "noop", w.prefix), w.env)[0],
        "py-rattler no-op (conda only)": lambda: run(raw_cmd(w, "noop", w.prefix, "--conda-only"), w.env)[0],
        "python -c pass": lambda: run([PY, "-c", "pass"], w.env)[0],
    }, warmup=warmup, repeats=repeats, progress=progress)


# ---- cases 2 and 3: offline install into an empty environment ---------------------------------

@dataclass
class InstallResult:
    series: dict[str, Series]
    stats: dict[str, links.LinkStats]
    warned: bool                   # our stderr had the different-filesystems warning
    stderr: str


def install(w: Warmed, cli: list[str], warmup: int, repeats: int,
            progress: Callable[[str], None]) -> InstallResult:
    last: dict[str, tuple[Path, str]] = {}
    scratch = Scratch(w.ws / "runs")

    def ours() -> float:
        project = scratch.new("ours")
        secs, proc = run([*cli, "install"], dict(w.env, AUTO_INFER_SGLANG_PROJECT_DIR=str(project)))
        last["ours"] = (project / ".pixi" / "envs" / "default", proc.stderr)
        return secs

    def raw() -> float:
        prefix = scratch.new("raw") / ".pixi" / "envs" / "default"
        secs, _ = run(raw_cmd(w, "install", prefix), w.env)
        last["raw"] = (prefix, "")
        return secs

    series = interleave({"auto-infer install": ours, "py-rattler + uv": raw},
                        warmup=warmup, repeats=repeats, progress=progress)
    inodes = w.inodes()
    stats = {"auto-infer install": links.link_stats(last["ours"][0], inodes),
             "py-rattler + uv": links.link_stats(last["raw"][0], inodes)}
    scratch.clear()
    err = last["ours"][1]
    return InstallResult(series, stats, WARNING in err, err)


# ---- case 3: the cache on a tmpfs -----------------------------------------------------------

@contextmanager
def tmpfs(path: Path, size: str = "4g") -> Iterator[str | None]:
    """Mount a tmpfs at ``path`` for the block; yields None, or why it could not (then skip)."""
    if os.geteuid() != 0:
        yield "not root: `mount -t tmpfs` needs root"
        return
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        yield f"mount -t tmpfs failed: {(r.stderr or r.stdout).strip()}"
        return
    try:
        yield None
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
