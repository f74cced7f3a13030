"""Case 13: `auto-infer warm` into an empty cache against the same job done by the raw tools.

At ×1, ×3 and ×10, each round, each variant a fresh process with an empty cache and an empty
project, the workload's 127.0.0.1 mirror serving: `auto-infer warm`; the floor (bench/warm_floor.py
floor: parallel download, extraction on every core, raw install); and py-rattler + uv installing
straight from the mirror (bench/warm_floor.py online).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from auto_infer.core.settings import Net
from auto_infer.demo import mirror
from bench import workload
from bench.report import Case, Row, Target
from bench.timing import Failed, Scratch, Series, interleave, run

TITLE = "warm into an empty cache vs parallel download + extraction"
SCRIPT = str(Path(__file__).with_name("warm_floor.py"))
OURS = "auto-infer warm"
FLOOR = "floor: parallel download + extraction (all cores) + raw install"
ONLINE = "py-rattler install() + uv, online (they download)"
CONNECTIONS = Net().connections          # warm's default: the floor downloads as many at a time
GOAL = 1.2

WHAT = (
    "At three sizes, each variant in a fresh process with an empty cache and an empty project (a new "
    "folder for every run, `sync` called before it, untimed; all removed after the size's last round), "
    "the workload's 127.0.0.1 mirror "
    "(the demo mirror, Python's http.server in the bench process) serving all of them. "
    "`auto-infer warm` (template copy, the fetch plan with its free-space check, the download of every "
    "conda archive and wheel with the sha256 of every byte checked against the lock, the package cache "
    "filled from the archives on every core, the environment installed with py-rattler + uv, the cache "
    "audit, the manifest) against the floor, bench/warm_floor.py: a standalone script (nothing of "
    f"ours) that downloads the same files {CONNECTIONS} at a time (warm's default number of "
    "connections; requests, no hashing while it streams), then extracts every conda archive into the "
    "package cache with rattler's own extractor, one process per core, checking the sha256 the "
    "extractor measures and writing rattler's `<key>.lock`, then installs exactly as bench/raw.py does "
    "(py-rattler `install()` + `uv pip install --offline --no-index --no-deps --require-hashes` from "
    "that cache). The floor's download and extraction are sequential (a script's plain order). Second "
    "reference: py-rattler `install()` straight from the mirror into an empty package cache (rattler "
    "downloads, extracts and links on its own) + `uv pip install --require-hashes` of the wheel URLs."
)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _with_cpu(fn: Callable[[], float], into: list[float]) -> Callable[[], float]:
    """``fn``, recording the CPU time (user + system) of the process it ran and its children."""
    def go() -> float:
        c0 = _cpu()
        secs = fn()
        into.append(_cpu() - c0)
        return secs
    return go


def measure(wl: workload.Workload, cli: list[str], work: Path, warmup: int, repeats: int,
            progress: Callable[[str], None]) -> tuple[dict[str, Series], dict[str, float]]:
    """The three variants at one size, interleaved round by round; and their median CPU times."""
    base = workload.clean_env({})
    lock = str(wl.lock)
    cpu: dict[str, list[float]] = {OURS: [], FLOOR: [], ONLINE: []}
    scratch = Scratch(work)

    def ours() -> float:
        ws = scratch.new("warm")
        env = workload.workspace_env(ws, wl.template)
        secs, proc = run([*cli, "warm"], env)
        if "manifest" not in proc.stderr:
            raise Failed(f"auto-infer warm wrote no manifest:\n{proc.stderr[-2000:]}")
        return secs

    def script(mode: str) -> Callable[[], float]:
        def go() -> float:
            d = scratch.new(mode)
            d.mkdir(parents=True)
            cmd = [sys.executable, SCRIPT, mode, "--lock", lock, "--cache-root", str(d / "cache"),
                   "--prefix", str(d / "project" / ".pixi" / "envs" / "default"), "--connections", str(CONNECTIONS)]
            secs, _ = run(cmd, base)
            if not (d / "project" / ".pixi" / "envs" / "default" / "bin" / "python").exists():
                raise Failed(f"bench/warm_floor.py {mode} installed no bin/python")
            return secs
        return go

    with mirror.Mirror(wl.root, wl.port):
        series = interleave({OURS: _with_cpu(ours, cpu[OURS]), FLOOR: _with_cpu(script("floor"), cpu[FLOOR]),
                             ONLINE: _with_cpu(script("online"), cpu[ONLINE])},
                            warmup=warmup, repeats=repeats, progress=progress)
    scratch.clear()
    return series, {k: statistics.median(v[warmup:]) for k, v in cpu.items()}


def case_warm(points: list[tuple[workload.Workload, dict[str, Series], dict[str, float]]], load: float) -> Case:
    c = Case("13", TITLE, WHAT)
    head = ["size", "conda pkgs + wheels", "warm", "floor", "warm / floor", "same, round by round", "raw online",
            "raw online / floor", "CPU: warm / floor / raw online"]
    rows = []
    for wl, s, cpu in points:
        label = wl.shape.label
        c.rows += [Row(f"{OURS} ({label})", s[OURS], f"{FLOOR} ({label})"),
                   Row(f"{FLOOR} ({label})", s[FLOOR]),
                   Row(f"{ONLINE} ({label})", s[ONLINE], f"{FLOOR} ({label})")]
        ratio = s[OURS].median / s[FLOOR].median
        c.targets.append(Target(f"warm within {GOAL}× of parallel download + extraction (issue 22), {label}",
                                f"{ratio:.2f}×", ratio <= GOAL))
        paired = statistics.median(a / b for a, b in zip(s[OURS].samples, s[FLOOR].samples, strict=True))
        rows.append([label, f"{wl.shape.packages + 1} + {len(workload.WHEELS)}", f"{s[OURS].median:.2f} s",
                     f"{s[FLOOR].median:.2f} s", f"{ratio:.2f}×", f"{paired:.2f}×", f"{s[ONLINE].median:.2f} s",
                     f"{s[ONLINE].median / s[FLOOR].median:.2f}×",
                     f"{cpu[OURS]:.2f} / {cpu[FLOOR]:.2f} / {cpu[ONLINE]:.2f} s"])
    c.tables.append((head, rows))
    c.notes.append(f"load average at the start and at the end: {load:.1f} → {os.getloadavg()[0]:.1f} on "
                   f"{os.cpu_count()} cores (a shared machine: read the ratios). \"Round by round\": the median "
                   "of each round's warm / floor, the two run one after the other. CPU: median user + system "
                   "seconds of each run's process and its children (workers, uv), which other users' load "
                   "moves less than the wall time.")
    return c
