"""`bundle export`: the template, exactly the artifacts of its lock, and the manifest, in one file.

Runs on the online build host. Conda packages travel as their ORIGINAL archives (the upstream
bytes, compressed, checked with the one sha256 the lock holds): pixi and rattler keep only
extracted packages, so archives come from the archive store (``Settings.conda_archive_dir``) and
are downloaded from the lock's URL when missing. Wheels come from the wheel store. Every file is
verified before it is listed, and hashed again while it is written (a file changed meanwhile
fails the export). The Hub weights the cache manifest records travel too (bundle_models.py); a
local-folder model source does not (it is the user's shared disk). docs/bundle.md has the why
and the numbers.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import (
    check_target,
    disk_full_is_a_user_error,
    is_stdout,
    replacing,
    sha256_file,
    unwritable_is_a_user_error,
)
from auto_infer.core.meter import Meter
from auto_infer.core.progress import Step, fmt_secs, step
from auto_infer.core.settings import Settings
from auto_infer.install import bundle_format as fmt
from auto_infer.install import bundle_layout, bundle_models, cache, lockfile, template
from auto_infer.install import manifest as manifests
from auto_infer.install.lockfile import Artifact, LockedEnv


@dataclass
class Plan:
    settings: Settings
    template_dir: Path
    locked: LockedEnv
    carry: list[Artifact]              # what goes into the bundle (all, or the delta)
    since: dict[str, Any] | None       # the base manifest's identity, for a delta
    known: dict[str, tuple[str, int]]  # filename -> (sha256, size) measured before (manifests)
    weights: list[fmt.Member]          # the Hub weight files (all, or those the base lacks)
    folders: list[str]                 # local-folder model sources: not carried

    def member_path(self, a: Artifact) -> str:
        return bundle_layout.member_path(a)

    def store_path(self, a: Artifact) -> Path:
        return bundle_layout.store_path(self.settings, a)


def _identity(a: Artifact, known: dict[str, tuple[str, int]]) -> tuple[str, str, str | None]:
    return a.kind, a.filename, a.sha256 or known.get(a.filename, (None, 0))[0]


def _read_since(path: Path) -> dict[str, Any]:
    fix = "pass the cache-manifest.json of the cache you want to update"
    if not path.exists():
        raise UserError(f"the base manifest does not exist: {path}", where="--since",
                        fix="copy cache-manifest.json from the air-gapped host's cache root (or the "
                            "previous bundle's) and pass its path")
    try:
        found = manifests.load(path, "the base manifest (--since)", fix)
    except OSError as exc:
        raise UserError(f"cannot read the base manifest {path}: {exc.strerror}", where="--since", fix=fix) from None
    assert found is not None
    return found.data


def plan(settings: Settings, since: Path | None = None) -> Plan:
    root = template.validate_template(settings)
    locked = lockfile.read(root / "pixi.lock", settings.pixi_env, settings.platform)
    bad = lockfile.non_wheel(locked)
    if bad:
        raise UserError(f"{len(bad)} PyPI entries of the lock are not wheels ({', '.join(a.name for a in bad[:5])}): "
                        "they need a build, which cannot happen on the air-gapped host",
                        where=str(root / "pixi.lock"), fix="lock wheels only (pixi: no-build = true)")
    mine = manifests.read(settings, locked.sha256)
    known = {x.filename: (x.sha256, x.size or 0) for x in (mine.artifacts if mine else ())
             if x.sha256 and mine and mine.lock_sha256 == locked.sha256}
    carry, base = list(locked.artifacts), None
    old: dict[str, Any] | None = None
    if since is not None:
        old = _read_since(since)
        old_known = {x["filename"]: (x.get("sha256"), x.get("size") or 0) for x in old["artifacts"]}
        have = {(x.get("kind"), x.get("filename"), x.get("sha256")) for x in old["artifacts"]}
        carry = [a for a in carry if _identity(a, known | old_known) not in have]
        for name, value in old_known.items():
            if value[0]:
                known.setdefault(name, (value[0], value[1]))
        base = {"manifest_sha256": sha256_file(since), "lock_sha256": old["lock_sha256"]}
    manifest = manifests.read(settings)
    return Plan(settings, root, locked, carry, base, known, bundle_models.carried(settings, old),
                bundle_models.folder_paths(manifest.data if manifest else None))


def listing(p: Plan) -> list[str]:
    """`--dry-run`: one line per artifact the bundle would carry, then the total."""
    lines, total = [], 0
    for a in sorted(p.carry, key=lambda a: p.member_path(a)):
        size = a.size or p.known.get(a.filename, ("", 0))[1]
        total += size
        where = "in the cache" if p.store_path(a).is_file() else f"to download from {a.url}"
        lines.append(f"{p.member_path(a)}\t{size / 1e6:.1f} MB\t{where}" if size else f"{p.member_path(a)}\t?\t{where}")
    for m in p.weights:
        total += m.size
        lines.append(f"{m.path}\t{m.size / 1e6:.1f} MB\tin the hub cache")
    conda = sum(1 for a in p.carry if a.kind == "conda")
    delta = f" (delta over lock {p.since['lock_sha256'][:12]}…)" if p.since else ""
    lines.append(
        f"{len(p.carry)} artifacts ({conda} conda + {len(p.carry) - conda} PyPI) of "
        f"{len(p.locked.artifacts)} in the lock{delta}, {_weights_note(p)}, "
        f"{total / 1e6:.1f} MB in the sizes known (the lock has none for wheels); "
        "plus the template and the cache manifest"
    )
    return lines


def _weights_note(p: Plan) -> str:
    note = f"{len(p.weights)} model files ({sum(m.size for m in p.weights) / 1e6:.1f} MB)"
    if p.folders:
        note += f"; local-folder models not carried (your shared disk): {', '.join(p.folders)}"
    return note


def _ensure_all(p: Plan, s: Step) -> dict[str, tuple[str, int]]:
    """Every carried artifact in its store, verified; missing ones downloaded by warm's downloader
    (timeouts, retries, mirrors). Returns filename -> (sha256, size)."""
    from auto_infer.install import fetch
    from auto_infer.install.mirrors import load as load_mirrors

    stores = {"conda": cache.WheelStore(p.settings.conda_archive_dir), "pypi": cache.WheelStore(p.settings.wheel_dir)}
    jobs = [fetch.Job(a.url, a.filename, a.url, p.store_path(a), a.sha256 or p.known.get(a.filename, (None, 0))[0],
                      stores[a.kind]) for a in p.carry]
    got = fetch.fetch_all(jobs, p.settings.net, load_mirrors(p.settings.net.mirrors), s, "bundle artifacts")
    return {a.filename: (got[a.url].sha256, got[a.url].size) for a in p.carry}


def _members(p: Plan, s: Step) -> list[fmt.Member]:
    measured = _ensure_all(p, s)
    members = [fmt.Member(p.member_path(a), a.kind, *measured[a.filename], source=p.store_path(a)) for a in p.carry]
    from auto_infer.install.backends.rattler import RattlerBackend
    from auto_infer.install.fetch import Fetched

    known = {**p.known, **measured}
    fetched = {a.url: Fetched(*known[a.filename], None) for a in p.locked.artifacts if a.filename in known}
    tpl = replace(p.settings, project_dir=p.template_dir)       # pixi_toml_sha256 of the carried toml
    manifest = manifests.build(tpl, p.locked, "rattler", RattlerBackend().version(), fetched, environ={})
    manifest["warmed_at"] = None          # no wall-clock time: the same lock and files give the same bytes
    for item in manifest["artifacts"]:
        item["served_from"] = None        # on the far side the bundle served it, whichever mirror served us
    models = bundle_models.carried_models(p.settings)
    if models:
        manifest["models"] = models
    members += p.weights
    members += [fmt.of_bytes("template/pixi.toml", "template", (p.template_dir / "pixi.toml").read_bytes()),
                fmt.of_bytes("template/pixi.lock", "template", (p.template_dir / "pixi.lock").read_bytes()),
                fmt.of_bytes("cache-manifest.json", "manifest", (json.dumps(manifest, indent=2) + "\n").encode())]
    return sorted(members, key=fmt.order)


def _head(p: Plan) -> dict[str, Any]:
    from auto_infer import __version__
    return {"tool": f"auto-infer {__version__}", "lock_sha256": p.locked.sha256,
            "environment": p.locked.environment, "platform": p.locked.platform, "since": p.since}


def _write(out: Path, index: bytes, members: list[fmt.Member], s: Step, every: float) -> int:
    total = sum(m.size for m in members if m.data is None)
    with Meter("bundle written", total, 0, every, s) as meter, \
            replacing(out, "the bundle file", dash_is_stdout=True) as fh:
        written = _Counting(fh)
        with tarfile.open(fileobj=written, mode="w|", format=fmt.TAR_FORMAT) as tf:    # type: ignore[call-overload]
            tf.addfile(fmt.tar_info(fmt.INDEX, len(index)), io.BytesIO(index))
            for m in members:
                if m.data is not None:
                    tf.addfile(fmt.tar_info(m.path, m.size), io.BytesIO(m.data))
                    continue
                assert m.source is not None
                meter.begin(m.path, m.size)
                with open(m.source, "rb") as src:
                    reader = fmt.HashingReader(src, functools.partial(meter.add, name=m.path))
                    tf.addfile(fmt.tar_info(m.path, m.size), reader)   # type: ignore[arg-type]
                meter.end(m.path)
                if reader.h.hexdigest() != m.sha256:
                    raise UserError(f"{m.source} changed while it was exported (sha256 {reader.h.hexdigest()[:12]}… "
                                    f"!= {m.sha256[:12]}…)", where=str(m.source), fix="export again")
    return written.size


class _Counting:
    """The bundle's bytes as they are written (stdout has no size to stat afterwards)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.size = fh, 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return self.fh.write(data)


