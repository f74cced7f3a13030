"""The container boot task: which steps run is decided by the plan's env-var gates.

doit runs a task's dependencies, but not in the order they are listed: once ``template`` is done,
``warm`` and ``install`` may start in either order, and ``serve`` may start before ``check``. Boot
needs a sequence (warm before install, the import check before serving), so each step it runs is a
sub-task ``boot:STEP``: the step's own task (same actions, same up-to-date checks), made to wait
for the step before it. The output and logging around it are the entry hook's
(templates/hooks/auto-infer-boot.sh).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from auto_infer.core.progress import say
from auto_infer.core.settings import Settings
from auto_infer.tasks import install
from auto_infer.tasks.wiring import action, settings, takes_run_lock

if TYPE_CHECKING:       # doit is imported when the graph is built, not for `--help`
    from doit.task import Task

GATES = ("AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT, AUTO_INFER_SGLANG_REHEARSE_ON_BOOT, "
         "AUTO_INFER_SGLANG_INSTALL_ON_BOOT, AUTO_INFER_SGLANG_ON_BOOT (or infer-dev's AUTO_INFER_VLLM_ON_BOOT, "
         "AUTO_INFER_LLAMA_CPP_ON_BOOT)")


def boot_steps(s: Settings) -> list[str]:
    steps: list[str] = []
    if s.gates.get("warm") or s.gates.get("rehearse"):
        steps.append("warm")
    if s.gates.get("rehearse"):         # the rehearsal proves what warm put into the cache
        steps.append("rehearse")
    if s.gates.get("install") or s.gates.get("serve"):
        steps += ["install", "check"]
    if s.gates.get("serve"):
        steps.append("serve")
    return steps


def _serve_task() -> dict[str, Any]:
    from auto_infer.tasks.serve import _serve
    return {"actions": [action(_serve, None)], "verbosity": 2}


STEP_TASKS: dict[str, Callable[[], dict[str, Any]]] = {
    "warm": install.task_warm,
    "rehearse": install.task_rehearse,
    "install": install.task_install,
    "check": install.task_check,
    "serve": _serve_task,
}


def _report(steps: list[str]) -> None:
    if not steps:
        say(f"boot: no gate set ({GATES}); nothing to do")
    else:
        say(f"boot: done: {' → '.join(steps)}")


def _step(step: str, before: str | None, steps: list[str]) -> Task:
    """``boot:STEP``: the step's task, after ``boot:BEFORE``; its deps on other steps point into the chain."""
    from doit.task import Task

    d = dict(STEP_TASKS[step]())
    d.pop("targets", None)            # the step's own task owns its files; doit allows one owner
    deps = [f"boot:{t}" if t in steps else t for t in d.pop("task_dep", [])]
    return Task(f"boot:{step}", task_dep=deps + ([f"boot:{before}"] if before else []), subtask_of="boot",
                doc=f"boot step: {step}", **d)


@takes_run_lock
def task_boot() -> Iterator[Task]:
    """Container boot hook: warm / install+check / serve, as the AUTO_INFER_SGLANG_*_ON_BOOT gates say."""
    from doit.task import Task

    steps = boot_steps(settings())
    yield Task("boot", [action(_report, steps)], task_dep=[f"boot:{steps[-1]}"] if steps else [],
               has_subtask=bool(steps), verbosity=2, doc=task_boot.__doc__)
    for i, step in enumerate(steps):
        yield _step(step, steps[i - 1] if i else None, steps)
