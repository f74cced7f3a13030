"""Copy the run-time Pixi template into the workspace project, without losing a user's edit.

The project copy remembers what it was copied from (sha256 per file, in
``.pixi/auto-infer/template.json``). With that record we can tell apart: the template changed
(copy again), the user edited the copy (keep it), or both (refuse and say how to resolve).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_json, disk_full_is_a_user_error, read_json, sha256_file
from auto_infer.core.settings import Settings

REQUIRED = ("pixi.toml", "pixi.lock")
SKIP_DIRS = {".pixi", ".cache", "__pycache__", ".git", ".auto-infer"}


@dataclass
class Plan:
    action: str                  # "copy" | "skip" | "record" | "refuse"
    reason: str
    files: dict[str, str] = field(default_factory=dict)   # rel path -> sha256 in the template
    skipped: list[str] = field(default_factory=list)       # symlinks not followed
    edited: list[str] = field(default_factory=list)


def _within(path: Path, root: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
        return True
    except ValueError:
        return False


def validate_template(settings: Settings) -> Path:
    root = settings.require_template()
    var = "AUTO_INFER_SGLANG_TEMPLATE_DIR"
    if not root.exists():
        raise UserError(f"the template folder does not exist: {root}", where=var,
                        fix="mount the downloaded template there, or point the variable at it")
    if not root.is_dir():
        raise UserError(f"the template path is not a folder: {root}", where=var)
    for name in REQUIRED:
        f = root / name
        if f.is_symlink() and not _within(f, root):
            raise UserError(f"{name} in the template is a symlink pointing outside it ({os.readlink(f)})",
                            where=str(f), fix="put the real file into the template folder")
        if not f.is_file():
            raise UserError(f"the template has no {name}", where=f"{var}={root}",
                            fix="a template is a folder with pixi.toml and pixi.lock; make the lock with `pixi lock`")
    return root


def template_files(root: Path) -> tuple[dict[str, str], list[str]]:
    """Files to copy (rel -> sha256), and symlinks skipped because they leave the template."""
    files: dict[str, str] = {}
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        keep = []
        for d in dirnames:
            if d in SKIP_DIRS:
                continue
            if (base / d).is_symlink():
                skipped.append(str((base / d).relative_to(root)))
                continue
            keep.append(d)
        dirnames[:] = sorted(keep)
        for name in sorted(filenames):
            path = base / name
            rel = str(path.relative_to(root))
            if path.is_symlink() and not (_within(path, root) and path.is_file()):
                skipped.append(rel)
                continue
            if path.is_file():
                files[rel] = sha256_file(path)
    return files, skipped


def _project_hashes(project: Path, rels: list[str]) -> dict[str, str | None]:
    return {rel: (sha256_file(project / rel) if (project / rel).is_file() else None) for rel in rels}


def plan(settings: Settings) -> Plan:
    if settings.template_dir is None and all((settings.project_dir / n).is_file() for n in REQUIRED):
        return Plan("skip", "AUTO_INFER_SGLANG_TEMPLATE_DIR is unset; using the project copy as it is",
                    edited=["(no template mounted)"])
    root = validate_template(settings)
    files, skipped = template_files(root)
    project = settings.project_dir
    record = read_json(settings.template_record) or {}
    recorded: dict[str, str] = record.get("files", {})
    current = _project_hashes(project, sorted(set(files) | set(recorded)))
    if settings.force_recopy:
        return Plan("copy", "AUTO_INFER_SGLANG_FORCE_RECOPY=1", files, skipped)
    if not all((project / n).is_file() for n in REQUIRED):
        return Plan("copy", "the project copy is missing", files, skipped)
    if all(current.get(rel) == sha for rel, sha in files.items()):
        if recorded != files:
            return Plan("record", "the project copy already matches the template", files, skipped)
        return Plan("skip", "the project copy is up to date", files, skipped)
    edited = sorted(rel for rel, sha in current.items() if rel in recorded and sha != recorded[rel])
    changed = sorted(rel for rel in files if recorded.get(rel) != files[rel])
    if not recorded:
        edited = sorted(rel for rel in files if current.get(rel) != files[rel] and current.get(rel) is not None)
    if edited and changed:
        return Plan("refuse", f"the template changed ({', '.join(changed)}) and the project copy was edited "
                              f"({', '.join(edited)})", files, skipped, edited)
    if edited:
        return Plan("skip", f"keeping your edits in the project copy ({', '.join(edited)})", files, skipped,
                    edited)
    return Plan("copy", f"the template changed: {', '.join(changed)}", files, skipped)


def needs_work(settings: Settings) -> bool:
    """doit uptodate helper: True when ``template`` has something to do (or to refuse)."""
    try:
        p = plan(settings)
    except UserError:
        return True
    return p.action != "skip" or bool(p.edited)   # a kept edit is worth a line each run


def _copy_files(settings: Settings, p: Plan, root: Path) -> None:
    project = settings.project_dir
    backup = settings.template_backup(time.strftime('%Y%m%d-%H%M%S'))
    for rel in p.files:
        target = project / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and sha256_file(target) != p.files[rel]:
            (backup / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, backup / rel)
        # one temp name per process: two runs copying at once (`doit` has no run lock) must
        # not rename each other's temp file away (tests/test_reliability_concurrency.py)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.auto-infer-tmp")
        try:
            shutil.copyfile(root / rel, tmp)   # copyfile: a fresh mtime, so doit sees a change
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)        # a full disk leaves no partial temp file behind
            raise


def copy(settings: Settings) -> Plan:
    """Carry out the plan. Files are replaced one by one, atomically; the record goes last."""
    p = plan(settings)
    project = settings.project_dir
    if p.action == "skip":
        return p
    root = settings.require_template()
    if p.action == "refuse":
        raise UserError(
            f"not copying the template: {p.reason}", where=str(project),
            fix=("keep your version: make the project files identical to the template's by hand; or take "
                 "the template's: rerun with AUTO_INFER_SGLANG_FORCE_RECOPY=1 (your edited files are "
                 "backed up under .pixi/auto-infer/backup-*)"))
    with disk_full_is_a_user_error(project):
        if p.action == "copy":
            _copy_files(settings, p, root)
        if p.action in ("copy", "record"):
            atomic_write_json(settings.template_record,
                              {"template_dir": str(root), "files": p.files,
                               "copied_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return p