def _refuse_replacing_a_non_bundle(out: Path) -> None:
    """An existing file is replaced only when it is a bundle (an earlier export, an empty file):
    `bundle export notes.txt` must not turn the user's file into a tar."""
    try:
        if out.stat().st_size == 0:
            return
        with tarfile.open(out, "r|") as tf:
            first = tf.next()
        if first is not None and first.name == fmt.INDEX:
            return
    except FileNotFoundError:
        return
    except (OSError, tarfile.TarError):
        pass
    raise UserError(f"{out} exists and is not an auto-infer bundle: export would replace it", where=str(out),
                    fix="name a new file (or an earlier bundle to replace), or move that file away first")


def export(settings: Settings, out: Path, since: Path | None = None, dry_run: bool = False) -> dict[str, Any]:
    p = plan(settings, since)
    if dry_run:
        for line in listing(p):
            print(line, flush=True)
        return {"artifacts": len(p.carry)}
    if not is_stdout(out):
        out = Path(os.path.abspath(out))
        check_target(out, "the bundle file")
        _refuse_replacing_a_non_bundle(out)
    what = f"{len(p.carry)} of {len(p.locked.artifacts)} artifacts" + (" (delta)" if p.since else "")
    t0 = time.monotonic()
    where = Path.cwd() if is_stdout(out) else out.parent
    with step(f"bundle export: {what}") as s, disk_full_is_a_user_error(where), \
            unwritable_is_a_user_error(where, "the bundle file"):
        members = _members(p, s)
        index = fmt.index_bytes(_head(p), members)
        size = _write(out, index, members, s, settings.net.progress_every)
        s.note(
            f"{len(members) + 1} members with {_weights_note(p)}, {size / 1e6:.1f} MB, "
            f"{fmt_secs(time.monotonic() - t0)} → {'stdout' if is_stdout(out) else out}"
        )
    return {"members": len(members) + 1, "bytes": size, "file": str(out)}
