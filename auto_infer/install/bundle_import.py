"""`bundle import`: verify every member of a bundle before trusting any, then lay out the cache.

Reading is one pass over the stream (a pipe will do): the index comes first; each further member
must have a safe name, be a regular file, be listed in the index once, and is hashed while it is
copied into a staging folder inside the cache root (same filesystem: moves are renames). Only
when every member matched the index, and the conda archives and wheels matched the lock the
bundle carries, does :mod:`bundle_layout` move anything into place, the manifest last. A bundle
that fails any check leaves nothing a later ``install`` would trust; a killed import leaves only
the staging folder, which the next import removes before it starts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import IO, Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import disk_full_is_a_user_error, read_json
from auto_infer.core.progress import Step, fmt_secs, say, step
from auto_infer.core.runlock import exclusive
from auto_infer.core.settings import Settings
from auto_infer.install import bundle_format as fmt
from auto_infer.install import bundle_layout, bundle_models, cache, lockfile

REEXPORT = "export the bundle again on the build host and copy it over again (check its size and sha256 on both ends)"


def _refuse(what: str, where: Path) -> UserError:
    return UserError(f"{what}; nothing of it was trusted", where=str(where), fix=REEXPORT)


def _copy(src: IO[bytes], dest: Path, size: int, name: str, file: Path, s: Step) -> str:
    """Copy one member into staging, hashing; a short read is a truncated bundle."""
    h, n = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        while n < size:
            block = src.read(min(fmt.CHUNK, size - n))
            if not block:
                break
            h.update(block)
            out.write(block)
            n += len(block)
            s.note(f"verifying {name} ({n / 1e6:.0f} MB)")
    if n != size:
        raise _refuse(f"the bundle is truncated: member {name} has {n} of its {size} bytes", file)
    return h.hexdigest()


def _read_index(tf: tarfile.TarFile, file: Path) -> tuple[dict[str, Any], str]:
    first = tf.next()
    if first is None or first.name != fmt.INDEX or not first.isreg() or first.size > fmt.INDEX_MAX:
        raise _refuse(f"the first member is not the bundle index {fmt.INDEX} "
                      f"(found {first.name if first else 'nothing'!r})", file)
    src = tf.extractfile(first)
    raw = src.read() if src else b""
    if len(raw) != first.size:
        raise _refuse(f"the bundle is truncated inside its index {fmt.INDEX}", file)
    return fmt.parse_index(raw, str(file)), hashlib.sha256(raw).hexdigest()


def _stage(tf: tarfile.TarFile, index: dict[str, Any], staging: Path, file: Path, s: Step) -> None:
    listed = {m["path"]: m for m in index["members"]}
    seen: set[str] = set()
    while (info := tf.next()) is not None:      # not `for … in tf`: that starts again at the index
        name = info.name
        why = fmt.bad_name(name)
        if why:
            raise _refuse(f"the bundle holds a member whose name {why}: {name!r}", file)
        if not info.isreg():
            raise _refuse(f"the bundle holds a link, device or folder, not a file: {name!r}", file)
        if name in seen:
            raise _refuse(f"member {name} appears twice in the bundle", file)
        if name not in listed:
            raise _refuse(f"member {name} is not in the bundle's index (renamed or added after export)", file)
        seen.add(name)
        want = listed[name]
        if info.size != want["size"]:
            raise _refuse(f"member {name} has {info.size} bytes, the index says {want['size']}", file)
        src = tf.extractfile(info)
        assert src is not None
        got = _copy(src, staging / name, info.size, name, file, s)
        if got != want["sha256"]:
            raise _refuse(f"member {name} is damaged: sha256 {got}, the index says {want['sha256']}", file)
    missing = [p for p in listed if p not in seen]
    if missing:
        raise _refuse(f"the bundle is truncated: {len(missing)} members of its index are missing "
                      f"(first: {missing[0]})", file)


def _check_lock(index: dict[str, Any], staging: Path, file: Path) -> tuple[lockfile.LockedEnv, dict[str, Any]]:
    """The carried artifacts must be the lock's, by the lock's own sha256 (not only the index's)."""
    lock = staging / "template" / "pixi.lock"
    if not lock.is_file() or not (staging / "cache-manifest.json").is_file():
        raise _refuse("the bundle lacks template/pixi.lock or cache-manifest.json", file)
    locked = lockfile.read(lock, str(index.get("environment")), str(index.get("platform")))
    manifest = json.loads((staging / "cache-manifest.json").read_bytes())
    if locked.sha256 != index["lock_sha256"] or manifest.get("lock_sha256") != locked.sha256:
        raise _refuse(f"the bundle's pixi.lock (sha256 {locked.sha256[:12]}…) is not the lock its index and "
                      "manifest name", file)
    by_member = {bundle_layout.member_path(a): a for a in locked.artifacts}
    measured = {x["filename"]: x.get("sha256") for x in manifest.get("artifacts", []) if x.get("kind") == "pypi"}
    for m in index["members"]:
        if m["kind"] not in ("conda", "pypi"):
            continue
        a = by_member.get(m["path"])
        if a is None:
            raise _refuse(f"member {m['path']} is not an artifact of the bundle's pixi.lock", file)
        want = a.sha256 or measured.get(a.filename)
        if want and want != m["sha256"]:
            raise _refuse(f"member {m['path']} has sha256 {m['sha256']}, the lock says {want}", file)
    bundle_models.check(index, manifest, lambda what: _refuse(what, file))
    return locked, manifest


def _check_base(settings: Settings, index: dict[str, Any], locked: lockfile.LockedEnv, manifest: dict[str, Any],
                file: Path) -> None:
    """A delta carries only what the base lacked: everything else must already be in this cache."""
    carried = {m["path"] for m in index["members"]}
    absent = [f"{a.name} {a.version} ({a.kind})" for a in locked.artifacts
              if bundle_layout.member_path(a) not in carried and not bundle_layout.in_cache(settings, a)]
    absent += [f"{name} (model file)" for name in bundle_models.absent(settings, index, manifest)]
    if not absent:
        return
    since = index.get("since") or {}
    first = absent[0]
    if since:
        base = str(since.get("lock_sha256", "?"))
        raise UserError(
            f"{file.name} is a delta bundle over the lock sha256 {base[:12]}…, and this cache lacks {len(absent)} "
            f"artifacts or model files it does not carry (first: {first}); nothing was imported",
            where=str(settings.cache_root),
            fix=f"import first the bundle of the lock sha256 {base[:12]}… (its import prints that lock; "
                f"`manifests/{base}.json` in the cache root shows it is there), then this one")
    raise _refuse(f"the bundle does not carry {len(absent)} artifacts or model files its lock and manifest name (first: {first})", file)


def _already(settings: Settings, index: dict[str, Any], marker: Path) -> bool:
    manifest = cache.read_manifest(settings, index["lock_sha256"])
    return (read_json(marker) is not None and manifest is not None
            and manifest.get("lock_sha256") == index["lock_sha256"])


def import_bundle(settings: Settings, file: Path) -> dict[str, Any]:
    file = Path(os.path.abspath(file))
    if not file.exists() or file.is_dir():
        raise UserError(f"no bundle file at {file}", where="bundle import FILE",
                        fix="pass the file `auto-infer bundle export` wrote")
    with exclusive(settings.install_lock, "bundle import", settings.lock_timeout):
        staging = settings.bundle_staging_dir
        if staging.exists():
            say(f"  removing what an interrupted import left in {staging}")
            shutil.rmtree(staging)
        with step(f"bundle import: {file.name}") as s, disk_full_is_a_user_error(settings.cache_root):
            try:
                # unbuffered, big reads: a pipe's data is used as it comes (tarfile gathers what it needs)
                with open(file, "rb", buffering=0) as fh, \
                        tarfile.open(fileobj=fh, mode="r|", bufsize=fmt.CHUNK) as tf:
                    index, index_sha = _read_index(tf, file)
                    marker = settings.bundles_dir / f"{index_sha}.json"
                    if _already(settings, index, marker):
                        s.note(f"already imported (lock {index['lock_sha256'][:12]}…); nothing to do")
                        return {"imported": False, "lock_sha256": index["lock_sha256"]}
                    _stage(tf, index, staging / "members", file, s)
                locked, manifest = _check_lock(index, staging / "members", file)
                _check_base(settings, index, locked, manifest, file)
                target = bundle_layout.template_target(settings, locked.sha256, staging / "members" / "template")
                s.note("verified; laying out the cache")
                verified = s.elapsed
                extracted, secs, placed = bundle_layout.commit(settings, locked, manifest, staging, target, s)
                bundle_layout.write_marker(settings, marker, index, file)
            except (tarfile.TarError, EOFError) as exc:
                raise _refuse(f"the bundle is truncated or not a tar file ({exc})", file) from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            n = len(index["members"])
            s.note(f"{n} members verified in {fmt_secs(verified)}, {extracted} conda packages extracted in "
                   f"{fmt_secs(secs)}; lock {locked.sha256[:12]}… ({len(locked.conda)} conda + {len(locked.pypi)} "
                   f"PyPI) in {settings.cache_root}; template in {target}"
                   + (f"; {placed} model files placed in {settings.hub_cache}" if placed else ""))
        if (index.get("environment"), index.get("platform")) != (settings.pixi_env, settings.platform):
            say(f"⚠ WARNING: the bundle is for environment {index.get('environment')!r} on {index.get('platform')}, "
                f"this host selects {settings.pixi_env!r} on {settings.platform}: set AUTO_INFER_SGLANG_PIXI_ENV / "
                "AUTO_INFER_PLATFORM to the bundle's before `install`, or export a bundle for this one")
        if settings.template_dir is None or target != settings.template_dir:
            say(f"  the template went to {target}: set AUTO_INFER_SGLANG_TEMPLATE_DIR={target} "
                "(or copy its pixi.toml and pixi.lock into your template folder), then `auto-infer install`")
        return {"imported": True, "lock_sha256": locked.sha256, "template": str(target)}
