"""Import a pixi-pack archive into the cache, so ``install`` installs the ORIGINAL pixi.lock offline.

infer-dev re-locked after unpacking (a re-solve: the installed set could differ from the lock). Here
the pack only supplies artifacts; the project's own pixi.lock says what is installed. No network.

``import_pixi_pack(settings, path)``, for ``bundle import`` (sniff the format with
``is_pixi_pack``), accepts a plain tar or the self-extracting ``.sh`` (read in place, never run:
see pixipack_archive). In order, before anything is written to the cache:

1. every member name is safe; ``pixi-pack.json`` has format version "1" and the platform this
   install wants (else: refused, naming both platforms);
2. the pins of ``environment.yml`` are those of the lock's environment (else: "another
   environment", naming the packages that differ), and the pack holds every artifact the lock
   needs (else: refused, naming the missing ones), its repodata agreeing with the lock's sha256;
3. each needed member is copied into a staging folder inside the cache root while hashed: a conda
   archive must match its repodata record (size, sha256; md5 when there is no sha256) and the
   lock's sha256, a wheel the lock's sha256 (pixi-pack stores no wheel hashes; without a lock
   hash it is measured and recorded). Any mismatch refuses, naming member, expected and actual.

Only then: archives go to ``conda_archive_dir/<subdir>/<file>``, the package cache is filled from
them as warm does (rattler.fill_package_cache), wheels go to ``wheel_dir``, and the cache manifest
is written LAST, atomically: ``install`` trusts nothing half-imported. A re-import is a no-op.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import disk_full_is_a_user_error
from auto_infer.core.progress import say, step
from auto_infer.core.runlock import exclusive
from auto_infer.core.settings import Settings
from auto_infer.install import backends, cache, lockfile
from auto_infer.install import pixipack_archive as archive
from auto_infer.install.archives import archive_path
from auto_infer.install.backends.rattler import FILL_SCRATCH, fill_package_cache
from auto_infer.install.cache import WheelStore
from auto_infer.install.fetch import Fetched
from auto_infer.install.health import locked_env
from auto_infer.install.lockfile import Artifact, LockedEnv, canonical_name
from auto_infer.install.pixipack_archive import is_pixi_pack

__all__ = ["import_pixi_pack", "is_pixi_pack"]

FORMAT = "1"
SHOWN = 8
CHUNK = 1 << 20
STAGING = ".pixi-pack-import."    # inside the cache root; one left by a killed import is removed


@dataclass(frozen=True)
class Want:
    """One artifact the lock needs, where the pack holds it, and what it must hash to."""
    artifact: Artifact
    member: str                  # channel/<subdir>/<file> or pypi/<file>
    dest: Path
    store: WheelStore
    record: dict[str, Any]       # the pack's repodata record ({} for a wheel)

    @property
    def rel(self) -> str:
        return str(self.dest.relative_to(self.store.dir))


def _listed(items: list[str]) -> str:
    more = f"\n    … and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "".join(f"\n    - {x}" for x in items[:SHOWN]) + more


def _json(tf: tarfile.TarFile, found: dict[str, tarfile.TarInfo], name: str, path: Path) -> Any:
    if name not in found:
        raise UserError(f"{path} is not a complete pixi-pack archive: it has no {name}", where=str(path),
                        fix="pass the environment.tar or .sh that pixi-pack wrote")
    try:
        return json.loads(archive.read_small(tf, found[name], path))
    except ValueError as exc:
        raise UserError(f"the pack's {name} is not JSON ({exc})", where=str(path), fix=archive.REBUILD) from None


def _check_metadata(meta: Any, settings: Settings, path: Path) -> None:
    where = f"{path} ({archive.METADATA})"
    if not isinstance(meta, dict) or str(meta.get("version")) != FORMAT:
        got = meta.get("version") if isinstance(meta, dict) else meta
        raise UserError(f"pixi-pack format version {got!r} is not supported (supported: {FORMAT!r})",
                        where=where, fix="build the pack with pixi-pack 0.x (format 1)")
    if meta.get("platform") != settings.platform:
        raise UserError(f"the pack holds an environment for {meta.get('platform')}, this install wants "
                        f"{settings.platform}; nothing was imported", where=where,
                        fix=f"use the pack built with `pixi-pack -p {settings.platform}` (AUTO_INFER_PLATFORM "
                            "picks another platform)")


def _pins(text: str) -> dict[str, str]:
    """environment.yml's pins: conda ``name=version=build``, pip ``name==version`` (pixi-pack's format)."""
    pins = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"\s*- ([^=\s]+)=([^=\s]+)=(\S+)\s*", line):
            pins[m[1]] = f"{m[2]} {m[3]}"
        elif m := re.fullmatch(r"\s*- ([^=\s-][^=\s]*)==(\S+)\s*", line):
            pins[f"pypi:{canonical_name(m[1])}"] = m[2]
    return pins


def _check_environment(tf: tarfile.TarFile, found: dict[str, tarfile.TarInfo], locked: LockedEnv,
                       path: Path) -> None:
    if archive.ENVIRONMENT not in found:
        raise UserError(f"{path} is not a complete pixi-pack archive: it has no {archive.ENVIRONMENT}",
                        where=str(path), fix=archive.REBUILD)
    pack = _pins(archive.read_small(tf, found[archive.ENVIRONMENT], path).decode(errors="replace"))
    lock = {a.name: f"{a.version} {a.build}" for a in locked.conda}
    lock.update({f"pypi:{canonical_name(a.name)}": a.version for a in locked.pypi})
    differ = [f"{n}: the pack has {pack[n]}, pixi.lock has {lock[n]}" for n in sorted(pack) if n in lock
              and pack[n] != lock[n]]
    extra = [f"{n} {pack[n]}: only in the pack" for n in sorted(pack) if n not in lock]
    if differ or extra:
        lacking = [f"{n} {lock[n]}: only in pixi.lock" for n in sorted(lock) if n not in pack]
        raise UserError(
            f"the pack holds another environment than pixi.lock's {locked.environment!r} for {locked.platform}: "
            f"{len(differ) + len(extra) + len(lacking)} package(s) differ:{_listed(differ + extra + lacking)}",
            where=f"{path} ({archive.ENVIRONMENT})",
            fix=f"use the pack built from this template's lock (`pixi-pack -e {locked.environment}`), or set "
                "AUTO_INFER_SGLANG_PIXI_ENV to the environment the pack was built for")


def _repodata(tf: tarfile.TarFile, found: dict[str, tarfile.TarInfo], subdir: str, path: Path,
              memo: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if subdir not in memo:
        name = f"channel/{subdir}/repodata.json"
        data = _json(tf, found, name, path) if name in found else {}
        records = {**(data.get("packages") or {}), **(data.get("packages.conda") or {})}
        memo[subdir] = {k: v for k, v in records.items() if isinstance(v, dict)}
    return memo[subdir]


def _plan(settings: Settings, locked: LockedEnv, tf: tarfile.TarFile, found: dict[str, tarfile.TarInfo],
          path: Path) -> list[Want]:
    """What the lock needs and where the pack holds it; refuse when something is missing or differs."""
    archives, wheels = WheelStore(settings.conda_archive_dir), WheelStore(settings.wheel_dir)
    memo: dict[str, dict[str, Any]] = {}
    wants, missing, disagree = [], [], []
    for a, raw in zip(locked.conda, locked.raw_records, strict=True):
        member = f"channel/{raw.subdir}/{a.filename}"
        record = _repodata(tf, found, raw.subdir, path, memo).get(a.filename)
        if member not in found or not found[member].isfile() or record is None:
            missing.append(f"{a.name} {a.version} {a.build} ({member}{'' if record else ', not in repodata.json'})")
        elif a.sha256 and record.get("sha256") and record["sha256"] != a.sha256:
            disagree.append(f"{member}: the pack's repodata says sha256 {record['sha256']}, pixi.lock {a.sha256}")
        else:
            wants.append(Want(a, member, archive_path(settings, a), archives, record))
    for a in locked.pypi:
        member = f"pypi/{a.filename}"
        if member not in found or not found[member].isfile():
            missing.append(f"{a.name} {a.version} (wheel {member})")
        else:
            wants.append(Want(a, member, settings.wheel_dir / a.filename, wheels, {}))
    if missing:
        raise UserError(f"the pack lacks {len(missing)} of {len(locked.artifacts)} artifacts pixi.lock needs; "
                        f"nothing was imported:{_listed(missing)}", where=str(path),
                        fix=f"build the pack from this template's pixi.lock (`pixi-pack -e {locked.environment} "
                            f"-p {locked.platform}`), or run `warm` where the network is")
    if disagree:
        raise UserError(f"the pack was built from another lock: {len(disagree)} package(s) have other hashes; "
                        f"nothing was imported:{_listed(disagree)}", where=str(path),
                        fix="build the pack from this template's pixi.lock")
    return wants


def _complete(settings: Settings, locked: LockedEnv, installer: str) -> bool:
    manifest = cache.read_manifest(settings)
    return bool(manifest and manifest.get("lock_sha256") == locked.sha256
                and not cache.audit(settings, locked, manifest, installer))


def _copy(tf: tarfile.TarFile, want: Want, target: Path, path: Path) -> tuple[str, str, int]:
    """Copy the member to ``target`` while hashing it: (sha256, md5, size)."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = tf.extractfile(want.member)
        assert src is not None                       # _plan took files only
        with src, open(target, "wb") as out:
            while block := src.read(CHUNK):
                sha.update(block)
                md5.update(block)
                out.write(block)
                size += len(block)
    except (tarfile.TarError, binascii.Error, EOFError) as exc:
        raise UserError(f"the pack's {want.member} cannot be read: the archive is damaged or truncated ({exc}); "
                        "nothing was imported", where=str(path), fix=archive.REBUILD) from None
    return sha.hexdigest(), md5.hexdigest(), size


