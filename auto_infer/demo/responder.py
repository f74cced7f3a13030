"""A test responder: a tiny OpenAI-compatible server that behaves like SGLang, vLLM or llama-server.

Stdlib only and self-contained, so the file can be copied into any Python environment (the demo
ships it inside a conda package). It answers ``/v1/models``, ``/health``, ``/health_generate``,
``/v1/chat/completions`` and ``/debug/env`` (its environment and argv, so tests can check what an
instance was given), and can misbehave on request::

    python -m auto_infer.demo.responder --host 127.0.0.1 --port 30000 --model demo \
        [--slow-start S] [--warmup S] [--crash-on-start] [--never-ready] [--empty-answer] \
        [--ignore-sigterm] [--die-after S] [--ready-file PATH] [--api-key KEY] [--spawn-child] \
        [--mode sglang|vllm|llama-server]

It also takes SGLang's, vLLM's and llama-server's spelling of the model (``--model-path``,
``--model``, ``--served-model-name``, ``--alias``) and ignores other flags, so it stands in for
``sglang.launch_server`` (``master.server_module``), vLLM's api_server (``master.api_server_module``)
or llama-server (``master.llama_cpp_path`` = a script that runs it with ``--mode llama-server``).

--mode M         whose readiness sequence to play (while --warmup lasts, then ready):
                 sglang: /v1/models answers at once, /health and /health_generate 503, then 200;
                 vllm: /health 503, /v1/models 503, then both 200 (no /health_generate);
                 llama-server: /health and /v1/models 503 {"error": {"code": 503, "message":
                 "Loading model", "type": "unavailable_error"}}, then /health 200 {"status": "ok"}

--slow-start S   sleep S seconds before listening (connections are refused meanwhile)
--warmup S       listen, answer /v1/models, but /health* answer 503 for S seconds (SGLang's warmup)
--crash-on-start print a traceback-like message and exit 3 before listening
--never-ready    listen, answer /v1/models, /health* answer 503 forever
--empty-answer   chat completions come back with empty content
--ignore-sigterm SIGTERM is ignored (only SIGKILL ends it), in the child too
--die-after S    exit 1 S seconds after becoming ready
--ready-file P   write the wall-clock time (time.time()) at which it became ready to P
--api-key KEY    require ``Authorization: Bearer KEY`` on /v1/* (not on /health*, as SGLang)
--spawn-child    start a child process in the same process group (like SGLang's scheduler)
--node-rank N    with --nnodes M > 1 and N > 0: a worker rank, as SGLang's: it never listens, it
                 says so and runs until a signal ends it (--dist-init-addr is only echoed)
--wait-ranks     with --nnodes M > 1, join the group as SGLang's ranks do: rank 0 listens on
                 --dist-init-addr's port and is not ready until the M-1 other ranks have connected;
                 a rank > 0 connects there (retrying) before it settles
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}


def log(message: str) -> None:
    print(f"[responder {time.strftime('%H:%M:%S')}] {message}", flush=True)


class State:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.ready = False
        self.requests = 0
        self.peers: list[socket.socket] = []


class Handler(BaseHTTPRequestHandler):
    server_version = "auto-infer-responder/1"
    state: State

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        print(f"[http] {self.address_string()} {format % args}", flush=True)

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        key = self.state.args.api_key
        if not key or self.path.startswith("/health"):
            return True
        if self.headers.get("Authorization", "") == f"Bearer {key}":
            return True
        self._send(401, {"error": "Unauthorized"})
        return False

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        args = self.state.args
        path = self.path.split("?", 1)[0]
        mode, ready = args.mode, self.state.ready
        if path == "/health_generate" and mode != "sglang":
            self._send(404, {"error": f"no route {path}"})
        elif mode != "sglang" and path in ("/health", "/v1/models") and not ready:
            self._send(503, LOADING if mode == "llama-server" else {"error": "starting"})
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": args.model, "object": "model", "created": int(time.time()), "owned_by": "responder"}]})
        elif path in ("/health", "/health_generate"):
            if ready:
                self._send(200, {"status": "ok"} if mode != "vllm" else {})
            else:
                self._send(503, {"status": "starting"})
        elif path == "/debug/env":
            self._send(200, {"env": dict(os.environ), "argv": sys.argv, "pid": os.getpid(),
                             "pgid": os.getpgid(0), "cwd": os.getcwd()})
        else:
            self._send(404, {"error": f"no route {path}"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        if self.path.split("?", 1)[0] != "/v1/chat/completions":
            self._send(404, {"error": f"no route {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, json.JSONDecodeError):
            self._send(400, {"error": "body is not JSON"})
            return
        if request.get("stream"):
            self._send(400, {"error": "streaming is not supported by the test responder"})
            return
        self._send(200, self.completion(request))

    def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        args = self.state.args
        self.state.requests += 1
        messages = request.get("messages") or [{}]
        last = str(messages[-1].get("content", ""))
        content = "" if args.empty_answer else f"Hello from {args.model}. You said: {last[:200]}"
        return {
            "id": f"chatcmpl-{os.getpid()}-{self.state.requests}", "object": "chat.completion",
            "created": int(time.time()), "model": request.get("model") or args.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(last.split()), "completion_tokens": len(content.split()),
                      "total_tokens": len(last.split()) + len(content.split())},
        }


def become_ready(state: State) -> None:
    args = state.args
    if args.warmup:
        log(f"warming up for {args.warmup}s (/v1/models answers, /health is 503)")
        time.sleep(args.warmup)
    if args.never_ready:
        log("never ready: /health stays 503")
        return
    if args.wait_ranks and args.nnodes > 1:
        state.peers = join_group(args)
    state.ready = True
    moment = time.time()
    if args.ready_file:
        tmp = f"{args.ready_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{moment:.6f}\n")
        os.replace(tmp, args.ready_file)
    log("The server is fired up and ready to roll!")
    if args.die_after is not None:
        time.sleep(args.die_after)
        log(f"dying on purpose after {args.die_after}s")
        os._exit(1)


def join_group(args: argparse.Namespace) -> list[socket.socket]:
    """--wait-ranks: rank 0 accepts the other ranks on dist_init_addr's port; a rank > 0 connects."""
    host, _, port = (args.dist_init_addr or "").rpartition(":")
    if args.node_rank == 0:
        server = socket.create_server(("0.0.0.0", int(port)), reuse_port=False)
        peers: list[socket.socket] = []
        log(f"waiting for {args.nnodes - 1} rank(s) to join on port {port} (not ready before)")
        while len(peers) < args.nnodes - 1:
            conn, addr = server.accept()
            peers.append(conn)
            log(f"a rank joined from {addr[0]} ({len(peers)} of {args.nnodes - 1})")
        return peers
    while True:
        try:
            conn = socket.create_connection((host, int(port)), timeout=5)
            log(f"joined the leader at {args.dist_init_addr}")
            return [conn]
        except OSError:
            time.sleep(0.5)


