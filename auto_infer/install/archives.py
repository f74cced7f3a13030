"""The conda archive store: the lock's original .conda/.tar.bz2 files, kept by `warm` and carried
by bundles, at ``${CACHE_ROOT}/conda/archives/<subdir>/<file>``; and filling the package cache from
them exactly as a download would (same cache key, same sha256 in the cache's ``<key>.lock``)."""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import disk_full
from auto_infer.core.settings import Settings
from auto_infer.install.lockfile import Artifact


def subdir(a: Artifact) -> str:
    """The channel subdir of a conda artifact: its URL path's folder (…/conda-forge/linux-64/x.conda),
    read and checked by lockfile (Artifact.subdir)."""
    return a.subdir or "noarch"


def archive_path(settings: Settings, a: Artifact) -> Path:
    return settings.conda_archive_dir / subdir(a) / a.filename


# ---- filling the package cache -------------------------------------------------------------

PARTIAL = ".auto-infer-extracting."     # a package being extracted, inside pkgs/: renamed when whole
REVISION = (1).to_bytes(8, "big")       # rattler's <key>.lock: a u64 revision, then the archive's sha256


def _extract_error(settings: Settings, a: Artifact, exc: str) -> UserError:
    lines = [ln.strip() for ln in exc.splitlines() if ln.strip()] or ["failed"]
    what = " / ".join(dict.fromkeys([lines[0], lines[-1].removeprefix("Caused by:").strip()]))
    if "os error 28" in what or "os error 122" in what:
        return disk_full(settings.conda_pkgs_dir, f"extracting {a.filename}: {what}")
    if "os error 30" in what or "os error 13" in what:
        return UserError(f"cannot extract {a.filename}: the package cache {settings.conda_pkgs_dir} is read-only "
                         f"({what})", where=str(settings.conda_pkgs_dir),
                         fix="make the cache root writable (mount it read-write), then run it again")
    return UserError(f"the conda archive {a.filename} cannot be extracted: {what}",
                     where=str(archive_path(settings, a)),
                     fix="the archive in the store is damaged: run `auto-infer warm` online (it downloads it "
                         "again) or import the bundle again")


def partial_extractions(settings: Settings) -> list[Path]:
    pkgs = settings.conda_pkgs_dir
    return list(pkgs.glob(f"{PARTIAL}*")) if pkgs.is_dir() else []


def extract_one(archive: str, pkgs: str, key: str, sha256: str | None) -> str | None:
    """Extract one archive beside its place in ``pkgs``, check its sha256, rename it in whole and
    write rattler's ``<key>.lock``; return why not (for the parent to report), or None."""
    from rattler.package_streaming import extract

    tmp, dest = os.path.join(pkgs, PARTIAL + key), os.path.join(pkgs, key)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        sha, _md5 = extract(Path(archive), Path(tmp))
    except Exception as exc:            # rattler's errors are plain exceptions with a chain of causes
        shutil.rmtree(tmp, ignore_errors=True)
        return str(exc) or type(exc).__name__
    if sha256 and bytes(sha).hex() != sha256:
        shutil.rmtree(tmp, ignore_errors=True)
        return f"sha256 {bytes(sha).hex()}, the lock says {sha256}"
    # the lock first (a crash then leaves a lock without its folder: extracted again), renamed into
    # place like the folder; no fsync per package, as rattler's own cache writes none
    lock = os.path.join(pkgs, f"{PARTIAL}{key}.lock")
    with open(lock, "wb") as fh:
        fh.write(REVISION + bytes(sha))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(lock, os.path.join(pkgs, f"{key}.lock"))
    os.replace(tmp, dest)
    return None


def extract_into_cache(settings: Settings, need: list[Artifact], on_done: Callable[[int], None]) -> None:
    """Extract each archive of ``need`` from the archive store straight into the package cache, as
    rattler would after a download (see :class:`Extractor`), the biggest first."""
    with Extractor(settings, len(need)) as pool:
        for a in sorted(need, key=lambda a: -_size(archive_path(settings, a))):
            pool.add(a)
        pool.wait(on_done)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:             # missing: the worker says so, as for any archive it cannot extract
        return 0


INLINE = 8      # archives per worker process at least: fewer are extracted in this process
DEPTH = 2       # archives given to a worker at once: the next one is there when it finishes one
# the worker: Ctrl-C in a terminal reaches it too; the parent decides (it stops the workers), so
# it is ignored here rather than printed as a traceback
# the worker leaves with os._exit once its input ends: every result is written and flushed, and an
# interpreter teardown (tens of ms, waited for at the end of every fill) has nothing left to do
WORKER = ("import json, os, signal, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
          "from auto_infer.install.archives import extract_one\n"
          "for line in sys.stdin:\n    i, *job = json.loads(line)\n"
          "    print(json.dumps([i, extract_one(*job)]), flush=True)\n"
          "os._exit(0)")


