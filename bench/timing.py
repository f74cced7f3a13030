"""Measure: run competing variants interleaved (ABBA), after warm-up rounds; keep every sample."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Series:
    """The samples (seconds) of one variant of one case."""
    name: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "samples": [round(s, 6) for s in self.samples],
                "median": round(self.median, 6), "min": round(self.min, 6), "max": round(self.max, 6)}


class Failed(RuntimeError):
    """A measured command did not succeed: the bench reports it instead of a number."""


def run(cmd: Sequence[str], env: Mapping[str, str], *, ok: Sequence[int] = (0,),
        timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall time of one child process, from spawn to exit; raise Failed on an unexpected exit."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), env=dict(env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd="/")
    secs = time.perf_counter() - t0
    if proc.returncode not in ok:
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
        raise Failed(f"{' '.join(cmd[:4])}… exited {proc.returncode}:\n{tail}")
    return secs, proc


def interleave(variants: Mapping[str, Callable[[], float]], *, warmup: int, repeats: int,
               progress: Callable[[str], None] | None = None) -> dict[str, Series]:
    """Each round runs every variant once, in alternating order (A B, B A, ...) so that drift on
    a noisy machine hits all variants alike; warm-up rounds are run and thrown away."""
    out = {name: Series(name) for name in variants}
    names = list(variants)
    for rnd in range(warmup + repeats):
        order = names if rnd % 2 == 0 else names[::-1]
        last = {}
        for name in order:
            last[name] = variants[name]()
            if rnd >= warmup:
                out[name].samples.append(last[name])
        if progress:
            tag = "warm-up" if rnd < warmup else f"{rnd - warmup + 1}/{repeats}"
            progress(f"{tag}: " + "  ".join(f"{n} {last[n]:.3f}s" for n in names))
    return out


class Scratch:
    """A new, empty path for every run of a case; all of them are removed together at the end.

    Nothing is deleted between runs: removing the ~20,000-60,000 files of the last run (even followed
    by `sync`) slowed the next run down on this VM's disk (ext4, online discard), so with rounds in
    alternating order the variant that ran twice in a row paid up to 2x in that round (case 13 found
    it). ``sync`` before each run (untimed) still keeps one run's write-back out of the next."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Path] = []
        self.latest: dict[str, Path] = {}        # tag -> the path the last ``new(tag)`` gave

    def new(self, tag: str) -> Path:
        path = self.root / f"{tag}-{len(self.made) + 1}"
        self.root.mkdir(parents=True, exist_ok=True)
        os.sync()
        self.made.append(path)
        self.latest[tag] = path
        return path

    def clear(self) -> None:
        for path in self.made:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self.made.clear()
        self.latest.clear()
