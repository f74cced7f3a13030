"""How a task creator is wired to doit: the settings it reads, its command line, what it declares
(run lock, read-only), and the wrappers that carry its errors through doit to the one handler
(auto_infer.core.errors.handle)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from auto_infer.core import settings as _settings
from auto_infer.core.errors import Carried, UsageError, UserError
from auto_infer.core.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
RUN_LOCK = "run_lock"     # attribute of a task creator: its task changes state, so it takes the run lock
NO_DOIT_STATE = "no_doit_state"   # attribute of a task creator: doit keeps no record of its task


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Settings for task creators: loaded once per process from the env-var contract."""
    return _settings.load()


def doit_config() -> dict[str, Any]:
    """DOIT_CONFIG for the graph; a bad environment goes to the handler like any user error."""
    from auto_infer.tasks import doit_setup
    try:
        return doit_setup.config(settings())
    except UserError as exc:
        raise Carried(exc) from None


def takes_run_lock(creator: F) -> F:
    """Declare that a task changes the workspace: the CLI runs it under the run lock."""
    setattr(creator, RUN_LOCK, True)
    return creator


def no_doit_state(creator: F) -> F:
    """Declare that a task is never skipped and leaves no doit record (env, status, logs, stop, chat,
    k8s): the CLI keeps doit's state in memory for it, so on a bare host it writes no state. What the
    task itself writes (stop: the server records; chat: its evidence) is its own business."""
    setattr(creator, NO_DOIT_STATE, True)
    return creator


@dataclass(frozen=True)
class CommandLine:
    """What a task adds to its command line beyond its options (doit ``params``, parsed one way
    before anything runs): ``check`` judges the parsed values (raises UsageError); ``alone``: an
    option that, when set, runs ``run_alone(values)`` instead of the task and its dependencies
    (``serve --dry-run``); ``then``: options that add a task after this one (``warm --rehearse``)."""

    check: Callable[[dict[str, Any]], None] | None = None
    alone: str | None = None
    run_alone: Callable[[dict[str, Any]], int] | None = None
    then: dict[str, str] = field(default_factory=dict)

    def __call__(self, creator: F) -> F:
        creator.command_line = self  # type: ignore[attr-defined]
        return creator


def flag(name: str, help_text: str, short: str = "") -> dict[str, Any]:
    """A boolean option ``--name`` (value under ``name`` with dashes as underscores)."""
    return {"name": name.replace("-", "_"), "long": name, "type": bool, "default": False,
            "help": help_text, **({"short": short} if short else {})}


def named(values: dict[str, Any], key: str = "names") -> None:
    """Instance names given on the command line are not empty."""
    if any(not n.strip() for n in values.get(key) or []):
        raise UsageError("an empty instance name", where="the command line",
                         fix="name an instance that `auto-infer status` lists, or none for all of them")


# `install --verify` / `serve --verify`: hash every weight file against the cache manifest's sha256
VERIFY = [flag("verify", "check the sha256 of every model weight file too (default: sizes)")]


def action(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Wrap a doit-free function as a doit action: its errors travel to the one handler.

    ``functools.wraps`` exposes ``fn``'s signature, so doit passes task params (``--json``,
    positional args) whose names match ``fn``'s parameters."""
    @functools.wraps(fn)
    def run(**task_kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs, **task_kwargs)
        except Exception as exc:
            raise Carried(exc) from exc
        return result if isinstance(result, dict) else None
    return run


def uptodate(check: Callable[..., bool]) -> Callable[..., bool]:
    """Wrap an up-to-date check: a user error there means "run the task" (its action then says
    what is wrong, clearly); a bug goes to the one handler like any other."""
    @functools.wraps(check)         # keeps the signature: doit passes `task` to checks that take it
    def run(*args: Any, **kwargs: Any) -> bool:
        try:
            return bool(check(*args, **kwargs))
        except UserError:
            return False
        except Exception as exc:
            raise Carried(exc) from exc
    return run
