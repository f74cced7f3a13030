"""llama-cpp-python's own OpenAI server (``python -m llama_cpp.server``, same flags) plus one route,
``GET /health`` → 200, added to the real app and nothing else changed.

Why: the gateway (sglang-router 0.3.2) registers a worker only after ``GET /health`` answers 200
(its connection-mode step asks /health whatever ``--health-check-endpoint`` says), and
llama-cpp-python's server has no /health route (SGLang, vLLM and llama.cpp's native llama-server
do). Run with the llama.cpp venv's Python: ``python tests/llamacpp_with_health.py --model ... --port ...``.
"""

import sys

import llama_cpp.server.__main__ as server_main
from llama_cpp.server.app import create_app


def create_app_with_health(*args, **kwargs):  # type: ignore[no-untyped-def]
    app = create_app(*args, **kwargs)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


server_main.create_app = create_app_with_health
sys.argv[0] = "llama_cpp.server"
server_main.main()
