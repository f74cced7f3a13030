"""The gateway as a supervised process: planned, started, waited for and chatted through like a server.

``serve`` prepares it before any worker starts (its flags through its own parser, its ports free),
and runs it once its workers are ready: it fronts the instances that became ready, so a worker
that failed is named in the report instead of being routed to. Like a server it is planned
(keep / restart / start: the argv, which holds the worker URLs, is in the config hash), started by
:func:`auto_infer.serve.procs.spawn` in its own process group with its own log and launch record,
and recorded in the registry as ``router`` (engine ``gateway``), so ``status``, ``logs``, ``stop``
and ``chat`` see it. Ready = ``/v1/models`` 200 and ``/readiness`` 200 with every fronted worker
healthy; then the smoke chat goes through it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.net import port_is_free
from auto_infer.core.progress import fmt_secs, say
from auto_infer.core.settings import Settings
from auto_infer.serve import gateway, launch, probe, procs, registry
from auto_infer.serve.engines.base import python_of
from auto_infer.serve.model import ROUTER_NAME, ModelConfig, Router
from auto_infer.serve.outcome import Verdict


@dataclass
class GatewayRun(Verdict):
    router: Router
    program: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path
    fronts: tuple[str, ...]
    workers: dict[str, str | None] = field(default_factory=dict)    # fronted and ready: name -> model id
    argv: list[str] = field(default_factory=list)
    config_hash: str = ""
    action: str = "start"
    why: str = ""
    pid: int | None = None
    spawned: float | None = None
    ready: probe.Readiness = field(default_factory=probe.Readiness)
    chat: probe.Chat | None = None

    @property
    def target(self) -> probe.Target:
        return probe.Target(ROUTER_NAME, probe.base_url(self.router.host, self.router.port), None, "gateway")

    @property
    def launch_record(self) -> Path:
        return self.log.with_suffix(".launch.json")



def log_path(settings: Settings, router: Router) -> Path:
    return router.log_file or settings.server_logs("sglang") / ROUTER_NAME / "gateway.log"


def prepare(settings: Settings, cfg: ModelConfig) -> GatewayRun | None:
    """Before any worker starts: the gateway's flags through its own parser, its ports free."""
    router = gateway.runs_here(cfg)
    if router is None:
        if gateway.active(cfg) is not None:
            say(f"  {ROUTER_NAME}: not started here: every instance it fronts is a worker rank on this host "
                "(it serves no HTTP; the leader's host runs the gateway)")
        return None
    python, env = python_of(settings, cfg.master), launch.base_env(settings)
    fronts, urls = gateway.front_urls(cfg)
    say(f"  {gateway.preflight(cfg, router, python, env, urls)}")
    for busy in port_refusals(settings, cfg, router):
        raise busy
    return GatewayRun(router, gateway.program(router, python), env, log_path(settings, router), cfg.path.parent,
                      fronts)


def port_refusals(settings: Settings, cfg: ModelConfig, router: Router) -> list[UserError]:
    """The gateway's ports something else listens on (its own running gateway's are not)."""
    rec = registry.read_or_empty(settings, ROUTER_NAME)
    ours = registry.is_running(rec)
    refusals = []
    for key in ("port", "prometheus_port"):
        port = getattr(router, key)
        if not (ours and getattr(rec, key) == port) and not port_is_free(router.host, port):
            refusals.append(UserError(f"the gateway's {key} {port} is already in use",
                                      where=f"{cfg.path}: [router] {key}",
                                      fix=f"stop what listens there (ss -ltnp 'sport = :{port}'), or choose "
                                          "another port"))
    return refusals


