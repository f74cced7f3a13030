"""Any other OpenAI-compatible server: ``control.command`` is the argv, with ``{name}``,
``{api_key}`` and the ``server`` keys filled in. Ready: ``/v1/models`` lists the model, and
``/health`` answers 200 where it exists."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from auto_infer.serve.engines.base import Checked, Program, ReadyRules, key_of

if TYPE_CHECKING:
    from auto_infer.core.settings import Settings
    from auto_infer.serve.model import Instance, Master, Where

NAME = "command"
TITLE = "command"
DEFAULT_PORT = 30000
MODEL_KEY = ""
MEMORY_KEY = ""   # the share of each GPU it takes (checked when instances share GPUs)
NAME_KEYS: tuple[str, ...] = ("served_model_name",)
MASTER_KEYS: Mapping[str, Any] = {}
OVERRIDES_VAR = ""
CHECK_MODULES: tuple[str, ...] = ()   # whatever `command` runs: only report (or set the variable)
READY = ReadyRules(health=("/health",), health_first=False, health_optional=True)
ALIASES: Mapping[str, str] = {}


def check(ctx: Where, inst: Instance) -> None:
    """The placeholders are checked in validate (they need every server key)."""


def program(settings: Settings, master: Master, inst: Instance, multi: frozenset[str],
            api_key: str | None) -> Program:
    values = Placeholders({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in inst.server.items()})
    values.update(name=inst.name, api_key=api_key or "")
    argv = [token.format_map(values) for token in inst.control.command or ()]
    exe = argv[0] if argv else ""
    if os.path.sep in exe:              # a path: relative ones are judged where the server starts
        found = os.access(exe, os.X_OK) or not os.path.isabs(exe)
    else:
        path = os.pathsep.join([str(settings.env_bin), os.environ.get("PATH", "")])   # as launch gives it
        found = bool(exe) and shutil.which(exe, path=path) is not None
    if found:
        return Program(argv)
    return Program(argv, missing=f"the command's executable is not found or not executable: {exe or '(empty)'}",
                   fix=f"fix [instance.{inst.name}.control] command (its first word), or install it on this host")


class Placeholders(dict[str, Any]):
    """``{tp-size}`` and ``{tp_size}`` are one key (server keys are spelled with ``_``)."""

    def __missing__(self, key: str) -> Any:
        spelled = key_of(key)
        if spelled == key or spelled not in self:
            raise KeyError(key)
        return self[spelled]


def preflight(settings: Settings, master: Master, servers: Mapping[str, Mapping[str, Any]],
              env: Mapping[str, str]) -> Checked:
    return Checked("command", skipped="a command has no parser to ask")
