"""The pixi-free backend: conda records through py-rattler, the lock's wheels through uv.

Conda packages use the same package cache pixi uses (PIXI_CACHE_DIR/pkgs), so a cache warmed
by either backend serves the other's conda side. At ``warm``, install/fetch.py downloads the conda
archives into CACHE_ROOT/conda/archives (kept: they repair a damaged cache entry offline) and
the wheels into CACHE_ROOT/pypi/wheels, sha256 checked, with timeouts, retries and mirrors; the
package cache is then filled from those local archives. Wheels are installed by ``uv pip install
--offline --no-index --no-deps --require-hashes`` into the environment's own Python.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from auto_infer.core.errors import SubprocessFailed, UserError
from auto_infer.core.fsutil import disk_full, nearly_full
from auto_infer.core.progress import Step
from auto_infer.core.runner import run_logged
from auto_infer.core.settings import Settings
from auto_infer.install import archives
from auto_infer.install.cache import WheelStore
from auto_infer.install.lockfile import Artifact, LockedEnv

if TYPE_CHECKING:           # the downloader is loaded by warm only, not by an offline install
    from auto_infer.install import fetch


def uv_bin() -> str:
    try:
        from uv import find_uv_bin
        return find_uv_bin()
    except Exception:  # uv wheel missing or broken: fall back to PATH
        found = shutil.which("uv")
        if not found:
            raise UserError("uv is not installed", fix="pip install uv (it is a dependency of auto-infer)") from None
        return found


@functools.cache
def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import rattler
    try:
        uv = version("uv")       # the uv module has no __version__; a lookup by name scans site-packages
    except PackageNotFoundError:
        uv = "?"
    return f"py-rattler {getattr(rattler, '__version__', '?')} + uv {uv}"


def _jobs(settings: Settings, locked: LockedEnv) -> list[fetch.Job]:
    from auto_infer.install import fetch

    archived, wheels = WheelStore(settings.conda_archive_dir), WheelStore(settings.wheel_dir)
    jobs = []
    for a in sorted(locked.conda, key=lambda a: -(a.size or 0)):    # the biggest first: extracted first
        dest = archives.archive_path(settings, a)
        jobs.append(fetch.Job(a.url, f"{dest.parent.name}/{a.filename}", a.url, dest, a.sha256, archived))
    for a in locked.pypi:
        if "://" not in a.url:       # a path entry (warm warned): nothing to download
            continue
        jobs.append(fetch.Job(a.url, a.filename, a.url, settings.wheel_dir / a.filename, a.sha256, wheels))
    return jobs


def _client(settings: Settings):  # type: ignore[no-untyped-def]
    """rattler's own HTTP client, bounded too (a total timeout per request): warm hands it only
    local archives and an offline install only the cache, so it should never be used."""
    from rattler.networking import Client, RetryMiddleware

    return Client([RetryMiddleware(0)], timeout=max(1, int(settings.net.deadline)))


def _install_error(prefix: Path, exc: Exception) -> UserError:
    """rattler's message is a chain ("…\nCaused by: …"): show the first line and the root cause."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [type(exc).__name__]
    cause = lines[-1].removeprefix("Caused by:").strip() if len(lines) > 1 else ""
    what = f"{lines[0]}: {cause}" if cause else lines[0]
    if "os error 28" in cause or "os error 122" in cause or nearly_full(prefix):   # ENOSPC, EDQUOT
        return disk_full(prefix, what)
    return UserError(f"conda install into {prefix} failed: {what}", where=str(prefix),
                     fix="if the disk is full, free space and rerun; otherwise rerun `warm` online")


def link_conda(settings: Settings, locked: LockedEnv, prefix: Path, *, reinstall: bool) -> None:
    """rattler installs the lock's conda records into ``prefix`` from the package cache (filled first)."""
    from rattler import install

    names = {r.name.normalized for r in locked.raw_records} if reinstall else None
    try:
        asyncio.run(install(list(locked.raw_records), prefix, cache_dir=settings.conda_pkgs_dir,
                            reinstall_packages=names, show_progress=False, client=_client(settings)))
    except Exception as exc:
        raise _install_error(prefix, exc) from None


class RattlerBackend:
    name = "rattler"
    fills_cache = False

    def version(self) -> str:
        return _versions()

    # ---- conda side ------------------------------------------------------------------
    def _conda(self, settings: Settings, locked: LockedEnv, step: Step, reinstall: bool) -> None:
        step.note(f"linking {len(locked.conda)} conda packages")
        link_conda(settings, locked, settings.env_prefix, reinstall=reinstall)

    # ---- pypi side -------------------------------------------------------------------
    def _python(self, settings: Settings) -> Path:
        py = settings.env_python
        if not py.exists():
            raise UserError("the lock has PyPI packages but its environment has no bin/python",
                            where=str(settings.env_prefix), fix="add python to the [dependencies] of pixi.toml")
        return py

    def _uv(self, settings: Settings, locked: LockedEnv, step: Step, reinstall: bool, remove: list[str]) -> None:
        if not locked.pypi and not (remove and (settings.env_python).exists()):
            return      # a conda-only environment (a tools-only lock may have no python at all)
        py = self._python(settings)
        env = settings.tool_env(online=False)
        log = settings.install_log
        if remove:
            run_logged([uv_bin(), "pip", "uninstall", "--no-config", "--python", str(py), *remove],
                       env=env, log=log, step=step)
        if not locked.pypi:
            return
        store = WheelStore(settings.wheel_dir)
        lines = []
        for a in locked.pypi:
            sha = a.sha256 or store.verified_sha(a.filename)
            lines.append(f"{a.name} @ {(settings.wheel_dir / a.filename).as_uri()} --hash=sha256:{sha}")
        store.save()
        req = settings.pypi_requirements
        req.parent.mkdir(parents=True, exist_ok=True)
        req.write_text("\n".join(lines) + "\n")
        step.note(f"installing {len(lines)} wheels with uv")
        cmd = [uv_bin(), "pip", "install", "--no-config", "--python", str(py), "--offline", "--no-index",
               "--no-deps", "--require-hashes", "--link-mode", "hardlink", "-r", str(req)]
        if reinstall:
            cmd.append("--reinstall")
        try:
            run_logged(cmd, env=env, log=log, step=step)
        except SubprocessFailed as exc:
            cause = next((ln.strip() for ln in reversed(str(exc).splitlines()) if "os error 28" in ln
                          or "os error 122" in ln), None)      # ENOSPC, EDQUOT
            if cause is None:
                raise
            raise disk_full(settings.env_prefix, f"uv could not install the wheels: {cause}") from None

    # ---- the interface ---------------------------------------------------------------
    def fetch(self, settings: Settings, locked: LockedEnv, step: Step,
              ready: Callable[[Artifact], None] | None = None) -> dict[str, fetch.Fetched]:
        from auto_infer.install import fetch
        from auto_infer.install.mirrors import load as load_mirrors

        mirrors = load_mirrors(settings.net.mirrors)
        conda = {a.url: a for a in locked.conda}
        hook = None if ready is None else lambda job: ready(conda[job.key]) if job.key in conda else None
        return fetch.fetch_all(_jobs(settings, locked), settings.net, mirrors, step, "artifacts", ready=hook)

    def install(self, settings: Settings, locked: LockedEnv, step: Step, *, online: bool, repair: bool,
                remove_pypi: list[str]) -> None:
        # the package cache is filled (importer.fill) before: warm from the archives fetch() downloaded
        self._conda(settings, locked, step, reinstall=repair)
        self._uv(settings, locked, step, reinstall=repair, remove=remove_pypi)
