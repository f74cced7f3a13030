"""The cache manifest (what warm put into the cache) and the audit (is it all still there?)."""

from __future__ import annotations

import errno
import functools
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fanout import Pending, start
from auto_infer.core.fsutil import atomic_write_json, read_json, sha256_file
from auto_infer.core.settings import Settings
from auto_infer.install import manifest as manifests
from auto_infer.install.lockfile import Artifact, LockedEnv, canonical_name

# ---- audit -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Missing:
    artifact: Artifact
    why: str

    def line(self) -> str:
        return f"{self.artifact.name} {self.artifact.version} ({self.artifact.kind}): {self.why}"


def conda_entry_problem(pkgs: Path, a: Artifact) -> str | None:
    d = pkgs / a.cache_key
    if not (d / "info" / "index.json").is_file():
        return "not in the conda package cache"
    lock = pkgs / f"{a.cache_key}.lock"
    try:
        raw = lock.read_bytes()
    except OSError:
        raw = b""
    if len(raw) >= 40 and a.sha256 and raw[8:40].hex() != a.sha256:
        return "cached under another sha256 (a different build of the same name)"
    damage = extracted_damage(d)
    return f"{DAMAGED}: {damage}" if damage else None


def conda_problems(settings: Settings, conda: Sequence[Artifact]) -> list[str | None]:
    """:func:`conda_entry_problem` of each entry, on every core (every file of every entry is stat-ed;
    a fork costs ~1 ms, 8 entries are ~0.5-5 ms of work)."""
    with start_audit(settings, conda) as pending:
        return pending.result()


def start_audit(settings: Settings, conda: Sequence[Artifact]) -> Pending:
    """:func:`conda_problems`, its workers forked now: they stat the cache while this process goes
    on (loading the installer, reading the manifest, checking the wheels) until :func:`audit` takes
    the result. Use it as a context manager."""
    return start(functools.partial(conda_entry_problem, settings.conda_pkgs_dir), conda, per_worker=8)


DAMAGED = "damaged in the conda package cache"


def extracted_damage(d: Path) -> str | None:
    """What an extracted package lacks: unreadable metadata, a file missing or of the wrong size.

    rattler re-downloads an entry whose metadata it cannot read (network, during an offline
    install) and links a missing or truncated file as it is, or fails; so check before it runs.
    Sizes only: same-size changes are not detected (hashing the whole cache costs too much)."""
    try:
        json.loads((d / "info" / "index.json").read_bytes())
        paths = d / "info" / "paths.json"
        entries = json.loads(paths.read_bytes())["paths"] if paths.exists() else []
        base = f"{d}/"                       # str, not pathlib: 20,000 joins cost more than the lstat
        for e in entries:
            rel, kind, size = e["_path"], e.get("path_type"), e.get("size_in_bytes")
            try:
                st = os.lstat(base + rel)
            except OSError:
                return f"{rel} is missing"
            if kind != "softlink" and size is not None and st.st_size != size:
                return f"{rel} has {st.st_size} bytes, not {size}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its info/index.json or info/paths.json is unreadable"
    return None


