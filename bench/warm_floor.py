"""The floor for `auto-infer warm`: the same job with the raw tools and nothing of ours.

    python bench/warm_floor.py floor|online --lock L --cache-root C --prefix P [--connections N]

``floor``: download every conda archive and wheel of the lock from its URL (the 127.0.0.1
mirror), N at a time (requests, one session per thread, 1 MiB blocks to disk), into
C/conda/archives/<subdir>/ and C/pypi/wheels/; then extract every conda archive into the package
cache C/pixi/pkgs/<name-version-build>/ with rattler's own extractor on every core (one process per
core, the biggest archives first), checking the sha256 the extractor measures against the lock's
and writing rattler's ``<key>.lock`` (revision + sha256) so that rattler uses the entry as its own;
then install as bench/raw.py does (py-rattler ``install()`` from that cache, ``uv pip install
--offline --no-index --no-deps --require-hashes --link-mode hardlink`` of the wheels). The
downloads are not hashed while they stream: the extractor's sha256 (free) and uv's
--require-hashes verify them, so the floor checks as much as warm does about the packages.

``online``: py-rattler ``install()`` straight from the lock's URLs into an empty package cache
(rattler downloads, extracts and links on its own), then ``uv pip install --require-hashes`` of
the lock's wheel URLs (uv downloads them): the raw tools' own online install.

Standalone on purpose (imports neither auto_infer nor bench; it borrows bench/raw.py's install
steps, which are standalone too), run as its own process so that it pays the same interpreter
start-up as the `auto-infer warm` command it is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import raw  # bench/raw.py, beside this file (sys.path[0] when run as a script)

CHUNK = 1 << 20
REVISION = (1).to_bytes(8, "big")     # rattler's <key>.lock: a u64 revision, then the archive's sha256


def _download(jobs: list[tuple[str, Path]], connections: int) -> None:
    import threading

    import requests

    local = threading.local()

    def one(job: tuple[str, Path]) -> None:
        url, dest = job
        if not hasattr(local, "session"):
            local.session = requests.Session()
        dest.parent.mkdir(parents=True, exist_ok=True)
        with local.session.get(url, stream=True, timeout=60) as resp, open(dest, "wb") as fh:
            resp.raise_for_status()
            for block in resp.iter_content(CHUNK):
                fh.write(block)

    with ThreadPoolExecutor(max_workers=connections) as pool:
        list(pool.map(one, jobs))


def _extract(job: tuple[str, str, str, str]) -> str | None:
    from rattler.package_streaming import extract

    archive, pkgs, key, sha256 = job
    sha, _md5 = extract(Path(archive), Path(pkgs) / key)
    if bytes(sha).hex() != sha256:
        return f"{archive}: sha256 {bytes(sha).hex()}, the lock says {sha256}"
    with open(os.path.join(pkgs, f"{key}.lock"), "wb") as fh:
        fh.write(REVISION + bytes(sha))
    return None


def floor(records: list[Any], wheels: list[Any], a: argparse.Namespace) -> None:
    archives, wheel_dir, pkgs = a.cache_root / "conda" / "archives", a.cache_root / "pypi" / "wheels", \
        a.cache_root / "pixi" / "pkgs"
    conda = [(r.url, archives / r.subdir / r.file_name) for r in records]
    pypi = [(p.location, wheel_dir / unquote(urlparse(p.location).path.rsplit("/", 1)[-1])) for p in wheels]
    _download(conda + pypi, a.connections)
    pkgs.mkdir(parents=True, exist_ok=True)
    jobs = [(str(dest), str(pkgs), dest.name.removesuffix(".conda").removesuffix(".tar.bz2"), r.sha256.hex())
            for r, (_, dest) in zip(records, conda, strict=True)]
    jobs.sort(key=lambda j: -os.path.getsize(j[0]))       # the biggest first: the cores end together
    with ProcessPoolExecutor(os.cpu_count()) as pool:     # rattler's extractor holds the GIL: processes
        bad = [why for why in pool.map(_extract, jobs) if why]
    if bad:
        raise SystemExit("\n".join(bad))
    raw._conda(records, a.prefix, pkgs, noop=False)
    raw._pypi([f"{p.name} @ {dest.as_uri()} --hash=sha256:{p.hashes.sha256.hex()}"
               for p, (_, dest) in zip(wheels, pypi, strict=True)], a.prefix, a.cache_root)


def online(records: list[Any], wheels: list[Any], a: argparse.Namespace) -> None:
    from rattler import install

    asyncio.run(install(records, a.prefix, cache_dir=a.cache_root / "pixi" / "pkgs", show_progress=False))
    if not wheels:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("".join(f"{p.name} @ {p.location} --hash=sha256:{p.hashes.sha256.hex()}\n" for p in wheels))
    env = dict(os.environ, UV_CACHE_DIR=str(a.cache_root / "pypi" / "uv"))
    cmd = [raw._uv(), "pip", "install", "--no-config", "--python", str(a.prefix / "bin" / "python"), "--no-deps",
           "--require-hashes", "--link-mode", "hardlink", "-q", "-r", fh.name]
    try:
        subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(fh.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["floor", "online"])
    ap.add_argument("--lock", type=Path, required=True)
    ap.add_argument("--prefix", type=lambda p: Path(p).resolve(), required=True)
    ap.add_argument("--cache-root", type=lambda p: Path(p).resolve(), required=True)
    ap.add_argument("--connections", type=int, default=6)
    ap.add_argument("--environment", default="default")
    ap.add_argument("--platform", default="linux-64")
    a = ap.parse_args(argv)
    from rattler import LockFile

    env = LockFile.from_path(a.lock).environment(a.environment)
    assert env is not None, f"no environment {a.environment!r} in {a.lock}"
    plat = next(p for p in env.platforms() if p.name == a.platform)
    records = list(env.conda_repodata_records_for_platform(plat) or [])
    wheels = list(env.pypi_packages_for_platform(plat) or [])
    (floor if a.mode == "floor" else online)(records, wheels, a)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()        # py-rattler can crash CPython's finalization after install(): see raw.py
    sys.stderr.flush()
    os._exit(code)
