"""The bundle file: an uncompressed POSIX (pax) tar, deterministic, its index first.

Members, in this order (sorted within each group):

    auto-infer-bundle.json         the index: format, lock, environment, platform, `since`, and
                                   the path, sha256, size and kind of every other member
    template/pixi.toml, template/pixi.lock
    cache-manifest.json            the cache manifest of the lock (what `install` trusts)
    conda/<subdir>/<file>          original conda archives, sha256 as locked
    pypi/<wheel>                   wheels, sha256 as locked (or as measured at warm)
    models/<org>--<name>/<commit>/<file>
                                   Hub weights the manifest records, sha256 and size as recorded

Same inputs, same bytes: fixed mtime, uid/gid 0, no owner names, modes 0644, and no
wall-clock time anywhere in the index.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from auto_infer.core.errors import UserError

INDEX = "auto-infer-bundle.json"
FORMAT = "auto-infer-bundle"
VERSION = 1
MODELS_VERSION = 2            # a bundle with weights: older tools refuse it by its version, clearly
READS = (VERSION, MODELS_VERSION)
TAR_FORMAT = tarfile.PAX_FORMAT
MTIME = 0
KINDS = ("template", "manifest", "conda", "pypi", "model")
INDEX_MAX = 64 << 20          # an index is JSON about members, never this big
CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    path: str          # name inside the tar
    kind: str          # one of KINDS
    sha256: str
    size: int
    source: Path | None = None     # file to copy from (export)
    data: bytes | None = None      # or the bytes themselves (template, manifest)

    def entry(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "sha256": self.sha256, "size": self.size}


def order(member: Member) -> tuple[int, str]:
    return KINDS.index(member.kind), member.path


def of_bytes(path: str, kind: str, data: bytes) -> Member:
    return Member(path, kind, hashlib.sha256(data).hexdigest(), len(data), data=data)


def conda_path(subdir: str, filename: str) -> str:
    return f"conda/{subdir}/{filename}"


def pypi_path(filename: str) -> str:
    return f"pypi/{filename}"


def index_bytes(head: dict[str, Any], members: list[Member]) -> bytes:
    version = MODELS_VERSION if any(m.kind == "model" for m in members) else VERSION
    data = {"format": FORMAT, "version": version, **head, "members": [m.entry() for m in members]}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class HashingReader:
    """A file object that hashes what is read through it (export: hash while copying)."""

    def __init__(self, fh: IO[bytes], on_bytes: Callable[[int], None] | None = None):
        self.fh, self.h, self.n, self.on_bytes = fh, hashlib.sha256(), 0, on_bytes

    def read(self, size: int = -1) -> bytes:
        block = self.fh.read(size)
        self.h.update(block)
        self.n += len(block)
        if self.on_bytes:
            self.on_bytes(len(block))
        return block


# ---- reading the index (import) ------------------------------------------------------------

def bad_name(name: str) -> str | None:
    """Why a member name cannot be trusted, or None."""
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        return "is not a plain relative path"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' part"
    return None


def shape_problem(kind: str, path: str) -> str | None:
    """A member path must have its kind's shape (so no member can shadow another's folder)."""
    parts = path.split("/")
    ok = {"template": path in ("template/pixi.toml", "template/pixi.lock"),
          "manifest": path == "cache-manifest.json",
          "conda": len(parts) == 3 and parts[0] == "conda" and parts[2].endswith((".conda", ".tar.bz2")),
          "pypi": len(parts) == 2 and parts[0] == "pypi" and parts[1].endswith(".whl"),
          "model": len(parts) >= 4 and parts[0] == "models" and "--" in parts[1]}.get(kind, False)
    return None if ok else f"is not where a {kind} member belongs"


def parse_index(raw: bytes, where: str) -> dict[str, Any]:
    refuse = "this is not a bundle written by `auto-infer bundle export`, or it is damaged"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"the bundle index {INDEX} is not valid JSON", where=where, fix=refuse) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{INDEX} is not an auto-infer bundle index", where=where, fix=refuse)
    if data.get("version") not in READS:
        raise UserError(f"bundle format version {data.get('version')!r} is not supported (this tool reads "
                        f"{' and '.join(map(str, READS))})", where=where, fix="import it with the auto-infer version that exported it")
    members = data.get("members")
    if not isinstance(members, list):
        members = [None]
    ok = all(
        isinstance(m, dict) and isinstance(m.get("path"), str) and m.get("kind") in KINDS
        and isinstance(m.get("sha256"), str) and isinstance(m.get("size"), int) for m in members)
    if not ok or not isinstance(data.get("lock_sha256"), str):
        raise UserError(f"{INDEX} lacks its member list or lock sha256", where=where, fix=refuse)
    seen: set[str] = set()
    for m in members:
        why = (bad_name(m["path"]) or ("is listed twice" if m["path"] in seen else None)
               or shape_problem(m["kind"], m["path"]))
        if why or m["path"] == INDEX:
            raise UserError(f"the bundle index names a member that {why or 'is the index'}: {m['path']!r}",
                            where=where, fix=refuse)
        seen.add(m["path"])
    return data
