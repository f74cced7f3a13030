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
from auto_infer.install import jsonread

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


@dataclass(frozen=True)
class Listed:
    """One member as the index lists it."""
    path: str
    kind: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Index:
    """The bundle index, read and checked (every field's type, every member's name and shape)."""
    version: int
    lock_sha256: str
    environment: str | None
    platform: str | None
    since: dict[str, Any] | None       # a delta's base: {"lock_sha256", "manifest_sha256"}
    members: tuple[Listed, ...]

    @property
    def since_lock(self) -> str:
        return str((self.since or {}).get("lock_sha256", "?"))


REFUSE = "this is not a bundle written by `auto-infer bundle export`, or it is damaged"


def _listed(n: jsonread.Node) -> Listed:
    kind = n.get("kind").text()
    if kind not in KINDS:
        n.get("kind").fail(f"{kind!r} is not one of {', '.join(KINDS)}")
    size = n.get("size").number()
    if size < 0:
        n.get("size").fail(f"{size} is negative")
    return Listed(n.get("path").text(), kind, n.get("sha256").text(), size)


def _check_names(members: tuple[Listed, ...], n: jsonread.Node) -> None:
    seen: set[str] = set()
    for i, m in enumerate(members):
        why = (bad_name(m.path) or ("is listed twice" if m.path in seen else None) or shape_problem(m.kind, m.path)
               or ("is the index" if m.path == INDEX else None))
        if why:
            n.get("members").items()[i].get("path").fail(f"the member {m.path!r} {why}")
        seen.add(m.path)
    folders = {"/".join(p.split("/")[:k]) for p in seen for k in range(1, p.count("/") + 1)}
    clash = sorted(seen & folders)
    if clash:
        n.get("members").fail(f"{clash[0]!r} is named as a file and as the folder of another member")


def parse_index(raw: bytes, where: str) -> Index:
    what = f"the bundle index {INDEX}"
    n = jsonread.root(jsonread.load(raw, what, where, REFUSE), what, where, REFUSE).obj()
    if n.get("format").value != FORMAT:
        raise UserError(f"{INDEX} is not an auto-infer bundle index", where=where, fix=REFUSE)
    version = n.get("version").value
    if version not in READS or isinstance(version, bool):
        raise UserError(f"bundle format version {version!r} is not supported (this tool reads "
                        f"{' and '.join(map(str, READS))})", where=where,
                        fix="import it with the auto-infer version that exported it")
    since = n.get("since")
    if since.value is not None:
        since.obj().get("lock_sha256").text()
    members = tuple(_listed(m) for m in n.get("members").items())
    _check_names(members, n)
    return Index(version, n.get("lock_sha256").text(), n.get("environment").typed(str, optional=True),
                 n.get("platform").typed(str, optional=True), since.value, members)
