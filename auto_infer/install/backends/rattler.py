"""The pixi-free backend: conda records through py-rattler, the lock's wheels through uv.

Conda packages use the same package cache pixi uses (PIXI_CACHE_DIR/pkgs), so a cache warmed
by either backend serves the other's conda side. Wheels are downloaded at ``warm`` into
CACHE_ROOT/pypi/wheels (sha256 checked) and installed at ``install`` by ``uv pip install
--offline --no-index --no-deps --require-hashes`` into the environment's own Python.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from auto_infer.core.errors import SubprocessFailed, UserError
from auto_infer.core.fsutil import disk_full, nearly_full, sha256_file
from auto_infer.core.progress import Step, fmt_secs
from auto_infer.core.runner import run_logged
from auto_infer.core.settings import Settings
from auto_infer.install.cache import WheelStore
from auto_infer.install.lockfile import Artifact, LockedEnv


def uv_bin() -> str:
    try:
        from uv import find_uv_bin
        return find_uv_bin()
    except Exception:  # uv wheel missing or broken: fall back to PATH
        found = shutil.which("uv")
        if not found:
            raise UserError("uv is not installed", fix="pip install uv (it is a dependency of auto-infer)") from None
        return found


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version
    parts = []
    for dist in ("py-rattler", "uv"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} ?")
    return " + ".join(parts)


def _download(a: Artifact, dest: Path, step: Step) -> tuple[str, int]:
    """Fetch one wheel into ``dest`` (temp file + rename); verify its sha256 if the lock has one."""
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{a.filename}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        parsed = urlparse(a.url)
        with os.fdopen(fd, "wb") as fh:
            if parsed.scheme in ("", "file"):
                with open(unquote(parsed.path), "rb") as src:
                    shutil.copyfileobj(src, fh)
            else:
                with requests.get(a.url, stream=True, timeout=(15, 300)) as resp:
                    resp.raise_for_status()
                    for chunk in resp.iter_content(1 << 20):
                        fh.write(chunk)
        sha = sha256_file(tmp)
        if a.sha256 and sha != a.sha256:
            raise UserError(f"downloaded {a.filename} has sha256 {sha[:12]}…, the lock says {a.sha256[:12]}…",
                            where=a.url, fix="the mirror serves another file than the lock names: fix the mirror")
        size = tmp.stat().st_size
        os.replace(tmp, dest)
        return sha, size
    except OSError as exc:
        raise UserError(f"cannot fetch {a.filename}: {exc}", where=a.url,
                        fix="check the network / proxy variables; warm needs the network") from None
    except Exception as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"cannot fetch {a.filename}: {exc}", where=a.url,
                        fix="check the network / proxy variables; warm needs the network") from None
    finally:
        tmp.unlink(missing_ok=True)


def _install_error(settings: Settings, exc: Exception) -> UserError:
    """rattler's message is a chain ("…\nCaused by: …"): show the first line and the root cause."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [type(exc).__name__]
    cause = lines[-1].removeprefix("Caused by:").strip() if len(lines) > 1 else ""
    what = f"{lines[0]}: {cause}" if cause else lines[0]
    if "os error 28" in cause or "os error 122" in cause or nearly_full(settings.env_prefix):   # ENOSPC, EDQUOT
        return disk_full(settings.env_prefix, what)
    return UserError(f"conda install into {settings.env_prefix} failed: {what}", where=str(settings.env_prefix),
                     fix="if the disk is full, free space and rerun; otherwise rerun `warm` online")


class RattlerBackend:
    name = "rattler"

    def version(self) -> str:
        return _versions()

    # ---- conda side ------------------------------------------------------------------
    def _conda(self, settings: Settings, locked: LockedEnv, step: Step, reinstall: bool) -> None:
        from rattler import install

        step.note(f"linking {len(locked.conda)} conda packages")
        names = {r.name.normalized for r in locked.raw_records} if reinstall else None
        try:
            asyncio.run(install(list(locked.raw_records), settings.env_prefix,
                                cache_dir=settings.conda_pkgs_dir, reinstall_packages=names,
                                show_progress=False))
        except Exception as exc:
            raise _install_error(settings, exc) from None

    # ---- pypi side -------------------------------------------------------------------
    def _python(self, settings: Settings) -> Path:
        py = settings.env_prefix / "bin" / "python"
        if not py.exists():
            raise UserError("the lock has PyPI packages but its environment has no bin/python",
                            where=str(settings.env_prefix), fix="add python to the [dependencies] of pixi.toml")
        return py

    def _uv(self, settings: Settings, locked: LockedEnv, step: Step, reinstall: bool, remove: list[str]) -> None:
        py = self._python(settings)
        env = settings.tool_env(online=False)
        log = settings.state_dir / "install.log"
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
        req = settings.state_dir / "pypi-requirements.txt"
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
    def fetch(self, settings: Settings, locked: LockedEnv, step: Step) -> dict[str, tuple[str, int]]:
        measured: dict[str, tuple[str, int]] = {}
        store = WheelStore(settings.wheel_dir)
        for i, a in enumerate(locked.pypi, 1):
            dest = settings.wheel_dir / a.filename
            have = store.verified_sha(a.filename) if dest.exists() else None
            if have and (a.sha256 is None or have == a.sha256):
                measured[a.filename] = (have, dest.stat().st_size)
                continue
            step.note(f"wheel {i}/{len(locked.pypi)}: {a.filename} ({fmt_secs(step.elapsed)})")
            measured[a.filename] = _download(a, dest, step)
            store.remember(a.filename, measured[a.filename][0])   # the first offline install need not hash it again
        store.save()
        return measured

    def install(self, settings: Settings, locked: LockedEnv, step: Step, *, online: bool, repair: bool,
                remove_pypi: list[str]) -> None:
        # online (warm): rattler downloads missing conda packages into the shared cache as it links
        self._conda(settings, locked, step, reinstall=repair)
        self._uv(settings, locked, step, reinstall=repair, remove=remove_pypi)
