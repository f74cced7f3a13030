"""The container boot hook: which steps run is decided by the plan's env-var gates."""

from __future__ import annotations

from typing import Any

from auto_infer.doitcfg import action
from auto_infer.settings import Settings
from auto_infer.tasks.common import settings
from auto_infer.ui import say


def boot_steps(s: Settings) -> list[str]:
    steps: list[str] = []
    if s.gates.get("warm"):
        steps.append("warm")
    if s.gates.get("install") or s.gates.get("serve"):
        steps += ["install", "check"]
    if s.gates.get("serve"):
        steps.append("serve")
    return steps


def _report(steps: list[str]) -> None:
    if not steps:
        say("boot: no gate set (AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT, AUTO_INFER_SGLANG_INSTALL_ON_BOOT, "
            "AUTO_INFER_SGLANG_ON_BOOT); nothing to do")
    else:
        say(f"boot: done: {' → '.join(steps)}")


def task_boot() -> dict[str, Any]:
    """Container boot hook: warm / install+check / serve, as the AUTO_INFER_SGLANG_*_ON_BOOT gates say."""
    steps = boot_steps(settings())
    return {"actions": [action(_report, steps)], "task_dep": steps, "uptodate": [False], "verbosity": 2}
