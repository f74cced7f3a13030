"""A static HTTP mirror on 127.0.0.1: serves a local channel + wheels as the "online" source."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from auto_infer.core.net import free_port


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


class Mirror:
    """``with Mirror(root, port) as m: ...`` serves ``root`` at ``m.url`` until the block ends."""

    def __init__(self, root: Path, port: int | None = None, host: str = "127.0.0.1"):
        self.root = root
        self.host = host
        self.port = port or free_port(host)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[str]:
        return list(getattr(self._server, "requests", []))

    def start(self) -> Mirror:
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.requests = []  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Mirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
