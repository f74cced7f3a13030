"""An HTTP server of ours on 127.0.0.1, on a daemon thread, for the length of a ``with`` block:
the base of the channel mirror and the fake Hub."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any, TypeVar

from auto_infer.core.net import free_port

S = TypeVar("S", bound="BackgroundServer")


class BackgroundServer:
    """Subclasses say which handler serves (``handler()``); ``with Sub(...) as s:`` serves at ``s.url``."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host, self.port = host, port or free_port(host)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def handler(self) -> Any:
        raise NotImplementedError

    def prepared(self, server: ThreadingHTTPServer) -> None:
        """A hook: set up the server object before it serves."""

    def start(self: S) -> S:
        self._server = ThreadingHTTPServer((self.host, self.port), self.handler())
        self.prepared(self._server)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

