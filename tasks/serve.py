"""Task creators for serve / chat / status / logs / stop (placeholder until the serve work lands)."""

from __future__ import annotations

from typing import Any

from auto_infer.doitcfg import action
from auto_infer.errors import UserError


def _todo() -> None:
    raise UserError("serving is not implemented yet")


def task_serve() -> dict[str, Any]:
    """Start the model config's servers (serve:NAME each), wait until ready, chat, write a report."""
    return {"actions": [action(_todo)], "task_dep": ["install"], "uptodate": [False]}


def task_chat() -> dict[str, Any]:
    """Send a real chat completion to each running instance and keep request + response."""
    return {"actions": [action(_todo)], "uptodate": [False]}


def task_status() -> dict[str, Any]:
    """Show each instance: pid, port, GPUs, state, uptime, log (--json for JSON)."""
    return {"actions": [action(_todo)], "uptodate": [False]}


def task_logs() -> dict[str, Any]:
    """Print the tail of an instance's log: auto-infer logs NAME."""
    return {"actions": [action(_todo)], "uptodate": [False]}


def task_stop() -> dict[str, Any]:
    """Stop all instances, or the ones named: SIGTERM to the group, grace, SIGKILL."""
    return {"actions": [action(_todo)], "uptodate": [False]}
