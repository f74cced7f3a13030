"""vLLM: ``python -m vllm.entrypoints.openai.api_server <flags>``, as infer-dev's check-and-run-vllm.sh.

How it starts (decided): infer-dev's way, ``pixi run --manifest-path <pixi_project_dir> --environment
<pixi_environment> --frozen python -m <api_server_module> <flags>``, when ``pixi`` is on PATH and
``pixi_project_dir`` holds a pixi.toml and no ``master.python_path`` is given (the explicit choice
wins); otherwise the Python of ``master.python_path``, else of the environment `auto-infer install`
made, runs the module directly (no pixi needed at serve time, the same environment ``check``
verified). Ready: ``/health`` answers 200 (vLLM listens only once the
model is loaded), then ``/v1/models`` lists the served name (else the ``model`` value).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auto_infer.serve.engines import base
from auto_infer.serve.engines import preflight as parsers
from auto_infer.serve.engines.base import Checked, Program, ReadyRules

if TYPE_CHECKING:
    from auto_infer.core.settings import Settings
    from auto_infer.serve.model import Instance, Master, Where

NAME = "vllm"
TITLE = "vLLM"
DEFAULT_PORT = 8000
DEFAULT_MODULE = "vllm.entrypoints.openai.api_server"
MODEL_KEY = "model"
MEMORY_KEY = "gpu_memory_utilization"   # the share of each GPU it takes (checked when instances share GPUs)
NAME_KEYS: tuple[str, ...] = ("served_model_name", "model")
MASTER_KEYS: Mapping[str, Any] = {"pixi_project_dir": str, "pixi_environment": str, "api_server_module": str}
OVERRIDES_VAR = "AUTO_INFER_VLLM_OVERRIDES"
CHECK_MODULES: tuple[str, ...] = ("torch", "vllm")   # a vLLM template has no sglang
READY = ReadyRules(health=("/health",), health_first=True)
ALIASES: Mapping[str, str] = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size",
                              "dp": "data_parallel_size"}                # vLLM's short flags (-tp 2)

SCRIPT = parsers.script(
    imports="""
import vllm
from vllm.entrypoints.openai.cli_args import make_arg_parser
try:
    from vllm.utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils.argparse_utils import FlexibleArgumentParser""",
    build="""
class Parser(FlexibleArgumentParser):
    def error(self, message):
        raise Rejected(message)
return make_arg_parser(Parser(prog="vllm.entrypoints.openai.api_server", add_help=False))""",
    version='getattr(vllm, "__version__", "unknown")')


def check(ctx: Where, inst: Instance) -> None:
    if not isinstance(inst.server.get("model"), str):
        raise ctx.error(
            f"instance {inst.name} has no model",
            f"[instance.{inst.name}.server] model (instance {inst.name})",
            f'add model = "/path/to/model" under [instance.{inst.name}.server] (vLLM\'s --model)',
        )


def _pixi(master: Master) -> str | None:
    """pixi, when infer-dev's pixi project is here to run in (and no python_path says otherwise)."""
    project = master.pixi_project_dir
    if master.python_path:
        return None
    pixi = shutil.which("pixi")
    return pixi if pixi and project and (Path(project) / "pixi.toml").is_file() else None


def program(settings: Settings, master: Master, inst: Instance, multi: frozenset[str],
            api_key: str | None) -> Program:
    module = master.api_server_module or DEFAULT_MODULE
    flags = base.with_api_key(base.server_flags(inst.server, multi), inst.server, api_key)
    pixi = _pixi(master)
    if pixi:
        return Program([pixi, "run", "--manifest-path", str(master.pixi_project_dir), "--environment",
                        master.pixi_environment or "default", "--frozen", "python", "-m", module, *flags])
    python = base.python_of(settings, master)
    missing = None if python.exists() else f"no Python to run vLLM with: {python}"
    fix = "fix master.python_path" if master.python_path else "run `auto-infer install` first (a vLLM template)"
    note = ""
    if master.pixi_project_dir and master.python_path:
        note = f"master.python_path is set: vLLM runs with {python}, not through pixi ({master.pixi_project_dir})"
    elif master.pixi_project_dir:
        note = (f"master.pixi_project_dir ({master.pixi_project_dir}) is not a pixi project here, or pixi is not "
                f"on PATH: vLLM runs with {python}")
    return Program([str(python), "-m", module, *flags], missing=missing, fix=fix, note=note)


def preflight(settings: Settings, master: Master, servers: Mapping[str, Mapping[str, Any]],
              env: Mapping[str, str]) -> Checked:
    if (master.api_server_module or DEFAULT_MODULE) != DEFAULT_MODULE:
        return Checked("vLLM", skipped=f"api_server_module is {master.api_server_module}, not vLLM's")
    if _pixi(master):
        return Checked("vLLM", skipped="the server runs through pixi (its environment is pixi's)")
    return parsers.check("vLLM", SCRIPT, base.python_of(settings, master), env,
                           lambda m: {n: base.server_flags(s, m) for n, s in servers.items()})
