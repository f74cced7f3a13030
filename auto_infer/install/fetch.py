"""One downloader for every file warm fetches (conda archives and wheels).

Bounded everywhere, so a stalled network cannot hang warm: a connect/read timeout per request
(AUTO_INFER_NET_TIMEOUT), a total deadline (AUTO_INFER_NET_DEADLINE), a fixed number of parallel
connections (AUTO_INFER_NET_CONNECTIONS). Transient failures (connection error or reset, timeout,
5xx, 408, 429, a body shorter than its Content-Length) are retried with exponential backoff
(AUTO_INFER_NET_RETRIES, AUTO_INFER_NET_RETRY_DELAY), each retry logged; the mirror map's
mirrors are tried in order. A sha256 that differs from the lock's is never retried: the file is
dropped and the artifact fails. Files are streamed to a temp file beside the destination and
renamed into place only when complete and verified. On failure: one UserError naming what was
not fetched, why, and the proxy in use (redacted).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from auto_infer.core.errors import UserError
from auto_infer.core.progress import Step, fmt_secs, say
from auto_infer.core.redact import redact_url, scrub
from auto_infer.core.settings import Net
from auto_infer.install.cache import WheelStore
from auto_infer.install.mirrors import MirrorMap

SHOWN = 8          # failed artifacts named in the error; the rest are counted
CHUNK = 1 << 20


@dataclass(frozen=True)
class Job:
    key: str             # the lock's URL: unique, and what the manifest looks up
    name: str            # for messages: the file name (conda: <subdir>/<file>)
    url: str
    dest: Path
    sha256: str | None
    store: WheelStore | None = field(default=None, compare=False)   # verified-hash record of dest's folder


@dataclass(frozen=True)
class Fetched:
    sha256: str
    size: int
    served_from: str | None    # redacted URL it came from; None: it was already in the cache


class _Transient(Exception):
    """Worth retrying: the next mirror, then after a pause."""


class _Permanent(Exception):
    """This URL will not work (404, missing file): try the next mirror, do not retry it."""


class _Fatal(Exception):
    """Stop trying this artifact: a sha256 mismatch, or the deadline."""


def _reason(exc: BaseException) -> str:
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


def proxy_for(url: str) -> str:
    """The proxy requests would use for ``url`` (from the environment), redacted."""
    from requests.utils import get_environ_proxies

    proxies = get_environ_proxies(url)
    scheme = urlparse(url).scheme
    proxy = proxies.get(scheme) or proxies.get("all")
    return redact_url(proxy) if proxy else "none"


class _Run:
    def __init__(self, jobs: Sequence[Job], net: Net, mirrors: MirrorMap, step: Step, what: str):
        self.jobs, self.net, self.mirrors, self.step, self.what = jobs, net, mirrors, step, what
        self.deadline = time.monotonic() + net.deadline
        self.lock = threading.Lock()
        self.local = threading.local()
        self.stop = threading.Event()
        self.done = 0
        self.bytes = 0
        self.failures: dict[str, str] = {}
        self.mirror_failures: dict[str, int] = {}    # per mirror base: prefer those that work
        self.results: dict[str, Fetched] = {}

    # ---- one request -------------------------------------------------------------
    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Fatal(f"the total deadline of {fmt_secs(self.net.deadline)} (AUTO_INFER_NET_DEADLINE) "
                         "was reached")
        if self.stop.is_set():
            raise _Fatal("stopped")
        return left

    def _session(self):  # type: ignore[no-untyped-def]
        import requests

        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def _stream(self, url: str, fh: object) -> tuple[str, int]:
        import requests

        h, n = hashlib.sha256(), 0
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            try:
                src = open(unquote(parsed.path), "rb")   # noqa: SIM115 - closed below
            except OSError as exc:         # missing, a folder, unreadable: this URL will not work
                raise _Permanent(f"cannot read the file: {exc.strerror}") from None
            with src:
                while block := src.read(CHUNK):
                    h.update(block)
                    fh.write(block)  # type: ignore[attr-defined]
                    n += len(block)
            return h.hexdigest(), n
        wait = min(self.net.timeout, self._left())
        try:
            with self._session().get(url, stream=True, timeout=(wait, wait)) as resp:
                if resp.status_code in (408, 429) or resp.status_code >= 500:
                    raise _Transient(f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    raise _Permanent(f"HTTP {resp.status_code}")
                length = resp.headers.get("Content-Length")
                for block in resp.iter_content(CHUNK):
                    self._left()
                    h.update(block)
                    fh.write(block)  # type: ignore[attr-defined]
                    n += len(block)
                    with self.lock:
                        self.bytes += len(block)
                if length and length.isdigit() and "Content-Encoding" not in resp.headers and n != int(length):
                    raise _Transient(f"truncated body: {n} of {length} bytes")
        except requests.exceptions.RequestException as exc:
            raise _Transient(_reason(exc)) from None
        return h.hexdigest(), n

    def _attempt(self, job: Job, url: str) -> Fetched:
        job.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{job.dest.name}.", suffix=".part", dir=job.dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                sha, size = self._stream(url, fh)
            if job.sha256 and sha != job.sha256:
                raise _Fatal(f"sha256 mismatch: the file from {redact_url(url)} has {sha}, "
                             f"the lock says {job.sha256} (never accepted; fix or drop that mirror)")
            os.replace(tmp, job.dest)
            return Fetched(sha, size, redact_url(url))
        finally:
            tmp.unlink(missing_ok=True)

    # ---- one artifact, all its mirrors and retries --------------------------------
    def _one(self, job: Job) -> None:
        try:
            self.results[job.key] = self._fetch(job)
        except _Fatal as exc:
            self.failures[job.name] = str(exc)
        with self.lock:
            self.done += 1
            self.step.note(f"{self.what}: {self.done}/{len(self.jobs)} done, "
                           f"{self.bytes / 1e6:.1f} MB, {len(self.failures)} failed")

    def _failed(self, base: str) -> None:
        with self.lock:
            self.mirror_failures[base] = self.mirror_failures.get(base, 0) + 1

    def _fetch(self, job: Job) -> Fetched:
        routes = self.mirrors.routes(job.url)
        dead: set[str] = set()
        last = "not tried"
        for round_ in range(self.net.retries + 1):
            if round_:
                delay = self.net.retry_delay * 2 ** (round_ - 1)
                say(f"  ↻ retry {round_}/{self.net.retries} of {job.name} in {fmt_secs(delay)}: {last}")
                time.sleep(min(delay, self._left()))
            # as rattler does: the mirror with the fewest failures so far first, list order on a tie
            order = [r for r in sorted(routes, key=lambda r: self.mirror_failures.get(r[0], 0)) if r[1] not in dead]
            for i, (base, url) in enumerate(order):
                self._left()
                try:
                    return self._attempt(job, url)
                except _Permanent as exc:
                    dead.add(url)
                    last = f"{exc} from {redact_url(url)}"
                except _Transient as exc:
                    last = f"{exc} from {redact_url(url)}"
                self._failed(base)
                if i + 1 < len(order):
                    say(f"  ↻ {job.name}: {last}; trying the next mirror")
            if len(dead) == len(routes):
                break
        tries = "" if self.net.retries == 0 or len(dead) == len(routes) else \
            f" (after {self.net.retries} {'retry' if self.net.retries == 1 else 'retries'})"
        raise _Fatal(last + tries)

    def run(self) -> dict[str, Fetched]:
        pool = ThreadPoolExecutor(max_workers=self.net.connections, thread_name_prefix="fetch")
        try:
            for future in [pool.submit(self._one, job) for job in self.jobs]:
                future.result()
        finally:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        return self.results

    def error(self) -> UserError:
        failed = [j for j in self.jobs if j.name in self.failures]
        lines = "\n".join(f"    - {j.name}: {self.failures[j.name]}" for j in failed[:SHOWN])
        more = f"\n    … and {len(failed) - SHOWN} more" if len(failed) > SHOWN else ""
        proxy = proxy_for(self.mirrors.candidates(failed[0].url)[0])
        return UserError(
            f"{len(failed)} of {len(self.jobs)} {self.what} were not fetched:\n{lines}{more}\n"
            f"  proxy: {proxy}; {self.mirrors.describe()}",
            where=failed[0].url if len(failed) == 1 else f"{len(failed)} URLs of pixi.lock",
            fix="check the network, the proxy variables and the mirror map (AUTO_INFER_MIRRORS), then run warm "
                "again: what was fetched is kept. AUTO_INFER_NET_TIMEOUT / _DEADLINE / _RETRIES tune the limits")


def _rel(job: Job) -> str:
    assert job.store is not None
    return str(job.dest.relative_to(job.store.dir))


def fetch_all(jobs: Sequence[Job], net: Net, mirrors: MirrorMap, step: Step, what: str) -> dict[str, Fetched]:
    """Download every job whose file is not already there and verified; raise one UserError if any fail.

    Returns the lock's URL -> Fetched for every job (served_from None: it was already there)."""
    have: dict[str, Fetched] = {}
    todo = []
    for job in jobs:
        sha = job.store.verified_sha(_rel(job)) if job.store is not None and job.dest.exists() else None
        if sha and (job.sha256 is None or sha == job.sha256):
            have[job.key] = Fetched(sha, job.dest.stat().st_size, None)
        else:
            todo.append(job)
    stores = {id(j.store): j.store for j in jobs if j.store is not None}
    try:
        if todo:
            step.note(f"{what}: fetching {len(todo)} of {len(jobs)} with {net.connections} connections")
            run = _Run(todo, net, mirrors, step, what)
            got = run.run()
            for job in todo:      # record the hash just measured, so the next warm need not read the file
                if job.key in got and job.store is not None:
                    job.store.remember(_rel(job), got[job.key].sha256)
            if run.failures:
                raise run.error()
            have.update(got)
    finally:
        for store in stores.values():
            store.save()
    return have

