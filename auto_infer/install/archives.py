"""The conda archive store: the lock's original .conda/.tar.bz2 files, kept by `warm` and carried
by bundles, at ``${CACHE_ROOT}/conda/archives/<subdir>/<file>``; and the lock's records pointed at
them, so py-rattler fills the package cache from local files exactly as a download would (same cache
key, same sha256 in the cache's .lock file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auto_infer.core.settings import Settings
from auto_infer.install.lockfile import Artifact, LockedEnv


def subdir(a: Artifact) -> str:
    """The channel subdir of a conda artifact: its URL path's folder (…/conda-forge/linux-64/x.conda),
    read and checked by lockfile (Artifact.subdir)."""
    return a.subdir or "noarch"


def archive_path(settings: Settings, a: Artifact) -> Path:
    return settings.conda_archive_dir / subdir(a) / a.filename


def local_records(settings: Settings, locked: LockedEnv) -> list[Any]:
    """The lock's rattler records with their URLs pointing at the archive store (file://)."""
    from rattler import RepoDataRecord

    return [RepoDataRecord(r, r.file_name, archive_path(settings, a).as_uri(), r.channel or "")
            for r, a in zip(locked.raw_records, locked.conda, strict=True)]
