"""rehearse: prove, while still online, that the cache alone can install this lock.

A second, empty project (a scratch folder beside the state, sharing only the cache root) gets a copy
of pixi.toml + pixi.lock and is installed and import-checked by the real CLI inside a network
namespace with no egress (``unshare -n``, loopback only: compose's ``network_mode: none``), every
proxy variable removed. Pass means the offline machine will succeed with this cache; the scratch
folder is ours and is removed afterwards. Where no network namespace can be made (not root, no
``unshare``), it says so and stops: a rehearsal with the network up would prove nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from auto_infer.core import settings as settings_mod
from auto_infer.core.errors import UserError
from auto_infer.core.netns import can_unshare, offline_command
from auto_infer.core.progress import fmt_secs, step
from auto_infer.core.runner import run_logged, self_command
from auto_infer.core.settings import PROXY_VARS, Settings
from auto_infer.install import manifest as manifests


@dataclass(frozen=True)
class Rehearsal:
    seconds: float
    conda: int
    pypi: int
    files: int
    check: dict[str, object]

    def line(self) -> str:
        mods = ", ".join(f"{k} {v}" for k, v in dict(self.check.get("modules", {})).items())  # type: ignore[call-overload]
        return (f"rehearsal passed in {fmt_secs(self.seconds)}: {self.conda} conda + {self.pypi} PyPI packages "
                f"({self.files} files) installed from the cache alone with no network; imports: {mods or 'none'}")


def _child_env(settings: Settings, scratch: Path, modules: tuple[str, ...]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTO_INFER_") and k not in PROXY_VARS}
    env.update({"AUTO_INFER_WORKSPACE_DIR": str(scratch / "ws"),
                "AUTO_INFER_SGLANG_PROJECT_DIR": str(scratch / "project"),
                "AUTO_INFER_SGLANG_CACHE_ROOT": str(settings.cache_root),
                "AUTO_INFER_SGLANG_PIXI_ENV": settings.pixi_env,
                "AUTO_INFER_INSTALLER": settings.installer,
                "AUTO_INFER_PLATFORM": settings.platform,
                "AUTO_INFER_CHECK_MODULES": ",".join(modules) or "none"})
    return env


def _files(prefix: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(prefix))


def run(settings: Settings, modules: tuple[str, ...] = ("torch", "sglang")) -> Rehearsal:
    """Install + check a scratch copy of the project offline from the cache; raise UserError on failure."""
    lock = settings.lock_file
    if not lock.is_file():
        raise UserError(f"nothing to rehearse: the project has no pixi.lock ({lock})",
                        fix="run `auto-infer warm` first (it copies the template and fills the cache)")
    if manifests.read(settings) is None:
        raise UserError(f"nothing to rehearse: the cache was never warmed ({settings.manifest_path})",
                        fix="run `auto-infer warm` first, where the network is")
    if not can_unshare():
        raise UserError("cannot rehearse here: no network namespace can be made (needs root and `unshare -n`)",
                        fix="run it as root where `unshare -n true` works, or prove the cache with a real "
                            "offline `auto-infer install` (e.g. compose's network_mode: none)")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="rehearse-", dir=settings.state_dir))   # same volume as the cache
    try:
        (scratch / "project").mkdir()
        for source in (settings.pixi_toml, settings.lock_file):
            shutil.copyfile(source, scratch / "project" / source.name)
        env, t0 = _child_env(settings, scratch, modules), time.monotonic()
        with step("rehearse: install + check a scratch project from the cache alone, no network") as s:
            for task in ("install", "check"):
                s.note(task)
                run_logged(
                    offline_command(self_command(task)),
                    env=env,
                    log=settings.state_dir / "rehearse.log",
                    step=s,
                    fix=f"the offline machine would fail the same way; see {settings.state_dir / 'rehearse.log'}",
                )
            child = settings_mod.load(env)
            record = json.loads(child.install_record.read_text())
            result = Rehearsal(time.monotonic() - t0, len(record.get("conda", [])), len(record.get("pypi", [])),
                               _files(child.env_prefix), json.loads(child.check_path.read_text()))
            s.note(result.line())
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)     # our own scratch folder, nothing of the user's
