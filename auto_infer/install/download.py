"""One file from one URL into its partial file, resumed with HTTP Range when bytes are already there.

The partial file ``.<name>.part`` beside the destination outlives a cut transfer (reset, timeout,
Ctrl-C, SIGTERM, SIGKILL): the next attempt, in this run or the next warm, asks for the rest
(``Range: bytes=N-``) and hashes the bytes it already has first, so the sha256 of the whole file
is known at the end. A server that answers 200 to a Range request sends the whole file: the
partial file starts over. The caller decides with the sha256; it never trusts a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from auto_infer.core.redact import scrub

CHUNK = 1 << 20


class Transient(Exception):
    """Worth retrying: the next mirror, then after a pause (the partial file is kept)."""


class Permanent(Exception):
    """This URL will not work (404, missing file): try the next mirror, do not retry it."""


class Fatal(Exception):
    """Stop trying this artifact: a sha256 mismatch, or the deadline."""


def with_scheme(proxy: str) -> str:
    """A proxy variable's value as curl, pixi and uv read it: ``host:port`` (or ``user:pw@host:port``)
    without a scheme is an http:// proxy. requests alone refuses that form (InvalidProxyURL)."""
    return proxy if "://" in proxy else f"http://{proxy}"


_SESSION_CLASS: Any = None     # made on first use: requests is imported only then


def session() -> Any:
    """A requests session that honours the proxy variables (and NO_PROXY) as curl and pixi do."""
    global _SESSION_CLASS
    if _SESSION_CLASS is None:
        import requests

        class ProxySession(requests.Session):
            def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
                merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
                merged["proxies"] = {k: with_scheme(v) if isinstance(v, str) else v
                                     for k, v in merged["proxies"].items()}
                return merged

        _SESSION_CLASS = ProxySession
    return _SESSION_CLASS()


def part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def hash_of(path: Path) -> tuple[Any, int]:
    """sha256 object over the bytes already in ``path`` (none when it is missing), and their count."""
    h, n = hashlib.sha256(), 0
    try:
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                h.update(block)
                n += len(block)
    except FileNotFoundError:
        pass
    return h, n


_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class Attempt:
    """One GET of ``url`` into ``part``. Hooks: ``count(n)`` hears every byte received, ``left()``
    raises when the deadline passed or the run was stopped, ``restarted(had, why)`` when the
    ``had`` bytes kept could not be resumed, ``sized(size, have)`` when the size is known."""

    def __init__(self, part: Path, count: Callable[[int], None], left: Callable[[], float],
                 restarted: Callable[[int, str], None], sized: Callable[[int, int], None]):
        self.part, self.count, self.left, self.restarted, self.sized = part, count, left, restarted, sized
        self.resumed_from = 0      # bytes kept from before that this attempt went on from
        self.got = 0               # bytes received by this attempt
        self.resp: Any = None

    def abort(self) -> None:
        """From another thread: end a read that waits on the network now (Ctrl-C, SIGTERM), not
        after the read timeout. The bytes already written stay in the partial file."""
        raw = getattr(self.resp, "raw", None)
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is None:        # http.client let go of it (a response that closes): its file holds it
            sock = getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def local(self, path: str) -> tuple[str, int]:
        """A file:// URL: copied whole (a local disk needs no resume)."""
        h, n = hashlib.sha256(), 0
        try:
            src = open(unquote(path), "rb")   # noqa: SIM115 - closed below
        except OSError as exc:         # missing, a folder, unreadable: this URL will not work
            raise Permanent(f"cannot read the file: {exc.strerror}") from None
        with src, open(self.part, "wb") as fh:
            while block := src.read(CHUNK):
                h.update(block)
                fh.write(block)
                n += len(block)
        return h.hexdigest(), n

    def http(self, session: Any, url: str, timeout: float, resume: bool) -> tuple[str, int]:
        h, have = hash_of(self.part) if resume else (hashlib.sha256(), 0)
        if not resume:
            self.part.unlink(missing_ok=True)
        headers = {"Range": f"bytes={have}-", "Accept-Encoding": "identity"} if have else {}
        with session.get(url, stream=True, timeout=(timeout, timeout), headers=headers) as resp:
            self.resp = resp
            if resp.status_code == 416 and have:       # nothing after byte N: the partial file is all of it
                self.resumed_from = have
                return h.hexdigest(), have
            if resp.status_code in (408, 429) or resp.status_code >= 500:
                raise Transient(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise Permanent(f"HTTP {resp.status_code}")
            if have and not _continues(resp, have):
                self.restarted(have, f"it ignored the Range request (HTTP {resp.status_code}): "
                                     "starting over from byte 0")
                h, have = hashlib.sha256(), 0
            self.resumed_from = have
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() and "Content-Encoding" not in resp.headers else None
            self.sized(have + (expected or 0), have)
            with open(self.part, "ab" if have else "wb") as fh:
                self._body(resp, fh, h)
        if expected is not None and self.got != expected:
            raise Transient(f"truncated body: {have + self.got} of {have + expected} bytes")
        return h.hexdigest(), have + self.got

    def _body(self, resp: Any, fh: BinaryIO, h: Any) -> None:
        for block in resp.iter_content(CHUNK):
            self.left()
            h.update(block)
            fh.write(block)
            self.got += len(block)
            self.count(len(block))


def _continues(resp: Any, have: int) -> bool:
    """A 206 whose Content-Range starts right after the bytes we have."""
    m = _RANGE.match(resp.headers.get("Content-Range", ""))
    return resp.status_code == 206 and m is not None and int(m.group(1)) == have


def reason(exc: BaseException) -> str:
    """A short cause for a requests error (its own text repeats the URL and nests three errors)."""
    import requests

    text = scrub(str(exc), [])
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout) or "Read timed out" in text:
        return "no data within the read timeout"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "truncated body: the connection broke before the end"
    kind = "proxy error" if isinstance(exc, requests.exceptions.ProxyError) else "connection failed"
    if "Connection reset" in text:
        return f"{kind}: connection reset by peer"
    if "RemoteDisconnected" in text:
        return f"{kind}: the server closed the connection without a response"
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return f"{kind}: {errno.group(1).strip().lower()}"
    return f"{type(exc).__name__}: {text[-160:]}"


def is_local(url: str) -> str | None:
    parsed = urlparse(url)
    return parsed.path if parsed.scheme in ("", "file") else None
