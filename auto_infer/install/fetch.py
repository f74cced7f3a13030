"""One downloader for every file warm fetches (conda archives and wheels).

Bounded everywhere, so a stalled network cannot hang warm: a connect/read timeout per request
(AUTO_INFER_NET_TIMEOUT), a total deadline (AUTO_INFER_NET_DEADLINE), a fixed number of parallel
connections (AUTO_INFER_NET_CONNECTIONS). Transient failures (connection error or reset, timeout,
5xx, 408, 429, a body shorter than its Content-Length) are retried with exponential backoff
(AUTO_INFER_NET_RETRIES, AUTO_INFER_NET_RETRY_DELAY), each retry logged; the mirror map's
mirrors are tried in order. A sha256 that differs from the lock's is never retried: the file is
dropped and the artifact fails. Files are streamed to a partial file beside the destination
(install/download.py) and renamed into place only when complete and verified; a cut transfer keeps
its partial file and the retry, in this run or the next, asks for the rest (HTTP Range). The bytes
are shown by one :class:`~auto_infer.core.meter.Meter`. On failure: one UserError naming what was
not fetched, why, and the proxy in use (redacted).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from auto_infer.core.errors import UserError
from auto_infer.core.meter import Meter, mb
from auto_infer.core.progress import Step, fmt_secs, say
from auto_infer.core.redact import redact_proxy, redact_url
from auto_infer.core.settings import Net
from auto_infer.install import download
from auto_infer.install.cache import WheelStore
from auto_infer.install.download import Attempt, Fatal, Permanent, Transient, is_local, part_path, reason
from auto_infer.install.mirrors import MirrorMap

SHOWN = 8          # failed artifacts named in the error; the rest are counted


@dataclass(frozen=True)
class Job:
    key: str             # the lock's URL: unique, and what the manifest looks up
    name: str            # for messages: the file name (conda: <subdir>/<file>)
    url: str
    dest: Path
    sha256: str | None
    store: WheelStore | None = field(default=None, compare=False)   # verified-hash record of dest's folder
    size: int | None = None                                        # the lock's, when it has one


@dataclass(frozen=True)
class Fetched:
    sha256: str
    size: int
    served_from: str | None    # redacted URL it came from; None: it was already in the cache


def proxy_for(url: str) -> str:
    """The proxy requests would use for ``url`` (from the environment), redacted."""
    from requests.utils import get_environ_proxies

    proxies = get_environ_proxies(url)
    scheme = urlparse(url).scheme
    proxy = proxies.get(scheme) or proxies.get("all")
    return redact_proxy(proxy) if proxy else "none"


class _Run:
    def __init__(self, jobs: Sequence[Job], net: Net, mirrors: MirrorMap, step: Step, what: str, meter: Meter,
                 ready: Callable[[Job], None] | None = None):
        self.jobs, self.net, self.mirrors, self.step, self.what, self.meter = jobs, net, mirrors, step, what, meter
        self.ready = ready
        self.deadline = time.monotonic() + net.deadline
        self.lock = threading.Lock()
        self.local = threading.local()
        self.stop = threading.Event()
        self.done = 0
        self.failures: dict[str, str] = {}
        self.mirror_failures: dict[str, int] = {}    # per mirror base: prefer those that work
        self.no_range: set[str] = set()              # mirrors that ignored a Range request (said once)
        self.results: dict[str, Fetched] = {}
        self.sized_jobs: set[str] = set()
        self.active: set[Attempt] = set()           # attempts reading now: aborted when the run stops

    # ---- one request -------------------------------------------------------------
    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Fatal(f"the total deadline of {fmt_secs(self.net.deadline)} (AUTO_INFER_NET_DEADLINE) "
                        "was reached")
        if self.stop.is_set():
            raise Fatal("stopped")
        return left

    def _session(self):  # type: ignore[no-untyped-def]
        if not hasattr(self.local, "session"):
            self.local.session = download.session()
        return self.local.session

    def _restarted(self, base: str, job: Job, had: int, why: str) -> None:
        self.meter.drop(had)
        with self.lock:
            first = base not in self.no_range
            self.no_range.add(base)
        if first:
            say(f"  ↻ {job.name}: {redact_url(base)}: {why} (said once for this mirror)")

    def _sized(self, job: Job, size: int, have: int) -> None:
        if job.size is None:               # a wheel (the lock has no size): the total learns it now
            with self.lock:
                first = job.key not in self.sized_jobs
                self.sized_jobs.add(job.key)
            if first:
                self.meter.grow(size - have)
        self.meter.begin(job.name, size, have)

    def _attempt(self, job: Job, base: str, url: str) -> Fetched:
        import requests

        job.dest.parent.mkdir(parents=True, exist_ok=True)
        part = part_path(job.dest)
        att = Attempt(part, lambda n: self.meter.add(n, job.name), self._left,
                      lambda had, why: self._restarted(base, job, had, why),
                      lambda size, have: self._sized(job, size, have))
        with self.lock:
            self.active.add(att)
        try:
            local = is_local(url)
            if local is not None:
                sha, size = att.local(local)
            else:
                sha, size = att.http(self._session(), url, min(self.net.timeout, self._left()),
                                     resume=job.sha256 is not None)
        except requests.exceptions.RequestException as exc:
            raise Transient(reason(exc)) from None
        finally:
            with self.lock:
                self.active.discard(att)
            self.meter.end(job.name)
            if part.exists() and part.stat().st_size == 0:
                part.unlink()
        if job.sha256 and sha != job.sha256:
            part.unlink(missing_ok=True)
            self.meter.drop(size)
            if att.resumed_from:        # the bytes kept from before were wrong: never accepted, fetched whole
                say(f"  ↻ {job.name}: the partial file kept from an earlier try does not match the lock's "
                    f"sha256: thrown away, fetching the whole file again")
                return self._attempt(job, base, url)
            raise Fatal(f"sha256 mismatch: the file from {redact_url(url)} has {sha}, "
                        f"the lock says {job.sha256} (never accepted; fix or drop that mirror)")
        os.replace(part, job.dest)
        return Fetched(sha, size, redact_url(url))

    # ---- one artifact, all its mirrors and retries --------------------------------
    def _one(self, job: Job) -> None:
        try:
            self.results[job.key] = self._fetch(job)
        except Fatal as exc:
            self.failures[job.name] = str(exc)
        else:
            if self.ready is not None:
                self.ready(job)
        with self.lock:
            self.done += 1
            self.step.note(f"{self.what}: {self.done}/{len(self.jobs)} done, "
                           f"{self.meter.summary()}, {len(self.failures)} failed")

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
                    return self._attempt(job, base, url)
                except Permanent as exc:
                    dead.add(url)
                    last = f"{exc} from {redact_url(url)}"
                except Transient as exc:
                    last = f"{exc} from {redact_url(url)}"
                self._failed(base)
                if i + 1 < len(order):
                    say(f"  ↻ {job.name}: {last}; trying the next mirror")
            if len(dead) == len(routes):
                break
        tries = "" if self.net.retries == 0 or len(dead) == len(routes) else \
            f" (after {self.net.retries} {'retry' if self.net.retries == 1 else 'retries'})"
        raise Fatal(last + tries)

    def run(self) -> dict[str, Fetched]:
        pool = ThreadPoolExecutor(max_workers=self.net.connections, thread_name_prefix="fetch")
        try:
            for future in [pool.submit(self._one, job) for job in self.jobs]:
                future.result()
        finally:
            self.stop.set()
            with self.lock:
                for att in self.active:
                    att.abort()
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


def _partial(job: Job) -> int:
    """Bytes a resumable partial file of ``job`` holds (a job without a sha256 starts over)."""
    try:
        return part_path(job.dest).stat().st_size if job.sha256 else 0
    except OSError:
        return 0


def fetch_all(jobs: Sequence[Job], net: Net, mirrors: MirrorMap, step: Step, what: str,
              ready: Callable[[Job], None] | None = None) -> dict[str, Fetched]:
    """Download every job whose file is not already there and verified; raise one UserError if any fail.

    ``ready(job)`` is called (from a download thread) as soon as a job's file is in place and
    verified, for those already there first. Returns the lock's URL -> Fetched for every job
    (served_from None: it was already there)."""
    have: dict[str, Fetched] = {}
    todo = []
    for job in jobs:
        sha = job.store.verified_sha(_rel(job)) if job.store is not None and job.dest.exists() else None
        if sha and (job.sha256 is None or sha == job.sha256):
            have[job.key] = Fetched(sha, job.dest.stat().st_size, None)
        else:
            todo.append(job)
    for job in jobs:
        if ready is not None and job.key in have:
            ready(job)
    stores = {id(j.store): j.store for j in jobs if j.store is not None}
    try:
        if todo:
            parts = [n for n in (_partial(j) for j in todo) if n]
            kept = sum(parts)
            if kept:
                say(f"  resuming {len(parts)} partial file(s): {mb(kept)} kept from an earlier run")
            step.note(f"{what}: fetching {len(todo)} of {len(jobs)} with {net.connections} connections")
            total = sum(j.size or 0 for j in todo)
            with Meter(f"{what}", max(total, kept), kept, net.progress_every, step) as meter:
                run = _Run(todo, net, mirrors, step, what, meter, ready)
                try:
                    got = run.run()
                except KeyboardInterrupt:
                    _say_kept(todo)
                    raise
            for job in todo:      # record the hash just measured, so the next warm need not read the file
                if job.key in got and job.store is not None:
                    job.store.remember(_rel(job), got[job.key].sha256)
            if run.failures:
                _say_kept(todo)
                raise run.error()
            have.update(got)
    finally:
        for store in stores.values():
            store.save()
    return have


def _say_kept(jobs: Sequence[Job]) -> None:
    kept = [n for n in (_partial(j) for j in jobs) if n]
    if kept:
        say(f"  partial files kept: {len(kept)} ({mb(sum(kept))}); the next warm goes on from there")
