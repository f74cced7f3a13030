"""Test infrastructure: build a pixi-pack-format archive from the test channel and wheels.

Follows Quantco/pixi-pack v0.7.10's documented layout (src/pack.rs, src/lib.rs, src/header.sh),
as /work/scratch/pixipack/make_pack.py reproduces it:

  pixi-pack.json                 {"version": "1", "pixi-pack-version": .., "platform": ..}, pretty, no newline
  environment.yml                channels ./channel + nodefaults, name=version=build pins, a pip: section
  channel/<subdir>/<file>        the conda archives, and channel/<subdir>/repodata.json with ALL
                                 records under "packages.conda" (keys sorted, sha256/md5/size)
  pypi/<wheel>.whl               the wheels (pixi-pack keeps no hash for them)

A plain uncompressed GNU tar (mtime 1153704088, uid/gid 0, directories included, entries in
sorted pre-order), or the self-extracting script: a shell header ending in ``@@END_HEADER@@``, an
empty line, base64(tar) on one line, ``@@END_ARCHIVE@@``, base64(pixi-unpack) -- a stub here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

MTIME = 1153704088
RECORD_FIELDS = {"arch", "build", "build_number", "constrains", "depends", "license", "license_family", "md5",
                 "name", "noarch", "platform", "sha256", "size", "subdir", "timestamp", "track_features", "version"}
# pixi-pack's src/header.sh, shortened: the lines that matter to a reader (note the grep line
# mentions the marker too, but not at the start of a line)
HEADER = """#!/usr/bin/env bash
set -euo pipefail
TEMPDIR="$(mktemp -d)"
archive_begin=$(grep -anm 1 "^@@END_HEADER@@" "$0" | awk -F: '{print $1}')
archive_end=$(grep -anm 1 "^@@END_ARCHIVE@@" "$0" | awk -F: '{print $1}')
archive_begin=$((archive_begin + 2))
archive_end=$((archive_end - 1))
pixi_pack_start=$((archive_end + 2))
sed -n "$archive_begin,${archive_end}p" "$0" | base64 -d > "$TEMPDIR/archive.tar"
sed -n "$pixi_pack_start,\\$p" "$0" | base64 -d > "$TEMPDIR/pixi-unpack"
chmod +x "$TEMPDIR/pixi-unpack"
"$TEMPDIR/pixi-unpack" "$@" "$TEMPDIR/archive.tar"
rm -rf "$TEMPDIR"
exit 0
# shellcheck disable=SC2317
@@END_HEADER@@
"""
STUB_UNPACK = b"#!/bin/sh\necho 'a stub pixi-unpack: the importer must never run it' >&2\nexit 99\n"


def _records(channel: Path, platform: str) -> list[tuple[str, str, dict]]:
    found = []
    for subdir in (platform, "noarch"):
        repodata = channel / subdir / "repodata.json"
        if not repodata.exists():
            continue
        data = json.loads(repodata.read_text())
        records = {**(data.get("packages") or {}), **(data.get("packages.conda") or {})}
        for name, rec in sorted(records.items()):
            found.append((subdir, name, {k: rec[k] for k in sorted(rec) if k in RECORD_FIELDS and rec[k] is not None}))
    return found


def _pypi_name(wheel: str) -> tuple[str, str]:
    dist, version = wheel.split("-")[:2]
    return re.sub(r"[-_.]+", "-", dist).lower(), version


def stage(channel: Path, wheels: Sequence[Path], platform: str, out: Path, pack_platform: str | None = None) -> None:
    """The pack's folder (what pixi-pack tars): from ``channel``'s ``platform`` + noarch records."""
    conda = _records(channel, platform)
    per_subdir: dict[str, dict] = {}
    for subdir, name, rec in conda:
        (out / "channel" / subdir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(channel / subdir / name, out / "channel" / subdir / name)
        per_subdir.setdefault(subdir, {})[name] = rec
    for subdir, records in per_subdir.items():
        data = {"info": {"subdir": subdir}, "packages": {}, "packages.conda": records, "repodata_version": 2}
        (out / "channel" / subdir / "repodata.json").write_text(json.dumps(data, indent=2))
    env = "channels:\n  - ./channel\n  - nodefaults\ndependencies:\n"
    env += "".join(f"  - {r['name']}={r['version']}={r['build']}\n" for _s, _n, r in conda)
    if wheels:
        (out / "pypi").mkdir(parents=True, exist_ok=True)
        env += "  - pip:\n    - --no-index\n    - --find-links ./pypi\n"
        for wheel in sorted(wheels, key=lambda p: p.name):
            shutil.copyfile(wheel, out / "pypi" / wheel.name)
            env += "    - {}=={}\n".format(*_pypi_name(wheel.name))
    (out / "environment.yml").write_text(env)
    meta = {"version": "1", "pixi-pack-version": "0.7.10", "platform": pack_platform or platform}
    (out / "pixi-pack.json").write_text(json.dumps(meta, indent=2))


def _walk(root: Path):  # type: ignore[no-untyped-def]
    for name in sorted(os.listdir(root), key=os.fsencode):
        path = root / name
        yield path
        if path.is_dir() and not path.is_symlink():
            yield from _walk(path)


def write_tar(staged: Path, fileobj: io.IOBase, extra: Sequence[tuple[tarfile.TarInfo, bytes]] = ()) -> None:
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.GNU_FORMAT) as tf:
        for path in _walk(staged):
            info = tf.gettarinfo(str(path), arcname=path.relative_to(staged).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() or os.stat(path).st_mode & 0o100 else 0o644
            if info.isfile():
                with open(path, "rb") as fh:
                    tf.addfile(info, fh)
            else:
                tf.addfile(info)
        for info, data in extra:
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)


def build_pack(channel: Path, wheels: Sequence[Path], out: Path, *, platform: str = "linux-64",
               pack_platform: str | None = None, executable: bool = False,
               edit: Callable[[Path], None] | None = None,
               extra: Sequence[tuple[tarfile.TarInfo, bytes]] = ()) -> Path:
    """Write ``out`` (a tar, or the .sh with ``executable``); ``edit`` changes the folder before it is
    packed (a tampered archive, a package left out), ``extra`` adds raw members (unsafe names)."""
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        stage(channel, wheels, platform, staged, pack_platform)
        if edit is not None:
            edit(staged)
        buf = io.BytesIO()
        write_tar(staged, buf, extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not executable:
        out.write_bytes(buf.getvalue())
        return out
    with open(out, "wb") as fh:
        fh.write(HEADER.encode() + b"\n")
        fh.write(base64.b64encode(buf.getvalue()) + b"\n@@END_ARCHIVE@@\n")
        fh.write(base64.b64encode(STUB_UNPACK))
    out.chmod(0o755)
    return out


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def member_info(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mtime = kind, link, len(data) if kind == tarfile.REGTYPE else 0, MTIME
    return info, data
