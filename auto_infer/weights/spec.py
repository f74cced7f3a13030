"""Where a model's weights come from: the ``[instance.NAME.model]`` table of the model config.

Two sources: a Hugging Face Hub repo at a revision (``repo``, ``revision``, optional file
patterns), fetched by ``warm`` into the hub cache; or a local ``path`` (a shared disk), which
``warm`` records when it can see it. Instances that only set ``server.model_path`` have no source
and are served as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError

HUB, FOLDER = "hub", "folder"
KEYS: dict[str, type] = {"source": str, "repo": str, "revision": str, "path": str,
                         "allow_patterns": list, "ignore_patterns": list}
HUB_ONLY = ("repo", "revision", "allow_patterns", "ignore_patterns")
# used when the config gives no ignore_patterns and the repo has *.safetensors: the same weights in
# older formats, and Meta's original/ checkpoint, are duplicates a server never reads
DEFAULT_IGNORE = ("*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.onnx", "*.ot", "original/*")
REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+")
REVISION_RE = re.compile(r"[^\s]+")

ErrorFn = Callable[[str, str, str], Exception]      # (what, where, fix) -> the exception to raise


@dataclass(frozen=True)
class Source:
    kind: str                                       # hub | folder
    repo: str | None = None
    revision: str = "main"
    path: Path | None = None
    allow_patterns: tuple[str, ...] | None = None
    ignore_patterns: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        """What the cache manifest files this source under (instances naming the same one share it)."""
        if self.kind == FOLDER:
            return f"folder:{self.path}"
        extra = "".join(f" {n}={list(v)}" for n, v in (("allow", self.allow_patterns),
                                                         ("ignore", self.ignore_patterns)) if v is not None)
        return f"hub:{self.repo}@{self.revision}{extra}"

    def describe(self) -> str:
        return f"{self.repo}@{self.revision}" if self.kind == HUB else str(self.path)


def parse(table: Mapping[str, Any], where: str, base: Path, error: ErrorFn) -> Source:
    """One model table; ``where`` names it (e.g. "[instance.qwen.model]"), relative paths are from ``base``."""
    for key, value in table.items():
        if key not in KEYS:
            raise error(f"unknown key {key!r} in {where}", f"{where} {key}", f"known keys: {', '.join(sorted(KEYS))}")
        if not isinstance(value, KEYS[key]) or (isinstance(value, list) and not all(
                isinstance(v, str) and v for v in value)):
            kind = "a list of file patterns" if KEYS[key] is list else "a string"
            raise error(f"{where} {key} has the wrong type ({type(value).__name__})", f"{where} {key}", f"use {kind}")
    kind = table.get("source") or (HUB if "repo" in table else FOLDER if "path" in table else "")
    if kind not in (HUB, FOLDER):
        raise error(f"{where} says neither where the weights come from nor a known source ({kind!r})",
                    f"{where} source", 'set repo = "org/name" (a Hub repo) or path = "/models/name" (a folder)')
    if kind == HUB:
        return _hub(table, where, error)
    stray = [k for k in HUB_ONLY if k in table]
    if stray or not table.get("path"):
        raise error(f"{where}: a folder source takes path only" if stray else f"{where} has no path",
                    f"{where} {stray[0] if stray else 'path'}", 'e.g. path = "/llm-models/Qwen2.5-7B-Instruct"')
    path = Path(table["path"]).expanduser()
    return Source(FOLDER, path=path if path.is_absolute() else base / path)


def _hub(table: Mapping[str, Any], where: str, error: ErrorFn) -> Source:
    repo, revision = table.get("repo", ""), table.get("revision", "main")
    if "path" in table:
        raise error(f"{where}: a hub source takes repo (and revision), not path", f"{where} path",
                    "remove path; warm fetches the repo into the cache and serve uses that snapshot")
    if not REPO_RE.fullmatch(repo):
        raise error(f"{where} repo {repo!r} is not a Hub repo id", f"{where} repo", 'use "org/name", e.g. '
                    '"Qwen/Qwen2.5-0.5B-Instruct"')
    if not REVISION_RE.fullmatch(revision):
        raise error(f"{where} revision {revision!r} is not a revision", f"{where} revision",
                    'use a branch, a tag or a commit sha, e.g. revision = "main"')

    def patterns(key: str) -> tuple[str, ...] | None:
        return tuple(table[key]) if key in table else None

    return Source(HUB, repo=repo, revision=revision, allow_patterns=patterns("allow_patterns"),
                  ignore_patterns=patterns("ignore_patterns"))


def configured(data: Mapping[str, Any], config_path: Path) -> dict[str, Source]:
    """Instance name -> source, for the enabled instances of a raw (merged) model config that name one.

    The rest of the config is checked by serve; this reads only what warm and install need."""
    def error(what: str, where: str, fix: str) -> UserError:
        return UserError(what, where=f"{config_path}: {where}", fix=fix)

    table = data.get("instance", {})
    table = table if isinstance(table, Mapping) else {}
    default_on = _enabled(table.get("control"), True)
    out = {}
    for name, body in table.items():
        if name in ("control", "server") or not isinstance(body, Mapping) or "model" not in body:
            continue
        if not _enabled(body.get("control"), default_on):
            continue
        model = body["model"]
        if not isinstance(model, Mapping):
            raise error(f"[instance.{name}.model] must be a table", f"[instance.{name}.model]",
                        f"write it as a TOML table: [instance.{name}.model]")
        out[name] = parse(model, f"[instance.{name}.model]", config_path.parent, error)
    return out


def _enabled(control: Any, default: bool) -> bool:
    value = control.get("enabled", default) if isinstance(control, Mapping) else default
    return value if isinstance(value, bool) else default
