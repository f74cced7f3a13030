"""Task creator for demo (placeholder)."""

from __future__ import annotations

from typing import Any

from auto_infer.doitcfg import action
from auto_infer.errors import UserError


def _todo() -> None:
    raise UserError("demo is not implemented yet")


def task_demo() -> dict[str, Any]:
    """Run the whole pipeline offline on an embedded demo (channel, lock, two demo servers)."""
    return {"actions": [action(_todo)], "uptodate": [False]}
