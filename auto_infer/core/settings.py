"""The env-var contract: every path auto-infer uses is derived here, and only here.

The names and defaults come from the infer-dev plan (docs/design.md has the table). Nothing
else in the code reads ``AUTO_INFER_*`` variables directly: it asks a :class:`Settings`.
"""

from __future__ import annotations

import os
import platform as _platform
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from auto_infer.core.envvalues import number, switch
from auto_infer.core.errors import UserError
from auto_infer.core.variables import CACHE_VARS, PROXY_VARS, VARIABLES, default  # noqa: F401 - re-exported


def current_platform() -> str:
    machine = _platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "aarch64",
            "ppc64le": "ppc64le"}.get(machine, machine)
    system = {"linux": "linux", "darwin": "osx"}.get(_platform.system().lower(), "linux")
    if system == "osx" and arch == "aarch64":
        arch = "arm64"
    return f"{system}-{arch}"


def _abs(value: str) -> Path:
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = Path.cwd() / path
    return Path(os.path.normpath(path))


@dataclass(frozen=True)
class Net:
    """How warm downloads: per-read timeout, total deadline, parallel connections, retries, mirrors."""
    timeout: float = 60.0
    deadline: float = 3600.0
    connections: int = 6
    retries: int = 3
    retry_delay: float = 2.0
    mirrors: Path | None = None
    progress_every: float = 10.0      # seconds between two plain progress lines (no terminal)


@dataclass(frozen=True)
class Restarts:
    """supervise's restart policy: the n-th crash of one server within ``window`` seconds ends it."""
    max_crashes: int = 5
    window: float = 600.0
    backoff: float = 2.0          # seconds before the first restart; doubled per crash in the window
    backoff_max: float = 60.0

    def delay(self, crashes: int) -> float:
        return float(min(self.backoff * 2 ** max(crashes - 1, 0), self.backoff_max))


