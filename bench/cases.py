"""Measurements → report cases, with the issue's targets (reported against, never asserted)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bench import install_cases as ic
from bench import serve_cases as sc
from bench.links import LinkStats
from bench.report import Case, Row, Target, secs
from bench.timing import Series, interleave, run

NOOP_RAW = "py-rattler + uv no-op"
INSTALL_RAW = "py-rattler + uv"
OURS = "auto-infer install"


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def case_noop(w: ic.Warmed, series: dict[str, Series]) -> Case:
    c = Case("1", f"No-op rerun ({w.wl.shape.label})",
             "`auto-infer install` on an environment that already matches pixi.lock (doit graph, "
             "content hash of the lock, health check of every package file), against py-rattler's own "
             "no-op (`install()` given the installed PrefixRecords) followed by uv's no-op, and against "
             "`python -c pass`, the floor for any Python command. All are fresh processes.")
    c.rows = [Row(OURS, series[OURS], NOOP_RAW), Row(NOOP_RAW, series[NOOP_RAW], "python -c pass"),
              Row("py-rattler no-op (conda only)", series["py-rattler no-op (conda only)"], "python -c pass"),
              Row("python -c pass", series["python -c pass"])]
    ratio, ours = c.ratio(OURS), series[OURS].median
    c.targets = [Target("no-op within 1.25× of the raw installer's no-op (issue 22)", _fmt(ratio),
                        None if ratio is None else ratio <= 1.25),
                 Target("no-op under 0.5 s absolute", secs(ours), ours < 0.5)]
    return c


def links_table(stats: dict[str, LinkStats]) -> tuple[list[str], list[list[str]]]:
    head = ["run", "payload files hard-linked", "copied", "MB copied", "MB written (all)", "hard links only"]
    rows = [[name, f"{s.linked}/{s.files - s.metadata}", str(s.copied), f"{s.bytes_copied / 1e6:.1f}",
             f"{s.bytes_written / 1e6:.1f}", "yes" if s.hardlinks_only else "no"] for name, s in stats.items()]
    return head, rows


def case_install(w: ic.Warmed, res: ic.InstallResult) -> Case:
    c = Case("2", f"Offline install from a warm cache into an empty environment ({w.wl.shape.label})",
             "`auto-infer install` into a new project folder (template copy, lock read, cache audit, "
             "py-rattler install, uv install of the wheels, health check, install record) against "
             "bench/raw.py: py-rattler `install()` + `uv pip install --offline --no-index --no-deps "
             "--require-hashes --link-mode hardlink` on the same lock and the same caches. The mirror is "
             "stopped: any download would fail the run. Links are counted by comparing each file's inode "
             "with the caches' (conda-meta/ and *.dist-info/ are the installers' own records, always written).")
    c.rows = [Row(OURS, res.series[OURS], INSTALL_RAW), Row(INSTALL_RAW, res.series[INSTALL_RAW])]
    c.tables.append(links_table(res.stats))
    ratio, ours = c.ratio(OURS), res.stats[OURS]
    c.targets = [Target("offline install within 1.10× of the raw tools (issue 22)", _fmt(ratio),
                        None if ratio is None else ratio <= 1.10),
                 Target("hard links only", ours.summary(), ours.hardlinks_only)]
    return c


def case_tmpfs(w: ic.Warmed | None, res: ic.InstallResult | None, same_fs: Series | None,
               skipped: str | None) -> Case:
    c = Case("3", "The cache on another filesystem (tmpfs) than the environment",
             "As case 2, with AUTO_INFER_SGLANG_CACHE_ROOT on a tmpfs the bench mounts (`mount -t tmpfs`) "
             "and unmounts, and the project on the disk: nothing can be hard-linked, every file is "
             "copied. The row \"same filesystem\" is case 2's `auto-infer install`, for the copy cost.")
    if skipped or w is None or res is None:
        c.skipped = skipped or "not run"
        return c
    c.rows = [Row(f"{OURS} (cache on tmpfs)", res.series[OURS], f"{INSTALL_RAW} (cache on tmpfs)"),
              Row(f"{INSTALL_RAW} (cache on tmpfs)", res.series[INSTALL_RAW])]
    if same_fs is not None:
        c.rows.append(Row(f"{OURS} (same filesystem, case 2)", same_fs))
        cost = res.series[OURS].median / same_fs.median
        c.notes.append(f"copy cost: the install takes {cost:.2f}× as long as with the cache on the same "
                       "filesystem, and writes every byte again (table below).")
    c.tables.append(links_table(res.stats))
    line = next((ln.strip() for ln in res.stderr.splitlines() if ic.WARNING in ln), "(no warning)")
    c.targets = [Target("the tool warns that the cache is on another filesystem", f"`{line[:160]}`",
                        res.warned)]
    return c


def case_cli(env: dict[str, str], cli: list[str], warmup: int, repeats: int,
             progress: Callable[[str], None]) -> Case:
    status_rc: list[int] = []

    def status() -> float:
        t, proc = run([*cli, "status"], env, ok=(0, 1))
        status_rc.append(proc.returncode)
        return t

    series = interleave({
        "auto-infer --help": lambda: run([*cli, "--help"], env)[0],
        "auto-infer --version": lambda: run([*cli, "--version"], env)[0],
        "auto-infer status": status,
        "python -c pass": lambda: run([ic.PY, "-c", "pass"], env)[0],
    }, warmup=warmup, repeats=repeats, progress=progress)
    c = Case("6", "CLI start-up",
             "`auto-infer --help` (prints the task list: imports the pipeline module), `--version` and "
             "`status` (runs the doit graph) as fresh processes, against `python -c pass`.")
    c.rows = [Row(n, series[n], "python -c pass") for n in series if n != "python -c pass"]
    c.rows.append(Row("python -c pass", series["python -c pass"]))
    if any(status_rc):
        c.rows[2].note = f"exit {max(status_rc)} (serving not implemented in this build)"
    h, floor = series["auto-infer --help"].median, series["python -c pass"].median
    st = series["auto-infer status"].median
    c.targets = [Target("`--help` within 3× `python -c pass` (issue 22)", f"{h / floor:.2f}×", h <= 3 * floor),
                 Target("`status` within 3× `python -c pass` (issue 22)", f"{st / floor:.2f}×", st <= 3 * floor)]
    return c


def case_growth(points: list[tuple[ic.Warmed, dict[str, Series], ic.InstallResult]]) -> Case:
    c = Case("7", "Growth: cases 1 and 2 at three sizes",
             "The same measurements on the same kind of workload at ×1, ×3 and ×10 the files (and "
             "packages). The notes give the marginal cost: what each 1,000 more files add, ours and raw.")
    head = ["size", "conda pkgs", "files (+links)", "MB", "no-op ours", "no-op raw", "ratio",
            "install ours", "install raw", "ratio"]
    rows = []
    for w, noop, inst in points:
        s = w.stats
        n_ours, n_raw = noop[OURS].median, noop[NOOP_RAW].median
        i_ours, i_raw = inst.series[OURS].median, inst.series[INSTALL_RAW].median
        rows.append([w.wl.shape.label, str(w.wl.shape.packages + 1), f"{s.files} (+{s.symlinks})",
                     f"{(s.bytes_linked + s.bytes_written) / 1e6:.0f}", secs(n_ours), secs(n_raw),
                     f"{n_ours / n_raw:.2f}×", secs(i_ours), secs(i_raw), f"{i_ours / i_raw:.2f}×"])
    c.tables.append((head, rows))
    if len(points) > 1:
        (w0, n0, i0), (w1, n1, i1) = points[0], points[-1]
        k = (w1.stats.files - w0.stats.files) / 1000
        for what, a, b in (("no-op", n0, n1), ("install", i0.series, i1.series)):
            ours = (b[OURS].median - a[OURS].median) / k * 1000
            raw_key = NOOP_RAW if what == "no-op" else INSTALL_RAW
            raw = (b[raw_key].median - a[raw_key].median) / k * 1000
            c.notes.append(f"{what}, {w0.wl.shape.label} → {w1.wl.shape.label}: each 1,000 more files add "
                           f"{ours:.1f} ms to ours and {raw:.1f} ms to the raw tools.")
    return c


def case_readiness(s: sc.Serving, a: argparse.Namespace, progress: Callable[[str], None]) -> Case:
    try:
        return _readiness(s, sc.available(), (0.3, 0.8) if a.quick else (1.0, 2.0), a, progress)
    finally:
        s.stop()


def case_parallel(s: sc.Serving, a: argparse.Namespace, progress: Callable[[str], None]) -> Case:
    try:
        return _parallel(s, sc.available(), (0.3, 0.4, 0.5, 0.6) if a.quick else (1.5, 2.0, 2.5, 3.0), a, progress)
    finally:
        s.stop()


def _readiness(s: sc.Serving, why: str | None, slow: tuple[float, float], a: argparse.Namespace,
           progress: Callable[[str], None]) -> Case:
    c = Case("4", "Readiness and crash detection",
             "Latency, not duration: from the moment the test responder became ready (it writes "
             "the moment itself, `--ready-file`) to the moment `auto-infer serve` prints that it is "
             "ready; and from the moment a server that crashes during start died (bench/crasher.py "
             f"writes it) to the moment `auto-infer serve` reports the crash. Start-up delays are random in "
             f"{slow[0]}–{slow[1]} s, so the poll loop's phase is random too. Baseline: a loop that checks "
             "once a second whether the process is alive and whether GET /health answers 200.")
    if why:
        c.skipped = why
        return c
    rounds = a.repeats if a.quick else a.repeats + 3    # latencies spread over a whole second: more rounds
    series = sc.readiness(s, slow, a.warmup, rounds, progress)
    r, cr = "ready: auto-infer serve", "crash: auto-infer serve"
    c.rows = [Row(r, series[r], "ready: 1-s poll loop"), Row("ready: 1-s poll loop", series["ready: 1-s poll loop"]),
              Row(cr, series[cr], "crash: 1-s poll loop"), Row("crash: 1-s poll loop", series["crash: 1-s poll loop"])]
    c.targets = [Target("readiness reported within 0.2 s of ready (median)", secs(series[r].median),
                        series[r].median <= 0.2),
                 Target("a crash during start reported within 0.5 s", secs(series[cr].median),
                        series[cr].median <= 0.5)]
    return c


def _parallel(s: sc.Serving, why: str | None, slows: tuple[float, ...], a: argparse.Namespace,
           progress: Callable[[str], None]) -> Case:
    c = Case("5", "Parallel start of four slow servers",
             f"Four responders that take {', '.join(f'{x:g}' for x in slows)} s to load. Time from "
             "starting `auto-infer serve` to the last instance ready (its own report's times), against the "
             "slowest one alone (`auto-infer serve:s4`), and against the four started one after another "
             "(`auto-infer serve:s1`, then `serve:s2`, …). Each includes the CLI's start, the install "
             "no-op (serve depends on install) and the config checks; the chat comes after and is not counted.")
    if why:
        c.skipped = why
        return c
    series, overlap = sc.parallel(s, slows, a.warmup, max(1, a.repeats - 2), progress)
    par, alone, seq = list(series)
    c.rows = [Row(par, series[par], alone), Row(alone, series[alone]), Row(seq, series[seq], alone)]
    ratio = c.ratio(par)
    c.targets = [Target("parallel start within 1.2× of the slowest single server",
                        "—" if ratio is None else f"{ratio:.2f}×", None if ratio is None else ratio <= 1.2)]
    c.notes.append(f"all four were spawned before the first was ready in {len(overlap)} of "
                   f"{len(series[par].samples) + a.warmup} runs (from the report's times).")
    return c
