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
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from auto_infer.core import redact
from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import sha256_file
from auto_infer.weights.spec import DEFAULT_IGNORE, FOLDER, Source

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


def fetch_hub(source: Source, hub_cache: Path, where: str = "[instance.NAME.model]") -> dict[str, Any]:
    """Resolve, download and measure one Hub source; return its manifest entry. ``where``: the
    config table(s) that name it, for the messages."""
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
    snapshot = hub_cache / repo_folder(source.repo) / "snapshots" / info.sha

    def download() -> None:
        _call(label, endpoint, where, lambda: hf.snapshot_download(
            source.repo, revision=info.sha, cache_dir=str(hub_cache), allow_patterns=list(wanted)))

    download()
    if _drop_wrong_sizes(snapshot, wanted, remote):
        download()
        bad = _drop_wrong_sizes(snapshot, wanted, remote)
        if bad:
            raise UserError(f"{label}: {bad[0]} still has the wrong size after a second download",
                            where=str(snapshot), fix="check the disk and the network path (proxy), then warm again")
    files = [_file_entry(snapshot, name, remote[name]) for name in wanted]
    return {"key": source.key, "source": "hub", "repo": source.repo, "revision": source.revision,
            "commit": info.sha, "endpoint": endpoint,
            "snapshot": str(snapshot.relative_to(hub_cache)),
            "allow_patterns": list(source.allow_patterns) if source.allow_patterns is not None else None,
            "ignore_patterns": list(ignore) if ignore is not None else None,
            "files": files, "total_size": sum(f["size"] for f in files),
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


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