class Extractor:
    """Fill the package cache from the archive store as archives are handed in (``add``), while the
    caller goes on (warm: downloading the others): ``pkgs/<name>-<version>-<build>/`` and
    ``<key>.lock`` with the archive's sha256, through rattler's own extractor (:func:`extract_one`).

    On every core: one worker process per core (the extractor holds the GIL, and rattler's async
    one can crash the interpreter at exit), each given the biggest archive waiting as soon as it has
    fewer than DEPTH to do: time per archive follows its file count more than its bytes, so the
    work is dealt as it goes, not split up front; the workers start with the first archive (a
    fill with nothing to extract starts none). With fewer than INLINE archives per worker
    expected, they are extracted in this process at ``wait``. ``wait`` ends the intake and raises
    for the first archive that could not be extracted; leaving the block stops the workers (an
    entry is renamed into place in whole: a stopped one leaves a partial folder, removed next time)."""

    def __init__(self, settings: Settings, expected: int):
        self.settings, self.pkgs = settings, settings.conda_pkgs_dir
        self.pkgs.mkdir(parents=True, exist_ok=True)
        self.added: list[Artifact] = []
        self.results: dict[int, str | None] = {}
        self.waiting: list[tuple[int, int]] = []           # heap of (-bytes, archive): the biggest first
        self.cond = threading.Condition()
        self.on_done: Callable[[int], None] | None = None
        workers = min(os.cpu_count() or 1, expected // INLINE)
        self.workers = workers if workers > 1 else 0     # started with the first archive (none: no cost)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.busy: list[set[int]] = []                 # archives given to each live worker
        self.alive: list[bool] = []
        self.readers: list[threading.Thread] = []

    def _start(self) -> None:
        # cwd: the package cache, so that no auto_infer/ folder of the current directory is imported
        self.procs = [subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, cwd=self.pkgs) for _ in range(self.workers)]
        self.busy, self.alive = [set() for _ in self.procs], [True] * self.workers
        self.readers = [threading.Thread(target=self._read, args=(w,), daemon=True) for w in range(self.workers)]
        for t in self.readers:
            t.start()

    def _job(self, a: Artifact) -> tuple[str, str, str, str | None]:
        return str(archive_path(self.settings, a)), str(self.pkgs), a.cache_key, a.sha256

    def add(self, a: Artifact) -> None:
        """Extract ``a`` (its archive is in the store) as soon as a worker is free; thread-safe."""
        size = _size(archive_path(self.settings, a)) if self.workers else 0
        with self.cond:
            self.added.append(a)
            if self.workers:
                if not self.procs:
                    self._start()
                heapq.heappush(self.waiting, (-size, len(self.added) - 1))
                self._deal()

    def _deal(self) -> None:
        """Give the biggest waiting archives to the live workers with room (under ``cond``)."""
        for w, proc in enumerate(self.procs):
            while self.waiting and self.alive[w] and len(self.busy[w]) < DEPTH:
                _, i = heapq.heappop(self.waiting)
                self.busy[w].add(i)
                try:                           # a line is short and at most DEPTH wait: never blocks
                    proc.stdin.write(json.dumps([i, *self._job(self.added[i])]).encode() + b"\n")  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                except (BrokenPipeError, ValueError):        # the worker died: its reader says so
                    break

    def _read(self, w: int) -> None:
        out = self.procs[w].stdout
        assert out is not None
        for line in out:                           # one line per archive, as each finishes
            i, why = json.loads(line)
            with self.cond:
                self.results[i] = why
                self.busy[w].discard(i)
                self._deal()
                n, note = len(self.results), self.on_done
                self.cond.notify_all()
            if note is not None:
                note(n)
        with self.cond:                            # EOF: the worker ended (or died): its own are lost
            self.alive[w] = False
            self.waiting.extend((0, i) for i in self.busy[w])
            heapq.heapify(self.waiting)
            self.busy[w].clear()
            self._deal()
            self.cond.notify_all()

    def _settled(self) -> bool:
        return len(self.results) == len(self.added) or not any(self.alive)

    def wait(self, on_done: Callable[[int], None]) -> None:
        """No more archives: wait for every one added; raise for the first that failed."""
        with self.cond:
            self.on_done, n = on_done, len(self.results)
        if not self.workers:
            _collect(self.settings, self.added, (extract_one(*self._job(a)) for a in self.added), on_done)
            return
        if n:
            on_done(n)
        with self.cond:
            self.cond.wait_for(self._settled)
        self._stop()
        for i, a in enumerate(self.added):
            if i not in self.results:
                raise _extract_error(self.settings, a, "the worker process extracting it died")
            if self.results[i] is not None:
                raise _extract_error(self.settings, a, str(self.results[i]))

    def _stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self.readers:
            t.join(timeout=30)

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for t in self.readers:
            t.join(timeout=30)
        for proc in self.procs:
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]


def _collect(settings: Settings, need: list[Artifact], results: Iterable[str | None],
             on_done: Callable[[int], None]) -> None:
    for n, (a, why) in enumerate(zip(need, results, strict=True), 1):
        if why is not None:
            raise _extract_error(settings, a, why)
        on_done(n)
