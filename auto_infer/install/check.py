"""The import check, run by the environment's own Python: versions, CUDA, cuDNN."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_json
from auto_infer.core.settings import Settings
from auto_infer.install.health import health_check

# Runs inside the environment; stdlib only. Prints one JSON object.
PROBE = r"""
import importlib, json, sys, platform
required = [m for m in sys.argv[1].split(",") if m]
out = {"python": platform.python_version(), "executable": sys.executable, "modules": {}, "missing": {}}
for name in dict.fromkeys(required + ["torch", "sglang", "sgl_kernel", "flashinfer"]):
    try:
        mod = importlib.import_module(name)
        out["modules"][name] = getattr(mod, "__version__", "unknown")
    except Exception as exc:
        if name in required:
            out["missing"][name] = f"{type(exc).__name__}: {exc}"[:300]
torch = sys.modules.get("torch")
if torch is not None:
    try:
        out["cuda_available"] = bool(torch.cuda.is_available())
        out["cuda_version"] = getattr(torch.version, "cuda", None)
        out["cudnn_version"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        out["gpu_count"] = torch.cuda.device_count() if out["cuda_available"] else 0
        out["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(out["gpu_count"])]
    except Exception as exc:
        out["cuda_error"] = str(exc)[:300]
print(json.dumps(out))
"""


DEFAULT = ("torch", "sglang")      # the plan's; the tasks pass the config's engine's (serve/config.check_modules)


def _modules_var(modules: tuple[str, ...]) -> str:
    return f"AUTO_INFER_CHECK_MODULES={','.join(modules) or 'none'}"


NO_PYTHON = ("the environment has no Python (a tools-only lock): imports, torch, CUDA and cuDNN cannot be "
             "checked; checked instead: every file of every locked conda package is in place")


def _without_python(settings: Settings, py: Path, modules: tuple[str, ...]) -> dict[str, Any]:
    """A conda-only environment without python: say what can and cannot be checked."""
    reason = health_check(settings)
    if reason is not None:
        raise UserError(f"the environment is not ready: {reason}", where=str(settings.env_prefix),
                        fix="run `auto-infer install` first")
    if modules:
        raise UserError(f"{_modules_var(modules)} asks for Python modules, "
                        f"but the environment has no Python ({py} does not exist): the lock installs none",
                        where="AUTO_INFER_CHECK_MODULES",
                        fix="set AUTO_INFER_CHECK_MODULES=none for a tools-only environment, or add python "
                            "to the template's pixi.toml and re-lock")
    data: dict[str, Any] = {"python": None, "modules": {}, "missing": {}, "note": NO_PYTHON,
                            "environment": str(settings.env_prefix), "required": [],
                            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(settings.check_path, data)
    return data


def run(settings: Settings, modules: tuple[str, ...] | None = None, timeout: float = 600) -> dict[str, Any]:
    """The import check; ``modules``: what is required (default: AUTO_INFER_CHECK_MODULES, else the plan's)."""
    if modules is None:
        modules = settings.check_modules if settings.check_modules is not None else DEFAULT
    py = settings.env_python
    if not py.exists():
        if not settings.env_prefix.is_dir():
            raise UserError(f"the environment is not installed: {settings.env_prefix}",
                            where=str(settings.env_prefix), fix="run `auto-infer install` first")
        return _without_python(settings, py, modules)
    env = settings.tool_env(online=False)
    try:
        proc = subprocess.run([str(py), "-c", PROBE, ",".join(modules)], capture_output=True,
                              text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"the import check did not finish within {timeout:.0f}s", where=str(py)) from None
    try:
        data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise UserError(f"the import check crashed (exit {proc.returncode}): {' | '.join(tail)}",
                        where=str(py)) from None
    data["environment"] = str(settings.env_prefix)
    data["required"] = list(modules)
    data["checked_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_json(settings.check_path, data)
    if data["missing"]:
        lines = "\n".join(f"    - {k}: {v}" for k, v in data["missing"].items())
        why = "" if settings.check_modules is not None else " (AUTO_INFER_CHECK_MODULES unset: the engine's default)"
        raise UserError(f"required modules do not import in {settings.env_prefix}{why}:\n{lines}",
                        where=_modules_var(modules),
                        fix="check the template's dependencies, or change AUTO_INFER_CHECK_MODULES")
    return data


def summary(data: dict[str, Any]) -> str:
    if data.get("python") is None and data.get("note"):
        return str(data["note"])
    mods = ", ".join(f"{k} {v}" for k, v in data.get("modules", {}).items())
    line = f"python {data.get('python')}; {mods or 'no modules'}"
    if "cuda_available" in data:
        line += (f"; torch.cuda.is_available()={data['cuda_available']}; CUDA {data.get('cuda_version')}; "
                 f"cuDNN {data.get('cudnn_version')}; {data.get('gpu_count', 0)} GPU(s)")
        if data.get("gpu_names"):
            line += ": " + ", ".join(f"{i}: {name}" for i, name in enumerate(data["gpu_names"]))
    return line
