"""Case 8: the real SGLang wheels (bench/realwheels.py) -- offline install, links, no-op rerun.

The same measurements as cases 1 and 2 (bench/install_cases.py), on the real thing instead of a
synthetic workload: 47 real wheels (sglang 0.5.23, torch 2.14.1 and its CUDA libraries, 2.7 GB)
warmed with `auto-infer warm` from the 127.0.0.1 mirror, then installed with the mirror stopped.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from bench import install_cases as ic
from bench import realwheels, workload
from bench.cases import INSTALL_RAW, NOOP_RAW, OURS, links_table
from bench.report import Case, Row, Target, machine, secs

TITLE = "Real wheels: sglang 0.5.23 + torch 2.14.1 (47 wheels, 2.7 GB)"
WHAT = ("The real wheels behind `import sglang` and `sglang.srt.server_args` on the CPU "
        "(tests/data/realwheels.txt, filled by `.ci/setup-realwheels.sh`), in a pixi.lock whose PyPI "
        "part keeps their real PyPI paths and sha256 on the 127.0.0.1 mirror and whose conda part is a "
        "Python from a local channel. `auto-infer warm` once from the mirror; then, with the mirror "
        "stopped: `auto-infer install` into a new project folder against bench/raw.py (py-rattler "
        "`install()` of the Python + `uv pip install --offline --no-index --no-deps --require-hashes "
        "--link-mode hardlink` of the same wheels from the same cache: the uv cache warm filled), "
        "and the no-op rerun of `auto-infer install` on the installed environment against py-rattler's "
        "+ uv's own no-ops. Run alone with `python -m bench --cases 8`.")


def _warmed(work: Path, cli: list[str], directory: Path, log: Callable[[str], None]) -> ic.Warmed:
    rw = realwheels.build(work / "realwheels", directory)
    shape = workload.Shape(factor=0, packages=1, files=0, large_bytes=0, wheel_files=0, wheel_large_bytes=0)
    wl = workload.Workload(shape, rw.root, rw.port, rw.template, rw.build_secs)
    log(f"warming the real wheels ({rw.total_bytes / 1e9:.2f} GB) from the 127.0.0.1 mirror")
    return ic.prepare(wl, work / "ws-realwheels", cli)


def case_realwheels(work: Path, cli: list[str], a: argparse.Namespace,
                    progress: Callable[[str], None]) -> Case:
    c = Case("8", TITLE, WHAT)
    directory = realwheels.wheel_dir()
    why = realwheels.unavailable(directory)
    if why is None and a.quick and "8" not in a.asked:
        why = "--quick: 5 GB installed per round; run it with `python -m bench --cases 8`"
    if why:
        c.skipped = why
        return c
    load = os.getloadavg()[0]
    w = _warmed(work, cli, directory, progress)
    try:
        rounds = max(3, a.repeats - 2) if not a.quick else a.repeats   # 5 GB per install round
        inst = ic.install(w, cli, a.warmup, rounds, progress)
        noop = ic.noop(w, cli, a.warmup, a.repeats, progress)
    finally:
        shutil.rmtree(w.ws, ignore_errors=True)
    c.rows = [Row(OURS, inst.series[OURS], INSTALL_RAW), Row(INSTALL_RAW, inst.series[INSTALL_RAW]),
              Row(f"{OURS} (no-op rerun)", noop[OURS], NOOP_RAW), Row(NOOP_RAW, noop[NOOP_RAW]),
              Row("python -c pass", noop["python -c pass"])]
    c.tables.append(links_table(inst.stats))
    ratio, ours, raw, s = c.ratio(OURS), inst.stats[OURS], inst.stats[INSTALL_RAW], w.stats
    noop_ratio = c.ratio(f"{OURS} (no-op rerun)")
    c.targets = [Target("real wheels: offline install within 1.10× of the raw tools (issue 22)", _x(ratio),
                        None if ratio is None else ratio <= 1.10),
                 Target("real wheels: hard links wherever the raw tools link (console scripts are written)",
                        ours.summary(), ours.linked >= raw.linked and ours.copied <= raw.copied),
                 Target("real wheels: no-op within 1.25× of the raw installer's no-op (issue 22)", _x(noop_ratio),
                        None if noop_ratio is None else noop_ratio <= 1.25)]
    if ours.copied_paths:
        shown = ", ".join(f"`{p}`" for p in ours.copied_paths)
        c.notes.append(f"not hard-linked ({ours.copied}): {shown}: files the installer writes itself "
                       "(console scripts carry the environment's interpreter in their `#!` line), in both runs.")
    m = machine()
    c.notes += [f"installed environment: {s.files} files + {s.symlinks} symlinks, "
                f"{(s.bytes_linked + s.bytes_written) / 1e9:.2f} GB; `auto-infer warm` (download 2.7 GB "
                f"from the mirror, sha256, unpack into uv's cache, install) {secs(w.warm_secs)}.",
                f"run {m['date']}, commit {m['commit']}, {m['cores']} cores (load average {load:.1f} "
                f"at the start: the machine is shared); "
                f"{a.warmup} warm-up + {rounds} measured install rounds, {a.repeats} no-op rounds."]
    return c


def _x(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"

