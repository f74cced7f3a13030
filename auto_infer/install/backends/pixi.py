"""The pixi backend: ``pixi install --frozen`` with the plan's cache variables."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from auto_infer.core.fsutil import atomic_write_text
from auto_infer.core.progress import Step, say
from auto_infer.core.runner import run_logged
from auto_infer.core.settings import Settings
from auto_infer.install.fetch import Fetched
from auto_infer.install.lockfile import Artifact, LockedEnv
from auto_infer.install.mirrors import load as load_mirrors

OFFLINE_FLAG_SINCE = (0, 74, 0)   # pixi --offline (PR prefix-dev/pixi#6608)


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def command(settings: Settings, *, offline: bool, pixi_version: tuple[int, int, int] | None) -> list[str]:
    cmd = ["pixi", "install", "--frozen",
           "--manifest-path", str(settings.pixi_toml),
           "-e", settings.pixi_env]
    if offline and pixi_version is not None and pixi_version >= OFFLINE_FLAG_SINCE:
        cmd.append("--offline")
    return cmd


CONFIG_MARK = "# written by auto-infer warm"


def config_text(settings: Settings) -> str:
    """<project>/.pixi/config.toml: the mirror map and the connection limit, for pixi itself."""
    import tomlkit

    doc = tomlkit.document()
    doc.add(tomlkit.comment(CONFIG_MARK[2:] + f" from AUTO_INFER_MIRRORS={settings.net.mirrors or ''}; "
                            "rewritten on every warm"))
    mirrors = load_mirrors(settings.net.mirrors)
    if mirrors.raw:
        doc["mirrors"] = mirrors.raw
    doc["concurrency"] = {"downloads": settings.net.connections}
    return tomlkit.dumps(doc)


def write_config(settings: Settings) -> Path | None:
    """Write the project config pixi reads, unless the user keeps their own there (then warn)."""
    path = settings.pixi_config
    if path.exists() and not path.read_text(errors="replace").startswith(CONFIG_MARK):
        say(f"⚠ WARNING: {path} is not ours: left as it is, so AUTO_INFER_MIRRORS and "
            "AUTO_INFER_NET_CONNECTIONS do not reach pixi")
        return None
    atomic_write_text(path, config_text(settings))
    return path


def cuda_required(pixi_toml: Path, env_name: str) -> str | None:
    """The CUDA version pixi.toml's ``[system-requirements]`` asks of the machine for ``env_name``
    (the workspace's table, or one of the environment's features'); None when none asks."""
    import tomllib

    try:
        doc = tomllib.loads(pixi_toml.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None                  # the install itself says what is wrong with the manifest
    spec = doc.get("environments", {}).get(env_name)
    features = spec if isinstance(spec, list) else spec.get("features", []) if isinstance(spec, dict) else []
    tables = [doc, *(doc.get("feature", {}).get(f, {}) for f in features if isinstance(f, str))]
    found = [t.get("system-requirements", {}).get("cuda") for t in tables if isinstance(t, dict)]
    versions = [str(v) for v in found if isinstance(v, str | int | float) and not isinstance(v, bool)]
    return max(versions, key=lambda v: [int(p) if p.isdigit() else 0 for p in v.split(".")], default=None)


def cuda_driver() -> bool:
    """Whether this machine has a CUDA driver: the ``__cuda`` virtual package, detected as pixi does
    (rattler's detection, without CONDA_OVERRIDE_* applied)."""
    from rattler import VirtualPackage

    return any(v.into_generic().name.normalized == "__cuda" for v in VirtualPackage.detect())


def environment(settings: Settings, *, offline: bool) -> dict[str, str]:
    """pixi's environment: the cache variables, uv's timeout/retries/connections from ours; and on
    a machine without a CUDA driver, the CUDA that pixi.toml requires (CONDA_OVERRIDE_CUDA, unless
    set): `pixi install` checks [system-requirements] against the machine and refuses otherwise, so a
    CPU host (an online machine warming for a GPU one, a Kubernetes install Job) could not warm."""
    env = settings.tool_env(online=not offline)
    env.update({"UV_HTTP_TIMEOUT": str(max(1, round(settings.net.timeout))),
                "UV_HTTP_RETRIES": str(settings.net.retries),
                "UV_CONCURRENT_DOWNLOADS": str(settings.net.connections)})
    if "CONDA_OVERRIDE_CUDA" not in env and (cuda := cuda_required(settings.pixi_toml, settings.pixi_env)) \
            and not cuda_driver():
        env["CONDA_OVERRIDE_CUDA"] = cuda
        say(f"  no CUDA driver on this machine: pixi is told CUDA {cuda} (CONDA_OVERRIDE_CUDA={cuda}, from "
            f"{settings.pixi_toml} [system-requirements] cuda); the environment is for a GPU host, where "
            "`check` judges the real driver (set CONDA_OVERRIDE_CUDA yourself to choose)")
    return env


class PixiBackend:
    name = "pixi"
    fills_cache = True

    def version(self) -> str:
        if not shutil.which("pixi"):
            return "pixi (not on PATH)"
        out = subprocess.run(["pixi", "--version"], capture_output=True, text=True, check=False).stdout
        return out.strip() or "pixi (unknown version)"

    def _run(self, settings: Settings, step: Step, *, offline: bool) -> None:
        cmd = command(settings, offline=offline, pixi_version=parse_version(self.version()))
        if not offline:
            write_config(settings)
        # pixi has no total deadline of its own (conda: 5 min read timeout, 3 retries, both fixed)
        run_logged(cmd, env=environment(settings, offline=offline), log=settings.install_log,
                   step=step, fix="see the log above; `pixi info` shows the cache dir pixi uses",
                   timeout=None if offline else settings.net.deadline, timeout_name="AUTO_INFER_NET_DEADLINE")

    def fetch(self, settings: Settings, locked: LockedEnv, step: Step,
              ready: Callable[[Artifact], None] | None = None) -> dict[str, Fetched]:
        return {}   # pixi downloads while it installs (its package cache has rattler's layout: the
        #             importer fills it from the archive store, where a bundle put archives)

    def install(self, settings: Settings, locked: LockedEnv, step: Step, *, online: bool, repair: bool,
                remove_pypi: list[str]) -> None:
        # pixi >= 0.70.1 repairs interrupted installs itself; older ones need the env rebuilt,
        # which `pixi install` does when conda-meta no longer matches the lock.
        self._run(settings, step, offline=not online)
