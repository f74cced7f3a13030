"""Where a bundle's members live in a cache, and laying out a verified import there.

The layout is warm's: archives in ``conda/archives/<subdir>/<file>``, extracted packages in
``${PIXI_CACHE_DIR}/pkgs`` (made by py-rattler from those archives, as a download would make
them), wheels in ``pypi/wheels``, the manifest of each lock in ``manifests/<lock-sha256>.json``
and the latest in ``cache-manifest.json``, written last: it is what ``install`` trusts. Model
weights go into the hub cache (bundle_models.py) before the manifest that records them.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from auto_infer.core.progress import Step
from auto_infer.core.settings import Settings
from auto_infer.install import archives, bundle_models, cache
from auto_infer.install import bundle_format as fmt
from auto_infer.install.lockfile import Artifact, LockedEnv

TEMPLATE_FILES = ("pixi.toml", "pixi.lock")


def member_path(a: Artifact) -> str:
    return fmt.conda_path(archives.subdir(a), a.filename) if a.kind == "conda" else fmt.pypi_path(a.filename)


def store_path(settings: Settings, a: Artifact) -> Path:
    return archives.archive_path(settings, a) if a.kind == "conda" else settings.wheel_dir / a.filename


def in_cache(settings: Settings, a: Artifact) -> bool:
    """Enough of the artifact is here for an offline install (a delta's base)."""
    if a.kind == "conda":
        return (cache.conda_entry_problem(settings.conda_pkgs_dir, a) is None
                or (store_path(settings, a).is_file() and (a.size is None or store_path(settings, a).stat().st_size == a.size)))
    store = cache.WheelStore(settings.wheel_dir)
    got = store.verified_sha(a.filename)
    store.save()
    return got is not None and (a.sha256 is None or got == a.sha256)


# ---- the template ----------------------------------------------------------------------------

def _placed_record(settings: Settings) -> dict[str, dict[str, str]]:
    data = read_json(settings.bundles_dir / "templates.json")
    return data if isinstance(data, dict) else {}


def _files(folder: Path) -> dict[str, str]:
    return {n: sha256_file(folder / n) for n in TEMPLATE_FILES if (folder / n).is_file()}


def template_target(settings: Settings, lock_sha: str, staged: Path) -> Path:
    """AUTO_INFER_SGLANG_TEMPLATE_DIR when it is empty, already this template, or what an earlier
    import put there (unedited) and writable; else ${WORKSPACE}/imported-templates/<lock-sha12>.
    A template someone edited is never overwritten: refuse, before anything is laid out."""
    fallback = settings.workspace / "imported-templates" / lock_sha[:12]
    t = settings.template_dir
    if t is None:
        return fallback
    if t.exists() and not t.is_dir():
        return fallback
    current = _files(t) if t.is_dir() else {}
    if current and current != _files(staged) and current != _placed_record(settings).get(str(t)):
        raise UserError(
            f"the template folder {t} holds a pixi.toml/pixi.lock that no bundle import put there (edited, or "
            "another template); it was not overwritten and nothing was imported",
            where="AUTO_INFER_SGLANG_TEMPLATE_DIR",
            fix="move that folder's pixi.toml and pixi.lock away (or point AUTO_INFER_SGLANG_TEMPLATE_DIR at an "
                "empty folder, or unset it to get the template in ${WORKSPACE}/imported-templates/), then import again")
    probe = t if t.is_dir() else t.parent
    if not os.access(probe, os.W_OK) or (not t.exists() and not probe.is_dir()):
        return fallback
    return t


def _place_template(settings: Settings, staged: Path, target: Path) -> None:
    for name in TEMPLATE_FILES:
        data = (staged / name).read_bytes()
        if not (target / name).is_file() or (target / name).read_bytes() != data:
            atomic_write_bytes(target / name, data)
    if target == settings.template_dir:
        record = _placed_record(settings)
        record[str(target)] = _files(target)
        atomic_write_json(settings.bundles_dir / "templates.json", record)


# ---- the cache -------------------------------------------------------------------------------

def _move_in(settings: Settings, locked: LockedEnv, members: Path, s: Step) -> None:
    stores = {"conda": cache.WheelStore(settings.conda_archive_dir), "pypi": cache.WheelStore(settings.wheel_dir)}
    for a in locked.artifacts:
        staged = members / member_path(a)
        if not staged.is_file():
            continue
        dest = store_path(settings, a)
        dest.parent.mkdir(parents=True, exist_ok=True)
        s.note(f"placing {a.filename}")
        sha = sha256_file(staged) if a.sha256 is None else a.sha256   # verified against the index already
        os.replace(staged, dest)
        store = stores[a.kind]
        store.remember(str(dest.relative_to(store.dir)), sha)
    for store in stores.values():
        store.save()


def _extract(settings: Settings, locked: LockedEnv, s: Step) -> int:
    """Fill pkgs/ from the archives the way warm does (rattler.fill_package_cache); entries missing,
    damaged or of another build are extracted again."""
    pkgs = settings.conda_pkgs_dir
    need = [a for a in locked.conda if cache.conda_entry_problem(pkgs, a)]
    if not need:
        return 0
    for a in need:                       # damaged or foreign entries: extract them again
        shutil.rmtree(pkgs / a.cache_key, ignore_errors=True)
        (pkgs / f"{a.cache_key}.lock").unlink(missing_ok=True)
    s.note(f"extracting {len(need)} conda packages into {pkgs}")
    from auto_infer.install.backends.rattler import fill_package_cache
    fill_package_cache(settings, locked)         # as warm does: rattler, from the archive store
    left = [a.cache_key for a in locked.conda if cache.conda_entry_problem(pkgs, a)]
    if left:
        raise UserError(f"{len(left)} conda packages are still not usable in {pkgs} (first: {left[0]})",
                        where=str(pkgs), fix="import again; if it persists, report it")
    return len(need)


def commit(settings: Settings, locked: LockedEnv, manifest: dict[str, Any], staging: Path, template: Path,
           s: Step) -> tuple[int, float, int]:
    """Everything verified: archives and wheels in, packages extracted, weights, template, manifest last.
    Returns how many conda packages were extracted, in how many seconds, and how many model files placed."""
    members = staging / "members"
    _move_in(settings, locked, members, s)
    t0 = time.monotonic()
    extracted = _extract(settings, locked, s)
    secs = time.monotonic() - t0
    placed = bundle_models.place(settings, manifest, members)
    _place_template(settings, members / "template", template)
    cache.write_manifest(settings, bundle_models.merged(settings, manifest))
    return extracted, secs, placed


def write_marker(settings: Settings, marker: Path, index: dict[str, Any], file: Path) -> None:
    atomic_write_json(marker, {"lock_sha256": index["lock_sha256"], "environment": index.get("environment"),
                               "platform": index.get("platform"), "since": index.get("since"),
                               "members": len(index["members"]), "file": file.name,
                               "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