def describe(settings: Settings, cfg: ModelConfig) -> dict[str, Any] | None:
    """The dry run's view of the gateway serve would start here (None: none), its flags through
    its own parser where the environment has it; what this host lacks is listed, not raised."""
    router = gateway.runs_here(cfg)
    if router is None:
        return None
    python = python_of(settings, cfg.master)
    fronts, urls = gateway.front_urls(cfg)
    problems = [f"{busy.what} (serve would refuse: {busy.fix})" for busy in port_refusals(settings, cfg, router)]
    if gateway.lacks_python(router, python):
        problems.insert(0, f"no Python to run the gateway with: {python} (run `auto-infer install` first)")
    else:
        say(f"  {gateway.preflight(cfg, router, python, launch.base_env(settings), urls)}")
    return {"name": ROUTER_NAME, "argv": [*gateway.program(router, python), *gateway.flags(router, urls)],
            "url": probe.base_url(router.host, router.port), "prometheus_port": router.prometheus_port,
            "fronts": list(fronts), "log": str(log_path(settings, router)), "problems": problems}


def run(settings: Settings, gw: GatewayRun, ready: dict[str, str | None]) -> GatewayRun:
    """Start (or keep) the gateway in front of the ``ready`` workers (name -> model id), wait, chat."""
    gw.workers = {n: m for n, m in ready.items() if n in gw.fronts}
    if not gw.workers:
        gw.ready.reason = f"not started: none of the instances it fronts ({', '.join(gw.fronts)}) is ready"
        say(f"✗ {ROUTER_NAME}: {gw.ready.reason}")
        return gw
    urls = [_url(settings, n) for n in gw.workers]
    gw.argv = [*gw.program, *gateway.flags(gw.router, urls)]
    gw.config_hash = hashlib.sha256(json.dumps({"argv": gw.argv, "log": str(gw.log)}).encode()).hexdigest()[:16]
    handle = _plan_and_start(settings, gw)
    if handle is not None:
        _follow(settings, gw, handle)
    return gw


def _url(settings: Settings, name: str) -> str:
    rec = registry.read_or_empty(settings, name)
    return str(rec.base_url or "")


def _plan_and_start(settings: Settings, gw: GatewayRun) -> procs.Handle | None:
    rec = registry.read_or_empty(settings, ROUTER_NAME)
    if not registry.is_running(rec):
        gw.action, gw.why = "start", "not running"
    elif rec.config_hash != gw.config_hash:
        gw.action, gw.why = "restart", "its effective config (or the set of ready workers) changed"
    else:
        gw.action, gw.why = "keep", "running with the same config: left alone"
    say(f"  {ROUTER_NAME}: {gw.why} → {gw.action} (fronting {', '.join(gw.workers)})")
    if gw.action == "keep":
        gw.pid, gw.spawned = rec.pid, rec.spawned_at
        return procs.Handle(rec.pid or 0, rec.start_ticks)
    if gw.action == "restart":
        registry.stop(settings, rec)
    ours = launch.our_env(settings)
    handle, gw.ready.reason = procs.start_logged(
        gw.argv,
        shown=gw.argv[0],
        env=gw.env,
        log=gw.log,
        cwd=gw.cwd,
        secrets=[],
        launch_record=gw.launch_record,
        record={
            "name": ROUTER_NAME,
            "kind": "gateway",
            "argv": gw.argv,
            "cwd": str(gw.cwd),
            "env": {"set": ours, "inherited_names": sorted(set(gw.env) - set(ours))},
            "config_hash": gw.config_hash,
        },
        note=lambda **state: _record(settings, gw, **state),
    )
    if handle is not None:
        gw.pid, gw.spawned = handle.pid, time.time()
    return handle


def _record(settings: Settings, gw: GatewayRun, **state: Any) -> None:
    r = gw.router
    registry.write(
        settings,
        ROUTER_NAME,
        {
            "name": ROUTER_NAME,
            "kind": "gateway",
            "engine": "gateway",
            "host": r.host,
            "port": r.port,
            "prometheus_port": r.prometheus_port,
            "base_url": gw.target.base_url,
            "model": None,
            "chat_model": next(iter(gw.workers.values()), None),  # it lists "unknown"; chat names a worker's
            "gpus": "-",
            "fronts": list(gw.workers),
            "log": str(gw.log),
            "launch_record": str(gw.launch_record),
            "config_hash": gw.config_hash,
            "api_key_env": None,
            "smoke_prompt": r.smoke_prompt,
            "stop_grace": r.stop_grace,
            **state,
        },
    )


