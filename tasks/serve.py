"""Task creators for serve / chat / status / logs / stop: a few lines each, the work in
auto_infer.serve.orchestrator (start, ready, chat, report) and auto_infer.serve.actions (what runs now).

``serve`` starts every enabled instance at once and follows them together; ``serve:NAME`` does the
same for one instance. The sub-tasks are doit sub-tasks (``auto-infer list --all`` shows them) but
not dependencies of ``serve``: running them one after the other would start the servers one after
the other, and the whole point is to start them together.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from auto_infer.core.errors import UsageError, UserError
from auto_infer.tasks.wiring import (
    VERIFY,
    CommandLine,
    action,
    flag,
    named,
    no_doit_state,
    settings,
    takes_run_lock,
)

if TYPE_CHECKING:       # doit is imported when the graph is built, not for `--help`
    from doit.task import Task


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
def _serve(names: list[str] | None, verify: bool = False, dry_run: bool = False, as_json: bool = False,
           strict: bool = False) -> Any:
    if dry_run:                     # `doit serve --dry-run` in the repo (after install: doit's order)
        from auto_infer.serve import dryrun
        if dryrun.dry_run(settings(), names, as_json, strict):
            raise UserError("this host lacks what the dry run marked ⚠ (listed above)",
                            fix="see each ⚠ line; without --strict these are warnings")
        return None
    from auto_infer.serve import orchestrator
    return orchestrator.serve(settings(), names, verify)


def _actions() -> Any:
    from auto_infer.serve import actions
    return actions


def _dry_run(values: dict[str, Any]) -> int:
    """``serve[:NAME] --dry-run [--json] [--strict]``: shown without doit, so that nothing (not even the
    install that serve depends on) runs."""
    from auto_infer.serve import dryrun

    task = values.get("task", "serve")
    names = [task.split(":", 1)[1]] if ":" in task else None
    return dryrun.dry_run(settings(), names, values.get("as_json", False), values.get("strict", False))


def _serve_check(values: dict[str, Any]) -> None:
    if values.get("as_json") and not values.get("dry_run"):
        raise UsageError("serve --json prints a dry run's plan: it needs --dry-run",
                         fix="auto-infer serve --dry-run --json")
    if values.get("strict") and not values.get("dry_run"):
        raise UsageError("serve --strict judges a dry run: it needs --dry-run",
                         fix="auto-infer serve --dry-run --strict")


SERVE_PARAMS = [*VERIFY,
                flag("dry-run", "validate the config and print what would run; starts nothing, writes nothing"),
                {**flag("json", "with --dry-run: the plan as JSON"), "name": "as_json"},
                flag("strict", "with --dry-run: what this host lacks is an error (exit 1), not a warning")]


@CommandLine(check=_serve_check, alone="dry_run", run_alone=_dry_run)
@takes_run_lock
def task_serve() -> Iterator[Task]:
    """Start the model config's servers at once (serve:NAME: one), wait until ready, chat, report."""
    from doit.task import Task

    yield Task("serve", [action(_serve, None)], task_dep=["install"],
               has_subtask=True, verbosity=2, doc=task_serve.__doc__, params=SERVE_PARAMS)
    for name in _instance_names():
        yield Task(f"serve:{name}", [action(_serve, [name])], task_dep=["install"],
                   subtask_of="serve", verbosity=2, doc=f"start instance {name}, wait until ready, chat, report",
                   params=SERVE_PARAMS)


@takes_run_lock        # install + the first start under the lock; supervise releases it once its servers run
def task_supervise() -> dict[str, Any]:
    """Foreground mode for PID 1: install if needed, serve everything, restart what crashes, stop all on SIGTERM."""
    return {"actions": [action(_supervise)], "task_dep": ["install"], "verbosity": 2}


def _supervise() -> Any:
    from auto_infer.serve import supervise
    return supervise.supervise(settings())


def _chat(names: list[str]) -> Any:
    named({"names": names})
    return _actions().chat(settings(), names or None)


@CommandLine(check=named)
@no_doit_state
def task_chat() -> dict[str, Any]:
    """Send a real chat completion to each running instance (or those named) and keep the evidence."""
    return {"actions": [action(_chat)], "verbosity": 2, "pos_arg": "names"}


def _status(as_json: bool) -> Any:
    return _actions().status(settings(), as_json)


@no_doit_state
def task_status() -> dict[str, Any]:
    """Show each instance: state, pid, port, GPUs, uptime, log (--json for JSON)."""
    return {
        "actions": [action(_status)],
        "verbosity": 2,
        "params": [{**flag("json", "print JSON instead of a table"), "name": "as_json"}],
    }


def _logs(names: list[str], lines: int) -> Any:
    _logs_check({"names": names, "lines": lines})
    return _actions().logs(settings(), names or None, lines)


def _logs_check(values: dict[str, Any]) -> None:
    named(values)
    if values["lines"] < 0:
        raise UsageError(f"logs -n {values['lines']}: the number of lines cannot be negative",
                         where="-n/--lines", fix="give 0 or more, e.g. `auto-infer logs -n 100`")


@CommandLine(check=_logs_check)
@no_doit_state
def task_logs() -> dict[str, Any]:
    """Print the tail of instance logs: auto-infer logs [-n LINES] [NAME ...] (all when none is named)."""
    return {"actions": [action(_logs)], "verbosity": 2, "pos_arg": "names",
            "params": [{"name": "lines", "short": "n", "long": "lines", "type": int, "default": 50,
                        "help": "how many lines"}]}


def _stop(names: list[str]) -> Any:
    named({"names": names})
    return _actions().stop(settings(), names or None)


@CommandLine(check=named)
@no_doit_state
def task_stop() -> dict[str, Any]:
    """Stop all instances, or those named: SIGTERM to the group, grace, SIGKILL."""
    return {"actions": [action(_stop)], "verbosity": 2, "pos_arg": "names"}
