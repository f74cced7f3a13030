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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from auto_infer.core.fsutil import atomic_write_json, read_json
from auto_infer.core.settings import Settings
from auto_infer.serve import procs

Record = dict[str, Any]


def path(settings: Settings, name: str) -> Path:
    return settings.serve_state_dir / f"{name}.json"


def read(settings: Settings, name: str) -> Record | None:
    data = read_json(path(settings, name))
    return data if isinstance(data, dict) else None


@contextmanager
def _locked(settings: Settings, name: str) -> Iterator[None]:
    settings.serve_state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path(settings, name)) + ".lock"):
        yield


def write(settings: Settings, name: str, data: Record) -> None:
    with _locked(settings, name):
        atomic_write_json(path(settings, name), data)


def update(settings: Settings, name: str, *, unless_state: tuple[str, ...] = (), **changes: Any) -> Record:
    """Re-read the record, apply ``changes`` and write it, all under its lock. When the record's
    state is one of ``unless_state`` (e.g. "stopped": someone stopped it meanwhile), leave it."""
    with _locked(settings, name):
        data = read(settings, name) or {"name": name}
        if data.get("state") in unless_state:
            return data
        data = {**data, **changes}
        atomic_write_json(path(settings, name), data)
        return data


def all_records(settings: Settings) -> dict[str, Record]:
    folder = settings.serve_state_dir
    found = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = read_json(p)
        if isinstance(data, dict):
            found[p.stem] = data
    return found


def is_running(rec: Record) -> bool:
    """The process this record started is still ours and alive."""
    return bool(rec.get("pid")) and procs.is_ours(int(rec["pid"]), rec.get("start_ticks"))


def stop(settings: Settings, rec: Record) -> str:
    """Stop the record's process group (TERM, its grace, KILL) and record how; idempotent."""
    if not rec.get("pid"):
        return "not running"
    how = procs.stop_group(int(rec["pid"]), rec.get("start_ticks"), float(rec.get("stop_grace", 30)))
    if how != "not running":          # a failed one stays failed: status keeps saying why
        update(settings, rec["name"], state="stopped", stopped_at=time.time(), how=how)
    return how
