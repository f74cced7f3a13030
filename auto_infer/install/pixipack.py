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
3. each needed member is copied into the importer's staging folder inside the cache root while hashed: a conda
   archive must match its repodata record (size, sha256; md5 when there is no sha256) and the
   lock's sha256, a wheel the lock's sha256 (pixi-pack stores no wheel hashes; without a lock
   hash it is measured and recorded). Any mismatch refuses, naming member, expected and actual.

Only then does the cache importer (importer.py) take over, as for warm and a bundle: archives go to
``conda_archive_dir/<subdir>/<file>``, wheels to ``wheel_dir``, the package cache is filled by
extracting the archives straight into it, the cache is audited, and the manifest is written LAST,
atomically: ``install`` trusts nothing half-imported. A re-import is a no-op only while the cache
still holds every artifact (importer.done).
"""

from __future__ import annotations

import binascii
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.progress import step
from auto_infer.core.runlock import exclusive
from auto_infer.core.settings import Settings
from auto_infer.install import backends, importer, jsonread, lockfile
from auto_infer.install import manifest as manifests
from auto_infer.install import pixipack_archive as archive
from auto_infer.install.archives import archive_path
from auto_infer.install.cache import WheelStore
from auto_infer.install.fetch import Fetched
from auto_infer.install.health import locked_env
from auto_infer.install.lockfile import Artifact, LockedEnv, canonical_name
from auto_infer.install.pixipack_archive import is_pixi_pack

__all__ = ["import_pixi_pack", "is_pixi_pack"]

FORMAT = "1"
SHOWN = 8
CHUNK = 1 << 20


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
    return jsonread.load(archive.read_small(tf, found[name], path), f"the pack's {name}", f"{path} ({name})",
                         archive.REBUILD)


@dataclass(frozen=True)
class PackMeta:
    """pixi-pack.json, read and checked."""
    version: str
    platform: str


def metadata(raw: Any, settings: Settings, path: Path) -> PackMeta:
    where = f"{path} ({archive.METADATA})"
    n = jsonread.root(raw, f"the pack's {archive.METADATA}", where, archive.REBUILD).obj()
    version = n.get("version").value
    if isinstance(version, (dict, list)) or str(version) != FORMAT:
        raise UserError(f"pixi-pack format version {version!r} is not supported (supported: {FORMAT!r})",
                        where=where, fix="build the pack with pixi-pack 0.x (format 1)")
    meta = PackMeta(FORMAT, n.get("platform").text())
    if meta.platform != settings.platform:
        raise UserError(f"the pack holds an environment for {meta.platform}, this install wants "
                        f"{settings.platform}; nothing was imported", where=where,
                        fix=f"use the pack built with `pixi-pack -p {settings.platform}` (AUTO_INFER_PLATFORM "
                            "picks another platform)")
    return meta


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
        memo[subdir] = records(_json(tf, found, name, path) if name in found else {}, f"{path} ({name})")
    return memo[subdir]


def records(data: Any, where: str) -> dict[str, dict[str, Any]]:
    """A repodata.json's records by file name, each field this import reads checked for its type."""
    n = jsonread.root(data, "the pack's repodata.json", where, archive.REBUILD).obj()
    out: dict[str, dict[str, Any]] = {}
    for key in ("packages", "packages.conda"):
        table = n.get(key)
        for file in (table.obj().value if table.value is not None else ()):
            r = table.get(file).obj()
            r.get("sha256").typed(str, optional=True)
            r.get("md5").typed(str, optional=True)
            r.get("size").typed(int, optional=True)
            out[file] = r.value
    return out


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


def _copy(tf: tarfile.TarFile, want: Want, staging: Path, path: Path) -> importer.Staged:
    """Stage the member while hashing it; a member that cannot be read is damage in the pack."""
    try:
        src = tf.extractfile(want.member)
        assert src is not None                       # _plan took files only
        with src:
            return importer.stage(src, staging / want.member, want.member, None, lambda n: None)
    except (tarfile.TarError, binascii.Error, EOFError) as exc:
        raise UserError(f"the pack's {want.member} cannot be read: the archive is damaged or truncated ({exc}); "
                        "nothing was imported", where=str(path), fix=archive.REBUILD) from None


