"""The pixi backend: ``pixi install --frozen`` with the plan's cache variables."""

from __future__ import annotations

import re
import shutil
import subprocess

from auto_infer.core.progress import Step
from auto_infer.core.runner import run_logged
from auto_infer.core.settings import Settings
from auto_infer.install.lockfile import LockedEnv

OFFLINE_FLAG_SINCE = (0, 74, 0)   # pixi --offline (PR prefix-dev/pixi#6608)


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def command(settings: Settings, *, offline: bool, pixi_version: tuple[int, int, int] | None) -> list[str]:
    cmd = ["pixi", "install", "--frozen",
           "--manifest-path", str(settings.project_dir / "pixi.toml"),
           "-e", settings.pixi_env]
    if offline and pixi_version is not None and pixi_version >= OFFLINE_FLAG_SINCE:
        cmd.append("--offline")
    return cmd


class PixiBackend:
    name = "pixi"

    def version(self) -> str:
        if not shutil.which("pixi"):
            return "pixi (not on PATH)"
        out = subprocess.run(["pixi", "--version"], capture_output=True, text=True, check=False).stdout
        return out.strip() or "pixi (unknown version)"

    def _run(self, settings: Settings, step: Step, *, offline: bool) -> None:
        cmd = command(settings, offline=offline, pixi_version=parse_version(self.version()))
        run_logged(cmd, env=settings.tool_env(online=not offline), log=settings.install_log,
                   step=step, fix="see the log above; `pixi info` shows the cache dir pixi uses")

    def fetch(self, settings: Settings, locked: LockedEnv, step: Step) -> dict[str, tuple[str, int]]:
        return {}   # pixi downloads while it installs

    def install(self, settings: Settings, locked: LockedEnv, step: Step, *, online: bool, repair: bool,
                remove_pypi: list[str]) -> None:
        # pixi >= 0.70.1 repairs interrupted installs itself; older ones need the env rebuilt,
        # which `pixi install` does when conda-meta no longer matches the lock.
        self._run(settings, step, offline=not online)
