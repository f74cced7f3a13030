"""Case 10: warm's downloader against a plain parallel download of the same files from the same
127.0.0.1 mirror, with and without the live progress view (a pseudo-terminal on stderr)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from auto_infer.demo import mirror
from bench.report import Case, Row, Target
from bench.timing import Failed, interleave

FILES = 8
CONNECTIONS = 6
LIVE = "warm's downloader, live view (terminal)"
QUIET = "warm's downloader, no terminal"
PLAIN = "plain parallel download (requests, 6 threads)"
HASHED = "plain parallel download + sha256 check"
CURL = "curl --parallel (6)"


def build(root: Path, scale: float) -> list[tuple[str, str, int]]:
    """FILES files of random bytes (64 MB each at scale 1): (name, sha256, size)."""
    size = max(1 << 20, int(64_000_000 * scale))
    out = []
    for i in range(FILES):
        data = os.urandom(size)
        name = f"blob-{i}.bin"
        (root / name).write_bytes(data)
        out.append((name, hashlib.sha256(data).hexdigest(), size))
    return out


CPU: dict[str, list[float]] = {}      # variant -> CPU seconds (user + system) of its child, per run


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], env: dict[str, str], terminal: bool, name: str) -> float:
    """Wall time of ``cmd``; stderr on a 150×30 pseudo-terminal when ``terminal`` (drained, not kept).
    The child's CPU time goes to CPU[name]: on a loaded machine it says more than the wall time."""
    master = slave = -1
    cpu0 = _cpu()
    if terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 150, 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave if terminal else subprocess.PIPE, cwd="/")
    drain = None
    if terminal:                 # the terminal's reader: its own process (`cat`), not a thread of ours
        os.close(slave)
        drain = subprocess.Popen(["cat"], stdin=master, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        err = b""
        proc.wait(timeout=1800)
    else:
        err = proc.communicate(timeout=1800)[1]
    secs = time.perf_counter() - t0
    if drain is not None:
        os.close(master)
        drain.wait(timeout=30)
    CPU.setdefault(name, []).append(_cpu() - cpu0)
    if proc.returncode != 0:
        raise Failed(f"{' '.join(cmd[:4])}… exited {proc.returncode}: {err.decode(errors='replace')[-800:]}")
    return secs


def case_downloads(work: Path, scale: float, warmup: int, repeats: int,
                   progress: Callable[[str], None]) -> Case:
    load = os.getloadavg()
    root, dest = work / "dl-mirror", work / "dl-dest"
    root.mkdir(parents=True, exist_ok=True)
    files = build(root, scale)
    total = sum(s for _, _, s in files)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTO_INFER_") and "PROXY" not in k.upper()}
    env["TERM"] = "xterm-256color"
    child = [sys.executable, "-m", "bench.fetch_child"]
    cwd_env = {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with mirror.Mirror(root) as m:
        urls = [f"{m.url}/{name}" for name, _, _ in files]
        pairs = [f"{u}={sha}" for u, (_, sha, _) in zip(urls, files, strict=True)]

        def variant(name: str, cmd: list[str], terminal: bool = False) -> tuple[str, Callable[[], float]]:
            def run() -> float:
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True)
                return _timed(cmd, cwd_env, terminal, name)
            return name, run

        curl = ["curl", "-sS", "--fail", "--parallel", "--parallel-max", str(CONNECTIONS)]
        for u, (name, _, _) in zip(urls, files, strict=True):
            curl += ["-o", str(dest / name), u]
        CPU.clear()
        series = interleave(dict([
            variant(QUIET, [*child, "ours", str(dest), str(CONNECTIONS), *pairs]),
            variant(LIVE, [*child, "ours", str(dest), str(CONNECTIONS), *pairs], terminal=True),
            variant(PLAIN, [*child, "plain", str(dest), str(CONNECTIONS), *pairs]),
            variant(HASHED, [*child, "plain-sha256", str(dest), str(CONNECTIONS), *pairs]),
            *([variant(CURL, curl)] if shutil.which("curl") else [])]), warmup=warmup, repeats=repeats,
            progress=progress)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return _case(series, total, load)


def _case(series: dict, total: int, load: tuple[float, ...]) -> Case:  # type: ignore[type-arg]
    c = Case(
        "10",
        f"Downloads: {FILES} files, {total / 1e6:.0f} MB, {CONNECTIONS} connections",
        "warm's downloader (auto_infer.install.fetch.fetch_all, as warm calls it: partial files kept "
        "for resume, the sha256 of every byte checked against the lock, the byte meter) in a fresh "
        "process, with stderr on a pseudo-terminal (the live tqdm view, redrawn twice a second; the terminal "
        "read by `cat`) and "
        "without a terminal (plain lines every 10 s), against a plain parallel download of the same "
        "files from the same 127.0.0.1 mirror (the demo mirror, Python's http.server: the same "
        "ceiling for all) in Python (requests, 6 threads; with and without the sha256 check warm "
        "does) and with curl --parallel. On loopback the transfer is bound by CPU, not by a network: "
        "the sha256 of every byte is a visible share here, and hidden behind any real link slower "
        "than the hash (~1-2 GB/s per core).",
    )
    c.rows = [Row(QUIET, series[QUIET], HASHED), Row(LIVE, series[LIVE], QUIET), Row(HASHED, series[HASHED], PLAIN),
              Row(PLAIN, series[PLAIN], CURL if CURL in series else None)]
    c.rows += [Row(CURL, series[CURL])] if CURL in series else []
    names = [n for n in (QUIET, LIVE, HASHED, PLAIN, CURL) if n in series]
    c.tables.append((["variant", "throughput (median run)", "best run", "CPU of the client, median (user+sys)"],
                     [[n, f"{total / series[n].median / 1e6:.0f} MB/s", f"{total / series[n].min / 1e6:.0f} MB/s",
                       f"{statistics.median(CPU[n]):.2f} s" if CPU.get(n) else "—"] for n in names]))
    view, hashed = c.ratio(LIVE), c.ratio(QUIET)
    plain = series[QUIET].median / series[PLAIN].median
    cpu = {n: statistics.median(v) for n, v in CPU.items() if v}
    view_cpu = cpu[LIVE] / cpu[QUIET] if cpu.get(LIVE) and cpu.get(QUIET) else None
    c.targets = [
        Target(
            "the live view costs at most 2 %: the client's CPU time, live / no terminal (medians)",
            _x(view_cpu),
            None if view_cpu is None else view_cpu <= 1.02,
        ),
        Target("the live view, wall time: live / no terminal (medians; reported, see the load)", _x(view), None),
        Target(
            "warm's downloader against a plain parallel download doing the same sha256 check (wall, reported)",
            _x(hashed),
            None,
        ),
        Target("warm's downloader against a plain parallel download without a hash (wall, reported)", _x(plain), None),
    ]
    c.notes.append(f"load average at the start and at the end: {load[0]:.1f} → {os.getloadavg()[0]:.1f} on "
                   f"{os.cpu_count()} cores (a shared machine): the wall times spread widely, so the view's "
                   "cost is judged by the CPU time of the client process (the terminal's reader, `cat`, included).")
    return c


def _x(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.3f}×"
