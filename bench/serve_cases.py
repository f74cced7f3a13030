"""Cases 4 and 5 through the real `auto-infer serve` (probe.wait_ready, orchestrator.run, procs.spawn).

The servers are the test responder (auto_infer/demo/responder.py) on free ports, run by the model
config's ``command`` key. It writes the wall-clock moment it became ready (--ready-file); a crash
is the responder's --crash-on-start run by bench/crasher.py, which writes the moment it died.
"Reported" is the moment the `auto-infer serve` line about it reaches us on its stderr.
The baseline is a plain loop that checks every second (GET /health, and whether the process is
still alive), the way shell scripts and llama-swap's health check do.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from auto_infer.core.net import free_port
from bench.timing import Failed, Series, interleave, run

PY = sys.executable
CRASHER = str(Path(__file__).with_name("crasher.py"))
RESPONDER = [PY, "-m", "auto_infer.demo.responder", "--host", "127.0.0.1", "--port", "{port}",
             "--model", "{served_model_name}"]


def available() -> str | None:
    """None when the serving code is there; otherwise why not."""
    try:
        from auto_infer.serve import orchestrator  # noqa: F401
    except Exception as exc:  # absent, or half-written by its author right now
        return f"the serving code does not import in this build ({type(exc).__name__}: {exc})"
    return None


def config(instances: dict[str, tuple[int, list[str]]], ready_timeout: float = 120) -> str:
    """A model config: one `command` instance per name -> (port, argv)."""
    out = [f"[master]\nenable = true\n\n[instance.control]\nready_timeout = {ready_timeout}\nstop_grace = 5\n",
           '[instance.server]\nhost = "127.0.0.1"\n']
    for name, (port, argv) in instances.items():
        out.append(f"[instance.{name}.control]\ncommand = {json.dumps(argv)}\n\n"
                   f"[instance.{name}.server]\nport = {port}\nserved_model_name = \"{name}\"\n")
    return "\n".join(out)


class Serving:
    """One installed workspace, a model config file, and the real CLI."""

    def __init__(self, env: dict[str, str], cli: list[str], work: Path):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.config = work / "models.toml"
        self.env = {**env, "AUTO_INFER_SGLANG_CONFIG": str(self.config)}
        self.cli = cli
        self.reports = Path(env["AUTO_INFER_WORKSPACE_DIR"]) / "reports"
        self.n = 0

    def path(self, stem: str) -> str:
        self.n += 1
        return str(self.work / f"{stem}-{self.n}")

    def serve(self, name: str = "", ok: tuple[int, ...] = (0,)) -> tuple[float, list[tuple[float, str]], dict]:
        """Run `auto-infer serve[:NAME]`; (spawn moment, stderr lines with arrival moments, report)."""
        task = f"serve:{name}" if name else "serve"
        t0 = time.time()
        proc = subprocess.Popen([*self.cli, task], env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
        lines: list[tuple[float, str]] = []
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.time(), line.rstrip()))
        code = proc.wait()
        if code not in ok:
            raise Failed(f"auto-infer {task} exited {code}:\n" + "\n".join(x for _, x in lines[-20:]))
        report = json.loads((self.reports / "serve-latest.json").read_text())
        return t0, lines, report

    def stop(self) -> None:
        run([*self.cli, "stop"], self.env, ok=(0, 1))


def line_at(lines: list[tuple[float, str]], needle: str) -> float:
    hit = next((t for t, line in lines if needle in line), None)
    if hit is None:
        raise Failed(f"no line with {needle!r} in:\n" + "\n".join(x for _, x in lines[-20:]))
    return hit


def read_moment(path: str) -> float:
    return float(Path(path).read_text())


def poll_every_second(argv: list[str], port: int, log: str, timeout: float = 120) -> tuple[str, float]:
    """The baseline: spawn, then once a second: has it died? does /health answer 200?"""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return "died", time.time()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        return "ready", time.time()
            except OSError:
                pass
            time.sleep(1.0)
        raise Failed(f"baseline: {argv[:4]} neither ready nor dead after {timeout}s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---- case 4 ---------------------------------------------------------------------------------

def readiness(s: Serving, slow: tuple[float, float], warmup: int, repeats: int,
              progress: Callable[[str], None]) -> dict[str, Series]:
    def responder(port: int, ready_file: str) -> list[str]:
        delay = f"{random.uniform(*slow):.3f}"
        return [a.format(port=port, served_model_name="r") for a in RESPONDER] + [
            "--slow-start", delay, "--ready-file", ready_file]

    def crasher(port: int, dead_file: str) -> list[str]:
        return [PY, CRASHER, "--after", f"{random.uniform(*slow):.3f}", "--dead-file", dead_file, "--",
                *(a.format(port=port, served_model_name="c") for a in RESPONDER), "--crash-on-start"]

    def ours_ready() -> float:
        port, f = free_port(), s.path("ready")
        s.config.write_text(config({"r": (port, responder(port, f))}))
        _, lines, _ = s.serve()
        s.stop()
        return line_at(lines, "✓ r ready") - read_moment(f)

    def ours_crash() -> float:
        port, f = free_port(), s.path("dead")
        s.config.write_text(config({"c": (port, crasher(port, f))}))
        _, lines, _ = s.serve(ok=(1,))
        s.stop()
        return line_at(lines, "✗ c:") - read_moment(f)

    def loop_ready() -> float:
        port, f = free_port(), s.path("ready")
        what, at = poll_every_second(responder(port, f), port, s.path("loop.log"))
        if what != "ready":
            raise Failed(f"the responder died instead of becoming ready (log {s.work})")
        return at - read_moment(f)

    def loop_crash() -> float:
        port, f = free_port(), s.path("dead")
        what, at = poll_every_second(crasher(port, f), port, s.path("loop.log"))
        if what != "died":
            raise Failed("the crasher became ready instead of dying")
        return at - read_moment(f)

    return interleave({"ready: auto-infer serve": ours_ready, "ready: 1-s poll loop": loop_ready,
                       "crash: auto-infer serve": ours_crash, "crash: 1-s poll loop": loop_crash},
                      warmup=warmup, repeats=repeats, progress=progress)


# ---- case 5 ---------------------------------------------------------------------------------

def parallel(s: Serving, slows: tuple[float, ...], warmup: int, repeats: int,
             progress: Callable[[str], None]) -> tuple[dict[str, Series], list[str]]:
    names = [f"s{i + 1}" for i in range(len(slows))]
    overlap: list[str] = []

    def write() -> None:
        servers = {}
        for name, delay in zip(names, slows, strict=True):
            port = free_port()
            servers[name] = (port, [a.format(port=port, served_model_name=name) for a in RESPONDER]
                             + ["--slow-start", f"{delay}"])
        s.config.write_text(config(servers))

    def at_once() -> float:
        write()
        t0, _, report = s.serve()
        s.stop()
        times = [i["times"] for i in report["instances"]]
        if max(t["spawned"] for t in times) < min(t["ready"] for t in times):
            overlap.append("yes")
        return max(t["ready"] for t in times) - t0

    def slowest_alone() -> float:
        write()
        t0, _, report = s.serve(names[-1])
        s.stop()
        return report["instances"][0]["times"]["ready"] - t0

    def one_after_another() -> float:
        write()
        t0 = time.time()
        for n in names:
            _, _, report = s.serve(n)
        s.stop()
        return report["instances"][0]["times"]["ready"] - t0

    series = interleave({"auto-infer serve (4 at once)": at_once,
                         f"auto-infer serve:{names[-1]} (the slowest, alone)": slowest_alone,
                         "auto-infer serve:s1 … serve:s4, one after another": one_after_another},
                        warmup=warmup, repeats=repeats, progress=progress)
    return series, overlap
