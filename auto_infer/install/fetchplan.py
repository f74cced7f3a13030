"""What warm will fetch, before the first byte: sizes, what the cache holds already, free space.

Packages are sized by the lock (conda records carry their size; a wheel's size comes from a HEAD
request to the first mirror that answers, as pixi.lock has none for wheels), weights by the Hub's
file list. A file already in the cache counts as there, a partial file as the bytes it holds.
Each destination's volume must hold what is missing plus a margin, or warm stops before
downloading anything, naming the volume, the need and the free space. Files nobody could size make
every figure a lower bound ("at least"), and the volume line says it cannot judge them; they alone
never stop warm.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import existing_parent, mount_of
from auto_infer.core.meter import mb
from auto_infer.core.settings import Net, Settings
from auto_infer.install import archives, cache
from auto_infer.install.download import is_local, part_path, session
from auto_infer.install.lockfile import Artifact, LockedEnv
from auto_infer.install.mirrors import MirrorMap
from auto_infer.install.mirrors import load as load_mirrors

HEAD_TIMEOUT = 15.0     # a size is worth a short wait only: unknown, it is said so


def margin(need: int) -> int:
    """Room kept free beyond what is missing: 5 % and 64 MB (the manifest, records, a rounding)."""
    return need // 20 + 64_000_000


@dataclass(frozen=True)
class Part:
    """One line of the plan: a group of files that go to one folder."""
    what: str
    dest: Path
    total: int              # bytes of every file (those of unknown size not counted)
    have: int               # bytes already here: whole files, and partial files to resume
    files: int
    unknown: int = 0        # files whose size nobody could tell

    @property
    def missing(self) -> int:
        return max(self.total - self.have, 0)

    def line(self) -> str:
        least, unknown = at_least(self.unknown), f" (+{self.unknown} of unknown size)" if self.unknown else ""
        return (f"  {self.what}: {self.files} files, {least}{mb(self.total)}{unknown}; {mb(self.have)} in the cache, "
                f"{least}{mb(self.missing)} to download → {self.dest}")


def at_least(unknown: int) -> str:
    """"at least " before a figure that leaves out ``unknown`` files of unknown size."""
    return "at least " if unknown else ""


def files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


@dataclass(frozen=True)
class Volume:
    mount: str
    fstype: str
    free: int
    need: int               # bytes missing, of the files whose size is known
    parts: tuple[Part, ...]

    @property
    def unknown(self) -> int:
        return sum(p.unknown for p in self.parts)

    @property
    def enough(self) -> bool:
        """Room for what is known to be missing; files of unknown size cannot be judged (the line says so)."""
        return self.need == 0 or self.free >= self.need + margin(self.need)

    def line(self) -> str:
        need = (f"needs {at_least(self.unknown)}{mb(self.need)} + {mb(margin(self.need))} margin" if self.need
                else "nothing of known size to download" if self.unknown else "nothing to download")
        if self.unknown:
            need += f"; cannot judge the {files(self.unknown)} of unknown size (not counted)"
        return f"  volume {self.mount} ({self.fstype}): {mb(self.free)} free; {need}"


@dataclass(frozen=True)
class FetchPlan:
    parts: tuple[Part, ...]
    hub: dict[str, Any]           # source key -> weights.fetch.Resolved, reused by the download

    def volumes(self) -> list[Volume]:
        groups: dict[tuple[int, str], list[Part]] = {}
        for p in self.parts:
            anchor = existing_parent(p.dest)
            groups.setdefault((anchor.stat().st_dev, mount_of(p.dest)[0]), []).append(p)
        out = []
        for (_, mount), parts in groups.items():
            free = shutil.disk_usage(existing_parent(parts[0].dest)).free
            out.append(Volume(mount, mount_of(parts[0].dest)[1], free, sum(p.missing for p in parts), tuple(parts)))
        return out

    def lines(self) -> list[str]:
        total, missing = sum(p.total for p in self.parts), sum(p.missing for p in self.parts)
        unknown = sum(p.unknown for p in self.parts)
        least, plus = at_least(unknown), f"; +{files(unknown)} of unknown size" if unknown else ""
        head = (f"warm will fetch {least}{mb(missing)} of {least}{mb(total)} "
                f"({mb(total - missing)} already in the cache{plus}):")
        return [head, *(p.line() for p in self.parts), *(v.line() for v in self.volumes())]

    def check(self) -> None:
        """Raise when a volume cannot hold what is missing (with the margin); nothing was fetched yet."""
        for v in self.volumes():
            if not v.enough:
                dests = ", ".join(str(p.dest) for p in v.parts)
                raise UserError(
                    f"not enough free space for warm on the volume mounted at {v.mount} ({v.fstype}): "
                    f"it needs {at_least(v.unknown)}{mb(v.need)} for the downloads + {mb(margin(v.need))} margin, "
                    "and has "
                    f"{mb(v.free)} free (for {dests})",
                    where=dests,
                    fix="free space on that volume, or point AUTO_INFER_SGLANG_CACHE_ROOT (weights: HF_HOME) at "
                        "a bigger one; `auto-infer warm --dry-run` shows the figures without downloading")


def _dest(settings: Settings, a: Artifact) -> Path:
    return archives.archive_path(settings, a) if a.kind == "conda" else settings.wheel_dir / a.filename


def _held(settings: Settings, a: Artifact) -> int | None:
    """Bytes of ``a`` the cache holds: the whole size when it is there, a partial file's, or None."""
    if settings.installer == "pixi":
        there = (cache.conda_entry_problem(settings.conda_pkgs_dir, a) is None if a.kind == "conda"
                 else cache.pixi_wheel_cached(settings, a))
        return (a.size or 0) if there else None
    dest = _dest(settings, a)
    for path in (dest, part_path(dest)):
        try:
            return path.stat().st_size
        except OSError:
            continue
    return None


