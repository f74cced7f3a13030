"""warm's side: fetch a Hub repo with the real ``huggingface_hub`` client, record a folder.

The Hub source is resolved to a commit sha first (``model_info`` with file metadata: sizes and
the LFS sha256 of every file), then ``snapshot_download`` fetches exactly that commit into
``<hub cache>/models--org--name/snapshots/<sha>/``. Each file's size is compared with the Hub's;
a file of the wrong size (a cut download an earlier run left) is removed and fetched once more.
``HF_TOKEN``, ``HF_ENDPOINT`` and the proxy variables are the client's own business: they are
read from the environment and never written anywhere.
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from auto_infer.core import redact
from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import sha256_file
from auto_infer.core.meter import Meter, mb
from auto_infer.core.progress import Step, say
from auto_infer.weights.spec import DEFAULT_IGNORE, FOLDER, Source

RESUMABLE = re.compile(r"^[0-9a-f]{40,64}\.incomplete$")             # <etag>.incomplete: resumed before 2.x
ORPHAN = re.compile(r"^[0-9a-f]{40,64}\.[0-9a-f]{8}\.incomplete$")  # 2.x: one per process, never resumed
STALE = 600.0          # seconds a partial file of another process must be untouched before it is removed
INSTALL_HINT = "pip install 'auto-infer[hub]' (or: pip install 'huggingface_hub>=0.36')"


def client() -> ModuleType:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401 - read below (HF_ENDPOINT, HF_HUB_OFFLINE)
    except ImportError:
        raise UserError("the model config names a Hugging Face Hub repo, and huggingface_hub is not installed",
                        where="the Python that runs auto-infer", fix=INSTALL_HINT) from None
    return huggingface_hub


def repo_folder(repo: str) -> str:
    """The hub cache's folder name for a model repo (huggingface_hub's own scheme)."""
    return "--".join(["models", *repo.split("/")])


@dataclass(frozen=True)
class Resolved:
    """A Hub source resolved to a commit: the files it selects and their sizes (the Hub's list)."""
    source: Source
    label: str
    endpoint: str
    commit: str
    remote: dict[str, Any]              # rfilename -> the Hub's sibling record (size, lfs)
    wanted: list[str]
    ignore: tuple[str, ...] | None

    def snapshot(self, hub_cache: Path) -> Path:
        assert self.source.repo is not None
        return hub_cache / repo_folder(self.source.repo) / "snapshots" / self.commit

    @property
    def size(self) -> int:
        return sum(self.remote[n].size or 0 for n in self.wanted)

    def have(self, hub_cache: Path) -> int:
        """Bytes of the selected files already in the snapshot, whole (a wrong size counts as none)."""
        snap = self.snapshot(hub_cache)
        return sum(want for n in self.wanted if (want := self.remote[n].size or 0) and _size(snap / n) == want)

    def blobs(self, hub_cache: Path) -> Path:
        assert self.source.repo is not None
        return hub_cache / repo_folder(self.source.repo) / "blobs"

    def partial(self, hub_cache: Path, resumable: bool = True) -> int:
        """Bytes of the client's partial files; ``resumable``: only those a client goes on from."""
        return sum(s for p in self.blobs(hub_cache).glob("*.incomplete")
                   if (not resumable or RESUMABLE.match(p.name)) and (s := _size(p)))

    def on_disk(self, hub_cache: Path) -> int:
        """``have`` plus every partial file of the client: the bytes there now."""
        return self.have(hub_cache) + self.partial(hub_cache, resumable=False)

    def in_flight(self, hub_cache: Path, since: float) -> dict[str, list[int]]:
        """The files the client is writing now (partial files touched since ``since``): name -> [done, size]."""
        names = {}
        for n in self.wanted:
            lfs = self.remote[n].lfs
            sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
            names[sha or getattr(self.remote[n], "blob_id", None)] = n
        out = {}
        for p in self.blobs(hub_cache).glob("*.incomplete"):
            name = names.get(p.name.split(".")[0])
            st = p.stat()
            if name is not None and st.st_mtime >= since:
                out[name] = [st.st_size, self.remote[name].size or 0]
        return out

    def drop_orphans(self, hub_cache: Path) -> tuple[int, int]:
        """Remove the per-process partial files of huggingface_hub 2.x that a killed run left (it never
        resumes them) and nobody wrote for STALE seconds; return how many and their bytes."""
        gone = [0, 0]
        for p in self.blobs(hub_cache).glob("*.incomplete"):
            try:
                st = p.stat()
                if ORPHAN.match(p.name) and time.time() - st.st_mtime > STALE:
                    p.unlink()
                    gone[0], gone[1] = gone[0] + 1, gone[1] + st.st_size
            except OSError:
                continue
        return gone[0], gone[1]


def resolve(source: Source, where: str = "[instance.NAME.model]") -> Resolved:
    """Ask the Hub for the commit and its file list (sizes, LFS sha256); no file is downloaded."""
    hf = client()
    assert source.repo is not None
    label = f"{source.repo}@{source.revision}"
    if hf.constants.HF_HUB_OFFLINE:
        raise UserError(f"cannot fetch {label}: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set for warm",
                        where="the environment of `auto-infer warm`",
                        fix="unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE for warm (serve sets them itself)")
    endpoint = redact.redact_url(hf.constants.ENDPOINT)
    info = _call(label, endpoint, where, lambda: hf.HfApi().model_info(source.repo, revision=source.revision,
                                                                files_metadata=True))
    remote = {s.rfilename: s for s in info.siblings or []}
    ignore = source.ignore_patterns
    if ignore is None and any(n.endswith(".safetensors") for n in remote):
        ignore = DEFAULT_IGNORE
    wanted = sorted(n for n in remote if _selected(n, source.allow_patterns, ignore))
    if not wanted:
        raise UserError(f"{label}: the file patterns select none of its {len(remote)} files",
                        where=f"{where} allow_patterns / ignore_patterns", fix="loosen the patterns (files: "
                        f"{', '.join(sorted(remote)[:8])})")
    return Resolved(source, label, endpoint, info.sha, remote, wanted, ignore)


def fetch_hub(source: Source, hub_cache: Path, where: str = "[instance.NAME.model]",
              resolved: Resolved | None = None, step: Step | None = None, every: float = 10.0) -> dict[str, Any]:
    """Resolve (unless ``resolved``), download and measure one Hub source; return its manifest
    entry. ``where``: the config table(s) that name it, for the messages; ``step`` and ``every``:
    the byte view's (huggingface_hub's files are watched on disk)."""
    hf = client()
    r = resolved or resolve(source, where)
    snapshot = r.snapshot(hub_cache)

    orphans, orphan_bytes = r.drop_orphans(hub_cache)
    if orphans:
        say(f"  weights: removed {orphans} partial file(s) of an earlier, killed download ({mb(orphan_bytes)}): "
            "this huggingface_hub version does not resume them")

    def download() -> None:
        base, started = r.on_disk(hub_cache), time.time() - 1
        with Meter(f"weights {r.label}", r.size, r.have(hub_cache) + r.partial(hub_cache), every, step) as meter:
            meter.watch(lambda: r.on_disk(hub_cache) - base)
            meter.watch_flight(lambda: r.in_flight(hub_cache, started))
            _call(r.label, r.endpoint, where, lambda: _quietly(hf, lambda: hf.snapshot_download(
                source.repo, revision=r.commit, cache_dir=str(hub_cache), allow_patterns=list(r.wanted))))

    download()
    if _drop_wrong_sizes(snapshot, r.wanted, r.remote):
        download()
        bad = _drop_wrong_sizes(snapshot, r.wanted, r.remote)
        if bad:
            raise UserError(f"{r.label}: {bad[0]} still has the wrong size after a second download",
                            where=str(snapshot), fix="check the disk and the network path (proxy), then warm again")
    files = [_file_entry(snapshot, name, r.remote[name]) for name in r.wanted]
    return {"key": source.key, "source": "hub", "repo": source.repo, "revision": source.revision,
            "commit": r.commit, "endpoint": r.endpoint,
            "snapshot": str(snapshot.relative_to(hub_cache)),
            "allow_patterns": list(source.allow_patterns) if source.allow_patterns is not None else None,
            "ignore_patterns": list(r.ignore) if r.ignore is not None else None,
            "files": files, "total_size": sum(f["size"] for f in files),
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _quietly(hf: ModuleType, fn: Any) -> Any:
    """The client's own bars off: warm's meter shows these bytes, read from the files on disk."""
    utils = hf.utils
    was_off = utils.are_progress_bars_disabled()
    utils.disable_progress_bars()
    try:
        return fn()
    finally:
        if not was_off:
            utils.enable_progress_bars()


def _selected(name: str, allow: tuple[str, ...] | None, ignore: tuple[str, ...] | None) -> bool:
    """huggingface_hub's rule: a pattern ending in / means the folder; allow first, then ignore."""
    def hits(patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatch(name, p + "*" if p.endswith("/") else p) for p in patterns)
    return (allow is None or hits(allow)) and not (ignore is not None and hits(ignore))


def _call(label: str, endpoint: str, where: str, fn: Any) -> Any:
    """The client's errors (its own, httpx's or requests', by version) as one clear UserError."""
    try:
        return fn()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the client raises many kinds; all mean "could not fetch"
        token = os.environ.get("HF_TOKEN", "")
        detail = redact.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "", [token] if token else [])
        raise UserError(f"cannot fetch {label} from {endpoint}: {type(exc).__name__}: {detail}",
                        where=f"{where} repo / revision",
                        fix="check the repo id and revision; a gated or private repo needs HF_TOKEN; "
                            "check HF_ENDPOINT and the proxy variables (HTTPS_PROXY, NO_PROXY)") from None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size          # follows the snapshot's symlink into blobs/
    except OSError:
        return None


def _drop_wrong_sizes(snapshot: Path, wanted: list[str], remote: dict[str, Any]) -> list[str]:
    """Remove every file (link and blob) whose size differs from the Hub's; return their names."""
    bad = []
    for name in wanted:
        path, want = snapshot / name, remote[name].size
        got = _size(path)
        if want is not None and got is not None and got != want:
            bad.append(name)
            blob = path.resolve()
            path.unlink(missing_ok=True)
            if blob != path:
                blob.unlink(missing_ok=True)
    return bad


def _file_entry(snapshot: Path, name: str, sibling: Any) -> dict[str, Any]:
    path = snapshot / name
    size = _size(path)
    if size is None:
        raise UserError(f"{name} is missing from {snapshot} after the download", where=str(snapshot),
                        fix="warm again; if it persists, the hub did not serve the file")
    lfs = sibling.lfs
    sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
    return {"path": name, "size": size, "sha256": sha or sha256_file(path), "lfs": bool(sha)}


def record_folder(source: Source) -> dict[str, Any] | None:
    """A local folder as warm sees it (file sizes), or None when it is not here (checked at serve)."""
    assert source.kind == FOLDER and source.path is not None
    root = source.path
    if not root.is_dir():
        return None
    files = [{"path": str(p.relative_to(root)), "size": p.stat().st_size}
             for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    return {"key": source.key, "source": "folder", "path": str(root), "files": files,
            "total_size": sum(f["size"] for f in files), "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
