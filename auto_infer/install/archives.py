"""The conda archive store: the lock's original .conda/.tar.bz2 files, kept by `warm` and carried
by bundles, at ``${CACHE_ROOT}/conda/archives/<subdir>/<file>``; and filling the package cache from
them exactly as a download would (same cache key, same sha256 in the cache's ``<key>.lock``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_bytes, disk_full
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


def _extract_error(settings: Settings, a: Artifact, exc: Exception) -> UserError:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
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


def extract_into_cache(settings: Settings, need: list[Artifact], on_done: Callable[[int], None]) -> None:
    """Extract each archive of ``need`` from the archive store straight into the package cache, as
    rattler would after a download: ``pkgs/<name>-<version>-<build>/`` and ``<key>.lock`` with the
    archive's sha256. All at once through rattler's own extractor, which runs outside the GIL (a
    tokio pool over every core); each entry is extracted beside its place and renamed into it whole."""
    import asyncio

    from rattler.networking import Client
    from rattler.package_streaming import download_and_extract

    pkgs = settings.conda_pkgs_dir
    pkgs.mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(max(2, os.cpu_count() or 2))
    finished = 0

    async def one(client: Client, a: Artifact) -> None:
        nonlocal finished
        tmp = pkgs / f"{PARTIAL}{a.cache_key}"
        shutil.rmtree(tmp, ignore_errors=True)
        async with limit:
            try:
                sha, _md5 = await download_and_extract(client, archive_path(settings, a).as_uri(), tmp,
                                                       bytes.fromhex(a.sha256) if a.sha256 else None)
            except Exception as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise _extract_error(settings, a, exc) from None
        shutil.rmtree(pkgs / a.cache_key, ignore_errors=True)
        os.replace(tmp, pkgs / a.cache_key)
        atomic_write_bytes(pkgs / f"{a.cache_key}.lock", REVISION + bytes(sha))
        finished += 1
        on_done(finished)

    async def run() -> None:
        client = Client()
        await asyncio.gather(*(one(client, a) for a in need))

    asyncio.run(run())
