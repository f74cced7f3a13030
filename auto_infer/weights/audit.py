"""install's and serve's side: are the weights each instance names all here, whole, offline?

A Hub source must have a cache manifest entry (warm fetched it); every file it lists must be in
the snapshot with its size, and with ``verify`` its sha256. A folder source is checked for what a
server needs: weight files, ``config.json`` beside them (GGUF files carry their own), every shard
a ``*.index.json`` names, and the sizes warm recorded if warm saw the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import read_json, sha256_file
from auto_infer.core.settings import Settings
from auto_infer.weights.spec import HUB, Source

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
SHOWN = 5
RUN_WARM = ("run `auto-infer warm` where the network is, with this model config and the same "
            "AUTO_INFER_SGLANG_CACHE_ROOT (and HF_HOME, if you set one), then try again")


@dataclass(frozen=True)
class Resolved:
    """What a server gets: the local path, and how to show it (repo@commit or folder, size)."""
    path: Path
    summary: dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.summary["label"])


def manifest_models(settings: Settings) -> dict[str, dict[str, Any]]:
    data = read_json(settings.manifest_path)
    models = data.get("models", []) if isinstance(data, dict) else []
    return {m["key"]: m for m in models if isinstance(m, dict) and "key" in m}


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def check(settings: Settings, sources: dict[str, Source], where: str, verify: bool = False) -> dict[str, Resolved]:
    """Instance name -> resolved weights; raise a UserError naming the model and the first bad files."""
    models = manifest_models(settings)
    out: dict[str, Resolved] = {}
    done: dict[str, Resolved] = {}
    for name, source in sources.items():
        if source.key not in done:
            done[source.key] = _check_one(settings, name, source, models.get(source.key), where, verify)
        out[name] = done[source.key]
    return out


def _check_one(settings: Settings, name: str, source: Source, entry: dict[str, Any] | None, where: str,
               verify: bool) -> Resolved:
    what = f"instance {name}: the weights of {source.describe()}"
    if source.kind == HUB:
        if entry is None:
            raise UserError(f"{what} were never fetched (no entry in the cache manifest {settings.manifest_path})",
                            where=f"{where}: [instance.{name}.model]", fix=RUN_WARM)
        root = settings.hub_cache / entry["snapshot"]
    else:
        assert source.path is not None
        root = source.path
    problems = file_problems(root, entry.get("files", []) if entry else [], verify)
    layout = layout_problem(root)
    if layout:
        problems.insert(0, layout)
    if problems:
        shown = "\n".join(f"    - {p}" for p in problems[:SHOWN])
        more = f"\n    … and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        fix = RUN_WARM if source.kind == HUB else "restore the folder (or point path at a complete copy)"
        raise UserError(f"{what} are missing or damaged in {root}:\n{shown}{more}",
                        where=f"{where}: [instance.{name}.model]", fix=fix)
    return Resolved(root, summary(source, entry, root, verify))


def summary(source: Source, entry: dict[str, Any] | None, root: Path, verified: bool) -> dict[str, Any]:
    size = int(entry["total_size"]) if entry else sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    if source.kind == HUB and entry:
        label = f"{entry['repo']}@{str(entry['commit'])[:12]} ({human(size)})"
        return {"source": HUB, "repo": entry["repo"], "revision": entry["revision"], "commit": entry["commit"],
                "path": str(root), "files": len(entry["files"]), "size": size, "verified": verified, "label": label}
    return {"source": "folder", "path": str(root), "files": len(entry["files"]) if entry else None, "size": size,
            "verified": verified, "label": f"{root} ({human(size)})"}


def file_problems(root: Path, files: list[dict[str, Any]], verify: bool) -> list[str]:
    """Every recorded file present with its size (and sha256 when ``verify`` and one is recorded)."""
    problems = []
    for f in files:
        path = root / f["path"]
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{f['path']} is missing")
            continue
        if size != f["size"]:
            problems.append(f"{f['path']} has {size} bytes, not {f['size']} (cut short or changed)")
        elif verify and f.get("sha256") and sha256_file(path) != f["sha256"]:
            problems.append(f"{f['path']} has another sha256 than the one recorded (damaged or changed)")
    return problems


def gguf_firsts(root: Path) -> list[Path]:
    """The GGUF files a folder offers llama-server: each single file, and the first shard of each
    split one (``*-00001-of-0000N.gguf``), sorted."""
    return sorted(g for g in root.rglob("*.gguf") if "-of-" not in g.name or "-00001-of-" in g.name)


def layout_problem(root: Path) -> str | None:
    """What a model folder lacks for a server to load it, or None."""
    if not root.is_dir():
        return f"{root} is not a folder (or does not exist)"
    weights = [p for p in root.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.exists()]
    if not weights:
        return f"no weight files ({', '.join('*' + s for s in WEIGHT_SUFFIXES)})"
    if not all(p.suffix == ".gguf" for p in weights) and not (root / "config.json").is_file():
        return "config.json is missing"
    for index in root.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"{index.name} is unreadable"
        absent = sorted(s for s in shards if not (root / s).exists())
        if absent:
            return f"{absent[0]} (named in {index.name}) is missing"
    return None
