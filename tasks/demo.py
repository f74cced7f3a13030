"""Task creator for demo: the whole pipeline offline on an embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auto_infer.tasks.wiring import action


def _run(workspace: str, keep: bool, engine: str) -> None:
    from auto_infer.demo import driver

    driver.run(Path(workspace) if workspace else None, keep, engine)


def task_demo() -> dict[str, Any]:
    """Run the whole pipeline offline on an embedded demo (channel, lock, two demo servers)."""
    return {
        "actions": [action(_run)],
        "params": [
            {"name": "workspace", "long": "workspace", "default": "",
             "help": "workspace folder: new, empty or an earlier demo's (default: a new temp folder)"},
            {"name": "keep", "long": "keep", "type": bool, "default": False, "help": "leave the servers running"},
            {"name": "engine", "long": "engine", "default": "demo",
             "choices": [("demo", "built-in demo engine"), ("llama-cpp", "a real small model, if installed")],
             "help": "which engine serves the demo"},
        ],
        "verbosity": 2,
    }
