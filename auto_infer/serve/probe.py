"""Readiness and the smoke chat, over real HTTP.

Ready means ``/v1/models`` answers 200 and lists the model, and the engine's health routes answer
200; the engine says which routes and in which order (engines/*.py READY): SGLang lists models
long before its warmup is done, so ``/health_generate`` (else ``/health``) decides (notes/serving.md
1.4); vLLM and llama-server answer ``/health`` first (llama-server: 503 while the model loads);
other engines (``command``) need ``/health`` only if it exists; the gateway needs ``/readiness`` (503
until it has a healthy worker). Every round first asks whether the
process has ended, so a crash is reported at once with the tail of its log, not after the timeout.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

from auto_infer.core.progress import fmt_secs, say
from auto_infer.serve import procs
from auto_infer.serve.engines import known as engines
from auto_infer.serve.engines.base import ReadyRules

INTERVAL = 0.1            # between rounds: ready is seen within ~0.1 s plus two local requests
HEALTH_TIMEOUT = 30.0     # SGLang's /health_generate waits up to 20 s for a token, polling each 1 s
PROGRESS_FIRST, PROGRESS_EVERY = 2.0, 10.0
PROBE_LINE = re.compile(r'"GET /(v1/models|health|health_generate) HTTP')


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str                 # http://127.0.0.1:PORT (127.0.0.1 when the server binds 0.0.0.0)
    model: str | None             # the id /v1/models must list; None: whatever it lists
    engine: str                   # a name in engines.ENGINES ("gateway": the SGLang gateway)
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass
class Readiness:
    ok: bool = False
    reason: str = ""
    model_id: str | None = None
    first_answer: float | None = None       # wall-clock times
    ready: float | None = None


def session() -> requests.Session:
    """An HTTP session for our own servers: never through a proxy (HTTP_PROXY is for the internet)."""
    import requests

    s = requests.Session()
    s.trust_env = False
    return s


def base_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


GATEWAY_READY = ReadyRules(health=("/readiness",), health_first=False)   # 503 until it has a healthy worker


def _rules(target: Target) -> ReadyRules:
    return GATEWAY_READY if target.engine == "gateway" else engines.get(target.engine).READY


def check_once(
    target: Target, session: requests.Session, timeout: float = HEALTH_TIMEOUT
) -> tuple[bool, str, str | None]:
    """(ready, what we saw, the model id). Raises requests.RequestException when nothing answers."""
    rules = _rules(target)
    if rules.health_first:
        ok, seen = _health(target, session, timeout)
        if not ok:
            return False, seen, None
    ok, seen, model = _models(target, session)
    if not ok or rules.health_first:
        return ok, seen, model
    ok, seen = _health(target, session, timeout)
    return ok, seen, model


def _models(target: Target, session: requests.Session) -> tuple[bool, str, str | None]:
    r = session.get(f"{target.base_url}/v1/models", headers=target.headers(), timeout=10.0)
    if r.status_code != 200:
        return False, f"/v1/models answers {r.status_code}", None
    try:
        ids = [str(m.get("id")) for m in r.json().get("data", [])]
    except (ValueError, AttributeError):
        return False, "/v1/models answers, but not with an OpenAI model list", None
    model = target.model if target.model is not None else (ids[0] if ids else None)
    if model is None or model not in ids:
        return False, f"/v1/models lists {ids}, not {target.model!r}", None
    return True, "ready", model


def _health(target: Target, session: requests.Session, timeout: float) -> tuple[bool, str]:
    rules = _rules(target)
    for route in rules.health:
        h = session.get(f"{target.base_url}{route}", headers=target.headers(), timeout=timeout)
        if h.status_code == 200:
            return True, "ready"
        if h.status_code != 404:
            return False, f"{route} answers {h.status_code} ({_why(h)})"
    if rules.health_optional:
        return True, "ready"
    return False, f"none of {', '.join(rules.health)} exists"


def _why(response: requests.Response) -> str:
    """llama-server says why it is not ready ({"error": {"message": "Loading model"}})."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        message = None
    return str(message)[:80] if message else "warming up"


