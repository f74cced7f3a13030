"""What the air-gap proof looks at from outside the product: HTTP, nvidia-smi, the server's own log,
the status records, and a supervise it drives with signals. Checks are evidence.check records."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import evidence
import requests

from auto_infer.core.settings import load
from auto_infer.serve.actions import status_rows

LOG_LINE = re.compile(r"CUDA|offload|GPU|ggml_cuda|buffer size|Device \d|found \d+ \w+ devices", re.I)


def rows(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`status`'s rows (the product's own records), by instance name."""
    return {r["name"]: r for r in status_rows(load(env))}


def wait_for(what: str, test: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = test()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


def generate(url: str, model: str, tokens: int = 128) -> dict[str, Any]:
    """One chat completion of ``tokens`` tokens (ignore_eos: llama-server's own flag), timed here and
    by the server (its ``timings``)."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Count from one to ten."}],
            "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
    start = time.monotonic()
    r = requests.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    wall = time.monotonic() - start
    data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    text = ((data.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    timings = data.get("timings") or {}
    done = (data.get("usage") or {}).get("completion_tokens") or 0
    return {"status": r.status_code, "text": text[:200], "completion_tokens": done, "wall_s": round(wall, 3),
            "tokens_per_s_wall": round(done / wall, 1) if wall else None,
            "tokens_per_s_server": round(timings.get("predicted_per_second") or 0, 1),
            "prompt_per_s_server": round(timings.get("prompt_per_second") or 0, 1)}


def log_lines(log: Path, limit: int = 60) -> list[str]:
    if not log.is_file():
        return []
    return [ln for ln in log.read_text(errors="replace").splitlines() if LOG_LINE.search(ln)][:limit]


def layers_on_gpu(lines: list[str], device: str = "CUDA0") -> dict[str, Any]:
    """llama.cpp's own words: 'offloaded N/N layers to GPU' and a model buffer on ``device``."""
    offload = next((ln for ln in lines if "offloaded" in ln and "layers to GPU" in ln), "")
    m = re.search(r"offloaded (\d+)/(\d+) layers", offload)
    return {"all_offloaded": bool(m and m.group(1) == m.group(2) and int(m.group(1)) > 0), "offload": offload,
            "buffer": [ln for ln in lines if device in ln and "buffer" in ln][:4]}


def pids_on(pid: int | None, apps: list[dict[str, str]]) -> list[str]:
    return sorted({a["gpu_uuid"] for a in apps if a["pid"] == str(pid)})


def wait_apps_gone(gpu: bool, timeout: float = 30) -> list[dict[str, str]]:
    """Compute processes left (the driver frees a dead process's memory shortly after)."""
    apps = evidence.compute_apps()
    deadline = time.monotonic() + timeout
    while gpu and apps and time.monotonic() < deadline:
        time.sleep(1)
        apps = evidence.compute_apps()
    return apps


def metrics_count(url: str) -> float:
    """llama-server's /metrics (``metrics = true``): tokens it has generated so far."""
    r = requests.get(f"{url}/metrics", timeout=10)
    m = re.search(r"^llamacpp:tokens_predicted_total\s+(\S+)", r.text, re.M)
    return float(m.group(1)) if m else -1.0


class Supervisor:
    """``auto-infer supervise`` in the foreground, in its own process session, as PID 1 would run it."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            fh.write(b"\n# auto-infer supervise\n")
            self.proc = subprocess.Popen([sys.executable, "-m", "auto_infer", "supervise"], env=self.env,
                                         stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def ready(self, name: str, not_pid: int | None = None, timeout: float = 180) -> dict[str, Any]:
        def test() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"supervise ended with {self.proc.returncode}; see {self.log}")
            row = rows(self.env).get(name)
            ok = row and row["state"] == "ready" and row["pid"] and row["pid"] != not_pid
            return row if ok else None
        return dict(wait_for(f"{name} ready under supervise", test, timeout))

    def terminate(self, timeout: float = 90) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return -9


def supervise_round(env: dict[str, str], name: str, log: Path, gpu: bool, uuid0: str | None) -> dict[str, Any]:
    """supervise → ready → SIGKILL the server → back (new pid, on GPU 0) → SIGTERM → nothing left."""
    sup, seen = Supervisor(env, log), dict[str, Any]()
    sup.start()
    t0 = time.monotonic()
    try:
        first = sup.ready(name)
        seen["first"] = {"pid": first["pid"], "ready_s": round(time.monotonic() - t0, 2),
                         "gpus": pids_on(first["pid"], evidence.compute_apps())}
        os.kill(first["pid"], signal.SIGKILL)
        t1 = time.monotonic()
        again = sup.ready(name, not_pid=first["pid"])
        seen["restarted"] = {"pid": again["pid"], "back_s": round(time.monotonic() - t1, 2),
                             "gpus": pids_on(again["pid"], evidence.compute_apps())}
        seen["chat_after_restart"] = generate(f"http://127.0.0.1:{again['port']}", name, 16)
    finally:
        seen["supervise_exit"] = sup.terminate()
    seen["apps_after_sigterm"] = wait_apps_gone(gpu)
    seen["pass"] = {
        "restarted with a new pid": seen.get("restarted", {}).get("pid") not in (None, seen["first"]["pid"]),
        "answers after the restart": seen.get("chat_after_restart", {}).get("status") == 200,
        "SIGTERM: supervise exit 0": seen["supervise_exit"] == 0,
    }
    if gpu:
        seen["pass"]["first pid on GPU 0"] = seen["first"]["gpus"] == [uuid0]
        seen["pass"]["restarted pid on GPU 0"] = seen.get("restarted", {}).get("gpus") == [uuid0]
        seen["pass"]["SIGTERM: no compute process left"] = seen["apps_after_sigterm"] == []
    return seen


def smi_text() -> str:
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "(no nvidia-smi)"


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
