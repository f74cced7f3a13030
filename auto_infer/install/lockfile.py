"""Read pixi.lock (format v5, v6, v7) through py-rattler into a flat list of artifacts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import sha256_file

SUPPORTED_VERSIONS = (5, 6, 7)


@dataclass(frozen=True)
class Artifact:
    kind: str            # "conda" | "pypi"
    name: str
    version: str
    url: str
    filename: str
    sha256: str | None
    size: int | None
    build: str = ""      # conda only

    @property
    def cache_key(self) -> str:
        """Directory name of the extracted package in rattler's pkgs/ (conda only)."""
        return f"{self.name}-{self.version}-{self.build}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LockedEnv:
    path: Path
    sha256: str
    version: int
    environment: str
    platform: str
    conda: tuple[Artifact, ...]
    pypi: tuple[Artifact, ...]
    raw_records: tuple[Any, ...]   # rattler RepoDataRecords, for the rattler installer

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        return self.conda + self.pypi


def _lock_version(path: Path) -> int:
    try:
        head = path.read_bytes()[:4096].decode("utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}", where=str(path)) from None
    match = re.search(r"^version:\s*(\d+)\s*$", head, re.MULTILINE)
    if not match:
        raise UserError("pixi.lock has no 'version:' line; it is not a pixi lock file (or it is truncated)",
                        where=str(path), fix="regenerate it with `pixi lock` where pixi and the network are")
    version = int(match.group(1))
    if version not in SUPPORTED_VERSIONS:
        raise UserError(f"pixi.lock format version {version} is not supported (supported: 5, 6, 7)",
                        where=str(path),
                        fix="regenerate the lock with a pixi that writes v5-v7, or upgrade auto-infer")
    return version


def _filename(url: str) -> str:
    return unquote(urlparse(url).path.rsplit("/", 1)[-1]) or url


def read(path: Path, environment: str, platform: str) -> LockedEnv:
    """Parse ``path`` and return the artifacts of ``environment`` for ``platform``."""
    from rattler import LockFile  # heavy import, keep it out of CLI start-up

    version = _lock_version(path)
    try:
        lock = LockFile.from_path(path)
    except Exception as exc:  # rattler raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"pixi.lock cannot be parsed: {first}", where=str(path),
                        fix="restore the lock from the template, or regenerate it with `pixi lock`") from None
    env = lock.environment(environment)
    if env is None:
        names = ", ".join(sorted(n for n, _ in lock.environments())) or "none"
        raise UserError(f"pixi.lock has no environment {environment!r} (it has: {names})", where=str(path),
                        fix="set AUTO_INFER_SGLANG_PIXI_ENV to one of those")
    plats = {p.name: p for p in env.platforms()}
    if platform not in plats:
        raise UserError(f"environment {environment!r} in pixi.lock is not locked for {platform} "
                        f"(it has: {', '.join(sorted(plats)) or 'none'})", where=str(path),
                        fix="add the platform to pixi.toml and run `pixi lock`, or set AUTO_INFER_PLATFORM")
    plat = plats[platform]
    records = env.conda_repodata_records_for_platform(plat) or []
    conda = tuple(
        Artifact(kind="conda", name=r.name.normalized, version=str(r.version), build=str(r.build),
                 url=str(r.url), filename=r.file_name,
                 sha256=r.sha256.hex() if r.sha256 else None, size=r.size)
        for r in records)
    pypi = []
    for p in env.pypi_packages_for_platform(plat) or []:
        hashes = p.hashes
        sha = None
        if hashes is not None and getattr(hashes, "_hashes", None) is not None and hashes.sha256:
            sha = hashes.sha256.hex()
        pypi.append(Artifact(kind="pypi", name=p.name, version=str(p.version), url=p.location,
                             filename=_filename(p.location), sha256=sha, size=None))
    return LockedEnv(path=path, sha256=sha256_file(path), version=version, environment=environment,
                     platform=platform, conda=conda, pypi=tuple(pypi), raw_records=tuple(records))


def canonical_name(name: str) -> str:
    """PEP 503 normalized distribution name: runs of -_. become one -, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def non_wheel(env: LockedEnv) -> list[Artifact]:
    """PyPI entries that are not wheels (sdists, paths, git): they cannot install offline."""
    return [a for a in env.pypi if not a.filename.endswith(".whl")]