class Derived:
    """A path below another of Settings' paths, e.g. ``Derived("cache_root", "pypi/wheels", doc)``."""

    def __init__(self, base: str, rel: str, doc: str):
        self.base, self.rel, self.__doc__ = base, rel, doc

    def __get__(self, obj: object, owner: type | None = None) -> Path:
        if obj is None:
            raise AttributeError("a derived path of a Settings object")
        return Path(getattr(obj, self.base)) / self.rel


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
    check_modules: tuple[str, ...] | None    # None: AUTO_INFER_CHECK_MODULES unset, follow the engine (check.py)
    config_path: Path
    overrides: str
    runlock_timeout: float
    gates: Mapping[str, bool] = field(default_factory=dict)
    net: Net = field(default_factory=Net)
    restarts: Restarts = field(default_factory=Restarts)
    hf_home: Path | None = None                     # the user's HF_HOME, if set: weights go there instead
    llamacpp_venv: Path = Path("/opt/auto-infer-ci/llamacpp-venv")   # demo --engine llama-cpp: the engine's venv
    engine_overrides: Mapping[str, str] = field(default_factory=dict)   # AUTO_INFER_{VLLM,LLAMA_CPP}_OVERRIDES
    config_var: str = ""        # the variable that named config_path; empty: the default path

    # ---- derived paths: the only place they are spelled -------------------------------
    rattler_cache_dir = Derived("cache_root", "conda/rattler", "RATTLER_CACHE_DIR (the plan's contract)")
    uv_cache_dir = Derived("cache_root", "pypi/uv", "UV_CACHE_DIR")
    pixi_cache_dir = Derived("cache_root", "pixi", "PIXI_CACHE_DIR: pixi's cache root")
    xdg_cache_home = Derived("cache_root", "xdg", "XDG_CACHE_HOME")
    conda_pkgs_dir = Derived("pixi_cache_dir", "pkgs", "the package cache pixi uses; the rattler backend shares it")
    conda_archive_dir = Derived("cache_root", "conda/archives", "conda archives warm downloads, at <subdir>/<file>")
    wheel_dir = Derived("cache_root", "pypi/wheels", "the lock's wheels the pixi-free backend installs")
    manifest_path = Derived("cache_root", "cache-manifest.json", "what warm put into the cache")
    manifests_dir = Derived("cache_root", "manifests", "one manifest per lock: several locks share one cache")
    bundles_dir = Derived("cache_root", "bundles", "records of imported bundles: a second import is a no-op")
    bundle_staging_dir = Derived("cache_root", ".bundle-staging", "an import verifies members here first")
    state_dir = Derived("workspace", ".auto-infer", "the tool's own state")
    check_path = Derived("state_dir", "check.json", "what the last `check` found; the serve report quotes it")
    runlock_path = Derived("state_dir", "run.lock", "one workspace-changing auto-infer run at a time")
    doit_db = Derived("state_dir", "doit.sqlite", "doit's state")
    serve_state_dir = Derived("state_dir", "serve", "one record per server instance (serve/registry.py)")
    install_runlock_path = Derived("state_dir", "install.lock", "warm and install hold it, also under plain `doit`")
    install_log = Derived("state_dir", "install.log", "the installers' output")
    pixi_lock_log = Derived("state_dir", "lock.log", "`pixi lock`'s output")
    pypi_requirements = Derived("state_dir", "pypi-requirements.txt", "the wheel list handed to uv")
    logs_root = Derived("workspace", "logs", "logs/<engine>/<instance>/server.log, logs/boot.log")
    reports_dir = Derived("workspace", "reports", "evidence of each serve run")
    boot_log = Derived("workspace", "logs/boot.log", "written by the boot hook")
    lock_file = Derived("project_dir", "pixi.lock", "the project's lock, copied from the template")
    pixi_toml = Derived("project_dir", "pixi.toml", "the project's manifest, copied from the template")
    pixi_config = Derived("project_dir", ".pixi/config.toml", "the project config pixi reads (mirrors, connections)")
    project_state_dir = Derived("project_dir", ".pixi/auto-infer", "our records about the project copy")
    template_record = Derived("project_state_dir", "template.json", "what the project copy was copied from")
    conda_meta = Derived("env_prefix", "conda-meta", "the environment's package records")
    env_bin = Derived("env_prefix", "bin", "the environment's programs")
    env_python = Derived("env_bin", "python", "the environment's interpreter")
    install_record = Derived("conda_meta", "auto-infer-install", "written only after a complete install")

    @property
    def hub_cache(self) -> Path:
        """Hugging Face Hub snapshots warm fetches (models--org--name/snapshots/<commit>/)."""
        return (self.hf_home or self.cache_root / "huggingface") / "hub"

    def server_logs(self, engine: str) -> Path:
        """Where an engine's servers log: logs/sglang, logs/vllm, logs/llamacpp, logs/command."""
        return self.logs_root / engine

    @property
    def env_prefix(self) -> Path:
        return self.project_dir / ".pixi" / "envs" / self.pixi_env

    @property
    def installing_marker(self) -> Path:
        """Present from the start of an install; says at the end whether it failed or was interrupted."""
        return self.project_state_dir / f"installing-{self.pixi_env}.json"

    def template_backup(self, stamp: str) -> Path:
        """Where a copy of the template keeps the user's edited files it replaced."""
        return self.project_state_dir / f"backup-{stamp}"

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
        for name in PROXY_VARS:
            if not online or not env.get(name):     # an empty one (compose passes "" when unset) is none
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
    """Read the contract from the environment, apply the table's defaults (core/variables.py), validate."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(name, "").strip()

    workspace = _abs(get("AUTO_INFER_WORKSPACE_DIR") or default("AUTO_INFER_WORKSPACE_DIR"))

    def value(name: str) -> str:
        return get(name) or default(name, workspace)

    installer = value("AUTO_INFER_INSTALLER")
    if installer not in ("auto", "pixi", "rattler"):
        raise UserError(f"AUTO_INFER_INSTALLER={installer!r} is not a known installer", where="AUTO_INFER_INSTALLER",
                        fix="use one of: auto, pixi, rattler")
    pixi_env = value("AUTO_INFER_SGLANG_PIXI_ENV")
    if "/" in pixi_env or pixi_env.startswith("."):
        raise UserError(f"AUTO_INFER_SGLANG_PIXI_ENV={pixi_env!r} is not an environment name",
                        where="AUTO_INFER_SGLANG_PIXI_ENV",
                        fix="use the name of an environment in pixi.toml, e.g. default")
    raw_modules = get("AUTO_INFER_CHECK_MODULES")
    modules = (None if not raw_modules else () if raw_modules.lower() == "none"
               else tuple(m.strip() for m in raw_modules.split(",") if m.strip()))
    config_var, config_path = _config(get, value)
    optional = {name: _abs(get(name)) if get(name) else None
                for name in ("AUTO_INFER_SGLANG_TEMPLATE_DIR", "HF_HOME")}
    return Settings(
        workspace=workspace,
        template_dir=optional["AUTO_INFER_SGLANG_TEMPLATE_DIR"],
        project_dir=_abs(value("AUTO_INFER_SGLANG_PROJECT_DIR")),
        cache_root=_abs(value("AUTO_INFER_SGLANG_CACHE_ROOT")),
        pixi_env=pixi_env,
        force_recopy=switch("AUTO_INFER_SGLANG_FORCE_RECOPY", value("AUTO_INFER_SGLANG_FORCE_RECOPY")),
        installer=resolve_installer(installer),
        platform=value("AUTO_INFER_PLATFORM") or current_platform(),
        check_modules=modules,
        config_path=config_path,
        overrides=get("AUTO_INFER_SGLANG_OVERRIDES"),
        runlock_timeout=number(get, "AUTO_INFER_LOCK_TIMEOUT", float),
        net=_net(get),
        restarts=_restarts(get),
        gates={gate: any([switch(name, value(name)) for name in names]) for gate, names in GATES.items()},
        hf_home=optional["HF_HOME"],
        llamacpp_venv=_abs(value("AUTO_INFER_LLAMACPP_VENV")),
        engine_overrides={k: get(k) for k in ("AUTO_INFER_VLLM_OVERRIDES", "AUTO_INFER_LLAMA_CPP_OVERRIDES")
                          if get(k)},
        config_var=config_var,
    )


# boot's gates; serving also answers to infer-dev's own engine spellings (its vLLM and llama.cpp images)
GATES = {"warm": ("AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT",), "rehearse": ("AUTO_INFER_SGLANG_REHEARSE_ON_BOOT",),
         "install": ("AUTO_INFER_SGLANG_INSTALL_ON_BOOT",),
         "serve": ("AUTO_INFER_SGLANG_ON_BOOT", "AUTO_INFER_VLLM_ON_BOOT", "AUTO_INFER_LLAMA_CPP_ON_BOOT")}
# the model config: ours, then infer-dev's spellings for its vLLM and llama.cpp configs
CONFIG_VARS = ("AUTO_INFER_SGLANG_CONFIG", "AUTO_INFER_VLLM_CONFIG", "AUTO_INFER_LLAMA_CPP_CONFIG")


def _config(get: Callable[[str], str], value: Callable[[str], str]) -> tuple[str, Path]:
    """(the variable that names the model config, its path). One config per workspace: two of the
    variables naming two different files is refused rather than one of them silently ignored."""
    named = {name: _abs(get(name)) for name in CONFIG_VARS if get(name)}
    if len(set(named.values())) > 1:
        both = ", ".join(f"{name}={path}" for name, path in named.items())
        raise UserError(f"two model configs are named: {both}", where=", ".join(named),
                        fix="auto-infer serves one model config per workspace: unset all but one of these, "
                            "or give each config its own AUTO_INFER_WORKSPACE_DIR")
    if named:
        return next(iter(named.items()))
    return "", _abs(value(CONFIG_VARS[0]))


def _restarts(get: Callable[[str], str]) -> Restarts:
    return Restarts(max_crashes=number(get, "AUTO_INFER_SUPERVISE_MAX_CRASHES", int, None, 1000),
                    window=number(get, "AUTO_INFER_SUPERVISE_WINDOW", float, None),
                    backoff=number(get, "AUTO_INFER_SUPERVISE_BACKOFF", float))


def _net(get: Callable[[str], str]) -> Net:
    mirrors = get("AUTO_INFER_MIRRORS")
    return Net(timeout=max(number(get, "AUTO_INFER_NET_TIMEOUT", float, None), 0.1),
               deadline=max(number(get, "AUTO_INFER_NET_DEADLINE", float, None), 0.1),
               connections=number(get, "AUTO_INFER_NET_CONNECTIONS", int, None, 256),
               retries=number(get, "AUTO_INFER_NET_RETRIES", int, 0, 100),
               retry_delay=number(get, "AUTO_INFER_NET_RETRY_DELAY", float),
               mirrors=_abs(mirrors) if mirrors else None,
               progress_every=max(number(get, "AUTO_INFER_PROGRESS_INTERVAL", float, None), 0.1))
