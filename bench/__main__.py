"""python -m bench [--quick] [--scale F] [--repeats N] [--out PATH] [--cases 1,2,...]

Builds its own workloads, runs every case (interleaved with its baseline, after warm-up rounds),
prints the report and writes it to docs/benchmarks.md (or --out). --quick is the CI smoke run:
tiny workloads, few rounds, and it writes to --out (a temp file if not given), never to docs/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import auto_infer
from bench import (
    bundle_cases,
    cases,
    container_cases,
    download_cases,
    dryrun_cases,
    install_cases,
    real_cases,
    serve_cases,
    warm_cases,
    workload,
)
from bench.merge import merge
from bench.report import Case, render
from bench.timing import Failed

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
FINDINGS = Path(__file__).with_name("findings.md")
ALL = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: tiny sizes, 2 rounds, --out only")
    ap.add_argument("--scale", type=float, default=None,
                    help="size of the ×10 workload relative to 300 packages / 20,000 files (default 1; quick 0.03)")
    ap.add_argument("--repeats", type=int, default=None, help="measured rounds per case (default 5; quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up rounds, thrown away (default 1; quick 0)")
    ap.add_argument("--out", type=Path, default=None, help=f"report path (default {DOCS}; quick: a temp file)")
    ap.add_argument("--cases", default=None, help="comma list of cases to run (default all; 8 needs the real "
                    "wheels of .ci/setup-realwheels.sh and is left out of --quick unless named here)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temp folder, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args(argv)
    a.scale = a.scale if a.scale is not None else (0.03 if a.quick else 1.0)
    a.repeats = a.repeats if a.repeats is not None else (2 if a.quick else 5)
    a.warmup = a.warmup if a.warmup is not None else (0 if a.quick else 1)
    if a.out is None:
        a.out = Path(tempfile.mkdtemp(prefix="auto-infer-bench-out-")) / "benchmarks.md" if a.quick else DOCS
    a.asked = {c.strip() for c in (a.cases or "").split(",") if c.strip()}    # named on the command line
    a.cases = a.asked or set(ALL)
    return a


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "auto-infer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "auto_infer"]


class Bench:
    def __init__(self, a: argparse.Namespace, work: Path):
        self.a, self.work, self.cli = a, work, cli_command()
        self.cases: list[Case] = []
        self.workloads: list[str] = []
        self.failed: list[str] = []
        self._wl: dict[int, workload.Workload] = {}
        self.by_factor: dict[int, install_cases.Warmed] = {}

    def guarded(self, key: str, title: str, fn: Callable[[], None]) -> None:
        """Run one case; a failure becomes a 'failed' case in the report (and exit 1), not a crash."""
        try:
            fn()
        except (Failed, RuntimeError, OSError) as exc:
            log(f"case {key} FAILED: {exc}")
            self.failed.append(key)
            self.cases.append(Case(key, title, "", skipped=f"FAILED: {str(exc)[:1500]}"))
            traceback.print_exc()

    def progress(self, tag: str) -> Callable[[str], None]:
        return lambda msg: log(f"[{tag}] {msg}")

    def workload(self, factor: int) -> workload.Workload:
        if factor not in self._wl:
            shape = workload.Shape.of(factor, self.a.scale)
            log(f"building workload {shape.label}: {shape.packages} packages, ~{shape.files} files")
            self._wl[factor] = workload.build(self.work / f"wl-x{factor}", shape)
        return self._wl[factor]

    def warmed(self, factor: int, cache_root: Path | None = None, tag: str = "") -> install_cases.Warmed:
        wl = self.workload(factor)
        log(f"warming {wl.shape.label}{tag} (auto-infer warm from the 127.0.0.1 mirror)")
        folder = self.work / f"ws-x{factor}{'-tmpfs' if cache_root else ''}"
        w = install_cases.prepare(wl, folder, self.cli, cache_root)
        if cache_root is None:
            self.by_factor[factor] = w
        s = w.stats
        self.workloads.append(
            f"{wl.shape.label}{tag}: {wl.shape.packages + 1} conda packages + {len(workload.WHEELS)} wheels; "
            f"installed environment {s.files} files + {s.symlinks} symlinks, "
            f"{(s.bytes_linked + s.bytes_written) / 1e6:.0f} MB; built in {wl.build_secs:.1f} s; "
            f"`auto-infer warm` (download, extract, install) {w.warm_secs:.1f} s")
        return w

    # ---- the cases ----------------------------------------------------------------------
    def install_cases(self) -> None:
        a, growth = self.a, []
        want_growth = "7" in a.cases
        for factor in ((1, 3, 10) if want_growth else (10,)):
            w = self.warmed(factor)
            tag = f"x{factor}"
            noop = install_cases.noop(w, self.cli, a.warmup, a.repeats, self.progress(f"1 no-op {tag}"))
            inst = install_cases.install(w, self.cli, a.warmup, a.repeats, self.progress(f"2 install {tag}"))
            growth.append((w, noop, inst))
        main, noop, inst = growth[-1]
        self.main = main
        if "1" in a.cases:
            self.cases.append(cases.case_noop(main, noop))
        if "2" in a.cases:
            self.cases.append(cases.case_install(main, inst))
        self.same_fs = inst.series[cases.OURS]
        if want_growth:
            self.cases.append(cases.case_growth(growth))

    def tmpfs_case(self) -> None:
        mnt = self.work / "tmpfs"
        with install_cases.tmpfs(mnt) as why:
            if why:
                log(f"case 3 skipped: {why}")
                self.cases.append(cases.case_tmpfs(None, None, None, why))
                return
            w = self.warmed(10, cache_root=mnt / "cache", tag=" (cache on tmpfs)")
            rounds = max(2, self.a.repeats - 2)         # copies are slow and their spread is the disk's
            res = install_cases.install(w, self.cli, self.a.warmup, rounds, self.progress("3 tmpfs"))
            self.cases.append(cases.case_tmpfs(w, res, getattr(self, "same_fs", None), None))

    def cli_case(self) -> None:
        env = self.main.env if hasattr(self, "main") else workload.clean_env({
            "AUTO_INFER_WORKSPACE_DIR": str(self.work / "ws-cli")})
        n = max(3, self.a.repeats * 2)
        self.cases.append(cases.case_cli(env, self.cli, self.a.warmup, n, self.progress("6 cli")))

    def bundle_case(self) -> None:
        w = getattr(self, "main", None) or self.warmed(10)
        case = bundle_cases.case_bundle(w, self.cli, self.a.warmup, self.a.repeats,
                                        self.work / "bundle", self.progress("9 bundle"))
        if "7" in self.a.cases:          # the three sizes of the growth case, warmed already
            sizes = [self.by_factor[f] for f in (1, 3, 10) if f in self.by_factor]
            bundle_cases.import_growth(case, sizes, self.cli, self.a.warmup, self.a.repeats,
                                       self.work / "bundle", self.progress("9 bundle sizes"))
        self.cases.append(case)

    def serving(self) -> serve_cases.Serving:
        w = self.by_factor.get(1) or self.warmed(1)
        return serve_cases.Serving(w.env, self.cli, self.work / "serve")

    def readiness_case(self) -> None:
        self.cases.append(cases.case_readiness(self.serving(), self.a, self.progress("4 readiness")))

    def parallel_case(self) -> None:
        self.cases.append(cases.case_parallel(self.serving(), self.a, self.progress("5 parallel")))

    def warm_case(self) -> None:
        points, load = [], os.getloadavg()[0]
        for factor in (1, 3, 10):
            wl = self.workload(factor)
            series, cpu = warm_cases.measure(wl, self.cli, self.work / "warm-vs-floor", self.a.warmup,
                                             self.a.repeats, self.progress(f"13 warm {wl.shape.label}"))
            points.append((wl, series, cpu))
        self.cases.append(warm_cases.case_warm(points, load))

    def run(self) -> int:
        a = self.a
        if a.cases & {"1", "2", "7"}:
            self.guarded("1", "No-op rerun / offline install / growth", self.install_cases)
        if "3" in a.cases:
            self.guarded("3", "The cache on another filesystem (tmpfs)", self.tmpfs_case)
        if "4" in a.cases:
            self.guarded("4", "Readiness and crash detection", self.readiness_case)
        if "5" in a.cases:
            self.guarded("5", "Parallel start of four slow servers", self.parallel_case)
        if "6" in a.cases:
            self.guarded("6", "CLI start-up", self.cli_case)
        if "8" in a.cases:
            self.guarded("8", real_cases.TITLE, lambda: self.cases.append(
                real_cases.case_realwheels(self.work, self.cli, a, self.progress("8 real wheels"))))
        if "9" in a.cases:
            self.guarded("9", "Bundle export / import", self.bundle_case)
        if "10" in a.cases:
            self.guarded("10", "Downloads", lambda: self.cases.append(download_cases.case_downloads(
                self.work, a.scale, a.warmup, a.repeats, self.progress("10 downloads"))))
        if "11" in a.cases:
            self.guarded("11", dryrun_cases.TITLE, lambda: self.cases.append(
                dryrun_cases.case_dryrun(self.work, self.cli, a, self.progress("11 dry-run"))))
        if "12" in a.cases and (a.asked or not a.quick):      # images and containers: not in the smoke run
            self.guarded("12", container_cases.TITLE, lambda: self.cases.append(container_cases.case_container(
                self.work, self.cli, a, self.progress("12 container"))))
        if "13" in a.cases:
            self.guarded("13", warm_cases.TITLE, self.warm_case)
        self.cases.sort(key=lambda c: (int(c.key), c.key) if c.key.isdigit() else (10**6, c.key))
        return self.write()

    def write(self) -> int:
        a = self.a
        header = {"mode": "quick (smoke run)" if a.quick else "full", "scale": f"{a.scale:g}",
                  "rounds": f"{a.warmup} warm-up + {a.repeats} measured per case",
                  "code under test": f"`{Path(auto_infer.__file__).parent}`",
                  "bytecode": getattr(a, "bytecode", "as found")}
        findings = FINDINGS.read_text().strip().splitlines() if FINDINGS.exists() and not a.quick else []
        text = render(self.cases, header=header, workloads=self.workloads, method=METHOD, findings=findings)
        if a.cases != set(ALL) and not a.quick and a.out.exists():   # a partial run updates its own cases
            text = merge(a.out.read_text(), text, {c.key for c in self.cases})
            log(f"partial run: only case(s) {', '.join(sorted(a.cases))} replaced in {a.out}")
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
        print(text)
        log(f"report written to {a.out}" + (f"; FAILED cases: {', '.join(self.failed)}" if self.failed else ""))
        return 1 if self.failed else 0


METHOD = [
    "Every run is a fresh child process, timed from spawn to exit (`time.perf_counter`).",
    "A case's variants are interleaved round by round, in alternating order (A B, B A, …), after "
    "warm-up rounds that are thrown away; the table gives median, min and max of the measured rounds.",
    "Installs, imports and warms go into a new, empty folder for every run, and `sync` is called "
    "before each run (untimed), so no run pays for another's write-back; nothing is deleted between "
    "runs (deleting the last run's files slowed the next run on this disk): all of a case's folders "
    "are removed after its last round.",
    "Offline: the 127.0.0.1 mirror the lock points at is stopped after `warm` and proxies are cleared: "
    "a download attempt fails the run.",
    "The raw baseline (bench/raw.py) is py-rattler's `install()` and `uv pip install` on the same lock "
    "and caches, with nothing of ours, in its own process.",
]


def bytecode() -> str:
    """Measure the code as users run it: compiled, as `pip install` of the wheel leaves it.

    A shell with PYTHONDONTWRITEBYTECODE=1 (this sandbox sets it) made every child recompile all
    of auto-infer's modules on every run, which no installed copy does: it is dropped for the
    children, and the code under test is compiled once, before any timing.
    """
    import compileall

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    roots = [Path(auto_infer.__file__).parent]
    tasks = roots[0].parent / "tasks"
    if tasks.is_dir():
        roots.append(tasks)
    ok = all(compileall.compile_dir(str(r), quiet=1) for r in roots)
    return "compiled before timing (as `pip install` leaves it)" if ok else "compile failed: not all modules"


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    a.bytecode = bytecode()
    work = a.work or Path(tempfile.mkdtemp(prefix="auto-infer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work folder {work}; report → {a.out}")
    t0 = time.monotonic()
    try:
        code = Bench(a, work).run()
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - t0:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
