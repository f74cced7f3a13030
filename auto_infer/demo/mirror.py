"""A static HTTP mirror on 127.0.0.1: serves a local channel + wheels as the "online" source."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from auto_infer.demo.background import BackgroundServer


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


class Mirror(BackgroundServer):
    """``with Mirror(root, port) as m: ...`` serves ``root`` at ``m.url`` until the block ends."""

    def __init__(self, root: Path, port: int | None = None, host: str = "127.0.0.1"):
        super().__init__(port, host)
        self.root = root

    @property
    def requests(self) -> list[str]:
        return list(getattr(self._server, "requests", []))

    def handler(self) -> Any:
        return functools.partial(_QuietHandler, directory=str(self.root))

    def prepared(self, server: ThreadingHTTPServer) -> None:
        server.requests = []  # type: ignore[attr-defined]
