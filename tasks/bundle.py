"""Task creator for `bundle export` / `bundle import` (carry the caches across an air gap).

    auto-infer bundle export FILE [--since OLD_MANIFEST] [--dry-run]
    auto-infer bundle import FILE          (auto-infer's bundle, or a pixi-pack archive: tar or .sh)

The work is in auto_infer.install.bundle_export / bundle_import; docs/bundle.md says why and how.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auto_infer.core.errors import UsageError
from auto_infer.core.progress import say
from auto_infer.tasks.wiring import CommandLine, action, flag, settings, takes_run_lock

USAGE = ("auto-infer bundle export FILE [--since OLD_MANIFEST] [--dry-run]  |  "
         "auto-infer bundle import FILE")


def check(values: dict[str, Any]) -> None:
    """``export FILE`` (FILE optional with --dry-run) or ``import FILE``, nothing else."""
    args, since, dry = values.get("args") or [], values.get("since") or "", values.get("dry_run", False)
    command, rest = (args[0], args[1:]) if args else ("", [])
    wrong = (command not in ("export", "import") or len(rest) > 1 or any(not a.strip() for a in rest)
             or (not rest and not (command == "export" and dry))
             or (command == "import" and (since or dry)))
    if wrong:
        said = " ".join(["bundle", *args, *(["--since", since] if since else []), *(["--dry-run"] if dry else [])])
        raise UsageError(f"bad arguments: {said}", where="the command line", fix=f"usage: {USAGE}")


PARAMS = [{"name": "since", "long": "since", "type": str, "default": "",
           "help": "export: carry only what the cache of this manifest (another host's) lacks"},
          flag("dry-run", "export: list what the bundle would carry; write nothing")]


def _bundle(args: list[str], since: str, dry_run: bool) -> Any:
    from auto_infer.install import bundle_export, bundle_import, pixipack

    check({"args": args, "since": since, "dry_run": dry_run})
    command, file = args[0], Path(args[1]) if len(args) > 1 else None
    if command == "export":
        return bundle_export.export(settings(), file or Path("-"), Path(since) if since else None, dry_run)
    assert file is not None                   # check() refuses an import without a file
    if file.is_file() and pixipack.is_pixi_pack(file):     # infer-dev's pixi-pack archives (tar or .sh)
        say(pixipack.import_pixi_pack(settings(), file))   # a pipe is read once, by the importer
        return {}
    return bundle_import.import_bundle(settings(), file)


def _export_dry_run(values: dict[str, Any]) -> int:
    """`bundle export --dry-run`: the listing alone, without doit (no state, no run lock: nothing is written)."""
    from auto_infer.install import bundle_export

    since = values.get("since") or ""
    bundle_export.export(settings(), Path("-"), Path(since) if since else None, dry_run=True)
    return 0


@CommandLine(check=check, alone="dry_run", run_alone=_export_dry_run)
@takes_run_lock     # import fills the cache; export may download archives into it
def task_bundle() -> dict[str, Any]:
    """Carry it across the air gap: bundle export FILE [--since MANIFEST] [--dry-run] | bundle import FILE."""
    return {"actions": [action(_bundle)], "verbosity": 2, "params": PARAMS, "pos_arg": "args"}
