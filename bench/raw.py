"""The baseline: the raw tools with nothing of ours, on the same pixi.lock and the same caches.

    python bench/raw.py install|noop --lock L --prefix P --cache-root C [--conda-only]

``install``: py-rattler's ``install`` (records from the lock, package cache C/pixi/pkgs), then
``uv pip install --offline --no-index --no-deps --require-hashes --link-mode hardlink`` of the
lock's wheels from C/pypi/wheels with UV_CACHE_DIR=C/pypi/uv -- what a careful hand-written script
would do. ``noop``: the same, with the installed PrefixRecords from conda-meta/ given to rattler
(its own no-op path), and uv's own no-op (it audits site-packages and does nothing).

Standalone on purpose (imports neither auto_infer nor bench), run as its own process so that it
pays the same interpreter start-up as the `auto-infer` command it is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse


def _uv() -> str:
    from uv import find_uv_bin
    return find_uv_bin()


def _wheel_lines(env, plat, wheel_dir: Path) -> list[str]:  # type: ignore[no-untyped-def]
    lines = []
    for p in env.pypi_packages_for_platform(plat) or []:
        name = unquote(urlparse(p.location).path.rsplit("/", 1)[-1])
        sha = p.hashes.sha256.hex()
        lines.append(f"{p.name} @ {(wheel_dir / name).as_uri()} --hash=sha256:{sha}")
    return lines


def _conda(records: list, prefix: Path, pkgs: Path, noop: bool) -> None:  # type: ignore[type-arg]
    from rattler import PrefixRecord, install

    installed = None
    if noop:
        installed = [PrefixRecord.from_path(p) for p in sorted((prefix / "conda-meta").glob("*.json"))]
    asyncio.run(install(records, prefix, cache_dir=pkgs, installed_packages=installed, show_progress=False))


def _pypi(lines: list[str], prefix: Path, cache_root: Path) -> None:
    if not lines:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(lines) + "\n")
    env = dict(os.environ, UV_CACHE_DIR=str(cache_root / "pypi" / "uv"))
    cmd = [_uv(), "pip", "install", "--no-config", "--python", str(prefix / "bin" / "python"), "--offline",
           "--no-index", "--no-deps", "--require-hashes", "--link-mode", "hardlink", "-q", "-r", fh.name]
    try:
        subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(fh.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["install", "noop"])
    ap.add_argument("--lock", type=Path, required=True)
    ap.add_argument("--prefix", type=lambda p: Path(p).resolve(), required=True)
    ap.add_argument("--cache-root", type=lambda p: Path(p).resolve(), required=True)
    ap.add_argument("--environment", default="default")
    ap.add_argument("--platform", default="linux-64")
    ap.add_argument("--conda-only", action="store_true", help="skip the uv step")
    a = ap.parse_args(argv)
    from rattler import LockFile

    env = LockFile.from_path(a.lock).environment(a.environment)
    assert env is not None, f"no environment {a.environment!r} in {a.lock}"
    plat = next(p for p in env.platforms() if p.name == a.platform)
    records = env.conda_repodata_records_for_platform(plat) or []
    _conda(list(records), a.prefix, a.cache_root / "pixi" / "pkgs", a.mode == "noop")
    if not a.conda_only:
        _pypi(_wheel_lines(env, plat, a.cache_root / "pypi" / "wheels"), a.prefix, a.cache_root)
    return 0


if __name__ == "__main__":
    code = main()
    # py-rattler 0.28's runtime threads can crash CPython's finalization when the process ends
    # right after install() (SIGSEGV / "PyGILState_Release: thread state must be current", about
    # one exit in two here): skip finalization, the work is done and flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
