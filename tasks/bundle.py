"""Task creator for `bundle export` / `bundle import` (carry the caches across an air gap).

    auto-infer bundle export FILE [--since OLD_MANIFEST] [--dry-run]
    auto-infer bundle import FILE          (auto-infer's bundle, or a pixi-pack archive: tar or .sh)

The work is in auto_infer.install.bundle_export / bundle_import; docs/bundle.md says why and how.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.progress import say
from auto_infer.tasks.common import settings
from auto_infer.tasks.glue import action, takes_run_lock

USAGE = ("auto-infer bundle export FILE [--since OLD_MANIFEST] [--dry-run]  |  "
         "auto-infer bundle import FILE")


def parse(args: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="auto-infer bundle", add_help=False, exit_on_error=False)
    ap.add_argument("command", choices=("export", "import"))
    ap.add_argument("file", nargs="?")
    ap.add_argument("--since", type=Path, default=None)
    ap.add_argument("--dry-run", action="store_true")
    try:
        ns, extra = ap.parse_known_args(args)
    except (argparse.ArgumentError, SystemExit):
        raise UserError(f"bad arguments: {' '.join(args) or '(none)'}", fix=f"usage: {USAGE}") from None
    if extra or (ns.file is None and not (ns.command == "export" and ns.dry_run)) or (
            ns.command == "import" and (ns.since or ns.dry_run)):
        raise UserError(f"bad arguments: {' '.join(args)}", fix=f"usage: {USAGE}")
    return ns


def _bundle(args: list[str]) -> Any:
    def run() -> dict[str, Any]:
        from auto_infer.install import bundle_export, bundle_import, pixipack

        ns = parse(args)
        if ns.command == "export":
            return bundle_export.export(settings(), Path(ns.file or "-"), ns.since, ns.dry_run)
        file = Path(ns.file)       # a pipe is read once, by the importer: only a regular file is sniffed
        if file.is_file() and pixipack.is_pixi_pack(file):     # infer-dev's pixi-pack archives (tar or .sh)
            say(pixipack.import_pixi_pack(settings(), Path(ns.file)))
            return {}
        return bundle_import.import_bundle(settings(), Path(ns.file))
    return action(run)()


@takes_run_lock     # import fills the cache; export may download archives into it
def task_bundle() -> dict[str, Any]:
    """Carry it across the air gap: bundle export FILE [--since MANIFEST] [--dry-run] | bundle import FILE."""
    return {"actions": [_bundle], "pos_arg": "args", "verbosity": 2}
