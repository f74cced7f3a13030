"""Where a bundle's members live in a cache, and laying out a verified import there.

The layout is warm's: archives in ``conda/archives/<subdir>/<file>``, extracted packages in
``${PIXI_CACHE_DIR}/pkgs`` (made by py-rattler from those archives, as a download would make
them), wheels in ``pypi/wheels``, the manifest of each lock in ``manifests/<lock-sha256>.json``
and the latest in ``cache-manifest.json``, written last: it is what ``install`` trusts. Model
weights go into the hub cache (bundle_models.py) before the manifest that records them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from auto_infer.core.progress import Step
from auto_infer.core.settings import Settings
from auto_infer.install import archives, bundle_models, cache, importer
from auto_infer.install import bundle_format as fmt
from auto_infer.install import manifest as manifests
from auto_infer.install.lockfile import Artifact, LockedEnv

TEMPLATE_FILES = ("pixi.toml", "pixi.lock")


def member_path(a: Artifact) -> str:
    return fmt.conda_path(archives.subdir(a), a.filename) if a.kind == "conda" else fmt.pypi_path(a.filename)


def store_path(settings: Settings, a: Artifact) -> Path:
    return importer.store_path(settings, a)


def in_cache(settings: Settings, a: Artifact) -> bool:
    """Enough of the artifact is here for an offline install (a delta's base)."""
    if a.kind == "conda":
        return cache.conda_entry_problem(settings.conda_pkgs_dir, a) is None or (
            importer.store_path(settings, a).is_file()
            and (a.size is None or importer.store_path(settings, a).stat().st_size == a.size)
        )
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


# ---- checks before anything is placed ---------------------------------------------------------

def check_artifacts(index: fmt.Index, locked: LockedEnv, manifest: manifests.Manifest,
                    refuse: Callable[[str], UserError]) -> None:
    """The carried artifacts must be the lock's, by the lock's own sha256 (not only the index's)."""
    by_member = {member_path(a): a for a in locked.artifacts}
    measured = manifest.pypi_sha256()
    for m in index.members:
        if m.kind not in ("conda", "pypi"):
            continue
        a = by_member.get(m.path)
        if a is None:
            raise refuse(f"member {m.path} is not an artifact of the bundle's pixi.lock")
        want = a.sha256 or measured.get(a.filename)
        if want and want != m.sha256:
            raise refuse(f"member {m.path} has sha256 {m.sha256}, the lock says {want}")
    bundle_models.check(index, manifest.data, refuse)


def check_base(settings: Settings, index: fmt.Index, locked: LockedEnv, manifest: manifests.Manifest,
               file: Path, refuse: Callable[[str, Path], UserError]) -> None:
    """A delta carries only what the base lacked: everything else must already be in this cache."""
    carried = {m.path for m in index.members}
    absent = [f"{a.name} {a.version} ({a.kind})" for a in locked.artifacts
              if member_path(a) not in carried and not in_cache(settings, a)]
    absent += [f"{name} (model file)" for name in bundle_models.absent(settings, index, manifest.data)]
    if not absent:
        return
    if index.since:
        base = index.since_lock
        raise UserError(
            f"{file.name} is a delta bundle over the lock sha256 {base[:12]}…, and this cache lacks {len(absent)} "
            f"artifacts or model files it does not carry (first: {absent[0]}); nothing was imported",
            where=str(settings.cache_root),
            fix=f"import first the bundle of the lock sha256 {base[:12]}… (its import prints that lock; "
                f"`manifests/{base}.json` in the cache root shows it is there), then this one")
    raise refuse(f"the bundle does not carry {len(absent)} artifacts or model files its lock and manifest name "
                 f"(first: {absent[0]})", file)


# ---- the cache (through the importer) ----------------------------------------------------------

def commit(settings: Settings, locked: LockedEnv, manifest: manifests.Manifest, members: Path, template: Path,
           s: Step) -> tuple[int, float, int]:
    """Everything verified: archives and wheels in, packages extracted, audited, weights, template,
    manifest last. Returns how many conda packages were extracted, in how many seconds, and how many
    model files were placed."""
    staged = [(a, importer.Staged(member_path(a), members / member_path(a), a.sha256 or "", 0))
              for a in locked.artifacts if (members / member_path(a)).is_file()]
    importer.place(settings, [(a, x if a.sha256 else _measured(x)) for a, x in staged], s)
    t0 = time.monotonic()
    extracted = importer.fill(settings, locked, s)
    secs = time.monotonic() - t0
    importer.audit_or_refuse(settings, locked, "rattler", "the import")
    placed = bundle_models.place(settings, manifest.data, members)
    _place_template(settings, members / "template", template)
    importer.commit(settings, bundle_models.merged(settings, manifest.data))
    return extracted, secs, placed


def _measured(x: importer.Staged) -> importer.Staged:
    """A wheel the lock has no hash for: its hash was checked against the index while staged; measure it."""
    return importer.Staged(x.member, x.path, sha256_file(x.path), x.size)


def write_marker(settings: Settings, marker: Path, index: fmt.Index, file: Path) -> None:
    atomic_write_json(marker, {"lock_sha256": index.lock_sha256, "environment": index.environment,
                               "platform": index.platform, "since": index.since,
                               "members": len(index.members), "file": file.name,
                               "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