def _head_size(url: str, net: Net, mirrors: MirrorMap) -> int | None:
    """The size a mirror announces for ``url`` (HEAD, redirects followed); None when none says."""
    import requests

    with session() as http:
        for _, candidate in mirrors.routes(url):
            local = is_local(candidate)
            try:
                if local is not None:
                    return os.stat(local).st_size
                wait = min(net.timeout, net.deadline, HEAD_TIMEOUT)
                resp = http.head(candidate, allow_redirects=True, timeout=(wait, wait))
            except (OSError, requests.exceptions.RequestException):
                continue
            length = resp.headers.get("Content-Length", "")
            if resp.status_code == 200 and length.isdigit():
                return int(length)
    return None


def packages(settings: Settings, locked: LockedEnv, net: Net) -> Part:
    arts = [a for a in locked.artifacts if "://" in a.url]
    held = {a.url: _held(settings, a) for a in arts}
    done = os.path.exists
    sizes = {a.url: a.size for a in arts}
    probe = [a for a in arts if a.size is None and not (held[a.url] and done(_dest(settings, a)))]
    if probe:
        mirrors = load_mirrors(net.mirrors)
        with ThreadPoolExecutor(max_workers=net.connections) as pool:
            for a, size in zip(probe, pool.map(lambda a: _head_size(a.url, net, mirrors), probe), strict=True):
                sizes[a.url] = size
    for a in arts:           # a whole wheel here: its size is its file's
        if sizes[a.url] is None and settings.installer != "pixi" and done(_dest(settings, a)):
            sizes[a.url] = held[a.url]
    total = sum(s or 0 for s in sizes.values())
    have = sum(min(h or 0, sizes[u] or 0) for u, h in held.items())
    conda = sum(1 for a in arts if a.kind == "conda")
    dest = settings.cache_root if settings.installer != "pixi" else settings.pixi_cache_dir
    return Part(f"packages ({conda} conda + {len(arts) - conda} PyPI)", dest, total, have, len(arts),
                sum(1 for s in sizes.values() if s is None))


def make(settings: Settings, locked: LockedEnv, weights: Sequence[tuple[str, Part, Any]] = ()) -> FetchPlan:
    """The plan: packages of ``locked``, and ``weights`` as (source key, part, resolved)."""
    parts = [packages(settings, locked, settings.net), *(p for _, p, _ in weights)]
    return FetchPlan(tuple(parts), {key: r for key, _, r in weights if r is not None})
