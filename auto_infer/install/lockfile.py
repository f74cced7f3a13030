"""Read pixi.lock (format v5, v6, v7) through py-rattler into a flat list of artifacts."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import sha256_file
from auto_infer.core.redact import redact_url
from auto_infer.install import lock_text

SUPPORTED_VERSIONS = (5, 6, 7)
SDIST_ENDINGS = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".tar")
# what a PyPI source that can never be cached for offline use is, by Artifact.source
UNCACHEABLE = {"sdist": "an sdist (needs a build)", "tree": "a local source tree (needs a build)",
               "git": "a git URL (needs a clone and a build)"}


@dataclass(frozen=True)
class Artifact:
    kind: str            # "conda" | "pypi"
    name: str
    version: str
    url: str             # a local path in the lock is an absolute file:// URL here
    filename: str        # a plain file name: the artifact's name in the cache
    sha256: str | None
    size: int | None
    build: str = ""      # conda only
    source: str = ""     # pypi: wheel | sdist | tree | git
    location: str = ""   # pypi: the location as the lock writes it
    subdir: str = ""     # conda: the channel subdir, the URL path's folder (linux-64, noarch)

    @property
    def cache_key(self) -> str:
        """Directory name of the extracted package in rattler's pkgs/ (conda only)."""
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def uncacheable(self) -> str | None:
        """Why this entry can never be cached for an offline install, or None."""
        return UNCACHEABLE.get(self.source)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["subdir"]           # the manifest's fields stay as they were (the URL holds it)
        return out


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
    return url_file_name(url) or url


