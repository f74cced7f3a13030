"""Every server's log, followed and copied to one stream with the server's name as prefix.

``supervise`` runs in the foreground of a container, where ``docker logs`` / ``kubectl logs`` read
stdout: this thread follows the log file of every record it supervises (``keys``; other pods may
keep theirs in the same workspace) (the files are still written as always)
and prints ``NAME | line``. A log that existed before is followed from its end; a new file (a
restart renames the old log to ``.1``) from its start.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from pathlib import Path
from typing import IO

from auto_infer.core.settings import Settings
from auto_infer.serve import registry


class LogStream(threading.Thread):
    def __init__(self, settings: Settings, out: IO[str], poll: float = 0.2, keys: Collection[str] | None = None):
        super().__init__(name="auto-infer-logstream", daemon=True)
        self.settings, self.out, self.poll = settings, out, poll
        self.keys = None if keys is None else set(keys)       # None: every record in the workspace
        self.done = threading.Event()
        self.files: dict[str, tuple[int, int]] = {}       # name -> (inode, offset)
        self.pending: dict[str, bytes] = {}
        for name, rec in self._records().items():                   # what is already there is not news
            st = _stat(rec.log)
            if st is not None:
                self.files[name] = (st.st_ino, st.st_size)

    def run(self) -> None:
        while not self.done.wait(self.poll):
            self.pump()
        self.pump()

    def stop(self, timeout: float = 5.0) -> None:
        self.done.set()
        self.join(timeout)

    def pump(self) -> None:
        for name, rec in self._records().items():
            try:
                self._follow(name, Path(str(rec.log or "")))
            except OSError:
                continue                    # gone between stat and open: next round

    def _records(self) -> dict[str, registry.ServerRecord]:
        recs = registry.all_records(self.settings)
        return recs if self.keys is None else {k: r for k, r in recs.items() if k in self.keys}

    def _follow(self, name: str, path: Path) -> None:
        st = _stat(str(path))
        if st is None:
            return
        inode, offset = self.files.get(name, (st.st_ino, 0))
        if inode != st.st_ino or st.st_size < offset:      # a new file (restart) or truncated: from the start
            inode, offset = st.st_ino, 0
            self._flush(name)
        if st.st_size > offset:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(st.st_size - offset)
            offset += len(data)
            self._emit(name, self.pending.pop(name, b"") + data)
        self.files[name] = (inode, offset)

    def _emit(self, name: str, data: bytes) -> None:
        *lines, rest = data.split(b"\n")
        if rest:
            self.pending[name] = rest
        if lines:
            self.out.write("".join(f"{name} | {ln.decode(errors='replace').rstrip()}\n" for ln in lines))
            self.out.flush()

    def _flush(self, name: str) -> None:
        rest = self.pending.pop(name, b"")
        if rest:
            self._emit(name, rest + b"\n")


def _stat(path: str | None) -> os.stat_result | None:
    try:
        return os.stat(path) if path else None
    except OSError:
        return None