class WheelStore:
    """The pixi-free backend's wheel files, with a stat-keyed record of verified hashes."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.record_path = directory / ".verified.json"
        data = read_json(self.record_path)
        self.record: dict[str, Any] = data if isinstance(data, dict) else {}   # only a memo: damaged = empty
        self.dirty = False

    def _key(self, filename: str) -> list[int] | None:
        try:
            st = (self.dir / filename).stat()
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):      # a lock entry that names no file (a source tree, git)
            return None
        # ctime too: an in-place edit that puts the mtime back still moves the ctime
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]

    def remember(self, filename: str, sha: str) -> None:
        """Record ``sha`` as the verified hash of the file as it is now (just measured while writing it)."""
        key = self._key(filename)
        if key is not None:
            self.record[filename] = [*key, sha]
            self.dirty = True

    def verified_sha(self, filename: str) -> str | None:
        path = self.dir / filename
        key = self._key(filename)
        if key is None:
            return None
        hit = self.record.get(filename)
        if isinstance(hit, list) and len(hit) == 5 and hit[:4] == key:
            return str(hit[4])
        sha = sha256_file(path)
        self.record[filename] = [*key, sha]
        self.dirty = True
        return sha

    def save(self) -> None:
        """Write the memo; where the folder is read-only (a cache mounted read-only), skip it."""
        if self.dirty and self.dir.is_dir():
            try:
                atomic_write_json(self.record_path, self.record)
            except PermissionError:
                return
            except OSError as exc:
                if exc.errno != errno.EROFS:
                    raise
                return
            self.dirty = False


def pixi_wheel_cached(settings: Settings, a: Artifact) -> bool:
    """Best effort: does pixi's uv cache hold this wheel? (layout is uv-version dependent)."""
    root = settings.pixi_cache_dir / "uv-cache"
    name = canonical_name(a.name)
    for bucket in root.glob("wheels-v*"):
        for cand in bucket.glob(f"*/{name}") or ():
            if any(a.version in p.name for p in cand.iterdir()):
                return True
        for cand in bucket.glob(f"index/*/{name}"):
            if any(a.version in p.name for p in cand.iterdir()):
                return True
    return False


def audit(settings: Settings, locked: LockedEnv, manifest: manifests.Manifest | None,
          installer: str, conda: Pending | None = None) -> list[Missing]:
    """What the cache lacks for ``locked``; ``conda``: the conda side already started (start_audit)."""
    pypi: list[Missing] = []
    expected = manifest.pypi_sha256() if manifest else {}
    store = WheelStore(settings.wheel_dir)
    for a in locked.pypi:
        if a.uncacheable:
            pypi.append(Missing(a, f"{a.uncacheable}: it can never be cached"))
            continue
        if installer == "pixi":
            if not pixi_wheel_cached(settings, a):
                pypi.append(Missing(a, "not in pixi's uv cache"))
            continue
        want = a.sha256 or expected.get(a.filename)
        got = store.verified_sha(a.filename)
        if got is None:
            pypi.append(Missing(a, f"wheel not in {settings.wheel_dir}"))
        elif want and got != want:
            pypi.append(Missing(a, f"wheel content changed: sha256 {got[:12]}… != {want[:12]}…"))
    store.save()
    whys = conda.result() if conda is not None else conda_problems(settings, locked.conda)
    return [Missing(a, why) for a, why in zip(locked.conda, whys, strict=True) if why] + pypi


def preflight(settings: Settings, locked: LockedEnv, installer: str,
              conda: Pending | None = None) -> manifests.Manifest:
    """Prove the cache can do the install, or raise a UserError that says what to run (``conda``:
    the conda side of the audit, already started by :func:`start_audit`)."""
    manifest = manifests.read(settings, locked.sha256)
    run_warm = ("run `auto-infer warm` (or `doit warm`) where the network is, with the same "
                "AUTO_INFER_SGLANG_CACHE_ROOT, then install again (air-gapped: `auto-infer bundle import FILE` "
                "of a bundle exported there)")
    if manifest is None:
        raise UserError(f"no cache manifest at {settings.manifest_path}: the cache was never warmed "
                        f"({len(locked.artifacts)} artifacts needed)",
                        where="AUTO_INFER_SGLANG_CACHE_ROOT", fix=run_warm)
    if manifest.lock_sha256 != locked.sha256:
        missing = audit(settings, locked, None, installer, conda)
        raise UserError(
            f"the cache was warmed for another pixi.lock: sha256 {manifest.lock_sha256[:12]}… "
            f"!= {locked.sha256[:12]}… ({len(missing)} of {len(locked.artifacts)} artifacts not cached)",
            where=str(settings.manifest_path), fix=run_warm)
    missing = audit(settings, locked, manifest, installer, conda)
    if missing:
        shown = "\n".join(f"    - {m.line()}" for m in missing[:8])
        more = f"\n    … and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise UserError(f"{len(missing)} of {len(locked.artifacts)} artifacts are missing from the cache:\n"
                        f"{shown}{more}", where=str(settings.cache_root), fix=run_warm)
    return manifest