def _mismatch(want: Want, sha: str, md5: str, size: int) -> str | None:
    rec, lock_sha = want.record, want.artifact.sha256
    if rec.get("size") is not None and rec["size"] != size:
        return f"{want.member}: {size} bytes, the pack's repodata.json says {rec['size']}"
    expected = lock_sha or rec.get("sha256")
    if expected and sha != expected:
        source = "pixi.lock" + (" and the pack's repodata.json" if rec.get("sha256") else "")
        return f"{want.member}: sha256 {sha}, expected {expected} ({source})"
    if not expected and rec.get("md5") and md5 != rec["md5"]:
        return f"{want.member}: md5 {md5}, expected {rec['md5']} (the pack's repodata.json)"
    return None


def _stage(tf: tarfile.TarFile, wants: list[Want], staging: Path, path: Path, note: Any) -> dict[str, Fetched]:
    """Copy and verify every needed member not already in the cache; the lock's URL -> Fetched."""
    got: dict[str, Fetched] = {}
    bad: list[str] = []
    total = 0
    for i, want in enumerate(wants, 1):
        have = want.store.verified_sha(want.rel) if want.dest.is_file() else None
        if have and have == (want.artifact.sha256 or want.record.get("sha256") or have):
            continue
        sha, md5, size = _copy(tf, want, staging / want.member, path)
        total += size
        note(f"verified {i}/{len(wants)} artifacts, {total / 1e6:.1f} MB copied, {len(bad)} refused")
        why = _mismatch(want, sha, md5, size)
        if why:
            bad.append(why)
        else:
            got[want.artifact.url] = Fetched(sha, size, f"pixi-pack {path.name}: {want.member}")
    if bad:
        what = "member of the pack does not match its hash" if len(bad) == 1 else \
            "members of the pack do not match their hashes"
        raise UserError(f"{len(bad)} {what}; nothing was imported:"
                        f"{_listed(bad)}", where=str(path),
                        fix="the pack is damaged or was changed: " + archive.REBUILD)
    return got


