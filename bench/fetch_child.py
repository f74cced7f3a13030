"""One download run in its own process, for case 10: ``python -m bench.fetch_child MODE DEST N URL=SHA...``.

MODE ``ours``: warm's downloader (auto_infer.install.fetch.fetch_all: partial files, Range, sha256
of every byte, the byte meter; a live view when stderr is a terminal). MODE ``plain``: the same
files with ``requests`` and a pool of N threads, streamed to disk in 1 MiB blocks, nothing else;
``plain-sha256``: the same, hashing every block and comparing with the expected sha256 at the end.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def ours(dest: Path, connections: int, pairs: list[tuple[str, str]]) -> None:
    from auto_infer.core.progress import Step
    from auto_infer.core.settings import Net
    from auto_infer.install import fetch
    from auto_infer.install.mirrors import MirrorMap

    jobs = [fetch.Job(url, url.rsplit("/", 1)[1], url, dest / url.rsplit("/", 1)[1], sha) for url, sha in pairs]
    fetch.fetch_all(jobs, Net(connections=connections), MirrorMap(), Step("bench"), "artifacts")


def plain(dest: Path, connections: int, pairs: list[tuple[str, str]], check: bool = False) -> None:
    import hashlib

    import requests

    def one(pair: tuple[str, str]) -> None:
        url, sha = pair
        h = hashlib.sha256()
        with requests.get(url, stream=True, timeout=60) as resp, open(dest / url.rsplit("/", 1)[1], "wb") as fh:
            resp.raise_for_status()
            for block in resp.iter_content(1 << 20):
                if check:
                    h.update(block)
                fh.write(block)
        if check and h.hexdigest() != sha:
            raise SystemExit(f"sha256 mismatch: {url}")

    with ThreadPoolExecutor(max_workers=connections) as pool:
        list(pool.map(one, pairs))


def main(argv: list[str]) -> int:
    mode, dest, n, *rest = argv
    pairs = [tuple(p.split("=", 1)) for p in rest]
    Path(dest).mkdir(parents=True, exist_ok=True)
    if mode == "ours":
        ours(Path(dest), int(n), pairs)  # type: ignore[arg-type]
    else:
        plain(Path(dest), int(n), pairs, check=mode == "plain-sha256")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
