"""Case 10: warm's downloader against a plain parallel download of the same files from the same
127.0.0.1 mirror, with and without the live progress view (a pseudo-terminal on stderr)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import threading
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


def _timed(cmd: list[str], env: dict[str, str], terminal: bool) -> float:
    """Wall time of ``cmd``; stderr on a 150×30 pseudo-terminal when ``terminal`` (drained, not kept)."""
    master = slave = -1
    if terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 150, 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave if terminal else subprocess.PIPE, cwd="/")
    drain = None
    if terminal:
        os.close(slave)
        drain = threading.Thread(target=_drain, args=(master,), daemon=True)
        drain.start()
        err = b""
        proc.wait(timeout=1800)
    else:
        err = proc.communicate(timeout=1800)[1]
    secs = time.perf_counter() - t0
    if drain is not None:
        drain.join(5)
        os.close(master)
    if proc.returncode != 0:
        raise Failed(f"{' '.join(cmd[:4])}… exited {proc.returncode}: {err.decode(errors='replace')[-800:]}")
    return secs


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 1 << 16):
            pass
    except OSError:
        pass


def case_downloads(work: Path, scale: float, warmup: int, repeats: int,
                   progress: Callable[[str], None]) -> Case:
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

        def variant(cmd: list[str], terminal: bool = False) -> Callable[[], float]:
            def run() -> float:
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True)
                return _timed(cmd, cwd_env, terminal)
            return run

        curl = ["curl", "-sS", "--fail", "--parallel", "--parallel-max", str(CONNECTIONS)]
        for u, (name, _, _) in zip(urls, files, strict=True):
            curl += ["-o", str(dest / name), u]
        series = interleave({
            QUIET: variant([*child, "ours", str(dest), str(CONNECTIONS), *pairs]),
            LIVE: variant([*child, "ours", str(dest), str(CONNECTIONS), *pairs], terminal=True),
            PLAIN: variant([*child, "plain", str(dest), str(CONNECTIONS), *pairs]),
            CURL: variant(curl)}, warmup=warmup, repeats=repeats, progress=progress)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return _case(series, total)


def _case(series: dict, total: int) -> Case:  # type: ignore[type-arg]
    c = Case("10", f"Downloads: {FILES} files, {total / 1e6:.0f} MB, {CONNECTIONS} connections",
             "warm's downloader (auto_infer.install.fetch.fetch_all, as warm calls it: partial files kept "
             "for resume, the sha256 of every byte checked against the lock, the byte meter) in a fresh "
             "process, with stderr on a pseudo-terminal (the live tqdm view drawn ~4 times a second) and "
             "without a terminal (plain lines every 10 s), against a plain parallel download of the same "
             "files from the same 127.0.0.1 mirror (the demo mirror, Python's http.server: the same "
             "ceiling for all) in Python (requests, 6 threads, no hashing) and with curl --parallel.")
    c.rows = [Row(QUIET, series[QUIET], PLAIN), Row(LIVE, series[LIVE], QUIET), Row(PLAIN, series[PLAIN], CURL),
              Row(CURL, series[CURL])]
    c.tables.append((["variant", "throughput (median run)"],
                     [[n, f"{total / series[n].median / 1e6:.0f} MB/s"] for n in (QUIET, LIVE, PLAIN, CURL)]))
    view, plain = c.ratio(LIVE), c.ratio(QUIET)
    c.targets = [Target("the live view costs at most 2 % (live / no terminal)", _x(view),
                        None if view is None else view <= 1.02),
                 Target("warm's downloader against a plain parallel download (ratio, reported)", _x(plain), None)]
    return c


def _x(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.3f}×"
