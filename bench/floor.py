"""The extraction floor for `bundle import`: untar the bundle, then extract every conda archive in
it, all at once on every core, with rattler's own extractor -- and nothing else (no hashing, no
checks, no manifest), one process per core. What any importer of the same bundle must at least do.

    python bench/floor.py BUNDLE DEST

Standalone on purpose (imports neither auto_infer nor bench), run as its own process so that it
pays the same interpreter start-up as the `auto-infer` command it is compared with.
"""

from __future__ import annotations

import os
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _one(job: tuple[Path, Path]) -> None:
    from rattler.package_streaming import extract

    archive, pkgs = job
    extract(archive, pkgs / archive.name.removesuffix(".conda").removesuffix(".tar.bz2"))


def main(bundle: Path, dest: Path) -> None:
    with tarfile.open(bundle, "r|") as tf:
        tf.extractall(dest / "members", filter="data")
    archives = sorted(p for p in (dest / "members" / "conda").rglob("*") if p.name.endswith((".conda", ".tar.bz2")))
    with ProcessPoolExecutor(os.cpu_count()) as pool:     # rattler's extractor holds the GIL: processes
        list(pool.map(_one, [(a, dest / "pkgs") for a in archives], chunksize=4))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
