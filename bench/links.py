"""Hard links or copies? Compare each file of an environment with the inodes of the caches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

METADATA_DIRS = ("conda-meta",)           # written by the installers, never linked
METADATA_SUFFIX = (".dist-info",)
METADATA_TOP = (".lock", "CACHEDIR.TAG")  # rattler's prefix lock and cache-directory tag


def cache_inodes(*roots: Path) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                found.add((st.st_dev, st.st_ino))
    return found


def _is_metadata(rel: str) -> bool:
    parts = rel.split(os.sep)
    if len(parts) == 1:
        return rel in METADATA_TOP
    return parts[0] in METADATA_DIRS or any(p.endswith(METADATA_SUFFIX) for p in parts[:-1])


@dataclass(frozen=True)
class LinkStats:
    files: int             # regular files in the environment
    symlinks: int
    linked: int            # sharing an inode with a file in the caches
    copied: int            # package payload not linked: a copy (or a rewritten file)
    metadata: int          # installer records (conda-meta/, *.dist-info/, .lock, CACHEDIR.TAG)
    bytes_linked: int
    bytes_written: int     # st_size of every regular file that is not linked (copies + metadata)
    bytes_copied: int      # of that, package payload
    copied_paths: tuple[str, ...] = ()   # the first few copied payload files, relative to the prefix

    @property
    def hardlinks_only(self) -> bool:
        return self.copied == 0

    def summary(self) -> str:
        mb = 1e6
        return (f"{self.linked}/{self.files - self.metadata} payload files hard-linked, {self.copied} copied "
                f"({self.bytes_copied / mb:.1f} MB); {self.bytes_written / mb:.1f} MB written in all "
                f"(incl. {self.metadata} metadata files); {self.bytes_linked / mb:.1f} MB linked")

    def to_json(self) -> dict[str, object]:
        return {**self.__dict__, "hardlinks_only": self.hardlinks_only}


def link_stats(prefix: Path, inodes: set[tuple[int, int]]) -> LinkStats:
    c = dict(files=0, symlinks=0, linked=0, copied=0, metadata=0, bytes_linked=0, bytes_written=0,
             bytes_copied=0)
    copied: list[str] = []
    for dirpath, _dirs, names in os.walk(prefix):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                c["symlinks"] += 1
                continue
            c["files"] += 1
            if (st.st_dev, st.st_ino) in inodes:
                c["linked"] += 1
                c["bytes_linked"] += st.st_size
                continue
            c["bytes_written"] += st.st_size
            rel = os.path.relpath(path, prefix)
            if _is_metadata(rel):
                c["metadata"] += 1
            else:
                c["copied"] += 1
                c["bytes_copied"] += st.st_size
                copied += [rel] if len(copied) < 20 else []
    return LinkStats(**c, copied_paths=tuple(sorted(copied)))
