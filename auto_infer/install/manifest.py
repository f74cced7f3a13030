"""The cache manifest: what warm (or an import) put into the cache for one lock, written last.

Written as JSON by :func:`build` / :func:`write`; read back only through :func:`parse` into a
frozen :class:`Manifest`, every field checked for its type at its path (jsonread.py). A manifest
that is damaged is a UserError naming the file and the field, never a crash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer import __version__
from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_json, sha256_file
from auto_infer.core.redact import redact_env, redact_url
from auto_infer.core.settings import PROXY_VARS, Settings
from auto_infer.install import jsonread
from auto_infer.install.lockfile import LockedEnv

SCHEMA = 1
FIX = ("run `auto-infer warm` again (or import the bundle again), which rewrites it; or delete the file "
       "if the cache should be filled from scratch")


@dataclass(frozen=True)
class Entry:
    """One artifact the manifest records."""
    kind: str
    filename: str
    url: str
    sha256: str | None
    size: int | None
    served_from: str | None


@dataclass(frozen=True)
class Manifest:
    lock_sha256: str
    environment: str | None
    platform: str | None
    installer: str
    artifacts: tuple[Entry, ...]
    models: tuple[dict[str, Any], ...]      # the weights' entries (weights/ reads them by key)
    data: dict[str, Any]                    # the document as read, for what passes it on (a bundle)

    def pypi_sha256(self) -> dict[str, str | None]:
        return {e.filename: e.sha256 for e in self.artifacts if e.kind == "pypi"}


def _entry(n: jsonread.Node) -> Entry:
    n.obj()
    kind = n.get("kind").text()
    if kind not in ("conda", "pypi"):
        n.get("kind").fail(f"{kind!r}, not 'conda' or 'pypi'")
    size = n.get("size").typed(int, optional=True) if n.has("size") else None
    return Entry(kind, n.get("filename").text(), n.get("url").text(), n.get("sha256").typed(str, optional=True),
                 size, n.get("served_from").typed(str, optional=True) if n.has("served_from") else None)


def _model(n: jsonread.Node) -> dict[str, Any]:
    n.obj()
    if n.has("key"):
        n.get("key").text()
    if n.get("source").value == "hub":
        for field in ("repo", "commit", "snapshot"):
            n.get(field).text()
        for f in n.get("files").items():
            f.get("path").text()
            f.get("sha256").typed(str, optional=True)
            f.get("size").typed(int, optional=True)
    return dict(n.value)


def parse(data: Any, what: str, where: str, fix: str = FIX) -> Manifest:
    """A validated Manifest, or a UserError saying which field is wrong (``what``: for messages)."""
    n = jsonread.root(data, what, where, fix).obj()
    if n.get("schema").value != SCHEMA:
        n.get("schema").fail(f"schema {n.get('schema').value!r} is not {SCHEMA}")
    installer = n.get("installer")
    return Manifest(
        lock_sha256=n.get("lock_sha256").text(),
        environment=n.get("environment").typed(str, optional=True),
        platform=n.get("platform").typed(str, optional=True),
        installer=installer.get("name").text() if installer.value is not None else "",
        artifacts=tuple(_entry(x) for x in n.get("artifacts").items()),
        models=tuple(_model(x) for x in (n.get("models").items() if n.get("models").value is not None else [])),
        data=dict(n.value))


def load(path: Path, what: str = "the cache manifest", fix: str = FIX) -> Manifest | None:
    """The manifest at ``path``; None when there is none; a UserError when it is damaged."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, not a file", where=str(path), fix=fix) from None
    return parse(jsonread.load(raw, f"{what} {path}", str(path), fix), f"{what} {path}", str(path), fix)


def read(settings: Settings, lock_sha256: str | None = None) -> Manifest | None:
    """cache-manifest.json; with ``lock_sha256``, the manifest of that lock (the latest one or its
    per-lock copy in manifests/), so caches holding several locks serve each of them."""
    latest = load(settings.manifest_path)
    if lock_sha256 is None or (latest is not None and latest.lock_sha256 == lock_sha256):
        return latest
    return load(settings.manifests_dir / f"{lock_sha256}.json") or latest


def read_or_none(settings: Settings, lock_sha256: str | None = None) -> Manifest | None:
    """For those that rewrite it anyway (warm, an import): a damaged manifest counts as none."""
    try:
        return read(settings, lock_sha256)
    except UserError:
        return None


def build(settings: Settings, locked: LockedEnv, installer: str, installer_version: str,
          fetched: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``fetched``: the lock's URL -> fetch.Fetched (sha256, size, served_from) measured at warm.

    ``served_from`` is the (redacted) URL that served the file; for a file already cached, the
    previous manifest's value is kept."""
    env = os.environ if environ is None else environ
    toml = settings.pixi_toml
    old = read_or_none(settings)
    before = {(e.url, e.sha256): e.served_from for e in (old.artifacts if old else ())}
    artifacts = []
    for a in locked.artifacts:
        item = a.to_json()
        item["url"] = redact_url(a.url)
        got = (fetched or {}).get(a.url)
        if got is not None:
            item["sha256"] = item["sha256"] or got.sha256
            item["size"] = got.size
        item["served_from"] = (got.served_from if got is not None else None) or before.get(
            (item["url"], item["sha256"]))
        item["location"] = redact_url(a.location)
        artifacts.append(item)
    proxies = {k: v for k, v in env.items() if k in PROXY_VARS and v}
    return {
        "schema": SCHEMA, "tool": f"auto-infer {__version__}",
        "lock_sha256": locked.sha256, "lock_version": locked.version,
        "pixi_toml_sha256": sha256_file(toml) if toml.is_file() else None,
        "environment": locked.environment, "platform": locked.platform,
        "installer": {"name": installer, "version": installer_version},
        "warmed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "proxies_used": redact_env(proxies),
        "counts": {"conda": len(locked.conda), "pypi": len(locked.pypi)},
        "artifacts": artifacts,
    }


def write(settings: Settings, manifest: dict[str, Any]) -> Path:
    """The per-lock copy first, then cache-manifest.json (the latest lock) last."""
    if manifest.get("lock_sha256"):
        atomic_write_json(settings.manifests_dir / f"{manifest['lock_sha256']}.json", manifest)
    atomic_write_json(settings.manifest_path, manifest)
    return settings.manifest_path
