"""What runs now: status, logs, stop and chat, read from the records ``serve`` keeps.

They work from ``<state>/serve/NAME.json`` only, not from the model config, so an instance can
still be seen and stopped after its config changed, broke, or was removed. A worker rank of a
multi-node instance (record NAME@rankN) serves no HTTP: status calls it "running" while its process
runs and asks it nothing; chat leaves it out; a command naming NAME also takes this host's ranks of it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auto_infer.core import redact
from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_json
from auto_infer.core.progress import fmt_secs, say
from auto_infer.core.settings import Settings
from auto_infer.serve import procs, registry

if TYPE_CHECKING:
    from auto_infer.serve import probe

STATUS_TIMEOUT = 5.0


def _pick(settings: Settings, names: list[str] | None, exact: bool = False) -> dict[str, registry.ServerRecord]:
    """The named records (all when none is named); a name takes its instance's worker ranks too,
    unless ``exact``."""
    recs = registry.all_records(settings)
    if not names:
        return recs
    picked = {key: rec for key, rec in recs.items()
              if key in names or (not exact and rec.instance in names)}
    unknown = [n for n in names if n not in picked and not any(r.instance == n for r in picked.values())]
    if unknown:
        raise UserError(f"no instance named {unknown[0]!r} was ever started here",
                        where=str(settings.state_dir / "serve"),
                        fix=f"known instances: {', '.join(recs) or 'none (run `auto-infer serve`)'}")
    return picked


def _target(rec: registry.ServerRecord) -> probe.Target:
    from auto_infer.serve import probe  # the HTTP side loads only when there is a server to ask

    key_env = rec.api_key_env
    key = os.environ.get(key_env) if key_env else None
    return probe.Target(rec.name, rec.base_url or "", rec.model, rec.engine, key)


def _unset_key(rec: registry.ServerRecord) -> str | None:
    """The instance's api_key_env when this shell does not set it (the server then answers 401)."""
    name = rec.api_key_env
    return name if name and not os.environ.get(name) else None


def _row(rec: registry.ServerRecord) -> dict[str, Any]:
    import requests

    from auto_infer.serve import probe
    from auto_infer.serve.model import WorkerRank

    running = registry.is_running(rec)
    state, detail = rec.state, rec.reason or ""
    worker = rec.worker
    if running and worker:              # serves no HTTP: running is all there is to see
        state = "starting" if state == "starting" else "running"
        detail = WorkerRank(worker.rank, worker.nnodes, worker.leader).describe()
    elif running:
        try:
            with probe.session() as session:
                ok, seen, _ = probe.check_once(_target(rec), session, STATUS_TIMEOUT)
        except requests.RequestException:
            ok, seen = False, "not answering"
        state = "ready" if ok else ("starting" if state == "starting" else "unhealthy")
        detail = "" if ok else seen
        if not ok and rec.api_key_env and seen.endswith(("answers 401", "answers 403")):
            state = "running"               # it answers: only this shell's key is wrong
            detail = (f"{seen}: {rec.api_key_env} (its api_key_env) is not set here; export it to ask the server"
                      if _unset_key(rec) else f"{seen}: {rec.api_key_env} here is not the key it was started with")
    elif state == "restarting" and rec.restarter and procs.is_ours(*rec.restarter):
        pass                                # supervise starts it again after its backoff: its reason says when
    elif state in ("starting", "ready", "running", "restarting"):
        state, detail = "failed", "the process is gone (it ended without `auto-infer stop`" + (
            "; the supervise that was restarting it is gone too)" if state == "restarting" else ")")
    spawned = rec.spawned_at
    return {"name": rec.name, "state": state, "pid": rec.pid if running else None,
            "port": rec.port, "url": rec.base_url, "gpus": rec.gpus,
            "uptime_s": round(time.time() - spawned, 1) if running and spawned else None,
            "weights": rec.weights_label, "log": rec.log, "detail": detail}


def status_rows(settings: Settings) -> list[dict[str, Any]]:
    recs = list(registry.all_records(settings).values())
    if not recs:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(recs)))) as pool:
        return list(pool.map(_row, recs))


def status(settings: Settings, as_json: bool = False) -> None:
    rows = status_rows(settings)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no instances (run `auto-infer serve`)")
        return
    cols = ("name", "state", "pid", "port", "gpus", "uptime", "log")
    table = [[r["name"], r["state"], r["pid"] or "-", r["port"] or "-",
              ",".join(r["gpus"]) if isinstance(r["gpus"], list) else r["gpus"],
              fmt_secs(r["uptime_s"]) if r["uptime_s"] is not None else "-", r["log"]] for r in rows]
    widths = [max(len(str(x)) for x in [c.upper(), *(t[i] for t in table)]) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for t, r in zip(table, rows, strict=True):
        print("  ".join(str(x).ljust(w) for x, w in zip(t, widths, strict=True)).rstrip())
        if r["weights"]:
            print(f"    weights: {r['weights']}")
        if r["detail"]:
            print(f"    {r['detail']}")


def logs(settings: Settings, names: list[str] | None, lines: int = 50) -> None:
    picked = _pick(settings, names)
    if not picked:
        print("no instances (run `auto-infer serve`)")
    for name, rec in picked.items():
        path = rec.log
        print(f"==> {name}: {path} <==")
        print("\n".join(procs.tail(Path(path), lines)) or "(empty)")


def stop(settings: Settings, names: list[str] | None, exact: bool = False) -> None:
    """Stop the named instances (all when none is named), all at once: each drains in its own grace."""
    picked = _pick(settings, names, exact)
    if not picked:
        say("no instances to stop")
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(picked)) as pool:
        outcomes = dict(zip(picked, pool.map(lambda rec: registry.stop(settings, rec), picked.values()),
                            strict=True))
    for name, how in outcomes.items():
        rec = picked[name]
        if how.startswith("processes"):
            raise UserError(f"{name}: {how}", where=rec.log, fix="check `ps -o pid,pgid,stat,cmd -g PGID`")
        say(f"  {name}: {how}" + (f" (pid {rec.pid}, port {rec.port})" if how != "not running" else ""))


def chat(settings: Settings, names: list[str] | None = None) -> None:
    """A real chat with each running instance; the requests and responses go to reports/."""
    picked = {n: r for n, r in _pick(settings, names).items() if registry.is_running(r) and not r.worker}
    if not picked:
        raise UserError("no instance is running", where=str(settings.state_dir / "serve"),
                        fix="start them with `auto-infer serve`")
    from auto_infer.serve import probe

    results, failed = {}, []
    for name, rec in picked.items():
        target = _target(rec)
        c = probe.chat(target, rec.chat_model or rec.model or "", rec.smoke_prompt or "Say hello.")
        results[name] = {"url": target.base_url, "ok": c.ok, "reason": c.reason, "request": c.request,
                         "status": c.status, "seconds": round(c.seconds, 3), "response": c.response}
        print(f"{name}: {c.answer.strip() if c.ok else 'FAILED: ' + c.reason}")
        if not c.ok:
            failed.append(name)
    hidden = redact.secret_values(*(_target(r).api_key for r in picked.values()))
    path = settings.reports_dir / "chat" / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_json(path, json.loads(redact.scrub(json.dumps(results), hidden)))
    say(f"chat evidence: {path}")
    if failed:
        keys = sorted({k for n in failed if (k := _unset_key(picked[n]))})
        raise UserError(f"chat failed for {', '.join(failed)}", where=str(path),
                        fix=f"export {', '.join(keys)} (the api_key_env of the config: the servers want the key), "
                            "then chat again" if keys else "see `auto-infer logs NAME`")