def _follow(settings: Settings, gw: GatewayRun, handle: procs.Handle) -> None:
    timeout = gw.router.ready_timeout
    t0 = time.monotonic()
    gw.ready = probe.wait_ready(gw.target, handle, gw.log, timeout)
    if gw.ready.ok:
        gw.ready = _all_workers(gw, handle, timeout - (time.monotonic() - t0))
    if not gw.ready.ok:
        how = procs.stop_group(handle.pid, handle.ticks, gw.router.stop_grace, handle.popen) \
            if handle.ended() is None else ""
        say(f"✗ {ROUTER_NAME}: {gw.ready.reason}" + (f"\n  ({how})" if how else ""))
        registry.update(settings, ROUTER_NAME, unless_state=("stopped",), state="failed",
                        reason=gw.ready.reason.splitlines()[0], exit_code=handle.returncode, stopped_how=how or None)
        return
    took = (
        f" in {fmt_secs(gw.ready.ready - gw.spawned)}" if gw.action != "keep" and gw.spawned and gw.ready.ready else ""
    )
    say(f"✓ {ROUTER_NAME} ready{took} at {gw.target.base_url}, routing to {len(gw.workers)} worker(s)")
    registry.update(settings, ROUTER_NAME, unless_state=("stopped",), state="ready", ready_at=gw.ready.ready)
    model = next(iter(gw.workers.values()), None) or gw.ready.model_id or ""
    gw.chat = probe.chat(gw.target, model, gw.router.smoke_prompt)
    mark = "✓" if gw.chat.ok else "✗"
    say(
        f"{mark} {ROUTER_NAME} chat: {gw.chat.reason}"
        + (f": {gw.chat.answer.strip()[:120]!r}" if gw.chat.answer else "")
    )


def _all_workers(gw: GatewayRun, handle: procs.Handle, timeout: float) -> probe.Readiness:
    """/readiness is 200 with one healthy worker; wait until every fronted one is registered and healthy."""
    import requests

    seen: Any = None
    deadline = time.monotonic() + max(timeout, 1.0)
    with probe.session() as http:
        while time.monotonic() < deadline and handle.ended() is None:
            try:
                seen = http.get(f"{gw.target.base_url}/readiness", timeout=5).json()
            except (requests.RequestException, ValueError) as exc:
                seen = str(exc)
            if isinstance(seen, dict) and int(seen.get("healthy_workers", 0)) >= len(gw.workers):
                gw.ready.ready = time.time()
                return gw.ready
            time.sleep(probe.INTERVAL)
    return probe.Readiness(reason=f"not every worker became healthy behind the gateway: /readiness says {seen}"
                                  + (f" (the gateway ended: {handle.ended()})" if handle.ended() else ""))


def data(gw: GatewayRun) -> dict[str, Any]:
    """The report's view of the gateway."""
    chat = gw.chat
    return {"name": ROUTER_NAME, "ok": gw.ok, "reason": gw.reason, "action": gw.action, "why": gw.why,
            "pid": gw.pid, "url": gw.target.base_url, "fronts": list(gw.workers), "argv": gw.argv,
            "log": str(gw.log), "launch_record": str(gw.launch_record), "config_hash": gw.config_hash,
            "policy": gw.router.policy, "ready": gw.ready.ready, "spawned": gw.spawned,
            "chat": None if chat is None else {"request": chat.request, "status": chat.status, "ok": chat.ok,
                                               "answer": chat.answer, "seconds": round(chat.seconds, 3),
                                               "response": chat.response}}