def ended_while_starting(ended: str, log: Path) -> str:
    tail = "\n".join(f"    {line}" for line in procs.tail(log, 15)) or "    (the log is empty)"
    return f"the process ended while starting ({ended})\n  last lines of {log}:\n{tail}"


def wait_ready(target: Target, handle: procs.Handle, log: Path, timeout: float,
               interval: float = INTERVAL, note: Callable[[str], None] = say) -> Readiness:
    """Poll until ready, the process ends, or ``timeout`` seconds pass."""
    import requests

    out = Readiness()
    t0 = time.monotonic()
    next_note, seen = PROGRESS_FIRST, ""
    with session() as http:
        while True:
            ended = handle.ended()
            if ended is not None:
                out.reason = ended_while_starting(ended, log)
                return out
            try:
                ok, seen, model = check_once(target, http, min(HEALTH_TIMEOUT, max(1.0, timeout)))
                out.first_answer = out.first_answer or time.time()
            except requests.RequestException as exc:
                ok, model = False, None
                seen = "not answering yet" if isinstance(exc, requests.ConnectionError) else f"no answer: {exc}"
            elapsed = time.monotonic() - t0
            if ok:
                out.ok, out.reason, out.model_id, out.ready = True, "ready", model, time.time()
                return out
            if elapsed >= timeout:
                out.reason = f"not ready after {fmt_secs(elapsed)} (ready_timeout): {seen}"
                return out
            if elapsed >= next_note:
                note(f"  … {target.name}: {fmt_secs(elapsed)}, {seen}; log: {last_line(log)[-160:]}")
                next_note = elapsed + PROGRESS_EVERY
            time.sleep(interval)


def wait_alive(handle: procs.Handle, log: Path, settle: float, interval: float = INTERVAL) -> Readiness:
    """A worker rank serves no HTTP: it counts as up when its process still runs ``settle`` seconds
    after the start (what ends at once, a bad flag or a missing import, is a failure with its log)."""
    out = Readiness()
    deadline = time.monotonic() + settle
    while True:
        ended = handle.ended()
        if ended is not None:
            out.reason = ended_while_starting(ended, log)
            return out
        if time.monotonic() >= deadline:
            out.ok, out.reason, out.ready = True, "running", time.time()
            return out
        time.sleep(interval)


def last_line(log: Path) -> str:
    """The server's last line of its own (the access-log lines of our probes say nothing new)."""
    recent = procs.tail(log, 5000)          # the last 64 KiB: our probes alone write ~20 lines a second
    lines = [ln for ln in recent if not PROBE_LINE.search(ln)]
    if lines:
        return lines[-1]
    return "(nothing but readiness probes lately)" if recent else "(no output yet)"


@dataclass
class Chat:
    request: dict[str, Any]
    ok: bool = False
    status: int | None = None
    response: Any = None
    answer: str = ""
    reason: str = ""
    seconds: float = 0.0
    done: float | None = None               # wall clock
    extra: dict[str, Any] = field(default_factory=dict)


def chat(target: Target, model: str, prompt: str, timeout: float = 600.0, max_tokens: int = 64) -> Chat:
    """A real POST /v1/chat/completions; success needs a non-empty answer."""
    request: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}],
               "max_tokens": max_tokens, "temperature": 0}
    import requests

    out = Chat(request=request)
    t0 = time.monotonic()
    try:
        with session() as http:
            r = http.post(f"{target.base_url}/v1/chat/completions", json=request, headers=target.headers(),
                          timeout=timeout)
    except requests.RequestException as exc:
        out.reason = f"no answer: {exc}"
        return out
    finally:
        out.seconds, out.done = time.monotonic() - t0, time.time()
    out.status = r.status_code
    try:
        out.response = r.json()
    except ValueError:
        out.response = r.text[:4000]
    if r.status_code != 200:
        out.reason = f"HTTP {r.status_code}: {str(out.response)[:300]}"
        return out
    out.answer = _answer(out.response)
    out.ok = bool(out.answer.strip())
    out.reason = "answered" if out.ok else "the answer is empty"
    return out


def _answer(response: Any) -> str:
    """The message content (or, for reasoning models cut short, the reasoning so far)."""
    try:
        message = response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return ""
    return str(message.get("content") or message.get("reasoning_content") or "")
