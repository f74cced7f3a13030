"""`lock`: make the template's pixi.lock with a real pixi, where pixi and the network are."""

from __future__ import annotations

import shutil

from auto_infer.core.errors import UserError
from auto_infer.core.progress import step
from auto_infer.core.runner import run_logged
from auto_infer.core.settings import Settings


def lock_template(settings: Settings) -> None:
    root = settings.require_template()
    manifest = root / "pixi.toml"
    if not manifest.is_file():
        raise UserError(f"no pixi.toml in the template: {manifest}", where="AUTO_INFER_SGLANG_TEMPLATE_DIR")
    if not shutil.which("pixi"):
        raise UserError("`lock` needs pixi on PATH and the network (no pixi here)",
                        fix="run it where pixi is (the infer-dev image has it), then ship pixi.lock with the template")
    with step(f"pixi lock for {manifest}") as s:
        run_logged(["pixi", "lock", "--manifest-path", str(manifest)], env=settings.tool_env(online=True),
                   log=settings.pixi_lock_log, step=s)
        s.note(f"wrote {root / 'pixi.lock'}")
