"""`bundle import`: the bundle as a reader for the cache importer (importer.py).

Reading is one pass over the stream (a pipe will do): the index comes first; each further member
must have a safe name, be a regular file, be listed in the index once, and is hashed while the
importer stages it (same filesystem: moves are renames). The template and the manifest come
first: once they are staged, a bundle already imported (its record AND the cache still holding
every artifact and weight file of its lock) stops there. Otherwise every member must match the
index, and the conda archives and wheels the lock the bundle carries, before
:mod:`bundle_layout` places anything; the importer fills, audits and writes the manifest last.
A killed import leaves only the staging folder, which the next import removes first.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import IO, Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import read_json
from auto_infer.core.progress import Step, fmt_secs, say, step
from auto_infer.core.runlock import exclusive
from auto_infer.core.settings import Settings
from auto_infer.install import bundle_format as fmt
from auto_infer.install import bundle_layout, bundle_models, importer, jsonread, lockfile
from auto_infer.install import manifest as manifests

REEXPORT = "export the bundle again on the build host and copy it over again (check its size and sha256 on both ends)"
HEAD = ("template", "manifest")          # the members before the artifacts (bundle_format.KINDS order)


def _refuse(what: str, where: Path) -> UserError:
    return UserError(f"{what}; nothing of it was trusted", where=str(where), fix=REEXPORT)


def _read_index(tf: tarfile.TarFile, file: Path) -> tuple[fmt.Index, str]:
    first = tf.next()
    if first is None or first.name != fmt.INDEX:
        raise _refuse(f"the first member is not the bundle index {fmt.INDEX} "
                      f"(found {first.name if first else 'nothing'!r})", file)
    if not first.isreg():
        raise _refuse(f"the bundle index {fmt.INDEX} is a link, device or folder, not a file", file)
    if first.size > fmt.INDEX_MAX:
        raise _refuse(f"the bundle index {fmt.INDEX} is {first.size} bytes; an index is never more than "
                      f"{fmt.INDEX_MAX >> 20} MiB", file)
    src = tf.extractfile(first)
    raw = src.read() if src else b""
    if len(raw) != first.size:
        raise _refuse(f"the bundle is truncated inside its index {fmt.INDEX}", file)
    return fmt.parse_index(raw, str(file)), hashlib.sha256(raw).hexdigest()


class Reader:
    """The bundle's members, each checked against the index and staged through the importer."""

    def __init__(self, tf: tarfile.TarFile, index: fmt.Index, file: Path, staging: Path, s: Step):
        self.tf, self.index, self.file, self.members, self.s = tf, index, file, staging / "members", s
        self.listed = {m.path: m for m in index.members}
        self.seen: set[str] = set()
        self.bytes = 0

    def _member(self, info: tarfile.TarInfo) -> fmt.Listed:
        name = info.name
        why = fmt.bad_name(name)
        if why:
            raise _refuse(f"the bundle holds a member whose name {why}: {name!r}", self.file)
        if not info.isreg():
            raise _refuse(f"the bundle holds a link, device or folder, not a file: {name!r}", self.file)
        if name in self.seen:
            raise _refuse(f"member {name} appears twice in the bundle", self.file)
        if name not in self.listed:
            raise _refuse(f"member {name} is not in the bundle's index (renamed or added after export)", self.file)
        want = self.listed[name]
        if info.size != want.size:
            raise _refuse(f"member {name} has {info.size} bytes, the index says {want.size}", self.file)
        return want

    def _note(self, n: int) -> None:
        self.bytes += n
        self.s.note(f"verifying {len(self.seen)}/{len(self.listed)} members ({self.bytes / 1e6:.0f} MB)")

    def stage(self, info: tarfile.TarInfo) -> None:
        want = self._member(info)
        self.seen.add(info.name)
        src: IO[bytes] | None = self.tf.extractfile(info)
        assert src is not None
        got = importer.stage(src, self.members / info.name, info.name, info.size, self._note)
        if got.size != info.size:
            raise _refuse(f"the bundle is truncated: member {info.name} has {got.size} of its {info.size} bytes",
                          self.file)
        why = got.problem(importer.Expect(want.sha256, want.size))
        if why:
            raise _refuse(f"member {why.replace(': sha256', ' is damaged: sha256', 1)}", self.file)

    def head(self) -> tarfile.TarInfo | None:
        """Stage the template and the manifest; return the first member after them."""
        while (info := self.tf.next()) is not None:     # not `for … in tf`: that starts again at the index
            if self.listed.get(info.name, fmt.Listed("", "", "", 0)).kind not in HEAD:
                return info
            self.stage(info)
        return None

    def rest(self, info: tarfile.TarInfo | None) -> None:
        while info is not None:
            self.stage(info)
            info = self.tf.next()
        missing = [p for p in self.listed if p not in self.seen]
        if missing:
            raise _refuse(f"the bundle is truncated: {len(missing)} members of its index are missing "
                          f"(first: {missing[0]})", self.file)


