"""The model weights in a bundle: the Hub snapshots the cache manifest records, file by file.

Export: every file of every ``hub`` entry of the manifest's ``models`` list becomes a member
``models/<org>--<name>/<commit>/<file>`` (sha256 and size as warm recorded them, checked again
while written). A delta (``--since``) leaves out the files its base manifest already records for
that repo@commit. Folder sources (a shared disk) are not carried: only their entries travel.

Import: every model member was verified against the index like any other; here it must also be a
file of a ``hub`` entry of the carried manifest, with that entry's sha256 and size. Then it is laid
into the importing side's hub cache, huggingface_hub's layout
(``models--org--name/snapshots/<commit>/<file>``, real files; ``refs/<revision>`` names the commit),
which is what install's and serve's weight audit reads, offline.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_bytes, read_json
from auto_infer.core.settings import Settings
from auto_infer.install import bundle_format as fmt
from auto_infer.weights import audit, fetch, spec

PREFIX = "models"
COMMIT_RE = re.compile(r"[0-9A-Za-z]+")


def hub_entries(manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    models = (manifest or {}).get("models", [])
    return [m for m in models if isinstance(m, dict) and m.get("source") == "hub"
            and isinstance(m.get("files"), list) and m.get("repo") and m.get("commit")]


def folder_paths(manifest: dict[str, Any] | None) -> list[str]:
    return sorted(str(m.get("path")) for m in (manifest or {}).get("models", [])
                  if isinstance(m, dict) and m.get("source") == "folder")


def member_path(repo: str, commit: str, rel: str) -> str:
    return f"{PREFIX}/{repo.replace('/', '--')}/{commit}/{rel}"


def _files(entries: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """member path -> (entry, file record)."""
    return {member_path(e["repo"], e["commit"], f["path"]): (e, f) for e in entries for f in e["files"]}


def carried(settings: Settings, since: dict[str, Any] | None) -> list[fmt.Member]:
    """The members for the manifest's Hub weights (minus what the base records); each file is in
    the snapshot with its recorded size, else a UserError before anything is written."""
    entries = hub_entries(read_json(settings.manifest_path) if settings.manifest_path.is_file() else None)
    have = set(_files(hub_entries(since))) if since is not None else set()
    out = []
    for entry in entries:
        root = settings.hub_cache / entry["snapshot"]
        files = [f for f in entry["files"] if member_path(entry["repo"], entry["commit"], f["path"]) not in have]
        problems = audit.file_problems(root, files, verify=False)
        if problems:
            raise UserError(
                f"the weights of {entry['repo']}@{entry['commit'][:12]} the cache manifest records are "
                f"not whole in {root}: {problems[0]}",
                where=str(settings.manifest_path),
                fix=audit.RUN_WARM,
            )
        out += [fmt.Member(member_path(entry["repo"], entry["commit"], f["path"]), "model", f["sha256"], f["size"],
                           source=root / f["path"]) for f in files]
    return out


def carried_models(settings: Settings) -> list[dict[str, Any]]:
    """The manifest's ``models`` entries, as the bundle's manifest carries them (no wall-clock time)."""
    data = read_json(settings.manifest_path) if settings.manifest_path.is_file() else None
    models = data.get("models", []) if isinstance(data, dict) else []
    return [{**m, "fetched_at": None} for m in models if isinstance(m, dict) and "key" in m]


def check(index: fmt.Index, manifest: dict[str, Any], refuse: Callable[[str], Exception]) -> None:
    """Every model member is a file of a Hub entry of the carried manifest, with its sha256 and size;
    every Hub entry names its repo, commit, snapshot and files so that nothing lands outside the hub cache."""
    for e in hub_entries(manifest):
        bad = next((f for f in e["files"] if not isinstance(f, dict) or not isinstance(f.get("path"), str)
                    or fmt.bad_name(f["path"])), None)
        if (not spec.REPO_RE.fullmatch(str(e["repo"])) or not COMMIT_RE.fullmatch(str(e["commit"]))
                or e.get("snapshot") != f"{fetch.repo_folder(e['repo'])}/snapshots/{e['commit']}" or bad is not None):
            raise refuse(f"the bundle's cache manifest has a model entry that is not a Hub snapshot ({e.get('key')!r})")
    files = _files(hub_entries(manifest))
    for m in index.members:
        if m.kind != "model":
            continue
        found = files.get(m.path)
        if found is None:
            raise refuse(f"member {m.path} is not a file of a model the bundle's cache manifest records")
        want = found[1]
        if (want.get("sha256"), want.get("size")) != (m.sha256, m.size):
            raise refuse(f"member {m.path} has sha256 {m.sha256} ({m.size} bytes), the manifest says "
                         f"{want.get('sha256')} ({want.get('size')} bytes)")


def absent(settings: Settings, index: fmt.Index, manifest: dict[str, Any]) -> list[str]:
    """Model files the manifest records, the bundle does not carry and this hub cache lacks (a delta's base)."""
    listed = {m.path for m in index.members}
    out = []
    for path, (entry, f) in _files(hub_entries(manifest)).items():
        if path not in listed and audit.file_problems(settings.hub_cache / entry["snapshot"], [f], verify=False):
            out.append(f"{entry['repo']}@{entry['commit'][:12]} {f['path']}")
    return out


def place(settings: Settings, manifest: dict[str, Any], members: Path) -> int:
    """Move the verified weight files into the hub cache; return how many."""
    n = 0
    for path, (entry, f) in _files(hub_entries(manifest)).items():     # checked by check(): safe names
        staged = members / path
        if not staged.is_file() or staged.is_symlink():
            continue
        folder = settings.hub_cache / fetch.repo_folder(entry["repo"])
        dest = folder / "snapshots" / entry["commit"] / f["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()                # a link into blobs/ or an old copy: the verified file replaces it
        shutil.move(str(staged), dest)   # a rename, unless HF_HOME is on another filesystem
        n += 1
        revision = str(entry.get("revision") or "")
        if revision and revision != entry["commit"] and fmt.bad_name(revision) is None:
            atomic_write_bytes(folder / "refs" / revision, entry["commit"].encode())
    return n


def merged(settings: Settings, manifest: dict[str, Any]) -> dict[str, Any]:
    """The bundle's manifest, keeping this cache's entries for other model sources."""
    old = read_json(settings.manifest_path) if settings.manifest_path.is_file() else None
    mine = {m["key"]: m for m in (old or {}).get("models", []) if isinstance(m, dict) and "key" in m}
    mine.update({m["key"]: m for m in manifest.get("models", []) if isinstance(m, dict) and "key" in m})
    return {**manifest, "models": [mine[k] for k in sorted(mine)]} if mine else manifest
