"""The extraction floor for `bundle import`: untar the bundle, then extract every conda archive in
it, all at once on every core, with rattler's own extractor -- and nothing else (no hashing, no
checks, no manifest). What any importer of the same bundle must at least do.

    python bench/floor.py BUNDLE DEST

Standalone on purpose (imports neither auto_infer nor bench), run as its own process so that it
pays the same interpreter start-up as the `auto-infer` command it is compared with.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tarfile
from pathlib import Path


async def _extract_all(archives: list[Path], pkgs: Path) -> None:
    from rattler.networking import Client
    from rattler.package_streaming import download_and_extract

    client, limit = Client(), asyncio.Semaphore(max(2, os.cpu_count() or 2))

    async def one(a: Path) -> None:
        async with limit:
            name = a.name.removesuffix(".conda").removesuffix(".tar.bz2")
            await download_and_extract(client, a.as_uri(), pkgs / name)

    await asyncio.gather(*(one(a) for a in archives))


def main(bundle: Path, dest: Path) -> None:
    with tarfile.open(bundle, "r|") as tf:
        tf.extractall(dest / "members", filter="data")
    archives = sorted(p for p in (dest / "members" / "conda").rglob("*") if p.name.endswith((".conda", ".tar.bz2")))
    asyncio.run(_extract_all(archives, dest / "pkgs"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
