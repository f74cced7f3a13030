"""The server records: one JSON file per instance, the only memory of what runs.

``Settings.serve_state_dir/NAME.json`` is written atomically and holds the pid (= process group),
the pid's kernel start time (a recycled pid is never mistaken for our server), the port, the
model, the log and the state (starting / ready / failed / stopped). status, logs, stop and chat
read these records, not the model config, so an instance can still be seen and stopped after its
config changed or was removed. Every change is a re-read + write under a per-record file lock, so a
``stop`` from another process is never overwritten by an older copy (a stopped server stays stopped).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer.core.fsutil import atomic_write_json, read_json
from auto_infer.core.settings import Settings
from auto_infer.serve import procs

Record = dict[str, Any]      # what a writer hands over (orchestrator, gateway_run, procs)


@dataclass(frozen=True)
class Worker:
    """A worker rank of a multi-node instance (serves no HTTP)."""
    rank: int
    nnodes: int
    leader: str


@dataclass(frozen=True)
class ServerRecord:
    """One server's record as read from disk: every field typed once, here (the edge)."""
    name: str
    state: str = "unknown"          # starting / ready / running (a worker rank) / restarting / failed / stopped
    instance: str | None = None     # the config's instance (a worker rank's key is NAME@rankN)
    kind: str = "server"            # or "gateway"
    engine: str = "sglang"
    host: str | None = None
    port: int | None = None
    prometheus_port: int | None = None
    base_url: str | None = None
    model: str | None = None
    chat_model: str | None = None
    worker: Worker | None = None
    gpus: list[str] | str | None = None
    log: str = ""
    config_hash: str | None = None
    api_key_env: str | None = None
    smoke_prompt: str | None = None
    stop_grace: float = 30.0
    weights_label: str | None = None
    reason: str | None = None
    pid: int | None = None
    start_ticks: int | None = None
    spawned_at: float | None = None
    restarter: tuple[int, int] | None = None     # state restarting: the supervise that will (pid, start ticks)

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> ServerRecord:
        """Known keys of their type; a key of another type (a hand-edited file) reads as absent."""
        kinds: dict[str, Any] = {
            "state": str,
            "instance": str,
            "kind": str,
            "engine": str,
            "host": str,
            "port": int,
            "prometheus_port": int,
            "base_url": str,
            "model": str,
            "chat_model": str,
            "log": str,
            "config_hash": str,
            "api_key_env": str,
            "smoke_prompt": str,
            "stop_grace": (int, float),
            "reason": str,
            "pid": int,
            "start_ticks": int,
            "spawned_at": (int, float),
            "gpus": (list, str),
        }
        fields = {k: data[k] for k, kind in kinds.items()
                  if isinstance(data.get(k), kind) and not isinstance(data.get(k), bool)}
        by = data.get("restarter")
        if isinstance(by, list) and len(by) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in by):
            fields["restarter"] = (by[0], by[1])
        worker, weights = data.get("worker"), data.get("weights")
        if isinstance(worker, dict) and {"rank", "nnodes", "leader"} <= set(worker):
            fields["worker"] = Worker(int(worker["rank"]), int(worker["nnodes"]), str(worker["leader"]))
        if isinstance(weights, dict) and isinstance(weights.get("label"), str):
            fields["weights_label"] = weights["label"]
        return cls(name=str(data.get("name") or name), **fields)


def path(settings: Settings, name: str) -> Path:
    return settings.serve_state_dir / f"{name}.json"


def _raw(settings: Settings, name: str) -> Record | None:
    data = read_json(path(settings, name))
    return data if isinstance(data, dict) else None


def read(settings: Settings, name: str) -> ServerRecord | None:
    data = _raw(settings, name)
    return None if data is None else ServerRecord.from_json(name, data)


def read_or_empty(settings: Settings, name: str) -> ServerRecord:
    """The record, or an empty one (state "unknown", no process) when there is none."""
    return read(settings, name) or ServerRecord(name=name)


@contextmanager
def _locked(settings: Settings, name: str) -> Iterator[None]:
    from filelock import FileLock  # writers only: `status` reads records and loads no lock library

    settings.serve_state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path(settings, name)) + ".lock"):
        yield


def write(settings: Settings, name: str, data: Record) -> None:
    with _locked(settings, name):
        atomic_write_json(path(settings, name), data)


def update(settings: Settings, name: str, *, unless_state: tuple[str, ...] = (), **changes: Any) -> None:
    """Re-read the record, apply ``changes`` and write it, all under its lock. When the record's
    state is one of ``unless_state`` (e.g. "stopped": someone stopped it meanwhile), leave it."""
    with _locked(settings, name):
        data = _raw(settings, name) or {"name": name}
        if data.get("state") in unless_state:
            return
        atomic_write_json(path(settings, name), {**data, **changes})


def all_records(settings: Settings) -> dict[str, ServerRecord]:
    folder = settings.serve_state_dir
    found = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = read_json(p)
        if isinstance(data, dict):
            found[p.stem] = ServerRecord.from_json(p.stem, data)
    return found


def is_running(rec: ServerRecord) -> bool:
    """The process this record started is still ours and alive."""
    return bool(rec.pid) and procs.is_ours(int(rec.pid or 0), rec.start_ticks)


def stop(settings: Settings, rec: ServerRecord) -> str:
    """Stop the record's process group (TERM, its grace, KILL) and record how; idempotent."""
    if not rec.pid:
        return "not running"
    if is_running(rec):               # said first: a supervise watching it must not restart it meanwhile
        update(settings, rec.name, state="stopped", stopped_at=time.time())
    how = procs.stop_group(rec.pid, rec.start_ticks, rec.stop_grace)
    if how != "not running":          # a failed one stays failed: status keeps saying why
        update(settings, rec.name, state="stopped", stopped_at=time.time(), how=how)
    return how