def spawn_child(ignore_sigterm: bool) -> subprocess.Popen[bytes]:
    code = ("import signal, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_sigterm else "")
            + "time.sleep(10**6)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)


def on_sigterm(signum: int, frame: Any) -> None:
    log("SIGTERM: shutting down")
    os._exit(0)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="responder", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--served-model-name", "--alias", dest="model", default=None)
    p.add_argument("--model", "--model-path", "-m", dest="weights", default=None,
                   help="as the engines: the model id when no name is given")
    p.add_argument("--mode", choices=("sglang", "vllm", "llama-server"), default="sglang")
    p.add_argument("--slow-start", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=0.0)
    p.add_argument("--crash-on-start", action="store_true")
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--empty-answer", action="store_true")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--die-after", type=float, default=None)
    p.add_argument("--ready-file", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("--spawn-child", action="store_true")
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--dist-init-addr", default=None)
    p.add_argument("--wait-ranks", action="store_true")
    args, ignored = p.parse_known_args(argv)   # other SGLang flags (--tp-size ...) are accepted
    args.model = args.model or args.weights or "responder"
    args.ignored = ignored
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    log(f"starting: model={args.model} port={args.port} pid={os.getpid()}"
        + (f" (ignoring {' '.join(args.ignored)})" if args.ignored else ""))
    log(f"server_args={vars(args)}")    # as SGLang does: secrets included, the launcher must mask them
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("ignoring SIGTERM")
    else:
        signal.signal(signal.SIGTERM, on_sigterm)
    if args.crash_on_start:
        print("Traceback (most recent call last):\n  File \"responder\", line 1, in <module>\n"
              "RuntimeError: crash on start, as asked (--crash-on-start)", file=sys.stderr, flush=True)
        return 3
    child = spawn_child(args.ignore_sigterm) if args.spawn_child else None
    if child is not None:
        log(f"child process {child.pid}")
    if args.nnodes > 1 and args.node_rank > 0:       # SGLang's ranks > 0 run the scheduler only
        log(f"worker rank {args.node_rank} of {args.nnodes}: no HTTP server (the leader at "
            f"{args.dist_init_addr} serves)")
        peers = join_group(args) if args.wait_ranks else []     # noqa: F841 - kept open while it runs
        while True:
            time.sleep(3600)
    if args.slow_start:
        log(f"loading the model for {args.slow_start}s")
        time.sleep(args.slow_start)
    state = State(args)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    log(f"Uvicorn running on http://{args.host}:{args.port}")
    threading.Thread(target=become_ready, args=(state,), daemon=True).start()
    server.serve_forever(poll_interval=0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
