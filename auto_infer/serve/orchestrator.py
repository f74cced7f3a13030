"""serve, doit-free: config → launches → plan → start all at once → ready → chat → report.

Per instance the plan is one of: ``keep`` (running, same effective config, not known broken),
``restart`` (running, but its config changed or it stopped answering), ``start``. Every instance
to start is spawned before any is waited for; each is then followed in its own thread (ready,
then the smoke chat), so one slow or broken server never delays the report on the others.

A worker rank of a multi-node SGLang instance (``nnodes > 1``, ``node_rank > 0``) serves no HTTP:
it is started, recorded (as NAME@rankN), stopped and restarted as any server, but it is up when its
process still runs WORKER_SETTLE seconds after the start (at most its ready_timeout); no probe, no
chat, no port check, and the gateway does not front it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.net import port_is_free
from auto_infer.core.progress import fmt_secs, say
from auto_infer.core.settings import Settings
from auto_infer.serve import config, gateway_run, gpus, probe, procs, registry, report, validate, weightcheck
from auto_infer.serve.engines import known as engines
from auto_infer.serve.launch import Launch, build_launches
from auto_infer.serve.model import Instance, ModelConfig
from auto_infer.serve.outcome import Result

WORKER_SETTLE = 5.0       # seconds a worker rank must keep running to count as up (no HTTP to ask)


def select(cfg: ModelConfig, names: list[str] | None) -> tuple[Instance, ...]:
    if not names:
        return cfg.enabled()
    chosen = tuple(cfg.get(n) for n in names)
    off = [i.name for i in chosen if not i.control.enabled]
    if off:
        raise UserError(f"instance {off[0]} is disabled (control.enabled = false)", where=str(cfg.path),
                        fix=f"set enabled = true under [instance.{off[0]}.control]")
    return chosen


def ignored(settings: Settings, cfg: ModelConfig, chosen: tuple[Instance, ...]) -> list[str]:
    """infer-dev keys auto-infer accepts and does not follow, said by serve and by its dry run."""
    notes = []
    if cfg.master.project_dir:
        notes.append(f"master.project_dir ({cfg.master.project_dir}) is ignored: the environment installed by "
                     f"`install` is used ({settings.env_prefix})")
    notes += [f"{inst.name}: background = false (infer-dev's foreground mode) is ignored: auto-infer always runs "
              "servers detached; `auto-infer status`, `logs` and `stop` manage them"
              for inst in chosen if not inst.control.background]
    return notes


def serve(settings: Settings, names: list[str] | None = None, verify: bool = False, *,
          strict: bool = True, spawned: Callable[[], object] | None = None) -> list[Result]:
    """Validate everything (weights: sizes, sha256 too with ``verify``), then start what needs
    starting, wait, chat, and write the report. The gateway ([router]) comes last, in front of the
    ready workers, when every instance is served. ``strict``: a failed instance is a UserError
    (``supervise`` passes False and restarts it). ``spawned`` is called once every process is
    started, before any is waited for (``supervise`` lets go of the run lock there)."""
    cfg = config.load(settings)
    if not cfg.master.enable:
        say(f"master.enable = false in {cfg.path}: no server is launched")
        return []
    say(f"  engine: {engines.get(cfg.master.engine).TITLE} ({cfg.path})")
    chosen = select(cfg, names)
    for note in ignored(settings, cfg, chosen):
        say(f"  {note}")
    if not chosen:
        say(f"no enabled instance in {cfg.path}: nothing to launch")
        return []
    chosen = weightcheck.resolve(settings, cfg, chosen, verify)
    validate.check_paths(cfg, chosen)
    host_gpus = gpus.present()
    for inst in chosen:
        if (bad := gpus.refusal(cfg, inst, host_gpus)) is not None:
            raise bad
    plans = plan(settings, build_launches(settings, cfg, chosen))
    end_leftovers(settings, plans)
    check_ports(settings, cfg, plans)
    gw = gateway_run.prepare(settings, cfg) if names is None else None
    t0 = time.time()
    results = run(settings, plans, spawned)
    if gw is not None:
        gateway_run.run(settings, gw, {r.launch.inst.name: r.ready.model_id for r in results
                                       if r.ready.ok and r.launch.inst.worker is None})
    paths = report.write(settings, cfg, results, t0, gateway=gateway_run.data(gw) if gw else None)
    if strict:
        conclude(results, paths, gw)
    return results


def plan(settings: Settings, launches: list[Launch]) -> list[Result]:
    out = []
    for launch in launches:
        rec = registry.read_or_empty(settings, launch.key)
        if not registry.is_running(rec):
            action, why = "start", "not running"
        elif rec.config_hash != launch.config_hash:
            action, why = "restart", "its effective config changed"
        elif rec.state == "ready" and launch.inst.worker is None and not healthy(launch.target):
            action, why = "restart", "it no longer answers"
        else:
            action, why = "keep", "running with the same config: left alone"
        say(f"  {launch.key}: {why} → {action}")
        out.append(Result(launch, action, why, pid=rec.pid if action == "keep" else None,
                          spawned=rec.spawned_at if action == "keep" else None))
    return out


def healthy(target: probe.Target) -> bool:
    import requests

    try:
        with probe.session() as session:
            return probe.check_once(target, session)[0]
    except requests.RequestException:
        return False


def end_leftovers(settings: Settings, plans: list[Result]) -> None:
    """An instance to start whose last process ended (a crash, kill -9) while processes of its group
    live on (SGLang's scheduler and detokenizer, the server under the log filter): they still hold
    GPU memory and maybe the port, and nothing else would ever stop them. Stop them first."""
    for r in (r for r in plans if r.action == "start"):
        rec = registry.read_or_empty(settings, r.launch.key)
        if rec.pid and procs.group_is_ours(rec.pid, rec.start_ticks):
            left = procs.group_members(rec.pid)
            how = procs.stop_group(rec.pid, rec.start_ticks, rec.stop_grace)   # its state stays: no `stop`
            say(f"  {r.launch.key}: processes {left} of its last run (group {rec.pid}) were still running: {how}")


def check_ports(settings: Settings, cfg: ModelConfig, plans: list[Result]) -> None:
    """Ports of instances to start must be free (a restarted one's own old process frees it first)."""
    recs = registry.all_records(settings)
    for r in plans:
        refusal = port_refusal(cfg, r.launch.inst, recs)
        if refusal is not None:
            raise refusal


def port_refusal(cfg: ModelConfig, inst: Instance, recs: dict[str, registry.ServerRecord]) -> UserError | None:
    """serve's port rule (``serve --dry-run`` shows it too): the port is free, or this instance's own
    process, started earlier by auto-infer, holds it (kept, or restarted there); a worker rank has none."""
    if inst.worker is not None or port_is_free(inst.host, inst.port):
        return None
    own = recs.get(inst.key)
    if own is not None and own.port == inst.port and registry.is_running(own):
        return None
    holder = next((n for n, rec in recs.items() if rec.port == inst.port and registry.is_running(rec)), None)
    fix = (f"instance {holder}, started earlier by auto-infer, listens there: `auto-infer stop {holder}`"
           if holder else f"stop what listens there (ss -ltnp 'sport = :{inst.port}'), or choose another port")
    return UserError(f"instance {inst.name}: port {inst.port} is already in use",
                     where=f"{cfg.path}: [instance.{inst.name}.server] port", fix=fix)


def run(settings: Settings, plans: list[Result], spawned: Callable[[], object] | None = None) -> list[Result]:
    """Stop what is restarted, spawn every instance to start, then follow all of them at once."""
    for r in plans:
        if r.action == "restart":
            registry.stop(settings, registry.read_or_empty(settings, r.launch.key))
    handles = {r.launch.key: start(settings, r) for r in plans}
    if spawned is not None:
        spawned()
    threads = [threading.Thread(target=follow, args=(settings, r, handles[r.launch.key]), daemon=True)
               for r in plans]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():            # join in slices: Ctrl-C still reaches the main thread
            t.join(0.5)
    return plans


def start(settings: Settings, r: Result) -> procs.Handle | None:
    launch, name = r.launch, r.launch.key
    if r.action == "keep":
        rec = registry.read_or_empty(settings, name)
        return procs.Handle(rec.pid or 0, rec.start_ticks)
    handle, r.ready.reason = procs.start_logged(
        launch.argv, shown=launch.redacted_argv()[0], env=launch.env, log=launch.log, cwd=launch.cwd,
        secrets=launch.secrets, launch_record=launch.launch_record,
        record={"name": name, "argv": launch.redacted_argv(), "cwd": str(launch.cwd), "env": launch.env_record(),
                "config_hash": launch.config_hash},
        note=lambda **state: _record(settings, r, **state))
    if handle is not None:
        r.pid, r.spawned = handle.pid, time.time()
    return handle


def _record(settings: Settings, r: Result, **state: Any) -> None:
    inst, launch = r.launch.inst, r.launch
    worker = inst.worker          # serves no HTTP: no port, no URL (status and chat ask it nothing)
    registry.write(settings, launch.key, {
        "name": launch.key, "instance": inst.name, "engine": inst.engine, "host": inst.host,
        "port": None if worker else inst.port, "base_url": None if worker else launch.target.base_url,
        "model": launch.target.model,
        "worker": {"rank": worker.rank, "nnodes": worker.nnodes, "leader": worker.leader} if worker else None,
        "gpus": list(inst.control.gpu_ids) if inst.control.gpu_ids is not None else "all",
        "log": str(launch.log), "launch_record": str(launch.launch_record), "config_hash": launch.config_hash,
        "api_key_env": inst.control.api_key_env, "smoke_prompt": inst.control.smoke_prompt,
        "stop_grace": inst.control.stop_grace, "weights": dict(inst.weights) if inst.weights else None, **state})


def follow(settings: Settings, r: Result, handle: procs.Handle | None) -> None:
    """Wait until ready (or failed), then chat; keep the record current. Runs in a thread."""
    if handle is None:
        return
    name, launch, worker = r.launch.key, r.launch, r.launch.inst.worker
    timeout = launch.inst.control.ready_timeout
    if worker is not None:
        r.ready = probe.wait_alive(handle, launch.log, 0.0 if r.action == "keep" else min(WORKER_SETTLE, timeout))
    else:
        r.ready = probe.wait_ready(launch.target, handle, launch.log, timeout)
    if not r.ready.ok:
        how = ""
        if handle.ended() is None:       # timed out: a server that never got ready is not left behind
            how = procs.stop_group(handle.pid, handle.ticks, launch.inst.control.stop_grace, handle.popen)
        say(f"✗ {name}: {r.ready.reason}" + (f"\n  ({how})" if how else ""))
        registry.update(settings, name, unless_state=("stopped",), state="failed",
                        reason=r.ready.reason.splitlines()[0], exit_code=handle.returncode, stopped_how=how or None)
        return
    took = " (left running)" if r.action == "keep" else (
        f" in {fmt_secs(r.ready.ready - r.spawned)}" if r.spawned and r.ready.ready else "")
    if worker is not None:
        say(f"✓ {name} running{took}: {worker.describe()}")
        registry.update(settings, name, unless_state=("stopped",), state="running", ready_at=r.ready.ready)
        return
    say(f"✓ {name} ready{took} at {launch.target.base_url} (model {r.ready.model_id})")
    registry.update(settings, name, unless_state=("stopped",), state="ready", ready_at=r.ready.ready,
                    model=r.ready.model_id)
    r.chat = probe.chat(launch.target, r.ready.model_id or "", launch.inst.control.smoke_prompt)
    mark = "✓" if r.chat.ok else "✗"
    say(f"{mark} {name} chat: {r.chat.reason}" + (f": {r.chat.answer.strip()[:120]!r}" if r.chat.answer else ""))


def conclude(results: list[Result], paths: tuple[Path, Path], gw: gateway_run.GatewayRun | None = None) -> None:
    failed = [(r.launch.key, r.reason, r.launch.log) for r in results if not r.ok]
    if gw is not None and not gw.ok:
        failed.append(("router (the gateway)", gw.reason, gw.log))
    say(f"report: {paths[0]}")
    if failed:
        lines = "\n".join(f"    {name}: {why.splitlines()[0]} (log: {log})" for name, why, log in failed)
        what = f"{len(results)} instances" if gw is None else f"{len(results) + 1} processes (instances and gateway)"
        raise UserError(f"{len(failed)} of {what} did not pass ready + chat:\n{lines}", where=str(paths[0]),
                        fix="read the log of each (`auto-infer logs NAME`), fix, serve again")
    workers = sum(r.launch.inst.worker is not None for r in results)
    every = "the instance" if len(results) == 1 else f"all {len(results)} instances"
    what = f"{every} ready and answering" if not workers else (
        f"{every} up ({workers} worker rank(s) serving no HTTP, the rest ready and answering)")
    say(what + (", and the gateway in front" if gw else ""))