def _expect(want: Want) -> importer.Expect:
    rec, lock_sha = want.record, want.artifact.sha256
    said = "pixi.lock" + (" and the pack's repodata.json" if rec.get("sha256") else "") if lock_sha else \
        "the pack's repodata.json"
    return importer.Expect(lock_sha or rec.get("sha256"), rec.get("size"), rec.get("md5"), said)


def _stage(
    tf: tarfile.TarFile, wants: list[Want], staging: Path, path: Path, note: Any
) -> list[tuple[Want, importer.Staged]]:
    """Copy and verify every needed member not already in the cache."""
    got: list[tuple[Want, importer.Staged]] = []
    bad: list[str] = []
    total = 0
    for i, want in enumerate(wants, 1):
        have = want.store.verified_sha(want.rel) if want.dest.is_file() else None
        if have and have == (want.artifact.sha256 or want.record.get("sha256") or have):
            continue
        staged = _copy(tf, want, staging, path)
        total += staged.size
        note(f"verified {i}/{len(wants)} artifacts, {total / 1e6:.1f} MB copied, {len(bad)} refused")
        why = staged.problem(_expect(want))
        if why:
            bad.append(why)
        else:
            got.append((want, staged))
    if bad:
        what = "member of the pack does not match its hash" if len(bad) == 1 else \
            "members of the pack do not match their hashes"
        raise UserError(f"{len(bad)} {what}; nothing was imported:{_listed(bad)}", where=str(path),
                        fix="the pack is damaged or was changed: " + archive.REBUILD)
    return got


def import_pixi_pack(settings: Settings, path: str | Path) -> str:
    """Import the pixi-pack archive ``path`` for the project's pixi.lock; returns a one-line result."""
    path = Path(path).absolute()
    backend = backends.get(settings.installer)
    with exclusive(settings.install_runlock_path, "import", settings.runlock_timeout):
        locked = locked_env(settings)
        lockfile.refuse_uncacheable(locked, "import")
        if backend.name == "pixi" and locked.pypi:
            raise UserError("a pixi-pack import fills the pixi-free installer's wheel cache, but "
                            "AUTO_INFER_INSTALLER is pixi and the lock has PyPI wheels", where="AUTO_INFER_INSTALLER",
                            fix="set AUTO_INFER_INSTALLER=rattler for the import and the install")
        with step(f"import: pixi-pack {path.name} for {len(locked.conda)} conda + {len(locked.pypi)} PyPI "
                  "artifacts of pixi.lock") as s, importer.cache_writes(settings.cache_root), \
                importer.staging(settings) as staging, archive.open_pack(path) as (tf, form):
            found = archive.members(tf, path)
            metadata(_json(tf, found, archive.METADATA, path), settings, path)
            _check_environment(tf, found, locked, path)
            wants = _plan(settings, locked, tf, found, path)
            if importer.done(settings, locked, backend.name) is None:
                s.note("already imported")
                return f"the cache already holds every artifact of pixi.lock ({len(wants)}); nothing to do"
            got = _stage(tf, wants, staging, path, s.note)
            importer.place(settings, [(w.artifact, x) for w, x in got], s)
            importer.fill(settings, locked, s)
            importer.audit_or_refuse(settings, locked, backend.name, "the import")
            fetched = {w.artifact.url: Fetched(x.sha256, x.size, f"pixi-pack {path.name}: {w.member}") for w, x in got}
            importer.commit(settings, manifests.build(settings, locked, backend.name, backend.version(), fetched))
            s.note(f"{len(got)} artifacts imported from the {form}, {len(wants) - len(got)} already cached; "
                   f"manifest {settings.manifest_path}")
        return f"imported {len(got)} artifacts from {path.name} ({len(wants) - len(got)} already cached)"
