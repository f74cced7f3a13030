"""The conda archive store: the lock's original .conda/.tar.bz2 files, kept by `warm` and carried
by bundles, at ``${CACHE_ROOT}/conda/archives/<subdir>/<file>``; and filling the package cache from
them exactly as a download would (same cache key, same sha256 in the cache's ``<key>.lock``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
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
    rattler would after a download: ``pkgs/<name>-<version>-<build>/`` and ``<key>.lock`` with the
    archive's sha256, through rattler's own extractor. On every core: one worker process per core,
    the archives dealt out by size (the extractor holds the GIL, and rattler's async one can crash
    the interpreter at exit); a few archives are extracted in this process."""
    pkgs = settings.conda_pkgs_dir
    pkgs.mkdir(parents=True, exist_ok=True)
    jobs = [(str(archive_path(settings, a)), str(pkgs), a.cache_key, a.sha256) for a in need]
    workers = min(os.cpu_count() or 1, len(jobs) // INLINE)
    if workers < 2:
        _collect(settings, need, (extract_one(*job) for job in jobs), on_done)
        return
    shares: list[list[int]] = [[] for _ in range(workers)]
    load = [0] * workers
    for i in sorted(range(len(jobs)), key=lambda i: -os.path.getsize(jobs[i][0])):
        w = load.index(min(load))                 # the biggest archive to the least loaded worker
        shares[w].append(i)
        load[w] += os.path.getsize(jobs[i][0])
    # cwd: the package cache, so that no auto_infer/ folder of the current directory is imported
    procs = [subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              cwd=pkgs) for _ in shares]
    for proc, share in zip(procs, shares, strict=True):
        assert proc.stdin is not None
        proc.stdin.write(json.dumps([[i, *jobs[i]] for i in share]).encode())
        proc.stdin.close()
    results: dict[int, str | None] = {}
    for line in _lines(procs):                     # one line per archive, as each finishes
        i, why = json.loads(line)
        results[i] = why
        on_done(len(results))
    for i, a in enumerate(need):
        if i not in results:
            raise _extract_error(settings, a, "the worker process extracting it died")
        if results[i] is not None:
            raise _extract_error(settings, a, str(results[i]))


def _lines(procs: list[subprocess.Popen[bytes]]) -> Iterator[bytes]:
    import selectors

    with selectors.DefaultSelector() as sel:
        for proc in procs:
            assert proc.stdout is not None
            sel.register(proc.stdout, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if line:
                    yield line
                else:
                    sel.unregister(key.fileobj)
    for proc in procs:
        proc.wait()


INLINE = 8      # archives per worker process at least: fewer are extracted in this process
WORKER = ("import json, sys\nfrom auto_infer.install.archives import extract_one\n"
          "for i, *job in json.load(sys.stdin):\n    print(json.dumps([i, extract_one(*job)]), flush=True)")


def _collect(settings: Settings, need: list[Artifact], results: Iterable[str | None],
             on_done: Callable[[int], None]) -> None:
    for n, (a, why) in enumerate(zip(need, results, strict=True), 1):
        if why is not None:
            raise _extract_error(settings, a, why)
        on_done(n)