def _commit(settings: Settings, locked: LockedEnv, wants: list[Want], got: dict[str, Fetched],
            staging: Path) -> None:
    """Verified files into their places in the cache, then the package cache filled from the archives."""
    for want in wants:
        fetched = got.get(want.artifact.url)
        if fetched is None:
            continue                                 # already in the cache, verified
        want.dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / want.member, want.dest)
        want.store.remember(want.rel, fetched.sha256)
    for store in {id(w.store): w.store for w in wants}.values():
        store.save()
    for entry in cache.evict_damaged(settings, locked):
        say(f"  removed a damaged package from the cache, to extract it again: {entry}")
    if locked.conda:
        fill_package_cache(settings, locked)


def import_pixi_pack(settings: Settings, path: str | Path) -> str:
    """Import the pixi-pack archive ``path`` for the project's pixi.lock; returns a one-line result."""
    path = Path(path).absolute()
    backend = backends.get(settings.installer)
    with exclusive(settings.install_lock, "import", settings.lock_timeout):
        locked = locked_env(settings)
        lockfile.refuse_uncacheable(locked, "import")
        if backend.name == "pixi" and locked.pypi:
            raise UserError("a pixi-pack import fills the pixi-free installer's wheel cache, but "
                            "AUTO_INFER_INSTALLER is pixi and the lock has PyPI wheels", where="AUTO_INFER_INSTALLER",
                            fix="set AUTO_INFER_INSTALLER=rattler for the import and the install")
        settings.cache_root.mkdir(parents=True, exist_ok=True)
        for stale in [*settings.cache_root.glob(f"{STAGING}*"), *settings.cache_root.glob(f"{FILL_SCRATCH}*")]:
            shutil.rmtree(stale, ignore_errors=True)
        with step(f"import: pixi-pack {path.name} for {len(locked.conda)} conda + {len(locked.pypi)} PyPI "
                  "artifacts of pixi.lock") as s, disk_full_is_a_user_error(settings.cache_root), \
                archive.open_pack(path) as (tf, form):
            found = archive.members(tf, path)
            _check_metadata(_json(tf, found, archive.METADATA, path), settings, path)
            _check_environment(tf, found, locked, path)
            wants = _plan(settings, locked, tf, found, path)
            if _complete(settings, locked, backend.name):
                s.note("already imported")
                return f"the cache already holds every artifact of pixi.lock ({len(wants)}); nothing to do"
            staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=settings.cache_root))
            try:
                got = _stage(tf, wants, staging, path, s.note)
                _commit(settings, locked, wants, got, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            left = cache.audit(settings, locked, None, backend.name)
            if left:
                raise UserError(f"after the import, {len(left)} artifacts are still not usable from the cache:"
                                f"{_listed([m.line() for m in left])}", where=str(settings.cache_root),
                                fix="see the messages above; free disk space and import again")
            manifest = cache.build_manifest(settings, locked, backend.name, backend.version(), got)
            cache.write_manifest(settings, manifest)
            s.note(f"{len(got)} artifacts imported from the {form}, {len(wants) - len(got)} already cached; "
                   f"manifest {settings.manifest_path}")
        return f"imported {len(got)} artifacts from {path.name} ({len(wants) - len(got)} already cached)"
