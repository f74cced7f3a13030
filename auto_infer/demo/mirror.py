"""A static HTTP mirror on 127.0.0.1: serves a local channel + wheels as the "online" source.

It answers ``Range: bytes=N-`` with 206 (``ranges=False``: a server that ignores Range, 200 and
the whole file), counts the body bytes it sends (``sent``, per path in ``sent_by``), and can
misbehave on purpose for the download tests: ``cut={"name": offset}`` ends the first response of
a file whose path ends with ``name`` after ``offset`` bytes of the file (the connection closes,
the Content-Length promised more); ``stall={"name": offset}`` stops there and holds the
connection until the mirror stops (a warm to be killed); ``rate``: bytes per second at most.
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from auto_infer.demo.background import BackgroundServer

BLOCK = 1 << 16
_RANGE = re.compile(r"bytes=(\d+)-$")


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.server.log.append((self.command, self.path))  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            super().do_GET()
            return
        size = path.stat().st_size
        m = _RANGE.match(self.headers.get("Range", "")) if self.server.ranges else None  # type: ignore[attr-defined]
        start = int(m.group(1)) if m else 0
        if start >= size and m:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if m else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes" if self.server.ranges else "none")  # type: ignore[attr-defined]
        if m:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        self._body(path, start, size)

    def _misbehave(self, key: str) -> int | None:
        """The offset at which this response is cut or stalled (the first response of a file only)."""
        srv: Any = self.server
        with srv.count_lock:
            for name, table in (("cut", srv.cut), ("stall", srv.stall)):
                for suffix in list(table):
                    if self.path.endswith(suffix):
                        self.mode = name
                        return int(table.pop(suffix))
        return None

    def _body(self, path: Path, start: int, size: int) -> None:
        srv: Any = self.server
        stop_at = self._misbehave(self.path)
        pos = start
        try:
            with open(path, "rb") as fh:
                fh.seek(start)
                t0 = time.monotonic()
                while pos < size:
                    n = BLOCK if stop_at is None else min(BLOCK, stop_at - pos)
                    block = fh.read(n) if n > 0 else b""
                    if not block:
                        break
                    try:
                        self.wfile.write(block)
                    except (BrokenPipeError, ConnectionResetError):   # the client left (a killed download):
                        self.close_connection = True                  # what it got is counted, no traceback
                        return
                    pos += len(block)
                    with srv.count_lock:
                        srv.sent += len(block)
                        srv.sent_by[self.path] = srv.sent_by.get(self.path, 0) + len(block)
                    if srv.rate:
                        time.sleep(max(0.0, (pos - start) / srv.rate - (time.monotonic() - t0)))
        finally:
            with srv.count_lock:
                srv.transfers.append((self.path, start, pos - start))
        if stop_at is not None:
            self.wfile.flush()
            if getattr(self, "mode", "") == "stall":
                srv.stalled.set()
                srv.release.wait()
            self.close_connection = True
            with contextlib.suppress(OSError):        # the client may be gone already (killed)
                self.connection.shutdown(socket.SHUT_RDWR)


class Mirror(BackgroundServer):
    """``with Mirror(root, port) as m: ...`` serves ``root`` at ``m.url`` until the block ends."""

    def __init__(self, root: Path, port: int | None = None, host: str = "127.0.0.1", *, ranges: bool = True,
                 cut: dict[str, int] | None = None, stall: dict[str, int] | None = None, rate: float = 0):
        super().__init__(port, host)
        self.root, self.ranges, self.rate = root, ranges, rate
        self.cut, self.stall = dict(cut or {}), dict(stall or {})

    @property
    def requests(self) -> list[str]:
        """The paths of every request (HEAD too: warm sizes wheels that way), in order."""
        return [path for _, path in getattr(self._server, "log", [])]

    @property
    def gets(self) -> list[str]:
        """The paths of the GET requests."""
        return [path for method, path in getattr(self._server, "log", []) if method == "GET"]

    @property
    def sent(self) -> int:
        """Body bytes sent so far, all files."""
        return int(getattr(self._server, "sent", 0))

    @property
    def transfers(self) -> list[tuple[str, int, int]]:
        """(path, first byte, bytes sent) of every file response, in the order they ended."""
        return list(getattr(self._server, "transfers", []))

    def sent_for(self, name: str) -> int:
        table = dict(getattr(self._server, "sent_by", {}))
        return sum(n for p, n in table.items() if p.endswith(name))

    def wait_stalled(self, timeout: float) -> bool:
        return bool(self._server is not None and self._server.stalled.wait(timeout))  # type: ignore[attr-defined]

    def handler(self) -> Any:
        return functools.partial(_Handler, directory=str(self.root))

    def prepared(self, server: ThreadingHTTPServer) -> None:
        s: Any = server
        s.log, s.ranges, s.rate, s.cut, s.stall = [], self.ranges, self.rate, self.cut, self.stall
        s.sent, s.sent_by, s.transfers, s.count_lock = 0, {}, [], threading.Lock()
        s.stalled, s.release = threading.Event(), threading.Event()
        s.daemon_threads = True

    def stop(self) -> None:
        if self._server is not None:
            self._server.release.set()  # type: ignore[attr-defined]
        super().stop()

