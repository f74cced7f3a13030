"""The one cache importer: stage → verify → place → fill → audit → manifest last.

warm, ``bundle import`` and the pixi-pack import all end here. A *reader* (bundle_import.py,
pixipack.py; warm's download in fetch.py) yields each artifact's bytes with what they must hash
to; this module

1. **stages** them in one folder inside the cache root (``settings.bundle_staging_dir``: same
   filesystem, so placing is a rename), hashing while it copies, and **verifies** size, sha256
   (md5 where that is all the source states);
2. **places** the verified files into the archive store and the wheel folder;
3. **fills** the package cache with ONE rule: every entry of the lock that is missing, damaged or
   of another build is extracted again from its archive, on every core (:class:`Filling`; warm
   starts each extraction as soon as its archive is downloaded);
4. **audits** the whole lock against the cache, and only then
5. writes the **manifest, last** and atomically: ``install`` trusts nothing half-imported.

``done()`` is the one "already done?" check: the lock's manifest AND an audit that finds every
artifact still in place (a marker alone is never trusted over the files: issue 21.3).
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from auto_infer.core.errors import UserError
from auto_infer.core.fanout import Pending
from auto_infer.core.fsutil import disk_full
from auto_infer.core.progress import Step, say
from auto_infer.core.settings import Settings
from auto_infer.install import archives, cache
from auto_infer.install import manifest as manifests
from auto_infer.install.lockfile import Artifact, LockedEnv

CHUNK = 1 << 20
SHOWN = 8
# what older versions (and killed runs) left in the cache root: removed before an import starts
LEFTOVERS = (".pixi-pack-import.*", ".fill-package-cache.*")
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def listed(items: list[str]) -> str:
    more = f"\n    … and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "".join(f"\n    - {x}" for x in items[:SHOWN]) + more


@contextmanager
def cache_writes(root: Path) -> Iterator[None]:
    """A full disk or a read-only cache root is the user's to fix: one message each, exit 1."""
    try:
        yield
    except OSError as exc:
        path = Path(exc.filename2 or exc.filename or root)
        if exc.errno in READ_ONLY:
            raise UserError(f"cannot write {path}: the cache root is read-only or not ours "
                            f"({exc.strerror}); nothing was imported", where=str(root),
                            fix="import on a host where AUTO_INFER_SGLANG_CACHE_ROOT is writable (mount it "
                                "read-write, or point the variable at a writable folder)") from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, exc.strerror or str(exc)) from None
        raise


# ---- stage and verify ----------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    """What a member must be: size and sha256 (md5 where that is all the source gives), and who says so."""
    sha256: str | None
    size: int | None
    md5: str | None = None
    said_by: str = "the index"


@dataclass(frozen=True)
class Staged:
    """One member copied into staging and measured."""
    member: str
    path: Path
    sha256: str
    size: int

    def problem(self, want: Expect) -> str | None:
        """Why the staged bytes are not what ``want`` says, or None."""
        if want.size is not None and want.size != self.size:
            return f"{self.member}: {self.size} bytes, {want.said_by} says {want.size}"
        if want.sha256 and want.sha256 != self.sha256:
            return f"{self.member}: sha256 {self.sha256}, {want.said_by} says {want.sha256}"
        if not want.sha256 and want.md5 and want.md5 != _md5(self.path):
            return f"{self.member}: its md5 is not the {want.md5} {want.said_by} states"
        return None


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


@contextmanager
def staging(settings: Settings) -> Iterator[Path]:
    """The one staging folder: cleared of what a killed import left, removed afterwards."""
    root, folder = settings.cache_root, settings.bundle_staging_dir
    with cache_writes(root):
        root.mkdir(parents=True, exist_ok=True)
        stale = [p for pat in LEFTOVERS for p in root.glob(pat)] + ([folder] if folder.exists() else [])
        stale += archives.partial_extractions(settings)
        for p in stale:
            say(f"  removing what an interrupted import left: {p}")
            _remove(p)
        folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def stage(src: IO[bytes], dest: Path, member: str, size: int | None, note: Callable[[int], None]) -> Staged:
    """Copy ``src`` to ``dest`` while hashing; with ``size``, stop there (a short read shows as fewer bytes)."""
    h, n = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        while size is None or n < size:
            block = src.read(CHUNK if size is None else min(CHUNK, size - n))
            if not block:
                break
            h.update(block)
            out.write(block)
            n += len(block)
            note(len(block))
    return Staged(member, dest, h.hexdigest(), n)


# ---- place, fill, audit, manifest ----------------------------------------------------------

def store_path(settings: Settings, a: Artifact) -> Path:
    return archives.archive_path(settings, a) if a.kind == "conda" else settings.wheel_dir / a.filename