def url_file_name(url: str) -> str:
    """The file name a URL names: the last segment of its PATH (never its query or fragment),
    %-decoded; what it decodes to is checked by :func:`plain_name` (``..%2Fx`` is no plain name)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return unquote(path.rsplit("/", 1)[-1])


def url_subdir(url: str) -> str:
    """The folder of the file a URL names (a conda channel's subdir), from its path only."""
    try:
        parts = urlsplit(url).path.rstrip("/").split("/")
    except ValueError:
        return ""
    return unquote(parts[-2]) if len(parts) >= 2 and parts[-2] else "noarch"


def plain_name(filename: str, entry: str | Callable[[], str], lock: Path) -> str:
    """``filename`` if it is a plain file name (it becomes a path in the cache), else a UserError that
    names the entry (``entry``, or made by it: redacting a URL costs more than this check)."""
    if filename in ("", ".", "..") or "/" in filename or "\\" in filename or "\0" in filename \
            or any(ord(c) < 32 for c in filename) or len(filename.encode()) > 255:
        entry = entry if isinstance(entry, str) else entry()
        raise UserError(f"pixi.lock entry {entry} names the file {filename!r}, which is not a plain file name "
                        "(it would be written outside the cache folder)", where=str(lock),
                        fix="fix that entry's URL, or regenerate the lock with `pixi lock` from a trusted template")
    return filename


def _pypi_source(loc: str, lock_dir: Path) -> tuple[str, str, str]:
    """(source kind, url, file name) of a PyPI location; relative paths resolve against the lock's folder."""
    parsed = urlparse(loc)
    if loc.startswith("git+") or parsed.scheme.startswith("git"):
        return "git", loc, ""
    if parsed.scheme in ("http", "https"):
        name = _filename(loc)
        return ("wheel" if name.endswith(".whl") else "sdist"), loc, name
    raw = unquote(parsed.path) if parsed.scheme == "file" else loc
    path = Path(raw) if Path(raw).is_absolute() else lock_dir / raw
    path = Path(os.path.normpath(path))
    if path.name.endswith(".whl"):
        return "wheel", path.as_uri(), path.name
    return ("sdist" if path.name.endswith(SDIST_ENDINGS) else "tree"), path.as_uri(), path.name


def _pypi(env: Any, plat: Any, path: Path) -> tuple[Artifact, ...]:
    versions: dict[tuple[str, str], str] | None = None
    out = []
    for p in env.pypi_packages_for_platform(plat) or []:
        hashes = p.hashes
        sha = None
        if hashes is not None and getattr(hashes, "_hashes", None) is not None and hashes.sha256:
            sha = hashes.sha256.hex()
        source, url, filename = _pypi_source(p.location, Path(os.path.abspath(path)).parent)
        version = str(p.version)
        if version in ("", "<dynamic>"):            # py-rattler drops a path entry's version
            versions = versions if versions is not None else lock_text.pypi_versions(path.read_text())
            version = versions.get((p.location, p.name)) or version
        if source in ("wheel", "sdist"):
            plain_name(filename, functools.partial(_entry_name, p.name, p.location), path)
        out.append(Artifact(kind="pypi", name=p.name, version=version, url=url, filename=filename,
                            sha256=sha, size=None, source=source, location=p.location))
    return tuple(out)


def _entry_name(name: str, location: str) -> str:
    return f"{name} ({redact_url(location)})"


CONDA_ENDINGS = (".conda", ".tar.bz2")


def _conda(r: Any, lock: Path) -> Artifact:
    """A conda entry; its file name and subdir come from its URL's path, each a plain name."""
    url, name = str(r.url), r.name.normalized
    entry = functools.partial(_entry_name, name, url)   # for a message only: redacting 450 URLs costs ~6 ms
    filename = plain_name(url_file_name(url), entry, lock)
    if filename != r.file_name or not filename.endswith(CONDA_ENDINGS):
        raise UserError(f"pixi.lock entry {entry()} names the file {filename!r}, which is not a conda package "
                        f"file name (…{' or '.join(CONDA_ENDINGS)}, as the entry's own {r.file_name!r})",
                        where=str(lock), fix="fix that entry's URL (the file name is the last part of its path), "
                        "or regenerate the lock with `pixi lock` from a trusted template")
    return Artifact(kind="conda", name=name, version=str(r.version), build=str(r.build), url=url,
                    filename=filename, sha256=r.sha256.hex() if r.sha256 else None, size=r.size,
                    subdir=plain_name(url_subdir(url), entry, lock))


def _parse_error(path: Path, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = path.read_text(errors="replace")
    if "subdir" in first:
        names = lock_text.conda_without_subdir(text)
        shown = "".join(f"\n    - {redact_url(u)}" for u in names[:8])
        return UserError(f"pixi.lock has conda entries without a `subdir:` field, and their URL is not "
                         f"<channel>/<subdir>/<file>, so the platform of the package is unknown:{shown}",
                         where=str(path), fix="add `subdir: linux-64` (or noarch) to each of those entries, "
                         "or serve the packages from a channel folder (<channel>/linux-64/<file>) and re-lock")
    if "missing field `packages`" in first:
        return _empty(path, "any platform")
    return UserError(f"pixi.lock cannot be parsed: {first}", where=str(path),
                     fix="restore the lock from the template, or regenerate it with `pixi lock`")


def _empty(path: Path, platform: str) -> UserError:
    return UserError(f"pixi.lock locks no packages for {platform}: the environment is empty, there is "
                     "nothing to install", where=str(path),
                     fix="add dependencies to pixi.toml ([dependencies]) and run `pixi lock`")


_READ: dict[tuple[str, str, str, str], LockedEnv] = {}   # per process: template and install both read it


def read(path: Path, environment: str, platform: str) -> LockedEnv:
    """Parse ``path`` and return the artifacts of ``environment`` for ``platform``.

    Remembered for the process by the file's sha256 (a lock of 300 packages hashes in well under a
    millisecond; parsing it takes tens): `template` then `install` in one run parse it once, and a
    lock changed in between, whatever its timestamps, is parsed again."""
    try:
        key = (os.path.abspath(path), environment, platform, sha256_file(path))
    except OSError:
        return _parse(path, environment, platform)       # it says what is wrong with the file
    if key not in _READ:
        _READ[key] = _parse(path, environment, platform, sha256=key[3])
    return _READ[key]


def _parse(path: Path, environment: str, platform: str, sha256: str | None = None) -> LockedEnv:
    from rattler import LockFile  # heavy import, keep it out of CLI start-up

    version = _lock_version(path)
    try:
        lock = LockFile.from_path(path)
    except Exception as exc:  # rattler raises its own exception types
        raise _parse_error(path, exc) from None
    env = lock.environment(environment)
    if env is None:
        names = ", ".join(sorted(n for n, _ in lock.environments())) or "none"
        raise UserError(f"pixi.lock has no environment {environment!r} (it has: {names})", where=str(path),
                        fix="set AUTO_INFER_SGLANG_PIXI_ENV to one of those")
    plats = {p.name: p for p in env.platforms()}
    if not plats:
        raise _empty(path, "any platform")
    if platform not in plats:
        raise UserError(f"environment {environment!r} in pixi.lock is not locked for {platform} "
                        f"(it has: {', '.join(sorted(plats)) or 'none'})", where=str(path),
                        fix="add the platform to pixi.toml and run `pixi lock`, or set AUTO_INFER_PLATFORM")
    plat = plats[platform]
    records = env.conda_repodata_records_for_platform(plat) or []
    conda = tuple(_conda(r, path) for r in records)
    pypi = _pypi(env, plat, path)
    if not conda and not pypi:
        raise _empty(path, platform)
    return LockedEnv(path=path, sha256=sha256 or sha256_file(path), version=version, environment=environment,
                     platform=platform, conda=conda, pypi=pypi, raw_records=tuple(records))


def canonical_name(name: str) -> str:
    """PEP 503 normalized distribution name: runs of -_. become one -, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def non_wheel(env: LockedEnv) -> list[Artifact]:
    """PyPI entries that are not wheels (sdists, paths, git): they can never install offline."""
    return [a for a in env.pypi if a.uncacheable]


def refuse_uncacheable(env: LockedEnv, step: str) -> None:
    """A UserError naming every entry that can never be cached for offline use, with what to do."""
    bad = non_wheel(env)
    if not bad:
        return
    raise UserError(f"{step}: {uncacheable_text(bad)}", where=str(env.path), fix=UNCACHEABLE_FIX)


def uncacheable_text(bad: list[Artifact]) -> str:
    lines = "".join(f"\n    - {a.name} {a.version}: {a.uncacheable}: {redact_url(a.location)}" for a in bad)
    return f"{len(bad)} PyPI entries of pixi.lock can never be cached for an offline install:{lines}"


UNCACHEABLE_FIX = ("build a wheel of each (`pip wheel --no-deps <source> -w <template>/wheels`), put it into the "
                   "template and lock that wheel (pixi.toml: `<name> = { path = \"wheels/<file>.whl\" }`, then "
                   "`pixi lock`); or vendor the package into the template as a conda package; or remove it "
                   "from the environment")
