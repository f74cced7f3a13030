"""Task creators for serve / chat / status / logs / stop: a few lines each, the work in
auto_infer.serve.orchestrator (start, ready, chat, report) and auto_infer.serve.actions (what runs now).

``serve`` starts every enabled instance at once and follows them together; ``serve:NAME`` does the
same for one instance. The sub-tasks are doit sub-tasks (``auto-infer list --all`` shows them) but
not dependencies of ``serve``: running them one after the other would start the servers one after
the other, and the whole point is to start them together.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from doit.task import Task

from auto_infer.tasks.common import VERIFY, settings
from auto_infer.tasks.glue import action, read_only, takes_run_lock


def _instance_names() -> list[str]:
    """Enabled instances of the model config; none if it does not load (serve then says why)."""
    if not settings().config_path.is_file():      # every command builds the graph: skip the serve stack
        return []
    from auto_infer.serve import config

    try:
        return [i.name for i in config.load(settings()).enabled()]
    except Exception:   # noqa: BLE001 - any config problem: no sub-tasks; `serve` itself says why
        return []


# The logic modules are imported when a task runs, not when the graph is built: every command builds
# the whole graph, and `status` should not pay for the serve machinery.
def _serve(names: list[str] | None, verify: bool = False) -> Any:
    from auto_infer.serve import orchestrator
    return orchestrator.serve(settings(), names, verify)


def _actions() -> Any:
    from auto_infer.serve import actions
    return actions


@takes_run_lock
def task_serve() -> Iterator[Task]:
    """Start the model config's servers at once (serve:NAME: one), wait until ready, chat, report."""
    yield Task("serve", [action(_serve, None)], task_dep=["install"],
               has_subtask=True, verbosity=2, doc=task_serve.__doc__, params=VERIFY)
    for name in _instance_names():
        yield Task(f"serve:{name}", [action(_serve, [name])], task_dep=["install"],
                   subtask_of="serve", verbosity=2, doc=f"start instance {name}, wait until ready, chat, report",
                   params=VERIFY)


@takes_run_lock        # install + the first start under the lock; supervise releases it once its servers run
def task_supervise() -> dict[str, Any]:
    """Foreground mode for PID 1: install if needed, serve everything, restart what crashes, stop all on SIGTERM."""
    return {"actions": [action(_supervise)], "task_dep": ["install"], "verbosity": 2}


def _supervise() -> Any:
    from auto_infer.serve import supervise
    return supervise.supervise(settings())


def _chat(names: list[str]) -> Any:
    return action(_actions().chat, settings(), names or None)()


@read_only
def task_chat() -> dict[str, Any]:
    """Send a real chat completion to each running instance (or those named) and keep the evidence."""
    return {"actions": [_chat], "pos_arg": "names", "verbosity": 2}


def _status(as_json: bool) -> Any:
    return action(_actions().status, settings(), as_json)()


@read_only
def task_status() -> dict[str, Any]:
    """Show each instance: state, pid, port, GPUs, uptime, log (--json for JSON)."""
    return {"actions": [_status], "verbosity": 2,
            "params": [{"name": "as_json", "long": "json", "type": bool, "default": False,
                        "help": "print JSON instead of a table"}]}


def _logs(names: list[str], lines: int) -> Any:
    return action(_actions().logs, settings(), names or None, lines)()


@read_only
def task_logs() -> dict[str, Any]:
    """Print the tail of instance logs: auto-infer logs [-n LINES] [NAME ...] (all when none is named)."""
    return {"actions": [_logs], "pos_arg": "names", "verbosity": 2,
            "params": [{"name": "lines", "short": "n", "long": "lines", "type": int, "default": 50,
                        "help": "how many lines"}]}


def _stop(names: list[str]) -> Any:
    return action(_actions().stop, settings(), names or None)()


@read_only
def task_stop() -> dict[str, Any]:
    """Stop all instances, or those named: SIGTERM to the group, grace, SIGKILL."""
    return {"actions": [_stop], "pos_arg": "names", "verbosity": 2}