def place(settings: Settings, pairs: Iterable[tuple[Artifact, Staged]], s: Step) -> int:
    """Move verified files into the archive store / wheel folder, remembering their hashes."""
    stores = {"conda": cache.WheelStore(settings.conda_archive_dir), "pypi": cache.WheelStore(settings.wheel_dir)}
    n = 0
    for a, staged in pairs:
        dest = store_path(settings, a)
        dest.parent.mkdir(parents=True, exist_ok=True)
        s.note(f"placing {a.filename}")
        staged.path.replace(dest)
        store = stores[a.kind]
        store.remember(str(dest.relative_to(store.dir)), staged.sha256)
        n += 1
    for store in stores.values():
        store.save()
    return n


def to_extract(settings: Settings, locked: LockedEnv) -> list[Artifact]:
    """THE rule: an entry missing, damaged or of another build is extracted again from its archive."""
    return [a for a, why in zip(locked.conda, cache.conda_problems(settings, locked.conda), strict=True) if why]


class Filling:
    """Fill the package cache by THE rule while the archives arrive: ``ready(a)``, called as each
    archive is in the store (warm: downloaded and verified), starts its extraction at once when
    ``need`` (``to_extract``) names it; ``finish()`` extracts the others whose archive is in the store, waits,
    and says how many were extracted. Extraction runs on every core beside the caller.

    An entry whose archive is not in the store (pixi downloads while it installs) is removed when
    damaged or of another build, so that the installer downloads it again."""

    def __init__(self, settings: Settings, need: list[Artifact], s: Step, pool: archives.Extractor):
        self.settings, self.s, self.pool = settings, s, pool
        self.need = {a.url: a for a in need}
        self.sent: set[str] = set()
        self.lock = threading.Lock()

    def ready(self, a: Artifact) -> None:
        with self.lock:
            if a.url not in self.need or a.url in self.sent:
                return
            self.sent.add(a.url)
        self.pool.add(a)

    def finish(self) -> int:
        pkgs = self.settings.conda_pkgs_dir
        have = [a for a in self.need.values()
                if a.url in self.sent or archives.archive_path(self.settings, a).is_file()]
        got = {a.url for a in have}
        for a in self.need.values():
            if a.url not in got:
                shutil.rmtree(pkgs / a.cache_key, ignore_errors=True)
                (pkgs / f"{a.cache_key}.lock").unlink(missing_ok=True)
        for a in sorted(have, key=lambda a: -(a.size or 0)):      # the biggest first
            self.ready(a)
        if have:
            self.s.note(f"extracting {len(have)} conda packages into {pkgs}")
            self.pool.wait(lambda n: self.s.note(f"extracted {n}/{len(have)} conda packages"))
        return len(have)


@contextmanager
def filling(settings: Settings, locked: LockedEnv, s: Step) -> Iterator[Filling]:
    """A :class:`Filling` whose worker processes are stopped when the block ends (call ``finish``
    inside it); what a fill cut short left in the package cache is removed first."""
    for partial in archives.partial_extractions(settings):     # warm has no staging folder
        _remove(partial)
    need = to_extract(settings, locked)
    with archives.Extractor(settings, len(need)) as pool:
        yield Filling(settings, need, s, pool)


def fill(settings: Settings, locked: LockedEnv, s: Step) -> int:
    """Extract what ``to_extract`` names from the archive store, in parallel; how many were extracted."""
    with filling(settings, locked, s) as f:
        return f.finish()


def audit_or_refuse(settings: Settings, locked: LockedEnv, installer: str, what: str,
                    conda: Pending | None = None) -> None:
    """The cache serves ``locked`` after ``what``, or a UserError (``conda``: its conda side, started)."""
    left = cache.audit(settings, locked, None, installer, conda)
    if left:
        raise UserError(f"after {what}, {len(left)} artifacts are still not usable from the cache:"
                        f"{listed([m.line() for m in left])}", where=str(settings.cache_root),
                        fix="see the messages above; free disk space and run it again")


def done(settings: Settings, locked: LockedEnv, installer: str) -> str | None:
    """None when the cache already serves ``locked``; else why not (the one "already done?" check).

    The manifest of the lock is only a claim: the audit checks the artifacts it stands for (each
    package's files by size, each wheel's hash, remembered by stat) are still there."""
    try:
        manifest = manifests.read(settings, locked.sha256)
    except UserError as exc:
        return f"its manifest is damaged ({exc.what})"
    if manifest is None or manifest.lock_sha256 != locked.sha256:
        return "the cache has no manifest of this lock"
    if not settings.manifest_path.is_file():       # written last: an import was cut short before it
        return f"{settings.manifest_path} is missing"
    missing = cache.audit(settings, locked, manifest, installer)
    if missing:
        return (
            f"{len(missing)} of {len(locked.artifacts)} artifacts are gone from the cache (first: {missing[0].line()})"
        )
    return None


def commit(settings: Settings, manifest: dict[str, Any]) -> Path:
    """The manifest, last: the per-lock copy, then cache-manifest.json."""
    return manifests.write(settings, manifest)