def _carried(r: Reader) -> tuple[lockfile.LockedEnv, manifests.Manifest]:
    """The lock and manifest the bundle carries, read from staging; damage names the bundle, not staging."""
    lock, man = r.members / "template" / "pixi.lock", r.members / "cache-manifest.json"
    if not lock.is_file() or not man.is_file():
        raise _refuse("the bundle lacks template/pixi.lock or cache-manifest.json", r.file)
    try:
        locked = lockfile.read(lock, str(r.index.environment), str(r.index.platform))
    except UserError as exc:
        raise _refuse(f"the bundle's template/pixi.lock cannot be read: {exc.what.replace(str(lock), 'it')}",
                      r.file) from None
    what = "the bundle's cache-manifest.json"
    manifest = manifests.parse(jsonread.load(man.read_bytes(), what, str(r.file), REEXPORT), what, str(r.file),
                               REEXPORT)
    if locked.sha256 != r.index.lock_sha256 or manifest.lock_sha256 != locked.sha256:
        raise _refuse(f"the bundle's pixi.lock (sha256 {locked.sha256[:12]}…) is not the lock its index and "
                      "manifest name", r.file)
    return locked, manifest


def _already(settings: Settings, r: Reader, marker: Path) -> str | None:
    """Why the bundle must be imported (again), or None: its record AND the facts it stands for."""
    if read_json(marker) is None:
        return "not imported before"
    locked, manifest = _carried(r)
    why = importer.done(settings, locked, "rattler")
    absent = bundle_models.absent(settings, r.index, manifest.data)
    return why or (f"{len(absent)} model files are gone (first: {absent[0]})" if absent else None)


def import_bundle(settings: Settings, file: Path) -> dict[str, Any]:
    file = Path(os.path.abspath(file))
    if file.is_dir():
        raise UserError(f"{file} is a folder, not a bundle file", where="bundle import FILE",
                        fix="pass the bundle file inside it (`auto-infer bundle export` writes one file)")
    if not file.exists():
        raise UserError(f"no bundle file at {file}", where="bundle import FILE",
                        fix="pass the file `auto-infer bundle export` wrote")
    with exclusive(settings.install_runlock_path, "bundle import", settings.runlock_timeout), \
            step(f"bundle import: {file.name}") as s, importer.cache_writes(settings.cache_root), \
            importer.staging(settings) as staging:
        try:
            # unbuffered, big reads: a pipe's data is used as it comes (tarfile gathers what it needs)
            with open(file, "rb", buffering=0) as fh, tarfile.open(fileobj=fh, mode="r|", bufsize=fmt.CHUNK) as tf:
                index, index_sha = _read_index(tf, file)
                r = Reader(tf, index, file, staging, s)
                after = r.head()
                marker = settings.bundles_dir / f"{index_sha}.json"
                why = _already(settings, r, marker)
                if why is None:
                    s.note(f"already imported (lock {index.lock_sha256[:12]}…), and the cache still holds all of "
                           "it; nothing to do")
                    return {"imported": False, "lock_sha256": index.lock_sha256}
                if why != "not imported before":
                    say(f"  imported before, but {why}: importing it again")
                r.rest(after)
        except (tarfile.TarError, EOFError) as exc:
            raise _refuse(f"the bundle is truncated or not a tar file ({exc})", file) from None
        locked, manifest = _carried(r)
        return _commit(settings, r, locked, manifest, marker, s)


def _commit(settings: Settings, r: Reader, locked: lockfile.LockedEnv, manifest: manifests.Manifest,
            marker: Path, s: Step) -> dict[str, Any]:
    bundle_layout.check_artifacts(r.index, locked, manifest, lambda what: _refuse(what, r.file))
    bundle_layout.check_base(settings, r.index, locked, manifest, r.file, _refuse)
    target = bundle_layout.template_target(settings, locked.sha256, r.members / "template")
    s.note("verified; laying out the cache")
    verified = s.elapsed
    extracted, secs, placed = bundle_layout.commit(settings, locked, manifest, r.members, target, s)
    bundle_layout.write_marker(settings, marker, r.index, r.file)
    s.note(f"{len(r.index.members)} members verified in {fmt_secs(verified)}, {extracted} conda packages "
           f"extracted in {fmt_secs(secs)}; lock {locked.sha256[:12]}… ({len(locked.conda)} conda + "
           f"{len(locked.pypi)} PyPI) in {settings.cache_root}; template in {target}"
           + (f"; {placed} model files placed in {settings.hub_cache}" if placed else ""))
    if (r.index.environment, r.index.platform) != (settings.pixi_env, settings.platform):
        say(f"⚠ WARNING: the bundle is for environment {r.index.environment!r} on {r.index.platform}, this host "
            f"selects {settings.pixi_env!r} on {settings.platform}: set AUTO_INFER_SGLANG_PIXI_ENV / "
            "AUTO_INFER_PLATFORM to the bundle's before `install`, or export a bundle for this one")
    if settings.template_dir is None or target != settings.template_dir:
        say(f"  the template went to {target}: set AUTO_INFER_SGLANG_TEMPLATE_DIR={target} "
            "(or copy its pixi.toml and pixi.lock into your template folder), then `auto-infer install`")
    return {"imported": True, "lock_sha256": locked.sha256, "template": str(target)}
